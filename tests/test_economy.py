"""Tests for the economy: purchases, stock and wallet limits, rent, restock, money conservation, the invariant."""

from __future__ import annotations

import pytest

from townlet.world.events import EventKind

START_WALLET = 6.0  # starting_wallet_rents 1.5 x rent_per_day 4.0
ONE_DAY = 1000


def place(world, place_id: str) -> int:
    return world.objects.place_ids.index(place_id)


def obj_in(world, obj_type: str, place_id: str) -> int:
    return int(world.objects.of_type_in_place(obj_type, place(world, place_id))[0])


def kinds(events, kind: EventKind) -> list:
    return [e for e in events if e.kind == kind]


# --- purchases ------------------------------------------------------------------------------------


def test_checkout_moves_money_from_wallet_to_till_and_stock_down(make_sim, use_now, run) -> None:
    """Checking out n raw food at 1.0 takes n from the wallet into the grocer's till and n off the shelf."""
    sim = make_sim(agents=1, manual=True)
    world, grocer = sim.world, place(sim.world, "grocer")
    item, qty = world.manifest.by_id["checkout"].buy
    assert item == "raw_food" and qty * 1.0 <= START_WALLET
    raw = world.agents.item_index["raw_food"]
    food, total = int(world.agents.inventory[0, raw]), world.economy.total_money(world)
    use_now(world, 0, obj_in(world, "till", "grocer"), "checkout")
    events = run(sim, world.manifest.by_id["checkout"].duration)
    [purchase] = kinds(events, EventKind.PURCHASE)
    assert (purchase.agent, purchase.value, purchase.detail) == (0, pytest.approx(qty * 1.0), f"raw_foodx{qty}")
    assert world.agents.wallet[0] == pytest.approx(START_WALLET - qty)
    assert world.economy.till[grocer] == pytest.approx(qty)
    assert world.economy.stock[grocer]["raw_food"] == 60 - qty
    assert world.agents.inventory[0, raw] == food + qty
    assert world.economy.flows["purchases"] == pytest.approx(qty)
    assert world.economy.total_money(world) == pytest.approx(total, abs=1e-9)


def test_ordering_a_cafe_meal_pays_the_cafe(make_sim, use_now, run) -> None:
    """order_meal buys one café meal at its price into the café's till, not the grocer's."""
    sim = make_sim(agents=1, manual=True)
    world = sim.world
    use_now(world, 0, obj_in(world, "counter_service", "cafe"), "order_meal")
    run(sim, world.manifest.by_id["order_meal"].duration)
    assert world.agents.inventory[0, world.agents.item_index["cafe_meal"]] == 1
    assert world.economy.till[place(world, "cafe")] == pytest.approx(1.5)
    assert world.economy.till[place(world, "grocer")] == 0.0
    assert world.economy.stock[place(world, "cafe")]["cafe_meal"] == 39


def test_buying_is_limited_by_stock(make_sim) -> None:
    """With 3 units on the shelf a request for 4 buys 3 and empties the stock."""
    world = make_sim(agents=1, manual=True).world
    grocer = place(world, "grocer")
    world.economy.stock[grocer]["raw_food"] = 3
    assert world.economy.buy(world, 0, grocer, "raw_food", 4) == 3
    assert world.economy.stock[grocer]["raw_food"] == 0
    assert world.agents.wallet[0] == pytest.approx(START_WALLET - 3.0)


def test_buying_is_limited_by_the_wallet(make_sim) -> None:
    """With 2.5 in the wallet at a price of 1.0 a request for 4 buys 2 and leaves 0.5."""
    world = make_sim(agents=1, manual=True).world
    grocer = place(world, "grocer")
    world.agents.wallet[0] = 2.5
    assert world.economy.buy(world, 0, grocer, "raw_food", 4) == 2
    assert world.agents.wallet[0] == pytest.approx(0.5)
    assert world.economy.till[grocer] == pytest.approx(2.0)
    assert world.economy.stock[grocer]["raw_food"] == 58


def test_buying_nothing_moves_nothing(make_sim) -> None:
    """Without the money for one unit, or at a shop that sells none, nothing is bought and no event raised."""
    world = make_sim(agents=1, manual=True).world
    grocer, cafe = place(world, "grocer"), place(world, "cafe")
    world.agents.wallet[0] = 0.5
    world.events.clear()
    assert world.economy.buy(world, 0, grocer, "raw_food", 4) == 0
    world.agents.wallet[0] = 10.0
    assert world.economy.buy(world, 0, cafe, "raw_food", 4) == 0
    assert world.economy.stock[grocer]["raw_food"] == 60
    assert world.economy.till == {grocer: 0.0, cafe: 0.0}
    assert not kinds(world.events, EventKind.PURCHASE)


