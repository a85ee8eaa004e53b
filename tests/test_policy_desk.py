"""The live town's policy desk: the console's `policy` command, swaps at a tick boundary, live canaries, rollback."""

from __future__ import annotations

import io
import json
from pathlib import Path

import orjson
import pytest

from townlet.config.loader import load_config
from townlet.console import ConsoleService, TokenAuthority
from townlet.console.audit import AuditLog
from townlet.console.errors import E_CONFLICT, E_FORBIDDEN, E_INVALID_ARG, E_NOT_FOUND
from townlet.policy import shipped
from townlet.policy.checkpoint import load
from townlet.policy.driver import PolicyDriver
from townlet.sim import Simulation
from townlet.telemetry.publisher import TelemetryPublisher
from townlet.telemetry.transports import StdoutTransport
from townlet.training.live import LivePolicies, live_baseline
from townlet.training.registry import PolicyRegistry
from townlet.training.stability import Baseline
from townlet.world.events import EventKind
from training_support import tiny_checkpoint

CALM = Baseline(lateness=0.05, reward_mean=0.0, reward_std=0.0, windows=1)  # only a real collapse fires


def never_eats(path: Path) -> Path:
    """A learned policy that never chooses GetFed (its logit is pushed far down)."""
    import torch

    from townlet.policy.checkpoint import from_network, save
    from townlet.policy.networks import OptionPolicyNet
    from townlet.policy.options import Option

    template = load(tiny_checkpoint(path, seed=5))
    net = OptionPolicyNet(template.spec)
    with torch.no_grad():
        net.actor.weight.zero_()
        net.actor.bias.zero_()
        net.actor.bias[int(Option.GET_FED)] = -50.0
        net.actor.bias[int(Option.IDLE)] = 5.0
    return save(from_network(net, template.variant, template.config_id), path)


class Town:
    """A town with its console (admin alice, viewer bob), a registry whose release is scripted, and the desk."""

    def __init__(self, tmp_path: Path, overrides: tuple[str, ...] = ()) -> None:
        self.sim = Simulation(load_config(overrides=list(overrides)), seed=0)
        self.authority = TokenAuthority(tmp_path / "k.json", tmp_path / "r.json", tmp_path / "i.jsonl")
        self.audit_path = tmp_path / "audit.jsonl"
        self.console = ConsoleService(self.sim, self.authority, AuditLog(self.audit_path))
        self.registry = PolicyRegistry(tmp_path / "registry.sqlite")
        self.registry.register("scripted")
        self.registry.promote("scripted", "initial release")
        self.desk = LivePolicies(self.sim, self.registry, CALM)
        self.console.policies = self.desk
        self.admin = self.authority.issue("alice", "admin", 3600)[0]
        self.viewer = self.authority.issue("bob", "viewer", 3600)[0]
        self.events: list = []

    def policy(self, token: str | None = None, **args):
        """Run ``policy`` at the next tick boundary; keep that tick's events."""
        future = self.console.submit(token or self.admin, {"cmd": "policy", "args": args})
        self.events = self.sim.step().events
        return future.result(timeout=1)

    def audit(self) -> list[dict]:
        return [orjson.loads(line) for line in self.audit_path.read_bytes().splitlines()]


@pytest.fixture
def town(tmp_path: Path) -> Town:
    return Town(tmp_path)


def test_status_answers_the_driving_policy_and_since_when_to_a_viewer(town: Town) -> None:
    """op=status (a viewer may ask): scripted drives since tick 0, the release, no pin, every canary ok."""
    result = town.policy(town.viewer)
    assert result.ok, result
    assert result.data["policy"]["hash"] == "scripted" and result.data["policy"]["since"] == 0
    assert result.data["release"] == "scripted" and result.data["pinned"] is None
    assert set(result.data["canaries"]) == {"lateness_spike", "starvation", "option_thrash", "reward_collapse"}
    assert all(c["state"] == "ok" for c in result.data["canaries"].values())


def test_a_swap_takes_effect_at_the_tick_boundary_with_an_event_and_a_narration_line(town: Town) -> None:
    """op=swap ref=default: answered after the boundary it ran at; the next tick's decisions are the policy's."""
    town.sim.run(5)
    result = town.policy(op="swap", ref="default")
    assert result.ok, result
    assert result.data["policy"]["hash"] == shipped.default_hash() and result.data["previous"]["hash"] == "scripted"
    assert result.tick == 5 and result.data["policy"]["since"] == 5
    assert isinstance(town.sim.actor, PolicyDriver)
    kinds = {e.kind for e in town.events}
    assert EventKind.POLICY_CHANGED in kinds
    assert any(e.kind is EventKind.NARRATION and "now follows the default policy" in e.detail for e in town.events)
    assert town.policy(town.viewer).data["policy"]["hash"] == shipped.default_hash()
    assert town.registry.release.policy_hash == "scripted"  # a swap leaves the release alone


