"""Tests for options: the action mask, the scripted controllers' plans, and the commitment window."""

from __future__ import annotations

import numpy as np
import pytest

from townlet.config.loader import load_config
from townlet.config.models import clock_to_tick
from townlet.policy.controller import OptionController
from townlet.policy.options import OPTION_COUNT, Option, option_mask
from townlet.sim import Simulation
from townlet.world.agents import Activity
from townlet.world.events import EventKind
from townlet.world.needs import HUNGER
from townlet.world.rng import RngStreams
from townlet.world.state import World


def make_world(*overrides: str, agents: int = 2) -> World:
    """A world whose agents are spawned at home; nobody is hired yet (employment has not run)."""
    world = World(load_config(overrides=[f"population.agents={agents}", *overrides]), RngStreams(0))
    for _ in range(agents):
        world.spawn()
    return world


def make_sim(*overrides: str, agents: int = 2, seed: int = 0) -> Simulation:
    return Simulation(load_config(overrides=[f"population.agents={agents}", *overrides]), seed=seed)


def mask_of(world: World, slot: int = 0) -> np.ndarray:
    return option_mask(world, np.array([slot]))[0]


def item(world: World, slot: int, name: str, count: int | None = None) -> int:
    col = world.agents.item_index[name]
    if count is not None:
        world.agents.inventory[slot, col] = count
    return int(world.agents.inventory[slot, col])


def place(world: World, place_id: str) -> int:
    return world.objects.place_ids.index(place_id)


# --- the mask ------------------------------------------------------------------------------------


def test_no_job_masks_go_to_work() -> None:
    """An unemployed agent cannot choose GoToWork."""
    world = make_world()
    assert world.agents.job[0] == -1
    assert not mask_of(world)[Option.GO_TO_WORK]


def test_go_to_work_is_open_from_early_arrival_until_shift_end() -> None:
    """With a job, GoToWork is allowed from early_arrival before the shift until its end, masked otherwise."""
    world = make_world()
    emp = world.employment
    emp.hire(world, 0, 0)
    start, end, early = int(emp.start[0]), int(emp.end[0]), world.config.employment.early_arrival
    for tod, allowed in (
        (start - early - 1, False),
        (start - early, True),
        (start, True),
        (end - 2, True),
        (end, False),
        (0, False),
    ):
        world.tick = 3 * world.ticks_per_day + tod
        assert mask_of(world)[Option.GO_TO_WORK] == allowed, tod


def test_no_food_and_no_money_masks_get_fed() -> None:
    """GetFed is masked with neither food nor money for a meal, and allowed with either."""
    world = make_world()
    for name in ("raw_food", "cafe_meal"):
        item(world, 0, name, 0)
    world.agents.wallet[0] = 0.0
    assert not mask_of(world)[Option.GET_FED]
    item(world, 0, "raw_food", 1)
    assert mask_of(world)[Option.GET_FED]
    item(world, 0, "raw_food", 0)
    item(world, 0, "cafe_meal", 1)
    assert mask_of(world)[Option.GET_FED]
    item(world, 0, "cafe_meal", 0)
    world.agents.wallet[0] = world.economy.price("cafe_meal")
    assert mask_of(world)[Option.GET_FED]


def test_money_without_cafe_stock_masks_get_fed() -> None:
    """Money alone does not allow GetFed when the café has nothing left to sell."""
    world = make_world()
    for name in ("raw_food", "cafe_meal"):
        item(world, 0, name, 0)
    world.agents.wallet[0] = 100.0
    world.economy.stock[place(world, "cafe")]["cafe_meal"] = 0
    assert not mask_of(world)[Option.GET_FED]


def test_shop_groceries_needs_money_and_grocer_stock() -> None:
    """ShopGroceries is allowed with the price of raw food in the wallet, masked when broke or sold out."""
    world = make_world()
    assert mask_of(world)[Option.SHOP_GROCERIES]
    world.agents.wallet[0] = 0.0
    assert not mask_of(world)[Option.SHOP_GROCERIES]
    world.agents.wallet[0] = 10.0
    world.economy.stock[place(world, "grocer")]["raw_food"] = 0
    assert not mask_of(world)[Option.SHOP_GROCERIES]


