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
| import | `from townlet.env import parallel_env` (batched: `BatchedTowns`) |
| API | PettingZoo `ParallelEnv`: a step is one tick, or in decision mode the ticks until some agent must decide |
| agents | the town's agent ids (`agent_0`, ...); newcomers join with fresh ids |
| action space | `Discrete(7)` options, or `Discrete(5 + affordances)` primitives |
| observation space | `Dict(observation=Box(-1, 1, (D,), float32), action_mask=Box(0, 1, (A,), int8))` |
| D (shipped town) | full 2909, hybrid 368, compact 130 (every index: docs/observations.md) |
| reward | `sim.rewards.last[slot]` for the tick (SPEC 13); in decision mode summed over the step's ticks |
| termination | the agent left town (lifecycle exit) |
| truncation | every agent at `env.horizon` ticks (default 5000) |
| render modes | `rgb_array`, `ansi` |

- **Actions.** Options are `townlet.policy.options.Option`: GetFed, GetClean, GoToWork, ShopGroceries, Sleep,
  Socialise, Idle. With `env.action_level=primitives` they are wait, move N/E/S/W and interact with
  affordance *i* (see `townlet.policy.primitives`). Agents missing from the action dict follow the built-in
  scripted policy for that tick.
- **Masks.** Options: the one option mask of `townlet.policy.options` (the same rows the simulation checks
  choices against and a deployed `LearnedPolicy` sees): the running option (choosing it again continues it)
  and, for an agent free to choose, every option that could start now. Tick by tick an agent is free once the
  commitment window (`options.commitment_window`, 15 ticks) has passed, with no option, or when a need turned
  critical after its option started (one switch per emergency); in decision mode only at a decision point.
  An unmasked choice always takes effect. Primitives: `PrimitiveRules.mask`. A masked action is ignored and
  counted in `sim.invalid_actions`.
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
- **Leaving and joining.** An agent that leaves gets `terminations[id] = True`, `infos[id]["exit_reason"]`, its
  terminal reward and an all-zero final observation. A newcomer appears in `env.agents` and `possible_agents`
  the step it arrives, with reward 0 and `ctx_reset = 1` in its observation.
- **Seeds.** `reset(seed=s)` builds the town with run seed `s` (same seed and actions: same episode);
  `reset()` without a seed draws the next seed from the last one given (the config's `seed` at first).
- **Rendering.** `rgb_array`: `uint8[48·px, 48·px, 3]` with tiles, objects and agents (`env.render_tile_px`);
  `ansi`: the map as text, the clock and one line per agent. `state()`: every slot's observation stacked.

Parameters of `parallel_env`:

| parameter | default | meaning |
|---|---|---|
| `config` | the shipped `default.yaml` | a YAML config path |
| `variant` | `features.observations` (`hybrid`) | observation variant: `full`, `hybrid` or `compact` |
| `agents` | `population.agents` (8) | initial population |
| `overrides` | none | dotted config overrides: `{"env.horizon": 2000}` or `["features.lifecycle=on"]` |
| `render_mode` | None | `"rgb_array"` or `"ansi"` |
| `decisions` | `"ticks"` | `"ticks"` (a step is a tick) or `"points"` (decision mode, above) |
| `gamma` | 0.99 | discount per tick of `infos[a]["discounted_reward"]` (decision mode) |

Config keys read here: `env.horizon` (5000), `env.action_level` (`options` or `primitives`), `env.render_tile_px`,
`observations.*` (window, scales), `features.observations`, `features.lifecycle`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from townlet.config.loader import LoadedConfig, load_config
from townlet.env.batched import BatchedTowns
from townlet.env.core import Decisions, TownBuffers, TownCore
from townlet.env.parallel import TownletParallelEnv

Overrides = Mapping[str, Any] | Iterable[str] | None


def env_config(
    config: str | Path | None = None, *, variant: str | None = None, agents: int | None = None,
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
    config: str | Path | None = None, *, variant: str | None = None, agents: int | None = None,
    overrides: Overrides = None, render_mode: str | None = None, decisions: Decisions = "ticks", gamma: float = 0.99,
) -> TownletParallelEnv:
    """Build the PettingZoo parallel env (see the module docstring for spaces and parameters)."""
    loaded = env_config(config, variant=variant, agents=agents, overrides=overrides)
    return TownletParallelEnv(loaded, render_mode, decisions=decisions, gamma=gamma)


__all__ = ["BatchedTowns", "TownBuffers", "TownCore", "TownletParallelEnv", "env_config", "parallel_env"]
