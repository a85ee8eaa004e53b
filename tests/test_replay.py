"""Replay: a snapshot re-run with the recorded console inputs reproduces the recorded run's state hash."""

from __future__ import annotations

import json
from pathlib import Path

from townlet.cli.main import main
from townlet.config.loader import load_config
from townlet.console.audit import AuditLog
from townlet.console.auth import TokenAuthority
from townlet.console.service import ConsoleService
from townlet.sim import Simulation, snapshot


def _recorded_run(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A town driven by console commands between two snapshots; returns (start, end, audit log)."""
    sim = Simulation(load_config(), seed=5)
    authority = TokenAuthority(tmp_path / "k.json", tmp_path / "r.json", tmp_path / "i.jsonl")
    audit = tmp_path / "audit.jsonl"
    console = ConsoleService(sim, authority, AuditLog(audit, fsync=False))
    admin = authority.issue("alice", "admin", 3600)[0]
    sim.run(60)
    start = snapshot.write(sim, tmp_path / "town-000000000060.snap")
    orders = {
        70: ("setneed", {"agent": "agent_2", "need": "hunger", "value": 0.95}),
        90: ("rain", {"state": "start"}),
        120: ("price", {"item": "cafe_meal", "price": 4.0}),
        130: ("setneed", {"agent": "no_such_agent", "need": "energy", "value": 0.5}),
    }
    while sim.tick < 160:
        if sim.tick in orders:
            cmd, args = orders[sim.tick]
            console.submit(admin, {"cmd": cmd, "args": args})
        sim.step()
    end = snapshot.write(sim, tmp_path / "town-000000000160.snap")
    return start, end, audit


def test_replay_with_recorded_inputs_matches(tmp_path: Path, capsys) -> None:
    """Replaying 100 ticks with the audit log gives the recorded hash; without the inputs it differs."""
    start, end, audit = _recorded_run(tmp_path)
    assert main(["replay", str(start), "--ticks", "100", "--inputs", str(audit), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["match"] is True and out["inputs_applied"] == 3 and out["input_failures"] == []
    assert out["state_hash"] == snapshot.read(end).identity["state_hash"]
    assert main(["replay", str(start), "--against", str(end), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["match"] is False


def test_replay_needs_a_tick_count(tmp_path: Path, make_sim, capsys) -> None:
    """Without --ticks or a later snapshot the command refuses with exit code 2."""
    path = snapshot.write(make_sim(), tmp_path / "a.snap")
    assert main(["replay", str(path)]) == 2
    assert "--ticks" in capsys.readouterr().err
