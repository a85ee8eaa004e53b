"""Lifecycle: exit triggers, the exit-storm guard and its console controls, exits, arrivals, hooks, identity."""

from __future__ import annotations

import pytest

from townlet.config import ConfigError, load_config
from townlet.world.events import EventKind

LIFE = ["features.lifecycle=on"]


def of_kind(events, kind):
    return [e for e in events if e.kind is kind]


def starve(world, slot: int) -> None:
    a = world.agents
    world.economy.transfer_to_treasury(slot, world, float(a.wallet[slot]), "fees")
    for item in ("raw_food", "cafe_meal"):
        a.inventory[slot, a.item_index[item]] = 0
    a.needs[slot, 0] = 1.0


def test_lifecycle_is_installed_always_but_acts_only_when_switched_on(make_sim, run) -> None:
    """Default config: a starving agent collapses but stays; with features.lifecycle=on it leaves."""
    for flag, leaves in ((None, False), ("on", True)):
        sim = make_sim(agents=2, overrides=[f"features.lifecycle={flag}"] if flag else [])
        assert sim.lifecycle.enabled is leaves and sim.lifecycle.mortality is leaves
        starve(sim.world, 0)
        events = run(sim, 40)
        assert len(of_kind(events, EventKind.COLLAPSE)) == 1
        assert bool(of_kind(events, EventKind.AGENT_EXIT)) is leaves


def test_exit_announces_itself_before_the_agent_is_removed(make_sim) -> None:
    """AGENT_EXIT (slot, reason) and the agent_exit hook (with the agent's id) come before removal."""
    sim = make_sim(agents=3)
    w = sim.world
    seen = []
    w.hooks.on("agent_exit", lambda p: seen.append((p.agent, p.detail, w.agents.alive[w.agents.slot_of[p.agent]])))
    sim.lifecycle.exit(1, "console")
    exits = of_kind(w.events, EventKind.AGENT_EXIT)
    assert [(e.agent, e.detail) for e in exits] == [(1, "console")]
    assert seen == [("agent_1", "console", True)], "the hook ran while the agent was still there"
    assert not w.agents.alive[1] and "agent_1" not in w.agents.slot_of
    assert sim.lifecycle.exits == {"console": 1}
    with pytest.raises(ValueError):
        sim.lifecycle.exit(1, "console")
    with pytest.raises(ValueError):
        sim.lifecycle.exit(0, "bored")


def test_console_exit_works_with_lifecycle_off_and_brings_a_newcomer(make_sim, run) -> None:
    """An explicit exit needs no feature flag; the population is kept with a newcomer 5-20 ticks later."""
    sim = make_sim(agents=4)
    assert not sim.lifecycle.enabled
    sim.enqueue(lambda w: sim.lifecycle.exit(3, "console"))
    events = run(sim, 25)
    exit_tick = of_kind(events, EventKind.AGENT_EXIT)[0].tick
    arrived = of_kind(events, EventKind.AGENT_ARRIVED)
    assert len(arrived) == 1 and 5 <= arrived[0].tick - exit_tick <= 20
    assert int(sim.world.agents.alive.sum()) == 4


def test_spawn_delay_and_exit_cap_are_live_controls(make_sim, run) -> None:
    """spawn_delay=(1, 1) brings the newcomer next tick; exit_cap=0 holds exits until it is raised."""
    sim = make_sim(agents=3, overrides=LIFE)
    lc = sim.lifecycle
    lc.spawn_delay = (1, 1)
    lc.exit_cap = 0
    starve(sim.world, 0)
    events = run(sim, 60)
    assert not of_kind(events, EventKind.AGENT_EXIT)
    assert [(p.slot, p.reason) for p in lc.pending] == [(0, "collapse")]
    assert [e.detail for e in of_kind(events, EventKind.EXIT_PENDING)] == ["collapse"]
    lc.exit_cap = 2
    events = run(sim, 2)
    exits, arrivals = of_kind(events, EventKind.AGENT_EXIT), of_kind(events, EventKind.AGENT_ARRIVED)
    assert [e.detail for e in exits] == ["collapse"] and arrivals[0].tick == exits[0].tick + 1
    assert lc.pending == []


def test_console_exits_bypass_the_guard_but_count_toward_it(make_sim, run) -> None:
    """Two console exits in one tick both happen; then a triggered exit waits for the next day."""
    sim = make_sim(agents=5, overrides=LIFE)
    lc, w = sim.lifecycle, sim.world
    lc.exit(3, "console")
    lc.exit(4, "console")
    assert lc.exits_today == 2 and not lc.allowed_now()
    starve(w, 0)
    events = run(sim, w.ticks_per_day + 5)
    exits = of_kind(events, EventKind.AGENT_EXIT)
    assert [(e.agent, e.detail, e.tick) for e in exits] == [(0, "collapse", w.ticks_per_day)]


