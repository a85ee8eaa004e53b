"""Prometheus metrics of the live server in the text exposition format (``GET /metrics``).

Tick rate and lag, per-phase tick times and the slowest ticks, connected viewers, telemetry messages sent
and dropped per transport, and console commands by status and by result code. Counters are totals since
the server started; derive rates in Prometheus (``rate(townlet_phase_seconds_total[1m])``).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from townlet.sim.clock import SPEEDS

if TYPE_CHECKING:
    from townlet.server.live import LiveTown

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Exposition:
    """Builds one exposition: ``# HELP``/``# TYPE`` once per metric, then its samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(
        self, name: str, kind: str, help_text: str, samples: list[tuple[dict[str, object], float]] | float
    ) -> None:
        """Add a metric with one unlabelled value or ``(labels, value)`` samples."""
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        if not isinstance(samples, list):
            samples = [({}, samples)]
        for labels, value in samples:
            text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{text}}} {float(value):.9g}" if text else f"{name} {float(value):.9g}")

    def text(self) -> str:
        """The exposition body."""
        return "\n".join(self.lines) + "\n"


def render(live: LiveTown, results: Counter[str]) -> str:
    """Every metric of a live town; ``results`` counts console answers by code (``ok`` when applied)."""
    sim, stats = live.sim, live.stats
    out = Exposition()
    status = live.status()
    out.metric(
        "townlet_up",
        "gauge",
        "1 while the tick loop runs and is not stalled.",
        1.0 if status["status"] == "ok" else 0.0,
    )
    out.metric("townlet_tick", "gauge", "The last tick simulated.", status["tick"])
    out.metric("townlet_ticks_total", "counter", "Ticks simulated by this server.", stats.ticks)
    out.metric("townlet_tick_rate", "gauge", "Ticks per second over the last few seconds.", status["tick_rate"])
    out.metric("townlet_speed", "gauge", "Requested speed factor (0 = max, flat out).", SPEEDS[sim.clock.speed])
    out.metric("townlet_paused", "gauge", "1 while the town is paused.", 1.0 if sim.clock.paused else 0.0)
    q = stats.lag_quantiles()
    out.metric(
        "townlet_tick_lag_seconds",
        "summary",
        "How late paced ticks started against their schedule.",
        [({"quantile": "0.5"}, q["p50"]), ({"quantile": "0.9"}, q["p90"]), ({"quantile": "0.99"}, q["p99"])],
    )
    out.lines.append(f"townlet_tick_lag_seconds_sum {stats.lag_s_total:.9g}")
    out.lines.append(f"townlet_tick_lag_seconds_count {len(stats.lags)}")
    out.metric("townlet_tick_step_seconds_total", "counter", "Wall time spent simulating ticks.", stats.step_s_total)
    out.metric(
        "townlet_phase_seconds_total",
        "counter",
        "Wall time spent in each tick phase.",
        [({"phase": name}, seconds) for name, seconds in dict(sim.phase_total).items()],
    )
    perf = sim.perf()
    out.metric(
        "townlet_slowest_tick_seconds",
        "gauge",
        "The slowest ticks of the last telemetry.perf_window ticks (rank 1 = slowest).",
        [({"rank": i + 1, "tick": s["tick"]}, s["ms"] / 1000) for i, s in enumerate(perf["slowest"])],
    )
    out.metric(
        "townlet_tick_duration_seconds",
        "gauge",
        "Tick duration over the last telemetry.perf_window ticks: mean, median, 99th percentile, max.",
        [({"stat": stat}, perf[f"tick_ms_{stat}"] / 1000) for stat in ("mean", "p50", "p99", "max")],
    )
    out.metric(
        "townlet_phase_window_seconds",
        "gauge",
        "Mean seconds per tick in each phase over the window.",
        [({"phase": name}, ms / 1000) for name, ms in perf["phase_ms"].items()],
    )
    if perf["target_tick_ms"] is not None:
        out.metric(
            "townlet_tick_target_seconds",
            "gauge",
            "Target tick duration for this population (telemetry.tick_target_ms).",
            perf["target_tick_ms"] / 1000,
        )
        out.metric(
            "townlet_tick_headroom",
            "gauge",
            "1 - mean tick duration / target: the share of the target unused (negative: over it).",
            perf["headroom"],
        )
    out.metric("townlet_agents", "gauge", "Agents living in the town.", int(sim.world.agents.alive.sum()))
    out.metric("townlet_connected_clients", "gauge", "WebSocket viewers connected.", status["viewers"])
    health = live.publisher.transport_health()
    for name, field, kind, text in (
        ("townlet_telemetry_messages_sent_total", "sent", "counter", "Telemetry messages delivered, per transport."),
        (
            "townlet_telemetry_messages_dropped_total",
            "dropped",
            "counter",
            "Telemetry messages dropped (slow or absent consumers, skipped ahead), per transport.",
        ),
        (
            "townlet_telemetry_snapshots_total",
            "snapshots",
            "counter",
            "Fresh snapshots sent to (re)synchronise consumers, per transport.",
        ),
        ("townlet_telemetry_queue_depth", "queue_depth", "gauge", "Deepest consumer queue in ticks, per transport."),
    ):
        out.metric(name, kind, text, [({"transport": t}, h.get(field, 0)) for t, h in health.items()])
    out.metric(
        "townlet_telemetry_messages_coalesced_total",
        "counter",
        "Ticks folded into snapshots for viewers slower than the town (100x, max), not dropped.",
        live.viewers.totals["coalesced"],
    )
    counts = dict(live.console.counts)
    out.metric(
        "townlet_console_commands_total",
        "counter",
        "Console commands by status (submitted, refused, applied, failed, duplicates, internal_errors).",
        [({"status": k}, v) for k, v in sorted(counts.items())],
    )
    out.metric(
        "townlet_console_results_total",
        "counter",
        "Console API answers by result code (ok when applied).",
        [({"code": k}, v) for k, v in sorted(results.items())],
    )
    out.metric("townlet_uptime_seconds", "gauge", "Seconds since the server started.", status["uptime_s"])
    return out.text()
