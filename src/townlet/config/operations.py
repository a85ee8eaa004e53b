"""Config sections for running a town for people: telemetry, console, server, snapshots, logging."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import (
    Field,
    model_validator,
)

from townlet.config.base import Strict, Ticks
from townlet.config.migrations import MigrationSpec


class TelemetryTransportBase(Strict):
    """Settings every telemetry transport shares."""

    name: str = Field("", max_length=64, description="label in health reports (default: the kind)")
    buffer_ticks: int = Field(256, ge=1, le=100_000, description="ticks of messages queued before dropping")


class StdoutTransportConfig(TelemetryTransportBase):
    """Newline-delimited JSON on standard output."""

    kind: Literal["stdout"]


class FileTransportConfig(TelemetryTransportBase):
    """JSONL file, rotated by size (each new file starts with a fresh snapshot)."""

    kind: Literal["file"]
    path: str = Field(min_length=1)
    max_bytes: int = Field(0, ge=0, le=2**40, description="rotate past this size; 0 never rotates")
    backups: int = Field(3, ge=0, le=1000, description="rotated files kept as PATH.1 ... PATH.N")


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class NetworkTransportBase(TelemetryTransportBase):
    """Host, port and TLS options; plaintext only when explicitly allowed, and only on loopback."""

    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(ge=1, le=65535)
    tls: bool = True
    allow_plaintext: bool = Field(False, description="required (with a loopback host) when tls is false")
    ca_file: str | None = Field(None, description="CA bundle to verify the peer (default: system CAs)")
    cert_file: str | None = Field(None, description="our certificate (client cert for tcp, server cert for ws)")
    key_file: str | None = None

    @model_validator(mode="after")
    def _plaintext_only_on_loopback(self) -> NetworkTransportBase:
        if not self.tls:
            if not self.allow_plaintext:
                raise ValueError("tls is off: set allow_plaintext: true to send telemetry unencrypted (loopback only)")
            if not is_loopback_host(self.host):
                raise ValueError(f"plaintext telemetry is only allowed to a loopback host, not {self.host!r}")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class TcpTransportConfig(NetworkTransportBase):
    """Newline-delimited JSON to a collector over TCP, TLS by default (verification and hostname check on)."""

    kind: Literal["tcp"]
    server_name: str | None = Field(None, description="name to verify in the server certificate (default: host)")
    connect_timeout: float = Field(5.0, gt=0.0, le=300.0)
    send_buffer: int = Field(
        0,
        ge=0,
        le=64 * 2**20,
        description="kernel send buffer bytes (0: OS default); "
        "smaller means a stalled collector shows up as counted drops sooner",
    )
    backoff: tuple[Annotated[float, Field(gt=0.0, le=3600.0)], Annotated[float, Field(gt=0.0, le=3600.0)]] = (
        0.25,
        30.0,
    )


class WebSocketTransportConfig(NetworkTransportBase):
    """A WebSocket server that streams telemetry to every connected viewer (``wss`` unless plaintext)."""

    kind: Literal["websocket"]
    port: int = Field(8765, ge=0, le=65535, description="0 picks a free port")
    path: str = "/telemetry"

    @model_validator(mode="after")
    def _server_certificate(self) -> WebSocketTransportConfig:
        if self.tls and self.cert_file is None:
            raise ValueError("a TLS WebSocket server needs cert_file and key_file")
        return self


TransportConfig = Annotated[
    StdoutTransportConfig | FileTransportConfig | TcpTransportConfig | WebSocketTransportConfig,
    Field(discriminator="kind"),
]


class TelemetryConfig(Strict):
    """The telemetry stream: transports, cadence of health and perf sections, drop alerts."""

    transports: list[TransportConfig] = []
    health_every: Ticks = Field(50, description="ticks between perf/transport-health updates; 0 leaves them out")
    slowest_ticks: int = Field(5, ge=0, le=1000, description="slowest ticks of the perf window listed in perf")
    perf_window: int = Field(
        1000,
        ge=10,
        le=1_000_000,
        description="ticks the perf figures cover: a rolling window kept whether or not anything publishes",
    )
    tick_target_ms: dict[Annotated[int, Field(ge=1, le=10_000_000)], Annotated[float, Field(gt=0.0, le=1e6)]] = Field(
        {8: 2.5, 1000: 25.0, 10_000: 250.0},
        description="target tick duration (ms, all phases) per population: linear between the listed populations, "
        "the first value below them, proportional to agents above them; empty: no target. The defaults keep a "
        "small town able to run at 100x, 1,000 agents at 10x and 10,000 agents at 1x (250 ms a tick)",
    )
    health_log_s: Annotated[float, Field(ge=0.0, le=86_400.0)] = Field(
        60.0, description="wall seconds between `tick.health` log lines of a publishing town; 0 = none"
    )
    narration_lines: int = Field(20, ge=0, le=10_000, description="recent narration lines kept in the state")
    stability_window: int = Field(1000, ge=10, le=1_000_000, description="ticks per rolling KPI window")
    drop_alert_rate: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        0.05, description="share of messages dropped within drop_window that starts an episode of loss"
    )
    drop_window: int = Field(200, ge=1, le=1_000_000, description="ticks over which the drop rate is measured")
    digits: int = Field(4, ge=1, le=12, description="decimals kept for needs, money and ties")

    def target_tick_ms(self, agents: int) -> float | None:
        """The target tick duration in ms for a population of ``agents`` (None when no target is set)."""
        if not self.tick_target_ms:
            return None
        points = sorted(self.tick_target_ms.items())
        if agents <= points[0][0]:
            return points[0][1]
        for (low, low_ms), (high, high_ms) in zip(points, points[1:], strict=False):
            if agents <= high:
                return low_ms + (high_ms - low_ms) * (agents - low) / (high - low)
        last, last_ms = points[-1]
        return last_ms * agents / last  # cost per tick grows linearly with agents (SPEC 24)


class RateLimitConfig(Strict):
    """Per-principal token bucket for console commands (0 per second disables it)."""

    per_second: Annotated[float, Field(ge=0.0, le=10_000.0)] = 20.0
    burst: int = Field(40, ge=1, le=100_000)


class AuditConfig(Strict):
    """Bounds on the console audit log: rotation size, entry size, and how refusal floods are summarised."""

    max_bytes: int = Field(64 << 20, ge=0, le=1 << 40, description="rotate to AUDIT.1 past this size (0: never)")
    max_arg_bytes: int = Field(
        2048, ge=256, le=1 << 20, description="arguments or result data larger than this (JSON) become a digest"
    )
    refusal_lines: int = Field(
        10, ge=0, le=100_000, description="refusals written in full per principal or source per interval"
    )
    summary_s: Annotated[float, Field(gt=0.0, le=86_400.0)] = Field(
        60.0, description="the interval after which the rest are written as one summary line"
    )


class ConsoleConfig(Strict):
    """Console access control: token key set, revocations, audit log, de-duplication, rate limits.

    Files left empty live in ``state_dir``; key set and revocation list are re-read when they change.
    """

    state_dir: str = Field("~/.townlet", description="where keys, revocations, issued tokens and audit live")
    keys_file: str = ""
    revocations_file: str = ""
    issued_file: str = ""
    audit_file: str = ""
    audit_fsync: bool = True
    default_ttl: str = Field("1h", pattern=r"^\d+[smhd]$")
    max_ttl: str = Field("30d", pattern=r"^\d+[smhd]$")
    leeway_s: int = Field(30, ge=0, le=3600, description="clock skew tolerated on expiry")
    dedup_size: int = Field(4096, ge=0, le=1_000_000, description="cmd_ids remembered per console")
    rate_limit: RateLimitConfig = RateLimitConfig()
    audit: AuditConfig = AuditConfig()


class SnapshotsConfig(Strict):
    """Snapshots and hot reload: where autosaves go, how often, how many are kept; file watching."""

    dir: str = Field("snapshots", description="directory of periodic autosaves (``townlet serve --resume DIR``)")
    autosave_every: int = Field(0, ge=0, le=100_000_000, description="ticks between autosaves (0 = off)")
    keep: int = Field(5, ge=1, le=10_000, description="autosaves kept; older ones are deleted")
    watch_every: int = Field(
        0, ge=0, le=100_000_000, description="ticks between checks of the affordance/perturbation files (0 = off)"
    )
    keys_file: str = Field("", description="snapshot signing keys (default: snapshot-keys.json in console.state_dir)")
    max_bytes: int = Field(1 << 30, ge=1 << 16, le=1 << 40, description="largest snapshot file read")
    max_header_bytes: int = Field(8 << 20, ge=1 << 12, le=1 << 30, description="largest snapshot header read")
    max_arrays: int = Field(100_000, ge=1, le=10_000_000, description="most arrays one snapshot may hold")
    migrations_dir: str = Field(
        "migrations",
        description="declarative migrations (*.yaml), next to the config file unless absolute; "
        "the shipped ones always apply too",
    )
    migrations: list[MigrationSpec] = Field(
        default_factory=list, max_length=1000, description="declarative migrations written in the config itself"
    )


class ServerConfig(Strict):
    """The live server (``townlet serve``): address, TLS, allowed origins, the viewer stream, API limits.

    The page's own origin is always allowed; ``allowed_origins`` adds others (CORS and WebSocket alike).
    """

    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(8000, ge=0, le=65535, description="0 picks a free port")
    speed: Literal["pause", "1x", "10x", "100x", "max"] = Field("1x", description="pace at start")
    tls_cert: str | None = Field(None, description="certificate (PEM) for https/wss; needs tls_key")
    tls_key: str | None = None
    allowed_origins: list[Annotated[str, Field(pattern=r"^https?://[^/\s]+$")]] = Field(
        [], description="other origins (scheme://host[:port]) whose pages may use the API and the stream"
    )
    allowed_hosts: list[str] = Field(
        [], description="Host headers accepted; empty: loopback names when bound to loopback, else any"
    )
    stream_rate: Annotated[float, Field(gt=0.0, le=1000.0)] = Field(
        50.0, description="updates per second per viewer at most; a viewer behind the town gets a fresh snapshot"
    )
    catch_up_rate: Annotated[float, Field(gt=0.0, le=1000.0)] = Field(
        10.0, description="snapshots per second at most for a viewer that fell behind (100x, max, slow links)"
    )
    viewer_buffer_ticks: int = Field(32, ge=1, le=100_000, description="ticks queued per viewer before dropping")
    behind_ticks: int = Field(
        4, ge=1, le=100_000, description="a viewer this many ticks behind skips ahead (fewer are caught up)"
    )
    max_viewers: int = Field(1000, ge=1, le=100_000, description="WebSocket viewers at once")
    viewport_above: int = Field(
        500, ge=0, le=10_000_000, description="towns with more agents stream each viewer its viewport (?view=auto)"
    )
    viewport_max_tiles: int = Field(
        96, ge=8, le=4096, description="longest side (tiles) of the rectangle a viewport viewer is sent"
    )
    viewport_margin: int = Field(4, ge=0, le=64, description="tiles around a viewport whose agents are sent too")
    viewport_rate: Annotated[float, Field(gt=0.0, le=100.0)] = Field(
        10.0, description="viewport changes per second a viewer may send (burst of as many)"
    )
    viewport_refusals: int = Field(
        20, ge=1, le=10_000, description="refused viewport messages before the viewer is disconnected (1008)"
    )
    catch_up_s: Annotated[float, Field(ge=0.0, le=60.0)] = Field(
        1.0, description="a loop this far behind its schedule stops catching up and starts afresh"
    )
    stall_after_s: Annotated[float, Field(gt=0.0, le=3600.0)] = Field(
        5.0, description="/healthz says stalled after no tick for this long or stall_after_ticks intervals, running"
    )
    stall_after_ticks: int = Field(20, ge=1, le=1_000_000, description="tick intervals with no tick that mean stalled")
    lag_samples: int = Field(4000, ge=10, le=1_000_000, description="recent tick lags kept for percentiles")
    console_timeout_s: Annotated[float, Field(gt=0.0, le=600.0)] = Field(
        10.0, description="how long the console API waits for the town to apply a command"
    )
    max_body_bytes: int = Field(65536, ge=256, le=16 * 2**20, description="largest console request body")
    auth_failures: RateLimitConfig = Field(
        RateLimitConfig(per_second=1.0, burst=20), description="per client address, for unauthenticated requests"
    )
    bootstrap_ttl: str = Field("30d", pattern=r"^\d+[smhd]$", description="lifetime of the first-run admin token")
    trusted_proxies: list[str] = Field(
        [], description="addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For names the client"
    )
    max_header_bytes: int = Field(16384, ge=1024, le=1 << 20, description="largest request head; bigger gets 431")
    header_timeout_s: Annotated[float, Field(gt=0.0, le=600.0)] = Field(
        10.0, description="seconds a request head may take to arrive (slow or silent clients are cut off)"
    )
    idle_timeout_s: Annotated[float, Field(gt=0.0, le=3600.0)] = Field(
        5.0, description="seconds an idle keep-alive connection is kept open between requests"
    )
    max_connections: int = Field(1100, ge=2, le=1_000_000, description="open connections at most; more get 503")
    ws_ping_s: Annotated[float, Field(gt=0.0, le=600.0)] = Field(
        2.0, description="seconds between pings to each WebSocket viewer"
    )
    send_timeout_s: Annotated[float, Field(gt=0.0, le=600.0)] = Field(
        5.0, description="a viewer that has not read what was sent (its pong) this long after a ping is evicted"
    )
    tls_allow_invalid_dates: bool = Field(
        False, description="start even with an expired or not-yet-valid server certificate (warns loudly)"
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        for entry in self.trusted_proxies:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies: {entry!r} is not an address or network") from None
        if self.max_connections <= self.max_viewers:
            raise ValueError("max_connections must be larger than max_viewers (viewers are connections too)")
        return self


class LoggingConfig(Strict):
    """Structured logs: JSON lines or key=value, and the level."""

    format: Literal["json", "kv"] = "json"
    level: Literal["debug", "info", "warning", "error"] = "info"