def test_mortality_off_stops_automatic_exits_and_drops_pending_ones(make_sim, run) -> None:
    """Switching mortality off clears pending exits and no trigger makes anyone leave."""
    sim = make_sim(agents=3, overrides=LIFE)
    sim.lifecycle.exit_cap = 0
    starve(sim.world, 0)
    run(sim, 40)
    assert sim.lifecycle.pending
    sim.lifecycle.mortality = False
    sim.lifecycle.exit_cap = 2
    events = run(sim, 200)
    assert not of_kind(events, EventKind.AGENT_EXIT) and sim.lifecycle.pending == []


def test_a_pending_exit_of_an_agent_already_gone_is_dropped(make_sim, run) -> None:
    """An agent the console removes while its collapse exit waits does not leave twice."""
    sim = make_sim(agents=3, overrides=LIFE)
    sim.lifecycle.exit_cap = 0
    starve(sim.world, 0)
    run(sim, 40)
    sim.lifecycle.exit(0, "console")
    sim.lifecycle.exit_cap = 2
    events = run(sim, 200)
    assert [e.detail for e in of_kind(events, EventKind.AGENT_EXIT)] == []
    assert sim.lifecycle.exits == {"console": 1}


def test_chronic_unemployment_exit_needs_two_days_without_wages_while_jobs_exist(make_sim, run) -> None:
    """Agents who never work leave for unemployment after 2 days; with no job held or vacant nobody does."""
    only = LIFE + [f"lifecycle.exits.{rule}=false" for rule in ("collapse", "neglect", "eviction")]
    sim = make_sim(agents=2, manual=True, overrides=only)
    tpd = sim.world.ticks_per_day
    events = run(sim, 2 * tpd + 200)
    exits = of_kind(events, EventKind.AGENT_EXIT)
    assert [(e.detail, e.tick) for e in exits] == [("unemployment", 2 * tpd), ("unemployment", 2 * tpd + 120)]
    quiet = make_sim(agents=2, manual=True, overrides=only + ["employment.jobs={}"])
    assert len(quiet.world.employment) == 0
    assert not of_kind(run(quiet, 2 * tpd + 200), EventKind.AGENT_EXIT)


def test_working_agents_never_leave_for_unemployment(make_sim, run) -> None:
    """The scripted town over three days: wages flow, nobody is counted as chronically unemployed."""
    sim = make_sim(seed=0, overrides=LIFE)
    run(sim, 3 * sim.world.ticks_per_day)
    assert sim.lifecycle.exits == {}
    assert (sim.world.economy.last_wage[sim.world.agents.alive] > 2 * sim.world.ticks_per_day).all()


def test_chronic_neglect_exit_after_a_quarter_day_above_0_9(make_sim, run) -> None:
    """Hygiene held above 0.9 for a quarter of a day makes an agent leave for neglect; 0.85 does not."""
    for level, leaves in ((0.95, True), (0.85, False)):
        sim = make_sim(agents=2, manual=True, overrides=LIFE + ["lifecycle.exits.unemployment=false"])
        sim.add_phase("hold", lambda s, lv=level: s.world.agents.needs.__setitem__((0, 1), lv), after="world")
        events = run(sim, 300)
        exits = of_kind(events, EventKind.AGENT_EXIT)
        assert [(e.agent, e.detail) for e in exits] == ([(0, "neglect")] if leaves else [])
        if leaves:
            every = sim.config.lifecycle.check_every  # neglect is sampled every check_every ticks
            assert 250 - every <= exits[0].tick <= 250 + every


def test_age_out_when_switched_on(make_sim, run) -> None:
    """With exits.age_out on and age_out_days=0.1 every agent retires after 100 ticks (two a day)."""
    sim = make_sim(agents=3, overrides=LIFE + ["lifecycle.exits.age_out=true", "lifecycle.age_out_days=0.1"])
    events = run(sim, 240)
    exits = of_kind(events, EventKind.AGENT_EXIT)
    assert [e.detail for e in exits] == ["age_out", "age_out"]
    assert exits[0].tick == 100 and exits[1].tick == 220


def test_eviction_notice_fires_the_near_death_hook_and_recovery_clears_it(make_sim, run) -> None:
    """Two unpaid rents serve a notice (near-death hook); paying the arrears in time ends it without exit."""
    sim = make_sim(agents=2, overrides=LIFE)
    w = sim.world
    near = []
    w.hooks.on("agent_near_death", lambda p: near.append((p.agent, p.detail)))
    w.economy.rent_unpaid_days[1] = 1
    w.economy.transfer_to_treasury(1, w, float(w.agents.wallet[1]), "fees")
    events = run(sim, w.ticks_per_day + 1)
    assert [e.agent for e in of_kind(events, EventKind.EVICTION_NOTICE)] == [1]
    assert near == [("agent_1", "eviction_notice")]
    assert sim.lifecycle.triggers.notice_deadline[1] == 2 * w.ticks_per_day
    w.economy.treasury -= 20
    w.agents.wallet[1] += 20
    events = run(sim, w.ticks_per_day + 10)
    assert not of_kind(events, EventKind.AGENT_EXIT)
    assert sim.lifecycle.triggers.notice_deadline[1] == -1 and w.economy.rent_unpaid_days[1] == 0


