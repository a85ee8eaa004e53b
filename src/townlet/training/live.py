"""The live town's policy desk: who drives, console swaps, promotions and rollbacks, and the live canaries.

:class:`LivePolicies` sits beside a running town (``townlet serve``) and is what the console's ``policy``
command talks to (:mod:`townlet.console.policy`). It

- knows the driving policy and since which tick (:func:`~townlet.training.policies.describe`);
- swaps it (``op=swap``), promotes a policy to the registry's release and lets it drive (``op=promote``)
  or rolls the release back (``op=rollback``); each change is checked for fit first
  (:mod:`townlet.policy.compat`), happens at the tick boundary the command runs at, emits a
  ``policy_changed`` event and a narration line, and is logged (``promotion.*`` with ``promotion_state``);
- runs the SPEC 15 canaries on the live town's own windows (a :class:`StabilityMonitor`): a window that
  fires one while the registry's release drives **pins** the release and, with ``promotion.live_rollback``,
  **rolls back** to the release before (a policy swapped in by hand goes back to the release instead), with
  an ``alert`` event (``detail`` ``rollback:<bad>-><good>``). The canaries' state is in telemetry's
  ``stability`` section, ``/healthz`` and the ``health`` command.

A rollback happens when the first window after the misbehaviour closes: within one window of the policy
taking over when it misbehaves at once (a policy that never eats starves its agents about 600 ticks in).
"""

from __future__ import annotations

import json
import logging
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import Any

from townlet.config.loader import LoadedConfig
from townlet.files import write_atomic
from townlet.logs import log_event
from townlet.policy.checkpoint import CheckpointError
from townlet.sim import sidecars
from townlet.sim.simulation import Simulation
from townlet.training.evaluation import WindowStats
from townlet.training.policies import PolicyChoice, builtin, describe, install, reinstate, resolve
from townlet.training.registry import BUILTINS, PolicyRecord, PolicyRegistry, RegistryError
from townlet.training.stability import CANARIES, Baseline, Canary, StabilityMonitor, WindowReport
from townlet.world.events import EventKind

LOG = logging.getLogger("townlet.promotion")


def _report(saved: dict[str, Any]) -> WindowReport:
    """A window report from its :meth:`WindowReport.to_dict` form."""
    fields = {k: v for k, v in saved.items() if k != "passed"}
    fields["canaries"] = [Canary(**c) for c in fields.get("canaries", [])]
    return WindowReport(**fields)


def baseline_file(loaded: LoadedConfig, seed: int, cache_dir: str | Path | None = None) -> Path:
    """Where :func:`live_baseline` caches the baseline of a config and seed."""
    cfg = loaded.config.stability
    directory = Path(cache_dir or cfg.baseline_cache).expanduser()
    return directory / f"stability-baseline-{loaded.config_id}-{seed}-{cfg.baseline_windows}x{cfg.window_ticks}.json"


