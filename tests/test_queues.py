"""Tests for reservations and queues: reserve, join, tie-breaks, expiry with fairness cooldown, timeouts."""

from __future__ import annotations

import numpy as np
import pytest

from townlet.config.loader import load_config
from townlet.policy.controller import OptionController
from townlet.policy.options import Option
from townlet.world import actions
from townlet.world.agents import Activity
from townlet.world.events import EventKind
from townlet.world.rng import RngStreams
from townlet.world.state import World

PATIENCE = 3
TILL = "grocer.till.0"
FLOOR = [(x, 16) for x in range(2, 14)]  # a free row of the grocer's floor, away from shelves and queue


def make_world(*overrides: str, agents: int = 6, seed: int = 0) -> World:
    """A world with ``agents`` agents standing on the grocer's floor, all with neutral patience."""
    world = World(load_config(overrides=[f"population.agents={agents}", *overrides]), RngStreams(seed))
    for i in range(agents):
        world.spawn(tile=world.grid.tile(*FLOOR[i]))
    world.agents.personality[:] = 0.0
    return world


def obj(world: World, object_id: str = TILL) -> int:
    return world.objects.index_of[object_id]


def send(world: World, slot: int, object_id: str = TILL, aff: str = "checkout") -> None:
    world.go_use(slot, obj(world, object_id), world.manifest.by_id[aff].index)


def advance(world: World, ticks: int = 1) -> None:
    """The world's share of a tick: queues, movement and starts, then running affordances."""
    for _ in range(ticks):
        world.arbitrate()
        actions.progress(world)
        world.tick += 1


def node_field(world: World, object_id: str, i: int) -> int:
    return world.grid.field((world.objects.queue_nodes[obj(world, object_id)][i],))


def events(world: World, kind: EventKind) -> list:
    return [e for e in world.events if e.kind is kind]


def test_free_object_is_reserved_for_the_first_asker() -> None:
    """An agent near a free object reserves it and walks to its access tile."""
    world = make_world()
    world.teleport(0, world.grid.tile(8, 23))
    send(world, 0)
    world.arbitrate()
    till = obj(world)
    assert world.objects.reserved_by[till] == 0
    assert world.objects.reserved_at[till] == world.tick
    a = world.agents
    assert a.requested[0] and a.activity[0] == Activity.MOVING
    assert a.dest_field[0] == world.objects.field_of(till)
    assert not world.objects.queue[till]


def test_far_agent_does_not_ask_until_within_reserve_radius() -> None:
    """Walking toward an object, an agent asks for it only once within reserve_radius tiles."""
    world = make_world()
    till = obj(world)
    world.teleport(0, world.grid.tile(7, 11))  # on the main street, far from the till
    send(world, 0)
    radius = world.config.queues.reserve_radius
    field = world.objects.field_of(till)
    for _ in range(60):
        dist = int(world.grid.dist_at(field, world.agents.tile[0]))
        asked_before = bool(world.agents.requested[0])
        advance(world)
        if not asked_before and world.agents.requested[0]:
            assert dist <= radius
            break
        assert world.objects.reserved_by[till] == -1
    assert world.objects.reserved_by[till] == 0 or world.objects.user[till] == 0


def test_busy_object_puts_agents_in_fifo_queue_on_the_nearest_free_nodes() -> None:
    """Requests for a reserved object join its queue in order, each sent to the next free queue node."""
    world = make_world()
    till, q = obj(world), world.queues
    q.request(world, [(0, till)])
    q.request(world, [(1, till)])
    q.request(world, [(2, till)])
    a = world.agents
    assert world.objects.queue[till] == [1, 2]
    assert a.activity[1] == a.activity[2] == Activity.QUEUED
    assert a.dest_field[1] == node_field(world, TILL, 0)
    assert a.dest_field[2] == node_field(world, TILL, 1)
    joined = events(world, EventKind.QUEUE_JOINED)
    assert [(e.agent, e.other, e.value) for e in joined] == [(1, 0, 1.0), (2, 1, 2.0)]


def test_queue_members_beyond_the_last_node_wait_where_they_are() -> None:
    """With more waiting agents than queue nodes, the extra ones have no node to walk to."""
    world = make_world(agents=7)
    till = obj(world)
    nodes = len(world.objects.queue_nodes[till])
    for slot in range(nodes + 2):
        world.queues.request(world, [(slot, till)])
    queue = world.objects.queue[till]
    assert len(queue) == nodes + 1
    expected = [node_field(world, TILL, i) for i in range(nodes)]
    assert [int(world.agents.dest_field[s]) for s in queue[:nodes]] == expected
    assert world.agents.dest_field[queue[-1]] == -1


