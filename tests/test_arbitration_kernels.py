"""The fused tick kernels: the arbitration survey, the paying use kernel and the numpy-exact wage total."""

from __future__ import annotations

import numpy as np
import pytest

from townlet.sim import simulation
from townlet.world import actions, arbitration, scans
from townlet.world.agents import Activity
from townlet.world.economy import exact_sum
from townlet.world.events import EventKind
from townlet.world.movement import plan
from townlet.world.needs import ENERGY
from townlet.world.queues import due


@pytest.mark.parametrize("sizes", [range(0, 300), (511, 512, 1023, 4097, 8192, 8193, 20001)])
def test_exact_sum_is_numpy_sum_bit_for_bit(sizes: range | tuple[int, ...]) -> None:
    """exact_sum of any run equals ndarray.sum() exactly (the treasury's books depend on it)."""
    rng = np.random.default_rng(7)
    for n in sizes:
        values = np.concatenate([rng.random(3), rng.random(n) * 10.0 ** rng.uniform(-3, 6, n)])
        assert exact_sum(values, 3, n) == float(values[3:].sum()), n


def _one_by_one(world) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
    """The three scans run separately, as arbitrate ran them before the survey (into fresh buffers)."""
    a, o, q, g, cfg = world.agents, world.objects, world.queues, world.grid, world.queues.cfg
    idle = a.alive & (a.activity == Activity.WAITING) & (a.wait_until <= world.tick)
    waits = int(idle.sum())
    out = np.empty_like(world.found)
    asking = scans.asking(
        a.alive, a.activity, a.requested, a.target_obj, a.dest_field, a.tile, g.fields.arrays,
        world.config.queues.reserve_radius, out[scans.ASKING],
    )  # fmt: skip
    assert np.array_equal(world.found[scans.ASKING, :asking], out[scans.ASKING, :asking])
    if asking:
        return asking, 0, 0, 0, 0, waits
    objs = np.empty_like(q._due)
    n = due(o.reserved_by, o.reserved_at, o.user, q.length, q.head_since, world.tick,
            cfg.reservation_timeout, cfg.queue_timeout, objs)  # fmt: skip
    assert np.array_equal(q._due[:n], objs[:n])
    if n:
        return 0, n, 0, 0, 0, waits
    cost = float(world.weather.rain_cost) if world.weather.is_raining else 0.0
    into = np.empty_like(world.step_into)
    counts = plan(a.alive, a.activity, a.tile, a.dest_field, g.fields.arrays, g.offsets, g.outdoors, cost,
                  world.tick, out, into)  # fmt: skip
    for row, k in zip((scans.ARRIVED, scans.LOST, scans.GOING), counts, strict=True):
        assert np.array_equal(world.found[row, :k], out[row, :k])
    assert np.array_equal(world.step_into[: counts[2]], into[: counts[2]])
    return 0, 0, *counts, waits


def test_survey_stops_where_the_scans_run_one_by_one_would_hand_work_to_python(make_sim) -> None:
    """Each tick the survey returns what the scans return one by one (up to the first with work), and ending waits."""
    sim = make_sim(seed=3, agents=12, overrides=["weather.change_every=40"])
    seen = {"asking": 0, "due": 0, "plan": 0, "waits": 0}
    for _ in range(1500):
        w = sim.world
        got = arbitration.survey(w, arbitration.ASK)
        assert got == _one_by_one(w)
        seen["asking" if got[0] else "due" if got[1] else "plan"] += 1
        seen["waits"] += got[5] > 0
        sim.step()
    assert min(seen.values()) > 0  # every stage was reached


def test_the_use_kernel_pays_wages_as_pay_wages_would(make_sim, monkeypatch: pytest.MonkeyPatch) -> None:
    """Earners' wallets grow by their pay, last_wage is the tick, the treasury pays the sum, flows count it."""
    sim = make_sim(seed=1, agents=8)
    paid_ticks = 0
    real = simulation.actions.progress

    def checked(world) -> None:  # type: ignore[no-untyped-def]
        nonlocal paid_ticks
        e = world.economy
        wallet, treasury, flows = world.agents.wallet.copy(), e.treasury, dict(e.flows)
        real(world)
        tick, slots, amounts = e.wages_paid
        if tick != world.tick:
            return
        paid_ticks += 1
        working = world.agents.activity[slots] == Activity.USING  # (a use that completed may have cost a fee)
        assert working.any()
        assert np.array_equal(world.agents.wallet[slots[working]], wallet[slots[working]] + amounts[working])
        assert (e.last_wage[slots] == tick).all()
        total = float(amounts.sum())
        assert e.flows["wages"] == flows.get("wages", 0.0) + total
        fees = e.flows["fees"] - flows.get("fees", 0.0)
        assert e.treasury == pytest.approx(treasury - total + fees, abs=1e-9)

    monkeypatch.setattr(simulation.actions, "progress", checked)
    sim.run(1500)
    assert paid_ticks > 100


def test_completion_needs_match_numpy_clip() -> None:
    """_add_needs writes what np.clip(needs + delta, 0, 1) gives (float32), and nothing for a zero delta."""
    rng = np.random.default_rng(3)
    needs = rng.random((6, 4), dtype=np.float32)
    for _ in range(200):
        slot = int(rng.integers(6))
        delta = (rng.uniform(-1, 1, 4) * (rng.random(4) < 0.6)).astype(np.float32)
        expected = needs.copy()
        if delta.any():
            expected[slot] = np.clip(expected[slot] + delta, 0.0, 1.0)
        assert actions._add_needs(needs, slot, delta) == bool(delta.any())
        assert np.array_equal(needs, expected)
    assert not actions._add_needs(needs, 0, np.zeros(4, np.float32))


def test_a_lost_use_fails_first_and_the_others_get_one_tick(make_sim, write_manifest, use_now, run) -> None:
    """With one of two uses losing power, it fails with no effect this tick; the other advances exactly once."""
    sauna = {"object": "shower", "place": "home", "duration": 20, "requires": ["power"], "per_tick": {"energy": -0.01}}
    no_decay = [f"needs.decay.{need}=0" for need in ("hunger", "hygiene", "energy", "social")]
    sets = ["population.household_size=1", *no_decay, write_manifest({"sauna": sauna})]
    sim = make_sim(agents=2, manual=True, overrides=sets)
    world = sim.world
    a, o = world.agents, world.objects
    a.needs[:2, ENERGY] = 0.5
    homes = [int(a.home[s]) for s in (0, 1)]
    assert homes[0] != homes[1]
    for s in (0, 1):
        use_now(world, s, int(o.of_type_in_place("shower", homes[s])[0]), "sauna")
    run(sim, 5)
    elapsed, energy = a.aff_elapsed[:2].copy(), a.needs[:2, ENERGY].copy()
    world.utilities.set(world, "power", False, homes[0])
    events = run(sim, 1)
    assert [(e.agent, e.detail) for e in events if e.kind == EventKind.AFFORDANCE_FAILED] == [(0, "sauna:power_lost")]
    assert a.activity[0] == Activity.IDLE and a.needs[0, ENERGY] == energy[0]  # no effect for the failed use
    assert a.activity[1] == Activity.USING and a.aff_elapsed[1] == elapsed[1] + 1
    assert a.needs[1, ENERGY] == np.float32(energy[1] - np.float32(0.01))
