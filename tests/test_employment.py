"""Tests for employment: positions, shifts, punctuality, absences, job loss, re-hiring and wages."""

from __future__ import annotations

import pytest

from townlet.config.models import clock_to_tick
from townlet.world.events import EventKind

NO_DECAY = [f"needs.decay.{need}=0" for need in ("hunger", "hygiene", "energy", "social")]
ONE_CLERK = "employment.jobs={clerk: {site: office, positions: 1, shift_start: '09:00', shift_end: '17:00'}}"
START, END = 375, 708  # 09:00 and 17:00 at 1,000 ticks a day
DAY = 1000


def kinds(events, kind: EventKind) -> list:
    return [e for e in events if e.kind == kind]


def advance_to(sim, tick: int, run) -> list:
    """Step until ``tick`` is the next tick to simulate; return the events on the way."""
    assert sim.tick <= tick
    return run(sim, tick - sim.tick)


def clerk_sim(make_sim, agents: int = 1, overrides: tuple[str, ...] = ()):
    """A hands-off town with one clerk position, held by agent 0 after the first tick."""
    return make_sim(agents=agents, manual=True, overrides=[*NO_DECAY, ONE_CLERK, *overrides])


def go_to_work(world, slot: int, use_now) -> None:
    use_now(world, slot, world.employment.station_of(slot), "work")


# --- positions and shifts -------------------------------------------------------------------------


def test_one_position_per_station_at_each_site(make_sim) -> None:
    """With ``positions: 0`` every desk at a job's site becomes one position of that job."""
    world = make_sim(agents=1, manual=True).world
    emp, objects = world.employment, world.objects
    expected = []
    for name, job in world.config.employment.jobs.items():
        assert job.positions == 0
        stations = [int(o) for o in objects.of_type_in_kind(job.station, job.site)]
        assert stations, f"no {job.station} at {job.site}"
        expected += [(name, station) for station in stations]
    assert list(zip(emp.names, emp.station.tolist(), strict=True)) == expected
    assert len(set(emp.station.tolist())) == len(emp)


def test_positions_limit_caps_a_job(make_sim) -> None:
    """``positions: 2`` makes two clerk positions even though the office has more desks."""
    world = make_sim(agents=1, manual=True, overrides=["employment.jobs.clerk.positions=2"]).world
    assert world.employment.names.count("clerk") == 2
    assert len(world.objects.of_type_in_kind("desk", "office")) > 2


def test_shift_window_comes_from_the_configured_clock(make_sim) -> None:
    """Each position's start and end are its job's shift times converted to ticks of the day."""
    world = make_sim(agents=1, manual=True).world
    emp, tpd = world.employment, world.ticks_per_day
    for j, name in enumerate(emp.names):
        job = world.config.employment.jobs[name]
        assert (emp.start[j], emp.end[j]) == (clock_to_tick(job.shift_start, tpd), clock_to_tick(job.shift_end, tpd))
        assert emp.daily_wages()[name] == pytest.approx(job.wage_per_day)


def test_unemployed_agents_are_hired_at_the_first_rehire(make_sim, run) -> None:
    """At tick 0 every agent applies and takes a vacant position, in slot order."""
    sim = make_sim(agents=3, manual=True)
    events = run(sim, 1)
    hired = kinds(events, EventKind.JOB_HIRED)
    assert [(e.agent, e.obj) for e in hired] == [(s, int(sim.world.employment.station[s])) for s in range(3)]
    assert list(sim.world.agents.job[:3]) == [0, 1, 2]
    assert list(sim.world.employment.holder[:3]) == [0, 1, 2]


def test_on_shift_and_working_hours_windows(make_sim, run) -> None:
    """on_shift opens ``early_arrival`` ticks before the start; working_hours is exactly [start, end)."""
    sim = clerk_sim(make_sim, agents=2)
    run(sim, 1)
    emp, early = sim.world.employment, sim.world.config.employment.early_arrival
    for day in (0, 3):
        t = day * DAY
        assert [emp.on_shift(0, t + x) for x in (START - early - 1, START - early, START, END - 1, END)] == [
            False,
            True,
            True,
            True,
            False,
        ]
        assert [emp.working_hours(0, t + x) for x in (START - 1, START, END - 1, END)] == [False, True, True, False]
    assert sim.world.agents.job[1] == -1
    assert not emp.on_shift(1, START) and not emp.working_hours(1, START)


def test_scheduled_shifts_are_counted_at_shift_start(make_sim, run) -> None:
    """A held position adds one scheduled shift to its holder at each shift start."""
    sim = clerk_sim(make_sim)
    advance_to(sim, START, run)
    assert sim.world.employment.scheduled[0] == 0
    run(sim, 1)
    assert sim.world.employment.scheduled[0] == 1


