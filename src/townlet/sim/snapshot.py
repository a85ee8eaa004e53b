"""Snapshots: the whole simulation state plus an identity block, written atomically with a checksum.

The state is captured generically: starting at the :class:`Simulation`, every attribute of every townlet
component that is plain data (NumPy arrays, numbers, strings, and lists/dicts/sets/deques/Counters of
them) is recorded under its attribute path; anything holding code (hooks, callbacks, compiled rules,
the config, the static map and its distance fields) is skipped and rebuilt from the config on load.
Grid distance fields are not saved: the goal tiles of every lazily created field are, and the fields are
recreated in the same order so indices stored in agent arrays (``dest_field``) stay valid.

File layout: a magic line, the SHA-256 of everything after it, a JSON header line (identity block,
config, applied migrations), then the pickled state. A truncated or altered file fails the checksum.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import hashlib
import io
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from townlet.config.loader import LoadedConfig, compute_config_id
from townlet.config.models import TownletConfig
from townlet.files import write_atomic

if TYPE_CHECKING:
    from townlet.sim.simulation import Simulation

MAGIC = b"TOWNLET-SNAPSHOT v1\n"
SCHEMA_VERSION = 1
# Attributes never captured: configuration, static data, code, live-process machinery, per-call scratch.
SKIP = frozenset({
    "loaded", "config", "manifest", "town", "grid", "clock", "phases", "commands", "actor",
    "phase_total", "time_phases", "_actions", "primitives", "reloader",
    "timings",  # wall-clock tick timings of this process (sim/timings.py), not town state
})
_PLAIN_SCALARS = (type(None), bool, int, float, str, bytes, np.generic, enum.Enum)


class SnapshotError(Exception):
    """A snapshot that cannot be read or applied (corrupt, truncated, incompatible); the message says why."""


# -- migrations -----------------------------------------------------------------------------------------

Migration = Callable[[dict[str, Any]], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class MigrationStep:
    """One registered migration: turns a state captured under ``source`` into one valid under ``target``."""

    name: str
    source: str
    target: str
    apply: Migration


MIGRATIONS: dict[tuple[str, str], MigrationStep] = {}


def register_migration(name: str, source: str, target: str, apply: Migration) -> MigrationStep:
    """Register a migration from config_id ``source`` to ``target`` (``apply`` edits the state dict)."""
    step = MigrationStep(name, source, target, apply)
    MIGRATIONS[(source, target)] = step
    return step


def migration_path(source: str, target: str) -> list[MigrationStep]:
    """The chain of registered migrations from ``source`` to ``target`` (empty when equal).

    Raises:
        SnapshotError: when no chain exists.
    """
    if source == target:
        return []
    frontier: list[tuple[str, list[MigrationStep]]] = [(source, [])]
    seen = {source}
    while frontier:
        here, chain = frontier.pop(0)
        for (a, b), step in MIGRATIONS.items():
            if a == here and b not in seen:
                if b == target:
                    return [*chain, step]
                seen.add(b)
                frontier.append((b, [*chain, step]))
    raise SnapshotError(f"config_id mismatch: snapshot was taken under {source}, this config is {target}, "
                        "and no registered migration leads from one to the other")


# -- capture and restore ----------------------------------------------------------------------------------


def _is_plain(value: Any, depth: int = 0) -> bool:
    if isinstance(value, np.ndarray):
        return value.dtype != object
    if isinstance(value, _PLAIN_SCALARS):
        return True
    if depth > 6:
        return False
    if isinstance(value, dict):
        return all(_is_plain(k, depth + 1) and _is_plain(v, depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset, collections.deque)):
        return all(_is_plain(v, depth + 1) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return type(value).__module__.startswith("townlet.") and all(
            _is_plain(getattr(value, f.name), depth + 1) for f in dataclasses.fields(value))
    return False


def _attributes(obj: Any) -> list[str]:
    names = list(getattr(obj, "__dict__", {}))
    for cls in type(obj).__mro__:
        names += [s for s in getattr(cls, "__slots__", ()) if s not in names and hasattr(obj, s)]
    return names


def _components(sim: Simulation) -> dict[str, Any]:
    """Every stateful townlet object reachable from ``sim``, by its first attribute path (stable order)."""
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
            if (type(value).__module__.startswith("townlet.") and not callable(value)
                    and not dataclasses.is_dataclass(value) and not isinstance(value, enum.Enum)):
                walk(value, f"{path}.{name}")

    walk(sim, "sim")
    return found


def capture(sim: Simulation) -> dict[str, Any]:
    """The simulation's whole mutable state as plain data (see the module docstring)."""
    state: dict[str, Any] = {}
    for path, obj in _components(sim).items():
        plain = {}
        for name in _attributes(obj):
            if name in SKIP:
                continue
            value = getattr(obj, name)
            if _is_plain(value):
                plain[name] = value
        state[path] = plain
    state["rng"] = sim.rng.state()
    grid = sim.world.grid
    state["grid_fields"] = [goals for goals, _ in sorted(grid._fields.items(), key=lambda kv: kv[1])]
    return pickle.loads(pickle.dumps(state, protocol=5))  # a deep copy detached from the live objects