def test_relationships_off_masks_socialise() -> None:
    """Socialise is masked at relationship stage OFF, and allowed at stage B with someone to talk to."""
    assert not mask_of(make_world("features.relationships='OFF'"))[Option.SOCIALISE]
    assert mask_of(make_world())[Option.SOCIALISE]


def test_alone_in_town_masks_socialise() -> None:
    """With nobody else in town there is nobody to socialise with."""
    assert not mask_of(make_world(agents=1))[Option.SOCIALISE]


def test_idle_is_always_allowed() -> None:
    """Idle is never masked, whatever the agent's money, food, job or the town's state."""
    world = make_world("features.relationships='OFF'", agents=4)
    a = world.agents
    a.wallet[:4] = 0.0
    a.inventory[:4] = 0
    world.utilities.set(world, "water", False)
    world.utilities.set(world, "power", False)
    for stock in world.economy.stock.values():
        for name in stock:
            stock[name] = 0
    mask = option_mask(world)
    assert mask.shape == (4, OPTION_COUNT)
    assert mask[:, Option.IDLE].all()
    assert not mask[:, [Option.GET_FED, Option.GO_TO_WORK, Option.SHOP_GROCERIES, Option.SOCIALISE]].any()


def test_simulation_masks_cover_every_slot() -> None:
    """Simulation.masks() has a row per slot: living agents get their mask, empty slots are all False."""
    sim = make_sim(agents=3)
    masks = sim.masks()
    assert masks.shape == (sim.world.agents.capacity, OPTION_COUNT)
    assert masks[:3, Option.IDLE].all() and not masks[3:].any()


# --- scripted plans ------------------------------------------------------------------------------


def plan_of(world: World, slot: int, option: Option) -> list[tuple[str, tuple[str, ...]]]:
    """The plan as (affordance id, candidate object ids) per step."""
    ctl = OptionController(world)
    return [
        (world.manifest.affordances[s.aff].id, tuple(world.objects.ids[o] for o in s.candidates))
        for s in ctl.plan(slot, option)
    ]


def home_of(world: World, slot: int) -> str:
    return world.objects.place_ids[int(world.agents.home[slot])]


def test_get_fed_cooks_at_home_with_food_and_power() -> None:
    """An agent at home with raw food and power plans to cook at its own stove."""
    world = make_world()
    assert item(world, 0, "raw_food") >= 1
    assert plan_of(world, 0, Option.GET_FED) == [("cook_meal", (f"{home_of(world, 0)}.stove.0",))]


def test_get_fed_snacks_without_power() -> None:
    """With raw food but no power at home, the plan is a snack from the agent's own fridge."""
    world = make_world()
    world.utilities.set(world, "power", False, int(world.agents.home[0]))
    assert plan_of(world, 0, Option.GET_FED) == [("snack", (f"{home_of(world, 0)}.fridge.0",))]


def test_get_fed_goes_to_the_cafe_without_food() -> None:
    """Without food but with money, the plan is to order at the café counter and eat at a café table."""
    world = make_world()
    item(world, 0, "raw_food", 0)
    steps = plan_of(world, 0, Option.GET_FED)
    assert [aff for aff, _ in steps] == ["order_meal", "eat_meal"]
    assert steps[0][1] == ("cafe.counter_service.0",)
    assert steps[1][1] and all(o.startswith("cafe.table.") for o in steps[1][1])


def test_get_fed_eats_a_bought_meal_at_the_cafe() -> None:
    """An agent already holding a café meal just eats it at a café table."""
    world = make_world()
    item(world, 0, "cafe_meal", 1)
    assert [aff for aff, _ in plan_of(world, 0, Option.GET_FED)] == ["eat_meal"]


