"""The live server's policy API: POST /api/console `policy` swaps within one tick, refusals, audit, /healthz."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from townlet.config.loader import load_config
from townlet.console.auth import TokenAuthority
from townlet.console.errors import E_CONFLICT, E_FORBIDDEN, E_NOT_FOUND
from townlet.policy import shipped
from townlet.server.app import create_app
from townlet.server.live import LiveTown
from townlet.training.registry import PolicyRegistry
from townlet.training.stability import Baseline
from training_support import tiny_checkpoint

BASE = "http://127.0.0.1:8000"


def test_swap_status_refusals_and_audit_over_http(tmp_path: Path) -> None:
    """Admin swap lands within a tick; viewer, unknown and misfit refused by code; status, /healthz; all audited."""
    state = tmp_path / "state"
    loaded = load_config(overrides=[f"console.state_dir={state}", "console.audit_fsync=false"])  # 1x: 250 ms
    authority = TokenAuthority.from_config(loaded.config.console)
    admin, _ = authority.issue("alice", "admin", 3600)
    viewer, _ = authority.issue("bob", "viewer", 3600)
    registry = PolicyRegistry(tmp_path / "registry.sqlite")
    compact = registry.register(str(tiny_checkpoint(tmp_path / "compact.pt", variant="compact")))
    live = LiveTown.build(loaded, seed=0, registry=registry, baseline=Baseline(0.05, 0.0))

    def post(token: str, **args: object) -> tuple[int, dict]:
        answer = client.post(
            "/api/console", json={"cmd": "policy", "args": args}, headers={"Authorization": f"Bearer {token}"}
        )
        return answer.status_code, answer.json()

    with TestClient(create_app(live), base_url=BASE) as client:
        while live.last_tick < 1:
            time.sleep(0.01)
        code, body = post(viewer)
        assert code == 200 and body["data"]["policy"]["hash"] == "scripted"
        code, body = post(viewer, op="swap", ref="default")
        assert code == 403 and body["code"] == E_FORBIDDEN
        code, body = post(admin, op="swap", ref="0123abcd")
        assert code == 404 and body["code"] == E_NOT_FOUND
        code, body = post(admin, op="swap", ref=compact.policy_hash)
        assert code == 409 and body["code"] == E_CONFLICT and "variant: the policy reads compact" in body["message"]
        code, body = post(admin, op="swap", ref="default")  # running: applied at the next tick boundary
        assert code == 200 and body["data"]["policy"]["hash"] == shipped.default_hash()
        assert body["data"]["policy"]["since"] == body["tick"]  # it decides from the tick it was applied before
        assert (
            client.post("/api/console", json={"cmd": "pause"}, headers={"Authorization": f"Bearer {admin}"}).status_code
            == 200
        )
        paused_at = -1
        while paused_at != live.last_tick:  # the tick the pause was applied in finishes first
            paused_at = live.last_tick
            time.sleep(0.3)
        code, body = post(admin, op="swap", ref="scripted")  # paused: applied at once, between two ticks
        assert code == 200 and body["tick"] == paused_at + 1 and live.last_tick == paused_at
        assert body["data"]["policy"]["hash"] == "scripted"
        code, body = post(admin, op="swap", ref="default")
        assert body["tick"] == paused_at + 1 and body["data"]["previous"]["hash"] == "scripted"
        code, body = post(viewer, op="status")
        assert body["data"]["policy"]["hash"] == shipped.default_hash()
        health = client.get("/healthz").json()
        assert health["policy"]["hash"] == shipped.default_hash()
        assert health["policy"]["canaries"]["starvation"]["state"] == "ok"
    audit = [orjson.loads(line) for line in (state / "audit.jsonl").read_bytes().splitlines()]
    policy_lines = [(r["principal"], r["ok"], r["code"]) for r in audit if r.get("cmd") == "policy"]
    assert policy_lines == [
        ("bob", True, None),
        ("bob", False, E_FORBIDDEN),
        ("alice", False, E_NOT_FOUND),
        ("alice", False, E_CONFLICT),
        ("alice", True, None),
        ("alice", True, None),
        ("alice", True, None),
        ("bob", True, None),
    ]


def test_help_lists_policy_with_its_admin_ops(tmp_path: Path) -> None:
    """`help` shows `policy` to a viewer, with swap, promote and rollback marked admin."""
    loaded = load_config(overrides=[f"console.state_dir={tmp_path}"])
    live = LiveTown.build(loaded, seed=0, baseline=Baseline(0.05, 0.0))
    viewer, _ = TokenAuthority.from_config(loaded.config.console).issue("bob", "viewer", 3600)
    future = live.console.submit(viewer, {"cmd": "help"})
    live.console.flush()
    listed = {c["name"]: c for c in future.result(timeout=1).data["commands"]}
    assert listed["policy"]["role"] == "viewer" and listed["policy"]["admin_ops"] == ["swap", "promote", "rollback"]


def test_serve_policy_default_shows_learned_agents_and_says_which_policy_drives(tmp_path: Path) -> None:
    """`townlet serve --policy default` prints the policy; the stream's agents carry its inspector numbers."""
    from server_support import ServerProcess

    server = ServerProcess(
        tmp_path / "state", "--policy", "default", "--speed", "max", "--registry", str(tmp_path / "registry.sqlite")
    )
    try:
        assert any(
            line.startswith(f"townlet: policy default = {shipped.default_hash()} (--policy)") for line in server.lines
        ), server.lines
        server.wait_tick(200)
        health = server.health()
        assert health["policy"]["hash"] == shipped.default_hash() and health["policy"]["source"] == "default"
        status, body = post_cmd(server, "agent", agent="agent_1")
        assert status == 200 and body["data"]["policy"]["hash"] == shipped.default_hash()
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_serve_runs_the_registrys_release_or_else_scripted_and_says_which(tmp_path: Path) -> None:
    """No release: scripted, and the line says so; after `promote promote default`: the default policy."""
    from server_support import ServerProcess
    from townlet.cli.main import main

    registry = str(tmp_path / "registry.sqlite")
    first = ServerProcess(tmp_path / "state", "--registry", registry)
    try:
        assert any(
            "policy scripted (the registry at" in line and "has no release yet" in line for line in first.lines
        ), first.lines
    finally:
        first.stop()
    assert main(["promote", "promote", "default", "--reason", "ship it", "--registry", registry]) == 0
    second = ServerProcess(tmp_path / "state", "--registry", registry)
    try:
        assert any(
            f"policy {shipped.default_hash()} (the release of the registry at" in line for line in second.lines
        ), second.lines
        assert second.health()["policy"]["hash"] == shipped.default_hash()
    finally:
        second.stop()


def post_cmd(server, cmd: str, **args: object) -> tuple[int, dict]:
    from server_support import issue, post

    return post(server.url, issue(server.state_dir, "admin", "tester"), cmd, **args)