def test_facility_exits_wait_out_a_city_wide_outage_but_collapse_does_not(make_sim, run) -> None:
    """With water off everywhere a neglect exit waits (outage + grace); a collapse leaves at once."""
    sim = make_sim(agents=3, manual=True, overrides=LIFE + ["lifecycle.exits.unemployment=false"])
    w = sim.world
    hold = w.agents.needs

    def neglect_0_feed_the_others(s) -> None:
        hold[0, 1] = 0.95
        hold[:2, 0] = 0.0
        hold[w.agents.spawn_tick > 0, 0] = 0.0  # the newcomer too

    sim.add_phase("hold", neglect_0_feed_the_others, after="world")
    w.utilities.set(w, "water", False, until=400)
    starve(w, 2)
    events = run(sim, 400 + w.config.lifecycle.city_event_grace + 2)
    exits = of_kind(events, EventKind.AGENT_EXIT)
    assert [(e.agent, e.detail) for e in exits] == [(2, "collapse"), (0, "neglect")]
    assert exits[0].tick < 100
    assert exits[1].tick == 400 + w.config.lifecycle.city_event_grace, "water back at 400, then the grace window"
    assert sim.lifecycle.suppressed is False


def test_hooks_for_exit_spawn_and_near_death_fire_through_the_registry(make_sim, run) -> None:
    """agent_near_death (collapse), agent_exit and agent_spawn fire, in that order, with the agents' ids."""
    sim = make_sim(agents=2, overrides=LIFE)
    w = sim.world
    log = []
    for event in ("agent_near_death", "agent_exit", "agent_spawn"):
        w.hooks.on(event, lambda p, ev=event: log.append((ev, p.agent, p.detail)))
    starve(w, 0)
    run(sim, 60)
    assert log == [
        ("agent_near_death", "agent_0", "collapse"),
        ("agent_exit", "agent_0", "collapse"),
        ("agent_spawn", "agent_2", ""),
    ]


def test_newcomers_get_fresh_ids_and_rested_embedding_slots(make_sim, run) -> None:
    """Each newcomer gets the next id and an embedding slot nobody released in the last 2,000 ticks."""
    sim = make_sim(agents=3, overrides=LIFE + ["lifecycle.spawn_delay=[1, 1]"])
    w = sim.world
    used = {int(w.identity.of_agent[s]) for s in w.agents.slots()}
    for round_ in range(3):
        sim.lifecycle.exit(0, "console")
        run(sim, 2)
        assert w.agents.ids[0] == f"agent_{3 + round_}"
        slot = int(w.identity.of_agent[0])
        assert slot not in used
        used.add(slot)
    assert w.counters["identity_forced_reuse"] == 0


def test_forced_reuse_of_embedding_slots_is_counted_and_reported(make_sim, run) -> None:
    """With only 3 embedding slots a newcomer must reuse a resting one: counted and an event."""
    sim = make_sim(agents=3, overrides=LIFE + ["identity.embedding_slots=3", "lifecycle.spawn_delay=[1, 1]"])
    sim.lifecycle.exit(1, "console")
    events = run(sim, 2)
    assert sim.world.counters["identity_forced_reuse"] == 1
    assert [e.agent for e in of_kind(events, EventKind.IDENTITY_REUSED)] == [1]


def test_arrival_into_a_full_town_waits_for_a_free_slot(make_sim, run) -> None:
    """Scheduled arrivals beyond capacity wait; they arrive once someone leaves."""
    sim = make_sim(agents=2, overrides=LIFE + ["population.capacity=3"])
    sim.lifecycle.schedule_arrival(0)
    sim.lifecycle.schedule_arrival(0)
    events = run(sim, 3)
    assert len(of_kind(events, EventKind.AGENT_ARRIVED)) == 1 and len(sim.lifecycle.arrivals) == 1
    sim.lifecycle.spawn_delay = (30, 30)
    sim.lifecycle.exit(0, "console")
    events = run(sim, 3)
    assert len(of_kind(events, EventKind.AGENT_ARRIVED)) == 1 and int(sim.world.agents.alive.sum()) == 3


def test_lifecycle_state_is_deterministic_and_part_of_the_state_hash(make_sim, run) -> None:
    """Same seed and inputs give the same hash with exits and arrivals; lifecycle state changes it."""
    hashes = []
    for _ in range(2):
        sim = make_sim(seed=4, overrides=LIFE + ["features.perturbations=on"])
        starve(sim.world, 1)
        run(sim, 1500)
        hashes.append(sim.state_hash())
    assert hashes[0] == hashes[1]
    sim.lifecycle.exit_cap = 7
    assert sim.state_hash() != hashes[1]


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ("lifecycle.spawn_delay=[20, 5]", "lifecycle.spawn_delay"),
        ("lifecycle.exits.sleepy=true", "lifecycle.exits.sleepy"),
        ("lifecycle.neglect_level=1.5", "lifecycle.neglect_level"),
        ("lifecycle.max_exits_per_day=-1", "lifecycle.max_exits_per_day"),
    ],
)
def test_bad_lifecycle_config_names_the_key(override: str, path: str) -> None:
    """Out-of-range or unknown lifecycle settings are refused with the key path."""
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    assert path in str(info.value)
