"""The fused per-tick kernels (issue 18) against the same rules written as plain NumPy over random towns."""

from __future__ import annotations

import numpy as np
import pytest

from townlet.config.loader import load_config
from townlet.policy.options import NEVER, OPTION_COUNT, Option, need_points
from townlet.policy.settling import (
    CRITICAL,
    IDLE_ROW,
    STALLED,
    builtin_scan,
    decide_scan,
    newly_possible,
    pressing_needs,
    settle_scan,
    unsettled,
)
from townlet.sim.simulation import Simulation
from townlet.world.agents import Activity
from townlet.world.needs import ENERGY, HUNGER

C = 64  # slots of the random towns


def _random_agents(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "alive": rng.random(C) < 0.8,
        "needs": rng.random((C, 4)).astype(np.float32),
        "option": rng.integers(-1, OPTION_COUNT, C).astype(np.int8),
        "started": rng.integers(0, 200, C).astype(np.int64),
        "activity": rng.integers(0, 5, C).astype(np.int8),
    }


@pytest.mark.parametrize("seed", range(20))
def test_pressing_needs_kernel_matches_the_rule(seed: int) -> None:
    """pressing_needs picks exactly the agents the documented interrupt rule picks (critical, or periodic and due)."""
    rng = np.random.default_rng(seed)
    a = _random_agents(rng)
    actions = np.where(rng.random(C) < 0.2, rng.integers(0, OPTION_COUNT, C), -1).astype(np.int64)
    tick, every, commitment = int(rng.integers(100, 300)), int(rng.integers(1, 9)), int(rng.integers(0, 60))
    critical, level = np.float32(0.9), np.float32(0.6)
    out = np.empty(C, dtype=np.int64)
    slot_phase = np.arange(C) % every
    n = pressing_needs(
        a["alive"],
        actions,
        a["needs"],
        a["option"],
        a["started"],
        slot_phase,
        tick,
        tick % every,
        (critical, level),
        commitment,
        out,
    )
    # The rule as Simulation wrote it before the kernel: whole-array NumPy.
    option = a["option"]
    pressing = np.maximum(a["needs"][:, HUNGER], a["needs"][:, ENERGY])
    busy = (option >= 0) & (option != int(Option.GET_FED)) & (option != int(Option.SLEEP))
    periodic = (pressing >= level) & (np.arange(C) % every == tick % every)
    over = tick - a["started"] >= commitment
    reconsider = periodic & busy & (option != int(Option.GET_CLEAN)) & over
    due = a["alive"] & ~(actions >= 0) & ((busy & (pressing >= critical)) | reconsider)
    assert out[:n].tolist() == due.nonzero()[0].tolist()


@pytest.mark.parametrize("seed", range(20))
def testsettle_scan_matches_the_rule(seed: int) -> None:
    """Unsettled finds the stalled walkers, the idle bodies with an option and the critical streaks, ascending."""
    rng = np.random.default_rng(seed)
    a = _random_agents(rng)
    step_started = rng.integers(0, 200, C).astype(np.int64)
    critical_since = np.where(rng.random(C) < 0.3, rng.integers(0, 200, C), NEVER).astype(np.int64)
    tick, limit = 200, int(rng.integers(0, 150))
    found = np.full((3, C), -7, dtype=np.int64)
    stalled, idle, critical = unsettled(
        a["alive"], a["activity"], a["option"], step_started, critical_since, tick, limit, found
    )
    alive, activity = a["alive"], a["activity"]
    too_long = alive & (activity == int(Activity.MOVING)) & (tick - step_started > limit)
    settle = alive & (a["option"] >= 0) & ((activity == int(Activity.IDLE)) | too_long)
    assert found[STALLED, :stalled].tolist() == too_long.nonzero()[0].tolist()
    assert found[IDLE_ROW, :idle].tolist() == settle.nonzero()[0].tolist()
    assert found[CRITICAL, :critical].tolist() == (alive & (critical_since != NEVER)).nonzero()[0].tolist()


