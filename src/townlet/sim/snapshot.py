r"""Snapshots: the whole simulation state plus an identity block, signed, in a format that never runs code.

What is captured: the state is a set of named **sections** (:data:`SECTIONS`, registered with
:func:`register_section`). Three are built in: ``grid_fields`` (the goal tiles of every lazily created
distance field, recreated in the same order on load so indices stored in agent arrays stay valid),
``components`` (starting at the :class:`Simulation`, every attribute of every townlet component that is
plain data - see :func:`townlet.sim.codec.plain` - under its attribute path; anything holding code, the
config and the static map are skipped and rebuilt from the config) and ``rng`` (the three bit-generator
states). A new kind of state that is not an attribute of a component registers its own section.

File layout (docs/snapshots.md has the full description)::

    TOWNLET-SNAPSHOT v2\n
    hmac-sha256 KID HEX\n        HMAC-SHA256 of the magic, KID and everything below, keyed by KID
    {JSON header}\n              identity, config, files, migrations, sections, state_bytes, arrays
    {JSON state}                 exactly state_bytes: the sections in the typed encoding of townlet.sim.codec
    array bytes                  the arrays of the header's table, one after the other

The signature is checked before anything else is parsed, and every size is bounded (``snapshots.max_bytes``,
``max_header_bytes``, ``max_arrays``). Version 1 files (a pickled state) are refused; ``townlet snapshot
convert-v1`` rewrites a trusted one (:mod:`townlet.sim.snapshot_v1`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from townlet.config.loader import LoadedConfig, compute_config_id
from townlet.config.models import TownletConfig
from townlet.files import write_atomic
from townlet.sim import codec, components, driving, sidecars
from townlet.sim.migrations import (  # noqa: F401 - part of this module's interface
    MIGRATIONS,
    MigrationError,
    MigrationStep,
    migrate,
    migration_path,
    register_migration,
)
from townlet.sim.signing import SignatureError, SnapshotKeys

if TYPE_CHECKING:
    from townlet.sim.simulation import Simulation

MAGIC = b"TOWNLET-SNAPSHOT v2\n"
MAGIC_V1 = b"TOWNLET-SNAPSHOT v1\n"
SCHEMA_VERSION = 2
MAX_SIGNATURE_LINE = 256
_IDENTITY = {"schema_version": int, "config_id": str, "seed": int, "tick": int, "state_hash": str}
_HEADER = {
    "identity": dict,
    "config": dict,
    "map_path": str,
    "affordances_path": str,
    "source": str,
    "migrations": list,
    "sections": list,
    "state_bytes": int,
    "arrays": list,
}


class SnapshotError(Exception):
    """A snapshot that cannot be read or applied (corrupt, unsigned, incompatible); the message says why."""


# -- sections ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Section:
    """One named part of a snapshot's state.

    Attributes:
        name: Its key in the state (and in migrations).
        capture: Returns the section's plain data (anything :func:`townlet.sim.codec.plain` accepts).
        restore: Puts captured data back into a freshly built simulation of the same config.
        hashed: What :func:`state_hash` reads of the section: its capture (the default), a narrower view
            without process machinery, or nothing (None: what a snapshot keeps about the process running the
            town, such as which policy drives).
    """

    name: str
    capture: Callable[[Simulation], Any]
    restore: Callable[[Simulation, Any], None]
    hashed: Callable[[Simulation], Any] | None = None


SECTIONS: dict[str, Section] = {}


def register_section(
    name: str,
    capture: Callable[[Simulation], Any],
    restore: Callable[[Simulation, Any], None],
    hashed: bool | Callable[[Simulation], Any] = True,
) -> Section:
    """Add a section to every snapshot written from now on; restored after those registered before it.

    A file without the section (written before it existed) leaves that state as a fresh town has it.
    ``hashed`` says what :func:`state_hash` reads: the capture (True), a view of it without process
    machinery (a function), or nothing (False: an operational section, not town state).
    """
    if name in SECTIONS:
        raise ValueError(f"snapshot section {name!r} registered twice")
    view = (capture if hashed else None) if isinstance(hashed, bool) else hashed
    section = SECTIONS[name] = Section(name, capture, restore, view)
    return section


def _restore_components(sim: Simulation, saved: Any) -> None:
    try:
        components.restore_components(sim, saved)
    except components.ComponentError as exc:
        raise SnapshotError(str(exc)) from None
    sim.world.queues.reindex(sim.world)  # the arrays beside the queues follow the restored queues
    sim.world.needs.pack()  # the kernels' packed settings follow the restored ones
    sim.rewards.pack()


def _capture_fields(sim: Simulation) -> list[tuple[int, ...]]:
    return sim.world.grid.fields.goal_sets()


def _restore_fields(sim: Simulation, saved: Any) -> None:
    grid = sim.world.grid
    if not isinstance(saved, list) or not all(isinstance(g, (list, tuple)) for g in saved):
        raise SnapshotError("grid_fields must be a list of goal-tile tuples")
    goals_list = [tuple(g) for g in saved]
    if any(not all(type(t) is int and 0 <= t < grid.size for t in goals) for goals in goals_list):
        raise SnapshotError("grid_fields name a tile outside the map")
    if _capture_fields(sim) != goals_list[: grid.count]:  # a running town's own lazy fields: rebuild in order
        grid.fields.clear()
    for index, goals in enumerate(goals_list):
        got = grid.field(goals)
        if got != index:
            raise SnapshotError(f"distance field {index} cannot be rebuilt in order (got {got})")


def _restore_rng(sim: Simulation, saved: Any) -> None:
    try:
        sim.rng.restore(saved)
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"the rng section is not a set of bit-generator states ({str(exc)[:120]})") from None


register_section("grid_fields", _capture_fields, _restore_fields)
register_section("components", components.capture_components, _restore_components, hashed=components.town_components)
register_section("rng", lambda sim: sim.rng.state(), _restore_rng)
# Which policy drives is an input to the town (the identity block's policy_hash names it), not its state.
register_section("policy", driving.capture, driving.restore, hashed=False)
for _name in sidecars.NAMES:  # telemetry sequence and live stability windows: beside the town, not its state
    register_section(
        _name,
        functools.partial(sidecars.capture, name=_name),
        functools.partial(sidecars.restore, name=_name),
        hashed=False,
    )


def capture(sim: Simulation) -> dict[str, Any]:
    """The simulation's whole mutable state as plain data, by section (a copy detached from the live objects)."""
    doc, arrays = codec.encode({name: section.capture(sim) for name, section in SECTIONS.items()})
    return codec.decode(doc, [a.copy() for a in arrays])


