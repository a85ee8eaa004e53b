"""Affordances: the YAML manifest, its schema, precondition expressions, and vectorised lookup tables.

An affordance is what an agent can do with an object: preconditions checked at the start, a
duration (fixed, or until a need, the shift end or a clock time), per-tick and on-completion effects,
and the names of hooks for ``before``, ``after`` and ``fail``.

Partial-effect rule (documented in docs/affordances.md): per-tick effects accrue while running and
stay if the affordance fails; completion effects (needs, inventory, payment, purchase) apply only on
completion, so a failed affordance costs nothing.
"""

from __future__ import annotations

import hashlib
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from townlet.config.errors import ConfigError
from townlet.config.loader import read_yaml
from townlet.config.models import NEED_NAMES, clock_to_tick
from townlet.config.vocabulary import NeedName

if TYPE_CHECKING:
    from townlet.world.state import World

Condition = Callable[["World", int, int], bool]
FLAGS = ("power_on", "water_on", "own_home", "on_shift", "own_station", "has_job")
_TOKEN = re.compile(r"\s*(>=|<=|==|!=|>|<|\*|[A-Za-z_][A-Za-z_0-9.]*|-?\d+(?:\.\d+)?)")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object: str
    duration: int = Field(ge=1, le=100_000)
    until: dict[Literal["need", "below", "shift_end", "clock"], Any] | None = None
    place: Literal["home", "grocer", "cafe", "office", "park", "gym"] | None = None
    preconditions: list[str] = []
    requires: list[Literal["power", "water"]] = []
    needs: dict[NeedName, Annotated[float, Field(ge=-1, le=1)]] = {}
    per_tick: dict[NeedName, Annotated[float, Field(ge=-0.1, le=0.1)]] = {}
    inventory: dict[str, Annotated[int, Field(ge=-100, le=100)]] = {}
    pay: Annotated[float, Field(ge=0, le=1000)] = 0.0
    buy: dict[Literal["item", "qty"], Any] | None = None
    wage: bool = False
    asleep: bool = False
    chat: bool = False
    social_event: Literal["shared_meal"] | None = None
    hooks: dict[Literal["before", "after", "fail"], list[str]] = {}


@dataclass(frozen=True)
class Affordance:
    """One compiled affordance; see the module docstring for the effect rules."""

    id: str
    index: int
    object_type: str
    duration: int
    place_kind: str | None
    preconditions: tuple[Condition, ...]
    precondition_text: tuple[str, ...]
    requires_power: bool
    requires_water: bool
    needs: np.ndarray
    per_tick: np.ndarray
    inventory: dict[str, int]
    pay: float
    buy: tuple[str, int] | None
    wage: bool
    asleep: bool
    chat: bool
    social_event: str | None
    until_need: int = -1
    until_below: float = 0.0
    until_shift_end: bool = False
    until_clock: int = -1
    hooks: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def failing_precondition(self, world: World, slot: int, obj: int) -> str | None:
        """The text of the first precondition that does not hold, or None when all hold."""
        for cond, text in zip(self.preconditions, self.precondition_text, strict=True):
            if not cond(world, slot, obj):
                return text
        return None


# Compiled expressions are module-level functions and ``functools.partial`` objects over them (never lambdas),
# so a world holding a manifest pickles and deep-copies (vector envs copy towns into worker processes).
def _constant(value: float, w: World, a: int, o: int) -> float:
    return value


def _wallet(w: World, a: int, o: int) -> float:
    return float(w.agents.wallet[a])


def _need(k: int, w: World, a: int, o: int) -> float:
    return float(w.agents.needs[a, k])


def _inventory(name: str, w: World, a: int, o: int) -> float:
    return float(w.agents.inventory[a, w.agents.item_index[name]])


def _stock(name: str, w: World, a: int, o: int) -> float:
    return float(w.economy.stock_at(int(w.objects.place[o]), name))


def _price(name: str, w: World, a: int, o: int) -> float:
    return float(w.economy.price(name))


def _operand(token: str, items: set[str], where: tuple[str, str]) -> Callable[[World, int, int], float]:
    try:
        return partial(_constant, float(token))
    except ValueError:
        pass
    if token == "wallet":
        return _wallet
    if token in NEED_NAMES:
        return partial(_need, NEED_NAMES.index(token))
    head, _, name = token.partition(".")
    if head in ("inventory", "stock", "price") and name in items:
        return partial({"inventory": _inventory, "stock": _stock, "price": _price}[head], name)
    raise ConfigError(where[0], where[1], f"unknown operand {token!r}")


def _power_on(w: World, a: int, o: int) -> bool:
    return bool(w.utilities.power_on[w.objects.place[o]])


def _water_on(w: World, a: int, o: int) -> bool:
    return bool(w.utilities.water_on[w.objects.place[o]])


def _own_home(w: World, a: int, o: int) -> bool:
    return int(w.objects.place[o]) == int(w.agents.home[a])


def _on_shift(w: World, a: int, o: int) -> bool:
    return w.employment.on_shift(a, w.tick)


