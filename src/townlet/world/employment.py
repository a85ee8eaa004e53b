"""Employment: job positions at workstations, daily shifts, punctuality, absences, job loss, re-hiring."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from townlet.config.errors import ConfigError
from townlet.config.models import clock_to_tick
from townlet.world.events import EventKind

if TYPE_CHECKING:
    from townlet.world.state import World


class Employment:
    """Job positions (one per workstation) and per-agent attendance records.

    Attributes:
        names: Job kind per position (``clerk``).
        station: ``int32[J]`` workstation object per position.
        start / end: ``int32[J]`` shift window as ticks of the day.
        wage_per_tick: ``float64[J]`` pay per tick worked.
        holder: ``int32[J]`` slot holding the position, -1 when vacant.
        arrived_day: ``int64[J]`` the last day the holder clocked in (-1 never).
        scheduled / attended / late / absent: ``int32[C]`` shift counters per agent.
        late_ticks: ``int64[C]`` total ticks late per agent.
        unemployed_since: ``int64[C]`` tick each agent last lost a job (longest unemployed is re-hired first).
    """

    def __init__(self, world: World) -> None:
        cfg = world.config.employment
        self.cfg = cfg
        tpd = world.ticks_per_day
        names, stations, starts, ends, wages = [], [], [], [], []
        for name, job in cfg.jobs.items():
            start, end = clock_to_tick(job.shift_start, tpd), clock_to_tick(job.shift_end, tpd)
            if end <= start:
                raise ConfigError(
                    str(world.loaded.source), f"employment.jobs.{name}", "shift_end must be after shift_start"
                )
            objs = world.objects.of_type_in_kind(job.station, job.site)
            count = len(objs) if job.positions == 0 else min(job.positions, len(objs))
            for obj in objs[:count]:
                names.append(name)
                stations.append(int(obj))
                starts.append(start)
                ends.append(end)
                wages.append(job.wage_per_day / (end - start))
        self.names = names
        self.station = np.array(stations, dtype=np.int32)
        self.start = np.array(starts, dtype=np.int32)
        self.end = np.array(ends, dtype=np.int32)
        self.wage_per_tick = np.array(wages, dtype=np.float64)
        self.holder = np.full(len(names), -1, dtype=np.int32)
        self.arrived_day = np.full(len(names), -1, dtype=np.int64)
        self.absent_day = np.full(len(names), -1, dtype=np.int64)
        self.hired_at = np.zeros(len(names), dtype=np.int64)
        cap = world.agents.capacity
        self.scheduled = np.zeros(cap, dtype=np.int32)
        self.attended = np.zeros(cap, dtype=np.int32)
        self.late = np.zeros(cap, dtype=np.int32)
        self.absent = np.zeros(cap, dtype=np.int32)
        self.late_ticks = np.zeros(cap, dtype=np.int64)
        self.unemployed_since = np.zeros(cap, dtype=np.int64)
        self.absence_days: dict[int, deque[int]] = {}
        self.ticks_per_day = tpd
        self.agents = world.agents
        self.absence_mark = (self.start + cfg.absence_after) % tpd
        self._marks = set(self.start.tolist()) | set(self.absence_mark.tolist())

    def __len__(self) -> int:
        return len(self.names)

    def daily_wages(self) -> dict[str, float]:
        """Daily wage per job kind (for the economy invariant)."""
        out: dict[str, float] = {}
        for j, name in enumerate(self.names):
            out[name] = float(self.wage_per_tick[j] * (self.end[j] - self.start[j]))
        return out

    def set_wage(self, world: World, job: str, wage_per_day: float) -> list[str]:
        """Change a job kind's daily wage; return economy-invariant violations."""
        idx = [j for j, n in enumerate(self.names) if n == job]
        if not idx:
            raise KeyError(job)
        for j in idx:
            self.wage_per_tick[j] = wage_per_day / (self.end[j] - self.start[j])
        return world.economy.check_invariant(world)

    def station_of(self, slot: int) -> int:
        """The workstation object of an agent's job, -1 when unemployed."""
        job = int(self.agents.job[slot])
        return int(self.station[job]) if job >= 0 else -1

    def on_shift(self, slot: int, tick: int) -> bool:
        """Whether the agent's job is in its work window now (early arrival allowed)."""
        job = int(self.agents.job[slot])
        if job < 0:
            return False
        tod = tick % self.ticks_per_day
        return int(self.start[job]) - self.cfg.early_arrival <= tod < int(self.end[job])

    def working_hours(self, slot: int, tick: int) -> bool:
        """Whether it is strictly within the agent's shift (no early-arrival allowance)."""
        job = int(self.agents.job[slot])
        tod = tick % self.ticks_per_day
        return job >= 0 and int(self.start[job]) <= tod < int(self.end[job])

    def hire(self, world: World, slot: int, job: int) -> None:
        """Give a vacant position to an agent."""
        self.holder[job] = slot
        self.hired_at[job] = world.tick
        self.arrived_day[job] = -1
        self.absent_day[job] = -1
        world.agents.job[slot] = job
        self.absence_days[slot] = deque()
        world.emit(EventKind.JOB_HIRED, agent=slot, obj=int(self.station[job]), detail=self.names[job])

    def fire(self, world: World, slot: int, reason: str) -> None:
        """Take an agent's job away (chronic absence, quitting, leaving town)."""
        job = int(world.agents.job[slot])
        if job < 0:
            return
        self.holder[job] = -1
        world.agents.job[slot] = -1
        self.unemployed_since[slot] = world.tick
        world.emit(EventKind.JOB_LOST, agent=slot, obj=int(self.station[job]), detail=reason)
        world.hook_event("quit_job", slot, detail=reason)

    def record_arrival(self, world: World, slot: int) -> None:
        """Clock the agent in for today's shift (first arrival only), tracking punctuality."""
        job = int(world.agents.job[slot])
        if job < 0:
            return
        day = world.tick // self.ticks_per_day
        if self.arrived_day[job] == day:
            return
        self.arrived_day[job] = day
        lateness = world.tick % self.ticks_per_day - int(self.start[job])
        self.attended[slot] += 1
        if lateness > self.cfg.punctuality_window:
            self.late[slot] += 1
            self.late_ticks[slot] += lateness
        world.emit(EventKind.SHIFT_ARRIVED, agent=slot, obj=int(self.station[job]), value=float(max(lateness, 0)))

    def update(self, world: World) -> None:
        """Count scheduled shifts, mark absences, end chronic absentees' jobs, re-hire the unemployed."""
        tod = world.tick % self.ticks_per_day
        if tod in self._marks:
            day = world.tick // self.ticks_per_day
            starting = ((self.start == tod) & (self.holder >= 0)).nonzero()[0]
            self.scheduled[self.holder[starting]] += 1
            # The mark can fall after midnight: compare with the day the shift started on.
            shift_day = day - (self.start + self.cfg.absence_after) // self.ticks_per_day
            began = shift_day * self.ticks_per_day + self.start
            # A holder hired after the shift began is not expected at it.
            expected = (self.holder >= 0) & (self.hired_at <= began)
            due = (self.absence_mark == tod) & expected & (self.arrived_day != shift_day)
            for job in due.nonzero()[0]:
                self._mark_absent(world, int(job), int(shift_day[job]))
        if world.tick % self.cfg.rehire_every == 0:
            self._rehire(world)

    def _mark_absent(self, world: World, job: int, day: int) -> None:
        slot = int(self.holder[job])
        self.absent[slot] += 1
        self.absent_day[job] = day
        world.emit(EventKind.SHIFT_ABSENT, agent=slot, obj=int(self.station[job]), detail=self.names[job])
        days = self.absence_days.setdefault(slot, deque())
        days.append(day)
        while days and days[0] <= day - self.cfg.absence_window_days:
            days.popleft()
        if len(days) >= self.cfg.max_absences:
            self.fire(world, slot, "chronic_absence")

    def _rehire(self, world: World) -> None:
        vacant = (self.holder < 0).nonzero()[0]
        if not len(vacant):
            return
        seekers = (world.agents.alive & (world.agents.job < 0)).nonzero()[0]
        # Longest unemployed first, so an agent just fired for absence does not walk straight back in.
        since = np.maximum(self.unemployed_since[seekers], world.agents.spawn_tick[seekers])
        seekers = seekers[np.argsort(since, kind="stable")]
        for job, slot in zip(vacant, seekers, strict=False):
            self.hire(world, int(slot), int(job))
