"""Missing optional extras fail fast: a command that needs one says so in one line before doing any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from townlet.cli import extras
from townlet.cli.main import main


def hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``modules`` look uninstalled to the extras check."""
    real = extras._importable
    monkeypatch.setattr(extras, "_importable", lambda name: name not in modules and real(name))


def test_train_without_matplotlib_stops_at_once_naming_the_extra(tmp_path: Path, monkeypatch, capsys) -> None:
    """`townlet train` without matplotlib exits 2 before training, with one line naming the train extra."""
    hide(monkeypatch, "matplotlib")
    out = tmp_path / "run"
    code = main(["train", "--steps", "64", "--out", str(out), "--json"])
    stdout, stderr = capsys.readouterr()
    assert code == 2 and stdout == "" and not out.exists()
    assert stderr.strip().splitlines() == [
        "townlet train: needs the 'train' extra (matplotlib missing): pip install 'townlet[train]'"
    ]


def test_ray_is_only_needed_with_the_ray_flag_and_clone_needs_torch(tmp_path: Path, monkeypatch, capsys) -> None:
    """`townlet train` asks for Ray only with --ray; bc and anneal ask for torch; a present extra passes."""
    hide(monkeypatch, "ray", "torch")
    assert main(["train", "--steps", "64", "--out", str(tmp_path / "r"), "--ray", "local", "--json"]) == 2
    assert "torch, ray missing" in capsys.readouterr().err
    assert main(["bc", str(tmp_path / "data"), "--out", str(tmp_path / "c.pt")]) == 2
    assert "townlet bc: needs the 'train' extra (torch missing)" in capsys.readouterr().err
    assert main(["anneal", str(tmp_path / "c.pt")]) == 2
    assert "townlet anneal: needs the 'train' extra" in capsys.readouterr().err
    monkeypatch.undo()
    assert extras.missing_extra("train", "train") is None
