"""Tests for the affordance manifest: schema errors, precondition expressions, and the partial-effect rule."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from townlet.config import ConfigError
from townlet.config.loader import DEFAULTS_DIR
from townlet.world.affordances import compile_condition
from townlet.world.agents import Activity
from townlet.world.events import EventKind
from townlet.world.needs import ENERGY, HUNGER, HYGIENE

NO_DECAY = [f"needs.decay.{need}=0" for need in ("hunger", "hygiene", "energy", "social")]
# A home "sauna": per-tick energy relief while powered, and every kind of completion effect.
SAUNA = {
    "object": "shower",
    "place": "home",
    "duration": 20,
    "requires": ["power"],
    "preconditions": ["own_home"],
    "per_tick": {"energy": -0.01},
    "needs": {"hygiene": -0.5},
    "inventory": {"clean_clothes": 1},
    "pay": 1.0,
}
# A checkout that needs power the whole time it runs.
POWERED_TILL = {
    "object": "till",
    "place": "grocer",
    "duration": 10,
    "requires": ["power"],
    "buy": {"item": "raw_food", "qty": 2},
}


def obj_in(world, obj_type: str, place_id: str) -> int:
    return int(world.objects.of_type_in_place(obj_type, world.objects.place_ids.index(place_id))[0])


def condition(world, text: str):
    return compile_condition(text, set(world.agents.items), ("test", "expr"))


def manifest_error(make_sim, write_manifest, entry: dict) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        make_sim(agents=1, overrides=[write_manifest({"bad": entry})])
    return info.value


# --- the shipped manifest -------------------------------------------------------------------------


def test_shipped_manifest_compiles(make_sim) -> None:
    """The shipped affordances.yaml compiles into a manifest with the everyday affordances."""
    manifest = make_sim(agents=1).world.manifest
    for aff_id in ("cook_meal", "snack", "order_meal", "eat_meal", "shower", "sleep", "checkout", "work", "chat_bench"):
        assert aff_id in manifest.by_id
    assert [a.index for a in manifest.affordances] == list(range(len(manifest)))
    assert manifest.per_tick.shape == (len(manifest), 4)
    data = (DEFAULTS_DIR / "affordances.yaml").read_bytes()
    assert manifest.checksum == hashlib.sha256(data).hexdigest()


def test_shipped_entries_compile_to_their_declared_effects(make_sim) -> None:
    """cook_meal, sleep and work carry the durations, effects and stop rules written in the YAML."""
    world = make_sim(agents=1).world
    cook, sleep, work = (world.manifest.by_id[k] for k in ("cook_meal", "sleep", "work"))
    assert (cook.object_type, cook.place_kind, cook.duration) == ("stove", "home", 18)
    assert cook.requires_power and not cook.requires_water
    assert cook.needs[HUNGER] == pytest.approx(-0.7)
    assert cook.inventory == {"raw_food": -1}
    assert cook.hooks == {"after": ("count_meal",)}
    assert sleep.asleep and sleep.until_clock == 250
    assert sleep.per_tick[ENERGY] == pytest.approx(-0.0032)
    assert work.wage and work.until_shift_end
    assert world.manifest.wage[work.index] and not world.manifest.wage[cook.index]


# --- preconditions against a real world -----------------------------------------------------------


def test_inventory_and_power_precondition(make_sim) -> None:
    """``inventory.raw_food >= 1 and power_on`` needs both the food and power at the object's place."""
    world = make_sim(agents=1, manual=True).world
    stove, cond = obj_in(world, "stove", "home_0"), condition(world, "inventory.raw_food >= 1 and power_on")
    raw = world.agents.item_index["raw_food"]
    assert world.agents.inventory[0, raw] >= 1
    assert cond(world, 0, stove)
    world.utilities.set(world, "power", False, int(world.objects.place[stove]))
    assert not cond(world, 0, stove)
    world.utilities.set(world, "power", True, int(world.objects.place[stove]))
    world.agents.inventory[0, raw] = 0
    assert not cond(world, 0, stove)


def test_power_precondition_looks_at_the_objects_place(make_sim) -> None:
    """A power cut at another place does not affect ``power_on`` for this object."""
    world = make_sim(agents=1, manual=True).world
    stove = obj_in(world, "stove", "home_0")
    world.utilities.set(world, "power", False, world.objects.place_ids.index("home_1"))
    assert condition(world, "power_on")(world, 0, stove)


def test_wallet_against_scaled_price_precondition(make_sim) -> None:
    """``wallet >= price.cafe_meal * 2`` compares the wallet with twice the current price."""
    world = make_sim(agents=1, manual=True).world
    counter, cond = int(world.objects.by_type["counter_service"][0]), condition(world, "wallet >= price.cafe_meal * 2")
    world.agents.wallet[0] = 3.0
    assert cond(world, 0, counter)
    world.agents.wallet[0] = 2.99
    assert not cond(world, 0, counter)
    world.economy.set_price(world, "cafe_meal", 1.0)
    assert cond(world, 0, counter)


