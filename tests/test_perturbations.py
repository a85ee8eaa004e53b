"""Perturbations: each kind changes the town and restores it, the daily dice, staggering, cooldowns, console."""

from __future__ import annotations

import pytest

from townlet.config import ConfigError, load_config
from townlet.perturbations import CITY_KINDS, KINDS
from townlet.policy.options import Option, option_mask
from townlet.world.agents import Activity
from townlet.world.events import EventKind

EVERY_DAY = ["features.perturbations=on"] + [f"perturbations.{k}.daily_probability=1" for k in KINDS]


def of_kind(events, kind):
    return [e for e in events if e.kind is kind]


def place(world, place_id: str) -> int:
    return world.objects.place_ids.index(place_id)


def test_price_spike_multiplies_a_price_and_restores_it(make_sim, run) -> None:
    """raw_food x1.5 for 50 ticks: the price changes (with events), then comes back exactly."""
    sim = make_sim(agents=2)
    econ = sim.world.economy
    base = econ.price("raw_food")
    p = sim.perturbations.trigger("price_spike", item="raw_food", magnitude=1.5, duration=50)
    assert econ.price("raw_food") == pytest.approx(1.5 * base) and sim.perturbations.active == [p]
    started = of_kind(sim.world.events, EventKind.PERTURBATION_STARTED)
    assert [(e.detail, e.value) for e in started] == [("price_spike:raw_food:1.50", float(p.id))]
    assert of_kind(sim.world.events, EventKind.PRICE_CHANGED)
    events = run(sim, 51)
    ended = of_kind(events, EventKind.PERTURBATION_ENDED)
    assert [(e.tick, e.detail) for e in ended] == [(50, "price_spike:raw_food:1.50")]
    assert econ.price("raw_food") == base and sim.perturbations.active == []


def test_overlapping_spikes_on_one_item_restore_the_original_price_last(make_sim, run) -> None:
    """Two console spikes on cafe_meal: the price follows the one still running, then returns to the base."""
    sim = make_sim(agents=1)
    econ = sim.world.economy
    base = econ.price("cafe_meal")
    sim.perturbations.trigger("price_spike", item="cafe_meal", magnitude=2.0, duration=10)
    sim.perturbations.trigger("price_spike", item="cafe_meal", magnitude=1.5, duration=20)
    assert econ.price("cafe_meal") == pytest.approx(1.5 * base)
    run(sim, 11)
    assert econ.price("cafe_meal") == pytest.approx(1.5 * base)
    run(sim, 10)
    assert econ.price("cafe_meal") == pytest.approx(base)


def test_blackout_cuts_power_everywhere_and_the_town_copes(make_sim, run) -> None:
    """A blackout turns power off in every place (stoves are skipped, cooking fails) and back on at the end."""
    sim = make_sim(agents=8, seed=1)
    w = sim.world
    run(sim, 1200)
    p = sim.perturbations.trigger("blackout", duration=120)  # from tick 1200 (the next) to 1320
    assert not w.utilities.power_on.any() and w.utilities.water_on.all()
    events = run(sim, 121)
    starts = [e for e in of_kind(events, EventKind.AFFORDANCE_STARTED) if e.detail in ("cook_meal", "do_laundry")]
    assert not starts, "nobody starts what needs power"
    assert w.utilities.power_on.all() and not sim.perturbations.active
    assert [e.value for e in of_kind(events, EventKind.PERTURBATION_ENDED)] == [p.id]
    assert sim.kpis.report(w)["collapses"] == 0


def test_water_outage_cuts_water_everywhere_and_masks_showers(make_sim, run) -> None:
    """A water outage turns water off everywhere: GetClean is possible only with clean clothes."""
    sim = make_sim(agents=3, manual=True)
    w, a = sim.world, sim.world.agents
    sim.perturbations.trigger("water_outage", duration=10)
    assert not w.utilities.water_on.any()
    a.inventory[0, a.item_index["clean_clothes"]] = 0
    mask = option_mask(w, a.slots())
    assert not mask[0, Option.GET_CLEAN] and mask[1, Option.GET_CLEAN]
    run(sim, 11)
    assert w.utilities.water_on.all()


