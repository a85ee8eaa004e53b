"""Stability and release: rolling windows and canaries, the SQLite policy registry, shadow promotion and pins."""

from __future__ import annotations

import json

import numpy as np
import pytest

from townlet.cli.main import main
from townlet.config import load_config
from townlet.config.models import StabilityConfig
from townlet.policy.options import Option
from townlet.training.evaluation import WindowStats, build_sim
from townlet.training.promotion import Promotion
from townlet.training.registry import PolicyRegistry, RegistryError
from townlet.training.stability import Baseline, StabilityMonitor, check
from townlet.world.events import EventKind
from training_support import late_riser, steady, tiny_checkpoint

FAST = ["stability.window_ticks=500", "evaluation.seeds=[5]", "evaluation.days=0.5", "evaluation.stages=[M0]"]
BASELINE = Baseline(lateness=0.0625, reward_mean=0.009, reward_std=0.001, windows=3)


def normal(**changes) -> WindowStats:
    """A window like the scripted routine's: 8 arrivals, 1 late, 30 option starts, healthy rewards."""
    stats = WindowStats(
        ticks=1000,
        agent_ticks=8000,
        need_ok_ticks=7900,
        arrivals=8,
        late=1,
        option_starts=30,
        switches=4,
        thrash=1,
        reward_sum=72.0,
    )
    for key, value in changes.items():
        setattr(stats, key, value)
    return stats


