"""Crash recovery: autosave retention, newest-valid selection, and kill -9 of a serving town then resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from townlet.config.loader import load_config
from townlet.sim import snapshot
from townlet.sim.autosave import Autosaver, newest_valid
from townlet.sim.signing import SnapshotKeys


def test_autosave_keeps_the_newest_files(make_sim, tmp_path: Path) -> None:
    """Autosaving every 50 ticks with keep=3 leaves exactly the 3 newest snapshots."""
    sim = make_sim()
    Autosaver(tmp_path, every=50, keep=3).attach(sim)
    sim.run(260)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["town-000000000150.snap", "town-000000000200.snap", "town-000000000250.snap"]
    assert snapshot.read(tmp_path / names[-1]).identity["tick"] == 250


def test_corrupt_newest_is_skipped_with_a_warning(make_sim, tmp_path: Path) -> None:
    """A bit-flipped newest snapshot is skipped; the one before it is loaded."""
    sim = make_sim()
    Autosaver(tmp_path, every=40, keep=5).attach(sim)
    sim.run(120)
    newest = tmp_path / "town-000000000120.snap"
    data = bytearray(newest.read_bytes())
    data[-5] ^= 0xFF
    newest.write_bytes(bytes(data))
    resumed, path, warnings = newest_valid(tmp_path)
    assert path.name == "town-000000000080.snap"
    assert resumed.tick == 80
    assert len(warnings) == 1 and "signature mismatch" in warnings[0]


CLI = "import sys; from townlet.cli.main import main; sys.exit(main(sys.argv[1:]))"


def _serve(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CLI, "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for(predicate, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_kill_9_between_autosaves_then_resume(make_sim, tmp_path: Path) -> None:
    """SIGKILL a serving town; every autosave is intact and ``serve --resume`` continues from the newest."""
    snaps, state = tmp_path / "snaps", tmp_path / "state"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    common = ["--speed", "max", "--state-dir", str(state), "--seed", "4"]
    town = _serve([*common, "--autosave-every", "300", "--snapshot-dir", str(snaps)], env)
    try:
        _wait_for(lambda: len(list(snaps.glob("town-*.snap"))) >= 3)
    finally:
        town.send_signal(signal.SIGKILL)
        town.wait(10)
    files = sorted(snaps.glob("town-*.snap"))
    keys = SnapshotKeys.from_config(load_config(overrides=[f"console.state_dir={state}"]).config)
    for path in files:  # every complete autosave is valid: atomic writes leave nothing half-written
        snapshot.read(path, keys)
    newest = snapshot.load(files[-1], keys=keys)
    reference = make_sim(seed=4)
    reference.run(newest.tick)
    assert newest.state_hash() == reference.state_hash()  # nothing corrupted: it is the uninterrupted town
    again = _serve([*common, "--resume", str(snaps)], env)
    try:
        assert again.stdout is not None
        lines = [again.stdout.readline() for _ in range(2)]
        resumed = next(line for line in lines if "resumed tick" in line)
        assert int(resumed.split("resumed tick ")[1].split()[0]) == newest.tick
    finally:
        again.send_signal(signal.SIGKILL)
        again.wait(10)
