"""Property-based tests: needs stay in [0, 1], money is conserved, and the economy invariant is exact."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from townlet.config.loader import LoadedConfig, load_config
from townlet.sim import Simulation
from townlet.world.rng import RngStreams
from townlet.world.state import World
from townlet.world.weather import WEATHER_STATES

SETTINGS = settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
CROWD = load_config(overrides=["population.agents=6", "features.relationships=C1"])
SHORT_DAYS = load_config(overrides=["population.agents=6", "time.ticks_per_day=200"])

operation = st.one_of(
    st.tuples(st.just("spawn"), st.integers(0, 10**6)),
    st.tuples(st.just("remove"), st.integers(0, 10**6)),
    st.tuples(st.just("teleport"), st.integers(0, 10**6), st.integers(0, 10**6)),
    st.tuples(st.just("setneed"), st.integers(0, 10**6), st.integers(0, 3), st.floats(0.0, 1.0)),
    st.tuples(st.just("outage"), st.sampled_from(["power", "water"]), st.integers(0, 12), st.integers(1, 120)),
    st.tuples(st.just("weather"), st.sampled_from(WEATHER_STATES)),
)


def apply(world: World, op: tuple) -> None:
    """One random console-like change; refused changes (a full town, an occupied tile) are skipped."""
    alive = world.agents.slots()
    kind = op[0]
    if kind == "spawn":
        if world.agents.free_slot() >= 0:
            world.spawn()
    elif kind == "remove" and len(alive) > 1:
        world.remove(int(alive[op[1] % len(alive)]))
    elif kind == "teleport" and len(alive):
        tiles = np.flatnonzero(world.grid.walkable)
        try:
            world.teleport(int(alive[op[1] % len(alive)]), int(tiles[op[2] % len(tiles)]))
        except ValueError:
            pass
    elif kind == "setneed" and len(alive):
        world.agents.needs[alive[op[1] % len(alive)], op[2]] = op[3]
    elif kind == "outage":
        world.utilities.set(world, op[1], False, op[2], until=world.tick + op[3])
    elif kind == "weather":
        world.weather.set(world, op[1])


def run_with_ops(loaded: LoadedConfig, seed: int, ops: list[tuple[int, tuple]], ticks: int, check) -> Simulation:
    sim = Simulation(loaded, seed=seed)
    by_tick: dict[int, list[tuple]] = {}
    for tick, op in ops:
        by_tick.setdefault(tick, []).append(op)
    for tick in range(ticks):
        for op in by_tick.get(tick, []):
            sim.enqueue(lambda w, op=op: apply(w, op))
        sim.step()
        check(sim)
    return sim


@SETTINGS
@given(seed=st.integers(0, 2**16), ops=st.lists(st.tuples(st.integers(0, 99), operation), max_size=15))
def test_needs_stay_within_zero_and_one_under_random_meddling(seed: int, ops: list[tuple[int, tuple]]) -> None:
    """Whatever is spawned, moved, set or cut off, every living agent's needs stay finite and in [0, 1]."""

    def check(sim: Simulation) -> None:
        needs = sim.world.agents.needs[sim.world.agents.alive]
        assert np.isfinite(needs).all()
        assert (needs >= 0.0).all() and (needs <= 1.0).all()

    run_with_ops(CROWD, seed, ops, 120, check)


@SETTINGS
@given(
    seed=st.integers(0, 2**16),
    ops=st.lists(st.tuples(st.integers(0, 449), operation), max_size=10),
    prices=st.lists(
        st.tuples(st.integers(0, 449), st.sampled_from(["raw_food", "cafe_meal"]), st.floats(0.1, 5.0)), max_size=3
    ),
)
def test_money_is_conserved_through_a_run_with_rent_wages_and_purchases(
    seed: int, ops: list[tuple[int, tuple]], prices: list[tuple[int, str, float]]
) -> None:
    """Over two short days (rent, restock, wages, shopping, arrivals and departures) total money never changes."""
    total = SHORT_DAYS.config.economy.treasury
    schedule = [(t, ("price", item, p)) for t, item, p in prices] + ops

    def check(sim: Simulation) -> None:
        assert math.isclose(sim.world.economy.total_money(sim.world), total, rel_tol=0, abs_tol=1e-6)

    def apply_or_price(world: World, op: tuple) -> None:
        if op[0] == "price":
            world.economy.set_price(world, op[1], op[2])
        else:
            apply(world, op)

    sim = Simulation(SHORT_DAYS, seed=seed)
    check(sim)
    by_tick: dict[int, list[tuple]] = {}
    for tick, op in schedule:
        by_tick.setdefault(tick, []).append(op)
    for tick in range(450):
        for op in by_tick.get(tick, []):
            sim.enqueue(lambda w, op=op: apply_or_price(w, op))
        sim.step()
        check(sim)
    flows = sim.world.economy.flows
    assert flows["rent"] > 0 and flows["restock"] >= 0


ECONOMY_WORLD = World(load_config(overrides=["population.agents=4"]), RngStreams(0))