def test_get_fed_has_no_plan_without_food_or_money() -> None:
    """With neither food nor money there is no plan, and starting it fails at once."""
    world = make_world()
    item(world, 0, "raw_food", 0)
    world.agents.wallet[0] = 0.0
    assert plan_of(world, 0, Option.GET_FED) == []
    ctl = OptionController(world)
    assert not ctl.start(0, Option.GET_FED)
    assert world.agents.option[0] == -1
    failed = [e for e in world.events if e.kind is EventKind.OPTION_FAILED]
    assert failed and failed[-1].detail == "GetFed:no_plan"


def test_get_clean_uses_watered_showers_then_clothes_or_laundry() -> None:
    """GetClean showers where there is water, then changes clothes if it has some, else does laundry."""
    world = make_world()
    home = home_of(world, 0)
    steps = plan_of(world, 0, Option.GET_CLEAN)
    assert [aff for aff, _ in steps] == ["shower", "change_clothes"]
    assert f"{home}.shower.0" in steps[0][1] and "gym.shower.0" in steps[0][1]
    world.utilities.set(world, "water", False, int(world.agents.home[0]))
    item(world, 0, "clean_clothes", 0)
    steps = plan_of(world, 0, Option.GET_CLEAN)
    assert [aff for aff, _ in steps] == ["shower"], "no laundry without water at home"
    assert f"{home}.shower.0" not in steps[0][1] and set(steps[0][1]) == {"gym.shower.0", "gym.shower.1"}
    world.utilities.set(world, "water", True, int(world.agents.home[0]))
    assert [aff for aff, _ in plan_of(world, 0, Option.GET_CLEAN)] == ["shower", "do_laundry"]


def test_sleep_is_a_night_sleep_at_night_and_a_nap_by_day() -> None:
    """Sleep plans a full night's sleep in the agent's own bed at night, a nap during the day."""
    world = make_world()
    bed = (f"{home_of(world, 0)}.bed.0",)
    assert plan_of(world, 0, Option.SLEEP) == [("sleep", bed)]
    world.tick = clock_to_tick("13:00", world.ticks_per_day)
    assert plan_of(world, 0, Option.SLEEP) == [("nap", bed)]


def test_go_to_work_plans_the_agents_own_station() -> None:
    """GoToWork sends an employed agent to its own workstation; an unemployed one has no plan."""
    world = make_world()
    assert plan_of(world, 0, Option.GO_TO_WORK) == []
    world.employment.hire(world, 0, 2)
    station = world.objects.ids[int(world.employment.station[2])]
    assert plan_of(world, 0, Option.GO_TO_WORK) == [("work", (station,))]


def test_scripted_get_fed_cooks_and_eats_at_home() -> None:
    """Driven through the simulation, GetFed at home ends with a cooked meal and much lower hunger."""
    sim = make_sim(agents=1)
    a = sim.world.agents
    a.needs[0, HUNGER] = 0.8
    actions = np.full(a.capacity, -1)
    actions[0] = Option.GET_FED
    completed = []
    for _ in range(60):
        completed += [e.detail for e in sim.step(actions).events if e.kind is EventKind.AFFORDANCE_COMPLETED]
        if completed:
            break
    assert completed == ["cook_meal"]
    assert a.needs[0, HUNGER] < 0.3


# --- commitment window and external actions ------------------------------------------------------


def external(sim: Simulation, slot: int, option: int) -> np.ndarray:
    actions = np.full(sim.world.agents.capacity, -1)
    actions[slot] = option
    return actions


def test_commitment_window_blocks_an_external_switch_for_15_ticks() -> None:
    """After choosing Sleep, a switch to Idle is masked (ignored, counted) until the commitment window has passed."""
    sim = make_sim()
    a, window = sim.world.agents, sim.config.options.commitment_window
    assert window == 15
    sim.step(external(sim, 0, Option.SLEEP))
    assert a.option[0] == Option.SLEEP
    switched_at = None
    for _ in range(window + 5):
        tick = sim.tick
        sim.step(external(sim, 0, Option.IDLE))
        if a.option[0] == Option.IDLE:
            switched_at = tick
            break
        assert a.option[0] == Option.SLEEP
    assert switched_at == window
    assert sim.invalid_actions == window - 1, "each held-off request was a masked action"


