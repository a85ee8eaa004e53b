"""Scenario tests for life and drama (issue 4): each a small config + seed, asserting what happened."""

from __future__ import annotations

import json

import numpy as np
import pytest

from test_fuzz import problems_in
from townlet.cli.main import main
from townlet.world.agents import Activity
from townlet.world.events import EventKind

LIFE = ["features.lifecycle=on"]
DRAMA = ["features.lifecycle=on", "features.perturbations=on"]
FOOD = ("raw_food", "cafe_meal")


def cut_off_food(world, slot: int, hunger: float) -> None:
    """Take away an agent's food and money (the money goes to the treasury) and make it this hungry."""
    a = world.agents
    world.economy.transfer_to_treasury(slot, world, float(a.wallet[slot]), "fees")
    for item in FOOD:
        a.inventory[slot, a.item_index[item]] = 0
    a.needs[slot, 0] = hunger


def of_kind(events, kind):
    return [e for e in events if e.kind is kind]


def test_starvation_path_collapse_exit_and_a_newcomer_within_20_ticks(make_sim, run) -> None:
    """Blocked from food, one agent collapses and leaves; a newcomer arrives within 20 ticks; others are fine."""
    sim = make_sim(seed=3, overrides=LIFE)
    world, a = sim.world, sim.world.agents
    cut_off_food(world, 0, hunger=0.97)
    leaver, home, ident = a.ids[0], int(a.home[0]), int(world.identity.of_agent[0])
    events = run(sim, 1500)
    collapse, exits, arrivals = (
        of_kind(events, k) for k in (EventKind.COLLAPSE, EventKind.AGENT_EXIT, EventKind.AGENT_ARRIVED)
    )
    assert [(e.agent, e.detail) for e in collapse] == [(0, "hunger")]
    assert [(e.agent, e.detail) for e in exits] == [(0, "collapse")]
    assert exits[0].tick == collapse[0].tick, "nothing held the exit back"
    assert len(arrivals) == 1
    assert 5 <= arrivals[0].tick - exits[0].tick <= 20
    newcomer = arrivals[0].agent
    assert arrivals[0].detail == a.ids[newcomer] == "agent_8" != leaver
    assert int(a.home[newcomer]) == home
    assert int(world.identity.of_agent[newcomer]) != ident, "the leaver's id embedding rests"
    assert int(a.alive.sum()) == 8
    kpis = sim.kpis.report(world)
    assert kpis["exits"] == {"collapse": 1} and kpis["arrivals"] == 1 and kpis["collapses"] == 1
    others = [s for s in a.slots() if s != newcomer]
    assert len(others) == 7 and (a.needs[others].max(axis=1) < 0.9).all()
    assert kpis["attendance"] >= 0.9


def test_newcomer_arrives_at_the_road_with_the_starter_kit_and_no_memory(make_sim, run) -> None:
    """The newcomer stands on a road spawn tile with money = 1.5 x rent, raw food, clean clothes and no ties."""
    sim = make_sim(seed=0, overrides=LIFE)
    world, a = sim.world, sim.world.agents
    run(sim, 300)
    world.relationships.apply_pair(world, 2, 3, "good_chat")
    assert world.relationships.tie(3, 2) is not None
    sim.lifecycle.exit(2, "console")
    slot = -1
    for _ in range(20):
        arrived = of_kind(sim.step().events, EventKind.AGENT_ARRIVED)
        if arrived:
            slot = arrived[0].agent
            break
    assert slot >= 0
    cfg = world.config.economy
    assert int(a.tile[slot]) in set(world.spawn_tiles.tolist())
    assert a.wallet[slot] == pytest.approx(1.5 * cfg.rent_per_day)
    assert a.inventory[slot, a.item_index["raw_food"]] == cfg.starting_inventory["raw_food"] > 0
    assert a.inventory[slot, a.item_index["clean_clothes"]] == cfg.starting_inventory["clean_clothes"] > 0
    assert (world.relationships.other[slot] < 0).all() and not (world.relationships.other == slot).any()
    assert a.ids[slot] == "agent_8" and int(a.job[slot]) == -1
    run(sim, world.config.employment.rehire_every + 1)
    assert int(a.job[slot]) >= 0, "the leaver's job is vacant and the newcomer gets it"


