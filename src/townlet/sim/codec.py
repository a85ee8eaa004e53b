"""The value encoding of snapshots: typed JSON plus raw NumPy arrays, read without executing anything.

A captured state is plain data. :func:`encode` turns it into a JSON document and a list of arrays; JSON
carries what JSON can (``null``, booleans, integers, finite floats, strings, lists, objects with string
keys) and everything else as a tagged object ``{"$t": TAG, ...}``:

- ``array``: a ``numpy.ndarray`` of bool, integer, float, complex or fixed-width str/bytes; ``i`` is its index
  in the array table;
- ``np``: a NumPy scalar (bool, integer, float); ``d`` its dtype (``<f4``), ``v`` its value;
- ``float``: a float JSON cannot hold; ``v`` is ``nan``, ``inf`` or ``-inf``;
- ``bytes``: ``v`` in base64;
- ``tuple``, ``set``, ``frozenset``: ``v`` the items; ``deque``: ``v`` the items and ``maxlen``;
- ``dict``: a dict whose keys are not all strings, a ``Counter``, ``OrderedDict`` or ``defaultdict``; ``kind``,
  ``v`` the ``[key, value]`` pairs, ``factory`` for a defaultdict (int, float, str, list, set or dict);
- ``dataclass``: an instance of a townlet dataclass; ``type`` is ``module:Qualname``, ``v`` its fields by name;
- ``enum``: a member of a townlet enum; ``type`` as above, ``v`` its value.

Each array in the table is ``{"d": dtype, "s": shape, "n": bytes}``; the arrays' bytes follow one another
(C order) in the blob. Decoding is strict: unknown tags, extra fields, object dtypes, sizes that do not add
up, nesting deeper than :data:`MAX_DEPTH` and classes outside already-imported ``townlet`` modules are
refused with :class:`FormatError`. A dataclass is rebuilt field by field without calling its constructor,
an enum member by value lookup: no code named by the data ever runs.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import enum
import json
import math
import re
import sys
from typing import Any

import numpy as np

TAG = "$t"
MAX_DEPTH = 64
MAX_DIMS = 32
_DTYPE = re.compile(r"^[<>|=]?(?:[biufc][0-9]{1,2}|[US][0-9]{1,7})$")
_ARRAY_KINDS = "biufcUS"
_SCALAR_KINDS = "biuf"
_NAME = re.compile(r"^townlet(?:\.[A-Za-z_][A-Za-z0-9_]*)+:[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*$")
_FACTORIES: dict[str, type] = {"int": int, "float": float, "str": str, "list": list, "set": set, "dict": dict}
_DICT_KINDS: dict[type, str] = {
    dict: "dict",
    collections.Counter: "counter",
    collections.OrderedDict: "ordered",
    collections.defaultdict: "defaultdict",
}
_SEQUENCES: dict[type, str] = {tuple: "tuple", set: "set", frozenset: "frozenset", collections.deque: "deque"}


class FormatError(ValueError):
    """Encoded data that does not follow the format (the message says where and why)."""


def _townlet_type(cls: type) -> bool:
    return cls.__module__.startswith("townlet.") and "<locals>" not in cls.__qualname__


def plain(value: Any, depth: int = 0) -> bool:
    """Whether :func:`encode` can represent ``value`` (snapshots capture exactly these values)."""
    kind = type(value)
    if value is None or kind in (bool, int, float, str, bytes):
        return True
    if kind is np.ndarray:
        return value.dtype.kind in _ARRAY_KINDS and value.dtype.fields is None and value.ndim <= MAX_DIMS
    if isinstance(value, np.generic):
        return value.dtype.kind in _SCALAR_KINDS
    if isinstance(value, enum.Enum):
        return _townlet_type(kind)
    if depth >= MAX_DEPTH - 2:
        return False
    if kind is list or kind in _SEQUENCES:
        return all(plain(v, depth + 1) for v in value)
    if kind in _DICT_KINDS:
        if kind is collections.defaultdict and value.default_factory not in _FACTORIES.values():
            return False
        return all(plain(k, depth + 1) and plain(v, depth + 1) for k, v in value.items())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _townlet_type(kind) and all(plain(getattr(value, f.name), depth + 1) for f in dataclasses.fields(value))
    return False


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _float(value: float) -> Any:
    return value if math.isfinite(value) else {TAG: "float", "v": repr(value)}


def encode(value: Any, canonical: bool = False) -> tuple[Any, list[np.ndarray]]:  # noqa: C901
    """A JSON-ready document for ``value`` and the arrays it refers to (see the module docstring).

    ``canonical`` sorts the items of sets and the keys of unordered dicts by their encoding, so equal ones
    encode alike whatever order they were built in (for strings it can depend on the process's hash seed);
    the state hash uses it.

    Raises:
        FormatError: a value :func:`plain` would refuse.
    """
    arrays: list[np.ndarray] = []

    def enc(v: Any) -> Any:  # noqa: C901
        kind = type(v)
        if v is None or kind in (bool, int, str):
            return v
        if kind is float:
            return _float(v)
        if kind is bytes:
            return {TAG: "bytes", "v": base64.b64encode(v).decode()}
        if kind is np.ndarray:
            if v.dtype.kind not in _ARRAY_KINDS or v.dtype.fields is not None:
                raise FormatError(f"arrays of dtype {v.dtype} are not supported")
            arrays.append(np.ascontiguousarray(v))
            return {TAG: "array", "i": len(arrays) - 1}
        if isinstance(v, np.generic):
            if v.dtype.kind not in _SCALAR_KINDS:
                raise FormatError(f"NumPy scalars of dtype {v.dtype} are not supported")
            item = v.item()
            return {TAG: "np", "d": v.dtype.str, "v": _float(item) if isinstance(item, float) else item}
        if isinstance(v, enum.Enum):
            return {TAG: "enum", "type": _name(kind), "v": enc(v.value)}
        if kind is list:
            return [enc(x) for x in v]
        if kind in _SEQUENCES:
            items = [enc(x) for x in v]
            if canonical and kind in (set, frozenset):
                items.sort(key=lambda item: json.dumps(item, sort_keys=True))
            out = {TAG: _SEQUENCES[kind], "v": items}
            if kind is collections.deque:
                out["maxlen"] = v.maxlen
            return out
        if kind is dict and all(type(k) is str for k in v) and TAG not in v:
            return {k: enc(x) for k, x in v.items()}
        if kind in _DICT_KINDS:
            pairs = [[enc(k), enc(x)] for k, x in v.items()]
            if canonical and kind is not collections.OrderedDict:
                pairs.sort(key=lambda pair: json.dumps(pair[0], sort_keys=True))
            out = {TAG: "dict", "kind": _DICT_KINDS[kind], "v": pairs}
            if kind is collections.defaultdict:
                out["factory"] = next(n for n, f in _FACTORIES.items() if f is v.default_factory)
            return out
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {
                TAG: "dataclass",
                "type": _name(kind),
                "v": {f.name: enc(getattr(v, f.name)) for f in dataclasses.fields(v)},
            }
        raise FormatError(f"values of type {kind.__module__}.{kind.__qualname__} are not supported")

    return enc(value), arrays


def array_table(arrays: list[np.ndarray]) -> list[dict[str, Any]]:
    """The array table entries (dtype, shape, bytes) for :func:`encode`'s arrays, in blob order."""
    return [{"d": a.dtype.str, "s": list(a.shape), "n": int(a.nbytes)} for a in arrays]


def read_arrays(table: Any, blob: memoryview, max_arrays: int) -> list[np.ndarray]:
    """The arrays a table describes, copied out of ``blob`` (which they must fill exactly).

    Raises:
        FormatError: a malformed entry, a dtype with objects or fields, sizes that do not add up.
    """
    if not isinstance(table, list) or len(table) > max_arrays:
        raise FormatError(f"the array table must be a list of at most {max_arrays} entries")
    out: list[np.ndarray] = []
    offset = 0
    for i, entry in enumerate(table):
        if not isinstance(entry, dict) or set(entry) != {"d", "s", "n"}:
            raise FormatError(f"array {i}: expected fields d, s, n")
        dtype, shape, nbytes = entry["d"], entry["s"], entry["n"]
        if not isinstance(dtype, str) or not _DTYPE.match(dtype):
            raise FormatError(f"array {i}: unsupported dtype {str(dtype)[:32]!r}")
        dt = np.dtype(dtype)
        if dt.kind not in _ARRAY_KINDS or dt.hasobject or dt.fields is not None or dt.itemsize == 0:
            raise FormatError(f"array {i}: unsupported dtype {dtype!r}")
        if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(type(n) is int and n >= 0 for n in shape):
            raise FormatError(f"array {i}: the shape must be a list of at most {MAX_DIMS} sizes")
        count = math.prod(shape)
        if type(nbytes) is not int or nbytes != count * dt.itemsize or offset + nbytes > len(blob):
            raise FormatError(f"array {i}: its size does not match its shape or the data")
        out.append(np.frombuffer(blob, dtype=dt, count=count, offset=offset).reshape(shape).copy())
        offset += nbytes
    if offset != len(blob):
        raise FormatError(f"{len(blob) - offset} bytes of array data belong to no array")
    return out


def _resolve(name: Any, check: Any) -> Any:
    if not isinstance(name, str) or not _NAME.match(name):
        raise FormatError(f"bad type name {str(name)[:80]!r}")
    module_name, qualname = name.split(":")
    module = sys.modules.get(module_name)  # only modules already imported: the data never imports anything
    if module is None:
        raise FormatError(f"unknown type {name} (module not loaded)")
    found: Any = module
    for part in qualname.split("."):
        try:  # plain namespace lookups: no descriptors, no module __getattr__
            found = vars(found).get(part)
        except TypeError:
            found = None
        if found is None:
            raise FormatError(f"unknown type {name}")
    if not isinstance(found, type) or found.__module__ != module_name or not check(found):
        raise FormatError(f"type {name} may not appear in a snapshot")
    return found


def _expect(node: dict[str, Any], fields: set[str], tag: str) -> None:
    if set(node) != fields:
        raise FormatError(f"a {tag!r} value needs exactly the fields {', '.join(sorted(fields))}")


def _list(value: Any, tag: str) -> list[Any]:
    if not isinstance(value, list):
        raise FormatError(f"a {tag!r} value needs a list in v")
    return value


def decode(doc: Any, arrays: list[np.ndarray]) -> Any:  # noqa: C901
    """The value :func:`encode` encoded (``arrays`` from :func:`read_arrays`).

    Raises:
        FormatError: anything that does not follow the format.
    """
    used = [False] * len(arrays)

    def dec(node: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise FormatError(f"nested deeper than {MAX_DEPTH} levels")
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [dec(x, depth + 1) for x in node]
        if not isinstance(node, dict):
            raise FormatError(f"unexpected JSON value of type {type(node).__name__}")
        if TAG not in node:
            return {k: dec(v, depth + 1) for k, v in node.items()}
        return tagged(node, depth)

    def scalar(dt: np.dtype[Any], value: Any) -> Any:
        if dt.kind == "b":
            ok = type(value) is bool
        elif dt.kind in "iu":
            ok = type(value) is int
        else:
            ok = type(value) in (int, float) or value in ("nan", "inf", "-inf")
            value = float(value)
        if not ok:
            raise FormatError(f"{str(value)[:40]} is not a {dt} value")
        return value

    def tagged(node: dict[str, Any], depth: int) -> Any:  # noqa: C901
        tag = node[TAG]
        if tag == "array":
            _expect(node, {TAG, "i"}, tag)
            i = node["i"]
            if type(i) is not int or not 0 <= i < len(arrays) or used[i]:
                raise FormatError("an array reference is out of range or used twice")
            used[i] = True
            return arrays[i]
        if tag == "float":
            _expect(node, {TAG, "v"}, tag)
            if node["v"] not in ("nan", "inf", "-inf"):
                raise FormatError("a 'float' value must be nan, inf or -inf")
            return float(node["v"])
        if tag == "np":
            _expect(node, {TAG, "d", "v"}, tag)
            if not isinstance(node["d"], str) or not _DTYPE.match(node["d"]):
                raise FormatError("bad NumPy scalar dtype")
            dt = np.dtype(node["d"])
            if dt.kind not in _SCALAR_KINDS:
                raise FormatError(f"NumPy scalars of dtype {dt} are not supported")
            try:
                return dt.type(scalar(dt, node["v"]))
            except (OverflowError, ValueError, TypeError):
                raise FormatError(f"{str(node['v'])[:40]} does not fit {dt}") from None
        if tag == "bytes":
            _expect(node, {TAG, "v"}, tag)
            try:
                return base64.b64decode(node["v"], validate=True)
            except (ValueError, TypeError):
                raise FormatError("a 'bytes' value is not base64") from None
        if tag in ("tuple", "set", "frozenset"):
            _expect(node, {TAG, "v"}, tag)
            items = [dec(x, depth + 1) for x in _list(node["v"], tag)]
            try:
                return {"tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
            except TypeError:
                raise FormatError(f"a {tag!r} holds an unhashable item") from None
        if tag == "deque":
            _expect(node, {TAG, "v", "maxlen"}, tag)
            maxlen = node["maxlen"]
            if maxlen is not None and (type(maxlen) is not int or maxlen < 0):
                raise FormatError("a deque's maxlen must be null or a count")
            return collections.deque((dec(x, depth + 1) for x in _list(node["v"], tag)), maxlen)
        if tag == "dict":
            return mapping(node, depth)
        if tag == "dataclass":
            _expect(node, {TAG, "type", "v"}, tag)
            cls = _resolve(node["type"], dataclasses.is_dataclass)
            fields = {f.name for f in dataclasses.fields(cls)}
            values = node["v"]
            if not isinstance(values, dict) or set(values) != fields:
                raise FormatError(f"{node['type']}: the fields do not match the class")
            obj = object.__new__(cls)
            for name, value in values.items():
                object.__setattr__(obj, name, dec(value, depth + 1))
            return obj
        if tag == "enum":
            _expect(node, {TAG, "type", "v"}, tag)
            cls = _resolve(node["type"], lambda c: issubclass(c, enum.Enum))
            try:
                return cls(dec(node["v"], depth + 1))
            except (ValueError, TypeError):
                raise FormatError(f"{node['type']} has no member {str(node['v'])[:40]!r}") from None
        raise FormatError(f"unknown tag {str(tag)[:32]!r}")

    def mapping(node: dict[str, Any], depth: int) -> Any:
        kind = node.get("kind")
        kinds = {v: k for k, v in _DICT_KINDS.items()}
        if kind not in kinds:
            raise FormatError(f"unknown dict kind {str(kind)[:32]!r}")
        _expect(node, {TAG, "kind", "v", "factory"} if kind == "defaultdict" else {TAG, "kind", "v"}, "dict")
        pairs = _list(node["v"], "dict")
        out: Any
        if kind == "defaultdict":
            factory = _FACTORIES.get(node["factory"]) if isinstance(node["factory"], str) else None
            if factory is None:
                raise FormatError("a defaultdict's factory must be one of " + ", ".join(_FACTORIES))
            out = collections.defaultdict(factory)
        else:
            out = kinds[kind]()
        for pair in pairs:
            if not isinstance(pair, list) or len(pair) != 2:
                raise FormatError("a dict's items must be [key, value] pairs")
            try:
                out[dec(pair[0], depth + 1)] = dec(pair[1], depth + 1)
            except TypeError:
                raise FormatError("a dict key is unhashable") from None
        return out

    value = dec(doc, 0)
    if not all(used):
        raise FormatError(f"{used.count(False)} array(s) in the table are never referred to")
    return value