def test_closed_facility_makes_its_objects_unusable_but_staff_keep_working(make_sim, run, use_now) -> None:
    """A closed grocer: a shopper there fails ("closed"), nobody can start shopping, the stocker keeps working."""
    sim = make_sim(agents=8, manual=True)
    w, a = sim.world, sim.world.agents
    sim.step()
    grocer = place(w, "grocer")
    shelf = int(w.objects.of_type_in_place("shelf", grocer)[0])
    stocker = next(s for s in a.slots() if w.employment.names[int(a.job[s])] == "stocker")
    shopper = next(s for s in a.slots() if s != stocker)
    job = int(a.job[stocker])
    w.tick = int(w.employment.start[job]) + 1
    use_now(w, stocker, int(w.employment.station[job]), "work")
    use_now(w, shopper, shelf, "pick_groceries")
    run(sim, 2)
    assert a.activity[shopper] == Activity.USING and a.activity[stocker] == Activity.USING
    p = sim.perturbations.trigger("closed_facility", place="grocer", duration=100)
    assert p.target == "grocer" and not w.place_open[grocer]
    failed = of_kind(w.events, EventKind.AFFORDANCE_FAILED)
    assert [(e.agent, e.detail) for e in failed] == [(shopper, "pick_groceries:closed")]
    assert w.objects.user[shelf] == -1 and w.objects.reserved_by[shelf] == -1
    assert a.activity[stocker] == Activity.USING, "staff carry on behind closed doors"
    assert not option_mask(w, a.slots())[:, Option.SHOP_GROCERIES].any()
    use_now(w, shopper, shelf, "pick_groceries")
    events = run(sim, 3)
    assert not [e for e in of_kind(events, EventKind.AFFORDANCE_STARTED) if e.agent == shopper]
    assert a.fail_reason[shopper] == "closed"
    assert sim.controller._choose(shopper, (shelf,)) == -1, "the controller skips closed places"
    run(sim, 100)
    assert w.place_open.all()
    assert sim.controller._choose(shopper, (shelf,)) == shelf


