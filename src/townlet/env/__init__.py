"""The Townlet RL environment: a PettingZoo ``ParallelEnv`` over one town, and a batched interface over many.

```python
from townlet.env import parallel_env

env = parallel_env(variant="compact", agents=8, overrides={"features.lifecycle": "on"})
obs, infos = env.reset(seed=42)
while env.agents:
    actions = {a: env.action_space(a).sample(obs[a]["action_mask"]) for a in env.agents}
    obs, rewards, terminations, truncations, infos = env.step(actions)
```

| | |
|---|---|
| import | `from townlet.env import parallel_env` (AEC: `env`; batched: `BatchedTowns`; adapters: `.wrappers`) |
| name | `townlet_v1` (`metadata["name"]`; v0 gave agents their town ids and grew `possible_agents`) |
| API | PettingZoo `ParallelEnv`: a step is one tick, or in decision mode the ticks until some agent must decide |
| agents | fixed seats `seat_0` ... `seat_{S-1}` (S = `population.agents`); `possible_agents` never changes |
| action space | `Discrete(7)` options, or `Discrete(5 + affordances)` primitives |
| observation space | `Dict(observation=Box(-1, 1, (D,), float32), action_mask=Box(0, 1, (A,), int8))` |
| D (shipped town) | full 2909, hybrid 368, compact 130 (every index: docs/observations.md) |
| reward | `sim.rewards.last[slot]` for the tick (SPEC 13); in decision mode summed over the step's ticks |
| termination | never: a seat outlives its occupants (an occupant's exit is marked in `infos`, below) |
| truncation | every seat at `env.horizon` ticks (default 5000) or after `max_cycles` steps |
| render modes | `human` (the text frame printed each step), `rgb_array`, `ansi` |

- **Seats.** Seat `i` is the town's slot `i`. The town puts a newcomer in its lowest free slot, so a newcomer
  takes the lowest free seat. Every seat is in `env.agents` from `reset()` until the episode ends, so no agent
  id is ever revived (PettingZoo's `parallel_api_test` and RLlib both forbid it). An occupant's stay is an
  episode within its seat: the step it leaves gives its terminal reward with `infos[seat]["exit_reason"]`
  and `infos[seat]["left"]` (its town id); while the seat is empty it observes zeros, gets reward 0 and its
  mask offers only the no-op (Idle; wait with primitives), which is ignored — SuperSuit's black-death
  convention, built in; the step a newcomer sits down gives `infos[seat]["arrived"] = True`, reward 0 and
  its first observation (`ctx_reset = 1`). `infos[seat]["person"]` always names the occupant (None while
  empty); `env.person(seat)` too. The adapters in `townlet.env.wrappers` turn these marks into each
  library's own episode boundaries (docs/ecosystem.md).
- **Actions.** Options are `townlet.policy.options.Option`: GetFed, GetClean, GoToWork, ShopGroceries, Sleep,
  Socialise, Idle. With `env.action_level=primitives` they are wait, move N/E/S/W and interact with
  affordance *i* (see `townlet.policy.primitives`). An occupied seat missing from the action dict follows
  the built-in scripted routine for that step: the env warns once (a `RuntimeWarning`) unless built with
  `scripted_fallback=True`, and counts such agent-steps in `env.scripted_fallbacks`. So does an agent the
  town holds beyond the seats (only a console spawn into a full town does that; raise `seats=`).
- **Masks.** Options: the one option mask of `townlet.policy.options` (the same rows the simulation checks
  choices against and a deployed `LearnedPolicy` sees): the running option (choosing it again continues it)
  and, for an agent free to choose, every option that could start now. Tick by tick an agent is free once the
  commitment window (`options.commitment_window`, 15 ticks) has passed, with no option, or when a need turned
  critical after its option started (one switch per emergency); in decision mode only at a decision point.
  An unmasked choice always takes effect. Primitives: `PrimitiveRules.mask`. A masked action is ignored and
  counted in `sim.invalid_actions` (`env.invalid_actions` over the env's life).
- **Decision mode** (`parallel_env(decisions="points")`, the semi-MDP over options): a step runs tick after
  tick until some agent must decide — its option finished or failed, it just arrived (it has no option), or
  a need rose to `options.decision_level` (0.6) or turned critical under its option — or an agent leaves, or
  the horizon comes. Between decisions an
  agent's option runs without asking anybody. `rewards[a]` is the sum of the agent's rewards over the step's
  ticks; `infos[a]` holds `ticks` (how many ticks the step lasted), `must_decide` (whether the agent chooses
  at the next step; only those agents' masks offer a choice, everybody else's only the running option, which
  they continue whatever they send) and `discounted_reward` (`sum_i gamma**i * r_i` over the step's ticks,
  `gamma` per tick as given to `parallel_env`, 0.99 by default; a learner chains steps with
  `gamma**ticks`). `BatchedTowns(decisions="points")` offers the same as arrays: each town runs to its own
  next decision point (`ticks[i]`, `deciding`, `rewards`, `discounted`).
- **Seeds.** `reset(seed=s)` builds the town with run seed `s` (same seed and actions: same episode);
  `reset()` without a seed draws the next seed of the sequence the last `reset(seed=s)` started, or, before
  any seed was given, from fresh entropy (so copies of one env in a vector env are different towns).
- **Copies.** The env, `BatchedTowns` (without worker processes) and `Simulation` pickle and deep-copy; a
  copy steps on exactly as the original (SuperSuit's concat, Gymnasium's async vector envs, Ray).
- **Rendering.** `human`: the text frame printed to stdout after every reset and step; `rgb_array`:
  `uint8[48·px, 48·px, 3]` with tiles, objects and agents (`env.render_tile_px`); `ansi`: the map as text,
  the clock and one line per agent. `state()`: every slot's observation stacked.

Parameters of `parallel_env` (and of `env`, the AEC form):

| parameter | default | meaning |
|---|---|---|
| `config` | the shipped `default.yaml` | a YAML config path |
| `variant` | `features.observations` (`hybrid`) | observation variant: `full`, `hybrid` or `compact` |
| `agents` | `population.agents` (8) | initial population |
| `overrides` | none | dotted config overrides: `{"env.horizon": 2000}` or `["features.lifecycle=on"]` |
| `render_mode` | None | `"human"`, `"rgb_array"` or `"ansi"` |
| `decisions` | `"ticks"` | `"ticks"` (a step is a tick) or `"points"` (decision mode, above) |
| `gamma` | 0.99 | discount per tick of `infos[a]["discounted_reward"]` (decision mode) |
| `seats` | `population.agents` | how many seats (at most `population.capacity`) |
| `max_cycles` | None | truncate every seat after this many steps (the horizon applies regardless) |
| `scripted_fallback` | False | let seats without an action follow the scripted routine without a warning |

Config keys read here: `env.horizon` (5000), `env.action_level` (`options` or `primitives`), `env.render_tile_px`,
`observations.*` (window, scales), `features.observations`, `features.lifecycle`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from townlet.config.loader import LoadedConfig, load_config
from townlet.env.batched import BatchedTowns
from townlet.env.core import Decisions, TownBuffers, TownCore
from townlet.env.parallel import TownletParallelEnv

if TYPE_CHECKING:
    from pettingzoo import AECEnv

Overrides = Mapping[str, Any] | Iterable[str] | None


def env_config(
    config: str | Path | None = None,
    *,
    variant: str | None = None,
    agents: int | None = None,
    overrides: Overrides = None,
) -> LoadedConfig:
    """Load a config with the env's keyword settings applied as ``--set`` style overrides."""
    sets: list[str] = []
    if isinstance(overrides, Mapping):
        sets += [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in overrides.items()]
    elif overrides is not None:
        sets += list(overrides)
    if variant is not None:
        sets.append(f"features.observations={variant}")
    if agents is not None:
        sets.append(f"population.agents={int(agents)}")
    return load_config(config, sets)


def parallel_env(
    config: str | Path | None = None,
    *,
    variant: str | None = None,
    agents: int | None = None,
    overrides: Overrides = None,
    render_mode: str | None = None,
    decisions: Decisions = "ticks",
    gamma: float = 0.99,
    seats: int | None = None,
    max_cycles: int | None = None,
    scripted_fallback: bool = False,
) -> TownletParallelEnv:
    """Build the PettingZoo parallel env (see the module docstring for spaces and parameters)."""
    loaded = env_config(config, variant=variant, agents=agents, overrides=overrides)
    return TownletParallelEnv(
        loaded,
        render_mode,
        decisions=decisions,
        gamma=gamma,
        seats=seats,
        max_cycles=max_cycles,
        scripted_fallback=scripted_fallback,
    )


def env(config: str | Path | None = None, **kwargs: Any) -> AECEnv:
    """The same env in PettingZoo's AEC form (``parallel_to_aec`` of :func:`parallel_env`; same parameters)."""
    from pettingzoo.utils.conversions import parallel_to_aec

    return parallel_to_aec(parallel_env(config, **kwargs))


__all__ = ["BatchedTowns", "TownBuffers", "TownCore", "TownletParallelEnv", "env", "env_config", "parallel_env"]
