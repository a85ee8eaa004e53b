"""Snapshots: round trip, corruption detection, config_id migrations, atomic writes and the CLI contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from townlet.cli.main import main
from townlet.config.loader import load_config
from townlet.sim import snapshot
from townlet.sim.snapshot import SnapshotError

BUSY = ["features.lifecycle=on", "features.perturbations=on", "features.social_rewards=C1"]


def test_round_trip_at_a_random_tick_matches_the_uninterrupted_run(make_sim, tmp_path: Path) -> None:
    """Save at an odd tick, load, run 1,000 ticks: the state hash equals the uninterrupted run's."""
    a = make_sim(seed=3, overrides=BUSY)
    a.run(1337)
    path = snapshot.write(a, tmp_path / "t.snap")
    b = snapshot.load(path)
    assert b.state_hash() == a.state_hash()
    a.run(1000)
    b.run(1000)
    assert b.tick == a.tick == 2337
    assert b.state_hash() == a.state_hash()
    assert b.kpis.report(b.world) == a.kpis.report(a.world)


def test_identity_block_is_recorded(make_sim, tmp_path: Path) -> None:
    """The header carries config_id, observation variant, policy hash, anneal ratio and schema version."""
    sim = make_sim()
    sim.run(10)
    ident = snapshot.read(snapshot.write(sim, tmp_path / "s.snap")).identity
    assert ident["config_id"] == sim.loaded.config_id
    assert ident["observation_variant"] == "hybrid"
    assert ident["schema_version"] == snapshot.SCHEMA_VERSION
    assert {"policy_hash", "anneal_ratio"} <= set(ident)
    assert ident["tick"] == 10


@pytest.mark.parametrize("damage", ["truncate", "bitflip"])
def test_corrupt_snapshot_is_refused(make_sim, tmp_path: Path, damage: str) -> None:
    """A truncated or bit-flipped file fails its signature and is refused with a clear error."""
    sim = make_sim()
    sim.run(50)
    path = snapshot.write(sim, tmp_path / "s.snap")
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) - 100] ^= 0x04
    path.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match="signature mismatch"):
        snapshot.load(path)


def test_config_mismatch_needs_a_migration(make_sim, tmp_path: Path) -> None:
    """A different config_id is refused; with a registered migration it loads and records the step."""
    sim = make_sim()
    sim.run(40)
    path = snapshot.write(sim, tmp_path / "s.snap")
    other = load_config(overrides=["economy.rent_per_day=9.5"])
    with pytest.raises(SnapshotError, match="no registered or declarative migration"):
        snapshot.load(path, other)
    key = (sim.loaded.config_id, other.config_id)
    snapshot.register_migration("raise_rent", *key, lambda state: state)
    try:
        moved = snapshot.load(path, other)
    finally:
        snapshot.MIGRATIONS.pop(key)
    assert moved.applied_migrations == [{"name": "raise_rent", "from": key[0], "to": key[1], "tick": 40}]
    again = snapshot.read(snapshot.write(moved, tmp_path / "m.snap"))
    assert again.header["migrations"][0]["name"] == "raise_rent"


def test_write_is_atomic_and_leaves_no_temp_files(make_sim, tmp_path: Path) -> None:
    """Overwriting a snapshot replaces it whole and leaves nothing else in the directory."""
    sim = make_sim()
    path = snapshot.write(sim, tmp_path / "s.snap")
    sim.run(5)
    snapshot.write(sim, path)
    assert [p.name for p in tmp_path.iterdir()] == ["s.snap"]
    assert snapshot.read(path).identity["tick"] == 5


def test_cli_run_resume_equals_one_long_run(tmp_path: Path, capsys) -> None:
    """``run --snapshot-out`` then ``run --resume --ticks M`` gives the state hash of one N+M run."""
    snap = tmp_path / "n.snap"
    assert main(["run", "--ticks", "300", "--seed", "2", "--json", "--snapshot-out", str(snap)]) == 0
    capsys.readouterr()
    assert main(["run", "--resume", str(snap), "--ticks", "200", "--json"]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert main(["run", "--ticks", "500", "--seed", "2", "--json"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert resumed["state_hash"] == whole["state_hash"]
    assert resumed["ticks"] == 500


def test_cli_snapshot_inspect_validate(tmp_path: Path, capsys) -> None:
    """``snapshot save`` writes a file that ``inspect`` describes and ``validate`` accepts; damage fails it."""
    snap = tmp_path / "s.snap"
    assert main(["snapshot", "save", str(snap), "--ticks", "20"]) == 0
    assert main(["snapshot", "inspect", str(snap), "--json"]) == 0
    info = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert info["identity"]["tick"] == 20
    assert info["migrations"] == []
    assert main(["snapshot", "validate", str(snap)]) == 0
    snap.write_bytes(snap.read_bytes()[:-10])
    assert main(["snapshot", "validate", str(snap)]) == 1
    assert "signature mismatch" in capsys.readouterr().err


def test_migration_is_reported_by_run_json_and_telemetry(tmp_path: Path, capsys) -> None:
    """Resuming under another config via a migration shows the step in ``--json`` and the telemetry header."""
    snap, stream = tmp_path / "n.snap", tmp_path / "t.jsonl"
    assert main(["run", "--ticks", "50", "--json", "--snapshot-out", str(snap)]) == 0
    capsys.readouterr()
    source = snapshot.read(snap).identity["config_id"]
    target = load_config(overrides=["economy.rent_per_day=9.5"]).config_id
    snapshot.register_migration("raise_rent", source, target, lambda state: state)
    try:
        code = main(
            [
                "run",
                "--resume",
                str(snap),
                "--set",
                "economy.rent_per_day=9.5",
                "--ticks",
                "20",
                "--json",
                "--telemetry",
                str(stream),
            ]
        )
    finally:
        snapshot.MIGRATIONS.pop((source, target))
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["config_id"] == target and out["migrations"][0]["name"] == "raise_rent"
    header = json.loads(stream.read_text().splitlines()[0])
    assert header["type"] == "snapshot" and header["migrations"][0]["from"] == source


def test_resume_without_migration_is_refused(tmp_path: Path, capsys) -> None:
    """``run --resume`` under a different config without a migration exits with the reason."""
    snap = tmp_path / "n.snap"
    assert main(["run", "--ticks", "10", "--json", "--snapshot-out", str(snap)]) == 0
    with pytest.raises(SystemExit, match="no registered or declarative migration"):
        main(["run", "--resume", str(snap), "--set", "economy.rent_per_day=9.5", "--ticks", "5"])
