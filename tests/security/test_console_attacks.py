"""Hostile console clients in process: floods stay bounded in the audit, nobody locks anyone out, auth fails closed."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import jwt
import orjson
import pytest

from townlet.cli.main import main
from townlet.config.loader import load_config
from townlet.console import ConsoleService, TokenAuthority
from townlet.console.audit import AuditLog
from townlet.console.auth import RevocationsUnavailable
from townlet.console.errors import E_CONFLICT, E_INVALID_ARG, E_RATE_LIMITED, E_UNAUTHENTICATED
from townlet.console.limits import TokenBucket
from townlet.sim import Simulation

ARG = "x" * 60_000  # a 60 KB argument


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def authority(state: Path) -> TokenAuthority:
    return TokenAuthority(state / "keys.json", state / "revocations.json", state / "issued.jsonl", leeway_s=5)


def town(authority: TokenAuthority, state: Path, **limits) -> ConsoleService:
    """A town with the default per-principal and per-source limits (or ``limits``), auditing to ``state``."""
    cfg = load_config().config
    per = limits.pop("per", TokenBucket(cfg.console.rate_limit.per_second, cfg.console.rate_limit.burst))
    fail = limits.pop("fail", TokenBucket(cfg.server.auth_failures.per_second, cfg.server.auth_failures.burst))
    audit = AuditLog(state / "audit.jsonl", **limits)
    return ConsoleService(Simulation(seed=1), authority, audit, rate_limit=per, failures=fail)


def lines(state: Path, name: str = "audit.jsonl") -> list[dict]:
    return [orjson.loads(line) for line in (state / name).read_bytes().splitlines()]


def test_1000_refused_viewer_requests_with_60kb_arguments_add_at_most_200kb(authority, state) -> None:
    """Forbidden, unknown and reused-cmd_id requests with 60 KB arguments: bounded audit, the town ticks on."""
    console = town(authority, state)
    viewer, _ = authority.issue("stream", "viewer", 3600)
    start = console.sim.tick
    for i in range(1000):
        payload = [
            {"cmd": "narrate", "args": {"text": ARG}},
            {"cmd": "no_such", "args": {"place": ARG}},
            {"cmd": "agent", "args": {"agent": ARG}, "cmd_id": "same"},
        ][i % 3]
        result = console.submit(viewer, payload).result(0)
        assert not result.ok and len(result.message) <= 300 and len(result.cmd or "") <= 64
        if i % 50 == 0:
            console.sim.step()
    console.audit.close()
    size = (state / "audit.jsonl").stat().st_size
    assert size <= 200_000, size
    records = lines(state)
    assert sum(1 for r in records if not r.get("summary")) + sum(r.get("suppressed", 0) for r in records) == 1000
    assert all(len(json.dumps(r)) < 4000 for r in records)
    assert console.sim.tick == start + 20


def test_an_unauthenticated_flood_is_throttled_per_source_and_summarised(authority, state) -> None:
    """Bad tokens from one address hit 429 after the burst; another address and valid tokens are unaffected."""
    console = town(authority, state)
    admin, _ = authority.issue("alice", "admin", 3600)
    codes = [
        console.submit("bad.token.here", {"cmd": "status", "args": {"x": ARG}}, source="203.0.113.9").result(0).code
        for _ in range(300)
    ]
    assert codes[:20] == [E_UNAUTHENTICATED] * 20 and set(codes[25:]) == {E_RATE_LIMITED}
    assert (
        console.submit("bad.token.here", {"cmd": "status"}, source="198.51.100.1").result(0).code == E_UNAUTHENTICATED
    )
    ok = console.submit(admin, {"cmd": "status"}, source="203.0.113.9")
    console.sim.step()
    assert ok.result(1).ok  # the valid token from the throttled address is never locked out
    console.audit.close()
    assert (state / "audit.jsonl").stat().st_size < 30_000
    summary = [r for r in lines(state) if r.get("summary")]
    assert summary and summary[0]["source"] == "203.0.113.9" and summary[0]["suppressed"] == 300 - 10


def test_lockout_by_someone_elses_failures_never_blocks_a_valid_admin(authority, state) -> None:
    """Two bad requests a second from a shared address for 16 commands: every valid admin command passes."""
    now = [0.0]
    console = town(
        authority,
        state,
        fail=TokenBucket(1.0, 20, clock=lambda: now[0]),
        per=TokenBucket(20.0, 40, clock=lambda: now[0]),
    )
    admin, _ = authority.issue("alice", "admin", 3600)
    results = []
    for second in range(16):
        now[0] = float(second)
        for _ in range(2):
            console.submit("forged.token.x", {"cmd": "status"}, source="10.0.0.2")
        results.append(console.submit(admin, {"cmd": "status"}, source="10.0.0.2"))
        console.sim.step()
    assert all(f.result(1).ok for f in results)


def test_strings_are_bounded_and_never_echoed_whole(authority, state) -> None:
    """A 60 KB place name is refused with a short message; nothing in the answer or audit carries it whole."""
    console = town(authority, state)
    admin, _ = authority.issue("alice", "admin", 3600)
    for payload in (
        {"cmd": "blackout", "args": {"state": "on", "place": ARG}},
        {"cmd": "spawn", "args": {ARG: 1}},
        {"cmd": ARG},
    ):
        result = console.submit(admin, payload).result(0)
        assert result.code in (E_INVALID_ARG, "E_NOT_FOUND") and len(json.dumps(result.to_dict())) < 1000
    console.audit.close()
    assert ARG[:2000] not in (state / "audit.jsonl").read_text()


def test_a_reused_cmd_id_with_another_command_is_a_conflict(authority, state) -> None:
    """Same cmd_id, same command: the first answer again; same cmd_id, different command: E_CONFLICT."""
    console = town(authority, state)
    admin, _ = authority.issue("alice", "admin", 3600)
    first = console.submit(admin, {"cmd": "rain", "args": {"state": "start"}, "cmd_id": 7})
    console.sim.step()
    assert first.result(1).ok
    raining = console.sim.world.weather.state
    again = console.submit(admin, {"cmd": "rain", "args": {"state": "start"}, "cmd_id": 7}).result(0)
    assert again.ok and again.duplicate
    other = console.submit(admin, {"cmd": "rain", "args": {"state": "stop"}, "cmd_id": 7}).result(0)
    assert other.code == E_CONFLICT and "cmd_id" in other.message
    console.sim.step()
    assert console.sim.world.weather.state == raining  # the conflicting command never ran


def test_the_audit_log_rotates_under_its_cap_keeping_the_previous_file(tmp_path: Path) -> None:
    """Past max_bytes the log moves to AUDIT.1 (replacing the older one); both stay under the cap."""
    log = AuditLog(tmp_path / "audit.jsonl", fsync=False, max_bytes=20_000)
    for i in range(600):
        log.record(tick=i, principal="alice", cmd="status", args={}, ok=True, code=None, message="")
    log.close()
    assert log.rotations >= 2
    assert (tmp_path / "audit.jsonl.1").stat().st_size <= 20_000
    assert (tmp_path / "audit.jsonl").stat().st_size <= 20_000
    assert not (tmp_path / "audit.jsonl.2").exists()


@pytest.mark.parametrize("damage", ["delete", "corrupt"])
def test_a_missing_or_corrupt_revocation_list_refuses_every_token_and_alerts(authority, state, damage, caplog) -> None:
    """Deleting or garbling revocations.json never re-enables revoked tokens: every token fails until restored."""
    console = town(authority, state)
    admin, claims = authority.issue("alice", "admin", 3600)
    other, _ = authority.issue("bob", "admin", 3600)
    authority.revoke(claims["jti"])
    saved = (state / "revocations.json").read_bytes()
    if damage == "delete":
        (state / "revocations.json").unlink()
    else:
        (state / "revocations.json").write_bytes(b'{"tokens": ')
    with caplog.at_level(logging.ERROR, logger="townlet.console"):
        for token in (admin, other):
            result = console.submit(token, {"cmd": "status"}).result(0)
            assert result.code == E_UNAUTHENTICATED and "revocation list unavailable" in result.message
    assert any(getattr(r, "event", "") == "console.credentials_unavailable" for r in caplog.records)
    assert "revocation list" in console.health()["console"]["credentials"]
    console.sim.step()  # the town keeps ticking
    (state / "revocations.json").write_bytes(saved)
    assert console.submit(admin, {"cmd": "status"}).result(0).code == E_UNAUTHENTICATED  # still revoked
    assert not console.submit(other, {"cmd": "status"}).done()  # bob is accepted again


def test_serve_refuses_to_start_without_the_revocation_list(tmp_path: Path, capsys) -> None:
    """Once a revocation list existed, ``serve`` with it missing exits 2 with one line (fail closed)."""
    state = tmp_path / "state"
    TokenAuthority.from_config(load_config(overrides=[f"console.state_dir={state}"]).config.console).issue(
        "alice", "admin", 3600
    )
    (state / "revocations.json").unlink()
    code = main(["serve", "--port", "0", "--state-dir", str(state)])
    err = capsys.readouterr().err
    assert code == 2 and "revocation list" in err and "missing" in err and "Traceback" not in err


def test_claims_are_type_checked_and_future_tokens_refused(authority, state) -> None:
    """Validly signed tokens with a non-numeric iat, an infinite exp or a far-future iat are E_UNAUTHENTICATED."""
    console = town(authority, state)
    good, claims = authority.issue("alice", "admin", 3600)
    kid = jwt.get_unverified_header(good)["kid"]
    secret = authority.keys.secret(kid)
    now = int(time.time())
    cases = (
        {"iat": "yesterday"},
        {"iat": True},
        {"exp": float("inf")},
        {"iat": now + 10 * 365 * 86400},
        {"nbf": now + 86400},
        {"sub": "x" * 500},
    )
    for change in cases:
        token = jwt.encode({**claims, **change}, secret, algorithm="HS256", headers={"kid": kid})
        result = console.submit(token, {"cmd": "status"}).result(0)
        assert result.code == E_UNAUTHENTICATED, change
    assert console.counts["internal_errors"] == 0
    console.sim.step()


def test_applied_commands_are_audited_whole_for_replay(authority, state) -> None:
    """The longest arguments the schemas allow fit under the audit's truncation limit, so replay reads them."""
    console = town(authority, state)
    admin, _ = authority.issue("alice", "admin", 3600)
    payloads = [
        {"cmd": "narrate", "args": {"text": "n" * 280, "agent": "agent_1"}},
        {"cmd": "kill", "args": {"agent": "agent_2", "note": "k" * 200}},
        {
            "cmd": "spawn",
            "args": {
                "agent": "a" * 64,
                "home": "home_0",
                "needs": {"hunger": 0.5, "hygiene": 0.5, "energy": 0.5, "social": 0.5},
            },
        },
    ]
    futures = [console.submit(admin, p) for p in payloads]
    console.sim.step()
    assert all(f.result(1).ok for f in futures), [f.result(1) for f in futures]
    console.audit.close()
    audited = [r["args"] for r in lines(state) if r.get("ok")]
    for payload, args in zip(payloads, audited, strict=True):
        assert "truncated" not in args and all(args[k] == v for k, v in payload["args"].items())


def test_an_install_from_before_the_rule_gets_an_empty_list_once(authority, state) -> None:
    """Keys but never a revocation list (an older install): the first ensure creates it and its marker."""
    authority.keys.rotate()  # a key set written the old way: no list, no marker
    assert not (state / "revocations.json").exists()
    authority.ensure_revocation_list()
    assert (state / "revocations.json").exists() and (state / "revocations.json.required").exists()
    (state / "revocations.json").unlink()
    with pytest.raises(RevocationsUnavailable, match="existed before"):
        authority.ensure_revocation_list()