def live_baseline(loaded: LoadedConfig, seed: int, cache_dir: str | Path | None = None) -> Baseline:
    """The scripted routine's windows on this config and seed (:meth:`Baseline.measure`), cached on disk.

    The cache is one JSON file per config_id and seed in ``cache_dir`` (``stability.baseline_cache`` by
    default), so a restart does not measure again.
    """
    file = baseline_file(loaded, seed, cache_dir)
    directory = file.parent
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        return Baseline(
            float(data["lateness"]), float(data["reward_mean"]), float(data["reward_std"]), int(data["windows"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        pass
    baseline = Baseline.measure(loaded, seed)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        write_atomic(file, json.dumps(baseline.__dict__).encode())
    except OSError as exc:  # a read-only state directory: measure again next time
        log_event(LOG, "stability.baseline_not_cached", None, logging.WARNING, path=str(file), error=str(exc))
    return baseline


class LivePolicies:
    """The policy desk of one live town.

    Args:
        sim: The town (its tick thread calls every method, between or at tick boundaries).
        registry: The policy registry (None: swaps only, no releases to promote or roll back).
        baseline: What normal looks like for the canaries (see :func:`live_baseline`).
        rollback: Roll back on a firing canary (default ``promotion.live_rollback``); else only pin.
        monitor: Run the live canaries (False: console changes only, as ``townlet replay`` re-applies them).

    Attributes:
        monitor: The live stability monitor.
        changes: The last few policy changes, newest last (``status``).
    """

    def __init__(
        self,
        sim: Simulation,
        registry: PolicyRegistry | None,
        baseline: Baseline | None,
        rollback: bool | None = None,
        monitor: bool = True,
    ) -> None:
        self.sim = sim
        self.registry = registry
        self.cfg = sim.config.promotion
        self.rollback_on_canary = self.cfg.live_rollback if rollback is None else rollback
        self.since = sim.tick  # when a built-in policy took over (a learned one keeps its own)
        self.changes: deque[dict[str, Any]] = deque(maxlen=10)
        self.canaries: dict[str, dict[str, Any]] = {name: {"state": "ok", "fired": 0} for name in CANARIES}
        self.windows_passed = 0
        self.rollbacks = 0
        self._state: dict[str, Any] = {}
        self._section: dict[str, Any] = {}
        self.refresh()
        self.monitor: StabilityMonitor | None = None
        if monitor:
            assert baseline is not None, "the live canaries need a baseline"
            self.monitor = StabilityMonitor(
                sim, baseline, label="live", on_window=self._window, promotion_state=self.promotion_state
            )
            sidecars.attach(sim, "stability", self)  # the open window and the canaries travel in snapshots

    # -- reading ----------------------------------------------------------------------------------

    def driving(self) -> dict[str, Any]:
        """The driving policy: ``{hash, name, source, kind, since, ...}``."""
        out = describe(self.sim)
        out.setdefault("since", self.since)
        return out

    def release(self) -> PolicyRecord | None:
        """The registry's release (None without a registry or before the first promotion)."""
        return self.registry.release if self.registry is not None else None

    def refresh(self) -> None:
        """Read the registry again (on the tick thread, after each change and each closed window).

        Another process (``townlet promote``) may have promoted or pinned meanwhile.
        """
        driving = self.driving()["hash"]
        if self.registry is None:
            state = {"release": None, "releases": 0, "pinned": None, "driving": driving, "registry": None}
        else:
            state = self.registry.state(driving=driving, registry=self.registry.path)
        self._state = state
        section = {
            "canaries": self.canary_states(),
            "policy": driving,
            "release": state["release"],
            "pinned": state["pinned"],
            "rollbacks": self.rollbacks,
        }
        self._section = {k: v for k, v in section.items() if v is not None}  # telemetry state holds no nulls

    def promotion_state(self) -> dict[str, Any]:
        """``promotion_state`` of the log lines: the release, a pin, and the policy driving now (as last read)."""
        return dict(self._state)

    def status(self) -> dict[str, Any]:
        """``policy op=status``: driving policy and since when, release, candidate in shadow, pin, canaries."""
        state = self.promotion_state()
        return {
            "policy": self.driving(),
            "release": state["release"],
            "pinned": state["pinned"],
            "candidate": self.candidate(),
            "registry": state.get("registry"),
            "canaries": self.canary_states(),
            "windows": len(self.monitor.reports) if self.monitor else 0,
            "window_ticks": self.sim.config.stability.window_ticks,
            "rollback_on_canary": self.rollback_on_canary,
            "changes": list(self.changes),
        }

    def candidate(self) -> dict[str, Any] | None:
        """The candidate in a shadow town (``townlet promote shadow`` on this registry): hash, since when, or None."""
        shadow = self.registry.in_shadow() if self.registry is not None else None
        return None if shadow is None else {"hash": shadow.policy_hash, "since": shadow.at, "release": shadow.previous}

    def canary_states(self) -> dict[str, dict[str, Any]]:
        """Per canary: ``state`` (ok or fired, as of the last closed window), times ``fired``, last value and limit."""
        return {name: dict(state) for name, state in self.canaries.items()}

    def stability_section(self) -> dict[str, Any]:
        """What telemetry's ``stability`` section adds: the canaries and the promotion state.

        The same object until something changes, so a tick's diff carries nothing of it.
        """
        return self._section

    # -- snapshots ----------------------------------------------------------------------------------

    _DESK = ("canaries", "windows_passed", "rollbacks", "changes")
    _METER = ("running", "started", "span_max", "hired_at", "spells")

    def sidecar_state(self) -> dict[str, Any]:
        """The live canaries for a snapshot: the monitor's open and closed windows, the canaries' record.

        Windows are plain dicts (a snapshot reader need not load this module to decode them).
        """
        assert self.monitor is not None, "attached only with a monitor"
        meter = self.monitor.meter
        return {
            **sidecars.capture_fields(self, self._DESK),
            "since": self.since,
            "policy": self.driving()["hash"],
            "reports": [report.to_dict() for report in self.monitor.reports],
            "meter": sidecars.capture_fields(meter, self._METER),
            "spans": [asdict(span) for span in meter.spans],
            "current": asdict(meter.current),
        }

    def restore_sidecar(self, state: dict[str, Any]) -> None:
        """Continue the windows a snapshot recorded (``since`` too, when the same policy still drives).

        Raises:
            ValueError: state of another shape (windows of another length, another population's arrays).
        """
        assert self.monitor is not None, "attached only with a monitor"
        state = dict(state)
        meter, since, policy = state.pop("meter", None), state.pop("since", None), state.pop("policy", None)
        try:
            reports = [_report(r) for r in state.pop("reports")]
            spans = [WindowStats(**span) for span in state.pop("spans")]
            current = WindowStats(**state.pop("current"))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"stability windows do not fit this Townlet ({exc})") from None
        if type(since) is not int or not isinstance(policy, str):
            raise ValueError("stability.since and stability.policy must be a tick and a policy hash")
        if set(state.get("canaries") or {}) != set(CANARIES):
            raise ValueError(f"stability.canaries must name {', '.join(CANARIES)}")
        sidecars.check_fields(self.monitor.meter, meter, self._METER, "stability.meter")
        sidecars.check_fields(self, state, self._DESK, "stability")
        sidecars.restore_fields(self.monitor.meter, meter, self._METER)
        sidecars.restore_fields(self, state, self._DESK)
        self.monitor.meter.spans, self.monitor.meter.current = spans, current
        self.monitor.reports = reports
        if policy == self.driving()["hash"]:
            self.since = since
        self.refresh()

    # -- changing who drives ----------------------------------------------------------------------

    def swap(self, ref: str, who: str) -> dict[str, Any]:
        """``policy op=swap``: ``ref`` drives from now on (the registry's release does not change)."""
        choice = resolve(ref, self.registry, paths=False)
        return self._switch(choice, f"swapped in by {who}", "swap")

    def promote(self, ref: str, who: str, reason: str) -> dict[str, Any]:
        """``policy op=promote``: make ``ref`` the registry's release and let it drive."""
        registry = self._registry()
        choice = resolve(ref, registry, paths=False)
        self._check(choice)
        if choice.kind == "learned":
            assert choice.checkpoint is not None
            registry.register(choice.checkpoint, f"registered to be promoted by {who}", self.sim.tick, path=choice.path)
        else:
            registry.register(choice.policy_hash, f"registered to be promoted by {who}", self.sim.tick)
        registry.promote(choice.policy_hash, reason, self.sim.tick, {"by": who})
        return self._switch(choice, f"promoted by {who}", "promote")

    def rollback(self, who: str, reason: str) -> dict[str, Any]:
        """``policy op=rollback``: back to the release before the current one, which drives from now on."""
        registry = self._registry()
        bad, good = self._previous_release(registry)
        registry.rollback(reason, self.sim.tick, {"by": who})
        return self._switch(good, f"rolled back by {who} (from {bad})", "rollback")

    def _previous_release(self, registry: PolicyRegistry) -> tuple[str, PolicyChoice]:
        """The release now and the one before it, found and checked for fit before the registry records anything."""
        stack = registry.releases()
        if len(stack) < 2:
            raise RegistryError("no earlier release to roll back to")
        record = registry.get(stack[-2])
        assert record is not None
        good = self._choice_of(record, "release")
        self._check(good)
        return stack[-1], good

    def reinstate_recorded(self) -> dict[str, Any]:
        """After the console loaded a snapshot into the town: the policy it records drives again."""
        choice = reinstate(self.sim, None, self.registry)
        self.since = self.sim.tick
        return choice.to_dict()

    def _registry(self) -> PolicyRegistry:
        if self.registry is None:
            raise RegistryError("this town has no policy registry (promotion.registry)")
        return self.registry

    def _choice_of(self, record: PolicyRecord, source: str) -> PolicyChoice:
        if record.policy_hash in BUILTINS:
            return builtin(record.policy_hash, source)
        return resolve(record.policy_hash, self.registry, paths=False)

    def _check(self, choice: PolicyChoice) -> None:
        from townlet.policy.compat import check

        if choice.checkpoint is not None:
            check(choice.checkpoint, self.sim.world)

    def _switch(self, choice: PolicyChoice, why: str, action: str) -> dict[str, Any]:
        sim, w = self.sim, self.sim.world
        before = self.driving()
        install(sim, choice)  # checks that it fits before anything changes
        self.since = sim.tick
        now = self.driving()
        change = {
            "tick": int(sim.tick),
            "action": action,
            "policy": now["hash"],
            "name": now["name"],
            "previous": before["hash"],
            "why": why,
        }
        self.changes.append(change)
        self.refresh()
        w.emit(EventKind.POLICY_CHANGED, value=float(sim.tick), detail=f"{action}:{before['hash']}->{now['hash']}")
        named = "" if now["name"] == now["hash"] else f" ({now['hash']})"
        w.emit(EventKind.NARRATION, value=-1.0, detail=f"The town now follows the {now['name']} policy{named}, {why}.")
        log_event(
            LOG,
            f"promotion.{action}",
            int(sim.tick),
            logging.WARNING if action == "rollback" else logging.INFO,
            policy=now["hash"],
            previous=before["hash"],
            reason=why,
            promotion_state=self.promotion_state(),
        )
        return {"policy": now, "previous": before, "tick": int(sim.tick), "action": action}

    # -- the live canaries ------------------------------------------------------------------------

    def _window(self, report: WindowReport) -> None:
        fired = {c.name: c for c in report.canaries}
        for name, state in self.canaries.items():
            canary = fired.get(name)
            state["state"] = "fired" if canary else "ok"
            if canary is not None:
                state.update(
                    fired=state["fired"] + 1,
                    window=report.index,
                    value=canary.value,
                    limit=canary.limit,
                    message=canary.message,
                )
        if report.passed:
            self.windows_passed += 1
        else:
            self._misbehaved(report)
        self.refresh()

    def _misbehaved(self, report: WindowReport) -> None:
        registry, sim = self.registry, self.sim
        tick = int(sim.tick)
        reason = f"live window {report.index}: {report.reason}"
        driving = self.driving()
        release = self.release()
        on_release = release is not None and release.policy_hash == driving["hash"]
        if registry is not None and on_release and registry.pinned is None:
            registry.pin(reason, tick, {"window": report.to_dict()})
            self.refresh()
            log_event(
                LOG,
                "promotion.pin",
                tick,
                logging.WARNING,
                release=driving["hash"],
                reason=reason,
                promotion_state=self.promotion_state(),
            )
        if not self.rollback_on_canary or registry is None or release is None:
            return
        try:
            if on_release:
                if len(registry.releases()) < 2:
                    return
                _, good = self._previous_release(registry)
                registry.rollback(reason, tick, {"window": report.to_dict()})
            else:
                good = self._choice_of(release, "release")  # a hand-swapped policy goes back to the release
            result = self._switch(good, f"after a canary ({report.reason})", "rollback")
        except (LookupError, ValueError, CheckpointError) as exc:  # nothing safe to go back to: keep the pin
            log_event(
                LOG,
                "promotion.rollback_failed",
                tick,
                logging.ERROR,
                reason=str(exc),
                promotion_state=self.promotion_state(),
            )
            return
        self.rollbacks += 1
        self.refresh()
        sim.world.emit(
            EventKind.ALERT, value=float(report.index), detail=f"rollback:{driving['hash']}->{result['policy']['hash']}"
        )