def test_freed_object_serves_queue_head_and_the_rest_move_up() -> None:
    """When the holder lets go, the queue head gets the reservation and everyone behind moves one node up."""
    world = make_world()
    till, q = obj(world), world.queues
    for slot in (0, 1, 2, 3):
        q.request(world, [(slot, till)])
    q.release(world, till)
    q.update(world)
    assert world.objects.reserved_by[till] == 1
    assert world.objects.queue[till] == [2, 3]
    a = world.agents
    assert a.activity[1] == Activity.MOVING and a.dest_field[1] == world.objects.field_of(till)
    assert a.dest_field[2] == node_field(world, TILL, 0) and a.dest_field[3] == node_field(world, TILL, 1)


def test_same_tick_requests_are_ordered_by_patience_and_counted_as_conflict() -> None:
    """Two agents asking for a free object in one tick: the less patient gets it, the other queues; one conflict."""
    for impatient, patient in ((0, 1), (1, 0)):
        world = make_world()
        till = obj(world)
        world.agents.personality[impatient, PATIENCE] = -0.8
        world.agents.personality[patient, PATIENCE] = 0.8
        world.queues.request(world, [(0, till), (1, till)])
        assert world.objects.reserved_by[till] == impatient
        assert world.objects.queue[till] == [patient]
        assert world.counters["queue_conflicts"] == 1
        ties = events(world, EventKind.TIE_BREAK)
        assert len(ties) == 1 and ties[0].obj == till


def winners(*overrides: str, patience: tuple[float, float], trials: int = 60) -> set[int]:
    """Which of two agents won a same-tick request for the till over many trials (fresh jitter each time)."""
    world = make_world(*overrides)
    till, won = obj(world), set()
    world.agents.personality[0, PATIENCE], world.agents.personality[1, PATIENCE] = patience
    for _ in range(trials):
        world.queues.request(world, [(0, till), (1, till)])
        won.add(int(world.objects.reserved_by[till]))
        world.queues.release(world, till)
        world.objects.queue[till].clear()
    assert world.counters["queue_conflicts"] == trials
    return won


def test_tie_break_jitter_decides_between_equally_patient_agents() -> None:
    """Patience differences inside the jitter band are decided by the seeded jitter: either agent can win."""
    assert winners(patience=(0.0, 0.02)) == {0, 1}
    assert winners(patience=(-0.5, 0.5)) == {0}, "a clear patience gap always wins"


def test_uniform_tie_break_ignores_patience() -> None:
    """With tie_break uniform, even a very patient agent sometimes wins the object."""
    assert winners("queues.tie_break=uniform", patience=(-1.0, 1.0)) == {0, 1}


def test_requests_for_a_busy_object_are_not_a_conflict() -> None:
    """Several agents joining a queue of an already reserved object in one tick is not a tie-break conflict."""
    world = make_world()
    till = obj(world)
    world.queues.request(world, [(0, till)])
    world.queues.request(world, [(1, till), (2, till)])
    assert world.counters["queue_conflicts"] == 0
    assert len(world.objects.queue[till]) == 2


def test_expired_reservation_releases_object_gives_cooldown_and_serves_queue_head() -> None:
    """A holder that does not start within reservation_timeout loses the object and is barred from it for a while."""
    world = make_world()
    cfg = world.config.queues
    till, q, o = obj(world), world.queues, world.objects
    for slot in (0, 1, 2):
        world.go_use(slot, till, world.manifest.by_id["checkout"].index)
    q.request(world, [(0, till)])
    q.request(world, [(1, till)])
    q.request(world, [(2, till)])
    world.tick = cfg.reservation_timeout
    q.update(world)
    assert o.reserved_by[till] == 0, "not expired at exactly the timeout"
    world.tick = cfg.reservation_timeout + 1
    q.update(world)
    assert o.reserved_by[till] == 1 and o.queue[till] == [2]
    assert world.agents.step_failed[0] and world.agents.fail_reason[0] == "reservation_expired"
    assert world.counters["queue_conflicts"] == 1
    expired = events(world, EventKind.RESERVATION_EXPIRED)
    assert [(e.agent, e.obj) for e in expired] == [(0, till)]
    assert o.on_cooldown(0, till, world.tick)
    assert o.on_cooldown(0, till, world.tick + cfg.fairness_cooldown - 1)
    assert not o.on_cooldown(0, till, world.tick + cfg.fairness_cooldown)
    assert not o.on_cooldown(1, till, world.tick)
    assert world.relationships.tie(2, 0) is not None, "the waiting agent resents the blocker"