# --- punctuality ----------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-50, 0, 21])
def test_arrival_within_the_punctuality_window_is_on_time(make_sim, use_now, run, offset: int) -> None:
    """Arriving early, at the start, or within 21 ticks after it is on time (SHIFT_ARRIVED value = lateness)."""
    sim = clerk_sim(make_sim)
    assert sim.world.config.employment.punctuality_window == 21
    advance_to(sim, START + offset, run)
    go_to_work(sim.world, 0, use_now)
    [arrived] = kinds(run(sim, 1), EventKind.SHIFT_ARRIVED)
    emp = sim.world.employment
    assert (arrived.tick, arrived.agent, arrived.value) == (START + offset, 0, float(max(offset, 0)))
    assert (emp.attended[0], emp.late[0], emp.late_ticks[0]) == (1, 0, 0)


def test_arrival_after_the_punctuality_window_is_late(make_sim, use_now, run) -> None:
    """Arriving 22 ticks after the start counts one late arrival of 22 ticks."""
    sim = clerk_sim(make_sim)
    advance_to(sim, START + 22, run)
    go_to_work(sim.world, 0, use_now)
    [arrived] = kinds(run(sim, 1), EventKind.SHIFT_ARRIVED)
    emp = sim.world.employment
    assert arrived.value == 22.0
    assert (emp.attended[0], emp.late[0], emp.late_ticks[0]) == (1, 1, 22)


def test_arrival_is_counted_once_per_day(make_sim, use_now, run) -> None:
    """Leaving the desk and coming back the same day does not clock in again."""
    sim = clerk_sim(make_sim)
    advance_to(sim, START, run)
    go_to_work(sim.world, 0, use_now)
    events = run(sim, 10)
    sim.world.cancel_step(0)
    go_to_work(sim.world, 0, use_now)
    events += run(sim, 10)
    assert len(kinds(events, EventKind.SHIFT_ARRIVED)) == 1
    assert sim.world.employment.attended[0] == 1


def test_work_needs_own_station_and_shift_time(make_sim, use_now, run) -> None:
    """Work cannot start at someone else's desk, nor at one's own desk outside the shift window."""
    sim = clerk_sim(make_sim)
    world = sim.world
    run(sim, 1)
    use_now(world, 0, world.employment.station_of(0), "work")
    run(sim, 1)
    assert world.agents.fail_reason[0] == "precondition: on_shift"
    advance_to(sim, START, run)
    other = next(int(d) for d in world.objects.of_type_in_kind("desk", "office") if d != world.employment.station_of(0))
    use_now(world, 0, other, "work")
    run(sim, 1)
    assert world.agents.fail_reason[0] == "precondition: own_station"
    assert world.employment.attended[0] == 0


# --- absence, job loss and re-hiring --------------------------------------------------------------


def test_no_arrival_by_absence_after_marks_an_absence(make_sim, run) -> None:
    """A holder who has not clocked in ``absence_after`` ticks after the start is marked absent, once."""
    sim = clerk_sim(make_sim)
    mark = START + sim.world.config.employment.absence_after
    assert not kinds(advance_to(sim, mark, run), EventKind.SHIFT_ABSENT)
    events = run(sim, DAY - 1)
    [absent] = kinds(events, EventKind.SHIFT_ABSENT)
    assert (absent.tick, absent.agent, absent.detail) == (mark, 0, "clerk")
    assert sim.world.employment.absent[0] == 1


def test_late_arrival_before_the_absence_mark_is_not_an_absence(make_sim, use_now, run) -> None:
    """Arriving late (but before ``absence_after``) counts as late, not absent."""
    sim = clerk_sim(make_sim)
    advance_to(sim, START + 100, run)
    go_to_work(sim.world, 0, use_now)
    events = run(sim, 200)
    assert not kinds(events, EventKind.SHIFT_ABSENT)
    assert (sim.world.employment.late[0], sim.world.employment.absent[0]) == (1, 0)


NIGHT_SHIFT = "employment.jobs={night: {site: office, positions: 1, shift_start: '22:00', shift_end: '23:59'}}"


def test_late_shift_absence_mark_after_midnight_respects_arrival(make_sim, use_now, run) -> None:
    """For a 22:00 shift the absence mark falls after midnight; an on-time arrival the evening before counts."""
    sim = make_sim(agents=1, manual=True, overrides=[*NO_DECAY, NIGHT_SHIFT])
    start = int(sim.world.employment.start[0])
    mark = start + sim.world.config.employment.absence_after
    assert mark > DAY
    advance_to(sim, start, run)
    go_to_work(sim.world, 0, use_now)
    events = advance_to(sim, mark + 1, run)
    assert len(kinds(events, EventKind.SHIFT_ARRIVED)) == 1
    assert not kinds(events, EventKind.SHIFT_ABSENT)
    events = advance_to(sim, DAY + mark + 1, run)  # the next night nobody comes
    [absent] = kinds(events, EventKind.SHIFT_ABSENT)
    assert absent.tick == DAY + mark
    assert sim.world.employment.absent[0] == 1