def test_not_own_home_precondition(make_sim) -> None:
    """``not own_home`` is false at the agent's own stove and true at a neighbour's."""
    world = make_sim(agents=2, manual=True).world
    cond = condition(world, "not own_home")
    assert world.agents.home[0] != world.agents.home[1]
    mine = int(world.objects.of_type_in_place("stove", int(world.agents.home[0]))[0])
    theirs = int(world.objects.of_type_in_place("stove", int(world.agents.home[1]))[0])
    assert not cond(world, 0, mine)
    assert cond(world, 0, theirs)


def test_stock_precondition_reads_the_shop_of_the_object(make_sim) -> None:
    """``stock.raw_food`` is the grocer's stock at a grocer object and 0 anywhere that sells none."""
    world = make_sim(agents=1, manual=True).world
    shelf, stove = obj_in(world, "shelf", "grocer"), obj_in(world, "stove", "home_0")
    full = condition(world, "stock.raw_food >= 60")
    assert full(world, 0, shelf)
    assert not condition(world, "stock.raw_food >= 1")(world, 0, stove)
    world.economy.stock[world.objects.place_ids.index("grocer")]["raw_food"] = 59
    assert not full(world, 0, shelf)


def test_need_comparison_precondition(make_sim) -> None:
    """Need names compare against their current deficit (``hunger > 0.5``)."""
    world = make_sim(agents=1, manual=True).world
    bed, cond = obj_in(world, "bed", "home_0"), condition(world, "hunger > 0.5 and energy <= 0.35")
    world.agents.needs[0, [HUNGER, ENERGY]] = [0.6, 0.35]
    assert cond(world, 0, bed)
    world.agents.needs[0, HUNGER] = 0.5
    assert not cond(world, 0, bed)


def test_failing_precondition_names_the_first_that_fails(make_sim) -> None:
    """An affordance reports the text of its first failing precondition, None when all hold."""
    world = make_sim(agents=1, manual=True).world
    cook, stove = world.manifest.by_id["cook_meal"], obj_in(world, "stove", "home_0")
    assert cook.failing_precondition(world, 0, stove) is None
    world.agents.inventory[0, world.agents.item_index["raw_food"]] = 0
    assert cook.failing_precondition(world, 0, stove) == "inventory.raw_food >= 1"


def test_affordance_with_a_failing_precondition_does_not_start(make_sim, use_now, run) -> None:
    """Arriving at the stove with no raw food fails the step and leaves the stove free."""
    sim = make_sim(agents=1, manual=True)
    world = sim.world
    stove = obj_in(world, "stove", "home_0")
    world.agents.inventory[0, world.agents.item_index["raw_food"]] = 0
    use_now(world, 0, stove, "cook_meal")
    events = run(sim, 2)
    assert not [e for e in events if e.kind == EventKind.AFFORDANCE_STARTED]
    assert world.agents.fail_reason[0] == "precondition: inventory.raw_food >= 1"
    assert world.objects.reserved_by[stove] == -1 and world.objects.user[stove] == -1


# --- bad manifests name the file and the field ----------------------------------------------------

GOOD = {"object": "stove", "duration": 5}


@pytest.mark.parametrize(
    "entry, field, message",
    [
        (GOOD | {"colour": "red"}, "affordances.bad.colour", "unknown key"),
        (GOOD | {"object": "spaceship"}, "affordances.bad.object", "spaceship"),
        (GOOD | {"inventory": {"gold": 1}}, "affordances.bad.inventory.gold", "gold"),
        (GOOD | {"preconditions": ["wallet $ 3"]}, "affordances.bad.preconditions[0]", "cannot parse"),
        (GOOD | {"preconditions": ["wallet >="]}, "affordances.bad.preconditions[0]", "left OP right"),
        (GOOD | {"preconditions": ["own_home", "is_raining"]}, "affordances.bad.preconditions[1]", "unknown flag"),
        (GOOD | {"preconditions": ["stock.gold >= 1"]}, "affordances.bad.preconditions[0]", "stock.gold"),
        (GOOD | {"duration": 0}, "affordances.bad.duration", ""),
        ({"object": "stove"}, "affordances.bad.duration", ""),
        (GOOD | {"needs": {"happiness": -0.5}}, "affordances.bad.needs.happiness", ""),
        (GOOD | {"per_tick": {"energy": 0.5}}, "affordances.bad.per_tick.energy", ""),
        (GOOD | {"requires": ["gas"]}, "affordances.bad.requires.0", ""),
        (GOOD | {"place": "moon"}, "affordances.bad.place", ""),
        (GOOD | {"buy": {"item": "gold", "qty": 1}}, "affordances.bad.buy", ""),
        (GOOD | {"until": {"clock": "25:00"}}, "affordances.bad.until.clock", "HH:MM"),
        (GOOD | {"until": {"need": "happiness", "below": 0.1}}, "affordances.bad.until", ""),
        (GOOD | {"hooks": {"during": ["count_meal"]}}, "affordances.bad.hooks.during", ""),
    ],
)
def test_bad_manifest_entry_names_file_and_field(
    make_sim, write_manifest, entry: dict, field: str, message: str
) -> None:
    """Each kind of mistake in an entry is a ConfigError naming the manifest file and ``affordances.<id>.<field>``."""
    err = manifest_error(make_sim, write_manifest, entry)
    assert Path(err.file).name == "affordances.yaml" and Path(err.file).parent != DEFAULTS_DIR
    assert err.field == field
    assert message in err.message


