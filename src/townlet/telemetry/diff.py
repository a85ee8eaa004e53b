"""Per-tick diffs as JSON Merge Patch (RFC 7386): make one from two states, apply one to a state.

A patch is a partial state: a key with an object value merges into the same key, any other value
replaces it, and ``null`` removes the key. Lists are replaced whole. Because the state never holds
``null`` (see :mod:`townlet.telemetry.state`), applying every diff in order to the first snapshot
rebuilds each later state exactly.
"""

from __future__ import annotations

from typing import Any

_MISSING = object()


def make_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that turns ``old`` into ``new`` (empty when they are equal)."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key, _MISSING)
        if before is value:
            continue
        if before is _MISSING:
            patch[key] = value
        elif isinstance(value, dict) and isinstance(before, dict):
            if value == before:  # one C-level comparison saves a Python-level walk of unchanged branches
                continue
            sub = make_patch(before, value)
            if sub:
                patch[key] = sub
        elif type(value) is not type(before) or value != before:
            patch[key] = value
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


def apply_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Apply a merge patch to ``target`` in place and return it (values are copied, never shared)."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            current = target.get(key)
            if not isinstance(current, dict):
                current = target[key] = {}
            apply_patch(current, value)
        else:
            target[key] = _copy(value)
    return target


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