def test_eviction_path_price_spike_and_wage_cut_evict_after_the_unpaid_days(make_sim, run) -> None:
    """Prices up, wages cut: notices after two unpaid rents, evictions at the deadline; paying the arrears saves one."""
    sim = make_sim(seed=0, agents=3, overrides=LIFE + ["lifecycle.exits.collapse=false"])
    world, a = sim.world, sim.world.agents
    tpd = world.ticks_per_day
    for item in FOOD:
        sim.perturbations.trigger("price_spike", item=item, magnitude=2.0, duration=10 * tpd)
    for job in ("clerk", "stocker", "cook"):
        assert world.employment.set_wage(world, job, 2.0), "the cut breaks the economy invariant"
    ids = list(a.ids[:3])
    events = run(sim, 2 * tpd + 500)
    notices = of_kind(events, EventKind.EVICTION_NOTICE)
    unpaid = of_kind(events, EventKind.RENT_UNPAID)
    assert sorted(e.agent for e in notices) == [0, 1, 2]
    assert all(e.tick == 2 * tpd and e.value == 3 * tpd for e in notices), "notice after 2 unpaid rents"
    assert {e.agent for e in unpaid if e.tick == tpd} == {0, 1, 2}
    assert not of_kind(events, EventKind.AGENT_EXIT), "nobody leaves inside the recovery window"
    # Agent 2 comes into money inside the window: the arrears are collected and it stays.
    world.economy.treasury -= 10.0
    a.wallet[2] += 10.0
    events = run(sim, tpd)
    settled = [e for e in of_kind(events, EventKind.RENT_PAID) if e.detail == "arrears"]
    assert [(e.agent, e.value) for e in settled] == [(2, 2 * world.economy.rent)]
    exits = of_kind(events, EventKind.AGENT_EXIT)
    assert [(e.agent, e.detail) for e in exits] == [(0, "eviction"), (1, "eviction")]
    assert exits[0].tick == 3 * tpd, "evicted exactly when the recovery day ran out"
    assert exits[1].tick == exits[0].tick + world.config.lifecycle.exit_spacing
    assert a.ids[2] == ids[2] and a.alive[2]
    assert sim.kpis.report(world)["exits"] == {"eviction": 2}


def test_exit_storm_guard_three_failing_at_once_at_most_two_exits_that_day_120_apart(make_sim, run) -> None:
    """Three agents collapse in the same tick: two leave that day 120 ticks apart, the third next day."""
    sim = make_sim(seed=1, overrides=LIFE)
    world = sim.world
    tpd = world.ticks_per_day
    run(sim, 100)
    for slot in (1, 4, 6):
        cut_off_food(world, slot, hunger=1.0)
    events = run(sim, tpd)
    collapses = of_kind(events, EventKind.COLLAPSE)
    assert sorted(e.agent for e in collapses) == [1, 4, 6] and len({e.tick for e in collapses}) == 1
    exits = of_kind(events, EventKind.AGENT_EXIT)
    first_day = [e for e in exits if e.tick < tpd]
    assert len(first_day) == 2
    assert first_day[1].tick - first_day[0].tick == world.config.lifecycle.exit_spacing
    later = [e for e in exits if e.tick >= tpd]
    assert len(later) == 1 and later[0].tick == tpd, "the third exit was delayed to the next day, not forgotten"
    assert sorted(e.agent for e in exits) == [1, 4, 6] and all(e.detail == "collapse" for e in exits)


def test_outage_during_a_shower_fails_cleanly_and_releases_everything(make_sim, run, use_now) -> None:
    """A water outage mid-shower fails the shower (fail hooks run), then no reservation or use is left behind."""
    sim = make_sim(seed=0, agents=2, manual=True, overrides=DRAMA)
    world, a = sim.world, sim.world.agents
    calls = []
    world.hooks.on("affordance_fail", lambda p: calls.append((p.agent, p.affordance, p.detail)))
    shower = int(world.objects.of_type_in_place("shower", int(a.home[0]))[0])
    use_now(world, 0, shower, "shower")
    run(sim, 4)
    assert a.activity[0] == Activity.USING and world.objects.user[shower] == 0
    outage = sim.perturbations.trigger("water_outage", duration=30)
    events = run(sim, 1)
    failed = of_kind(events, EventKind.AFFORDANCE_FAILED)
    assert [(e.agent, e.detail) for e in failed] == [(0, "shower:water_lost")]
    assert calls == [("agent_0", "shower", "water_lost")]
    assert world.objects.reserved_by[shower] == -1 and world.objects.user[shower] == -1
    assert not world.objects.queue[shower] and problems_in(world) == []
    events = run(sim, 30)
    ended = of_kind(events, EventKind.PERTURBATION_ENDED)
    assert [e.value for e in ended] == [outage.id] and world.utilities.water_on.all()
    assert (world.objects.reserved_by == -1).all() and (world.objects.user == -1).all()


def test_blackout_holds_an_eviction_through_the_event_and_its_grace_window(make_sim, run) -> None:
    """An eviction due during a blackout waits until the blackout and its grace window are over."""
    only_eviction = [f"lifecycle.exits.{rule}=false" for rule in ("collapse", "unemployment", "neglect")]
    no_outages = [f"perturbations.{kind}.daily_probability=0" for kind in ("blackout", "water_outage")]
    sim = make_sim(seed=0, agents=3, overrides=DRAMA + only_eviction + no_outages)
    world, a = sim.world, sim.world.agents
    tpd, grace = world.ticks_per_day, world.config.lifecycle.city_event_grace
    world.economy.rent_unpaid_days[0] = 1
    world.economy.transfer_to_treasury(0, world, float(a.wallet[0]), "fees")
    for job in ("clerk", "stocker", "cook"):
        world.employment.set_wage(world, job, 0.0)  # no way to earn the arrears
    run(sim, tpd + 1)
    assert sim.lifecycle.triggers.notice_deadline[0] == 2 * tpd, "the notice came at the second unpaid rent"
    run(sim, tpd - 101)
    blackout = sim.perturbations.trigger("blackout", duration=300)
    assert not world.utilities.power_on.any()
    events = run(sim, 300 + grace + 5)
    exits = of_kind(events, EventKind.AGENT_EXIT)
    end = blackout.end
    assert [e.detail for e in exits] == ["eviction"]
    assert exits[0].tick == end + grace, "held through the blackout and the grace window, then evicted"
    assert world.utilities.power_on.all()