def test_unknown_hook_name_is_refused_when_loaded_into_a_world(make_sim, write_manifest) -> None:
    """An affordance naming a hook that no allow-listed module registered fails with its hooks field."""
    err = manifest_error(make_sim, write_manifest, GOOD | {"hooks": {"after": ["count_meal", "no_such_hook"]}})
    assert err.field == "affordances.bad.hooks.after"
    assert "no_such_hook" in err.message


def test_manifest_without_the_affordances_key_is_refused(make_sim, write_yaml) -> None:
    """A manifest whose top level is not ``affordances:`` names the file."""
    path = write_yaml("odd.yaml", {"actions": {"x": GOOD}})
    with pytest.raises(ConfigError) as info:
        make_sim(agents=1, overrides=[f"affordances={path}"])
    assert Path(info.value.file).resolve() == path.resolve()


def test_empty_manifest_is_refused(make_sim, write_yaml) -> None:
    """A manifest that declares no affordances at all is an error on ``affordances``."""
    path = write_yaml("empty.yaml", {"affordances": {}})
    with pytest.raises(ConfigError) as info:
        make_sim(agents=1, overrides=[f"affordances={path}"])
    assert info.value.field == "affordances"


def test_manifest_yaml_syntax_error_names_file_and_line(make_sim, write_yaml) -> None:
    """A syntax error in the manifest names the manifest file and the line."""
    path = write_yaml("broken.yaml", "affordances:\n  snack:\n    object: fridge\n    duration: [6\n")
    with pytest.raises(ConfigError) as info:
        make_sim(agents=1, overrides=[f"affordances={path}"])
    assert Path(info.value.file).resolve() == path.resolve()
    assert info.value.field.startswith("line ")


# --- the partial-effect rule ----------------------------------------------------------------------


def sauna_sim(make_sim, write_manifest):
    sim = make_sim(agents=1, manual=True, overrides=[*NO_DECAY, write_manifest({"sauna": SAUNA})])
    sim.world.agents.needs[0, [HYGIENE, ENERGY]] = [0.5, 0.5]
    return sim


def test_completed_affordance_applies_every_effect(make_sim, write_manifest, use_now, run) -> None:
    """On completion the per-tick effects have accrued and needs, inventory and payment all apply."""
    sim = sauna_sim(make_sim, write_manifest)
    world, shower = sim.world, obj_in(sim.world, "shower", "home_0")
    clothes = world.agents.item_index["clean_clothes"]
    before_clothes, before_treasury = int(world.agents.inventory[0, clothes]), world.economy.treasury
    use_now(world, 0, shower, "sauna")
    events = run(sim, 20)
    assert [e.detail for e in events if e.kind == EventKind.AFFORDANCE_COMPLETED] == ["sauna"]
    assert world.agents.needs[0, ENERGY] == pytest.approx(0.5 - 20 * 0.01, abs=1e-5)
    assert world.agents.needs[0, HYGIENE] == pytest.approx(0.0, abs=1e-6)
    assert world.agents.inventory[0, clothes] == before_clothes + 1
    assert world.agents.wallet[0] == pytest.approx(6.0 - 1.0)  # a starting wallet of 1.5 rents
    assert world.economy.treasury == pytest.approx(before_treasury + 1.0)