def test_max_absences_within_the_window_ends_the_job(make_sim, run) -> None:
    """The third absence within five days fires the agent for chronic absence (JOB_LOST)."""
    sim = clerk_sim(make_sim)
    cfg = sim.world.config.employment
    assert (cfg.max_absences, cfg.absence_window_days) == (3, 5)
    mark = START + cfg.absence_after
    events = advance_to(sim, 2 * DAY + mark, run)
    assert not kinds(events, EventKind.JOB_LOST)
    assert sim.world.agents.job[0] == 0
    [lost] = kinds(run(sim, 1), EventKind.JOB_LOST)
    assert (lost.tick, lost.agent, lost.detail) == (2 * DAY + mark, 0, "chronic_absence")
    assert sim.world.agents.job[0] == -1 and sim.world.employment.holder[0] == -1
    assert sim.world.employment.absent[0] == 3


def test_absences_older_than_the_window_are_forgotten(make_sim, use_now, run) -> None:
    """With a two-day window, absences on day 0 and day 2 (attending day 1) do not add up to two."""
    sim = clerk_sim(make_sim, overrides=("employment.max_absences=2", "employment.absence_window_days=2"))
    advance_to(sim, DAY + START, run)
    go_to_work(sim.world, 0, use_now)
    events = advance_to(sim, 3 * DAY, run)
    assert len(kinds(events, EventKind.SHIFT_ABSENT)) == 1  # day 2; day 0 was before this slice
    assert sim.world.employment.absent[0] == 2
    assert not kinds(events, EventKind.JOB_LOST)
    assert sim.world.agents.job[0] == 0


def test_unemployed_agent_is_rehired_into_the_vacancy(make_sim, run) -> None:
    """When the clerk is fired, the agent who was already looking for work gets the desk, not the absentee."""
    sim = clerk_sim(make_sim, agents=2)
    world = sim.world
    run(sim, 1)
    assert list(world.agents.job[:2]) == [0, -1]
    fired_at = 2 * DAY + START + world.config.employment.absence_after
    advance_to(sim, fired_at + 1, run)
    assert world.employment.holder[0] == -1
    rehire = -(-fired_at // world.config.employment.rehire_every) * world.config.employment.rehire_every
    events = advance_to(sim, rehire + 1, run)
    [hired] = kinds(events, EventKind.JOB_HIRED)
    assert (hired.tick, hired.agent, hired.detail) == (rehire, 1, "clerk")
    assert list(world.agents.job[:2]) == [-1, 0]
    assert world.employment.holder[0] == 1


def test_fired_agent_may_reapply_when_nobody_else_seeks_work(make_sim, run) -> None:
    """With no other job seeker, the agent who lost the job can be hired again at the next re-hire."""
    sim = clerk_sim(make_sim)
    fired_at = 2 * DAY + START + sim.world.config.employment.absence_after
    advance_to(sim, fired_at + 1, run)
    assert sim.world.agents.job[0] == -1
    run(sim, sim.world.config.employment.rehire_every)
    assert sim.world.agents.job[0] == 0


# --- wages ----------------------------------------------------------------------------------------


def test_wages_are_paid_only_for_ticks_worked_inside_the_shift(make_sim, use_now, run) -> None:
    """Starting 25 ticks early earns nothing until the shift starts, then the per-tick wage each tick."""
    sim = clerk_sim(make_sim)
    world = sim.world
    advance_to(sim, START - 25, run)
    go_to_work(world, 0, use_now)
    wallet, treasury = float(world.agents.wallet[0]), world.economy.treasury
    run(sim, 25)
    assert world.agents.wallet[0] == pytest.approx(wallet)
    run(sim, 40)
    per_tick = float(world.employment.wage_per_tick[0])
    assert world.agents.wallet[0] == pytest.approx(wallet + 40 * per_tick)
    assert world.economy.treasury == pytest.approx(treasury - 40 * per_tick)


def test_a_full_shift_pays_the_daily_wage(make_sim, use_now, run) -> None:
    """Working from start to end pays exactly the configured daily wage and ends the work at shift end."""
    sim = clerk_sim(make_sim)
    world = sim.world
    advance_to(sim, START, run)
    go_to_work(world, 0, use_now)
    wallet = float(world.agents.wallet[0])
    events = run(sim, END - START + 5)
    [done] = [e for e in events if e.kind == EventKind.AFFORDANCE_COMPLETED and e.detail == "work"]
    assert done.tick == END
    assert world.agents.wallet[0] == pytest.approx(wallet + world.config.employment.jobs["clerk"].wage_per_day)


def test_leaving_mid_shift_pays_only_the_ticks_worked(make_sim, use_now, run) -> None:
    """An agent that stops working after 100 ticks is paid for exactly 100 ticks."""
    sim = clerk_sim(make_sim)
    world = sim.world
    advance_to(sim, START, run)
    go_to_work(world, 0, use_now)
    wallet = float(world.agents.wallet[0])
    run(sim, 100)
    world.cancel_step(0)
    run(sim, 100)
    assert world.agents.wallet[0] == pytest.approx(wallet + 100 * float(world.employment.wage_per_tick[0]))