def test_critical_need_breaks_the_commitment_window() -> None:
    """An agent with a need above needs.critical may switch option at once, inside its window."""
    sim = make_sim()
    a = sim.world.agents
    sim.step(external(sim, 0, Option.SLEEP))
    sim.step(external(sim, 0, Option.SLEEP))
    assert a.option[0] == Option.SLEEP
    a.needs[0, HUNGER] = sim.config.needs.critical + 0.01
    sim.step(external(sim, 0, Option.GET_FED))
    assert a.option[0] == Option.GET_FED
    assert a.option_started[0] == 2


def test_built_in_policy_keeps_agents_without_external_actions() -> None:
    """Slots given -1 are run by the built-in policy: they get an option on the first tick."""
    sim = make_sim(agents=3)
    sim.step(external(sim, 0, Option.IDLE))
    a = sim.world.agents
    assert a.option[0] == Option.IDLE
    assert (a.option[1:3] >= 0).all()


@pytest.mark.parametrize("choice", [Option.GO_TO_WORK, Option.SOCIALISE, 7, 99])
def test_invalid_external_action_is_counted_and_ignored(choice: int) -> None:
    """A masked or out-of-range external option is counted in invalid_actions and the agent carries on."""
    sim = make_sim("features.relationships='OFF'", agents=1)
    a = sim.world.agents
    sim.step(external(sim, 0, Option.SLEEP))
    for _ in range(20):
        sim.step(external(sim, 0, Option.SLEEP))
    if choice < OPTION_COUNT:
        assert not sim.masks()[0, choice]
    started = int(a.option_started[0])
    for _ in range(3):
        sim.step(external(sim, 0, choice))
    assert sim.invalid_actions == 3
    assert a.option[0] == Option.SLEEP and a.option_started[0] == started


def test_masked_first_choice_leaves_the_agent_without_an_option() -> None:
    """An invalid external choice on an agent with no option starts nothing (the built-in policy stays out)."""
    sim = make_sim("features.relationships='OFF'", agents=1)
    sim.step(external(sim, 0, Option.SOCIALISE))
    assert sim.invalid_actions == 1
    assert sim.world.agents.option[0] == -1
    assert sim.world.agents.activity[0] == Activity.IDLE


def test_teleported_agent_redoes_the_interrupted_step_instead_of_skipping_it() -> None:
    """An agent teleported on its way to order at the café goes back to order, not straight to a table."""
    sim = make_sim(agents=1)
    w, a = sim.world, sim.world.agents
    item(w, 0, "raw_food", 0)
    counter = w.objects.index_of["cafe.counter_service.0"]
    sim.step(external(sim, 0, Option.GET_FED))
    assert a.target_obj[0] == counter
    w.teleport(0, w.grid.tile(20, 11))
    for _ in range(3):
        sim.step(external(sim, 0, Option.GET_FED))
        assert a.option[0] == Option.GET_FED and a.target_obj[0] == counter


def test_agent_teleported_while_cooking_cooks_again_before_its_option_ends() -> None:
    """Interrupting the last step of a plan does not count the option as finished: the step is redone."""
    sim = make_sim(agents=1)
    w, a = sim.world, sim.world.agents
    a.needs[0, HUNGER] = 0.8
    events = []
    for _ in range(40):
        events += sim.step(external(sim, 0, Option.GET_FED)).events
        if a.activity[0] == Activity.USING:
            break
    assert w.manifest.affordances[int(a.target_aff[0])].id == "cook_meal"
    stove = int(a.target_obj[0])
    w.teleport(0, w.grid.tile(20, 11))
    assert w.objects.user[stove] == -1 and w.objects.reserved_by[stove] == -1
    for _ in range(80):
        events += sim.step(external(sim, 0, Option.GET_FED)).events
        if any(e.kind is EventKind.OPTION_FINISHED for e in events):
            break
    completed = [e.detail for e in events if e.kind is EventKind.AFFORDANCE_COMPLETED]
    assert completed == ["cook_meal"], "the option finishes only after a complete meal"
    assert a.needs[0, HUNGER] < 0.3