def state_hash(sim: Simulation) -> str:
    """A digest of the town's state: every hashed section as a snapshot captures it.

    The one definition of "the state" is the capture itself, so whatever a snapshot saves is hashed and
    nothing can be left out by hand. Only process machinery is left out, by the rules that already keep it
    out of snapshots or apart in them: a section's ``hashed`` view (the driving policy, the policy objects
    and their console wrapper) and :data:`components.SKIP` (tick timings, callbacks). The typed JSON is
    canonical (object keys, set items and unordered dict keys sorted) so equal states hash alike whatever
    order they were built in and whatever the process's string-hash seed; arrays add dtype, shape and bytes.
    """
    town = {name: s.hashed(sim) for name, s in SECTIONS.items() if s.hashed is not None}
    doc, arrays = codec.encode(town, canonical=True)
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode())
    for array in arrays:
        h.update(f"{array.dtype.str}{array.shape}".encode())
        h.update(array.tobytes())
    return h.hexdigest()


def restore(sim: Simulation, state: dict[str, Any]) -> None:
    """Load a captured state into a freshly built simulation of the same config (sections in registration order).

    Raises:
        SnapshotError: when the state does not fit this simulation (unknown sections, components or fields).
    """
    unknown = set(state) - set(SECTIONS)
    if unknown:
        raise SnapshotError(f"snapshot has section(s) this Townlet does not know: {', '.join(sorted(unknown))}")
    try:
        for name, section in SECTIONS.items():
            if name in state:
                section.restore(sim, state[name])
    except SnapshotError:
        raise
    except Exception as exc:  # noqa: BLE001 - a state that does not fit this town
        raise SnapshotError(f"state does not fit this config ({type(exc).__name__}: {str(exc)[:200]})") from None


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


