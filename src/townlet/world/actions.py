"""Running affordances: start (preconditions, before hooks), progress (vectorised), complete, fail.

Order for one use: reserve object -> before hooks -> occupy for the duration (per-tick effects, wages,
stop conditions, utility checks) -> completion effects -> after hooks -> release. A requirement lost
mid-way (power cut during a shower) fails the use: fail hooks run and the object is released.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple

import numba
import numpy as np

from townlet.config.models import NEED_NAMES
from townlet.world import scans
from townlet.world.affordances import UseRules
from townlet.world.agents import Activity
from townlet.world.economy import exact_sum
from townlet.world.events import EventKind
from townlet.world.hooks import HookPayload

if TYPE_CHECKING:
    from townlet.world.affordances import Affordance
    from townlet.world.state import World

USING = int(Activity.USING)


def _payload(
    world: World, slot: int, obj: int, aff: Affordance, phase: str, effects: dict[str, float], detail: str = ""
) -> HookPayload:
    return HookPayload(
        tick=world.tick,
        phase=phase,
        agent=world.agents.name(slot),
        object=world.objects.ids[obj],
        affordance=aff.id,
        effects=MappingProxyType(effects),
        detail=detail,
    )


def _hooks(world: World, names: tuple[str, ...], payload: HookPayload, slot: int, obj: int) -> None:
    errors = world.hooks.call(names, payload)
    global_event = f"affordance_{payload.phase}"
    if world.hooks.has_global(global_event):
        errors += world.hooks.emit(global_event, payload)
    for message in errors:
        world.emit(EventKind.HOOK_ERROR, agent=slot, obj=obj, detail=message)


def start(world: World, slot: int) -> bool:
    """Begin the agent's target affordance at its reserved object; False (and a failed step) if it can't."""
    a, o = world.agents, world.objects
    obj, aff = int(a.target_obj[slot]), world.manifest.affordances[int(a.target_aff[slot])]
    if o.reserved_by[obj] != slot:
        world.fail_step(slot, "not_reserved")
        return False
    if not aff.wage and not world.place_open[o.place[obj]]:
        world.fail_step(slot, "closed")
        return False
    failing = aff.failing_precondition(world, slot, obj)
    if failing is not None:
        world.fail_step(slot, f"precondition: {failing}")
        return False
    if aff.hooks.get("before") or world.hooks.has_global("affordance_before"):
        _hooks(world, aff.hooks.get("before", ()), _payload(world, slot, obj, aff, "before", {}), slot, obj)
    o.user[obj] = slot
    a.activity[slot] = Activity.USING
    a.dest_field[slot] = -1
    a.aff_elapsed[slot] = 0
    a.aff_duration[slot] = aff.duration
    a.asleep[slot] = aff.asleep
    a.last_progress[slot] = world.tick
    if aff.wage:
        world.employment.record_arrival(world, slot)
    world.emit(EventKind.AFFORDANCE_STARTED, agent=slot, obj=obj, detail=aff.id)
    return True


def progress(world: World) -> None:
    """One tick of every running affordance: per-tick effects, wages, failures and completions."""
    users, lost, earning, done, total = _tick(world, -1)
    if lost:
        # A lost requirement fails the use before this tick's effects accrue (the kernel stopped before them).
        a, m, u, found = world.agents, world.manifest, world.utilities, world.found
        place = world.objects.place
        lost_slots = found[scans.LOST_USE, :lost].copy()
        for slot in lost_slots.tolist():
            aff, where = a.target_aff[slot], place[a.target_obj[slot]]
            kind = "power" if m.requires_power[aff] and not u.power_on[where] else "water"
            fail(world, slot, f"{kind}_lost")
        kept = found[scans.USERS, :users]
        kept = kept[~np.isin(kept, lost_slots)]
        users = len(kept)
        found[scans.USERS, :users] = kept
        if not users:
            return
        users, lost, earning, done, total = _tick(world, users)
    if earning:
        paid = world.found[scans.EARNING, :earning].copy()
        world.economy.book_wages(world.tick, paid, world.wage_due[:earning].copy(), total)
    if done:
        for slot in world.found[scans.DONE, :done].tolist():
            complete(world, slot)


def _tick(world: World, users: int) -> tuple[int, int, int, int, float]:
    """Call :func:`_uses` this tick (``users`` < 0: find the users; else the first ``users`` of ``found[USERS]``)."""
    a, m, u, emp = world.agents, world.manifest, world.utilities, world.employment
    return _uses(
        users,
        (a.alive, a.activity, a.target_aff, a.target_obj, a.aff_elapsed, a.aff_duration, a.last_progress, a.needs),
        (a.job, a.wallet, world.economy.last_wage, emp.start, emp.end, emp.wage_per_tick),
        (world.objects.place, m.requires_power, m.requires_water, u.power_on, u.water_on),
        tuple(m.rules),  # (a named tuple crosses into a kernel at about twice a plain tuple's cost)
        world.tick,
        world.tick % world.ticks_per_day,
        world.found,
        world.wage_due,
    )


@numba.njit(cache=True)
def _uses(
    users: int,
    uses: tuple,
    pay: tuple,
    supply: tuple,
    rules: tuple,
    tick: int,
    tod: int,
    found: np.ndarray,
    wage_due: np.ndarray,
) -> tuple[int, int, int, int, float]:
    """One tick of every use, unless a requirement was lost: then only the users and the lost are found.

    ``uses`` is ``(alive, activity, target_aff, target_obj, elapsed, duration, last_progress, needs)``,
    ``pay`` is ``(job, wallet, last_wage, shift_start, shift_end, wage_per_tick)`` and ``supply`` is
    ``(place, requires_power, requires_water, power_on, water_on)``; ``rules`` is a :class:`UseRules` as a
    plain tuple. With ``users`` < 0 the users are found first (:func:`_users`); if any lost power or water
    the kernel returns ``(users, lost, 0, 0, 0.0)`` before any effect, for the caller to fail them and call
    again with the kept users in ``found[USERS]``. Else :func:`_effects` applies the tick, the earners are
    paid (wallet and ``last_wage``), and the kernel returns ``(users, 0, earning, done, total paid)`` (the
    total as ``ndarray.sum()`` gives it: :func:`~townlet.world.economy.exact_sum`).
    """
    alive, activity, target_aff, target_obj, elapsed, duration, last_progress, needs = uses
    job, wallet, last_wage, shift_start, shift_end, wage_per_tick = pay
    if users < 0:
        place, requires_power, requires_water, power_on, water_on = supply
        users, lost = _users(
            alive,
            activity,
            USING,
            target_aff,
            target_obj,
            place,
            requires_power,
            requires_water,
            power_on,
            water_on,
            found[scans.USERS],
            found[scans.LOST_USE],
        )
        if lost or not users:
            return users, lost, 0, 0, 0.0
    earning, done = _effects(
        users,
        Uses(target_aff, elapsed, duration, last_progress, needs, job),
        UseRules(*rules),
        shift_start,
        shift_end,
        wage_per_tick,
        tick,
        tod,
        found,
        wage_due,
    )
    for i in range(earning):
        s = found[scans.EARNING, i]
        wallet[s] += wage_due[i]
        last_wage[s] = tick
    return users, 0, earning, done, exact_sum(wage_due, 0, earning)


class Uses(NamedTuple):
    """The agent arrays one tick of a use reads and writes (``[C]`` each; ``needs`` is ``[C, needs]``)."""

    target_aff: np.ndarray
    elapsed: np.ndarray
    duration: np.ndarray
    last_progress: np.ndarray
    needs: np.ndarray
    job: np.ndarray


@numba.njit(cache=True)
def _users(
    alive: np.ndarray,
    activity: np.ndarray,
    using: int,
    target_aff: np.ndarray,
    target_obj: np.ndarray,
    place: np.ndarray,
    needs_power: np.ndarray,
    needs_water: np.ndarray,
    power_on: np.ndarray,
    water_on: np.ndarray,
    users: np.ndarray,
    lost: np.ndarray,
) -> tuple[int, int]:
    """Slots using an affordance, and those among them whose power or water just went off (into ``users``, ``lost``)."""
    n = m = 0
    for s in range(len(alive)):
        if alive[s] and activity[s] == using:
            users[n] = s
            n += 1
            aff, where = target_aff[s], place[target_obj[s]]
            if (needs_power[aff] and not power_on[where]) or (needs_water[aff] and not water_on[where]):
                lost[m] = s
                m += 1
    return n, m


@numba.njit(cache=True)
def _effects(
    users: int,
    uses: Uses,
    rules: UseRules,
    shift_start: np.ndarray,
    shift_end: np.ndarray,
    wage_per_tick: np.ndarray,
    tick: int,
    tod: int,
    found: np.ndarray,
    wage_due: np.ndarray,
) -> tuple[int, int]:
    """Apply one tick of the uses of the first ``users`` slots of ``found[USERS]`` in place.

    Writes the users paid this tick (job holders at paid work within their shift, ``shift_start`` to
    ``shift_end`` as ticks of the day, per job) into ``found[EARNING]`` with their pay in ``wage_due``,
    and the users now done into ``found[DONE]``; returns both counts.
    """
    n_earning = n_done = 0
    needs, per_tick = uses.needs, rules.per_tick
    for i in range(users):
        s = found[scans.USERS, i]
        aff = uses.target_aff[s]
        uses.elapsed[s] += 1
        uses.last_progress[s] = tick
        for k in range(needs.shape[1]):
            needs[s, k] = min(max(needs[s, k] + per_tick[aff, k], np.float32(0.0)), np.float32(1.0))
        j = uses.job[s]
        if rules.wage[aff] and j >= 0 and shift_start[j] <= tod < shift_end[j]:
            found[scans.EARNING, n_earning] = s
            wage_due[n_earning] = wage_per_tick[j]
            n_earning += 1
        finished = uses.elapsed[s] >= uses.duration[s] or rules.until_clock[aff] == tod
        need = rules.until_need[aff]
        if need >= 0 and needs[s, need] <= rules.until_below[aff]:
            finished = True
        if rules.until_shift_end[aff] and (j < 0 or tod >= shift_end[j]):
            finished = True
        if finished:
            found[scans.DONE, n_done] = s
            n_done += 1
    return n_earning, n_done


@numba.njit(cache=True)
def _add_needs(needs: np.ndarray, slot: int, delta: np.ndarray) -> bool:
    """Add ``delta`` to the slot's needs, each kept within [0, 1]; False (nothing written) when it is all 0."""
    if not delta.any():
        return False
    for k in range(len(delta)):
        needs[slot, k] = min(max(needs[slot, k] + delta[k], np.float32(0.0)), np.float32(1.0))
    return True


