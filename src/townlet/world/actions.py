"""Running affordances: start (preconditions, before hooks), progress (vectorised), complete, fail.

Order for one use: reserve object -> before hooks -> occupy for the duration (per-tick effects, wages,
stop conditions, utility checks) -> completion effects -> after hooks -> release. A requirement lost
mid-way (power cut during a shower) fails the use: fail hooks run and the object is released.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING

import numba
import numpy as np

from townlet.config.models import NEED_NAMES
from townlet.world import scans
from townlet.world.agents import Activity
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
    a, m, u, found = world.agents, world.manifest, world.utilities, world.found
    place = world.objects.place
    users, lost = _users(
        a.alive,
        a.activity,
        USING,
        a.target_aff,
        a.target_obj,
        place,
        m.requires_power,
        m.requires_water,
        u.power_on,
        u.water_on,
        found[scans.USERS],
        found[scans.LOST_USE],
    )
    if not users:
        return
    if lost:
        # A lost requirement fails the use before this tick's effects accrue.
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
    emp = world.employment
    tod = world.tick % world.ticks_per_day
    earning, done = _effects(
        found[scans.USERS, :users],
        a.target_aff,
        a.aff_elapsed,
        a.aff_duration,
        a.last_progress,
        a.needs,
        a.job,
        world.tick,
        tod,
        m.per_tick,
        m.wage,
        m.until_need,
        m.until_below,
        m.until_clock,
        m.until_shift_end,
        emp.start,
        emp.end,
        found[scans.EARNING],
        found[scans.DONE],
    )
    if earning:
        earners = found[scans.EARNING, :earning]
        jobs = a.job[earners]
        in_shift = (emp.start[jobs] <= tod) & (tod < emp.end[jobs])
        world.economy.pay_wages(world, earners[in_shift], emp.wage_per_tick[jobs[in_shift]])
    for slot in found[scans.DONE, :done].tolist():
        complete(world, slot)


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
def _effects(  # noqa: PLR0913
    users: np.ndarray,
    target_aff: np.ndarray,
    elapsed: np.ndarray,
    duration: np.ndarray,
    last_progress: np.ndarray,
    needs: np.ndarray,
    job: np.ndarray,
    tick: int,
    tod: int,
    per_tick: np.ndarray,
    wage: np.ndarray,
    until_need: np.ndarray,
    until_below: np.ndarray,
    until_clock: np.ndarray,
    until_shift_end: np.ndarray,
    shift_start: np.ndarray,
    shift_end: np.ndarray,
    earning: np.ndarray,
    done: np.ndarray,
) -> tuple[int, int]:
    """Apply one tick of every use in place; the users who earn (job holders) and those now done, with counts."""
    n_earning = n_done = 0
    for i in range(len(users)):
        s = users[i]
        aff = target_aff[s]
        elapsed[s] += 1
        last_progress[s] = tick
        for k in range(needs.shape[1]):
            needs[s, k] = min(max(needs[s, k] + per_tick[aff, k], np.float32(0.0)), np.float32(1.0))
        j = job[s]
        if wage[aff] and j >= 0:
            earning[n_earning] = s
            n_earning += 1
        finished = elapsed[s] >= duration[s] or until_clock[aff] == tod
        need = until_need[aff]
        if need >= 0 and needs[s, need] <= until_below[aff]:
            finished = True
        if until_shift_end[aff] and (j < 0 or tod >= shift_end[j]):
            finished = True
        if finished:
            done[n_done] = s
            n_done += 1
    return n_earning, n_done


def _accrued(world: World, slot: int, aff: Affordance) -> dict[str, float]:
    elapsed = int(world.agents.aff_elapsed[slot])
    return {n: float(aff.per_tick[k]) * elapsed for k, n in enumerate(NEED_NAMES) if aff.per_tick[k]}


def complete(world: World, slot: int) -> None:
    """Apply completion effects, run after hooks, release the object, mark the step done."""
    a = world.agents
    obj, aff = int(a.target_obj[slot]), world.manifest.affordances[int(a.target_aff[slot])]
    effects = _accrued(world, slot, aff)
    if aff.needs.any():
        a.needs[slot] = np.clip(a.needs[slot] + aff.needs, 0.0, 1.0)
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
    if aff.hooks.get("after") or world.hooks.has_global("affordance_after"):
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
