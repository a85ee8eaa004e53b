"""Exit triggers: the conditions under which an agent must leave town (SPEC 8), watched tick by tick.

- ``collapse``: hunger at ``needs.collapse_level`` for ``needs.collapse_ticks`` ticks (the COLLAPSE event).
- ``eviction``: ``eviction_unpaid_days`` unpaid rents in a row serve an eviction notice; the agent then has
  ``eviction_recovery_days`` to recover (pay a later rent, or have the arrears in its wallet, which are then
  collected); at the deadline it is evicted.
- ``unemployment``: no wages for ``unemployment_days`` while the agent holds a job or one is vacant.
- ``neglect``: some need above ``neglect_level`` for ``neglect_share`` of the last day (a two-bucket estimate:
  today's count plus yesterday's, weighted by how much of yesterday is still inside the last 24 hours).
- ``age_out``: ``age_out_days`` after arrival (off by default).

Every rule is vectorised over the agent arrays; only agents holding an eviction notice are looked at one
by one. The slow rules (unemployment, neglect, age-out) are checked every ``check_every`` ticks, neglect
counting each sampled tick ``check_every`` times.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from townlet.world.events import EventKind

if TYPE_CHECKING:
    from townlet.world.state import World

FACILITY_REASONS = frozenset({"eviction", "unemployment", "neglect"})


class ExitTriggers:
    """Per-agent condition state (eviction notices, neglect counters) and the rules that fire triggers.

    Attributes:
        notice_deadline: ``int64[C]`` tick an eviction notice runs out, -1 without a notice.
        neglected_today / neglected_yesterday: ``int32[C]`` ticks with a need above ``neglect_level``.
    """

    def __init__(self, world: World) -> None:
        cfg = world.config.lifecycle
        self.cfg = cfg
        cap, tpd = world.agents.capacity, world.ticks_per_day
        self.tpd = tpd
        self.on = {reason for reason, live in cfg.exits.model_dump().items() if live}
        self.notice_deadline = np.full(cap, -1, dtype=np.int64)
        self.neglected_today = np.zeros(cap, dtype=np.int32)
        self.neglected_yesterday = np.zeros(cap, dtype=np.int32)
        self.day = 0
        self.recovery_ticks = round(cfg.eviction_recovery_days * tpd)
        self.unemployment_ticks = round(cfg.unemployment_days * tpd)
        self.neglect_ticks = cfg.neglect_share * tpd
        self.age_ticks = round(cfg.age_out_days * tpd)
        self.neglect_level = np.float32(cfg.neglect_level)
        self.collapse_ticks = max(world.config.needs.collapse_ticks, 1)
        self.notices = 0  # agents holding a notice (lets the common case skip the per-agent loop)
        self.every = cfg.check_every
        self._spawned = -1

    def forget(self, slot: int) -> None:
        """Clear an agent's condition state (it left, or its slot is taken by a newcomer)."""
        if self.notice_deadline[slot] >= 0:
            self.notices -= 1
        self.notice_deadline[slot] = -1
        self.neglected_today[slot] = 0
        self.neglected_yesterday[slot] = 0

    def update(self, world: World, suppressed: bool, leaving: set[int]) -> list[tuple[int, str]]:
        """Advance the conditions by one tick; return the ``(slot, reason)`` triggers firing now.

        While ``suppressed`` (a city-wide outage or its grace window) facility-caused triggers do not fire;
        their conditions keep counting and fire once the suppression ends. Agents in ``leaving`` (exits
        already pending) get no new eviction notice.
        """
        a, tick = world.agents, world.tick
        fired: list[tuple[int, str]] = []
        if world.counters["spawned"] != self._spawned:
            self._spawned = world.counters["spawned"]
            for slot in (a.alive & (a.spawn_tick == tick)).nonzero()[0]:
                self.forget(int(slot))  # a fresh agent starts with a clean record
        if "collapse" in self.on:
            collapsed = a.collapse_ticks == self.collapse_ticks
            if collapsed.any():
                fired.extend((int(s), "collapse") for s in (collapsed & a.alive).nonzero()[0])
        if "eviction" in self.on:
            self._eviction(world, suppressed, leaving, fired)
        if tick % self.every:
            return fired
        if not suppressed and "unemployment" in self.on:
            emp = world.employment
            since = np.maximum(world.economy.last_wage, a.spawn_tick)
            jobless = a.alive & (tick - since >= self.unemployment_ticks)
            if jobless.any():
                jobless &= (a.job >= 0) | bool((emp.holder < 0).any())
                fired.extend((int(s), "unemployment") for s in jobless.nonzero()[0])
        if "neglect" in self.on:
            self._neglect(world, suppressed, fired)
        if "age_out" in self.on:
            old = a.alive & (tick - a.spawn_tick >= self.age_ticks)
            fired.extend((int(s), "age_out") for s in old.nonzero()[0])
        return fired

    def _eviction(self, world: World, suppressed: bool, leaving: set[int], fired: list[tuple[int, str]]) -> None:
        a, econ, tick = world.agents, world.economy, world.tick
        if tick % self.tpd == econ.rent_tick:  # rent was just charged in the world phase
            due = a.alive & (econ.rent_unpaid_days >= self.cfg.eviction_unpaid_days) & (self.notice_deadline < 0)
            for slot in due.nonzero()[0]:
                s = int(slot)
                if s in leaving:
                    continue
                self.notice_deadline[s] = tick + self.recovery_ticks
                self.notices += 1
                world.emit(EventKind.EVICTION_NOTICE, agent=s, value=float(self.notice_deadline[s]))
                world.hook_event("agent_near_death", s, detail="eviction_notice")
        if not self.notices:
            return
        for slot in (self.notice_deadline >= 0).nonzero()[0]:
            s = int(slot)
            arrears = float(econ.rent_unpaid_days[s]) * econ.rent
            if not a.alive[s] or econ.rent_unpaid_days[s] == 0:
                self._clear_notice(s)  # gone, or a later rent was paid: recovered
            elif a.wallet[s] >= arrears:
                econ.transfer_to_treasury(s, world, arrears, "rent")
                econ.rent_unpaid_days[s] = 0
                world.emit(EventKind.RENT_PAID, agent=s, value=arrears, detail="arrears")
                self._clear_notice(s)
            elif tick >= self.notice_deadline[s] and not suppressed:
                fired.append((s, "eviction"))
                self._clear_notice(s)

    def _clear_notice(self, slot: int) -> None:
        self.notice_deadline[slot] = -1
        self.notices -= 1

    def _neglect(self, world: World, suppressed: bool, fired: list[tuple[int, str]]) -> None:
        a, tick = world.agents, world.tick
        day, tod = divmod(tick, self.tpd)
        if day != self.day:
            self.day = day
            self.neglected_yesterday[:] = self.neglected_today
            self.neglected_today[:] = 0
        worst = a.needs.max(axis=1)
        self.neglected_today += (a.alive & (worst > self.neglect_level)) * np.int32(self.every)
        if suppressed:
            return
        estimate = self.neglected_today + self.neglected_yesterday * (1.0 - tod / self.tpd)
        neglected = a.alive & (estimate >= self.neglect_ticks)
        if neglected.any():
            fired.extend((int(s), "neglect") for s in neglected.nonzero()[0])


__all__ = ["FACILITY_REASONS", "ExitTriggers"]
