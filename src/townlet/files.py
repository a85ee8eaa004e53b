"""Atomic file writes: a temp file beside the target, flushed and fsynced, then renamed over it.

A reader sees the old file or the new one, never a torn write; a failed write leaves the old file in place
and no temp file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(
    path: str | Path,
    data: bytes | Callable[[BinaryIO], object],
    *,
    permissions: int | None = None,
    sync_dir: bool = False,
    exclusive: bool = False,
) -> Path:
    """Write ``data`` (bytes, or a function writing to the open binary file) to ``path`` atomically.

    Creates the parent directory if needed. ``permissions`` sets the file's mode before anything is written
    (secrets); ``sync_dir`` also fsyncs the directory, so that the rename itself survives a power cut;
    ``exclusive`` only creates: when ``path`` already exists it is left alone and ``FileExistsError`` raised.
    Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if permissions is not None:
            os.fchmod(fd, permissions)
        with os.fdopen(fd, "wb") as handle:
            if callable(data):
                data(handle)
            else:
                handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(tmp, path)  # fails if another writer got there first
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path