def _own_station(w: World, a: int, o: int) -> bool:
    return w.employment.station_of(a) == o


def _has_job(w: World, a: int, o: int) -> bool:
    return int(w.agents.job[a]) >= 0


_FLAG_TESTS: dict[str, Condition] = {
    "power_on": _power_on,
    "water_on": _water_on,
    "own_home": _own_home,
    "on_shift": _on_shift,
    "own_station": _own_station,
    "has_job": _has_job,
}


def _flag(name: str, where: tuple[str, str]) -> Condition:
    if name not in _FLAG_TESTS:
        raise ConfigError(where[0], where[1], f"unknown flag {name!r} (known: {', '.join(FLAGS)})")
    return _FLAG_TESTS[name]


def _negation(cond: Condition, w: World, a: int, o: int) -> bool:
    return not cond(w, a, o)


def _conjunction(clauses: tuple[Condition, ...], w: World, a: int, o: int) -> bool:
    return all(c(w, a, o) for c in clauses)


def compile_condition(text: str, items: set[str], where: tuple[str, str]) -> Condition:
    """Compile ``"inventory.raw_food >= 1 and power_on"`` into a fast predicate ``(world, slot, obj)``."""
    clauses: list[Condition] = []
    for part in re.split(r"\s+and\s+", text.strip()):
        tokens = _TOKEN.findall(part)
        if "".join(tokens) != re.sub(r"\s+", "", part) or not tokens:
            raise ConfigError(where[0], where[1], f"cannot parse {part!r}")
        negate = tokens[0] == "not"
        if negate:
            tokens = tokens[1:]
        if len(tokens) == 1:
            cond = _flag(tokens[0], where)
        else:
            op_at = next((i for i, t in enumerate(tokens) if t in _OPS), -1)
            if op_at < 1 or op_at == len(tokens) - 1:
                raise ConfigError(where[0], where[1], f"expected 'left OP right' in {part!r}")
            cond = _comparison(tokens[:op_at], tokens[op_at], tokens[op_at + 1 :], items, where)
        clauses.append(partial(_negation, cond) if negate else cond)
    if len(clauses) == 1:
        return clauses[0]
    return partial(_conjunction, tuple(clauses))


def _multiply(factors: tuple[Callable[[World, int, int], float], ...], w: World, a: int, o: int) -> float:
    result = 1.0
    for f in factors:
        result *= f(w, a, o)
    return result


def _product(tokens: list[str], items: set[str], where: tuple[str, str]) -> Callable[[World, int, int], float]:
    factors = [_operand(t, items, where) for t in tokens[::2]]
    if any(t != "*" for t in tokens[1::2]) or len(tokens) % 2 == 0:
        raise ConfigError(where[0], where[1], f"bad expression {' '.join(tokens)!r}")
    if len(factors) == 1:
        return factors[0]
    return partial(_multiply, tuple(factors))


def _compare(
    fn: Callable[[float, float], bool],
    lhs: Callable[[World, int, int], float],
    rhs: Callable[[World, int, int], float],
    w: World,
    a: int,
    o: int,
) -> bool:
    return fn(lhs(w, a, o), rhs(w, a, o))


def _comparison(left: list[str], op: str, right: list[str], items: set[str], where: tuple[str, str]) -> Condition:
    return partial(_compare, _OPS[op], _product(left, items, where), _product(right, items, where))


class UseRules(NamedTuple):
    """The per-affordance arrays one tick of a use reads (the kernel's bundle; the manifest's own arrays)."""

    per_tick: np.ndarray  # float32[A, needs] need deltas per tick
    wage: np.ndarray  # bool[A] the use is paid work
    until_need: np.ndarray  # int32[A] stop when this need (-1: none) falls to until_below
    until_below: np.ndarray  # float32[A]
    until_clock: np.ndarray  # int32[A] stop at this tick of the day (-1: none)
    until_shift_end: np.ndarray  # bool[A] stop when the user's shift ends


class AffordanceManifest:
    """The loaded, validated manifest plus per-affordance arrays for vectorised tick phases.

    Attributes:
        affordances: Compiled affordances in manifest order.
        by_id: Lookup by id.
        checksum: SHA-256 of the file contents (hot reload compares it).
        per_tick: ``float32[A, 4]`` per-tick need deltas.
        requires_power / requires_water: ``bool[A]``.
        wage / asleep / chat: ``bool[A]``.
        until_need / until_below / until_shift_end / until_clock: stop conditions.
        rules: The arrays above that a tick of a use reads, as one :class:`UseRules` bundle.
    """

    def __init__(self, affordances: list[Affordance], checksum: str) -> None:
        self.affordances = affordances
        self.by_id = {a.id: a for a in affordances}
        self.checksum = checksum
        self.per_tick = np.array([a.per_tick for a in affordances], dtype=np.float32).reshape(-1, len(NEED_NAMES))
        self.requires_power = np.array([a.requires_power for a in affordances], dtype=bool)
        self.requires_water = np.array([a.requires_water for a in affordances], dtype=bool)
        self.wage = np.array([a.wage for a in affordances], dtype=bool)
        self.asleep = np.array([a.asleep for a in affordances], dtype=bool)
        self.chat = np.array([a.chat for a in affordances], dtype=bool)
        self.until_need = np.array([a.until_need for a in affordances], dtype=np.int32)
        self.until_below = np.array([a.until_below for a in affordances], dtype=np.float32)
        self.until_shift_end = np.array([a.until_shift_end for a in affordances], dtype=bool)
        self.until_clock = np.array([a.until_clock for a in affordances], dtype=np.int32)
        self.any_until_need = bool((self.until_need >= 0).any())
        self.rules = UseRules(
            self.per_tick, self.wage, self.until_need, self.until_below, self.until_clock, self.until_shift_end
        )

    def __len__(self) -> int:
        return len(self.affordances)

    def hook_names(self) -> set[str]:
        """Every hook name the manifest refers to."""
        return {name for a in self.affordances for names in a.hooks.values() for name in names}