def test_fairness_cooldown_sends_the_controller_to_another_object() -> None:
    """An agent barred from its own shower by a cooldown is sent to a gym shower instead."""
    world = make_world()
    ctl = OptionController(world)
    home_shower = ctl.home_objects[int(world.agents.home[0])]["shower"][0]
    world.teleport(0, world.grid.tile(9, 40))  # inside the gym, where its own shower is far away
    ctl.start(0, Option.GET_CLEAN)
    first = int(world.agents.target_obj[0])
    assert world.objects.types[first] == "shower" and first != home_shower
    world.teleport(0, world.objects.access[home_shower][0])
    ctl.start(0, Option.GET_CLEAN)
    assert world.agents.target_obj[0] == home_shower
    world.objects.cooldown[(0, home_shower)] = world.tick + 60
    ctl.start(0, Option.GET_CLEAN)
    target = int(world.agents.target_obj[0])
    assert world.objects.types[target] == "shower" and target != home_shower


def test_queue_wait_times_out_and_fails_the_step() -> None:
    """An agent queueing longer than queue_timeout leaves the queue with a failed step; the holder keeps the object."""
    world = make_world("queues.queue_timeout=30", "queues.reservation_timeout=1000")
    till, q, o = obj(world), world.queues, world.objects
    q.request(world, [(0, till)])
    q.request(world, [(1, till)])
    world.tick = 30
    q.update(world)
    assert o.queue[till] == [1]
    world.tick = 31
    q.update(world)
    assert o.queue[till] == [] and o.reserved_by[till] == 0
    assert world.agents.step_failed[1] and world.agents.fail_reason[1] == "queue_timeout"
    assert world.agents.activity[1] == Activity.IDLE
    assert [e.agent for e in events(world, EventKind.QUEUE_TIMEOUT)] == [1]


def test_leaving_agent_is_dropped_from_reservations_and_queues() -> None:
    """An agent removed from the town frees its reservation, and a queued one leaves the queue."""
    world = make_world()
    till, q, o = obj(world), world.queues, world.objects
    for slot in (0, 1, 2, 3):
        world.go_use(slot, till, world.manifest.by_id["checkout"].index)
        q.request(world, [(slot, till)])
    world.remove(2)
    assert o.queue[till] == [1, 3]
    assert world.agents.dest_field[3] == node_field(world, TILL, 1)
    world.remove(0)
    q.update(world)
    assert o.reserved_by[till] == 1 and o.queue[till] == [3]


def test_crowd_at_one_till_is_served_in_arrival_order_and_leaves_nothing_reserved() -> None:
    """Five shoppers at one till all check out, in the order they queued, and every reservation is released."""
    world = make_world(agents=5)
    till, o = obj(world), world.objects
    wallet, food = float(world.agents.wallet[0]), world.agents.inventory[0, world.agents.item_index["raw_food"]]
    for slot in range(5):
        send(world, slot)
    started, joined = [], []
    for _ in range(300):
        world.events = []
        advance(world)
        started += [e.agent for e in events(world, EventKind.AFFORDANCE_STARTED)]
        joined += [e.agent for e in events(world, EventKind.QUEUE_JOINED) if e.obj == till]
        if (world.agents.activity[:5] == Activity.IDLE).all():
            break
    a = world.agents
    assert a.step_done[:5].all() and not a.step_failed[:5].any()
    assert len(joined) == 4 and started[1:] == joined, "FIFO: the queue is served in join order"
    assert (o.reserved_by == -1).all() and (o.user == -1).all()
    assert not any(o.queue)
    _, qty = world.manifest.by_id["checkout"].buy
    bought = min(qty, int(wallet // world.economy.price("raw_food")))
    assert bought > 0 and (a.inventory[:5, a.item_index["raw_food"]] == food + bought).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_crowd_at_the_gym_showers_all_wash_and_nothing_stays_reserved(seed: int) -> None:
    """Six agents sent to the two gym showers (one shared queue) all finish; no reservation or queue is left."""
    world = make_world(agents=6, seed=seed)
    showers = [obj(world, "gym.shower.0"), obj(world, "gym.shower.1")]
    for slot in range(6):
        world.teleport(slot, world.grid.tile(2 + slot, 38))
        world.agents.needs[slot, 1] = 0.9
        world.go_use(slot, showers[slot % 2], world.manifest.by_id["shower"].index)
    for _ in range(400):
        advance(world)
        if (world.agents.activity[:6] == Activity.IDLE).all():
            break
    a, o = world.agents, world.objects
    assert a.step_done[:6].all(), [a.fail_reason[s] for s in range(6)]
    assert (a.needs[:6, 1] < 0.1).all()
    assert (o.reserved_by == -1).all() and (o.user == -1).all() and not any(o.queue)
    assert np.all(world.occupancy >= 0)
