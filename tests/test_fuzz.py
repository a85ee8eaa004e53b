"""Fuzz: a crowded town with random outages and teleports runs 10,000 ticks without leaks or stuck agents."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np

from townlet.config.loader import load_config
from townlet.sim import Simulation
from townlet.world.agents import Activity
from townlet.world.state import World

TICKS = 10_000
AGENTS = 40
MEMORY_GROWTH_LIMIT = 5 * 1024 * 1024


def teleport_somewhere(world: World, rng: np.random.Generator) -> None:
    """Move a random agent to a random free walkable tile (refused moves are skipped)."""
    slots = world.agents.slots()
    free = np.flatnonzero(world.grid.walkable & (world.grid.outdoors | (world.occupancy == 0)))
    try:
        world.teleport(int(rng.choice(slots)), int(rng.choice(free)))
    except ValueError:
        pass


def cut_utility(world: World, rng: np.random.Generator) -> None:
    """Switch power or water off at a random place, to be healed 10-150 ticks later."""
    kind = "power" if rng.random() < 0.5 else "water"
    place = int(rng.integers(len(world.utilities.power_on)))
    world.utilities.set(world, kind, False, place, until=world.tick + int(rng.integers(10, 151)))


def problems_in(world: World) -> list[str]:
    """What is wrong right now: non-finite or out-of-range numbers, wrong occupancy, dead or stray holders.

    Returns a list rather than asserting, so the per-tick check stays cheap under pytest's assert rewriting.
    """
    a, o = world.agents, world.objects
    alive = a.alive
    needs, wallet = a.needs[alive], a.wallet[alive]
    found = []
    if not (np.isfinite(needs).all() and np.isfinite(wallet).all()):
        found.append("NaN or infinity in needs or wallets")
    if not ((needs >= 0).all() and (needs <= 1).all()):
        found.append("a need outside [0, 1]")
    if not np.array_equal(world.occupancy, np.bincount(a.tile[alive], minlength=world.grid.size)):
        found.append("occupancy does not count the agents on each tile")
    for holders, what in ((o.reserved_by, "reservation"), (o.user, "use")):
        held = np.flatnonzero(holders >= 0)
        slots = holders[held]
        if not alive[slots].all():
            found.append(f"{what} held by an empty slot")
        if not np.array_equal(a.target_obj[slots], held):
            found.append(f"{what} held by an agent heading elsewhere")
    if not (a.activity[o.user[o.user >= 0]] == Activity.USING).all():
        found.append("an object's user is not using it")
    for obj in (i for i, q in enumerate(o.queue) if q):
        queue = np.array(o.queue[obj])
        if len(set(queue.tolist())) != len(queue):
            found.append(f"an agent queues twice for {o.ids[obj]}")
        if not (alive[queue].all() and (a.activity[queue] == Activity.QUEUED).all()):
            found.append(f"a dead or non-queueing agent in the queue of {o.ids[obj]}")
        if not (a.target_obj[queue] == obj).all():
            found.append(f"an agent in the queue of {o.ids[obj]} heads elsewhere")
        if o.reserved_by[obj] in queue or o.user[obj] in queue:
            found.append(f"the holder of {o.ids[obj]} also queues for it")
    return found


def test_crowded_town_with_outages_and_teleports_runs_10000_ticks_cleanly() -> None:
    """40 agents, random outages and teleports for 10,000 ticks: no NaN, nothing stuck, no memory growth."""
    loaded = load_config(overrides=[f"population.agents={AGENTS}"])
    cfg = loaded.config
    stuck_bound = (
        cfg.queues.queue_timeout
        + cfg.queues.reservation_timeout
        + cfg.options.max_option_ticks
        + cfg.options.commitment_window
        + 100
    )
    rng = np.random.default_rng(1234)
    started = time.perf_counter()
    sim = Simulation(loaded, seed=7)
    world = sim.world
    worst_stall = teleports = outages = 0
    memory = {}
    try:
        for tick in range(TICKS):
            if tick == TICKS // 2 - 1000:
                tracemalloc.start()  # trace the second half (after a warm-up) only: tracing is slow
            if rng.random() < 0.15:
                sim.enqueue(lambda w: teleport_somewhere(w, rng))
                teleports += 1
            if rng.random() < 0.02:
                sim.enqueue(lambda w: cut_utility(w, rng))
                outages += 1
            sim.step()
            problems = problems_in(world)
            assert not problems, (world.tick, problems)
            alive = world.agents.alive
            worst_stall = max(worst_stall, int((world.tick - world.agents.last_progress[alive]).max()))
            if tick + 1 in (TICKS // 2, TICKS):
                memory[tick + 1] = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - started
    assert teleports > 1000 and outages > 100
    assert worst_stall < stuck_bound, f"an agent made no progress for {worst_stall} ticks (bound {stuck_bound})"
    growth = memory[TICKS] - memory[TICKS // 2]
    assert growth < MEMORY_GROWTH_LIMIT, f"memory grew {growth / 1e6:.1f} MB over the second half"
    assert int(world.agents.alive.sum()) == AGENTS
    report = sim.kpis.report(world)
    assert report["activities"], "the crowded town still does things"
    print(
        f"fuzz: {TICKS} ticks in {elapsed:.1f}s, worst stall {worst_stall} ticks, "
        f"memory growth {growth / 1e3:.0f} kB, ghost steps {report['ghost_steps']}"
    )


def test_fuzz_check_notices_stuck_reservations_and_bad_numbers() -> None:
    """The per-tick check flags a reservation held by an empty slot, a stray queue entry and a NaN need."""
    sim = Simulation(load_config(overrides=["population.agents=3"]), seed=0)
    world = sim.world
    assert problems_in(world) == []
    world.objects.reserved_by[0] = 10
    world.objects.queue[1].append(2)
    world.agents.needs[1, 0] = np.nan
    found = " | ".join(problems_in(world))
    assert "reservation held by an empty slot" in found
    assert "queue of" in found and "NaN" in found