def _compile_entry(
    aff_id: str, index: int, entry: _Entry, items: set[str], object_types: set[str], ticks_per_day: int, file: str
) -> Affordance:
    base = f"affordances.{aff_id}"
    if object_types and entry.object not in object_types:
        raise ConfigError(file, f"{base}.object", f"unknown object type {entry.object!r}")
    for item in entry.inventory:
        if item not in items:
            raise ConfigError(file, f"{base}.inventory.{item}", f"unknown item {item!r}")
    conds = tuple(
        compile_condition(text, items, (file, f"{base}.preconditions[{i}]"))
        for i, text in enumerate(entry.preconditions)
    )
    buy = None
    if entry.buy is not None:
        buy_item, qty = entry.buy.get("item"), entry.buy.get("qty", 1)
        if buy_item not in items or not isinstance(qty, int) or qty < 1:
            raise ConfigError(file, f"{base}.buy", "needs {item: <known item>, qty: <int >= 1>}")
        buy = (str(buy_item), int(qty))
    until = entry.until or {}
    until_need, until_below, until_clock = -1, 0.0, -1
    if "need" in until:
        if until["need"] not in NEED_NAMES or not isinstance(until.get("below"), int | float):
            raise ConfigError(file, f"{base}.until", "need stop needs {need: <need name>, below: <number>}")
        until_need, until_below = NEED_NAMES.index(until["need"]), float(until["below"])
    if "clock" in until:
        try:
            until_clock = clock_to_tick(str(until["clock"]), ticks_per_day)
        except ValueError as exc:
            raise ConfigError(file, f"{base}.until.clock", str(exc)) from None
    vec = np.zeros(len(NEED_NAMES), dtype=np.float32)
    needs, per_tick = vec.copy(), vec.copy()
    for name, delta in entry.needs.items():
        needs[NEED_NAMES.index(name)] = delta
    for name, delta in entry.per_tick.items():
        per_tick[NEED_NAMES.index(name)] = delta
    return Affordance(
        id=aff_id,
        index=index,
        object_type=entry.object,
        duration=entry.duration,
        place_kind=entry.place,
        preconditions=conds,
        precondition_text=tuple(entry.preconditions),
        requires_power="power" in entry.requires,
        requires_water="water" in entry.requires,
        needs=needs,
        per_tick=per_tick,
        inventory=dict(entry.inventory),
        pay=entry.pay,
        buy=buy,
        wage=entry.wage,
        asleep=entry.asleep,
        chat=entry.chat,
        social_event=entry.social_event,
        until_need=until_need,
        until_below=until_below,
        until_shift_end=bool(until.get("shift_end", False)),
        until_clock=until_clock,
        hooks={k: tuple(v) for k, v in entry.hooks.items()},
    )


def parse_manifest(
    data: Any, file: str, items: set[str], object_types: set[str], ticks_per_day: int, checksum: str = ""
) -> AffordanceManifest:
    """Validate a parsed manifest (``{"affordances": {id: entry}}``) and compile it."""
    if not isinstance(data, dict) or set(data) != {"affordances"} or not isinstance(data["affordances"], dict):
        raise ConfigError(file, "", "expected a single top-level key 'affordances' mapping ids to entries")
    compiled = []
    for index, (aff_id, raw) in enumerate(data["affordances"].items()):
        try:
            entry = _Entry.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"] if p != "[key]")  # a bad dict key is named by the key
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            raise ConfigError(file, f"affordances.{aff_id}.{loc}".rstrip("."), msg) from None
        compiled.append(_compile_entry(str(aff_id), index, entry, items, object_types, ticks_per_day, file))
    if not compiled:
        raise ConfigError(file, "affordances", "the manifest declares no affordances")
    return AffordanceManifest(compiled, checksum)


def load_manifest(path: Path, items: set[str], object_types: set[str], ticks_per_day: int) -> AffordanceManifest:
    """Read, validate and compile an affordance manifest file."""
    checksum = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
    return parse_manifest(read_yaml(path), str(path), items, object_types, ticks_per_day, checksum)
