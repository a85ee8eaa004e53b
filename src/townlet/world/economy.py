"""Economy: prices, shop stock and tills, daily restock and rent, purchases, fees, and the invariant.

Money is conserved: every transfer moves meal units between agent wallets, shop tills and the town
treasury (which pays wages and receives rent, fees and wholesale payments), so their sum never changes.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import numba
import numpy as np

from townlet.config.models import clock_to_tick
from townlet.world.events import EventKind

if TYPE_CHECKING:
    from townlet.world.state import World


class Economy:
    """Prices, per-shop stock and cash, the treasury, and money-flow counters.

    Attributes:
        prices: Current price per item.
        stock: Per shop place index, item -> units in stock.
        till: Per shop place index, cash taken.
        treasury: The town's account (pays wages, receives rent and fees).
        flows: Totals per flow kind (``wages``, ``rent``, ``purchases``, ``fees``, ``restock``).
        rent_unpaid_days: ``int32[C]`` consecutive days an agent could not pay rent.
        last_wage: ``int64[C]`` tick an agent was last paid a wage (-1 never).
        wages_paid: ``(tick, slots, amounts)`` of the latest wage payment (reward terms read it).
    """

    def __init__(self, world: World) -> None:
        cfg = world.config.economy
        self.cfg = cfg
        self.prices = {name: item.price for name, item in cfg.items.items()}
        self.restock_to = {name: item.restock_to for name, item in cfg.items.items()}
        self.wholesale = {name: item.wholesale for name, item in cfg.items.items()}
        self.stock: dict[int, dict[str, int]] = {}
        self.till: dict[int, float] = {}
        for kind, items in cfg.shops.items():
            for place in world.objects.places_of_kind.get(kind, []):
                self.stock[place] = {item: cfg.items[item].stock for item in items}
                self.till[place] = 0.0
        self.treasury = float(cfg.treasury)
        self.rent = float(cfg.rent_per_day)
        self.rent_tick = clock_to_tick(cfg.rent_time, world.ticks_per_day)
        self.restock_tick = clock_to_tick(cfg.restock_time, world.ticks_per_day)
        self.flows: defaultdict[str, float] = defaultdict(float)
        self.rent_unpaid_days = np.zeros(world.agents.capacity, dtype=np.int32)
        self.last_wage = np.full(world.agents.capacity, -1, dtype=np.int64)
        self.wages_paid: tuple[int, np.ndarray, np.ndarray] = (-1, np.zeros(0, np.int64), np.zeros(0))

    def price(self, item: str) -> float:
        """Current price of an item."""
        return self.prices[item]

    def stock_at(self, place: int, item: str) -> int:
        """Units of an item in stock at a shop place (0 where the place sells no such item)."""
        return self.stock.get(place, {}).get(item, 0)

    def total_money(self, world: World) -> float:
        """Wallets + tills + treasury: constant over any run (money conservation)."""
        return float(world.agents.wallet[world.agents.alive].sum()) + sum(self.till.values()) + self.treasury

    def set_price(self, world: World, item: str, price: float) -> list[str]:
        """Change a price, announce it, and return any economy-invariant violations it causes."""
        if item not in self.prices:
            raise KeyError(item)
        if not price > 0:
            raise ValueError("price must be positive")
        old = self.prices[item]
        self.prices[item] = float(price)
        world.emit(EventKind.PRICE_CHANGED, value=float(price), detail=item)
        world.hook_event("price_change", -1, detail=f"{item}:{old}->{price}")
        return self.check_invariant(world)

    def daily_cost(self) -> float:
        """Rent + 3 basic meals + a day's hygiene at current prices."""
        return self.rent + 3 * self.prices[self.cfg.basic_meal_item] + self.cfg.hygiene_cost_per_day

    def check_invariant(self, world: World) -> list[str]:
        """Check that each job's daily wage covers the daily cost with the configured slack.

        Returns violation messages (also raised as events); empty when the economy is sound.
        """
        lo, hi = self.cfg.invariant_slack
        cost = self.daily_cost()
        problems = []
        for name, wage in world.employment.daily_wages().items():
            slack = wage / cost - 1.0
            if not lo - 1e-9 <= slack <= hi + 1e-9:
                msg = (
                    f"job {name}: daily wage {wage:.2f} vs cost {cost:.2f} gives slack {slack:.1%}, "
                    f"outside {lo:.0%}-{hi:.0%}"
                )
                problems.append(msg)
                world.emit(EventKind.INVARIANT_VIOLATED, value=slack, detail=msg)
        return problems

    def transfer_to_treasury(self, slot: int, world: World, amount: float, flow: str) -> None:
        """Move money from an agent to the treasury (fees, rent)."""
        world.agents.wallet[slot] -= amount
        self.treasury += amount
        self.flows[flow] += amount

    def buy(self, world: World, slot: int, place: int, item: str, qty: int) -> int:
        """Buy up to ``qty`` units at ``place`` (as many as stock and wallet allow); return units bought."""
        price = self.prices[item]
        stock = self.stock_at(place, item)
        affordable = int(world.agents.wallet[slot] // price) if price > 0 else qty
        n = max(0, min(qty, stock, affordable))
        if n == 0:
            return 0
        cost = n * price
        world.agents.wallet[slot] -= cost
        self.till[place] += cost
        self.stock[place][item] = stock - n
        world.agents.inventory[slot, world.agents.item_index[item]] += n
        self.flows["purchases"] += cost
        world.emit(EventKind.PURCHASE, agent=slot, value=cost, detail=f"{item}x{n}")
        return n

    def pay_wages(self, world: World, slots: np.ndarray, amounts: np.ndarray) -> None:
        """Pay per-tick wages from the treasury."""
        if len(slots) == 0:
            return
        world.agents.wallet[slots] += amounts
        self.last_wage[slots] = world.tick
        self.book_wages(world.tick, slots, amounts, float(amounts.sum()))

    def book_wages(self, tick: int, slots: np.ndarray, amounts: np.ndarray, total: float) -> None:
        """Book wages already in the earners' wallets and ``last_wage``: the treasury pays ``total`` (their sum)."""
        self.wages_paid = (tick, slots, amounts)
        self.treasury -= total
        self.flows["wages"] += total

    def update(self, world: World) -> None:
        """Daily rent and restock at their times of day."""
        tod = world.tick % world.ticks_per_day
        if tod == self.rent_tick and world.tick > 0:
            self._charge_rent(world)
        if tod == self.restock_tick:
            self._restock(world)

    def _charge_rent(self, world: World) -> None:
        for slot in world.agents.slots():
            if world.agents.wallet[slot] >= self.rent:
                self.transfer_to_treasury(int(slot), world, self.rent, "rent")
                self.rent_unpaid_days[slot] = 0
                world.emit(EventKind.RENT_PAID, agent=int(slot), value=self.rent)
            else:
                self.rent_unpaid_days[slot] += 1
                world.emit(EventKind.RENT_UNPAID, agent=int(slot), value=float(self.rent_unpaid_days[slot]))

    def _restock(self, world: World) -> None:
        for place, items in self.stock.items():
            for item, have in items.items():
                need = self.restock_to[item] - have
                if need > 0:
                    cost = need * self.wholesale[item]
                    items[item] = have + need
                    self.till[place] -= cost
                    self.treasury += cost
                    self.flows["restock"] += cost
                    world.emit(
                        EventKind.RESTOCK, obj=-1, value=float(need), detail=f"{world.objects.place_ids[place]}:{item}"
                    )


_BLOCK = 128  # numpy's pairwise-summation block


@numba.njit(cache=True)
def exact_sum(values: np.ndarray, start: int, n: int) -> float:
    """``values[start:start + n].sum()`` bit for bit: numpy's own order of additions.

    numpy sums blocks of up to 128 in eight interleaved partial sums and splits longer runs in two halves
    (the first a multiple of 8 long), adding the halves' sums; the halves are walked here with a stack.
    """
    if n <= _BLOCK:
        return _block_sum(values, start, n)
    starts, counts = np.empty(64, np.int64), np.empty(64, np.int64)  # a run per level of the halving
    left, right_pending = np.empty(64), np.zeros(64, np.bool_)
    depth, starts[0], counts[0] = 0, start, n
    while True:
        m = counts[depth]
        if m > _BLOCK:  # split: walk the first half, then (right_pending) the second
            half = m // 2 - (m // 2) % 8
            right_pending[depth] = True
            starts[depth + 1], counts[depth + 1] = starts[depth], half
            depth += 1
            continue
        total = _block_sum(values, starts[depth], m)
        depth -= 1
        while depth >= 0 and not right_pending[depth]:  # both halves done: add them, go up
            total = left[depth] + total
            depth -= 1
        if depth < 0:
            return total
        left[depth], right_pending[depth] = total, False
        half = counts[depth] // 2 - (counts[depth] // 2) % 8
        starts[depth + 1], counts[depth + 1] = starts[depth] + half, counts[depth] - half
        depth += 1


@numba.njit(cache=True)
def _block_sum(values: np.ndarray, start: int, n: int) -> float:
    """The sum numpy gives a run of at most 128 values: in order below 8, else eight interleaved partial sums."""
    if n < 8:
        total = 0.0
        for i in range(start, start + n):
            total += values[i]
        return total
    r = values[start : start + 8].copy()
    i = 8
    while i < n - n % 8:
        for j in range(8):
            r[j] += values[start + i + j]
        i += 8
    total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    for k in range(i, n):
        total += values[start + k]
    return total