def test_possessed_agents_keep_obeying_their_admin_after_a_swap(town: Town) -> None:
    """An agent possessed before the swap carries on with its ordered option; the learned policy has the rest."""
    name = town.sim.world.agents.ids[0]
    town.console.submit(town.admin, {"cmd": "possess", "args": {"agent": name}})
    town.sim.step()
    town.console.submit(town.admin, {"cmd": "act", "args": {"agent": name, "option": "Sleep"}})
    town.sim.step()
    assert town.policy(op="swap", ref="default").ok
    for _ in range(40):
        town.sim.step()
    slot = town.sim.world.agents.slot_of[name]
    assert town.sim.actor.act(town.sim)[slot] == -1
    assert int(town.sim.world.agents.option[slot]) == 4  # Sleep, as ordered


def test_refusals_carry_the_stable_codes_and_are_all_audited(town: Town, tmp_path: Path) -> None:
    """Viewer swap E_FORBIDDEN, unknown ref E_NOT_FOUND, a path E_INVALID_ARG, a misfit E_CONFLICT naming it."""
    assert town.policy(town.viewer, op="swap", ref="default").code == E_FORBIDDEN
    assert town.policy(op="swap", ref="feedbeef").code == E_NOT_FOUND
    assert town.policy(op="swap", ref="../../etc/passwd").code == E_INVALID_ARG
    assert town.policy(op="swap").code == E_INVALID_ARG
    compact = town.registry.register(str(tiny_checkpoint(tmp_path / "compact.pt", variant="compact")))
    refused = town.policy(op="swap", ref=compact.policy_hash[:8])
    assert refused.code == E_CONFLICT and "variant: the policy reads compact" in refused.message
    assert town.sim.actor is None  # nothing changed
    assert town.policy(op="promote", ref=compact.policy_hash).code == E_CONFLICT
    assert town.registry.release.policy_hash == "scripted"
    lines = [r for r in town.audit() if r["cmd"] == "policy"]
    assert [r["code"] for r in lines] == [
        E_FORBIDDEN,
        E_NOT_FOUND,
        E_INVALID_ARG,
        E_INVALID_ARG,
        E_CONFLICT,
        E_CONFLICT,
    ]


def test_promote_makes_the_release_and_rollback_returns_to_the_one_before(town: Town) -> None:
    """op=promote ref=default records a release and drives; op=rollback goes back to scripted."""
    promoted = town.policy(op="promote", ref="default", reason="looks good")
    assert promoted.ok, promoted
    assert town.registry.release.policy_hash == shipped.default_hash()
    assert town.registry.decisions("promote")[-1].reason == "looks good"
    back = town.policy(op="rollback")
    assert back.ok and back.data["policy"]["hash"] == "scripted" and town.sim.actor is None
    assert town.registry.release.policy_hash == "scripted"
    assert town.policy(op="rollback").code == E_CONFLICT  # nothing before scripted


def test_the_agent_answer_and_telemetry_carry_the_policy_inspector(town: Town) -> None:
    """After a swap, decided agents have policy {hash, top (3, best first), value} in `agent` and telemetry."""
    from jsonschema import Draft202012Validator

    from townlet.telemetry.schema import published_schema

    stream = io.BytesIO()
    publisher = TelemetryPublisher(town.sim, transports=[StdoutTransport(stream=stream)]).attach()
    publisher.encoder.stability_source = town.desk.stability_section
    town.console.publisher = publisher
    town.policy(op="swap", ref="default")
    town.sim.run(300)
    publisher.close()
    name = next(
        n
        for n, s in zip(town.sim.world.agents.ids, town.sim.actor.learned.probs.sum(axis=1) > 0, strict=False)
        if n and s
    )
    answer = town.console.submit(town.viewer, {"cmd": "agent", "args": {"agent": name}})
    town.sim.step()
    policy = answer.result(timeout=1).data["policy"]
    assert policy["hash"] == shipped.default_hash() and len(policy["top"]) >= 3
    assert [p for _, p in policy["top"]] == sorted((p for _, p in policy["top"]), reverse=True)
    messages = [json.loads(line) for line in stream.getvalue().splitlines()]
    validator = Draft202012Validator(published_schema())
    for message in messages:
        validator.validate(message)
    last = messages[0]["state"]
    from townlet.telemetry.diff import apply_patch

    for message in messages[1:]:
        if message["type"] == "diff":
            apply_patch(last, message["patch"])
    assert last["policy"]["hash"] == shipped.default_hash() and last["policy"]["source"] == "default"
    assert any("policy" in a for a in last["agents"].values())
    assert last["stability"]["canaries"]["starvation"]["state"] == "ok" and last["stability"]["release"] == "scripted"


