"""Tests for the PettingZoo env: PettingZoo's own conformance tests, episodes, masks, rendering, primitives."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test

from env_support import LIFECYCLE, SHORT, masked_actions
from townlet.config.errors import ConfigError
from townlet.env import parallel_env
from townlet.env.render import agent_colour
from townlet.policy.options import Option
from townlet.policy.primitives import Primitive


@pytest.mark.parametrize("variant", ["full", "hybrid", "compact"])
def test_parallel_api_test_passes_for_every_variant(variant: str) -> None:
    """PettingZoo's parallel_api_test passes for each observation variant, without warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parallel_api_test(parallel_env(variant=variant, overrides=SHORT), num_cycles=300)


@pytest.mark.parametrize("variant", ["full", "hybrid", "compact"])
def test_parallel_api_test_passes_with_agents_leaving_and_arriving(variant: str) -> None:
    """With lifecycle on, agents leave and newcomers take their seats during parallel_api_test, which passes."""
    env = parallel_env(variant=variant, overrides={**SHORT, **LIFECYCLE})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parallel_api_test(env, num_cycles=300)
    assert sum(env.sim.lifecycle.exits.values()) >= 2 and env.sim.lifecycle.arrived >= 2
    assert env.possible_agents == [f"seat_{i}" for i in range(8)] and env.scripted_fallbacks == 0


@pytest.mark.parametrize(
    ("variant", "extra"),
    [(v, x) for x in ({}, LIFECYCLE) for v in ("full", "hybrid", "compact")],
    ids=[f"{v}{x}" for x in ("", "-lifecycle") for v in ("full", "hybrid", "compact")],
)
def test_parallel_seed_test_passes(variant: str, extra: dict) -> None:
    """PettingZoo's parallel_seed_test passes for each variant and with lifecycle on."""
    parallel_seed_test(lambda: parallel_env(variant=variant, overrides={**SHORT, **extra}), num_cycles=300)


def test_same_seed_gives_the_same_episode() -> None:
    """reset(seed) fixes the episode; reset() without a seed moves on to a different one."""
    runs = []
    for _ in range(2):
        env = parallel_env(variant="compact", overrides=SHORT)
        obs, _ = env.reset(seed=7)
        for _ in range(50):
            obs, *_ = env.step(dict.fromkeys(env.agents, 6))
        runs.append((env.sim.state_hash(), obs["seat_0"]["observation"]))
    assert runs[0][0] == runs[1][0] and np.array_equal(runs[0][1], runs[1][1])
    env.reset()
    first = env.seed_used
    env.reset()
    assert first != env.seed_used


def test_an_exit_ends_the_occupants_stay_and_a_newcomer_takes_the_seat() -> None:
    """A leaver's step carries its terminal reward and reason; the seat stays, empty, until a newcomer sits."""
    env = parallel_env(variant="compact", overrides={"features.lifecycle": "on"})
    obs, infos = env.reset(seed=1)
    assert infos["seat_3"] == {"person": "agent_3"}
    sim = env.sim
    sim.enqueue(lambda w: sim.lifecycle.exit(3, "console"))
    obs, rewards, terms, truncs, infos = env.step(dict.fromkeys(env.agents, 6))
    assert infos["seat_3"] == {"person": None, "exit_reason": "console", "left": "agent_3"}
    assert not any(terms.values()) and not any(truncs.values()) and "seat_3" in env.agents
    assert rewards["seat_3"] == pytest.approx(float(sim.rewards.last[3])) and rewards["seat_3"] < 0
    noop = [int(k == Option.IDLE) for k in range(7)]
    assert not obs["seat_3"]["observation"].any() and obs["seat_3"]["action_mask"].tolist() == noop
    joined = None
    for _ in range(30):
        obs, rewards, terms, _, infos = env.step(dict.fromkeys(env.agents, 6))
        assert not any(terms.values()) and env.possible_agents == [f"seat_{i}" for i in range(8)]
        if infos["seat_3"].get("arrived"):
            joined = infos["seat_3"]["person"]
            break
        assert rewards["seat_3"] == 0.0 and infos["seat_3"] == {"person": None}
    assert joined == "agent_8" and rewards["seat_3"] == 0.0 and env.person("seat_3") == "agent_8"
    ctx = env.layout.index("ctx_reset")
    assert obs["seat_3"]["observation"][ctx] == 1.0 and obs["seat_0"]["observation"][ctx] == 0.0
    assert env.scripted_fallbacks == 0 and env.invalid_actions == 0


