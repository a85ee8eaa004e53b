"""Admin commands that change the town: agents, possession, prices, power, water and weather.

Agents: spawn, teleport, kill, setneed, set_rel, force_chat; possession: possess, unpossess, act. Each
handler runs at a tick boundary and goes through world methods, so the usual events and hooks follow.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from townlet.config.vocabulary import NeedName as Need
from townlet.config.vocabulary import OptionName
from townlet.console.errors import (
    E_ALREADY_POSSESSED,
    E_BLOCKED_TILE,
    E_BUSY_TARGET,
    E_CONFLICT,
    E_FORBIDDEN,
    E_INVALID_ARG,
    E_NOT_FOUND,
    CommandError,
)
from townlet.console.registry import Args, Context, Registry
from townlet.policy.options import OPTION_LABELS, Option, option_mask
from townlet.world.agents import Activity

AgentId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Coordinate = Annotated[int, Field(ge=0, le=100_000)]
TieValue = Annotated[float, Field(ge=-1.0, le=1.0)]
COMMANDS = Registry()  # joined into the console's registry by townlet.console.catalog
command = COMMANDS.command


def _agent_summary(ctx: Context, slot: int) -> dict[str, Any]:
    w = ctx.sim.world
    tile = int(w.agents.tile[slot])
    return {"agent": w.agents.name(slot), "slot": slot, "x": tile % w.grid.width, "y": tile // w.grid.width}


# -- agents --------------------------------------------------------------------------------------------


class SpawnArgs(Args):
    """Where and who: ``agent`` id, tile ``x``/``y`` (default: inside the home), ``home`` place, ``needs``.

    Defaults: ``agent_<n>``, the household's home, the configured initial needs.
    """

    agent: AgentId | None = None
    x: Coordinate | None = None
    y: Coordinate | None = None
    home: str | None = None
    needs: dict[Need, Annotated[float, Field(ge=0.0, le=1.0)]] | None = None

    @model_validator(mode="after")
    def _both_coordinates(self) -> SpawnArgs:
        if (self.x is None) != (self.y is None):
            raise ValueError("give both x and y, or neither")
        return self


@command("spawn", SpawnArgs)
def spawn(ctx: Context, args: SpawnArgs) -> dict[str, Any]:
    """Add an agent (at a tile or at home)."""
    w = ctx.sim.world
    if args.agent is not None and args.agent in w.agents.slot_of:
        raise CommandError(E_CONFLICT, f"agent id {args.agent!r} is taken")
    if w.agents.free_slot() < 0:
        raise CommandError(E_CONFLICT, f"the town is full ({w.agents.capacity} slots)")
    home = None
    if args.home is not None:
        home = ctx.place(args.home)
        if home not in w.homes:
            raise CommandError(E_INVALID_ARG, f"{args.home!r} is not a home")
    tile = None
    if args.x is not None and args.y is not None:
        tile = ctx.tile(args.x, args.y)
        if not w.grid.walkable[tile]:
            raise CommandError(E_BLOCKED_TILE, f"({args.x}, {args.y}) is not walkable")
        if not w.grid.outdoors[tile] and w.occupancy[tile] > 0:
            raise CommandError(E_BLOCKED_TILE, f"({args.x}, {args.y}) is occupied")
    needs = {str(k): v for k, v in args.needs.items()} if args.needs else None
    slot = w.spawn(args.agent, home=home, tile=tile, needs=needs)
    return _agent_summary(ctx, slot)


class TeleportArgs(Args):
    """``agent`` to ``x``, ``y``; ``force`` interrupts an affordance in progress."""

    agent: AgentId
    x: Coordinate
    y: Coordinate
    force: bool = False


@command("teleport", TeleportArgs)
def teleport(ctx: Context, args: TeleportArgs) -> dict[str, Any]:
    """Move an agent to a tile at once (its current step is abandoned)."""
    w = ctx.sim.world
    slot = ctx.slot(args.agent)
    tile = ctx.tile(args.x, args.y)
    if not w.grid.walkable[tile]:
        raise CommandError(E_BLOCKED_TILE, f"({args.x}, {args.y}) is not walkable")
    if not w.grid.outdoors[tile] and w.occupancy[tile] > 0 and int(w.agents.tile[slot]) != tile:
        raise CommandError(E_BLOCKED_TILE, f"({args.x}, {args.y}) is occupied")
    if w.agents.activity[slot] == Activity.USING and not args.force:
        raise CommandError(E_BUSY_TARGET, f"{args.agent} is busy using an object (pass force: true to interrupt)")
    if int(w.agents.tile[slot]) != tile:
        w.teleport(slot, tile)
    return _agent_summary(ctx, slot)


class AgentArgs(Args):
    """``agent``: an agent id."""

    agent: AgentId


class KillArgs(Args):
    """``agent`` leaves the town now; ``note`` goes to the audit log."""

    agent: AgentId
    note: Annotated[str, Field(max_length=200)] = ""


@command("kill", KillArgs)
def kill(ctx: Context, args: KillArgs) -> dict[str, Any]:
    """Make an agent leave the town now (a newcomer follows as after any exit)."""
    slot = ctx.slot(args.agent)
    ctx.sim.lifecycle.exit(slot, "console")
    ctx.service.possession.prune()
    return {"agent": args.agent, "left": True}


class SetNeedArgs(Args):
    """``agent``'s ``need`` set to ``value`` (a deficit in [0, 1])."""

    agent: AgentId
    need: Need
    value: Annotated[float, Field(ge=0.0, le=1.0)]


