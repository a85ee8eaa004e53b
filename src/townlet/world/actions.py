"""Running affordances: start (preconditions, before hooks), progress (vectorised), complete, fail.

Order for one use: reserve object -> before hooks -> occupy for the duration (per-tick effects, wages,
stop conditions, utility checks) -> completion effects -> after hooks -> release. A requirement lost
mid-way (power cut during a shower) fails the use: fail hooks run and the object is released.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from townlet.config.models import NEED_NAMES
from townlet.world.agents import Activity
from townlet.world.events import EventKind
from townlet.world.hooks import HookPayload

if TYPE_CHECKING:
    from townlet.world.affordances import Affordance
    from townlet.world.state import World


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
    a, m = world.agents, world.manifest
    users = (a.alive & (a.activity == Activity.USING)).nonzero()[0]
    if not len(users):
        return
    aff = a.target_aff[users]
    place = world.objects.place[a.target_obj[users]]
    u = world.utilities
    lost = (m.requires_power[aff] & ~u.power_on[place]) | (m.requires_water[aff] & ~u.water_on[place])
    if lost.any():
        # A lost requirement fails the use before this tick's effects accrue.
        for i in lost.nonzero()[0]:
            kind = "power" if m.requires_power[aff[i]] and not u.power_on[place[i]] else "water"
            fail(world, int(users[i]), f"{kind}_lost")
        keep = ~lost
        users, aff, place = users[keep], aff[keep], place[keep]
        if not len(users):
            return
    a.aff_elapsed[users] += 1
    a.last_progress[users] = world.tick
    a.needs[users] = np.clip(a.needs[users] + m.per_tick[aff], 0.0, 1.0)
    tod = world.tick % world.ticks_per_day
    earning = m.wage[aff] & (a.job[users] >= 0)
    if earning.any():
        workers = users[earning]
        jobs = a.job[workers]
        emp = world.employment
        in_shift = (emp.start[jobs] <= tod) & (tod < emp.end[jobs])
        world.economy.pay_wages(world, workers[in_shift], emp.wage_per_tick[jobs[in_shift]])
    done = a.aff_elapsed[users] >= a.aff_duration[users]
    if m.any_until_need:
        need = m.until_need[aff]
        has_need = need >= 0
        done[has_need] |= a.needs[users[has_need], need[has_need]] <= m.until_below[aff[has_need]]
    done |= m.until_clock[aff] == tod
    shift = m.until_shift_end[aff]
    if shift.any():
        jobs = a.job[users]
        ended = shift & ((jobs < 0) | (tod >= world.employment.end[np.maximum(jobs, 0)]))
        done |= ended
    if done.any():
        for i in done.nonzero()[0]:
            complete(world, int(users[i]))


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
