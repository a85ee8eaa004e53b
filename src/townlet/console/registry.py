"""The command registry: each console command's name, typed arguments, role and handler.

Arguments are pydantic models (unknown keys and wrong types are refused with ``E_INVALID_ARG``); a handler
receives a :class:`Context` and the validated arguments at a tick boundary and returns a small JSON-ready
mapping, or raises :class:`~townlet.console.errors.CommandError` with a stable code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from townlet.console.errors import E_BLOCKED_TILE, E_INVALID_ARG, E_NOT_FOUND, CommandError

if TYPE_CHECKING:
    from townlet.console.auth import Principal
    from townlet.sim.simulation import Simulation


MAX_STRING = 280  # characters of any string argument (the longest a command needs: a narration line)


class Args(BaseModel):
    """Base of every argument model: strict types, unknown keys refused, strings at most ``MAX_STRING`` long."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, str_max_length=MAX_STRING)


class NoArgs(Args):
    """A command without arguments."""


Handler = Callable[["Context", Any], dict[str, Any]]


@dataclass(frozen=True)
class Command:
    """One registered command.

    Attributes:
        name: What the payload's ``cmd`` says.
        args: The argument model.
        handler: Runs the command at a tick boundary.
        admin: Whether only admin tokens may run it (read-only commands are open to viewers).
        summary: One line for ``help``.
        admin_ops: For a viewer command with an ``op`` argument: the ops that need an admin token.
    """

    name: str
    args: type[Args]
    handler: Handler
    admin: bool
    summary: str
    admin_ops: tuple[str, ...] = ()

    def needs_admin(self, args: Args) -> bool:
        """Whether these (validated) arguments need an admin token."""
        return self.admin or getattr(args, "op", None) in self.admin_ops

    def parse(self, raw: Any) -> Args:
        """Validate raw arguments.

        Raises:
            CommandError: ``E_INVALID_ARG`` naming the first bad field.
        """
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise CommandError(E_INVALID_ARG, "args must be an object")
        try:
            return self.args.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "args"
            msg = "unknown argument" if err["type"] == "extra_forbidden" else err["msg"]
            raise CommandError(E_INVALID_ARG, f"{where}: {msg}") from None

    def describe(self) -> dict[str, Any]:
        """Name, role, summary and the JSON Schema of the arguments (and the ops only admins may run)."""
        out: dict[str, Any] = {
            "name": self.name,
            "role": "admin" if self.admin else "viewer",
            "summary": self.summary,
            "args": self.args.model_json_schema(),
        }
        if self.admin_ops:
            out["admin_ops"] = list(self.admin_ops)
        return out


class Registry:
    """Commands by name.

    Each command module keeps its own (``COMMANDS``, filled by the :meth:`command` decorator);
    :mod:`townlet.console.catalog` joins them, in a stated order, into the console's ``REGISTRY``.
    """

    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}

    @classmethod
    def joined(cls, *parts: Registry) -> Registry:
        """One registry holding every command of ``parts``, in order.

        Raises:
            ValueError: a name two parts both define.
        """
        joined = cls()
        for part in parts:
            for name, cmd in part.commands.items():
                if name in joined.commands:
                    raise ValueError(f"command {name!r} registered twice")
                joined.commands[name] = cmd
        return joined

    def command(
        self, name: str, args: type[Args] = NoArgs, admin: bool = True, admin_ops: tuple[str, ...] = ()
    ) -> Callable[[Handler], Handler]:
        """Decorator registering a handler; its docstring's first line is the summary.

        ``admin_ops``: a viewer command whose ``op`` argument takes these values needs an admin token for them.
        """

        def register(handler: Handler) -> Handler:
            if name in self.commands:
                raise ValueError(f"command {name!r} registered twice")
            summary = (handler.__doc__ or "").strip().splitlines()[0] if handler.__doc__ else ""
            self.commands[name] = Command(name, args, handler, admin, summary, tuple(admin_ops))
            return handler

        return register

    def get(self, name: str) -> Command | None:
        """The command called ``name``, or None."""
        return self.commands.get(name)

    def names(self) -> list[str]:
        """Every command name, sorted."""
        return sorted(self.commands)


@dataclass
class Context:
    """What a handler may use: the simulation, who asked, and the console service.

    Attributes:
        sim: The simulation (handlers change the world only through world, lifecycle and scheduler methods).
        principal: The verified caller.
        service: The console service (possession, health, the registry).
    """

    sim: Simulation
    principal: Principal
    service: Any

    def slot(self, agent: str) -> int:
        """The slot of a living agent id.

        Raises:
            CommandError: ``E_NOT_FOUND``.
        """
        slot = self.sim.world.agents.slot_of.get(agent, -1)
        if slot < 0:
            raise CommandError(E_NOT_FOUND, f"no agent {agent!r}")
        return slot

    def place(self, place: str) -> int:
        """The index of a place id.

        Raises:
            CommandError: ``E_NOT_FOUND``.
        """
        ids = self.sim.world.objects.place_ids
        if place not in ids:
            raise CommandError(E_NOT_FOUND, f"no place {place!r}")
        return ids.index(place)

    def tile(self, x: int, y: int) -> int:
        """The flat index of an on-map tile.

        Raises:
            CommandError: ``E_BLOCKED_TILE`` off the map.
        """
        grid = self.sim.world.grid
        if not (0 <= x < grid.width and 0 <= y < grid.height):
            raise CommandError(E_BLOCKED_TILE, f"({x}, {y}) is off the {grid.width}x{grid.height} map")
        return grid.tile(x, y)