def _body(header: dict[str, Any], state: dict[str, Any]) -> bytes:
    doc, arrays = codec.encode(state)
    text = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    header = {**header, "sections": list(state), "state_bytes": len(text), "arrays": codec.array_table(arrays)}
    head = json.dumps(header, sort_keys=True, allow_nan=False).encode() + b"\n"
    return b"".join([head, text, *(a.tobytes() for a in arrays)])


def _header(sim: Simulation, migrations: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {
        "identity": identity(sim),
        "config": sim.config.model_dump(mode="json"),
        "map_path": str(sim.loaded.map_path),
        "affordances_path": str(sim.loaded.affordances_path),
        "source": str(sim.loaded.source),
        "migrations": list(migrations if migrations is not None else getattr(sim, "applied_migrations", [])),
    }


def encode(sim: Simulation, keys: SnapshotKeys | None = None, migrations: list[dict[str, Any]] | None = None) -> bytes:
    """The signed snapshot file's bytes for the simulation as it stands between ticks."""
    body = _body(_header(sim, migrations), {name: section.capture(sim) for name, section in SECTIONS.items()})
    keys = keys or SnapshotKeys.from_config(sim.config)
    return MAGIC + keys.sign(MAGIC, body) + body


def write(sim: Simulation, path: str | Path, keys: SnapshotKeys | None = None) -> Path:
    """Write a signed snapshot atomically (temp file in the same directory, fsync, rename); return its path.

    ``keys`` defaults to the key set the simulation's config names (created with a first key if absent).
    """
    return write_atomic(path, encode(sim, keys), sync_dir=True)


def write_state(path: str | Path, header: dict[str, Any], state: dict[str, Any], keys: SnapshotKeys) -> Path:
    """Write a signed snapshot of a captured ``state`` (by section) under ``header`` (identity, config, files).

    Raises:
        SnapshotError: a value the format cannot represent.
    """
    try:
        body = _body(header, state)
    except codec.FormatError as exc:
        raise SnapshotError(f"{path}: the state cannot be written ({exc})") from None
    return write_atomic(path, MAGIC + keys.sign(MAGIC, body) + body, sync_dir=True)


@dataclasses.dataclass
class Snapshot:
    """A snapshot file whose signature verified (or that the caller chose to trust) and whose header parsed.

    Attributes:
        path: Where it was read from.
        header: Identity block, config, file paths, applied migrations, sections and the array table.
        body: The bytes after the signature line (header, state, arrays).
        signed_by: The key id that signed it (None when read with ``trust``).
        max_arrays: The array limit the state is decoded under.
    """

    path: Path
    header: dict[str, Any]
    body: bytes
    signed_by: str | None
    max_arrays: int

    @property
    def identity(self) -> dict[str, Any]:
        """The identity block."""
        return self.header["identity"]

    @property
    def size(self) -> int:
        """Bytes of state and arrays."""
        return self.header["state_bytes"] + sum(entry.get("n", 0) for entry in self.header["arrays"])

    def state(self) -> dict[str, Any]:
        """Decode the state by section (typed JSON and plain arrays; nothing in it is executed).

        Raises:
            SnapshotError: the state does not follow the format.
        """
        import townlet.sim.simulation  # noqa: F401 - the classes a state may name must be loaded first

        start = self.body.index(b"\n") + 1
        end = start + self.header["state_bytes"]
        try:
            text = self.body[start:end].decode("utf-8")
            doc = json.loads(text, parse_constant=_no_constant)
            arrays = codec.read_arrays(self.header["arrays"], memoryview(self.body)[end:], self.max_arrays)
            state = codec.decode(doc, arrays)
        except (ValueError, RecursionError) as exc:
            raise SnapshotError(f"{self.path}: state cannot be decoded ({str(exc)[:200]})") from None
        if not isinstance(state, dict) or list(state) != self.header["sections"]:
            raise SnapshotError(f"{self.path}: the state's sections do not match its header")
        return state

    def migrated(self, target: LoadedConfig | str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The state carried to ``target`` (a config, or a bare config_id) through migrations, and every one applied.

        Declarative migrations take part when ``target`` is a loaded config (:mod:`townlet.sim.migrations`).

        Raises:
            SnapshotError: undecodable state, no chain of migrations, or a step that does not fit.
        """
        state = self.state()
        try:
            return migrate(
                state,
                self.identity["config_id"],
                target,
                self.identity["tick"],
                self.header["migrations"],
                self.header["config"],
            )
        except MigrationError as exc:
            raise SnapshotError(str(exc)) from None

    def loaded_config(self) -> LoadedConfig:
        """Rebuild the config the snapshot was taken under (its files must still exist)."""
        try:
            config = TownletConfig.model_validate(self.header["config"])
        except ValidationError as exc:
            raise SnapshotError(f"{self.path}: its config does not validate ({exc.errors()[0]['msg']})") from None
        map_path, aff_path = Path(self.header["map_path"]), Path(self.header["affordances_path"])
        for p in (map_path, aff_path):
            if not p.is_file():
                raise SnapshotError(f"{self.path}: the file {p} the snapshot's config names is missing")
        return LoadedConfig(
            config, Path(self.header["source"]), map_path, aff_path, compute_config_id(config, map_path, aff_path)
        )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_header(header: Any, where: str) -> dict[str, Any]:
    problem = None
    if not isinstance(header, dict):
        problem = "the header is not a JSON object"
    else:
        for name, kind in _HEADER.items():
            if not isinstance(header.get(name), kind):
                problem = f"header field {name} is missing or not a {kind.__name__}"
                break
        else:
            ident = header["identity"]
            for name, kind in _IDENTITY.items():
                if not isinstance(ident.get(name), kind) or isinstance(ident.get(name), bool):
                    problem = f"identity field {name} is missing or not a {kind.__name__}"
                    break
            if problem is None and (ident["seed"] < 0 or ident["tick"] < 0):
                problem = "seed and tick must not be negative"
            if problem is None and not all(isinstance(s, str) for s in header["sections"]):
                problem = "sections must be names"
            if problem is None and not all(isinstance(m, dict) for m in header["migrations"]):
                problem = "migrations must be objects"
    if problem is not None:
        raise SnapshotError(f"{where}: malformed snapshot header ({problem})")
    version = header["identity"]["schema_version"]
    if version > SCHEMA_VERSION:
        raise SnapshotError(f"{where}: schema version {version} is newer than this Townlet ({SCHEMA_VERSION})")
    if version < SCHEMA_VERSION:
        raise SnapshotError(f"{where}: schema version {version} cannot be read by this format ({SCHEMA_VERSION})")
    return header


def read(path: str | Path, keys: SnapshotKeys | None = None, trust: bool = False) -> Snapshot:
    """Read a snapshot file: size limit, magic, signature (before anything is parsed), then the header.

    Args:
        path: The file.
        keys: The key set and limits (default: those of the shipped config, ``~/.townlet``).
        trust: Skip the signature check (an operator vouched for the file); every format check still runs.

    Raises:
        SnapshotError: missing, too large, not a snapshot, a version 1 file, unsigned or signed by an unknown
            key, altered (signature mismatch), a malformed header or a newer schema. One line each.
    """
    p = Path(path)
    keys = keys or SnapshotKeys.from_config()
    try:
        size = p.stat().st_size
        if size > keys.max_bytes:
            raise SnapshotError(
                f"{p}: {size} bytes is more than snapshots.max_bytes ({keys.max_bytes}); refusing to read it"
            )
        with open(p, "rb") as handle:
            data = handle.read(keys.max_bytes + 1)
    except OSError as exc:
        raise SnapshotError(f"{p}: cannot read snapshot ({exc.strerror or exc})") from None
    if data.startswith(MAGIC_V1):
        raise SnapshotError(
            f"{p}: a version 1 snapshot (pickle-based: loading it could run code); if you trust "
            f"where it came from, convert it with: townlet snapshot convert-v1 {p} --out NEW.snap"
        )
    if not data.startswith(MAGIC):
        raise SnapshotError(f"{p}: not a Townlet snapshot (bad magic)")
    end = data.find(b"\n", len(MAGIC), len(MAGIC) + MAX_SIGNATURE_LINE)
    if end < 0:
        raise SnapshotError(f"{p}: no signature line - the file is truncated or corrupt; refusing to load it")
    body = data[end + 1 :]
    signed_by = None
    if not trust:
        try:
            signed_by = keys.verify(data[len(MAGIC) : end], MAGIC, body, str(p))
        except SignatureError as exc:
            raise SnapshotError(str(exc)) from None
    head_end = body.find(b"\n", 0, keys.max_header_bytes)
    if head_end < 0:
        raise SnapshotError(f"{p}: malformed snapshot header (no header line within {keys.max_header_bytes} bytes)")
    try:
        header = json.loads(body[:head_end].decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise SnapshotError(f"{p}: malformed snapshot header ({str(exc)[:120]})") from None
    header = _check_header(header, str(p))
    table = header["arrays"]
    sizes: list[Any] = [e.get("n") if isinstance(e, dict) else None for e in table]
    if len(table) > keys.max_arrays or not all(type(n) is int and n >= 0 for n in sizes):
        raise SnapshotError(f"{p}: malformed snapshot header (bad array table)")
    if header["state_bytes"] < 0 or head_end + 1 + header["state_bytes"] + sum(sizes) != len(body):
        raise SnapshotError(f"{p}: the sizes in its header do not match the file - truncated or corrupt")
    return Snapshot(p, header, body, signed_by, keys.max_arrays)


def resign(path: str | Path, keys: SnapshotKeys, out: str | Path | None = None) -> Snapshot:
    """Vouch for a snapshot: check its format in full (without its signature) and sign it with ``keys``.

    Writes ``out`` (default: ``path`` itself) atomically; returns the snapshot as read.

    Raises:
        SnapshotError: anything but the signature is wrong with it.
    """
    snap = read(path, keys, trust=True)
    snap.state()  # every format check, before anyone's key vouches for it
    write_atomic(out or path, MAGIC + keys.sign(MAGIC, snap.body) + snap.body, sync_dir=True)
    return snap


def load(
    path: str | Path,
    loaded: LoadedConfig | None = None,
    policy: Any = "scripted",
    keys: SnapshotKeys | None = None,
    trust: bool = False,
) -> Simulation:
    """Build a simulation from a snapshot (under ``loaded`` when given, else the snapshot's own config).

    A different config_id is refused unless registered migrations lead to it; the steps applied are
    recorded on ``sim.applied_migrations`` (and in any snapshot written later). ``keys`` default to those
    ``loaded``'s config names (else the shipped config's).

    Raises:
        SnapshotError: unsigned, altered or malformed file, or an incompatible config without a migration.
    """
    from townlet.sim.simulation import Simulation

    keys = keys or SnapshotKeys.from_config(loaded.config if loaded is not None else None)
    snap = read(path, keys, trust)
    loaded = loaded or snap.loaded_config()
    state, applied = snap.migrated(loaded)
    sim = Simulation(loaded, seed=snap.identity["seed"], policy=policy)
    try:
        restore(sim, state)
    except SnapshotError as exc:
        raise SnapshotError(f"{snap.path}: {exc}") from None
    sim.applied_migrations = applied
    return sim