@pytest.mark.parametrize("seed", range(20))
def test_builtin_scan_is_the_free_agents_then_the_pressing_ones(seed: int) -> None:
    """builtin_scan finds the free agents left to the built-in policy; with none, exactly what pressing_needs finds."""
    rng = np.random.default_rng(seed)
    a = _random_agents(rng)
    if seed % 2:  # half the towns have nobody free, so the pressing scan runs inside
        a["option"] = np.where(a["option"] < 0, 0, a["option"]).astype(np.int8)
    actions = np.where(rng.random(C) < 0.2, rng.integers(0, OPTION_COUNT, C), -1).astype(np.int64)
    if seed % 4 == 3:
        actions[:] = 2  # nobody left to the built-in policy
    tick, every, commitment = int(rng.integers(100, 300)), int(rng.integers(1, 9)), int(rng.integers(0, 60))
    args = (a["alive"], actions, a["needs"], a["option"], a["started"], np.arange(C) % every, tick, tick % every)
    rest = ((np.float32(0.9), np.float32(0.6)), commitment)
    free, due, expected_due = (np.full(C, -7, dtype=np.int64) for _ in range(3))
    n, any_builtin, pressing = builtin_scan(
        a["alive"], actions, a["option"], a["needs"], a["started"], *args[5:], *rest, free, due
    )
    builtin = a["alive"] & (actions < 0)
    assert free[:n].tolist() == (builtin & (a["option"] < 0)).nonzero()[0].tolist()
    assert any_builtin == bool(builtin.any())
    expected = pressing_needs(*args, *rest, expected_due) if any_builtin and not n else 0
    assert pressing == expected and due[:pressing].tolist() == expected_due[:expected].tolist()


@pytest.mark.parametrize("points", [True, False])
@pytest.mark.parametrize("seed", range(10))
def test_fusedsettle_scan_is_need_points_thenunsettled(seed: int, points: bool) -> None:
    """settle_scan leaves the same streaks, need points and found rows as need_points followed by unsettled."""
    rng = np.random.default_rng(seed)
    a = _random_agents(rng)
    step_started = rng.integers(0, 200, C).astype(np.int64)
    since = np.where(rng.random(C) < 0.3, rng.integers(0, 200, C), NEVER).astype(np.int64)
    point_at = np.where(rng.random(C) < 0.3, rng.integers(0, 200, C), NEVER).astype(np.int64)
    above = rng.random((C, 4)) < 0.3
    critical, level, tick, limit = np.float32(0.8), np.float32(0.6), 200, int(rng.integers(0, 150))
    mine = [x.copy() for x in (since, above, point_at)] + [np.full((3, C), -7, dtype=np.int64)]
    ref = [x.copy() for x in (since, above, point_at)] + [np.full((3, C), -7, dtype=np.int64)]
    counts = settle_scan(
        a["alive"], a["needs"], a["activity"], a["option"], step_started, *mine, tick, points,
        (float(critical), float(level), limit),
    )  # fmt: skip
    need_points(a["alive"], a["needs"], critical, ref[0], level, ref[1], ref[2], tick, points)
    expected = unsettled(a["alive"], a["activity"], a["option"], step_started, ref[0], tick, limit, ref[3])
    assert counts == expected
    assert all(np.array_equal(x, y) for x, y in zip(mine, ref, strict=True))


