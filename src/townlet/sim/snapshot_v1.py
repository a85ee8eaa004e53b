"""Version 1 snapshots (a pickled state): read only to convert a file the operator trusts into the current format.

A version 1 file is ``TOWNLET-SNAPSHOT v1``, an unkeyed SHA-256 of the rest, a JSON header line and a
pickle. Unpickling can run code chosen by whoever wrote the file, so nothing in Townlet reads these files
any more except ``townlet snapshot convert-v1``, which an operator runs by hand, offline, on a file whose
origin they trust. Even then the unpickler admits only the handful of classes a real version 1 state holds
(NumPy arrays and scalars, ``deque``, ``Counter``, ``defaultdict`` and townlet dataclasses and enums), and
the result must pass the version 2 encoder's checks before it is written, signed, in the new format.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import io
import json
import pickle
from pathlib import Path
from typing import Any

from townlet.sim.signing import SnapshotKeys
from townlet.sim.snapshot import MAGIC_V1, SCHEMA_VERSION, SnapshotError, write_state

_NUMPY = {"numpy._core.multiarray", "numpy.core.multiarray", "numpy._core.numeric", "numpy.core.numeric"}
_ALLOWED = {
    ("builtins", "float"),
    ("builtins", "int"),
    ("builtins", "list"),
    ("builtins", "dict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "str"),
    ("builtins", "tuple"),
    ("builtins", "bytes"),
    ("collections", "Counter"),
    ("collections", "defaultdict"),
    ("collections", "deque"),
    ("collections", "OrderedDict"),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    *((m, n) for m in _NUMPY for n in ("scalar", "_frombuffer", "_reconstruct")),
}


class _Unpickler(pickle.Unpickler):
    """Admits only the classes a version 1 state is made of (see the module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module.startswith("townlet.") and "." not in name and not name.startswith("_"):
            cls = super().find_class(module, name)
            if isinstance(cls, type) and (dataclasses.is_dataclass(cls) or issubclass(cls, enum.Enum)):
                return cls
        raise pickle.UnpicklingError(f"{module}.{name} may not appear in a snapshot")


def read_v1(path: str | Path, max_bytes: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and the state (by section) of a version 1 file. Only for files whose origin you trust.

    Raises:
        SnapshotError: not a version 1 file, too large, checksum mismatch, or a state that does not unpickle.
    """
    p = Path(path)
    try:
        if p.stat().st_size > max_bytes:
            raise SnapshotError(f"{p}: larger than snapshots.max_bytes ({max_bytes})")
        data = p.read_bytes()
    except OSError as exc:
        raise SnapshotError(f"{p}: cannot read snapshot ({exc.strerror or exc})") from None
    if not data.startswith(MAGIC_V1):
        raise SnapshotError(f"{p}: not a version 1 Townlet snapshot")
    digest, sep, body = data[len(MAGIC_V1) :].partition(b"\n")
    if not sep or hashlib.sha256(body).hexdigest().encode() != digest:
        raise SnapshotError(f"{p}: checksum mismatch - the file is truncated or corrupt")
    head, _, payload = body.partition(b"\n")
    try:
        header = json.loads(head)
        flat = _Unpickler(io.BytesIO(payload)).load()
        sections = {"grid_fields": flat.pop("grid_fields"), "components": {}, "rng": flat.pop("rng")}
    except Exception as exc:  # noqa: BLE001 - whatever went wrong, the file cannot be converted
        raise SnapshotError(f"{p}: cannot read the version 1 state ({type(exc).__name__}: {str(exc)[:200]})") from None
    sections["components"] = flat
    return header, sections


def convert_v1(path: str | Path, out: str | Path, keys: SnapshotKeys) -> dict[str, Any]:
    """Rewrite a trusted version 1 file as a signed current one at ``out``; returns the new identity block.

    Raises:
        SnapshotError: the file cannot be read or its state cannot be represented in the new format.
    """
    header, state = read_v1(path, keys.max_bytes)
    try:
        identity = {**header["identity"], "schema_version": SCHEMA_VERSION}
        fresh = {
            "identity": identity,
            "config": header["config"],
            "map_path": header["map_path"],
            "affordances_path": header["affordances_path"],
            "source": header["source"],
            "migrations": list(header.get("migrations", [])),
        }
    except (KeyError, TypeError):
        raise SnapshotError(f"{path}: the version 1 header lacks the identity, config or file paths") from None
    write_state(out, fresh, state, keys)
    return identity