def test_the_horizon_truncates_every_agent() -> None:
    """At env.horizon every agent is truncated and the agent list empties."""
    env = parallel_env(variant="compact", overrides={"env.horizon": 20})
    env.reset(seed=0)
    for step in range(20):
        _, _, terms, truncs, _ = env.step(dict.fromkeys(env.agents, 6))
        assert all(truncs.values()) == (step == 19) and not any(terms.values())
    assert env.agents == [] and len(truncs) == 8


def test_seats_without_an_action_follow_the_scripted_routine_with_one_warning() -> None:
    """Seats left out of the action dict are driven by the built-in routine: warned once, counted every time."""
    env = parallel_env(variant="compact")
    env.reset(seed=0)
    with pytest.warns(RuntimeWarning, match="scripted routine") as caught:
        for _ in range(30):
            env.step({})
    assert len(caught) == 1 and env.scripted_fallbacks == 30 * 8
    assert (env.sim.world.agents.option[:8] >= 0).any() and env.sim.invalid_actions == 0
    quiet = parallel_env(variant="compact", scripted_fallback=True)
    quiet.reset(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet.step({"seat_0": 6})
    assert quiet.scripted_fallbacks == 7


def test_the_mask_offers_only_the_running_option_inside_the_commitment_window() -> None:
    """While committed, only the running option is unmasked; afterwards every allowed switch takes effect."""
    env = parallel_env(variant="compact", scripted_fallback=True)
    obs, _ = env.reset(seed=0)
    sleep, window = int(Option.SLEEP), env.loaded.config.options.commitment_window
    obs, *_ = env.step({"seat_0": sleep})
    a = env.sim.world.agents
    assert a.option[0] == sleep
    for _ in range(window - 1):
        assert obs["seat_0"]["action_mask"].tolist() == [int(k == sleep) for k in range(7)]
        obs, *_ = env.step({"seat_0": sleep})
    mask = obs["seat_0"]["action_mask"]
    assert mask.sum() > 1 and mask[int(Option.IDLE)] == 1
    env.step({"seat_0": int(Option.IDLE)})
    assert a.option[0] == int(Option.IDLE) and env.sim.invalid_actions == 0


def test_a_need_turning_critical_opens_the_mask_once() -> None:
    """A need that turns critical during an option unlocks one switch; the new option is then committed."""
    env = parallel_env(variant="compact", scripted_fallback=True)
    env.reset(seed=0)
    sleep, fed = int(Option.SLEEP), int(Option.GET_FED)
    env.step({"seat_0": sleep})
    obs, *_ = env.step({"seat_0": sleep})
    assert obs["seat_0"]["action_mask"].sum() == 1
    env.sim.world.agents.needs[0, 0] = env.loaded.config.needs.critical + 0.01  # starving, mid-window
    obs, *_ = env.step({"seat_0": sleep})
    assert obs["seat_0"]["action_mask"][fed] == 1
    obs, *_ = env.step({"seat_0": fed})
    assert env.sim.world.agents.option[0] == fed
    assert obs["seat_0"]["action_mask"].tolist() == [int(k == fed) for k in range(7)]
    assert env.sim.invalid_actions == 0


def test_observations_lie_in_the_observation_space() -> None:
    """Every observation of a random masked episode is contained in the agent's observation space."""
    env = parallel_env(variant="full", overrides={**SHORT, **LIFECYCLE})
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=3)
    for _ in range(150):
        assert all(env.observation_space(a).contains(obs[a]) for a in env.agents)
        obs, *_ = env.step(masked_actions(env, obs, rng))


@pytest.mark.slow
def test_masked_random_agents_never_take_an_invalid_action() -> None:
    """Sampling only unmasked options for 10,000 ticks never hits the simulation's invalid-action path."""
    env = parallel_env(variant="compact", overrides={"env.horizon": 10_000})
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    ticks = 0
    while env.agents:
        masks = np.stack([obs[a]["action_mask"] for a in env.agents])
        choice = (rng.random(masks.shape) * masks).argmax(axis=1)
        obs, *_ = env.step(dict(zip(env.agents, choice.tolist(), strict=True)))
        ticks += 1
    assert ticks == 10_000 and env.sim.invalid_actions == 0


