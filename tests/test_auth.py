"""Console access control: tokens, roles from the token only, revocation and key rotation without a restart, audit."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import jwt
import orjson
import pytest

from townlet.cli.main import main
from townlet.console import REGISTRY, ConsoleService, TokenAuthority
from townlet.console.audit import AuditLog
from townlet.console.auth import parse_ttl
from townlet.console.errors import E_FORBIDDEN, E_RATE_LIMITED, E_UNAUTHENTICATED
from townlet.console.service import TokenBucket
from townlet.sim import Simulation

ADMIN_COMMANDS = sorted(name for name, c in REGISTRY.commands.items() if c.admin)
VIEWER_COMMANDS = sorted(name for name, c in REGISTRY.commands.items() if not c.admin)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def authority(state_dir: Path) -> TokenAuthority:
    return TokenAuthority(
        state_dir / "keys.json", state_dir / "revocations.json", state_dir / "issued.jsonl", leeway_s=0
    )


@pytest.fixture
def console(authority: TokenAuthority, state_dir: Path) -> ConsoleService:
    return ConsoleService(Simulation(seed=0), authority, AuditLog(state_dir / "audit.jsonl"))


def audit_lines(state_dir: Path) -> list[dict]:
    return [orjson.loads(line) for line in (state_dir / "audit.jsonl").read_bytes().splitlines()]


def answer(console: ConsoleService, token, payload):
    """Submit, run one tick, and return the result."""
    future = console.submit(token, payload)
    console.sim.step()
    return future.result(timeout=1)


def forge(claims: dict, secret: bytes, kid: str) -> str:
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid})


def test_a_console_without_authority_refuses_every_token(state_dir) -> None:
    """A service built with authority=None (as a replay builds it) refuses every token as E_UNAUTHENTICATED."""
    console = ConsoleService(Simulation(seed=0), None, AuditLog(state_dir / "audit.jsonl"))
    for token in (None, "a.b.c"):
        result = answer(console, token, {"cmd": "status"})
        assert not result.ok and result.code == E_UNAUTHENTICATED and "no tokens" in result.message
    assert console.counts["internal_errors"] == 0


def test_missing_malformed_and_forged_tokens_are_refused_and_audited(console, authority, state_dir) -> None:
    """No token, junk, a bad signature, an unknown key, alg none: all E_UNAUTHENTICATED, each audited."""
    good, claims = authority.issue("alice", "admin", 3600)
    kid = jwt.get_unverified_header(good)["kid"]
    header, body, sig = good.split(".")
    wrong_sig = f"{header}.{body}.{base64.urlsafe_b64encode(b'x' * 32).decode().rstrip('=')}"
    forged_role = forge({**claims, "sub": "mallory"}, b"not-the-secret-not-the-secret-00", kid)
    unknown_kid = forge(claims, b"0" * 32, "k-does-not-exist")
    alg_none = jwt.encode(claims, None, algorithm="none", headers={"kid": kid})
    cases = [None, "", "not-a-token", "a.b.c", 42, wrong_sig, forged_role, unknown_kid, alg_none, "x" * 5000]
    for token in cases:
        result = answer(console, token, {"cmd": "status"})
        assert not result.ok and result.code == E_UNAUTHENTICATED, (token, result)
    log = audit_lines(state_dir)
    assert len(log) == len(cases)
    assert all(r["code"] == E_UNAUTHENTICATED and r["principal"] is None and r["cmd"] == "status" for r in log)
    assert "bad signature" in {r["message"] for r in log}
    assert "missing token" in {r["message"] for r in log}
    assert good not in (state_dir / "audit.jsonl").read_text()


def test_an_expired_token_is_refused(console, authority) -> None:
    """A token whose expiry has passed (issued two hours ago for one hour) is refused."""
    old, _ = authority.issue("alice", "admin", 3600, now=time.time() - 7200)
    result = answer(console, old, {"cmd": "status"})
    assert result.code == E_UNAUTHENTICATED and result.message == "token expired"


def test_a_token_revoked_while_the_sim_runs_stops_working_at_once(console, authority, state_dir, capsys) -> None:
    """`townlet token revoke` (another process) takes effect on the next command, without a restart."""
    token, claims = authority.issue("alice", "admin", 3600)
    other, _ = authority.issue("bob", "admin", 3600)
    assert answer(console, token, {"cmd": "status"}).ok
    for _ in range(5):
        console.sim.step()
    assert main(["token", "revoke", claims["jti"], "--state-dir", str(state_dir), "--reason", "laptop lost"]) == 0
    result = answer(console, token, {"cmd": "status"})
    assert result.code == E_UNAUTHENTICATED and result.message == "token revoked"
    assert answer(console, other, {"cmd": "status"}).ok  # only that token
    assert main(["token", "revoke", "--principal", "bob", "--state-dir", str(state_dir)]) == 0
    assert answer(console, other, {"cmd": "status"}).code == E_UNAUTHENTICATED
    revoked_at = int(time.time())
    while int(time.time()) <= revoked_at:  # a token issued in a later second than the principal revocation
        time.sleep(0.02)
    fresh, _ = authority.issue("bob", "admin", 3600)
    assert answer(console, fresh, {"cmd": "status"}).ok
    messages = [r["message"] for r in audit_lines(state_dir)]
    assert messages[-4:] == ["token revoked", "", "token revoked", ""]


def test_rotated_keys_keep_old_tokens_until_the_old_key_is_retired(console, authority, state_dir, capsys) -> None:
    """Rotate: old and new tokens work; retire the old key: old tokens are refused, new ones still work."""
    old, _ = authority.issue("alice", "admin", 3600)
    old_kid = jwt.get_unverified_header(old)["kid"]
    capsys.readouterr()
    assert main(["token", "rotate", "--state-dir", str(state_dir)]) == 0
    new_kid = capsys.readouterr().out.strip()
    assert new_kid != old_kid
    new, _ = authority.issue("alice", "admin", 3600)
    assert jwt.get_unverified_header(new)["kid"] == new_kid
    assert answer(console, old, {"cmd": "status"}).ok and answer(console, new, {"cmd": "status"}).ok
    assert main(["token", "retire", old_kid, "--state-dir", str(state_dir)]) == 0
    result = answer(console, old, {"cmd": "status"})
    assert result.code == E_UNAUTHENTICATED and "retired" in result.message
    assert answer(console, new, {"cmd": "status"}).ok
    assert main(["token", "retire", new_kid, "--state-dir", str(state_dir)]) == 2  # the active key stays


def test_role_comes_only_from_the_token_never_the_payload(console, authority, state_dir) -> None:
    """A viewer token with mode/role admin in the payload is still a viewer: E_FORBIDDEN, audited as viewer."""
    viewer, _ = authority.issue("stream", "viewer", 3600)
    for payload in (
        {"cmd": "spawn", "args": {}, "mode": "admin"},
        {"cmd": "spawn", "args": {}, "role": "admin"},
        {"cmd": "spawn", "args": {"role": "admin"}, "mode": "admin", "token": "whatever"},
    ):
        result = answer(console, viewer, payload)
        assert result.code == E_FORBIDDEN
    log = audit_lines(state_dir)
    assert [r["role"] for r in log] == ["viewer"] * 3 and {r["principal"] for r in log} == {"stream"}
    assert console.sim.world.agents.alive.sum() == 8


def test_a_viewer_is_refused_every_admin_command_and_reaches_every_read_only_one(console, authority, state_dir) -> None:
    """Each admin command with a viewer token: E_FORBIDDEN (before argument checks), audited; reads work."""
    viewer, _ = authority.issue("stream", "viewer", 3600)
    assert len(ADMIN_COMMANDS) >= 20
    for name in ADMIN_COMMANDS:
        result = answer(console, viewer, {"cmd": name, "args": {"agent": "agent_0"}})
        assert result.code == E_FORBIDDEN, name
    for name in VIEWER_COMMANDS:
        args = {"agent": "agent_0"} if name == "agent" else {}
        assert answer(console, viewer, {"cmd": name, "args": args}).ok, name
    console.audit.sweep(force=True)  # refusals past the line budget are summarised: write the summary now
    log = audit_lines(state_dir)
    refused = [r for r in log if r.get("code") == E_FORBIDDEN]
    summaries = [r for r in log if r.get("summary")]
    counted = [name for s in summaries for name, n in s["cmds"].items() for _ in range(n)]
    assert sorted([r["cmd"] for r in refused] + counted) == ADMIN_COMMANDS
    assert all(r["principal"] == "stream" and r["role"] == "viewer" for r in refused)
    assert [s["principal"] for s in summaries] == ["stream"] and summaries[0]["codes"] == {E_FORBIDDEN: len(counted)}
    help_ = answer(console, viewer, {"cmd": "help"})
    assert {c["name"] for c in help_.data["commands"]} == set(VIEWER_COMMANDS)


def test_token_cli_issue_prints_the_token_alone_and_list_never_shows_tokens(state_dir, capsys) -> None:
    """`token issue` prints exactly one line (the token); `list` shows ids, roles and statuses only."""
    assert (
        main(
            [
                "token",
                "issue",
                "--role",
                "viewer",
                "--principal",
                "overlay",
                "--ttl",
                "2h",
                "--state-dir",
                str(state_dir),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    token = out.strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "overlay" and claims["role"] == "viewer" and claims["exp"] - claims["iat"] == 7200
    keys = json.loads((state_dir / "keys.json").read_text())
    assert (state_dir / "keys.json").stat().st_mode & 0o077 == 0 and keys["active"] in keys["keys"]
    assert main(["token", "list", "--json", "--state-dir", str(state_dir)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["sub"], r["role"], r["status"]) for r in listed] == [("overlay", "viewer", "active")]
    assert token not in json.dumps(listed)
    with pytest.raises(SystemExit):
        main(["token", "issue", "--role", "root", "--principal", "x", "--state-dir", str(state_dir)])
    assert (
        main(["token", "issue", "--role", "admin", "--principal", "x", "--ttl", "99d", "--state-dir", str(state_dir)])
        == 2
    )
    capsys.readouterr()
    assert main(["token", "revoke", "--state-dir", str(state_dir)]) == 2


def test_token_ttl_parsing() -> None:
    """Durations are whole seconds, minutes, hours or days."""
    assert [parse_ttl(t) for t in ("45s", "30m", "1h", "7d")] == [45, 1800, 3600, 7 * 86400]
    for bad in ("", "1w", "h", "-1h", "0m"):
        with pytest.raises(ValueError):
            parse_ttl(bad)


def test_retries_with_the_same_cmd_id_run_once(console, authority, state_dir) -> None:
    """A retried spawn with the same cmd_id returns the first answer and adds one agent, not two."""
    admin, _ = authority.issue("alice", "admin", 3600)
    payload = {"cmd": "spawn", "args": {"agent": "newbie"}, "cmd_id": "req-1"}
    first = console.submit(admin, payload)
    again_pending = console.submit(admin, payload)  # retried before the tick: the same pending answer
    assert again_pending is first
    console.sim.step()
    assert first.result().ok
    retry = answer(console, admin, payload)
    assert retry.ok and retry.duplicate and retry.data == first.result().data and retry.tick == first.result().tick
    assert console.sim.world.agents.alive.sum() == 9
    other, _ = authority.issue("bob", "admin", 3600)  # cmd_ids are per principal
    assert answer(console, other, {**payload, "args": {"agent": "other"}}).data["agent"] == "other"
    assert [r.get("duplicate") for r in audit_lines(state_dir)] == [True, False, True, False]  # pending retry first


def test_rate_limit_per_principal(authority, state_dir) -> None:
    """Past the burst a principal is refused with E_RATE_LIMITED; others are unaffected; tokens refill."""
    now = [0.0]
    console = ConsoleService(
        Simulation(seed=0),
        authority,
        AuditLog(state_dir / "audit.jsonl"),
        rate_limit=TokenBucket(per_second=1.0, burst=3, clock=lambda: now[0]),
    )
    alice, _ = authority.issue("alice", "viewer", 3600)
    bob, _ = authority.issue("bob", "viewer", 3600)
    futures = [console.submit(alice, {"cmd": "status"}) for _ in range(5)]
    assert [f.done() for f in futures] == [False, False, False, True, True]  # three queued, two refused
    assert [f.result(0).code for f in futures[3:]] == [E_RATE_LIMITED, E_RATE_LIMITED]
    assert not console.submit(bob, {"cmd": "status"}).done()  # bob has his own bucket: queued
    now[0] = 2.0
    assert not console.submit(alice, {"cmd": "status"}).done()
