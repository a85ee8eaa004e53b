"""The one option mask: the simulation, the env, capture and a deployed checkpoint all see the same rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from townlet.config import load_config
from townlet.env import TownCore
from townlet.policy.checkpoint import build_network, load
from townlet.policy.learned import LearnedPolicy
from townlet.policy.options import DECISION_POINTS, Option, must_decide, option_mask
from townlet.sim import Simulation
from townlet.world.needs import HUNGER
from training_support import tiny_checkpoint

LIFE = ["features.lifecycle=on", "lifecycle.spawn_delay=[3, 3]"]


def trained_view(path: Path, decisions: str, ticks: int, overrides: list[str]) -> list[tuple[int, list[int], bytes]]:
    """(tick, deciding slots, their mask rows) at every step of the env driven greedily by the checkpoint."""
    checkpoint = load(path)
    net = build_network(checkpoint)
    core = TownCore(load_config(overrides=overrides), decisions=decisions)  # type: ignore[arg-type]
    core.reset(seed=5)
    b, seen = core.buffers, []
    while core.ticks < ticks:
        rows = b.deciding.nonzero()[0]
        actions = np.full(core.capacity, -1, dtype=np.int64)
        if len(rows):
            masks = b.mask[rows] != 0
            seen.append((core.sim.tick, rows.tolist(), masks.tobytes()))
            with torch.no_grad():
                logits, _, _ = net(torch.from_numpy(b.obs[rows]), torch.from_numpy(masks))
            actions[rows] = logits.argmax(dim=1).numpy()
        actions[b.alive & ~b.deciding] = core.sim.world.agents.option[b.alive & ~b.deciding]
        core.step(actions)
    return seen


def deployed_view(path: Path, ticks: int, overrides: list[str]) -> list[tuple[int, list[int], bytes]]:
    """The same record from a Simulation driven by LearnedPolicy (greedy), as a live town runs it."""
    sim = Simulation(load_config(overrides=overrides), seed=5)
    sim.actor = LearnedPolicy(path, greedy=True)
    seen = []
    while sim.tick < ticks:
        tick = sim.tick
        actions = sim.actor.act(sim)
        if len(sim.actor.deciders):
            seen.append((tick, sim.actor.deciders.tolist(), sim.actor.masks.tobytes()))
        sim.step(actions)
    return seen


@pytest.mark.parametrize("decisions", ["points", "ticks"])
def test_a_checkpoints_deployed_masks_equal_its_training_masks(tmp_path: Path, decisions: str) -> None:
    """Same town, same ticks: LearnedPolicy asks the same agents with the same mask rows the env trained it on."""
    path = tiny_checkpoint(tmp_path / "p.pt", seed=3, decisions=decisions)
    ticks = 1500 if decisions == "points" else 300
    trained = trained_view(path, decisions, ticks, LIFE)
    deployed = deployed_view(path, ticks, LIFE)
    assert len(trained) > 20
    assert trained == deployed


def test_the_simulation_checks_external_choices_against_the_same_mask(make_sim) -> None:
    """An external switch is taken exactly when Simulation.masks() allows it (inside and after the window)."""
    sim = make_sim(agents=2)
    a = sim.world.agents
    for _ in range(40):
        mask = sim.masks()
        actions = np.full(a.capacity, -1)
        actions[0] = Option.IDLE if a.option[0] != Option.IDLE else Option.SLEEP
        before, invalid = int(a.option[0]), sim.invalid_actions
        sim.step(actions)
        if mask[0, actions[0]]:
            assert sim.invalid_actions == invalid and (a.option[0] == actions[0] or before == actions[0])
        else:
            assert sim.invalid_actions == invalid + 1


def test_decision_points_are_no_option_or_a_need_turning_critical(make_sim) -> None:
    """must_decide: no option; a need turned critical under the option; in the streak, a new option possible."""
    sim = make_sim(agents=3)
    sim.step()
    ctl, a = sim.controller, sim.world.agents
    assert (a.option[:3] >= 0).all()
    a.option[1] = -1
    assert list(ctl.deciding().nonzero()[0]) == [1]
    a.needs[2, HUNGER] = 0.95
    ctl.settle()
    assert list(ctl.deciding().nonzero()[0]) == [1, 2]
    rows = ctl.masks(np.array([0, 2]), DECISION_POINTS)
    assert rows[0].sum() == 1 and rows[0, a.option[0]], "a non-decider may only continue"
    assert rows[1].sum() > 1 and rows[1, a.option[2]], "the critical one may switch or continue"
    sim.step(np.where(a.alive, a.option, -1))
    assert not ctl.deciding()[2], "one decision per critical streak..."
    food, a.wallet[2] = a.item_index["raw_food"], 0.0
    a.inventory[2, food] = 0
    sim.step(np.where(a.alive, a.option, -1))
    assert not ctl.masks(np.array([2]), 0)[0, 0] and not ctl.deciding()[2], "GetFed out of reach"
    sim.enqueue(lambda w: w.agents.wallet.__setitem__(2, 50.0))  # as if wages came in during the tick
    sim.step(np.where(a.alive, a.option, -1))
    assert ctl.deciding()[2], "...unless an option becomes possible while the need stays critical"
    assert (must_decide(a.alive, a.option, a.option_started, ctl.point_at, sim.tick) == ctl.deciding()).all()


def test_option_mask_with_no_commitment_lists_every_possible_option_plus_the_running_one(make_sim) -> None:
    """commitment=0 (the console and the scripted routine's view): possible options and the running one."""
    sim = make_sim(agents=2)
    sim.step()
    a = sim.world.agents
    free = option_mask(sim.world, np.array([0]))[0]
    windowed = sim.masks()[0]
    assert free[a.option[0]] and windowed[a.option[0]] and windowed.sum() == 1 < free.sum()


def test_a_need_rising_to_the_decision_level_is_a_decision_point_once(make_sim) -> None:
    """Hunger rising to options.decision_level under a running option: a decision point that tick, not after."""
    sim = make_sim(agents=2)
    sim.step()
    ctl, a = sim.controller, sim.world.agents
    level = sim.config.options.decision_level
    a.needs[0, HUNGER] = level - 0.0005  # the next tick's decay lifts it over the level
    seen = []
    for _ in range(3):
        sim.step(np.where(a.alive, a.option, -1))
        seen.append((bool(ctl.deciding()[0]), bool(a.option[0] >= 0)))
    assert seen == [(True, True), (False, True), (False, True)], "a point under the running option, once"
    assert a.needs[0, HUNGER] >= level
    assert ctl.masks(np.array([0]), DECISION_POINTS).sum() == 1, "past the point, only continuing"