def test_mass_arrival_three_newcomers_queues_adapt_and_nothing_deadlocks(make_sim, run) -> None:
    """Three newcomers in quick succession (11 agents, 8 homes): 2,000 ticks with no stuck agent or object."""
    sim = make_sim(seed=2, overrides=LIFE)
    world, a = sim.world, sim.world.agents
    run(sim, 200)
    for delay in (0, 2, 4):
        sim.lifecycle.schedule_arrival(delay)
    events = run(sim, 10)
    arrived = of_kind(events, EventKind.AGENT_ARRIVED)
    assert len(arrived) == 3 and int(a.alive.sum()) == 11
    newcomers = [e.agent for e in arrived]
    assert len({int(a.home[s]) for s in newcomers}) == 3, "each newcomer moves into a different home"
    cfg = world.config
    bound = cfg.queues.queue_timeout + cfg.queues.reservation_timeout + cfg.options.max_option_ticks + 100
    completed: dict[int, int] = {}
    worst = 0
    for _ in range(2000):
        for e in sim.step().events:
            if e.kind is EventKind.AFFORDANCE_COMPLETED:
                completed[e.agent] = completed.get(e.agent, 0) + 1
        assert problems_in(world) == [], world.tick
        alive = a.alive
        worst = max(worst, int((world.tick - a.last_progress[alive]).max()))
    assert worst < bound, f"an agent made no progress for {worst} ticks"
    assert all(completed.get(s, 0) >= 3 for s in a.slots()), completed
    assert sim.kpis.report(world)["queue_joins"] > 0


def test_ten_days_with_lifecycle_and_perturbations_keep_the_town_healthy_and_tell_a_story(make_sim, run) -> None:
    """Lifecycle and perturbations on for 10 days: attendance >= 90%, no collapse or exit, and a story told."""
    sim = make_sim(seed=1, overrides=DRAMA)
    events = run(sim, 10 * sim.world.ticks_per_day)
    kpis = sim.kpis.report(sim.world)
    assert kpis["attendance"] >= 0.9, kpis
    assert kpis["collapses"] == 0 and kpis["exits"] == {} and kpis["arrivals"] == 0, kpis
    assert kpis["need_ok_share"] >= 0.95
    assert kpis["perturbations"] >= 4 and len(kpis["perturbation_kinds"]) >= 3, kpis["perturbation_kinds"]
    started = of_kind(events, EventKind.PERTURBATION_STARTED)
    ended = of_kind(events, EventKind.PERTURBATION_ENDED)
    assert {e.value for e in ended} <= {e.value for e in started} and len(ended) >= len(started) - 1
    lines = of_kind(events, EventKind.NARRATION)
    assert kpis["narrations"] == len(lines) >= 8
    assert len({sim.narration.recent[i].category for i in range(len(sim.narration.recent))}) >= 4


def test_feature_flags_from_the_command_line_turn_life_and_drama_on(capsys) -> None:
    """`townlet run --set features.lifecycle=on --set features.perturbations=on` runs them, and the KPIs show it."""
    argv = ["run", "--ticks", "2000", "--seed", "1", "--json", "--set", "perturbations.price_spike.daily_probability=1"]
    assert main(argv + ["--set", "features.lifecycle=on", "--set", "features.perturbations=on"]) == 0
    on = json.loads(capsys.readouterr().out)["kpis"]
    assert main(argv) == 0
    off = json.loads(capsys.readouterr().out)["kpis"]
    assert on["perturbations"] >= 2 and on["perturbation_kinds"]["price_spike"] == 2
    assert off["perturbations"] == 0 and off["perturbation_kinds"] == {}
    for kpis in (on, off):
        assert isinstance(kpis["exits"], dict) and isinstance(kpis["arrivals"], int)
        assert isinstance(kpis["narrations"], int)
    assert on["narrations"] > off["narrations"]
    assert main(["run", "--ticks", "300", "--set", "features.lifecycle=on", "--set", "features.perturbations=on"]) == 0
    table = capsys.readouterr().out
    for label in ("exits (by reason)", "arrivals", "perturbations", "narration lines"):
        assert label in table
    assert np.isfinite(on["reward"]["mean"]) and on["reward"]["std"] > 0