def test_failed_affordance_keeps_per_tick_effects_but_no_completion_effects(
    make_sim, write_manifest, use_now, run
) -> None:
    """A power cut mid-way keeps the energy already gained but applies no needs, inventory or payment."""
    sim = sauna_sim(make_sim, write_manifest)
    world, shower = sim.world, obj_in(sim.world, "shower", "home_0")
    clothes = world.agents.item_index["clean_clothes"]
    before_clothes, before_treasury = int(world.agents.inventory[0, clothes]), world.economy.treasury
    use_now(world, 0, shower, "sauna")
    run(sim, 8)
    world.utilities.set(world, "power", False, int(world.agents.home[0]))
    events = run(sim, 1)
    assert [e.detail for e in events if e.kind == EventKind.AFFORDANCE_FAILED] == ["sauna:power_lost"]
    energy = float(world.agents.needs[0, ENERGY])
    assert 0.5 - 9 * 0.01 - 1e-5 <= energy <= 0.5 - 8 * 0.01 + 1e-5
    assert world.agents.needs[0, HYGIENE] == pytest.approx(0.5)
    assert world.agents.inventory[0, clothes] == before_clothes
    assert world.agents.wallet[0] == pytest.approx(6.0)
    assert world.economy.treasury == pytest.approx(before_treasury)


def test_failed_affordance_leaves_nothing_occupied(make_sim, write_manifest, use_now, run) -> None:
    """After a mid-way failure the object has no reservation or user and the agent is idle with a failed step."""
    sim = sauna_sim(make_sim, write_manifest)
    world, shower = sim.world, obj_in(sim.world, "shower", "home_0")
    use_now(world, 0, shower, "sauna")
    run(sim, 5)
    assert world.objects.user[shower] == 0
    world.utilities.set(world, "power", False, int(world.agents.home[0]))
    run(sim, 1)
    assert world.objects.reserved_by[shower] == -1 and world.objects.user[shower] == -1
    assert world.agents.activity[0] == Activity.IDLE
    assert world.agents.step_failed[0] and world.agents.fail_reason[0] == "power_lost"
    assert not world.agents.asleep[0]


def test_failed_purchase_buys_nothing(make_sim, write_manifest, use_now, run) -> None:
    """A purchase interrupted by a power cut moves no money and no stock."""
    sim = make_sim(agents=1, manual=True, overrides=[write_manifest({"powered_till": POWERED_TILL})])
    world, till = sim.world, obj_in(sim.world, "till", "grocer")
    grocer = world.objects.place_ids.index("grocer")
    raw = world.agents.item_index["raw_food"]
    before = (
        float(world.agents.wallet[0]),
        world.economy.till[grocer],
        world.economy.stock[grocer]["raw_food"],
        int(world.agents.inventory[0, raw]),
    )
    use_now(world, 0, till, "powered_till")
    run(sim, 4)
    world.utilities.set(world, "power", False, grocer)
    events = run(sim, 2)
    assert [e.detail for e in events if e.kind == EventKind.AFFORDANCE_FAILED] == ["powered_till:power_lost"]
    assert not [e for e in events if e.kind == EventKind.PURCHASE]
    after = (
        float(world.agents.wallet[0]),
        world.economy.till[grocer],
        world.economy.stock[grocer]["raw_food"],
        int(world.agents.inventory[0, raw]),
    )
    assert after == before


def test_water_cut_during_a_shower_charges_no_fee(make_sim, use_now, run) -> None:
    """The shipped shower fails on a water cut without charging its fee or cleaning the agent."""
    sim = make_sim(agents=1, manual=True, overrides=NO_DECAY)
    world, shower = sim.world, obj_in(sim.world, "shower", "home_0")
    world.agents.needs[0, HYGIENE] = 0.9
    use_now(world, 0, shower, "shower")
    run(sim, 6)
    world.utilities.set(world, "water", False, int(world.agents.home[0]))
    events = run(sim, 1)
    assert [e.detail for e in events if e.kind == EventKind.AFFORDANCE_FAILED] == ["shower:water_lost"]
    assert world.agents.wallet[0] == pytest.approx(6.0)
    assert world.agents.needs[0, HYGIENE] == pytest.approx(0.9)


def test_until_need_stops_an_affordance_early(make_sim, write_manifest, use_now, run) -> None:
    """``until: {need: energy, below: 0.3}`` completes as soon as energy drops below 0.3, before the duration."""
    rest = {
        "object": "bed",
        "place": "home",
        "duration": 200,
        "per_tick": {"energy": -0.05},
        "until": {"need": "energy", "below": 0.3},
    }
    sim = make_sim(agents=1, manual=True, overrides=[*NO_DECAY, write_manifest({"rest": rest})])
    world = sim.world
    world.agents.needs[0, ENERGY] = 0.52
    use_now(world, 0, obj_in(world, "bed", "home_0"), "rest")
    events = run(sim, 10)
    done = [e for e in events if e.kind == EventKind.AFFORDANCE_COMPLETED]
    assert [e.detail for e in done] == ["rest"]
    assert done[0].tick - events[0].tick < 10
    assert float(world.agents.needs[0, ENERGY]) <= 0.3 + 1e-6
    assert world.agents.last_duration[0] == 5  # 0.52 - 5 * 0.05 is the first value below 0.3