def _restore_into(current: Any, saved: Any) -> Any:
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
        merged = {k: _restore_into(current[k], v) if k in current else v for k, v in saved.items()}
        current.clear()
        current.update(merged)
        return current
    if isinstance(current, list) and isinstance(saved, list):
        if len(current) == len(saved):
            current[:] = [_restore_into(c, s) for c, s in zip(current, saved, strict=True)]
        else:
            current[:] = saved
        return current
    if isinstance(current, set) and isinstance(saved, set):
        current.clear()
        current.update(saved)
        return current
    return saved


def restore(sim: Simulation, state: dict[str, Any]) -> None:
    """Load a captured state into a freshly built simulation of the same config.

    Raises:
        SnapshotError: when the state does not fit this simulation (different components or fields).
    """
    grid = sim.world.grid
    saved = [tuple(g) for g in state["grid_fields"]]
    current = [goals for goals, _ in sorted(grid._fields.items(), key=lambda kv: kv[1])]
    if current != saved[: len(current)]:  # a running town's own lazy fields: rebuild in the snapshot's order
        grid._fields = {}
        grid.count = 0
    for index, goals in enumerate(saved):
        got = grid.field(goals)
        if got != index:
            raise SnapshotError(f"distance field {index} cannot be rebuilt in order (got {got})")
    components = _components(sim)
    for path, plain in state.items():
        if path in ("rng", "grid_fields"):
            continue
        obj = components.get(path)
        loose = path.startswith("sim.policy")  # policy wrappers (console possession) are process machinery
        if obj is None:
            if loose:
                continue
            raise SnapshotError(f"snapshot holds state for {path}, which this simulation does not have")
        for name, value in plain.items():
            if loose and not hasattr(obj, name):
                continue
            setattr(obj, name, _restore_into(getattr(obj, name, None), value))
    sim.rng.restore(state["rng"])


# -- identity and files -----------------------------------------------------------------------------------


def identity(sim: Simulation) -> dict[str, Any]:
    """The identity block: config_id, observation variant, policy hash, anneal ratio, schema version."""
    actor = sim.actor
    ratio = getattr(actor, "ratio", None) if actor is not None else None
    return {
        "schema_version": SCHEMA_VERSION,
        "config_id": sim.loaded.config_id,
        "observation_variant": str(sim.config.features.observations),
        "policy_hash": str(getattr(actor, "policy_hash", "")) if actor is not None else None,
        "policy": type(sim.policy).__name__,
        "anneal_ratio": float(ratio) if isinstance(ratio, (int, float)) else None,
        "seed": sim.seed,
        "tick": sim.world.tick,
        "ticks_run": sim.ticks_run,
        "state_hash": sim.state_hash(),
    }


def encode(sim: Simulation, migrations: list[dict[str, Any]] | None = None) -> bytes:
    """The snapshot file's bytes for the simulation as it stands between ticks."""
    header = {
        "identity": identity(sim),
        "config": sim.config.model_dump(mode="json"),
        "map_path": str(sim.loaded.map_path),
        "affordances_path": str(sim.loaded.affordances_path),
        "source": str(sim.loaded.source),
        "migrations": list(migrations if migrations is not None else getattr(sim, "applied_migrations", [])),
    }
    head = json.dumps(header, sort_keys=True).encode() + b"\n"
    body = head + pickle.dumps(capture(sim), protocol=5)
    return MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def write(sim: Simulation, path: str | Path) -> Path:
    """Write a snapshot atomically (temp file in the same directory, fsync, rename); return its path."""
    return write_atomic(path, encode(sim), sync_dir=True)