class Thrasher:
    """An actor that flips every agent between Idle and GetClean just after each commitment window."""

    def __init__(self, every: int) -> None:
        self.every = every

    def act(self, sim) -> np.ndarray:
        """Idle or GetClean, alternating every ``every`` ticks."""
        option = Option.IDLE if (sim.tick // self.every) % 2 == 0 else Option.GET_CLEAN
        return np.where(sim.world.agents.alive, int(option), -1).astype(np.int64)


# -- canaries ------------------------------------------------------------------------------------------------


def test_a_normal_window_fires_no_canary() -> None:
    """A window like the baseline passes."""
    assert check(normal(), BASELINE, StabilityConfig()) == []


def test_each_canary_fires_on_its_own_condition() -> None:
    """Lateness over 2x baseline, any collapse, >25% thrash, and a reward collapse each fire their canary."""
    cfg = StabilityConfig()
    fired = {c.name: c for c in check(normal(late=2), BASELINE, cfg)}
    assert set(fired) == {"lateness_spike"} and fired["lateness_spike"].value == 0.25
    assert fired["lateness_spike"].limit == pytest.approx(2 * 0.0625)
    assert [c.name for c in check(normal(collapses=1), BASELINE, cfg)] == ["starvation"]
    assert [c.name for c in check(normal(thrash=8), BASELINE, cfg)] == ["option_thrash"]
    assert [c.name for c in check(normal(reward_sum=8.0), BASELINE, cfg)] == ["reward_collapse"]


def test_canaries_need_enough_evidence() -> None:
    """Lateness is judged only with min_arrivals arrivals, thrash only with min_option_starts starts."""
    cfg = StabilityConfig()
    assert check(normal(arrivals=2, late=2), BASELINE, cfg) == []
    assert check(normal(option_starts=5, thrash=5), BASELINE, cfg) == []


def test_baseline_of_the_scripted_routine() -> None:
    """The baseline measures the routine's lateness and reward over its windows."""
    baseline = Baseline.measure(load_config(overrides=["stability.window_ticks=500"]), seed=3, windows=2)
    assert baseline.windows == 2 and 0.0 <= baseline.lateness < 0.3 and baseline.reward_mean > 0


def test_monitor_closes_rolling_windows_and_alerts_on_a_canary() -> None:
    """Windows close every window_ticks; a canary becomes an alert event in the town and the report says why."""
    loaded = load_config(overrides=["stability.window_ticks=500"])
    sim = build_sim(loaded, 4, late_riser())
    monitor = StabilityMonitor(sim, BASELINE, label="test")
    alerts = []
    for _ in range(1000):
        alerts += [e for e in sim.step().events if e.kind is EventKind.ALERT]
    assert [(r.start, r.end) for r in monitor.reports] == [(0, 499), (500, 999)]
    first = monitor.reports[0]
    assert not first.passed and "lateness spike" in first.reason and first.kpis["lateness"] > 0.5
    assert [a.detail for a in alerts] == ["canary:lateness_spike"]
    assert monitor.reports[1].passed and monitor.streak == 1


def test_option_thrash_is_caught_in_a_real_town() -> None:
    """A policy that switches options right after every commitment window trips the thrash canary."""
    loaded = load_config(overrides=["stability.window_ticks=300"])
    sim = build_sim(loaded, 1, Thrasher(every=loaded.config.options.commitment_window + 1))
    monitor = StabilityMonitor(sim, BASELINE)
    for _ in range(300):
        sim.step()
    assert "option_thrash" in [c.name for c in monitor.reports[0].canaries]
    assert monitor.reports[0].kpis["option_thrash_rate"] > 0.25


# -- registry --------------------------------------------------------------------------------------------------


def test_registry_records_candidates_releases_rollbacks_and_reasons(tmp_path) -> None:
    """Register, promote twice, roll back: statuses, the release stack and every reason survive a reopen."""
    a = tiny_checkpoint(tmp_path / "a.pt", seed=1)
    b = tiny_checkpoint(tmp_path / "b.pt", seed=2)
    db = tmp_path / "reg.sqlite"
    with PolicyRegistry(db) as reg:
        ra = reg.register(a)
        rb = reg.register(b, reason="trained overnight")
        assert reg.register(a) == ra, "registering again returns the record"
        assert ra.status == "candidate" and ra.path == str(a.resolve()) and ra.variant == "hybrid"
        assert reg.release is None
        reg.promote(ra.policy_hash[:6], "first release", tick=10)
        reg.promote(b.as_posix(), "better attendance", tick=20)
        with pytest.raises(RegistryError, match="already the release"):
            reg.promote(rb.policy_hash, "again")
    with PolicyRegistry(db) as reg:
        assert reg.release.policy_hash == rb.policy_hash
        assert reg.get(ra.policy_hash).status == "retired"
        back = reg.rollback("late arrivals", tick=30)
        assert back.policy_hash == ra.policy_hash and reg.release.policy_hash == ra.policy_hash
        assert reg.get(rb.policy_hash).status == "rejected"
        log = [(d.action, d.policy_hash, d.previous, d.reason, d.tick) for d in reg.decisions()]
        assert log == [
            ("register", ra.policy_hash, None, "registered", None),
            ("register", rb.policy_hash, None, "trained overnight", None),
            ("promote", ra.policy_hash, None, "first release", 10),
            ("promote", rb.policy_hash, ra.policy_hash, "better attendance", 20),
            ("rollback", ra.policy_hash, rb.policy_hash, "late arrivals", 30),
        ]
        with pytest.raises(RegistryError, match="no earlier release"):
            reg.rollback("nothing before")
        assert reg.load(reg.release).policy_hash == ra.policy_hash


def test_a_pin_refuses_promotions_until_unpinned(tmp_path) -> None:
    """While pinned, promote is refused (unless forced); unpin lifts it; both are in the log."""
    with PolicyRegistry(tmp_path / "r.sqlite") as reg:
        reg.register("scripted")
        reg.register("random")
        reg.promote("scripted", "initial")
        reg.pin("lateness spike in the shadow")
        assert reg.pinned.reason == "lateness spike in the shadow"
        with pytest.raises(RegistryError, match="pinned"):
            reg.promote("random", "try")
        reg.unpin("looked into it")
        assert reg.pinned is None
        reg.promote("random", "now allowed")
        assert [d.action for d in reg.decisions()][-3:] == ["pin", "unpin", "promote"]


def test_registry_refuses_a_checkpoint_that_changed_on_disk(tmp_path) -> None:
    """Loading a registered policy checks that the file still holds the registered weights."""
    path = tiny_checkpoint(tmp_path / "p.pt", seed=1)
    with PolicyRegistry(":memory:") as reg:
        record = reg.register(path)
        tiny_checkpoint(path, seed=2)
        with pytest.raises(RegistryError, match="now holds policy"):
            reg.load(record)
        with pytest.raises(RegistryError, match="no registered policy"):
            reg.resolve("ffff")


# -- promotion ------------------------------------------------------------------------------------------------


def test_a_synthetic_lateness_spike_pins_the_release() -> None:
    """A shadow candidate whose agents arrive late trips the lateness canary: rejected, release pinned, recorded."""
    with PolicyRegistry(":memory:") as reg:
        promotion = Promotion(reg, None, FAST, seed=3, baseline=BASELINE)
        promotion.propose(late_riser(), name="late-riser")
        promotion.run(500)
        assert promotion.candidate is None and promotion.shadow is None
        assert reg.release.policy_hash == "scripted", "the release stays"
        pin = reg.pinned
        assert pin is not None and "candidate late-riser regressed" in pin.reason and "lateness spike" in pin.reason
        assert reg.get("late-riser").status == "rejected"
        actions = [(d.action, d.policy_hash) for d in reg.decisions()]
        assert actions == [
            ("register", "scripted"),
            ("promote", "scripted"),
            ("register", "late-riser"),
            ("shadow", "late-riser"),
            ("reject", "late-riser"),
            ("pin", "scripted"),
        ]
        assert reg.decisions("reject")[0].details["window"]["canaries"][0]["name"] == "lateness_spike"
        with pytest.raises(RegistryError, match="pinned"):
            promotion.propose(steady, name="steady")


def test_two_passing_windows_and_the_suite_promote_the_candidate() -> None:
    """A well-behaved candidate passes two shadow windows and the fixed-seed suite: promoted, live town switched."""
    with PolicyRegistry(":memory:") as reg:
        promotion = Promotion(reg, None, FAST, seed=3, baseline=BASELINE)
        promotion.propose(steady, name="steady")
        promotion.run(500)
        assert promotion.candidate is not None, "one passing window is not enough"
        promotion.run(500)
        assert promotion.candidate is None and reg.release.policy_hash == "steady"
        decision = reg.decisions("promote")[-1]
        assert decision.previous == "scripted" and "2 consecutive passing shadow windows" in decision.reason
        assert len(decision.details["windows"]) == 2 and all(w["passed"] for w in decision.details["windows"])
        assert decision.details["gate"]["passed"] and "attendance" in decision.details["candidate_scorecard"]
        assert reg.get("scripted").status == "retired"
        assert promotion.status()["outcomes"][-1]["action"] == "promote"


def test_a_release_regressing_on_probation_is_rolled_back() -> None:
    """A candidate that turns late only after its promotion fails a live window on probation: rolled back."""
    with PolicyRegistry(":memory:") as reg:
        promotion = Promotion(reg, None, FAST, seed=3, baseline=BASELINE)
        promotion.propose(late_riser(after_tick=1000), name="sleeper")
        promotion.run(1000)
        assert reg.release.policy_hash == "sleeper"
        promotion.run(1000)
        assert reg.release.policy_hash == "scripted"
        rollback = reg.decisions("rollback")[-1]
        assert rollback.previous == "sleeper" and "lateness spike" in rollback.reason
        assert reg.get("sleeper").status == "rejected"
        assert promotion.status()["outcomes"][-1]["action"] == "rollback"


def test_live_spawns_use_the_release_policy(tmp_path) -> None:
    """With a learned release, the live town's newcomers are driven by it like everybody else."""
    path = tiny_checkpoint(tmp_path / "p.pt")
    with PolicyRegistry(":memory:") as reg:
        reg.register("scripted")
        reg.promote("scripted", "initial")
        record = reg.register(path)
        reg.promote(record.policy_hash, "by hand")
        promotion = Promotion(reg, None, [*FAST, "features.lifecycle=on"], seed=3, baseline=BASELINE)
        live = promotion.live
        assert live.actor.policy_hash == record.policy_hash
        live.lifecycle.exit(2, "console")
        for _ in range(25):
            live.step()
        newcomer = [s for s in live.world.agents.slots() if live.world.agents.ids[s] == "agent_8"]
        assert newcomer, "a newcomer arrived"
        assert live.actor.probs[newcomer[0]].sum() == pytest.approx(1.0, abs=1e-5)


def test_promote_commands_against_a_registry_file(tmp_path, capsys) -> None:
    """The promote command registers, promotes, rolls back, pins and lists against one SQLite file."""
    db = str(tmp_path / "reg.sqlite")
    path = tiny_checkpoint(tmp_path / "p.pt")

    def run(*args: str) -> dict:
        assert main(["promote", *args, "--registry", db, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    assert run("register", "scripted")["status"] == "candidate"
    record = run("register", str(path))
    run("promote", "scripted", "--reason", "initial")
    assert run("promote", record["policy_hash"][:8], "--reason", "trained")["status"] == "release"
    assert run("rollback", "--reason", "late")["policy_hash"] == "scripted"
    run("pin", "--reason", "investigating")
    listing = run("list")
    assert listing["release"] == "scripted" and listing["pinned"] == "investigating"
    assert {p["policy_hash"] for p in listing["policies"]} == {"scripted", record["policy_hash"]}
    log = run("log")
    assert [d["action"] for d in log] == ["register", "register", "promote", "promote", "rollback", "pin"]
    assert main(["promote", "promote", "random", "--reason", "x", "--registry", db]) == 2
    assert "no registered policy" in capsys.readouterr().err


def test_promote_shadow_command_pins_on_a_failing_candidate(tmp_path, capsys) -> None:
    """The shadow command runs an untrained checkpoint beside the release; it fails its window and is turned down."""
    db = str(tmp_path / "reg.sqlite")
    path = tiny_checkpoint(tmp_path / "p.pt")
    code = main(
        [
            "promote",
            "shadow",
            str(path),
            "--registry",
            db,
            "--windows",
            "2",
            "--json",
            *sum((["--set", o] for o in [*FAST, "stability.baseline_windows=1"]), []),
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and not out["promoted"] and out["release"] == "scripted"
    assert out["pinned"] and out["outcomes"][0]["action"] == "reject"