def _accrued(world: World, slot: int, aff: Affordance) -> dict[str, float]:
    elapsed = int(world.agents.aff_elapsed[slot])
    return {n: float(aff.per_tick[k]) * elapsed for k, n in enumerate(NEED_NAMES) if aff.per_tick[k]}


def complete(world: World, slot: int) -> None:
    """Apply completion effects, run after hooks, release the object, mark the step done."""
    a = world.agents
    obj, aff = int(a.target_obj[slot]), world.manifest.affordances[int(a.target_aff[slot])]
    hooked = bool(aff.hooks.get("after")) or world.hooks.has_global("affordance_after")
    effects = _accrued(world, slot, aff) if hooked else {}  # (only hooks read the effects)
    if _add_needs(a.needs, slot, aff.needs) and hooked:
        for k, n in enumerate(NEED_NAMES):
            if aff.needs[k]:
                effects[n] = effects.get(n, 0.0) + float(aff.needs[k])
    for item, delta in aff.inventory.items():
        col = a.item_index[item]
        a.inventory[slot, col] = max(0, int(a.inventory[slot, col]) + delta)
        effects[item] = float(delta)
    if aff.pay:
        paid = min(aff.pay, max(float(a.wallet[slot]), 0.0))
        world.economy.transfer_to_treasury(slot, world, paid, "fees")
        effects["wallet"] = -paid
    if aff.buy is not None:
        item, qty = aff.buy
        before = float(a.wallet[slot])
        bought = world.economy.buy(world, slot, int(world.objects.place[obj]), item, qty)
        effects[item] = float(bought)
        effects["wallet"] = float(a.wallet[slot]) - before
    if aff.chat:
        partner = world.chat_partner(slot)
        if partner >= 0:
            world.relationships.chat(world, slot, partner)
    if aff.social_event:
        for other in world.co_users(slot, aff):
            world.relationships.apply_pair(world, slot, other, aff.social_event)
    if hooked:
        _hooks(world, aff.hooks.get("after", ()), _payload(world, slot, obj, aff, "after", effects), slot, obj)
    world.queues.release(world, obj)
    a.asleep[slot] = False
    a.activity[slot] = Activity.IDLE
    a.step_done[slot] = True
    a.last_action[slot] = aff.index
    a.last_success[slot] = True
    a.last_duration[slot] = a.aff_elapsed[slot]
    world.emit(EventKind.AFFORDANCE_COMPLETED, agent=slot, obj=obj, detail=aff.id)


def fail(world: World, slot: int, reason: str) -> None:
    """Fail a running affordance: fail hooks see the accrued effects, the object is released."""
    a = world.agents
    obj, aff = int(a.target_obj[slot]), world.manifest.affordances[int(a.target_aff[slot])]
    if aff.hooks.get("fail") or world.hooks.has_global("affordance_fail"):
        _hooks(
            world,
            aff.hooks.get("fail", ()),
            _payload(world, slot, obj, aff, "fail", _accrued(world, slot, aff), reason),
            slot,
            obj,
        )
    world.emit(EventKind.AFFORDANCE_FAILED, agent=slot, obj=obj, detail=f"{aff.id}:{reason}")
    a.asleep[slot] = False
    world.fail_step(slot, reason)
