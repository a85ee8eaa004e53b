"""Agent memory (SPEC 3): failed objects avoided until the memory expires, known shops, snapshots, state hash."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from townlet.policy.options import Option
from townlet.sim import snapshot
from townlet.world.agents import Activity
from townlet.world.events import EventKind

EXPIRY = 150


class Always:
    """A policy that picks one option whenever the mask allows it, else Idle."""

    def __init__(self, option: Option) -> None:
        self.option = option

    def choose(self, world, slot: int, mask: np.ndarray) -> int:
        """``option`` when allowed."""
        return int(self.option) if mask[self.option] else int(Option.IDLE)


def washer(make_sim, failure_ticks: int = EXPIRY):
    """One well-off agent that washes again and again (its home shower is nearest)."""
    sim = make_sim(
        seed=2, agents=1, policy=Always(Option.GET_CLEAN), overrides=[f"memory.failure_ticks={failure_ticks}"]
    )
    sim.world.agents.wallet[0] = 500.0
    return sim


def home_shower(sim) -> int:
    """The agent's own shower."""
    return int(sim.controller._mine(0, "shower")[0])


def step_until(sim, ticks: int, done) -> list:
    """Step until ``done(sim)`` (at most ``ticks``); the events seen."""
    events = []
    for _ in range(ticks):
        events += sim.step().events
        if done(sim):
            return events
    raise AssertionError(f"not reached in {ticks} ticks")


def test_after_a_shower_fails_mid_use_the_agent_avoids_it_until_its_memory_expires(make_sim) -> None:
    """Water cut mid-shower: the agent washes elsewhere, never at that shower, until the memory runs out."""
    sim = washer(make_sim)
    w, a = sim.world, sim.world.agents
    shower = home_shower(sim)
    place = int(w.objects.place[shower])
    step_until(sim, 600, lambda s: a.activity[0] == Activity.USING and a.target_obj[0] == shower)
    w.utilities.water_on[place] = False  # the water goes mid-use ...
    events = step_until(sim, 2, lambda s: a.activity[0] != Activity.USING)
    w.utilities.water_on[place] = True  # ... and is back at once: only the agent's memory keeps it away
    failed = [e for e in events if e.kind is EventKind.AFFORDANCE_FAILED]
    assert [(e.obj, e.detail) for e in failed] == [(shower, "shower:water_lost")]
    until = failed[0].tick + EXPIRY
    assert shower in sim.controller.memory.avoided(0, w.tick).tolist()
    elsewhere = 0
    while w.tick < until:
        for e in sim.step().events:
            if e.kind is EventKind.AFFORDANCE_STARTED and e.detail == "shower":
                assert e.obj != shower, f"back at the failed shower at tick {e.tick}, before {until}"
                elsewhere += 1
        assert a.target_obj[0] != shower or w.tick >= until
    assert elsewhere >= 1, "it kept washing, at another shower"
    step_until(sim, 400, lambda s: a.target_obj[0] == shower)  # forgotten: the nearest shower again
    assert not sim.controller.memory.avoided(0, w.tick).size


def test_without_memory_the_agent_walks_straight_back(make_sim) -> None:
    """With ``memory.failure_ticks: 0`` the same agent returns to the shower that just failed it."""
    sim = washer(make_sim, failure_ticks=0)
    w, a = sim.world, sim.world.agents
    shower = home_shower(sim)
    place = int(w.objects.place[shower])
    step_until(sim, 600, lambda s: a.activity[0] == Activity.USING and a.target_obj[0] == shower)
    w.utilities.water_on[place] = False
    step_until(sim, 2, lambda s: a.activity[0] != Activity.USING)
    w.utilities.water_on[place] = True
    failed_at = w.tick
    step_until(sim, 60, lambda s: a.target_obj[0] == shower)
    assert w.tick - failed_at < EXPIRY


def test_an_empty_shelf_is_avoided_and_the_grocer_becomes_a_known_shop(make_sim) -> None:
    """A shelf found empty on arrival is remembered (a stock precondition); the grocer visited is a known shop."""
    sim = make_sim(seed=2, agents=1, policy=Always(Option.SHOP_GROCERIES))
    w, a, memory = sim.world, sim.world.agents, sim.controller.memory
    a.wallet[0] = 500.0
    assert not memory.known_shops.any(), "nobody knows a shop before visiting it"
    shelves = set(w.objects.by_type["shelf"].tolist())
    step_until(sim, 600, lambda s: a.target_obj[0] in shelves and a.activity[0] != Activity.USING)
    shelf = int(a.target_obj[0])
    stock = w.economy.stock[int(w.objects.place[shelf])]
    saved = dict(stock)
    stock.update(dict.fromkeys(stock, 0))  # sold out while the agent walks there
    events = step_until(sim, 300, lambda s: any(e.kind is EventKind.OPTION_FAILED for e in s.world.events))
    failed = [e.detail for e in events if e.kind is EventKind.OPTION_FAILED]
    assert failed == ["ShopGroceries:precondition: stock.raw_food >= 1"]
    assert memory.avoided(0, w.tick).tolist() == [shelf]
    stock.update(saved)  # restocked at once: the agent does not know
    events = step_until(
        sim, 600, lambda s: any(e.kind is EventKind.AFFORDANCE_COMPLETED and e.obj in shelves for e in s.world.events)
    )
    picked = [e.obj for e in events if e.kind is EventKind.AFFORDANCE_STARTED]
    assert picked and shelf not in picked, "it picked its groceries from another shelf"
    shop = int(memory.shop_of_object[shelf])
    assert shop >= 0 and memory.known_shops[0, shop]


def test_memory_is_saved_in_snapshots_and_part_of_the_state_hash(make_sim, tmp_path: Path) -> None:
    """A remembered failure survives a snapshot round trip, and changing it changes the state hash."""
    sim = washer(make_sim)
    sim.run(5)
    sim.controller.memory.failed(0, home_shower(sim), "water_lost", sim.tick)
    back = snapshot.load(snapshot.write(sim, tmp_path / "m.snap"), sim.loaded)
    assert back.state_hash() == sim.state_hash()
    np.testing.assert_array_equal(back.controller.memory.failed_until, sim.controller.memory.failed_until)
    before = sim.state_hash()
    sim.controller.memory.forget(0)
    assert sim.state_hash() != before


def test_only_the_objects_fault_is_remembered(make_sim) -> None:
    """Reasons that are the agent's (no money, a queue timeout, an interruption) leave no memory."""
    sim = make_sim(agents=1)
    memory = sim.controller.memory
    for reason in ("precondition: wallet >= 0.25", "queue_timeout", "interrupted", "unreachable"):
        assert not memory.failed(0, 3, reason, 10)
    for reason in ("water_lost", "power_lost", "closed", "precondition: stock.raw_food >= 1"):
        assert memory.failed(0, 3, reason, 10)
    assert memory.avoided(0, 10).tolist() == [3], "one object, one slot"
    assert memory.usable(0, (3, 4), 10) == (4,) and memory.usable(0, (3, 4), 10 + EXPIRY + 100) == (3, 4)