def test_arranged_meet_brings_the_top_rivals_to_a_cafe_table(make_sim, run) -> None:
    """The strongest rivals free to meet both head for café tables, chat with each other, then rest."""
    sim = make_sim(agents=4, seed=0)
    w, a = sim.world, sim.world.agents
    run(sim, 18 * w.ticks_per_day // 24 + 2)  # evening: off work, awake
    for _ in range(3):
        w.relationships.apply_pair(w, 1, 3, "took_my_shift")
    w.relationships.apply_pair(w, 0, 2, "failed_chat")
    assert sim.perturbations.top_rivals(w) in ((1, 3), (3, 1))
    p = sim.perturbations.trigger("arranged_meet")
    assert set(p.agents) == {1, 3} and p.target == "cafe"
    started = of_kind(w.events, EventKind.PERTURBATION_STARTED)
    assert {started[0].agent, started[0].other} == {1, 3}
    tables = set(w.objects.of_type_in_kind("table", "cafe").tolist())
    for slot in (1, 3):
        assert a.option[slot] == Option.SOCIALISE and int(a.target_obj[slot]) in tables
    events = run(sim, 120)
    chats = [e for e in of_kind(events, EventKind.CHAT) if {e.agent, e.other} == {1, 3}]
    assert chats, "the rivals talked"
    assert (sim.perturbations.cooldown_until[[1, 3]] > w.tick).all()
    assert sim.perturbations.top_rivals(w) not in ((1, 3), (3, 1)), "both rest before being picked again"


def test_arranged_meet_with_no_rivals_has_nothing_to_act_on(make_sim) -> None:
    """Without rival ties the console is told there is nothing to act on; explicit agents still work."""
    sim = make_sim(agents=3)
    with pytest.raises(ValueError, match="nothing to act on"):
        sim.perturbations.trigger("arranged_meet")
    p = sim.perturbations.trigger("arranged_meet", agents=("agent_0", 2), place="cafe")
    assert p.agents == (0, 2)


def test_daily_dice_schedule_inside_the_window_and_stagger_city_events(make_sim, run) -> None:
    """With probability 1 every kind is rolled each day inside the window; city events never overlap."""
    short = [f"perturbations.{k}.duration=[50, 150]" for k in CITY_KINDS]
    sim = make_sim(agents=8, seed=2, overrides=EVERY_DAY + short)
    w = sim.world
    tpd = w.ticks_per_day
    sim.step()
    lo, hi = 7 * tpd // 24, 21 * tpd // 24
    assert sorted(k for _, k in sim.perturbations.scheduled) == sorted(KINDS)
    assert all(lo <= t <= hi for t, _ in sim.perturbations.scheduled)
    events = run(sim, 3 * tpd)
    started = of_kind(events, EventKind.PERTURBATION_STARTED)
    ended = {e.value: e.tick for e in of_kind(events, EventKind.PERTURBATION_ENDED)}
    kinds = [e.detail.split(":")[0] for e in started]
    for kind in CITY_KINDS:
        assert kinds.count(kind) >= 2, kinds
    today = (w.tick - 1) // tpd
    assert all(t // tpd == today for t, _ in sim.perturbations.scheduled), "nothing is carried over from past days"
    city = sorted((e.tick, ended.get(e.value, 10**9)) for e in started if e.detail.split(":")[0] in CITY_KINDS)
    gap = w.config.perturbations.stagger_gap
    for (_, end), (start, _) in zip(city, city[1:], strict=False):
        assert start >= end + gap, city


def test_perturbations_are_locked_out_unless_switched_on_but_the_console_still_works(make_sim, run) -> None:
    """Default config: nothing is rolled over two days; a console trigger still starts at once."""
    sim = make_sim(agents=2, overrides=[f"perturbations.{k}.daily_probability=1" for k in KINDS])
    assert not sim.perturbations.enabled
    events = run(sim, 2 * sim.world.ticks_per_day)
    assert not of_kind(events, EventKind.PERTURBATION_STARTED) and not sim.perturbations.scheduled
    sim.enqueue(lambda w: sim.perturbations.trigger("blackout", duration=5))  # as the console does
    events = run(sim, 1)
    assert [e.detail for e in of_kind(events, EventKind.PERTURBATION_STARTED)] == ["blackout:all"]
    assert sim.kpis.report(sim.world)["perturbation_kinds"] == {"blackout": 1}


def test_curriculum_stages_lock_perturbations_before_m3(loaded) -> None:
    """Stages M0-M2 keep perturbations off; M3 and later switch them on."""
    for stage, on in (("M0", "off"), ("M1", "off"), ("M2", "off"), ("M3", "on"), ("M5", "on")):
        assert load_config(overrides=[f"stage={stage}"]).config.features.perturbations == on


def test_cancel_ends_a_perturbation_early_and_restores_the_town(make_sim) -> None:
    """cancel(id) ends it now (with an end event); an unknown id is refused with False."""
    sim = make_sim(agents=1)
    w = sim.world
    p = sim.perturbations.trigger("closed_facility", place="cafe", duration=500)
    assert not w.place_open[place(w, "cafe")]
    assert sim.perturbations.cancel(p.id) is True
    assert w.place_open.all() and sim.perturbations.active == []
    assert [e.value for e in of_kind(w.events, EventKind.PERTURBATION_ENDED)] == [p.id]
    assert sim.perturbations.cancel(p.id) is False


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("earthquake", {}, "unknown perturbation"),
        ("blackout", {"item": "raw_food"}, "takes duration"),
        ("price_spike", {"item": "caviar"}, "unknown item"),
        ("price_spike", {"magnitude": -1.0}, "magnitude"),
        ("closed_facility", {"place": "moon"}, "no place"),
        ("arranged_meet", {"agents": (1, 1)}, "two different agents"),
        ("blackout", {"duration": 0}, "duration"),
    ],
)
def test_console_triggers_are_validated(make_sim, kind, params, message) -> None:
    """Unknown kinds, parameters, items, places and bad values are refused with a clear message."""
    sim = make_sim(agents=3)
    with pytest.raises(ValueError, match=message):
        sim.perturbations.trigger(kind, **params)
    assert sim.perturbations.active == []


def test_unknown_targets_in_the_config_name_the_key(loaded) -> None:
    """A price spike on an unknown item or a closure of a missing place kind stops start-up with the key path."""
    from townlet.sim import Simulation

    for override, path in (
        ("perturbations.price_spike.targets=[caviar]", "perturbations.price_spike.targets"),
        ("perturbations.closed_facility.targets=[zoo]", "perturbations.closed_facility.targets"),
    ):
        with pytest.raises(ConfigError) as info:
            Simulation(load_config(overrides=[override]))
        assert path in str(info.value)


def test_schedules_are_deterministic_and_in_the_state_hash(make_sim, run) -> None:
    """Same seed, same perturbations; a running perturbation is part of the state hash."""
    runs = []
    for _ in range(2):
        sim = make_sim(agents=4, seed=5, overrides=EVERY_DAY)
        events = run(sim, 2000)
        runs.append(([(e.tick, e.detail) for e in of_kind(events, EventKind.PERTURBATION_STARTED)], sim.state_hash()))
    assert runs[0] == runs[1] and runs[0][0]
    before = sim.state_hash()
    sim.perturbations.trigger("water_outage", duration=30)
    assert sim.state_hash() != before
