"""Console commands for the run itself: reading, pacing, lifecycle switches, perturbations, narration.

Reading: status, agent, health, help; pacing: speed, pause; lifecycle: toggle_mortality, set_exit_cap,
set_spawn_delay; perturbations: the schedule on/off (``perturbations``), arrange_meet, perturbation_trigger,
perturbation_cancel; narrate.

``status``, ``agent``, ``health`` and ``help`` are read-only and open to viewer tokens; the rest need admin.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from townlet.console.commands import AgentArgs, AgentId
from townlet.console.errors import E_CONFLICT, E_INVALID_ARG, E_NOT_FOUND, CommandError
from townlet.console.registry import Args, Context, NoArgs, Registry
from townlet.perturbations.kinds import KINDS
from townlet.perturbations.schedule import PARAMS
from townlet.world.events import EventKind

COMMANDS = Registry()  # joined into the console's registry by townlet.console.catalog
command = COMMANDS.command
Duration = Annotated[int, Field(ge=1, le=1_000_000)]


# -- read-only -------------------------------------------------------------------------------------------


@command("status", NoArgs, admin=False)
def status(ctx: Context, args: NoArgs) -> dict[str, Any]:
    """The town at a glance: tick, clock, pacing, population, weather, money, headline KPIs."""
    sim = ctx.sim
    w = sim.world
    kpis = sim.kpis.report(w)
    return {
        **w.summary(),
        "config_id": sim.loaded.config_id,
        "seed": sim.seed,
        "clock": sim.clock.as_dict(),
        "lifecycle": {
            "mortality": sim.lifecycle.mortality,
            "exit_cap": sim.lifecycle.exit_cap,
            "spawn_delay": list(sim.lifecycle.spawn_delay),
        },
        "perturbations": [
            {"id": p.id, "kind": p.kind, "ends": p.end, "detail": p.detail} for p in sim.perturbations.active
        ],
        "perturbation_schedule": "on" if sim.perturbations.enabled else "off",
        "possessed": dict(sorted(ctx.service.possession.owners.items())),
        "kpis": {k: kpis[k] for k in ("attendance", "lateness", "collapses", "need_ok_share") if k in kpis},
    }


@command("agent", AgentArgs, admin=False)
def agent(ctx: Context, args: AgentArgs) -> dict[str, Any]:
    """One agent as telemetry shows it: position, needs, wallet, option, job, top ties."""
    slot = ctx.slot(args.agent)
    builder = ctx.service.state_builder()
    entries = builder.agents()
    public = builder.public(args.agent)
    return {"agent": public, **entries[public], "slot": slot}


@command("health", NoArgs, admin=False)
def health(ctx: Context, args: NoArgs) -> dict[str, Any]:
    """Telemetry transport health, per-phase tick timings, slowest ticks, console counters."""
    return ctx.service.health()


class HelpArgs(Args):
    """``command``: one command to describe (default: all)."""

    command: Annotated[str, Field(max_length=64)] | None = None


@command("help", HelpArgs, admin=False)
def help_(ctx: Context, args: HelpArgs) -> dict[str, Any]:
    """The commands you may run (with their argument schemas), or one command."""
    registry = ctx.service.registry
    if args.command is not None:
        found = registry.get(args.command)
        if found is None:
            raise CommandError(E_NOT_FOUND, f"no command {args.command!r}")
        return found.describe()
    visible = [registry.commands[n] for n in registry.names()]
    if not ctx.principal.is_admin:
        visible = [c for c in visible if not c.admin]
    return {
        "role": ctx.principal.role,
        "commands": [
            {
                "name": c.name,
                "role": "admin" if c.admin else "viewer",
                "summary": c.summary,
                **({"admin_ops": list(c.admin_ops)} if c.admin_ops else {}),
            }
            for c in visible
        ],
    }


# -- pacing ----------------------------------------------------------------------------------------------


class SpeedArgs(Args):
    """``value``: ``1x``, ``10x``, ``100x`` or ``max``."""

    value: Literal["1x", "10x", "100x", "max"]


@command("speed", SpeedArgs)
def speed(ctx: Context, args: SpeedArgs) -> dict[str, Any]:
    """Set the live speed (the live loop paces ticks by it)."""
    ctx.sim.clock.set_speed(args.value)
    return ctx.sim.clock.as_dict()


class PauseArgs(Args):
    """``on``: true pauses, false resumes."""

    on: bool = True


@command("pause", PauseArgs)
def pause(ctx: Context, args: PauseArgs) -> dict[str, Any]:
    """Pause (or resume) the live town."""
    ctx.sim.clock.set_paused(args.on)
    return ctx.sim.clock.as_dict()


# -- lifecycle -------------------------------------------------------------------------------------------


class MortalityArgs(Args):
    """``on``: automatic exits happen (collapse, eviction, unemployment, neglect)."""

    on: bool


@command("toggle_mortality", MortalityArgs)
def toggle_mortality(ctx: Context, args: MortalityArgs) -> dict[str, Any]:
    """Switch automatic exits on or off (console kills always work)."""
    ctx.sim.lifecycle.mortality = args.on
    return {"mortality": args.on}


class ExitCapArgs(Args):
    """``per_day``: exits allowed per in-sim day."""

    per_day: Annotated[int, Field(ge=0, le=10_000)]


@command("set_exit_cap", ExitCapArgs)
def set_exit_cap(ctx: Context, args: ExitCapArgs) -> dict[str, Any]:
    """Set the exit-storm guard's exits per in-sim day."""
    ctx.sim.lifecycle.exit_cap = args.per_day
    return {"exit_cap": args.per_day}