def test_masked_random_agents_take_no_invalid_action_in_a_day() -> None:
    """The fast version of the mask check: a day of random masked choices, zero invalid actions."""
    env = parallel_env(variant="compact", overrides={"env.horizon": 1000, **LIFECYCLE})
    rng = np.random.default_rng(1)
    obs, _ = env.reset(seed=1)
    while env.agents:
        obs, *_ = env.step(masked_actions(env, obs, rng))
    assert env.sim.invalid_actions == 0


def test_render_draws_the_town_as_an_image_and_as_text() -> None:
    """rgb_array returns the town as uint8 pixels with agents drawn; ansi returns the map and a status block."""
    env = parallel_env(variant="compact", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    px = env.loaded.config.env.render_tile_px
    assert frame.shape == (48 * px, 48 * px, 3) and frame.dtype == np.uint8
    x, y = env.sim.world.grid.xy(int(env.sim.world.agents.tile[0]))
    assert tuple(frame[y * px + px // 2, x * px + px // 2]) == agent_colour(0)
    text = parallel_env(variant="compact", render_mode="ansi")
    text.reset(seed=0)
    lines = text.render().splitlines()
    assert lines[0] == "#" * 15 + "==,,##########,,==" + "#" * 15
    assert lines[48].startswith("tick 0") and lines[49].startswith("0 agent_0")  # (the person, not the seat)
    assert parallel_env(variant="compact").render() is None
    assert env.state_space.contains(env.state())


def test_primitive_actions_move_agents_and_start_affordances() -> None:
    """At the primitive level, a move changes the tile and interacting with the fridge eats a snack."""
    env = parallel_env(
        variant="compact", agents=1, overrides={"env.action_level": "primitives"}, scripted_fallback=True
    )
    obs, _ = env.reset(seed=0)
    w = env.sim.world
    assert env.action_space("seat_0").n == 5 + len(w.manifest.affordances)
    fridge = int(w.objects.of_type_in_place("fridge", int(w.agents.home[0]))[0])
    w.teleport(0, w.grid.tile(int(w.objects.x[fridge]), int(w.objects.y[fridge]) + 2))
    obs, *_ = env.step({"seat_0": int(Primitive.WAIT)})
    assert obs["seat_0"]["action_mask"][Primitive.NORTH] == 1
    here = int(w.agents.tile[0])
    obs, *_ = env.step({"seat_0": int(Primitive.NORTH)})
    assert int(w.agents.tile[0]) == here - w.grid.width
    snack = Primitive.INTERACT + w.manifest.by_id["snack"].index
    assert obs["seat_0"]["action_mask"][snack] == 1
    food = int(w.agents.inventory[0, w.agents.item_index["raw_food"]])
    env.step({"seat_0": int(snack)})
    for _ in range(10):
        env.step({"seat_0": int(Primitive.WAIT)})
    assert int(w.agents.inventory[0, w.agents.item_index["raw_food"]]) == food - 1
    assert env.sim.invalid_actions == 0


def test_primitive_level_passes_the_api_test_and_masks_hold() -> None:
    """The primitive action space passes parallel_api_test, and masked random primitives are never invalid."""
    overrides = {**SHORT, "env.action_level": "primitives"}
    parallel_api_test(parallel_env(variant="hybrid", overrides=overrides), num_cycles=300)
    env = parallel_env(variant="hybrid", overrides={**overrides, "env.horizon": 1000})
    rng = np.random.default_rng(2)
    obs, _ = env.reset(seed=2)
    moved = set()
    while env.agents:
        obs, *_ = env.step(masked_actions(env, obs, rng))
        moved |= set(env.sim.world.agents.tile[:8].tolist())
    assert env.sim.invalid_actions == 0 and len(moved) > 20


def test_keywords_set_variant_population_and_overrides() -> None:
    """parallel_env's keywords pick the variant, the population and any dotted override."""
    env = parallel_env(variant="full", agents=3, overrides=["env.horizon=7"])
    obs, _ = env.reset(seed=0)
    assert env.agents == ["seat_0", "seat_1", "seat_2"] and env.loaded.config.env.horizon == 7
    assert obs["seat_0"]["observation"].shape == (env.layout.size,) and env.variant == "full"
    with pytest.raises(ConfigError):
        parallel_env(variant="tiny")