@command("setneed", SetNeedArgs)
def setneed(ctx: Context, args: SetNeedArgs) -> dict[str, Any]:
    """Set one need of an agent."""
    slot = ctx.slot(args.agent)
    ctx.sim.world.set_need(slot, args.need, args.value)
    return {"agent": args.agent, "need": args.need, "value": args.value}


class SetRelArgs(Args):
    """``agent``'s tie toward ``other``: any of ``trust``, ``familiarity``, ``rivalry`` in [-1, 1]."""

    agent: AgentId
    other: AgentId
    trust: TieValue | None = None
    familiarity: TieValue | None = None
    rivalry: TieValue | None = None
    both_ways: bool = False

    @model_validator(mode="after")
    def _something(self) -> SetRelArgs:
        if self.trust is None and self.familiarity is None and self.rivalry is None:
            raise ValueError("give at least one of trust, familiarity, rivalry")
        return self


@command("set_rel", SetRelArgs)
def set_rel(ctx: Context, args: SetRelArgs) -> dict[str, Any]:
    """Set a relationship tie (one way, or both ways)."""
    w = ctx.sim.world
    a, b = ctx.slot(args.agent), ctx.slot(args.other)
    if a == b:
        raise CommandError(E_INVALID_ARG, "an agent has no tie to itself")
    if not w.relationships.enabled:
        raise CommandError(E_CONFLICT, "relationships are off (features.relationships: OFF)")
    values = (args.trust, args.familiarity, args.rivalry)
    w.relationships.set_tie(w, a, b, values)
    if args.both_ways:
        w.relationships.set_tie(w, b, a, values)
    tie = w.relationships.tie(a, b)
    assert tie is not None
    return {
        "agent": args.agent,
        "other": args.other,
        "trust": round(float(tie[0]), 4),
        "familiarity": round(float(tie[1]), 4),
        "rivalry": round(float(tie[2]), 4),
    }


class PairArgs(Args):
    """Two agent ids."""

    agent: AgentId
    other: AgentId


@command("force_chat", PairArgs)
def force_chat(ctx: Context, args: PairArgs) -> dict[str, Any]:
    """Make two agents chat now, wherever they are (the usual odds decide how it goes)."""
    w = ctx.sim.world
    a, b = ctx.slot(args.agent), ctx.slot(args.other)
    if a == b:
        raise CommandError(E_INVALID_ARG, "an agent cannot chat with itself")
    if not w.relationships.enabled:
        raise CommandError(E_CONFLICT, "relationships are off (features.relationships: OFF)")
    for slot, name in ((a, args.agent), (b, args.other)):
        if w.agents.asleep[slot]:
            raise CommandError(E_BUSY_TARGET, f"{name} is asleep")
    ok = w.relationships.chat(w, a, b)
    return {"agent": args.agent, "other": args.other, "success": ok}


# -- possession ----------------------------------------------------------------------------------------


@command("possess", AgentArgs)
def possess(ctx: Context, args: AgentArgs) -> dict[str, Any]:
    """Take control of an agent: it follows your ``act`` orders instead of its policy."""
    ctx.slot(args.agent)
    owners = ctx.service.possession.owners
    owner = owners.get(args.agent)
    if owner is not None:
        raise CommandError(E_ALREADY_POSSESSED, f"{args.agent} is possessed by {owner}")
    owners[args.agent] = ctx.principal.name
    return {"agent": args.agent, "possessed_by": ctx.principal.name}