def test_checkout_without_money_does_not_start(make_sim, use_now, run) -> None:
    """The checkout precondition ``wallet >= price.raw_food`` stops a penniless agent at the till."""
    sim = make_sim(agents=1, manual=True)
    world = sim.world
    world.agents.wallet[0] = 0.9
    use_now(world, 0, obj_in(world, "till", "grocer"), "checkout")
    events = run(sim, 5)
    assert not kinds(events, EventKind.AFFORDANCE_STARTED)
    assert world.agents.fail_reason[0] == "precondition: wallet >= price.raw_food"
    assert world.agents.wallet[0] == pytest.approx(0.9)


def test_price_change_applies_to_the_next_purchase(make_sim) -> None:
    """After set_price the new price is what a purchase costs, and a PRICE_CHANGED event says so."""
    world = make_sim(agents=1, manual=True).world
    world.events.clear()
    world.economy.set_price(world, "raw_food", 1.25)
    assert world.economy.buy(world, 0, place(world, "grocer"), "raw_food", 2) == 2
    assert world.agents.wallet[0] == pytest.approx(START_WALLET - 2.5)
    [change] = kinds(world.events, EventKind.PRICE_CHANGED)
    assert (change.detail, change.value) == ("raw_food", pytest.approx(1.25))


def test_set_price_refuses_unknown_items_and_non_positive_prices(make_sim) -> None:
    """Only known items can be repriced, and only to a positive price."""
    world = make_sim(agents=1, manual=True).world
    with pytest.raises(KeyError):
        world.economy.set_price(world, "gold", 1.0)
    with pytest.raises(ValueError):
        world.economy.set_price(world, "raw_food", 0.0)
    assert world.economy.price("raw_food") == 1.0


# --- rent and restock -----------------------------------------------------------------------------


def test_daily_rent_is_charged_at_rent_time(make_sim, run) -> None:
    """Rent (4.0) is taken at 00:00 of each new day, not at tick 0, and goes to the treasury."""
    sim = make_sim(agents=2, manual=True)
    world = sim.world
    treasury = world.economy.treasury
    events = run(sim, ONE_DAY)
    assert not kinds(events, EventKind.RENT_PAID) and not kinds(events, EventKind.RENT_UNPAID)
    events = run(sim, 1)
    paid = kinds(events, EventKind.RENT_PAID)
    assert [(e.tick, e.agent, e.value) for e in paid] == [(ONE_DAY, 0, 4.0), (ONE_DAY, 1, 4.0)]
    assert list(world.agents.wallet[:2]) == pytest.approx([START_WALLET - 4.0] * 2)
    assert world.economy.treasury == pytest.approx(treasury + 8.0)
    assert world.economy.flows["rent"] == pytest.approx(8.0)


def test_unpaid_rent_days_are_counted_and_reset_on_payment(make_sim, run) -> None:
    """An agent short of rent is not charged; its unpaid days count up daily and reset when it pays again."""
    sim = make_sim(agents=2, manual=True)
    world = sim.world
    world.agents.wallet[1] = 3.0
    events = run(sim, ONE_DAY + 1)
    [unpaid] = kinds(events, EventKind.RENT_UNPAID)
    assert (unpaid.agent, unpaid.value) == (1, 1.0)
    assert world.agents.wallet[1] == pytest.approx(3.0)
    assert list(world.economy.rent_unpaid_days[:2]) == [0, 1]
    run(sim, ONE_DAY)  # day 2: agent 0 now has 2.0 left, agent 1 still 3.0
    assert list(world.economy.rent_unpaid_days[:2]) == [1, 2]
    world.agents.wallet[1] = 10.0
    run(sim, ONE_DAY)
    assert world.economy.rent_unpaid_days[1] == 0
    assert world.agents.wallet[1] == pytest.approx(6.0)


def test_restock_at_restock_time_is_paid_from_till_to_treasury(make_sim, run) -> None:
    """At 06:00 sold stock is refilled at the wholesale price (0.6), paid from the till into the treasury."""
    sim = make_sim(agents=1, manual=True)
    world = sim.world
    grocer, cafe = place(world, "grocer"), place(world, "cafe")
    assert world.economy.buy(world, 0, grocer, "raw_food", 4) == 4
    treasury = world.economy.treasury
    events = run(sim, 250)
    assert not kinds(events, EventKind.RESTOCK)
    events = run(sim, 1)
    [restock] = kinds(events, EventKind.RESTOCK)
    assert (restock.tick, restock.value, restock.detail) == (250, 4.0, "grocer:raw_food")
    assert world.economy.stock[grocer]["raw_food"] == 60
    assert world.economy.stock[cafe]["cafe_meal"] == 40
    assert world.economy.till[grocer] == pytest.approx(4.0 - 4 * 0.6)
    assert world.economy.treasury == pytest.approx(treasury + 2.4)
    assert world.economy.flows["restock"] == pytest.approx(2.4)


