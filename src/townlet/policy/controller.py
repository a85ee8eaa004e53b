"""Scripted option controllers: each option becomes a short plan of steps, each step a use of an object.

A plan is built when an option starts (e.g. GetFed = cook at my stove if I have food and power, else a
snack from my fridge, else order and eat at the café). Each step picks the best object among its
candidates (distance plus queue length, skipping objects on fairness cooldown or without the utility
they need) and sends the agent there; the world does the walking, queueing and using.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numba
import numpy as np

from townlet.observations.commitment import window_over
from townlet.policy.memory import AgentMemory
from townlet.policy.options import NEVER, OPTION_COUNT, OPTION_LABELS, Option, is_night, must_decide, option_mask
from townlet.policy.settling import CRITICAL, IDLE_ROW, STALLED, newly_possible, settle_scan
from townlet.world.events import EventKind
from townlet.world.fields import FAR, field_dist

if TYPE_CHECKING:
    from townlet.world.state import World

QUEUE_COST = 12  # tiles of walking one queued agent is worth when comparing objects
SHORTLIST = 6  # candidates compared by exact distance (the nearest by straight-line distance)


@dataclass(frozen=True, slots=True)
class Step:
    """Use one of ``candidates`` with affordance ``aff``; or wait ``wait`` ticks; or walk to ``tile``."""

    candidates: tuple[int, ...] = ()
    aff: int = -1
    wait: int = 0
    tile: int = -1


class OptionController:
    """Builds plans for options and advances agents through their steps; keeps the agents' critical streaks.

    Attributes:
        critical_since: ``int64[C]`` the first tick of each agent's current streak with a need at or above
            ``needs.critical`` (``NEVER``: none); the mask reads it.
        point_at: ``int64[C]`` the last tick a need turned critical or rose to ``options.decision_level``, or,
            in a critical streak, an option became possible (a decision point of semi-MDP policies when it is
            the coming tick).
    """

    def __init__(self, world: World) -> None:
        self.world = world
        m, o = world.manifest, world.objects
        self.aff = {a.id: a.index for a in m.affordances}
        self.pay = {a.id: float(a.pay) for a in m.affordances}
        self.plans: dict[int, list[Step]] = {}
        self.failures = np.zeros(world.agents.capacity, dtype=np.int32)
        self.commitment = world.config.options.commitment_window
        self.travel_limit = world.config.options.max_option_ticks
        self.home_objects = {
            home: {t: tuple(int(x) for x in o.of_type_in_place(t, home)) for t in o.type_names} for home in world.homes
        }
        self.shared = {
            ("cafe", "counter_service"),
            ("cafe", "table"),
            ("grocer", "shelf"),
            ("grocer", "till"),
            ("park", "bench"),
            ("gym", "shower"),
        }
        self.public = {key: tuple(int(x) for x in o.of_type_in_kind(key[1], key[0])) for key in self.shared}
        self._arrays: dict[tuple[int, ...], np.ndarray] = {}  # candidate tuples as arrays, for _best_object
        self.critical_since = np.full(world.agents.capacity, NEVER, dtype=np.int64)
        self.point_at = np.full(world.agents.capacity, NEVER, dtype=np.int64)
        self.above = np.zeros(world.agents.needs.shape, dtype=bool)  # needs at or above the decision level
        self._critical = np.float32(world.config.needs.critical)
        self._level = np.float32(world.config.options.decision_level)
        self.possible = np.zeros((world.agents.capacity, OPTION_COUNT), dtype=bool)  # options possible in a streak
        self.memory = AgentMemory(world)  # known shops, objects that failed an agent (avoided for a while)
        # Rows of slots found by settle's scan (stalled walkers, idle bodies, critical streaks): scratch, never state.
        self.found = np.empty((3, world.agents.capacity), dtype=np.int64)

    # -- plans --------------------------------------------------------------------------------------

    def _mine(self, slot: int, obj_type: str) -> tuple[int, ...]:
        return self.home_objects.get(int(self.world.agents.home[slot]), {}).get(obj_type, ())

    def _open(self, objs: tuple[int, ...]) -> tuple[int, ...]:
        """The objects whose place is open to the public (not a closed facility)."""
        w = self.world
        return objs if w.place_open.all() else tuple(ob for ob in objs if w.place_open[w.objects.place[ob]])

    def _powered(self, objs: tuple[int, ...], kind: str) -> tuple[int, ...]:
        on = self.world.utilities.power_on if kind == "power" else self.world.utilities.water_on
        return tuple(ob for ob in objs if on[self.world.objects.place[ob]])

    def plan(self, slot: int, option: Option) -> list[Step]:  # noqa: C901
        """The steps that carry out ``option`` for this agent now (empty when it cannot)."""
        w, a = self.world, self.world.agents
        inv = a.inventory[slot]
        raw = inv[a.item_index["raw_food"]] if "raw_food" in a.item_index else 0
        aff = self.aff
        if option == Option.GET_FED:
            if inv[a.item_index["cafe_meal"]] >= 1:
                return [Step(self.public[("cafe", "table")], aff["eat_meal"])]
            cafe = [
                Step(self.public[("cafe", "counter_service")], aff["order_meal"]),
                Step(self.public[("cafe", "table")], aff["eat_meal"]),
            ]
            home: list[Step] = []
            station = w.employment.station_of(slot)
            if raw >= 1 and station >= 0 and w.employment.working_hours(slot, w.tick):
                return [Step((station,), aff["eat_at_desk"])]  # a packed lunch at the desk
            if raw >= 1:
                stoves = self._powered(self._mine(slot, "stove"), "power")
                hurried = w.employment.on_shift(slot, w.tick) and not w.employment.working_hours(slot, w.tick)
                if stoves and not hurried:
                    home = [Step(stoves, aff["cook_meal"])]
                else:
                    home = [Step(self._mine(slot, "fridge"), aff["snack"])]
            counters = self._open(self.public[("cafe", "counter_service")])
            can_buy = a.wallet[slot] >= w.economy.price("cafe_meal") and counters
            if home and can_buy:
                # Eat wherever is nearer; at work the café is usually the sensible lunch.
                at_work = w.employment.working_hours(slot, w.tick)
                return (
                    cafe
                    if at_work or self._nearest(slot, cafe[0].candidates) < self._nearest(slot, home[0].candidates)
                    else home
                )
            return home or (cafe if can_buy else [])
        if option == Option.GET_CLEAN:
            # Only what the agent can pay for: a plan whose first step is refused fails at once, again and again.
            money = float(a.wallet[slot])
            showers = self._powered(self._mine(slot, "shower") + self.public[("gym", "shower")], "water")
            steps = [Step(showers, aff["shower"])] if showers and money >= self.pay["shower"] else []
            clothes = inv[a.item_index["clean_clothes"]]
            wardrobe = self._mine(slot, "wardrobe")
            if clothes >= 1:
                steps.append(Step(wardrobe, aff["change_clothes"]))
            elif self._powered(self._powered(wardrobe, "water"), "power") and money >= self.pay["do_laundry"]:
                steps.append(Step(wardrobe, aff["do_laundry"]))
            return steps
        if option == Option.GO_TO_WORK:
            station = w.employment.station_of(slot)
            return [Step((station,), aff["work"])] if station >= 0 else []
        if option == Option.SHOP_GROCERIES:
            return [
                Step(self.public[("grocer", "shelf")], aff["pick_groceries"]),
                Step(self.public[("grocer", "till")], aff["checkout"]),
            ]
        if option == Option.SLEEP:
            tod = w.tick % w.ticks_per_day
            night = is_night(w, tod)
            return [Step(self._mine(slot, "bed"), aff["sleep" if night else "nap"])]
        if option == Option.SOCIALISE:
            benches = self._open(self.public[("park", "bench")])
            tables = self.public[("cafe", "table")]
            return [Step(benches, aff["chat_bench"])] if benches else [Step(tables, aff["chat_table"])]
        if option == Option.IDLE:
            # Idle time is spent at home, out of everybody's way.
            steps = [Step(wait=w.config.options.idle_ticks)]
            here = int(a.tile[slot])
            home_place = int(a.home[slot])
            if w.grid.place_index[here] != home_place or w.grid.in_the_way[here]:
                spot = w.loiter_tile(slot, home_place)
                if spot >= 0:
                    steps.insert(0, Step(tile=spot))
            return steps
        return []

    # -- running ------------------------------------------------------------------------------------

    def settle(self, points: bool = True) -> None:
        """Bring every agent's option up to date with its body (mutates the world; between ticks and in ``policy``).

        A walk past ``options.max_option_ticks`` fails; an idle body moves on to its option's next step, or
        its option ends (finished or failed), so that an agent whose plan ran out holds no option. Then the
        critical streaks and, with ``points`` (between ticks, where decisions are made), the need points
        (:attr:`critical_since`, :attr:`point_at`) are brought up to date for the tick about to run.
        """
        a = self.world.agents
        streaks, rules = self.scan_inputs()
        counts = settle_scan(
            a.alive, a.needs, a.activity, a.option, a.step_started, *streaks, self.found, self.world.tick, points, rules
        )
        self.settle_found(*counts, points=points)

    def scan_inputs(self) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], tuple[float, float, int]]:
        """What settle's scan reads besides the agents: ``(critical_since, above, point_at)`` and its rules.

        The rules are ``(needs.critical, options.decision_level, options.max_option_ticks)``, the levels as the
        float32 values the needs are compared with (plain floats cross into compiled code cheaper).
        """
        return (self.critical_since, self.above, self.point_at), (
            float(self._critical),
            float(self._level),
            self.travel_limit,
        )

    def settle_found(self, stalled: int, idle: int, critical: int, points: bool = True) -> None:
        """Settle what settle's scan found (its counts; the slots in the rows of :attr:`found`).

        Stalled walkers fail, idle bodies advance; with ``points``, options that became possible during a
        critical streak make a need point.
        """
        w, found = self.world, self.found
        # (the streaks only read needs and presence, which failing or advancing a step leaves alone)
        if stalled:
            for slot in found[STALLED, :stalled].tolist():
                w.fail_step(slot, "travel_timeout")
        if idle:
            for slot in found[IDLE_ROW, :idle].tolist():
                self.advance(slot)
        if points and critical:  # in an emergency, an option that becomes possible is worth a decision
            slots = found[CRITICAL, :critical]
            newly_possible(slots, option_mask(w, slots), self.possible, self.critical_since, self.point_at, w.tick)

    def deciding(self) -> np.ndarray:
        """``bool[C]`` agents at a decision point now: no option, or a need point under their option."""
        a = self.world.agents
        return must_decide(a.alive, a.option, a.option_started, self.point_at, self.world.tick)

    def masks(self, slots: np.ndarray | None = None, commitment: int | None = None) -> np.ndarray:
        """``bool[n, 7]`` the option mask of ``slots`` (living by default); ``commitment``: the window by default.

        See :mod:`townlet.policy.options` (``DECISION_POINTS`` for the semi-MDP mask, 0 for every possible option).
        """
        window = self.commitment if commitment is None else commitment
        return option_mask(self.world, slots, window, self.critical_since, self.point_at)

    def start(self, slot: int, option: Option, steps: list[Step] | None = None) -> bool:
        """Begin an option for an agent (abandoning the current one); False if it has no plan.

        ``steps`` replaces the option's usual plan (an arranged meet chats at a given place).
        """
        w, a = self.world, self.world.agents
        if a.option[slot] >= 0:
            w.cancel_step(slot)
        steps = self.plan(slot, option) if steps is None else steps
        a.option[slot] = int(option)
        a.option_started[slot] = w.tick
        a.plan_step[slot] = 0
        a.last_progress[slot] = w.tick
        self.plans[slot] = steps
        w.emit(EventKind.OPTION_STARTED, agent=slot, detail=OPTION_LABELS[option])
        if not steps:
            self._end(slot, ok=False, reason="no_plan")
            return False
        self.advance(slot)
        return True

    def meet(self, slot: int, place_kind: str, partner: int = -1) -> bool:
        """Start a Socialise option that chats at a place of ``place_kind`` (an arranged meet); False if none.

        With a ``partner`` already on its way to a seat there, the agent takes the free seat nearest to it.
        """
        w = self.world
        o = w.objects
        for aff in w.manifest.affordances:
            if not (aff.chat and aff.place_kind == place_kind):
                continue
            seats = o.of_type_in_kind(aff.object_type, place_kind)
            if not len(seats):
                continue
            taken = int(w.agents.target_obj[partner]) if partner >= 0 else -1
            if taken in seats and len(seats) > 1:
                seats = seats[seats != taken]
                near = np.abs(o.x[seats] - o.x[taken]) + np.abs(o.y[seats] - o.y[taken])
                seats = seats[near == near.min()]
            return self.start(slot, Option.SOCIALISE, [Step(tuple(int(x) for x in seats), aff.index)])
        return False

    def advance(self, slot: int) -> None:
        """Move an idle agent to its next step, or end its option (finished or failed)."""
        w, a = self.world, self.world.agents
        if a.option[slot] < 0:
            return
        if a.step_done[slot]:
            self.memory.visited(slot, int(a.target_obj[slot]))
        if a.step_failed[slot]:
            self.memory.failed(slot, int(a.target_obj[slot]), a.fail_reason[slot], w.tick)
            self._end(slot, ok=False, reason=a.fail_reason[slot])
            return
        steps = self.plans.get(slot, [])
        i = int(a.plan_step[slot])
        if i > 0 and not a.step_done[slot]:
            i -= 1  # the body was stopped from outside (a teleport) before its step was done: do it again
        if i >= len(steps):
            self._end(slot, ok=True)
            return
        a.plan_step[slot] = i + 1
        step = steps[i]
        if step.wait:
            w.wait(slot, step.wait)
            return
        if step.tile >= 0:
            w.go_to(slot, step.tile)
            return
        obj = self._choose(slot, self.memory.usable(slot, step.candidates, w.tick))
        if obj < 0:
            w.fail_step(slot, "no_object")
            self._end(slot, ok=False, reason="no_object")
            return
        w.go_use(slot, obj, step.aff)

    def _shortlist(self, slot: int, candidates: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...]]:
        """The candidates worth exact distances (the ``SHORTLIST`` nearest as the crow flies), as array and tuple."""
        w, o = self.world, self.world.objects
        cands = self._arrays.get(candidates)  # plans reuse a few candidate tuples: keep their arrays
        if cands is None:
            cands = self._arrays[candidates] = np.array(candidates, dtype=np.int64)
        if len(cands) > SHORTLIST:
            # In a big town only the few nearest (as the crow flies) are worth exact distances.
            here = int(w.agents.tile[slot])
            cands = _nearest_by_crow(cands, o.x, o.y, here % w.grid.width, here // w.grid.width, SHORTLIST)
            candidates = tuple(cands.tolist())
        return cands, candidates

    def _nearest(self, slot: int, candidates: tuple[int, ...]) -> int:
        """Walking distance to the nearest shortlisted candidate (a huge number if none is reachable)."""
        if not candidates:
            return int(FAR)
        o = self.world.objects
        cands, candidates = self._shortlist(slot, candidates)
        for obj in candidates:
            if o.field[obj] < 0:
                o.field_of(obj)
        return int(_least_distance(cands, int(self.world.agents.tile[slot]), o.field, self.world.grid.fields.arrays))

    def _choose(self, slot: int, candidates: tuple[int, ...]) -> int:
        """The candidate with the lowest walking distance plus queue cost (skipping cooldowns)."""
        w, o = self.world, self.world.objects
        if not candidates:
            return -1
        here = int(w.agents.tile[slot])
        if len(candidates) == 1:  # nothing to compare: usable or not
            obj = candidates[0]
            if (o.cooldown and o.on_cooldown(slot, obj, w.tick)) or not w.place_open[o.place[obj]]:
                return -1
            field = o.field_of(obj)
            return obj if w.grid.dist_at(field, here) < FAR else -1
        cands, candidates = self._shortlist(slot, candidates)
        barred = _NOBODY_BARRED
        if o.cooldown:  # (on_cooldown also forgets the cooldowns that have run out)
            barred = np.array([o.on_cooldown(slot, obj, w.tick) for obj in candidates])
        paths, queued = w.grid.fields.arrays, w.queues.length
        best = _best_object(
            cands, barred, here, o.place, w.place_open, o.field, paths, queued, o.reserved_by, o.user, QUEUE_COST
        )
        if best == NEEDS_FIELD:  # a candidate's distance field is not built yet: build them in this order
            for i, obj in enumerate(candidates):
                if not (len(barred) and barred[i]) and w.place_open[o.place[obj]]:
                    o.field_of(obj)
            best = _best_object(
                cands,
                barred,
                here,
                o.place,
                w.place_open,
                o.field,
                w.grid.fields.arrays,
                queued,
                o.reserved_by,
                o.user,
                QUEUE_COST,
            )
        return int(best)

    def _end(self, slot: int, ok: bool, reason: str = "") -> None:
        w, a = self.world, self.world.agents
        option = int(a.option[slot])
        label = OPTION_LABELS[option] if option >= 0 else "?"
        w.emit(
            EventKind.OPTION_FINISHED if ok else EventKind.OPTION_FAILED,
            agent=slot,
            value=float(option),
            detail=label if ok else f"{label}:{reason}",
        )
        self.failures[slot] = 0 if ok else self.failures[slot] + 1
        a.option[slot] = -1
        a.step_failed[slot] = False
        a.step_done[slot] = False
        self.plans.pop(slot, None)

    def may_switch(self, slot: int) -> bool:
        """Whether the commitment window allows choosing a new option now."""
        a = self.world.agents
        return a.option[slot] < 0 or bool(window_over.py_func(self.world.tick, a.option_started[slot], self.commitment))

    def forget(self, slot: int) -> None:
        """Drop the plan of an agent that left."""
        self.plans.pop(slot, None)
        self.failures[slot] = 0
        self.memory.forget(slot)
        self.critical_since[slot] = NEVER
        self.point_at[slot] = NEVER
        self.above[slot] = False


NEEDS_FIELD = -2  # _best_object's answer when a candidate it must measure has no distance field yet
_NOBODY_BARRED = np.zeros(0, dtype=np.bool_)


@numba.njit(cache=True)
def _nearest_by_crow(cands: np.ndarray, x: np.ndarray, y: np.ndarray, hx: int, hy: int, k: int) -> np.ndarray:
    """The ``k`` candidates nearest ``(hx, hy)`` as the crow flies (ties: the earlier one), in their given order."""
    crow = np.abs(x[cands] - hx) + np.abs(y[cands] - hy)
    keep = np.zeros(len(cands), dtype=np.bool_)
    for _ in range(k):
        best = -1
        for i in range(len(cands)):
            if not keep[i] and (best < 0 or crow[i] < crow[best]):
                best = i
        keep[best] = True
    return cands[keep]


@numba.njit(cache=True)
def _best_object(
    cands: np.ndarray,
    barred: np.ndarray,
    here: int,
    place: np.ndarray,
    place_open: np.ndarray,
    field: np.ndarray,
    fields: tuple,
    queued: np.ndarray,
    reserved_by: np.ndarray,
    user: np.ndarray,
    queue_cost: int,
) -> int:
    """The first candidate with the lowest walking distance plus queue cost, -1 if none, or ``NEEDS_FIELD``.

    Skips candidates ``barred`` by a cooldown (empty: none is), in closed places, or out of reach;
    ``queued`` holds each object's queue length.
    """
    best, best_score = -1, 0
    for i in range(len(cands)):
        obj = cands[i]
        if (len(barred) and barred[i]) or not place_open[place[obj]]:
            continue
        if field[obj] < 0:
            return NEEDS_FIELD
        d = field_dist(fields, field[obj], here)
        if d >= FAR:
            continue
        busy = queued[obj] + (1 if reserved_by[obj] >= 0 or user[obj] >= 0 else 0)
        score = np.int64(d) + queue_cost * busy
        if best < 0 or score < best_score:
            best, best_score = obj, score
    return best


@numba.njit(cache=True)
def _least_distance(cands: np.ndarray, here: int, field: np.ndarray, fields: tuple) -> int:
    """The least walking distance from ``here`` to any of ``cands`` (their fields built), ``FAR`` if none."""
    best = int(FAR)
    for obj in cands:
        best = min(best, field_dist(fields, field[obj], here))
    return best
