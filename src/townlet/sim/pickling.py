"""Pickling and deep copies of towns that keep NumPy views as views: :class:`KeepsViews`.

A town's state is full of arrays that are views of others (each reward term a row of one matrix, the
observation map window a slice of its padded plane, a batch's per-town buffers slices of the stacked ones).
Plain ``pickle`` copies each view on its own, so a copy would write into arrays nobody reads. Objects
deriving from :class:`KeepsViews` pickle their whole graph in one pass with a pickler that writes a view
as (its base array, offset, shape, strides), so in the copy the view is again a window onto the copied
base. Nothing but plain ``pickle`` is needed to load it, and ``copy.deepcopy`` goes the same way.
"""

from __future__ import annotations

import contextvars
import io
import pickle
from typing import Any

import numpy as np

_INSIDE = contextvars.ContextVar("townlet_pickling_views", default=False)


def _view(
    base: np.ndarray, offset: int, shape: tuple[int, ...], strides: tuple[int, ...], dtype: np.dtype
) -> np.ndarray:
    """Rebuild a view of ``base`` (unpickling)."""
    return np.ndarray(shape, dtype=dtype, buffer=base, offset=offset, strides=strides)


def _loads(blob: bytes) -> Any:
    """Rebuild an object pickled by :class:`KeepsViews` (unpickling)."""
    return pickle.loads(blob)


class _ViewPickler(pickle.Pickler):
    """Writes an array that is a view of another array as a view of (the pickled copy of) that array."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is not np.ndarray or not isinstance(obj.base, np.ndarray) or obj.dtype.hasobject:
            return NotImplemented
        root = obj.base
        while isinstance(root.base, np.ndarray):
            root = root.base
        if root.dtype.hasobject or not (root.flags.c_contiguous or root.flags.f_contiguous):
            return NotImplemented
        offset = obj.__array_interface__["data"][0] - root.__array_interface__["data"][0]
        return _view, (root, offset, obj.shape, obj.strides, obj.dtype)


class KeepsViews:
    """Mixin: pickle (and deep-copy) the object's whole graph in one pass that keeps array views views."""

    def __reduce_ex__(self, protocol: Any) -> Any:
        if _INSIDE.get():  # already inside a view-keeping pass: pickle the state as usual
            return super().__reduce_ex__(protocol)
        buffer = io.BytesIO()
        token = _INSIDE.set(True)
        try:
            _ViewPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(self)
        finally:
            _INSIDE.reset(token)
        return _loads, (buffer.getvalue(),)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return _loads(self.__reduce_ex__(pickle.HIGHEST_PROTOCOL)[1][0])