def reference_choice(sim: Simulation, slot: int, candidates: tuple[int, ...]) -> int:
    """The controller's rule spelled out: lowest walking distance plus QUEUE_COST per agent ahead."""
    from townlet.policy.controller import QUEUE_COST, SHORTLIST
    from townlet.world.grid import FAR

    w, o = sim.world, sim.world.objects
    here = int(w.agents.tile[slot])
    if len(candidates) > SHORTLIST:  # only the nearest few as the crow flies (ties: the earlier), in order
        hx, hy = w.grid.xy(here)
        crow = [abs(int(o.x[c]) - hx) + abs(int(o.y[c]) - hy) for c in candidates]
        nearest = sorted(range(len(candidates)), key=lambda i: (crow[i], i))[:SHORTLIST]
        candidates = tuple(candidates[i] for i in sorted(nearest))
    best, best_score = -1, None
    for obj in candidates:
        if o.on_cooldown(slot, obj, w.tick) or not w.place_open[o.place[obj]]:
            continue
        field = o.field_of(obj)
        dist = int(w.grid.dist_at(field, here))
        if dist >= FAR:
            continue
        score = dist + QUEUE_COST * (len(o.queue[obj]) + (o.reserved_by[obj] >= 0 or o.user[obj] >= 0))
        if best_score is None or score < best_score:
            best, best_score = obj, score
    return best


def test_controller_choice_weighs_distance_queues_cooldowns_and_closed_places() -> None:
    """``_choose`` (compiled passes) agrees with the rule spelled out, in a busy town, shortlists included."""
    sim = make_sim(agents=8, seed=3)
    o, ctl = sim.world.objects, sim.controller
    rng = np.random.default_rng(0)
    sim.run(600)
    checked = 0
    for _ in range(200):
        sim.step()
        slot = int(rng.choice(sim.world.agents.slots()))
        candidates = tuple(int(x) for x in rng.choice(o.count, size=int(rng.integers(2, 13)), replace=False))
        if rng.random() < 0.3:  # a cooldown on one of them
            o.cooldown[(slot, candidates[0])] = sim.world.tick + 5
        if rng.random() < 0.2:  # a closed place
            sim.world.place_open[o.place[candidates[-1]]] = False
        if rng.random() < 0.5:  # the controller first: it builds the distance fields it lacks itself
            chosen = ctl._choose(slot, candidates)
            expected = reference_choice(sim, slot, candidates)
        else:
            expected = reference_choice(sim, slot, candidates)
            chosen = ctl._choose(slot, candidates)
        assert chosen == expected
        checked += expected >= 0
        sim.world.place_open[:] = True
    assert checked > 100  # most draws have a usable candidate


def test_get_clean_plans_only_what_the_agent_can_pay_for() -> None:
    """Broke with clean clothes: GetClean changes clothes (no shower it cannot pay for, so it does not fail at once)."""
    sim = make_sim(agents=1)
    a, ctl = sim.world.agents, sim.controller
    a.wallet[0] = 0.1
    item(sim.world, 0, "clean_clothes", 2)
    steps = ctl.plan(0, Option.GET_CLEAN)
    affs = {sim.world.manifest.affordances[s.aff].id for s in steps}
    assert affs == {"change_clothes"}
    a.wallet[0] = 5.0
    assert {sim.world.manifest.affordances[s.aff].id for s in ctl.plan(0, Option.GET_CLEAN)} == {
        "shower",
        "change_clothes",
    }
