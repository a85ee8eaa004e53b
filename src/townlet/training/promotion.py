"""Release vs shadow: a candidate policy earns promotion in a shadow town beside the live one, or is turned down.

The live town always runs the registry's *release* (every agent, newcomers included). A proposed candidate
runs the same config and seed in a *shadow* town stepped alongside; both are watched by a
:class:`~townlet.training.stability.StabilityMonitor`. Then:

- a shadow window that fires a canary turns the candidate down and **pins** the release (no promotions until
  ``townlet promote unpin``);
- after ``promotion.windows_to_promote`` (2) consecutive passing shadow windows the fixed-seed evaluation suite
  runs for candidate and release; if the candidate passes the A/B gate it is **promoted** (the live town
  switches to it at once), else it is turned down and the release pinned;
- a release window that fires a canary within ``promotion.probation_windows`` of a promotion **rolls back** to
  the release before; outside probation (or with nothing to roll back to) it pins the release.

Every step lands in the :class:`~townlet.training.registry.PolicyRegistry` with its reason and details, and
in the structured log (``promotion.*`` events).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from townlet.config.loader import load_config
from townlet.logs import log_event
from townlet.policy.compat import check
from townlet.training.evaluation import Policy, build_sim, evaluate, install, single_thread
from townlet.training.gate import gate_evaluations
from townlet.training.registry import BUILTINS, PolicyRecord, PolicyRegistry, RegistryError
from townlet.training.stability import Baseline, StabilityMonitor, WindowReport

LOG = logging.getLogger("townlet.promotion")


class Promotion:
    """The live town, its release, and at most one shadow candidate.

    Args:
        registry: Where releases and decisions are recorded (seeded with ``scripted`` as the first release).
        config: YAML config (the shipped town when None).
        overrides: ``--set`` style overrides.
        seed: Run seed of the live and shadow towns (the config's when None).
        baseline: Stability baseline (measured from the scripted routine when None).
        policies: In-process policies by registered name (hand-written or test policies without a checkpoint).
    """

    def __init__(
        self,
        registry: PolicyRegistry,
        config: str | Path | None = None,
        overrides: Iterable[str] = (),
        *,
        seed: int | None = None,
        baseline: Baseline | None = None,
        policies: Mapping[str, Policy] | None = None,
    ) -> None:
        self.config = config
        self.overrides = list(overrides)
        self.loaded = load_config(config, self.overrides)
        self.cfg = self.loaded.config.promotion
        self.greedy = self.loaded.config.evaluation.greedy
        self.seed = int(self.loaded.config.seed if seed is None else seed)
        self.registry = registry
        self.custom: dict[str, Policy] = dict(policies or {})
        release = registry.release
        if release is None:
            registry.register("scripted", reason="the built-in routine")
            release = registry.promote("scripted", reason="initial release: the scripted routine")
        self.baseline = baseline or Baseline.measure(self.loaded, self.seed)
        self.live = build_sim(self.loaded, self.seed, self.policy_of(release), self.greedy)
        self.release_monitor = StabilityMonitor(
            self.live, self.baseline, label="release", on_window=self._release_window, promotion_state=self.state
        )
        self.candidate: PolicyRecord | None = None
        self.shadow: Any = None
        self.shadow_monitor: StabilityMonitor | None = None
        self.promoted_window: int | None = None  # release window count when the current release came in
        self.outcomes: list[tuple[str, str, str]] = []  # (action, policy, reason)
        self.last_shadow_windows: list[dict[str, Any]] = []  # of the candidate decided last
        self._pending: list[tuple[str, WindowReport]] = []

    # -- policies -------------------------------------------------------------------------------------

    def policy_of(self, record: PolicyRecord) -> Policy:
        """What drives a town for a registered policy."""
        if record.policy_hash in self.custom:
            return self.custom[record.policy_hash]
        if record.meta.get("custom"):
            raise RegistryError(f"{record.policy_hash} is an in-process policy this process does not have")
        return self.registry.load(record)

    @property
    def release(self) -> PolicyRecord:
        """The current release."""
        record = self.registry.release
        assert record is not None
        return record

    def propose(self, policy: Policy, name: str | None = None) -> PolicyRecord:
        """Register a candidate and start its shadow town.

        Args:
            policy: A checkpoint path or :class:`~townlet.policy.checkpoint.Checkpoint`, ``scripted``/``random``,
                or an in-process policy (then ``name`` registers it).
            name: Registry name of an in-process policy.
        """
        pin = self.registry.pinned
        if pin is not None:
            raise RegistryError(f"the release is pinned ({pin.reason}); unpin it before proposing a candidate")
        if self.candidate is not None:
            raise RegistryError(f"{self.candidate.policy_hash} is already in the shadow town")
        tick = self.live.tick
        if name is not None:
            record = self.registry.register_custom(name, "candidate for the shadow town", tick)
            self.custom[name] = policy
        elif isinstance(policy, str) and policy in BUILTINS:
            record = self.registry.register(policy, "candidate for the shadow town", tick)
        else:
            from townlet.policy.checkpoint import Checkpoint, load

            checkpoint = policy if isinstance(policy, Checkpoint) else load(policy)
            check(checkpoint, self.live.world)
            path = None if isinstance(policy, Checkpoint) else policy
            record = self.registry.register(checkpoint if path is None else path, "candidate for the shadow town", tick)
            self.custom.setdefault(record.policy_hash, checkpoint)
        if record.policy_hash == self.release.policy_hash:
            raise RegistryError(f"{record.policy_hash} is the release already")
        self.registry.shadow(record.policy_hash, tick)
        self.candidate = record
        self.shadow = build_sim(self.loaded, self.seed, self.policy_of(record), self.greedy)
        self.shadow_monitor = StabilityMonitor(
            self.shadow,
            self.baseline,
            label="shadow",
            on_window=lambda r: self._pending.append(("shadow", r)),
            promotion_state=self.state,
        )
        log_event(
            LOG,
            "promotion.shadow",
            tick,
            candidate=record.policy_hash,
            release=self.release.policy_hash,
            promotion_state=self.state(),
        )
        return record

    # -- running --------------------------------------------------------------------------------------

    def step(self) -> None:
        """One tick of the live town (and of the shadow town), then any decision a closed window calls for."""
        self.live.step()
        if self.shadow is not None:
            self.shadow.step()
        while self._pending:
            kind, report = self._pending.pop(0)
            if kind == "release":
                self._judge_release(report)
            elif self.candidate is not None:
                self._judge_shadow(report)

    def run(self, ticks: int, until_decided: bool = False) -> None:
        """Step ``ticks`` times (or until the candidate is promoted or turned down, with ``until_decided``)."""
        with single_thread():
            for _ in range(ticks):
                self.step()
                if until_decided and self.candidate is None:
                    break

    def _release_window(self, report: WindowReport) -> None:
        self._pending.append(("release", report))

    def _judge_shadow(self, report: WindowReport) -> None:
        assert self.candidate is not None and self.shadow_monitor is not None
        if not report.passed:
            self._turn_down(f"shadow window {report.index}: {report.reason}", {"window": report.to_dict()})
            return
        if self.shadow_monitor.streak < self.cfg.windows_to_promote:
            return
        windows = [r.to_dict() for r in self.shadow_monitor.reports[-self.cfg.windows_to_promote :]]
        release, candidate = self.release, self.candidate
        kwargs: dict[str, Any] = {"stages": None}
        ev_release = evaluate(self.policy_of(release), self.config, self.overrides, **kwargs)
        ev_candidate = evaluate(self.policy_of(candidate), self.config, self.overrides, **kwargs)
        result = gate_evaluations(ev_release, ev_candidate, self.loaded.config.evaluation.gate)
        details = {
            "windows": windows,
            "gate": result.to_dict(),
            "release_scorecard": ev_release.scorecard,
            "candidate_scorecard": ev_candidate.scorecard,
        }
        if not result.passed:
            self._turn_down("evaluation suite: " + "; ".join(result.failures), details)
            return
        reason = f"{self.cfg.windows_to_promote} consecutive passing shadow windows and the evaluation suite"
        self.registry.promote(candidate.policy_hash, reason, self.live.tick, details)
        install(self.live, self.policy_of(candidate), self.greedy)
        self.promoted_window = len(self.release_monitor.reports)
        self.outcomes.append(("promote", candidate.policy_hash, reason))
        log_event(
            LOG,
            "promotion.promote",
            self.live.tick,
            policy=candidate.policy_hash,
            previous=release.policy_hash,
            reason=reason,
            promotion_state=self.state(),
        )
        self._drop_shadow()

    def _turn_down(self, reason: str, details: dict[str, Any]) -> None:
        assert self.candidate is not None
        tick = self.live.tick
        self.registry.reject(self.candidate.policy_hash, reason, tick, details)
        pin_reason = f"candidate {self.candidate.policy_hash} regressed: {reason}"
        self.registry.pin(pin_reason, tick, details)
        self.outcomes.append(("reject", self.candidate.policy_hash, reason))
        self.outcomes.append(("pin", self.release.policy_hash, pin_reason))
        log_event(
            LOG,
            "promotion.pin",
            tick,
            logging.WARNING,
            candidate=self.candidate.policy_hash,
            release=self.release.policy_hash,
            reason=reason,
            promotion_state=self.state(),
        )
        self._drop_shadow()

    def _drop_shadow(self) -> None:
        if self.shadow_monitor is not None:
            self.last_shadow_windows = [r.to_dict() for r in self.shadow_monitor.reports]
        self.candidate = None
        self.shadow = None
        self.shadow_monitor = None

    def _judge_release(self, report: WindowReport) -> None:
        if report.passed:
            return
        tick = self.live.tick
        reason = f"release window {report.index}: {report.reason}"
        on_probation = (
            self.promoted_window is not None and report.index < self.promoted_window + self.cfg.probation_windows
        )
        if on_probation and len(self.registry.releases()) >= 2:
            bad = self.release.policy_hash
            record = self.registry.rollback(reason, tick, {"window": report.to_dict()})
            install(self.live, self.policy_of(record), self.greedy)
            self.promoted_window = None
            self.outcomes.append(("rollback", record.policy_hash, reason))
            log_event(
                LOG,
                "promotion.rollback",
                tick,
                logging.WARNING,
                policy=record.policy_hash,
                previous=bad,
                reason=reason,
                promotion_state=self.state(),
            )
        elif self.registry.pinned is None:
            self.registry.pin(reason, tick, {"window": report.to_dict()})
            self.outcomes.append(("pin", self.release.policy_hash, reason))
            log_event(
                LOG,
                "promotion.pin",
                tick,
                logging.WARNING,
                release=self.release.policy_hash,
                reason=reason,
                promotion_state=self.state(),
            )

    def state(self) -> dict[str, Any]:
        """``promotion_state`` of the log lines: release, pin, the candidate in shadow and its passing streak."""
        streak = self.shadow_monitor.streak if self.shadow_monitor is not None else 0
        return self.registry.state(
            candidate=self.candidate.policy_hash if self.candidate else None, shadow_streak=streak
        )

    def status(self) -> dict[str, Any]:
        """Where things stand: release, candidate, pin, windows, and what happened."""
        pin = self.registry.pinned
        return {
            "tick": self.live.tick,
            "release": self.release.policy_hash,
            "candidate": self.candidate.policy_hash if self.candidate else None,
            "pinned": pin.reason if pin else None,
            "release_windows": [r.to_dict() for r in self.release_monitor.reports],
            "shadow_windows": (
                [r.to_dict() for r in self.shadow_monitor.reports] if self.shadow_monitor else self.last_shadow_windows
            ),
            "outcomes": [{"action": a, "policy": p, "reason": r} for a, p, r in self.outcomes],
        }