economy_op = st.one_of(
    st.tuples(
        st.just("buy"),
        st.integers(0, 3),
        st.sampled_from(["grocer", "cafe"]),
        st.sampled_from(["raw_food", "cafe_meal"]),
        st.integers(1, 8),
    ),
    st.tuples(st.just("wage"), st.lists(st.integers(0, 3), min_size=1, max_size=4, unique=True), st.floats(0.0, 2.0)),
    st.tuples(st.just("fee"), st.integers(0, 3), st.floats(0.0, 1.0)),
    st.tuples(st.just("rent")),
    st.tuples(st.just("restock")),
    st.tuples(st.just("price"), st.sampled_from(["raw_food", "cafe_meal"]), st.floats(0.05, 20.0)),
)


@settings(max_examples=60, deadline=None, database=None)
@given(ops=st.lists(economy_op, max_size=30))
def test_every_economy_transfer_conserves_money(ops: list[tuple]) -> None:
    """Random purchases, wages, fees, rent days, restocks and price changes move money but never create it."""
    world = World(ECONOMY_WORLD.loaded, RngStreams(0))
    for _ in range(4):
        world.spawn()
    e, tpd = world.economy, world.ticks_per_day
    total = e.total_money(world)
    day = 0
    for op in ops:
        if op[0] == "buy":
            shop = world.objects.place_ids.index(op[2])
            e.buy(world, op[1], shop, op[3], op[4])
        elif op[0] == "wage":
            e.pay_wages(world, np.array(op[1]), np.full(len(op[1]), op[2]))
        elif op[0] == "fee":
            e.transfer_to_treasury(op[1], world, min(op[2], float(world.agents.wallet[op[1]])), "fees")
        elif op[0] == "rent":
            day += 1
            world.tick = day * tpd + e.rent_tick
            e.update(world)
        elif op[0] == "restock":
            day += 1
            world.tick = day * tpd + e.restock_tick
            e.update(world)
        else:
            e.set_price(world, op[1], op[2])
        assert math.isclose(e.total_money(world), total, rel_tol=0, abs_tol=1e-6)
        assert (world.agents.wallet[:4] >= -1e-9).all(), "no purchase or rent drives a wallet negative"


MARGIN = 1e-7  # stay clear of the check's float tolerance at the band edges


@settings(max_examples=80, deadline=None, database=None)
@given(
    raw_price=st.floats(0.1, 5.0),
    rent=st.floats(0.5, 20.0),
    hygiene=st.floats(0.0, 3.0),
    wages=st.lists(st.floats(1.0, 60.0), min_size=3, max_size=3),
    lo=st.floats(0.0, 0.5),
    width=st.floats(0.0, 0.5),
)
def test_economy_invariant_holds_exactly_when_slack_is_within_bounds(
    raw_price: float, rent: float, hygiene: float, wages: list[float], lo: float, width: float
) -> None:
    """Each job is flagged exactly when wage / (rent + 3 meals + hygiene) - 1 lies outside the slack band."""
    hi = min(lo + width, 1.0)
    cost = rent + 3 * raw_price + hygiene
    slacks = [w / cost - 1.0 for w in wages]
    assume(all(abs(s - lo) > MARGIN and abs(s - hi) > MARGIN for s in slacks))
    jobs = ("clerk", "stocker", "cook")
    loaded = load_config(
        overrides=[
            f"economy.items.raw_food.price={raw_price!r}",
            f"economy.rent_per_day={rent!r}",
            f"economy.hygiene_cost_per_day={hygiene!r}",
            f"economy.invariant_slack=[{lo!r}, {hi!r}]",
            *(f"employment.jobs.{job}.wage_per_day={w!r}" for job, w in zip(jobs, wages, strict=True)),
        ]
    )
    world = World(loaded, RngStreams(0))
    problems = world.economy.check_invariant(world)
    flagged = {p.split(":")[0].removeprefix("job ") for p in problems}
    expected = {job for job, s in zip(jobs, slacks, strict=True) if not lo <= s <= hi}
    assert flagged == expected


@settings(max_examples=40, deadline=None, database=None)
@given(price=st.floats(0.1, 6.0), wage=st.floats(1.0, 40.0))
def test_every_price_or_wage_change_rechecks_the_invariant(price: float, wage: float) -> None:
    """set_price and set_wage return exactly the violations of the economy after the change."""
    world = World(ECONOMY_WORLD.loaded, RngStreams(0))
    e = world.economy
    lo, hi = e.cfg.invariant_slack
    after_price = e.set_price(world, e.cfg.basic_meal_item, price)
    assert after_price == e.check_invariant(world)
    after_wage = world.employment.set_wage(world, "clerk", wage)
    slack = wage / e.daily_cost() - 1.0
    assume(abs(slack - lo) > MARGIN and abs(slack - hi) > MARGIN)
    assert any(p.startswith("job clerk:") for p in after_wage) == (not lo <= slack <= hi)
