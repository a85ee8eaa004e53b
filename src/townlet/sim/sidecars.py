"""Sidecars: state kept beside a simulation by objects outside it, saved in snapshots as sections of their own.

The telemetry publisher (its sequence: ticks published, rolling KPI windows, narration lines) and a live
town's policy desk (the stability monitor's open and closed windows, the canaries) are built around a
``Simulation`` by the command that runs it, not by the simulation. Each one attaches itself (:func:`attach`) under
a name that is also a snapshot section (:data:`NAMES`); the section captures the attached owner's
:meth:`Sidecar.sidecar_state` with the tick it was taken at, or ``None`` when nothing is attached.

Restoring hands the data to the owner attached to the simulation at once (the console's ``snapshot load``
into a running town); a freshly loaded simulation has none yet, so the data waits on it and the owner built
later (``run --resume`` with telemetry, ``serve --resume``) takes it when it attaches. Waiting data is only
good for the tick it was taken at: once the town has moved on it is dropped, so stale windows never
reach a later owner. A file written before these sections existed simply lacks them: owners start afresh.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from townlet.logs import log_event
from townlet.sim import components

if TYPE_CHECKING:
    from townlet.sim.simulation import Simulation

LOG = logging.getLogger("townlet.snapshot")
NAMES = ("telemetry", "stability")


class Sidecar(Protocol):
    """An object outside the simulation whose state snapshots carry."""

    def sidecar_state(self) -> dict[str, Any]:
        """Its state as plain data (what :func:`townlet.sim.codec.plain` accepts)."""

    def restore_sidecar(self, state: dict[str, Any]) -> None:
        """Put captured state back (raises ``ValueError`` naming what does not fit)."""


def attach(sim: Simulation, name: str, owner: Sidecar) -> None:
    """Make ``owner`` the holder of section ``name``'s state; it takes restored data waiting for it, if any.

    Data that does not fit the owner is logged (``snapshot.sidecar_refused``) and the owner starts afresh:
    the town itself is already loaded and keeps running.
    """
    if name not in NAMES:
        raise ValueError(f"unknown sidecar {name!r} (one of {', '.join(NAMES)})")
    sim.sidecars[name] = owner
    waiting = sim.sidecar_pending.pop(name, None)
    if waiting is not None and waiting["tick"] == sim.world.tick:
        try:
            owner.restore_sidecar(waiting["state"])
        except (ValueError, TypeError, KeyError) as exc:
            log_event(
                LOG,
                "snapshot.sidecar_refused",
                int(sim.world.tick),
                logging.WARNING,
                section=name,
                reason=str(exc)[:200],
            )


def capture(sim: Simulation, name: str) -> dict[str, Any] | None:
    """Section ``name``: ``{"tick", "state"}`` of the attached owner, else data still waiting for one, else None."""
    owner = sim.sidecars.get(name)
    if owner is not None:
        return {"tick": int(sim.world.tick), "state": owner.sidecar_state()}
    waiting = sim.sidecar_pending.get(name)
    return waiting if waiting is not None and waiting["tick"] == sim.world.tick else None


def restore(sim: Simulation, saved: Any, name: str) -> None:
    """Give section ``name`` to the attached owner, or keep it for the one that attaches next.

    Raises:
        ValueError: not a sidecar section, or state the attached owner refuses.
    """
    if saved is None:
        sim.sidecar_pending.pop(name, None)
        return
    if (
        not isinstance(saved, dict)
        or set(saved) != {"tick", "state"}
        or type(saved["tick"]) is not int
        or not isinstance(saved["state"], dict)
    ):
        raise ValueError(f"the {name} section must be null or {{tick, state}}")
    owner = sim.sidecars.get(name)
    if owner is not None:
        owner.restore_sidecar(saved["state"])
    else:
        sim.sidecar_pending[name] = saved


def capture_fields(obj: Any, names: Iterable[str]) -> dict[str, Any]:
    """The named attributes of ``obj`` (live references: the snapshot encoder copies them)."""
    return {name: getattr(obj, name) for name in names}


def check_fields(obj: Any, saved: Any, names: Iterable[str], where: str) -> None:
    """Check that ``saved`` holds exactly the named attributes of ``obj``, each of the type and shape it has now.

    Raises:
        ValueError: a field missing, extra, or of another type or shape.
    """
    names = tuple(names)
    if not isinstance(saved, dict) or set(saved) != set(names):
        raise ValueError(f"{where} must hold exactly the fields {', '.join(names)}")
    for name in names:
        current, value = getattr(obj, name), saved[name]
        if type(value) is not type(current) or (getattr(value, "shape", None), getattr(value, "dtype", None)) != (
            getattr(current, "shape", None),
            getattr(current, "dtype", None),
        ):
            raise ValueError(
                f"{where}.{name} is a {type(value).__name__}, not a {type(current).__name__} of this town's shape"
            )


def restore_fields(obj: Any, saved: dict[str, Any], names: Iterable[str]) -> None:
    """Set the named attributes of ``obj`` from ``saved`` (checked by :func:`check_fields`; arrays in place)."""
    for name in names:
        setattr(obj, name, components.restore_into(getattr(obj, name), saved[name]))