@command("unpossess", AgentArgs)
def unpossess(ctx: Context, args: AgentArgs) -> dict[str, Any]:
    """Release an agent you possess back to its policy."""
    ctx.slot(args.agent)
    owners = ctx.service.possession.owners
    owner = owners.get(args.agent)
    if owner is None:
        raise CommandError(E_CONFLICT, f"{args.agent} is not possessed")
    if owner != ctx.principal.name:
        raise CommandError(E_FORBIDDEN, f"{args.agent} is possessed by {owner}")
    del owners[args.agent]
    return {"agent": args.agent, "possessed_by": None}


class ActArgs(Args):
    """``agent`` (possessed by you) starts ``option`` now."""

    agent: AgentId
    option: OptionName


@command("act", ActArgs)
def act(ctx: Context, args: ActArgs) -> dict[str, Any]:
    """Order an agent you possess to start an option now."""
    sim = ctx.sim
    slot = ctx.slot(args.agent)
    owner = ctx.service.possession.owners.get(args.agent)
    if owner != ctx.principal.name:
        raise CommandError(
            E_CONFLICT if owner is None else E_FORBIDDEN, f"{args.agent} is not possessed by you (possess it first)"
        )
    option = Option(OPTION_LABELS.index(args.option))
    if not option_mask(sim.world, np.array([slot]))[0, option]:
        raise CommandError(E_CONFLICT, f"{args.option} is not possible for {args.agent} right now")
    started = sim.controller.start(slot, option)
    return {"agent": args.agent, "option": args.option, "started": bool(started)}


# -- economy, utilities, weather -------------------------------------------------------------------------


class PriceArgs(Args):
    """``item``'s price in meal units."""

    item: Annotated[str, Field(min_length=1, max_length=64)]
    price: Annotated[float, Field(gt=0.0, le=1000.0)]


@command("price", PriceArgs)
def price(ctx: Context, args: PriceArgs) -> dict[str, Any]:
    """Set an item's price (economy-invariant violations are reported, not refused)."""
    w = ctx.sim.world
    if args.item not in w.economy.prices:
        raise CommandError(E_NOT_FOUND, f"no item {args.item!r}")
    problems = w.economy.set_price(w, args.item, args.price)
    return {"item": args.item, "price": args.price, "invariant_violations": problems}


class BlackoutArgs(Args):
    """``state``: ``on`` cuts power (everywhere, or at ``place``), ``off`` restores it."""

    state: Literal["on", "off"]
    place: str | None = None


@command("blackout", BlackoutArgs)
def blackout(ctx: Context, args: BlackoutArgs) -> dict[str, Any]:
    """Cut or restore power (city-wide unless a place is given)."""
    w = ctx.sim.world
    place = ctx.place(args.place) if args.place is not None else None
    w.utilities.set(w, "power", args.state == "off", place)
    return {
        "power_off": [w.objects.place_ids[p] for p in range(len(w.utilities.power_on)) if not w.utilities.power_on[p]]
    }


class OutageArgs(Args):
    """``utility`` (power|water) ``off`` or back ``on`` at ``place`` (default everywhere), for ``ticks``."""

    utility: Literal["power", "water"]
    state: Literal["off", "on"] = "off"
    place: str | None = None
    ticks: Annotated[int, Field(ge=1, le=1_000_000)] | None = None


@command("outage", OutageArgs)
def outage(ctx: Context, args: OutageArgs) -> dict[str, Any]:
    """Switch a utility off (optionally repaired after some ticks) or back on."""
    w = ctx.sim.world
    place = ctx.place(args.place) if args.place is not None else None
    if args.state == "on" and args.ticks is not None:
        raise CommandError(E_INVALID_ARG, "ticks: only an outage (state off) has a duration")
    until = w.tick + args.ticks if args.ticks is not None else None
    w.utilities.set(w, args.utility, args.state == "on", place, until=until)
    arr = w.utilities.power_on if args.utility == "power" else w.utilities.water_on
    return {
        "utility": args.utility,
        "off": [w.objects.place_ids[p] for p in range(len(arr)) if not arr[p]],
        "repair_tick": until,
    }


class RainArgs(Args):
    """``state``: ``start`` or ``stop`` the rain."""

    state: Literal["start", "stop"]


@command("rain", RainArgs)
def rain(ctx: Context, args: RainArgs) -> dict[str, Any]:
    """Start or stop rain now (stopping leaves it sunny)."""
    w = ctx.sim.world
    if args.state == "start":
        w.weather.set(w, "rainy")
    elif w.weather.is_raining:
        w.weather.set(w, "sunny")
    return {"weather": w.weather.name}
