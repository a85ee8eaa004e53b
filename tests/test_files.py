"""Tests for townlet.files.write_atomic: whole files or none, permissions before content, no temp left."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from townlet.files import write_atomic


def test_writes_bytes_or_a_writer_and_creates_the_directory(tmp_path: Path) -> None:
    """Bytes and a writer function both land whole; a missing parent directory is created."""
    target = tmp_path / "a" / "b" / "out.bin"
    assert write_atomic(target, b"first") == target
    assert target.read_bytes() == b"first"
    write_atomic(target, lambda handle: handle.write(b"second"), sync_dir=True)
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["out.bin"]


def test_permissions_are_applied(tmp_path: Path) -> None:
    """A secret is written with the asked-for mode."""
    target = write_atomic(tmp_path / "keys.json", b"{}", permissions=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    """When the writer raises, the previous content stays and the temp file is removed."""
    target = write_atomic(tmp_path / "state.bin", b"old")

    def broken(handle: object) -> None:
        handle.write(b"half")  # type: ignore[attr-defined]
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(target, broken)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.bin"]
