"""`townlet serve`, `townlet console` and `townlet bench-live` as real processes: URL, first-run token, TLS."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from server_support import ServerProcess, issue, post
from telemetry_support import make_ca, make_cert, write_pem
from townlet.cli.console_cmd import parse_pairs
from townlet.cli.main import main


def townlet(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "townlet.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    """One running server for the console CLI tests."""
    proc = ServerProcess(tmp_path_factory.mktemp("cli") / "state", "--speed", "10x")
    yield proc
    proc.stop()


def test_serve_prints_its_url_and_a_first_run_admin_token_once(tmp_path: Path) -> None:
    """A fresh install creates a signing key and prints one working admin token; a restart prints none."""
    state = tmp_path / "state"
    first = ServerProcess(state)
    try:
        assert first.url.startswith("http://127.0.0.1:") and first.admin_token
        assert (state / "keys.json").exists() and oct((state / "keys.json").stat().st_mode)[-3:] == "600"
        status, body = post(first.url, first.admin_token, "pause")
        assert status == 200 and body["data"]["paused"] is True
        assert "/ws/telemetry" in first.lines[0]
    finally:
        assert first.stop() == 0  # Ctrl+C is a clean stop
    second = ServerProcess(state)
    try:
        assert second.admin_token is None and not any("token" in line for line in second.lines)
        assert post(second.url, first.admin_token, "status")[0] == 200  # the key survived the restart
    finally:
        second.stop()


def console(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["console", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_console_cli_runs_commands_with_a_token_from_the_flag_or_the_environment(
    server: ServerProcess, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`townlet console URL CMD k=v` prints the result; refusals exit 1 with the code; no token exits 2."""
    admin = issue(server.state_dir, "admin", "ops")
    viewer = issue(server.state_dir, "viewer", "watcher")
    code, out, err = console(
        capsys, server.url, "setneed", "agent=agent_1", "need=hunger", "value=0.75", "--token", admin
    )
    assert code == 0, err
    assert json.loads(out)["data"] == {"agent": "agent_1", "need": "hunger", "value": 0.75}
    monkeypatch.setenv("TOWNLET_TOKEN", viewer)
    code, out, _ = console(capsys, server.url, "agent", "agent=agent_1")
    assert code == 0 and json.loads(out)["data"]["agent"] == "agent_1"
    code, out, _ = console(capsys, server.url, "spawn", "agent=intruder")
    assert code == 1 and json.loads(out)["code"] == "E_FORBIDDEN"
    monkeypatch.delenv("TOWNLET_TOKEN")
    code, _, err = console(capsys, server.url, "status")
    assert code == 2 and "TOWNLET_TOKEN" in err
    code, _, err = console(capsys, "http://127.0.0.1:9", "status", "--token", admin)
    assert code == 2 and "cannot reach" in err
    assert parse_pairs(["x=10", "on=false", "agents=[a, b]", "name=agent_1", "note=10:00"], '{"y": 2}') == {
        "y": 2,
        "x": 10,
        "on": False,
        "agents": ["a", "b"],
        "name": "agent_1",
        "note": "10:00",
    }


def test_console_cli_blackout_state_on_and_perturbations_off_work_as_typed(
    server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    """`townlet console URL blackout state=on` cuts the power; `perturbations state=off` stops the schedule."""
    admin = issue(server.state_dir, "admin", "ops")
    code, out, err = console(capsys, server.url, "blackout", "state=on", "--token", admin)
    assert code == 0, out + err
    assert json.loads(out)["data"]["power_off"]
    code, out, _ = console(capsys, server.url, "blackout", "state=off", "--token", admin)
    assert code == 0 and json.loads(out)["data"]["power_off"] == []
    code, out, _ = console(capsys, server.url, "perturbations", "state=off", "--token", admin)
    assert code == 0 and json.loads(out)["data"]["schedule"] == "off"
    code, out, _ = console(capsys, server.url, "status", "--token", admin)
    assert json.loads(out)["data"]["perturbation_schedule"] == "off"


def test_tls_serves_https_and_wss(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With --tls-cert/--tls-key the URL is https, the API verifies against the CA, and watch reads wss."""
    ca = make_ca()
    cert, key = write_pem(tmp_path, "server", *make_cert(ca))
    ca_file, _ = write_pem(tmp_path, "ca", None, ca[1])
    context = ssl.create_default_context(cafile=ca_file)
    proc = ServerProcess(tmp_path / "state", "--tls-cert", cert, "--tls-key", key, verify=context)
    try:
        assert proc.url.startswith("https://127.0.0.1:")
        answer = httpx.get(f"{proc.url}/healthz", verify=context, timeout=10)
        assert answer.status_code == 200 and answer.json()["status"] == "ok"
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{proc.url}/healthz", timeout=10)  # not trusted without the CA
        assert main(["watch", proc.url, "--once", "--cafile", ca_file]) == 0
        frame = capsys.readouterr().out
        assert "agent_0" in frame and "wss://" in frame
        code, out, err = console(capsys, proc.url, "status", "--token", proc.admin_token or "", "--cafile", ca_file)
        assert code == 0 and json.loads(out)["ok"], err
    finally:
        proc.stop()
    code = main(
        [
            "serve",
            "--tls-cert",
            str(tmp_path / "missing.pem"),
            "--tls-key",
            key,
            "--port",
            "0",
            "--state-dir",
            str(tmp_path / "state2"),
        ]
    )
    assert code == 2 and "TLS file not found" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_live_prints_a_json_report_with_lag_and_rate_figures() -> None:
    """The load benchmark runs its three phases against a real server and reports JSON with pass flags."""
    done = townlet("bench-live", "--spectators", "3", "--duration", "1", "--json", timeout=180)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["spectators"] == 3 and report["spectator_side"]["connected"] == 3
    assert report["spectator_side"]["first_snapshot"] == 3
    assert report["pace_1x"]["tick_rate"] > 0 and "p99" in report["pace_1x"]["lag_ms"]
    alone, crowded = report["speed_100x"]["alone"], report["speed_100x"]["with_spectators"]
    assert alone["viewers"] == 0 and crowded["viewers"] == 3 and alone["tick_rate"] > 50
    assert set(report) >= {"pace_1x", "speed_100x", "pass"}


def test_bench_live_times_the_shipped_policy_only_where_it_fits(monkeypatch, capsys) -> None:
    """Unasked, a town the shipped policy does not fit is timed with the scripted routine only; asked, it fails."""
    from townlet.server import loadtest

    built: list[str] = []

    def build_only(spectators, duration, overrides, config, seed, log, policy, view):  # noqa: PLR0913
        bench = loadtest.LoadBench(overrides, config, seed, policy)  # the real fit check of the driving policy
        bench.sock.close()
        bench.tmp.cleanup()
        built.append(policy)
        return {"policy": {"name": policy}, "pass": True}

    monkeypatch.setattr(loadtest, "run_load_bench", build_only)
    code = main(["bench-live", "--set", "population.agents=12", "--duration", "1", "--json"])
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert code == 0 and built == ["scripted"] and list(report["by_policy"]) == ["scripted"]
    assert report["skipped"][0]["policy"] == "default" and "does not fit this town" in report["skipped"][0]["reason"]
    assert "skipped default" in out.err
    code = main(["bench-live", "--set", "population.agents=12", "--duration", "1", "--policy", "default", "--json"])
    assert code == 2 and "does not fit this town" in capsys.readouterr().err
    assert built == ["scripted"]
