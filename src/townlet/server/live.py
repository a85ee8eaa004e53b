"""The live town: one thread steps the simulation at the clock's pace; HTTP and viewers reach it only by queue.

The server owns the clock (SPEC 1): ticks are due every ``time.live_tick_seconds / speed`` seconds of wall
time (250 ms at 1x), scheduled against a steady deadline so a slow tick is caught up rather than shifting
every later one; a loop more than ``server.catch_up_s`` behind starts afresh. ``max`` runs flat out.
Console commands are queued by the HTTP thread and applied at the next tick boundary; while paused they
are applied at once, between ticks, and viewers get the amended state as a fresh snapshot.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import deque
from typing import Any

from townlet.config.loader import LoadedConfig
from townlet.config.models import ServerConfig
from townlet.console.service import ConsoleService
from townlet.logs import log_event
from townlet.server.viewers import ViewerTransport
from townlet.sim.clock import SPEEDS
from townlet.sim.simulation import Simulation
from townlet.telemetry.publisher import TelemetryPublisher
from townlet.training.live import LivePolicies, live_baseline
from townlet.training.policies import PolicyChoice, install
from townlet.training.registry import PolicyRegistry
from townlet.training.stability import Baseline

log = logging.getLogger("townlet.server")
PAUSED_POLL_S = 0.05  # how often a paused loop looks for queued commands when nothing wakes it
RATE_WINDOW_S = 5.0


class TickStats:
    """Tick timings of the live loop: lag behind schedule, step durations, and the tick rate.

    Args:
        samples: How many recent lags are kept for the percentiles.
    """

    def __init__(self, samples: int) -> None:
        self._lock = threading.Lock()
        self.lags: deque[float] = deque(maxlen=samples)
        self.marks: deque[tuple[float, int]] = deque()  # (time, ticks) every ~0.1 s over the rate window
        self.ticks = 0
        self.step_s_total = 0.0
        self.lag_s_total = 0.0
        self.last_tick_at: float | None = None

    def record(self, start: float, lag: float | None, step_s: float) -> None:
        """One tick started at ``start`` (``lag`` seconds after it was due; None when unpaced) and took ``step_s``."""
        with self._lock:
            self.ticks += 1
            self.step_s_total += step_s
            self.last_tick_at = start
            if lag is not None:
                self.lags.append(lag)
                self.lag_s_total += lag
            if not self.marks or start - self.marks[-1][0] >= 0.1:
                self.marks.append((start, self.ticks))
                while self.marks and start - self.marks[0][0] > RATE_WINDOW_S:
                    self.marks.popleft()

    def rate(self, now: float | None = None) -> float:
        """Ticks per second over the last few seconds (0 when the town stands still)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if not self.marks or self.last_tick_at is None or now - self.last_tick_at > RATE_WINDOW_S:
                return 0.0
            t0, n0 = self.marks[0]
            span = now - t0
            return (self.ticks - n0) / span if span > 0 else 0.0

    def lag_quantiles(self) -> dict[str, float]:
        """Lag percentiles (seconds) over the recent paced ticks."""
        with self._lock:
            lags = sorted(self.lags)
        if not lags:
            return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}

        def at(q: float) -> float:
            return lags[min(len(lags) - 1, int(q * len(lags)))]

        return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": lags[-1]}

    def clear_lags(self) -> None:
        """Forget the lag samples (a benchmark phase starts)."""
        with self._lock:
            self.lags.clear()