@dataclasses.dataclass
class Snapshot:
    """A verified snapshot file: its header and (lazily) its state.

    Attributes:
        path: Where it was read from.
        header: Identity block, config, file paths and applied migrations.
        payload: The pickled state (checksum already verified).
    """

    path: Path
    header: dict[str, Any]
    payload: bytes

    @property
    def identity(self) -> dict[str, Any]:
        """The identity block."""
        return self.header["identity"]

    def state(self) -> dict[str, Any]:
        """Unpickle the state (only numpy, builtins and townlet data classes are allowed)."""
        try:
            return _SafeUnpickler(io.BytesIO(self.payload)).load()
        except Exception as exc:  # noqa: BLE001 - any failure here means an unreadable state
            raise SnapshotError(f"{self.path}: state cannot be decoded ({exc})") from None

    def loaded_config(self) -> LoadedConfig:
        """Rebuild the config the snapshot was taken under (its files must still exist)."""
        config = TownletConfig.model_validate(self.header["config"])
        map_path, aff_path = Path(self.header["map_path"]), Path(self.header["affordances_path"])
        for p in (map_path, aff_path):
            if not p.exists():
                raise SnapshotError(f"{self.path}: the file {p} the snapshot's config names is missing")
        return LoadedConfig(config, Path(self.header["source"]), map_path, aff_path,
                            compute_config_id(config, map_path, aff_path))


class _SafeUnpickler(pickle.Unpickler):
    ALLOWED = ("builtins", "collections", "numpy", "numpy.core.multiarray", "numpy._core.multiarray",
               "numpy.core.numeric", "numpy._core.numeric")

    def find_class(self, module: str, name: str) -> Any:
        if module in self.ALLOWED or module.startswith(("numpy.", "townlet.")):
            if module == "builtins" and name in ("eval", "exec", "compile", "open", "__import__", "getattr"):
                raise pickle.UnpicklingError(f"forbidden {module}.{name}")
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"forbidden {module}.{name}")


def read(path: str | Path) -> Snapshot:
    """Read and verify a snapshot file.

    Raises:
        SnapshotError: missing, not a snapshot, truncated or altered (checksum mismatch), or a newer schema.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise SnapshotError(f"{p}: cannot read snapshot ({exc.strerror or exc})") from None
    if not data.startswith(MAGIC):
        raise SnapshotError(f"{p}: not a Townlet snapshot (bad magic)")
    rest = data[len(MAGIC):]
    digest, sep, body = rest.partition(b"\n")
    if not sep or hashlib.sha256(body).hexdigest().encode() != digest:
        raise SnapshotError(f"{p}: checksum mismatch - the file is truncated or corrupt; refusing to load it")
    head, _, payload = body.partition(b"\n")
    header = json.loads(head)
    version = header["identity"]["schema_version"]
    if version > SCHEMA_VERSION:
        raise SnapshotError(f"{p}: schema version {version} is newer than this Townlet ({SCHEMA_VERSION})")
    return Snapshot(p, header, payload)


def load(path: str | Path, loaded: LoadedConfig | None = None, policy: Any = "scripted") -> Simulation:
    """Build a simulation from a snapshot (under ``loaded`` when given, else the snapshot's own config).

    A different config_id is refused unless registered migrations lead to it; the steps applied are
    recorded on ``sim.applied_migrations`` (and in any snapshot written later).

    Raises:
        SnapshotError: corrupt file, or an incompatible config without a migration.
    """
    from townlet.sim.simulation import Simulation

    snap = read(path)
    loaded = loaded or snap.loaded_config()
    ident = snap.identity
    chain = migration_path(ident["config_id"], loaded.config_id)
    state = snap.state()
    applied = list(snap.header.get("migrations", []))
    for step in chain:
        state = step.apply(state)
        applied.append({"name": step.name, "from": step.source, "to": step.target, "tick": ident["tick"]})
    sim = Simulation(loaded, seed=ident["seed"], policy=policy)
    try:
        restore(sim, state)
    except SnapshotError:
        raise
    except Exception as exc:  # noqa: BLE001 - a state that does not fit this town
        raise SnapshotError(f"{snap.path}: state does not fit this config ({exc})") from None
    sim.applied_migrations = applied
    return sim