def test_a_release_that_never_eats_trips_starvation_and_is_rolled_back_within_one_window(
    town: Town, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A released policy that never eats fires starvation in the first window: pinned, rolled back, alerted."""
    caplog.set_level("INFO", logger="townlet")
    bad = town.registry.register(str(never_eats(tmp_path / "never_eats.pt")))
    assert town.policy(op="promote", ref=bad.policy_hash).ok
    window = town.sim.config.stability.window_ticks
    alerts = []
    for _ in range(window):
        alerts += [e for e in town.sim.step().events if e.kind is EventKind.ALERT]
    assert town.desk.monitor.reports and not town.desk.monitor.reports[0].passed
    assert "starvation" in {c.name for c in town.desk.monitor.reports[0].canaries}
    assert any(e.detail == f"rollback:{bad.policy_hash}->scripted" for e in alerts)
    assert any(e.detail == "canary:starvation" for e in alerts)
    assert town.sim.actor is None and town.registry.release.policy_hash == "scripted"
    assert town.registry.pinned is not None and "starvation" in town.registry.pinned.reason
    assert town.registry.decisions("rollback")[-1].previous == bad.policy_hash
    status = town.policy(town.viewer).data
    assert status["canaries"]["starvation"]["state"] == "fired" and status["pinned"]
    assert town.desk.stability_section()["rollbacks"] == 1
    (window,) = [r.context for r in caplog.records if getattr(r, "event", "") == "stability.window"]
    assert window["label"] == "live" and window["canaries"] and window["promotion_state"]["driving"] == bad.policy_hash
    (rollback,) = [r.context for r in caplog.records if getattr(r, "event", "") == "promotion.rollback"]
    assert rollback["previous"] == bad.policy_hash and rollback["promotion_state"]["release"] == "scripted"


def test_without_live_rollback_a_firing_canary_only_pins(tmp_path: Path) -> None:
    """promotion.live_rollback=false: the misbehaving release keeps driving, pinned."""
    town = Town(tmp_path, ("promotion.live_rollback=false",))
    bad = town.registry.register(str(never_eats(tmp_path / "never_eats.pt")))
    assert town.policy(op="promote", ref=bad.policy_hash).ok
    town.sim.run(town.sim.config.stability.window_ticks)
    assert town.registry.pinned is not None and town.registry.release.policy_hash == bad.policy_hash
    assert town.desk.driving()["hash"] == bad.policy_hash


def test_the_live_baseline_is_measured_once_and_cached(tmp_path: Path) -> None:
    """live_baseline writes the scripted windows' summary and reads it back next time."""
    loaded = load_config(overrides=["stability.window_ticks=100", "stability.baseline_windows=2"])
    first = live_baseline(loaded, 3, tmp_path)
    (cached,) = list(tmp_path.glob("stability-baseline-*.json"))
    assert json.loads(cached.read_text())["windows"] == 2
    assert live_baseline(loaded, 3, tmp_path) == first


def test_replay_re_applies_a_recorded_swap_and_reaches_the_same_hash(town: Town, tmp_path: Path) -> None:
    """A snapshot before a console swap, replayed with the audit log, ends where the live town did."""
    from townlet.cli.replay import read_inputs, replay
    from townlet.sim import snapshot

    town.sim.run(5)
    snapshot.write(town.sim, tmp_path / "before.snap")
    town.sim.run(5)
    assert town.policy(op="swap", ref="default").ok
    town.sim.run(49)
    result = replay(tmp_path / "before.snap", town.sim.tick - 5, read_inputs(town.audit_path), registry=town.registry)
    assert result["input_failures"] == [] and result["policy"]["hash"] == "scripted"
    assert result["to_tick"] == town.sim.tick and result["state_hash"] == town.sim.state_hash()
    assert town.registry.decisions()[-1].action == "promote"  # the replay wrote nothing to the registry


def test_status_shows_the_candidate_a_shadow_promotion_put_in_shadow(town: Town, tmp_path: Path) -> None:
    """`townlet promote shadow` on the same registry: status names the candidate until it is decided."""
    from townlet.training.promotion import Promotion

    ckpt = tiny_checkpoint(tmp_path / "cand.pt", seed=4)
    promotion = Promotion(town.registry, seed=0, baseline=CALM)
    record = promotion.propose(str(ckpt))
    town.desk.refresh()
    candidate = town.policy(town.viewer).data["candidate"]
    assert candidate["hash"] == record.policy_hash and candidate["release"] == "scripted"
    town.registry.reject(record.policy_hash, "not today")
    assert town.policy(town.viewer).data["candidate"] is None