@pytest.mark.parametrize("external", [False, True])
@pytest.mark.parametrize("seed", range(10))
def testdecide_scan_is_settle_then_thebuiltin_scan(seed: int, external: bool) -> None:
    """decide_scan: settle's scan without need points, then builtin_scan unless something must happen first."""
    rng = np.random.default_rng(seed)
    a = _random_agents(rng)
    if seed % 2:  # nothing to settle: nobody idle with an option, nobody walking too long
        idle = a["activity"] == int(Activity.IDLE)
        a["activity"] = np.where(idle, int(Activity.USING), a["activity"]).astype(np.int8)
    step_started = np.full(C, 190, dtype=np.int64)
    actions = np.full(C, -1, dtype=np.int64)
    since = np.where(rng.random(C) < 0.3, rng.integers(0, 200, C), NEVER).astype(np.int64)
    point_at, above = np.full(C, NEVER, dtype=np.int64), rng.random((C, 4)) < 0.3
    tick, every, commitment, limit = 200, 3, int(rng.integers(0, 60)), 100
    slot_phase = np.arange(C) % every
    mine = [x.copy() for x in (since, above, point_at)]
    scratch = tuple(np.full(shape, -7, dtype=np.int64) for shape in ((3, C), C, C))
    got = decide_scan(
        a["alive"], a["needs"], a["activity"], a["option"], a["started"], step_started, actions, slot_phase,
        tuple(mine), scratch, tick, (0.8, 0.6, limit, 0.7, tick % every, commitment, external),
    )  # fmt: skip
    ref = [x.copy() for x in (since, above, point_at)]
    found, free, due = (np.full(shape, -7, dtype=np.int64) for shape in ((3, C), C, C))
    stalled, idle, _ = settle_scan(
        a["alive"], a["needs"], a["activity"], a["option"], step_started, *ref, found, tick, False, (0.8, 0.6, limit)
    )
    assert got[:2] == (stalled, idle) and all(np.array_equal(x, y) for x, y in zip(mine, ref, strict=True))
    if stalled or idle or external:
        assert got[2:] == (0, False, 0)
        return
    levels = (np.float32(0.8), np.float32(0.7))
    expected = builtin_scan(
        a["alive"], actions, a["option"], a["needs"], a["started"], slot_phase, tick, tick % every, levels,
        commitment, free, due,
    )  # fmt: skip
    assert got[2:] == expected
    assert scratch[1][: expected[0]].tolist() == free[: expected[0]].tolist()
    assert scratch[2][: expected[2]].tolist() == due[: expected[2]].tolist()


@pytest.mark.parametrize("seed", range(20))
def testnewly_possible_options_make_a_need_point(seed: int) -> None:
    """An option that became possible during a critical streak (after its first tick) marks a need point."""
    rng = np.random.default_rng(seed)
    slots = np.sort(rng.choice(C, size=20, replace=False)).astype(np.int64)
    rows = rng.random((len(slots), OPTION_COUNT)) < 0.5
    possible = rng.random((C, OPTION_COUNT)) < 0.5
    tick = 50
    critical_since = rng.integers(45, 51, C).astype(np.int64)
    point_at = np.full(C, NEVER, dtype=np.int64)
    expected_possible, expected_point = possible.copy(), point_at.copy()
    grew = (rows & ~possible[slots]).any(axis=1) & (critical_since[slots] != tick)
    expected_point[slots[grew]] = tick
    expected_possible[slots] = rows
    newly_possible(slots, rows, possible, critical_since, point_at, tick)
    assert np.array_equal(possible, expected_possible) and np.array_equal(point_at, expected_point)


def test_wages_are_paid_only_within_the_shift_and_match_the_job() -> None:
    """Every wage payment goes to working job holders inside their shift, at their job's rate per tick."""
    sim = Simulation(load_config(overrides=["population.agents=8"]), seed=1)
    w, emp = sim.world, sim.world.employment
    payments = 0
    for _ in range(2000):
        sim.step()
        tick, slots, amounts = w.economy.wages_paid
        if tick != w.tick - 1 or not len(slots):
            continue
        payments += 1
        tod = tick % w.ticks_per_day
        jobs = w.agents.job[slots]
        assert (jobs >= 0).all()
        assert ((emp.start[jobs] <= tod) & (tod < emp.end[jobs])).all()
        assert np.array_equal(amounts, emp.wage_per_tick[jobs])
        assert (w.economy.last_wage[slots] == tick).all()
    assert payments > 100  # a working day was simulated