# --- money conservation ---------------------------------------------------------------------------


def test_spawning_funds_the_starting_wallet_from_the_treasury(make_sim) -> None:
    """Each spawned agent's starting wallet comes out of the treasury, so the total stays the configured treasury."""
    world = make_sim(agents=3, manual=True).world
    assert world.economy.treasury == pytest.approx(5000.0 - 3 * START_WALLET)
    assert world.economy.total_money(world) == pytest.approx(5000.0)
    world.spawn()
    assert world.economy.total_money(world) == pytest.approx(5000.0)


def test_total_money_is_conserved_over_a_scripted_run(make_sim, run) -> None:
    """Over 2,000 scripted ticks with wages, rent, purchases, fees and restock, total money changes by < 1e-6."""
    sim = make_sim(seed=0)
    world = sim.world
    start = world.economy.total_money(world)
    for _ in range(20):
        run(sim, 100)
        assert world.economy.total_money(world) == pytest.approx(start, abs=1e-6)
    flows = world.economy.flows
    for flow in ("wages", "rent", "purchases", "restock"):
        assert flows[flow] > 0, f"no {flow} moved, so the run proves little"


def test_removing_an_agent_returns_its_money_to_the_town(make_sim) -> None:
    """An agent leaving town hands its wallet to the treasury: total money is unchanged."""
    world = make_sim(agents=2, manual=True).world
    total = world.economy.total_money(world)
    world.economy.buy(world, 1, place(world, "grocer"), "raw_food", 2)
    world.remove(1)
    assert world.economy.total_money(world) == pytest.approx(total)


# --- the invariant --------------------------------------------------------------------------------


def test_default_economy_satisfies_the_invariant(make_sim) -> None:
    """A default day's wage (8.6) covers rent + 3 meals + hygiene (7.5) with slack inside 10-20%."""
    sim = make_sim(agents=1, manual=True)
    world = sim.world
    assert sim.invariant_problems == []
    assert world.economy.daily_cost() == pytest.approx(4.0 + 3 * 1.0 + 0.5)
    assert world.economy.check_invariant(world) == []
    assert not kinds(world.events, EventKind.INVARIANT_VIOLATED)


def test_food_price_rise_violates_the_invariant(make_sim) -> None:
    """Raising raw food to 1.5 makes the day cost 9.0 > 8.6: every job is reported and an event raised."""
    world = make_sim(agents=1, manual=True).world
    world.events.clear()
    problems = world.economy.set_price(world, "raw_food", 1.5)
    assert {p.split(":")[0] for p in problems} == {"job clerk", "job stocker", "job cook"}
    violations = kinds(world.events, EventKind.INVARIANT_VIOLATED)
    assert len(violations) == len(problems)
    assert all(v.value < 0.10 for v in violations)
    assert world.economy.price("raw_food") == 1.5  # the change is made, and reported


def test_non_basic_price_change_keeps_the_invariant(make_sim) -> None:
    """The café meal is not the basic meal, so repricing it does not touch the invariant."""
    world = make_sim(agents=1, manual=True).world
    assert world.economy.set_price(world, "cafe_meal", 3.0) == []


def test_wage_cut_violates_the_invariant(make_sim) -> None:
    """Cutting the clerk's wage to 7.0 breaks the invariant for clerks only."""
    world = make_sim(agents=1, manual=True).world
    world.events.clear()
    problems = world.employment.set_wage(world, "clerk", 7.0)
    assert len(problems) == 1 and problems[0].startswith("job clerk")
    assert len(kinds(world.events, EventKind.INVARIANT_VIOLATED)) == 1
    assert world.employment.daily_wages()["clerk"] == pytest.approx(7.0)


def test_overgenerous_wage_violates_the_upper_slack(make_sim) -> None:
    """A wage more than 20% above the day's cost is also outside the invariant."""
    world = make_sim(agents=1, manual=True).world
    assert world.employment.set_wage(world, "cook", 7.5 * 1.25)
    assert world.employment.set_wage(world, "cook", 7.5 * 1.15) == []


def test_invariant_violation_in_config_is_reported_at_start(make_sim) -> None:
    """A configured rent too high for the wages is reported by the simulation when it is built."""
    sim = make_sim(agents=1, manual=True, overrides=["economy.rent_per_day=6"])
    assert len(sim.invariant_problems) == 3
