"""The generic capture of a simulation's components: every plain-data attribute by its path, restored in place.

Starting at the :class:`Simulation`, every attribute of every townlet component that is plain data (what
:func:`townlet.sim.codec.plain` accepts: arrays, numbers, strings, containers of them, townlet dataclasses)
is recorded under its attribute path (``sim.world.agents``, ``sim.lifecycle.triggers``, ...); anything
holding code, the config and the static map (:data:`SKIP`) are left out and rebuilt from the config. On
restore, arrays are copied into the existing ones, so aliases such as the reward breakdown's views hold.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel

from townlet.sim import codec

if TYPE_CHECKING:
    from townlet.sim.simulation import Simulation

# Attributes never captured: configuration, static data, code, live-process machinery, per-call scratch.
SKIP = frozenset(
    {
        "loaded",
        "config",
        "manifest",
        "town",
        "grid",
        "clock",
        "phases",
        "commands",
        "actor",
        "phase_total",
        "time_phases",
        "_actions",
        "primitives",
        "reloader",
        "recorded_policy",  # the snapshot's policy section, read back for the resolver (sim/driving.py)
        "timings",  # wall-clock tick timings of this process (sim/timings.py), not town state
        "sidecars",
        "sidecar_pending",  # state beside the simulation: sections of their own (sim/sidecars.py)
        "after_step",  # callbacks of this process (console, telemetry): plain only while empty, never town state
        "found",
        "step_into",
        "wage_due",
        "_due",
        "_free",  # per-tick scratch buffers of the world's passes (np.empty: never state)
        "_consts",  # settings packed into one array for a kernel (rebuilt from the restored settings)
        "_hits",  # per-tick scratch of a kernel's findings
        "_quiet",  # a span of ticks on which a phase has nothing to do (a function of the tick alone)
    }
)


# Attribute paths of process machinery: the policy object and any wrapper around it (the console's possession),
# which hold configuration and who drives, not town state. Captured when present, restored where they fit,
# and left out of the state hash.
MACHINERY = ("sim.policy",)


def machinery(path: str) -> bool:
    """Whether the component at ``path`` is process machinery (:data:`MACHINERY`) rather than town state."""
    return path.startswith(MACHINERY)


class ComponentError(ValueError):
    """Captured component state that does not fit this simulation."""


def _attributes(obj: Any) -> list[str]:
    names = list(getattr(obj, "__dict__", {}))
    for cls in type(obj).__mro__:
        names += [s for s in getattr(cls, "__slots__", ()) if s not in names and hasattr(obj, s)]
    return names


def components(sim: Simulation, settings: set[str] | None = None) -> dict[str, Any]:
    """Every stateful townlet object reachable from ``sim``, by its first attribute path (stable order).

    Config sections a component keeps (``self.cfg``) are settings, rebuilt from the config, never state:
    they are left out, and their paths added to ``settings`` when given.
    """
    found: dict[str, Any] = {}
    seen: set[int] = set()

    def walk(obj: Any, path: str) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        found[path] = obj
        for name in _attributes(obj):
            if name in SKIP:
                continue
            value = getattr(obj, name)
            if isinstance(value, BaseModel):
                if settings is not None:
                    settings.add(f"{path}.{name}")
                continue
            if (
                type(value).__module__.startswith("townlet.")
                and not callable(value)
                and not dataclasses.is_dataclass(value)
                and not isinstance(value, enum.Enum)
            ):
                walk(value, f"{path}.{name}")

    walk(sim, "sim")
    return found


def capture_components(sim: Simulation) -> dict[str, dict[str, Any]]:
    """Every component's plain-data attributes, by attribute path (live references, not copies)."""
    state: dict[str, dict[str, Any]] = {}
    for path, obj in components(sim).items():
        plain = {}
        for name in _attributes(obj):
            if name in SKIP:
                continue
            value = getattr(obj, name)
            if codec.plain(value):
                plain[name] = value
        state[path] = plain
    return state


def town_components(sim: Simulation) -> dict[str, dict[str, Any]]:
    """:func:`capture_components` without the process machinery: the components' part of the state hash."""
    return {path: plain for path, plain in capture_components(sim).items() if not machinery(path)}


def restore_into(current: Any, saved: Any) -> Any:
    """Copy ``saved`` into ``current`` in place where possible (keeps aliases such as array views)."""
    if isinstance(current, np.ndarray) and isinstance(saved, np.ndarray):
        if current.shape == saved.shape and current.dtype == saved.dtype and current.flags.writeable:
            np.copyto(current, saved)
            return current
        return saved
    if isinstance(current, collections.deque) and isinstance(saved, collections.deque):
        if current.maxlen == saved.maxlen:
            current.clear()
            current.extend(saved)
            return current
        return saved
    if isinstance(current, dict) and isinstance(saved, dict) and type(current) is type(saved):
        merged = {k: restore_into(current[k], v) if k in current else v for k, v in saved.items()}
        current.clear()
        current.update(merged)
        return current
    if isinstance(current, list) and isinstance(saved, list):
        if len(current) == len(saved):
            current[:] = [restore_into(c, s) for c, s in zip(current, saved, strict=True)]
        else:
            current[:] = saved
        return current
    if isinstance(current, set) and isinstance(saved, set):
        current.clear()
        current.update(saved)
        return current
    return saved


def restore_components(sim: Simulation, saved: Any) -> None:
    """Put captured attributes back into ``sim``'s components (arrays copied in place).

    Raises:
        ComponentError: a path or field this simulation does not have (or may not be set from data).
    """
    if not isinstance(saved, dict):
        raise ComponentError("the components section must map attribute paths to fields")
    settings: set[str] = set()
    found = components(sim, settings)
    for path, plain in saved.items():
        obj = found.get(path)
        loose = machinery(path)
        if obj is None:
            if loose or any(path == s or path.startswith(f"{s}.") for s in settings):
                continue  # config a snapshot written before issue 19 captured: the loading config's stands
            raise ComponentError(f"snapshot holds state for {path}, which this simulation does not have")
        if not isinstance(plain, dict):
            raise ComponentError(f"snapshot state for {path} is not a mapping of fields")
        for name, value in plain.items():
            if loose and not hasattr(obj, name):
                continue
            if not _settable(obj, name):
                raise ComponentError(f"snapshot sets {path}.{str(name)[:64]}, which is not a field of that component")
            setattr(obj, name, restore_into(getattr(obj, name, None), value))


def _settable(obj: Any, name: Any) -> bool:
    # a data attribute the instance has (or creates later), never a method, property or dunder of its class
    if not isinstance(name, str) or not name.isidentifier() or name in SKIP:
        return False
    if name in _attributes(obj):
        return True
    return not name.startswith("__") and not hasattr(type(obj), name)