class LiveTown:
    """A simulation paced in real time, with its telemetry publisher, viewer transport and console.

    Args:
        sim: The town (only this object's thread steps it).
        console: The console service commands go through.
        publisher: The telemetry publisher (attached on :meth:`start`).
        viewers: The WebSocket viewers' transport (one shared feed, a cursor per viewer).
        cfg: The ``server`` config section.
    """

    def __init__(
        self,
        sim: Simulation,
        console: ConsoleService,
        publisher: TelemetryPublisher,
        viewers: ViewerTransport,
        cfg: ServerConfig,
    ) -> None:
        self.sim = sim
        self.console = console
        self.publisher = publisher
        self.viewers = viewers
        self.cfg = cfg
        self.stats = TickStats(cfg.lag_samples)
        self.published = 0  # ticks and amendments published so far (viewers poll it)
        self.error: str | None = None
        self.started_at = time.monotonic()
        self._wake = threading.Event()
        self._snapshot_wanted = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        # Move the heap built so far (the town, its maps and kernels, the libraries) out of the garbage collector's
        # full passes when the tick thread starts: at 1,000 agents each pass over it took ~200 ms, the tick lag's
        # p99. A long-running server sets this (``townlet serve``, ``bench-live``); tests that build many towns
        # in one process leave it off, since a frozen object is never collected.
        self.freeze_heap = False
        self.set_speed(cfg.speed)

    @classmethod
    def build(
        cls,
        loaded: LoadedConfig,
        seed: int | None = None,
        sim: Simulation | None = None,
        policy: PolicyChoice | None = None,
        registry: PolicyRegistry | None = None,
        baseline: Baseline | None = None,
    ) -> LiveTown:
        """A live town from a loaded config: telemetry transports, console and policy desk from their sections.

        Args:
            loaded: The config.
            seed: Run seed of a new town.
            sim: Continue an existing simulation (one resumed from a snapshot) instead of a new one.
            policy: Who drives (checked for fit; default: whoever drives ``sim`` already, scripted for a new town).
            registry: The policy registry the console's ``policy`` command promotes and rolls back in.
            baseline: The live canaries' baseline (default: measured once per config and seed, then cached in
                ``stability.baseline_cache``).
        """
        sim = sim or Simulation(loaded, seed=seed)
        cfg = loaded.config.server
        publisher = TelemetryPublisher.from_config(sim)
        viewers = ViewerTransport(cfg.viewer_buffer_ticks)
        viewers.source = publisher.encoder  # viewport viewers filter each tick's full state
        publisher.add_transport(viewers)
        console = ConsoleService.from_config(sim, publisher)
        if policy is not None:
            install(sim, policy)
        desk = LivePolicies(sim, registry, baseline or live_baseline(sim.loaded, sim.seed))
        console.policies = desk
        publisher.encoder.stability_source = desk.stability_section
        return cls(sim, console, publisher, viewers, cfg)

    @property
    def policies(self) -> LivePolicies:
        """The policy desk (the console's ``policy`` command, the live canaries)."""
        return self.console.policies

    # -- control ------------------------------------------------------------------------------------

    def set_speed(self, speed: str) -> None:
        """``pause`` holds the town; ``1x``, ``10x``, ``100x`` or ``max`` set the pace and resume."""
        clock = self.sim.clock
        if speed in ("pause", "paused"):
            clock.set_paused(True)
        elif speed in SPEEDS:
            clock.set_speed(speed)
            clock.set_paused(False)
        else:
            raise ValueError(f"unknown speed {speed!r} (pause, {', '.join(SPEEDS)})")
        self.wake()

    def wake(self) -> None:
        """Wake the loop early (a command arrived, the pace changed, shutdown)."""
        self._wake.set()

    def request_snapshot(self) -> None:
        """A viewer joined: a paused town publishes its state now (a running one does at its next tick)."""
        self._snapshot_wanted = True
        self.wake()

    def start(self) -> None:
        """Attach telemetry and start the tick thread."""
        if self._thread is not None:
            return
        self.publisher.attach()
        if self.freeze_heap:
            gc.collect()
            gc.freeze()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="townlet-live", daemon=True)
        self._thread.start()
        log_event(
            log,
            "server.town_started",
            int(self.sim.world.tick),
            speed=self.sim.clock.speed,
            paused=self.sim.clock.paused,
            config_id=self.sim.loaded.config_id,
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the tick thread, close telemetry and the audit log."""
        self._stopping = True
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.publisher.close(timeout)
        if self.console.audit is not None:
            self.console.audit.close()
        log_event(log, "server.town_stopped", int(self.sim.world.tick))

    @property
    def alive(self) -> bool:
        """Whether the tick thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def last_tick(self) -> int:
        """The last tick simulated (-1 before the first)."""
        return int(self.sim.world.tick) - 1

    # -- the loop -----------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # a bug in a phase: stop ticking, say so in health, keep serving
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("the live town stopped")

    def _loop(self) -> None:
        clock, sim = self.sim.clock, self.sim
        due: float | None = None
        last_start = time.monotonic()
        if sim.world.tick == 0:  # even a town started paused shows its first tick
            self._tick(None)
        while not self._stopping:
            if clock.paused:
                if sim.commands or self._snapshot_wanted:
                    self._snapshot_wanted = False
                    self._between_ticks()
                due = None
                self._wait(PAUSED_POLL_S)
                continue
            interval = clock.interval()
            now = time.monotonic()
            if clock.changed.is_set():  # a new pace counts from the last tick, not from the old deadline
                clock.changed.clear()
                if due is not None:
                    due = last_start + interval
            if due is None:
                due = now
            if now < due:
                self._wait(due - now)
                continue
            lag = now - due
            if lag > self.cfg.catch_up_s:  # too far behind (a stall, a suspended machine): start afresh
                due = now
            last_start = now
            self._tick(lag if interval > 0 else None)
            due += interval
            if interval == 0:
                due = None
                time.sleep(0)  # at max, still let the HTTP thread in between ticks

    def _tick(self, lag: float | None) -> None:
        start = time.monotonic()
        self.sim.step()
        self._notify()
        self.stats.record(start, lag, time.monotonic() - start)

    def _wait(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _between_ticks(self) -> None:
        """Apply queued commands now (paused) and publish the amended state as a fresh snapshot."""
        batch = self.publisher.encoder.amend(self.console.flush())
        for transport in self.publisher.transports:
            transport.put(batch)
        self._notify()

    def _notify(self) -> None:
        self.published += 1

    # -- reading ------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The ``/healthz`` payload: ``ok`` unless the loop crashed or stalled (then ``error``/``stalled``)."""
        clock = self.sim.clock
        now = time.monotonic()
        last = self.stats.last_tick_at
        since = None if last is None else now - last
        status = "ok"
        if self.error is not None or (self._thread is not None and not self.alive and not self._stopping):
            status = "error"
        elif not clock.paused and self.alive:
            allowed = max(self.cfg.stall_after_s, self.cfg.stall_after_ticks * clock.interval())
            if (since if since is not None else now - self.started_at) > allowed:
                status = "stalled"
        out: dict[str, Any] = {
            "status": status,
            "tick": self.last_tick,
            "speed": clock.speed,
            "paused": clock.paused,
            "tick_rate": round(self.stats.rate(now), 3),
            "viewers": len(self.viewers.clients),
            "uptime_s": round(now - self.started_at, 3),
            "config_id": self.sim.loaded.config_id,
        }
        if since is not None:
            out["last_tick_age_s"] = round(since, 3)
        if self.error is not None:
            out["error"] = self.error
        desk = self.console.policies
        if desk is not None:
            state = desk.promotion_state()
            out["policy"] = {**desk.driving(), "canaries": desk.canary_states(), "promotion_state": state}
        return out