class SpawnDelayArgs(Args):
    """``low``..``high`` ticks from an exit to the newcomer's arrival."""

    low: Annotated[int, Field(ge=1, le=1_000_000)]
    high: Annotated[int, Field(ge=1, le=1_000_000)]

    @model_validator(mode="after")
    def _ordered(self) -> SpawnDelayArgs:
        if self.low > self.high:
            raise ValueError("low must not exceed high")
        return self


@command("set_spawn_delay", SpawnDelayArgs)
def set_spawn_delay(ctx: Context, args: SpawnDelayArgs) -> dict[str, Any]:
    """Set how long after an exit the newcomer arrives."""
    ctx.sim.lifecycle.spawn_delay = (args.low, args.high)
    return {"spawn_delay": [args.low, args.high]}


# -- perturbations and narration -------------------------------------------------------------------------


def _start(ctx: Context, kind: str, params: dict[str, Any]) -> dict[str, Any]:
    try:
        p = ctx.sim.perturbations.trigger(kind, **params)
    except ValueError as exc:
        text = str(exc)
        code = E_NOT_FOUND if text.startswith(("no agent", "unknown item", "no place")) else E_CONFLICT
        raise CommandError(code, text) from None
    return {"id": p.id, "kind": p.kind, "started": p.start, "ends": p.end, "detail": p.detail}


class MeetArgs(Args):
    """``agents``: two ids (default: the strongest rivals free now); ``place``: a place kind; ``duration``."""

    agents: Annotated[list[AgentId], Field(min_length=2, max_length=2)] | None = None
    place: Annotated[str, Field(max_length=64)] | None = None
    duration: Duration | None = None


@command("arrange_meet", MeetArgs)
def arrange_meet(ctx: Context, args: MeetArgs) -> dict[str, Any]:
    """Bring two agents (by default the top rivals) together for a chat."""
    params: dict[str, Any] = {"duration": args.duration, "place": args.place}
    if args.agents is not None:
        a, b = (ctx.slot(x) for x in args.agents)
        if a == b:
            raise CommandError(E_INVALID_ARG, "agents: two different agents")
        params["agents"] = (a, b)
    if args.place is not None and args.place not in ctx.sim.world.objects.places_of_kind:
        raise CommandError(E_NOT_FOUND, f"no place kind {args.place!r}")
    return _start(ctx, "arranged_meet", params)


class TriggerArgs(Args):
    """``kind`` of perturbation and its parameters (those left out are drawn as for a scheduled one)."""

    kind: Literal[KINDS]  # type: ignore[valid-type]
    duration: Duration | None = None
    item: Annotated[str, Field(max_length=64)] | None = None
    magnitude: Annotated[float, Field(gt=0.0, le=100.0)] | None = None
    place: Annotated[str, Field(max_length=64)] | None = None
    agents: Annotated[list[AgentId], Field(min_length=2, max_length=2)] | None = None


@command("perturbation_trigger", TriggerArgs)
def perturbation_trigger(ctx: Context, args: TriggerArgs) -> dict[str, Any]:
    """Start a perturbation now: price_spike, blackout, water_outage, closed_facility or arranged_meet."""
    given = {k: v for k, v in args.model_dump(exclude={"kind"}).items() if v is not None}
    unknown = sorted(set(given) - PARAMS[args.kind])
    if unknown:
        allowed = ", ".join(sorted(PARAMS[args.kind]))
        raise CommandError(E_INVALID_ARG, f"{unknown[0]}: {args.kind} takes only {allowed}")
    if "agents" in given:
        a, b = (ctx.slot(x) for x in given["agents"])
        if a == b:
            raise CommandError(E_INVALID_ARG, "agents: two different agents")
        given["agents"] = (a, b)
    return _start(ctx, args.kind, given)


class ScheduleArgs(Args):
    """``state``: ``on`` rolls the daily dice again from the next midnight; ``off`` stops scheduled ones starting."""

    state: Literal["on", "off"]


@command("perturbations", ScheduleArgs)
def perturbations(ctx: Context, args: ScheduleArgs) -> dict[str, Any]:
    """Switch the perturbation schedule on or off (running ones end on time; triggers still work)."""
    schedule = ctx.sim.perturbations
    dropped = schedule.set_enabled(args.state == "on")
    tick, tpd = ctx.sim.world.tick, ctx.sim.world.ticks_per_day
    return {
        "schedule": args.state,
        "dropped": [{"tick": t, "kind": k} for t, k in dropped],
        "running": [p.id for p in schedule.active],
        "next_roll_tick": -(-tick // tpd) * tpd if args.state == "on" else None,
    }  # this tick's phase rolls


class CancelArgs(Args):
    """``id`` of a running perturbation."""

    id: Annotated[int, Field(ge=0, le=2**62)]


@command("perturbation_cancel", CancelArgs)
def perturbation_cancel(ctx: Context, args: CancelArgs) -> dict[str, Any]:
    """End a running perturbation now (the town is restored)."""
    if not ctx.sim.perturbations.cancel(args.id):
        raise CommandError(E_NOT_FOUND, f"no running perturbation {args.id}")
    return {"id": args.id, "cancelled": True}


class NarrateArgs(Args):
    """``text``: a line for the narration ticker; ``agent``: who it is about (optional)."""

    text: Annotated[str, Field(min_length=1, max_length=280)]
    agent: AgentId | None = None


@command("narrate", NarrateArgs)
def narrate(ctx: Context, args: NarrateArgs) -> dict[str, Any]:
    """Publish an operator's line in the narration stream."""
    w = ctx.sim.world
    slot = ctx.slot(args.agent) if args.agent is not None else -1
    if any(ord(c) < 32 for c in args.text):
        raise CommandError(E_INVALID_ARG, "text: control characters are not allowed")
    w.emit(EventKind.NARRATION, agent=slot, value=-1.0, detail=args.text)  # category -1: the console
    return {"text": args.text, "tick": w.tick}
