"""What each perturbation does to the town when it starts and how the town is restored when it ends.

Every change goes through a world method (``Economy.set_price``, ``Utilities.set``, ``World.set_place_open``),
so the usual events, hooks and invariant checks follow. Overlapping perturbations of one kind on one target
(possible from the console) restore the town only when the last of them ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from townlet.world.state import World

KINDS = ("price_spike", "blackout", "water_outage", "closed_facility", "arranged_meet")
CITY_KINDS = frozenset({"price_spike", "blackout", "water_outage", "closed_facility"})  # staggered
UTILITY_OF = {"blackout": "power", "water_outage": "water"}


@dataclass(slots=True)
class Perturbation:
    """One perturbation, scheduled or running.

    Attributes:
        id: Run-unique number (``cancel`` takes it).
        kind: One of ``KINDS``.
        start / end: Tick it started and tick it ends.
        target: The item (price spike), place id (closed facility, arranged meet) or ``all``.
        magnitude: Price multiplier of a price spike (1.0 otherwise).
        agents: The two agents of an arranged meet.
        base: The price before a spike (restored at the end).
        place: Place index of a closed facility, else -1.
    """

    id: int
    kind: str
    start: int
    end: int
    target: str = "all"
    magnitude: float = 1.0
    agents: tuple[int, ...] = ()
    base: float = 0.0
    place: int = -1

    @property
    def detail(self) -> str:
        """The event detail: ``kind:target`` (plus ``:magnitude`` for a price spike)."""
        if self.kind == "price_spike":
            return f"{self.kind}:{self.target}:{self.magnitude:.2f}"
        return f"{self.kind}:{self.target}"


def apply(world: World, p: Perturbation, active: list[Perturbation]) -> None:
    """Change the town for a perturbation that starts now (``active`` are the others running)."""
    if p.kind == "price_spike":
        same = [q for q in active if q.kind == "price_spike" and q.target == p.target]
        p.base = same[0].base if same else world.economy.price(p.target)
        world.economy.set_price(world, p.target, round(p.base * p.magnitude, 4))
    elif p.kind in UTILITY_OF:
        world.utilities.set(world, UTILITY_OF[p.kind], False)
    elif p.kind == "closed_facility":
        world.set_place_open(p.place, False)


def restore(world: World, p: Perturbation, others: list[Perturbation]) -> None:
    """Undo a perturbation that ends now, unless another of its kind still holds the same target."""
    same = [q for q in others if q.kind == p.kind and q.target == p.target]
    if p.kind == "price_spike":
        price = round(p.base * same[-1].magnitude, 4) if same else p.base
        world.economy.set_price(world, p.target, price)
    elif p.kind in UTILITY_OF and not same:
        world.utilities.set(world, UTILITY_OF[p.kind], True)
    elif p.kind == "closed_facility" and not same:
        world.set_place_open(p.place, True)
