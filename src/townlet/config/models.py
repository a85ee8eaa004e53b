"""Typed configuration models: every tunable number of the town, validated with ranges.

The YAML entry point (``default.yaml``) is validated into :class:`TownletConfig`. Unknown keys are
errors (``extra="forbid"``); ranges are declared on the fields so a bad value names its key path.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

NeedName = Literal["hunger", "hygiene", "energy", "social"]
NEED_NAMES: tuple[NeedName, ...] = ("hunger", "hygiene", "energy", "social")
OPTION_NAMES = ("GetFed", "GetClean", "GoToWork", "ShopGroceries", "Sleep", "Socialise", "Idle")
RELATIONSHIP_STAGES = ("OFF", "A", "B", "C1", "C2", "C3")
SOCIAL_REWARD_STAGES = ("OFF", "C1", "C2", "C3")

Unit = Annotated[float, Field(ge=0.0, le=1.0)]
Rate = Annotated[float, Field(ge=0.0, le=0.05)]
Money = Annotated[float, Field(ge=0.0, le=10_000.0)]
Ticks = Annotated[int, Field(ge=0, le=1_000_000)]

_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class Strict(BaseModel):
    """Base for all config sections: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def clock_to_tick(value: str, ticks_per_day: int) -> int:
    """Convert ``"HH:MM"`` to a tick of the day (``"00:00"`` is tick 0)."""
    match = _CLOCK.match(value)
    if not match:
        raise ValueError(f"expected a time of day 'HH:MM', got {value!r}")
    minutes = int(match.group(1)) * 60 + int(match.group(2))
    return round(minutes * ticks_per_day / 1440)


def _check_clock(value: str) -> str:
    if not _CLOCK.match(value):
        raise ValueError(f"expected a time of day 'HH:MM', got {value!r}")
    return value


Clock = Annotated[str, AfterValidator(_check_clock)]


class FeaturesConfig(Strict):
    """Feature flags (SPEC 21); stages switch them on in order."""

    relationships: Literal["OFF", "A", "B", "C1", "C2", "C3"] = "B"
    social_rewards: Literal["OFF", "C1", "C2", "C3"] = "OFF"
    lifecycle: Literal["on", "off"] = "off"
    perturbations: Literal["on", "off"] = "off"
    observations: Literal["full", "hybrid", "compact"] = "hybrid"
    curiosity: Literal["on", "off"] = "off"

    @field_validator("lifecycle", "perturbations", "curiosity", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: object) -> object:
        # YAML reads bare on/off as booleans; accept them as the flag words.
        if isinstance(value, bool):
            return "on" if value else "off"
        return value

    @field_validator("relationships", "social_rewards", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        # YAML reads a bare OFF as the boolean false.
        return "OFF" if value is False else value


class TownConfig(Strict):
    """Which map file the town is built from, and how many copies of it are tiled."""

    map: str = "town.yaml"
    scale: int = Field(1, ge=1, le=16)


class PopulationConfig(Strict):
    """How many agents live in the town and how many slots the arrays hold."""

    agents: int = Field(8, ge=1, le=10_000)
    capacity: int = Field(0, ge=0, le=20_000, description="array slots; 0 means agents + headroom")
    household_size: int = Field(1, ge=1, le=64, description="agents sharing one home")

    @model_validator(mode="after")
    def _capacity_fits(self) -> PopulationConfig:
        if self.capacity and self.capacity < self.agents:
            raise ValueError(f"capacity ({self.capacity}) must be at least agents ({self.agents})")
        return self

    @property
    def slots(self) -> int:
        """Number of array slots to allocate."""
        return self.capacity or max(self.agents + 8, int(self.agents * 1.25))


class TimeConfig(Strict):
    """The clock: ticks per in-sim day."""

    ticks_per_day: int = Field(1000, ge=96, le=100_000)
    live_tick_seconds: float = Field(0.25, gt=0.0, le=60.0, description="wall seconds per tick at 1x in live mode")


class NeedsConfig(Strict):
    """Need growth per tick and the thresholds that matter to controllers and KPIs."""

    decay: dict[Literal["hunger", "hygiene", "energy", "social"], Rate] = {
        "hunger": 0.0014,
        "hygiene": 0.0006,
        "energy": 0.0008,
        "social": 0.0004,
    }
    asleep_multiplier: dict[Literal["hunger", "hygiene", "energy", "social"], Annotated[float, Field(ge=0, le=2)]] = {
        "hunger": 0.5,
        "hygiene": 0.5,
        "social": 0.0,
    }
    initial: dict[Literal["hunger", "hygiene", "energy", "social"], Unit] = {
        "hunger": 0.25,
        "hygiene": 0.2,
        "energy": 0.35,
        "social": 0.2,
    }
    ok_threshold: Unit = Field(0.7, description="a need below this deficit counts as ok (KPI need_ok_share)")
    critical: Unit = Field(0.85, description="crossing this lets an agent break its commitment window")
    collapse_level: Unit = 0.97
    collapse_ticks: Ticks = 30

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> NeedsConfig:
        if not self.ok_threshold < self.critical < self.collapse_level:
            raise ValueError("thresholds must satisfy ok_threshold < critical < collapse_level")
        return self


class WeatherConfig(Strict):
    """Weather states change on a schedule with randomness; effects outdoors."""

    change_every: int = Field(250, ge=1, le=100_000)
    transitions: dict[Literal["sunny", "rainy", "cold"], dict[Literal["sunny", "rainy", "cold"], Unit]] = {
        "sunny": {"sunny": 0.6, "rainy": 0.25, "cold": 0.15},
        "rainy": {"sunny": 0.5, "rainy": 0.35, "cold": 0.15},
        "cold": {"sunny": 0.5, "rainy": 0.2, "cold": 0.3},
    }
    cold_energy_multiplier: float = Field(1.5, ge=1.0, le=5.0)
    rain_move_cost: float = Field(1.5, ge=1.0, le=10.0, description="ticks per outdoor step while raining")

    @field_validator("transitions")
    @classmethod
    def _rows_sum_to_one(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for state in ("sunny", "rainy", "cold"):
            if state not in value:
                raise ValueError(f"missing transition row for {state!r}")
            total = sum(value[state].values())
            if abs(total - 1.0) > 1e-6:
                raise ValueError(f"transition row {state!r} sums to {total:.3f}, expected 1")
        return value


class UtilitiesConfig(Strict):
    """Random utility faults (power and water) per place; off by default."""

    fault_rate_per_day: Annotated[float, Field(ge=0.0, le=100.0)] = 0.0
    fault_duration: tuple[Ticks, Ticks] = (20, 80)


class QueuesConfig(Strict):
    """Reservations, queues, fairness and the ghost-step deadlock breaker."""

    reserve_radius: int = Field(6, ge=0, le=100, description="distance at which an agent asks for its object")
    reservation_timeout: Ticks = 40
    queue_timeout: Ticks = 200
    fairness_cooldown: Ticks = 60
    ghost_after: int = Field(8, ge=1, le=1000, description="failed move retries before a ghost step")
    tie_break: Literal["patience", "uniform"] = "patience"
    tie_jitter: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1


class ItemConfig(Strict):
    """One item sold in a shop."""

    price: Annotated[float, Field(gt=0.0, le=1000.0)]
    stock: Ticks
    restock_to: Ticks
    wholesale: Annotated[float, Field(ge=0.0, le=1000.0)] = 0.0


class EconomyConfig(Strict):
    """Prices, stock, rent, the starter kit and the economy invariant."""

    items: dict[str, ItemConfig] = {
        "raw_food": ItemConfig(price=1.0, stock=60, restock_to=60, wholesale=0.6),
        "cafe_meal": ItemConfig(price=1.5, stock=40, restock_to=40, wholesale=0.8),
    }
    shops: dict[str, list[str]] = {"grocer": ["raw_food"], "cafe": ["cafe_meal"]}
    basic_meal_item: str = "raw_food"
    hygiene_cost_per_day: Money = 0.5
    rent_per_day: Money = 4.0
    rent_time: Clock = "00:00"
    restock_time: Clock = "06:00"
    starting_wallet_rents: Annotated[float, Field(ge=0.0, le=100.0)] = 1.5
    starting_inventory: dict[str, Ticks] = {"raw_food": 2, "clean_clothes": 3}
    invariant_slack: tuple[Unit, Unit] = (0.10, 0.20)
    treasury: Money = 5000.0

    @model_validator(mode="after")
    def _references_exist(self) -> EconomyConfig:
        for shop, items in self.shops.items():
            for item in items:
                if item not in self.items:
                    raise ValueError(f"shops.{shop} sells unknown item {item!r}")
        if self.basic_meal_item not in self.items:
            raise ValueError(f"basic_meal_item {self.basic_meal_item!r} is not an item")
        lo, hi = self.invariant_slack
        if lo > hi:
            raise ValueError("invariant_slack must be (low, high) with low <= high")
        return self


class JobConfig(Strict):
    """A kind of job: where, at which workstation, when, and for what daily wage."""

    site: Literal["grocer", "cafe", "office", "gym", "park"]
    station: str = "desk"
    positions: int = Field(1, ge=0, le=10_000, description="0 means one per station at the site")
    shift_start: Clock = "09:00"
    shift_end: Clock = "17:00"
    wage_per_day: Money = 8.6


class EmploymentConfig(Strict):
    """Shifts, punctuality, absences, job loss and re-hiring."""

    jobs: dict[str, JobConfig] = {
        "clerk": JobConfig(site="office", positions=0, shift_start="09:00", shift_end="17:00"),
        "stocker": JobConfig(site="grocer", positions=0, shift_start="08:00", shift_end="16:00"),
        "cook": JobConfig(site="cafe", positions=0, shift_start="10:00", shift_end="18:00"),
    }
    punctuality_window: Ticks = 21
    absence_after: Ticks = 125
    early_arrival: Ticks = 125
    max_absences: int = Field(3, ge=1, le=100)
    absence_window_days: int = Field(5, ge=1, le=100)
    rehire_every: Ticks = 42


class RelationshipsConfig(Strict):
    """Ties: capacity, event deltas, personality scaling, decay and chat odds."""

    max_ties: int = Field(6, ge=1, le=32)
    decay_per_hour: Annotated[float, Field(ge=0.0, le=0.5)] = 0.01
    faint: Unit = 0.02
    deltas: dict[str, tuple[float, float, float]] = {
        "shared_meal": (0.05, 0.08, 0.0),
        "queued_politely": (0.02, 0.03, 0.0),
        "blocked_shower": (-0.06, 0.02, 0.08),
        "took_my_shift": (-0.08, 0.02, 0.1),
        "helped_when_late": (0.1, 0.05, -0.03),
        "good_chat": (0.08, 0.1, -0.02),
        "failed_chat": (-0.04, 0.05, 0.03),
        "ghost_pushed": (-0.03, 0.02, 0.04),
        "coworkers": (0.01, 0.03, 0.0),
    }
    chat_base: float = Field(0.4, ge=-10, le=10)
    chat_trust_weight: float = Field(1.5, ge=-10, le=10)
    chat_familiarity_weight: float = Field(1.0, ge=-10, le=10)
    chat_radius: int = Field(3, ge=1, le=20)

    @field_validator("deltas")
    @classmethod
    def _deltas_in_range(cls, value: dict[str, tuple[float, float, float]]) -> dict[str, tuple[float, float, float]]:
        for name, triple in value.items():
            if any(abs(d) > 1.0 for d in triple):
                raise ValueError(f"delta {name!r} components must lie in [-1, 1]")
        return value


class OptionsConfig(Strict):
    """Options and their scripted controllers: commitment window and per-option time limits."""

    commitment_window: Ticks = 15
    max_option_ticks: Ticks = 600
    hunger_trigger: Unit = 0.45
    lunch_trigger: Unit = Field(0.5, description="hunger that sends a working agent to eat mid-shift")
    breakfast_trigger: Unit = Field(0.2, description="hunger/hygiene worth fixing before a shift when time allows")
    prepare_window: Ticks = Field(120, description="how long before leaving for work an agent gets ready")
    snack_slack: Ticks = Field(20, description="how late an agent may leave for work to grab a snack first")
    wash_ticks: Ticks = Field(25, description="time a shower takes, for the pre-shift routine")
    socialise_chance: Unit = Field(0.4, description="chance a free agent seeks company (scaled by extroversion)")
    interrupt_level: Unit = Field(0.5, description="a need this high makes the scripted policy reconsider")
    interrupt_every: int = Field(10, ge=1, le=1000, description="ticks between reconsiderations")
    hygiene_trigger: Unit = 0.5
    energy_trigger: Unit = 0.7
    social_trigger: Unit = 0.6
    bedtime: Clock = "22:00"
    wake_time: Clock = "06:00"
    grocery_low_stock: int = Field(3, ge=0, le=100)
    grocery_buy: int = Field(6, ge=1, le=100)
    commute_margin: Ticks = 45
    idle_ticks: Ticks = Field(10, description="how long one Idle option waits")


class IdentityConfig(Strict):
    """Id-embedding slots that observations use to tell agents apart."""

    embedding_slots: int = Field(64, ge=1, le=4096)
    embedding_dim: int = Field(8, ge=1, le=64)
    reuse_cooldown: Ticks = 2000


class ObservationsConfig(Strict):
    """Observation encoders (SPEC 12): map window, neighbourhood and the scales features are normalised by.

    The variant itself is the feature flag ``features.observations``; see docs/observations.md.
    """

    window: int = Field(11, ge=9, le=12, description="side of the egocentric map window (full, hybrid)")
    local_radius: int = Field(5, ge=1, le=50, description="Chebyshev radius of the 'nearby' neighbourhood")
    distance_scale: float = Field(96.0, gt=0.0, le=10_000.0, description="path distance that maps to 1.0")
    wallet_scale: float = Field(10.0, gt=0.0, le=10_000.0, description="meal units: wallet feature is tanh(w/scale)")
    inventory_scale: int = Field(6, ge=1, le=1000, description="item count that maps to 1.0")
    crowd_scale: int = Field(4, ge=1, le=1000, description="agent count (per tile or nearby) that maps to 1.0")
    queue_scale: int = Field(4, ge=1, le=1000, description="queue length or position that maps to 1.0")
    duration_scale: int = Field(100, ge=1, le=100_000, description="ticks of the last action that map to 1.0")
    social_top: int = Field(2, ge=0, le=6, description="friends and rivals listed in the social snippet (each)")
    max_candidates: int = Field(8, ge=1, le=256, description="public objects considered per key target")
    embedding_seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of the fixed id-embedding table")


class EnvConfig(Strict):
    """The RL environment (SPEC 14): episode horizon, action level and rendering."""

    horizon: int = Field(5000, ge=1, le=10_000_000, description="ticks per episode before truncation")
    action_level: Literal["options", "primitives"] = Field(
        "options", description="Discrete(7) options, or primitives (wait, N/E/S/W, interact with an affordance)"
    )
    render_tile_px: int = Field(8, ge=1, le=64, description="pixels per tile in rgb_array frames")


class HooksConfig(Strict):
    """Hook modules: only modules on the allow-list may be imported."""

    allowed_modules: list[str] = ["townlet.world.builtin_hooks"]
    modules: list[str] = ["townlet.world.builtin_hooks"]

    @model_validator(mode="after")
    def _modules_allowed(self) -> HooksConfig:
        for name in self.modules:
            if name not in self.allowed_modules:
                raise ValueError(f"hook module {name!r} is not in allowed_modules")
        return self


class StageConfig(Strict):
    """A curriculum stage: feature flags switched on together, and the KPI bands that end it."""

    features: dict[str, str] = {}
    advance_when: dict[str, tuple[float, float]] = Field(
        {}, description="training KPI -> [low, high]: the trainer moves on once every band holds for two windows"
    )

    @field_validator("advance_when")
    @classmethod
    def _bands_ordered(cls, value: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        for kpi, (low, high) in value.items():
            if low > high:
                raise ValueError(f"band of {kpi!r} has low {low} above high {high}")
        return value

    @field_validator("features", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: object) -> object:
        # As in ``features``: YAML reads bare on/off as booleans; keep them as the flag words.
        if isinstance(value, dict):
            return {k: ("on" if v else "off") if isinstance(v, bool) else v for k, v in value.items()}
        return value


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
    import ipaddress

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
    send_buffer: int = Field(0, ge=0, le=64 * 2**20, description="kernel send buffer bytes (0: OS default); "
                             "smaller means a stalled collector shows up as counted drops sooner")
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
    slowest_ticks: int = Field(5, ge=0, le=1000, description="slowest ticks listed in perf")
    narration_lines: int = Field(20, ge=0, le=10_000, description="recent narration lines kept in the state")
    stability_window: int = Field(1000, ge=10, le=1_000_000, description="ticks per rolling KPI window")
    drop_alert_rate: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        0.05, description="share of messages dropped within drop_window that starts an episode of loss"
    )
    drop_window: int = Field(200, ge=1, le=1_000_000, description="ticks over which the drop rate is measured")
    digits: int = Field(4, ge=1, le=12, description="decimals kept for needs, money and ties")


class RateLimitConfig(Strict):
    """Per-principal token bucket for console commands (0 per second disables it)."""

    per_second: Annotated[float, Field(ge=0.0, le=10_000.0)] = 20.0
    burst: int = Field(40, ge=1, le=100_000)


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


class SnapshotsConfig(Strict):
    """Snapshots and hot reload: where autosaves go, how often, how many are kept; file watching."""

    dir: str = Field("snapshots", description="directory of periodic autosaves (``townlet serve --resume DIR``)")
    autosave_every: int = Field(0, ge=0, le=100_000_000, description="ticks between autosaves (0 = off)")
    keep: int = Field(5, ge=1, le=10_000, description="autosaves kept; older ones are deleted")
    watch_every: int = Field(0, ge=0, le=100_000_000,
                             description="ticks between checks of the affordance/perturbation files (0 = off)")


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
    catch_up_s: Annotated[float, Field(ge=0.0, le=60.0)] = Field(
        1.0, description="a loop this far behind its schedule stops catching up and starts afresh"
    )
    lag_samples: int = Field(4000, ge=10, le=1_000_000, description="recent tick lags kept for percentiles")
    console_timeout_s: Annotated[float, Field(gt=0.0, le=600.0)] = Field(
        10.0, description="how long the console API waits for the town to apply a command"
    )
    max_body_bytes: int = Field(65536, ge=256, le=16 * 2**20, description="largest console request body")
    auth_failures: RateLimitConfig = Field(
        RateLimitConfig(per_second=1.0, burst=20), description="per client address, for unauthenticated requests"
    )
    bootstrap_ttl: str = Field("30d", pattern=r"^\d+[smhd]$", description="lifetime of the first-run admin token")

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        return self


class LoggingConfig(Strict):
    """Structured logs: JSON lines or key=value, and the level."""

    format: Literal["json", "kv"] = "json"
    level: Literal["debug", "info", "warning", "error"] = "info"


class ExitRules(Strict):
    """Which exit triggers are live (an explicit console exit always works)."""

    collapse: bool = True
    eviction: bool = True
    unemployment: bool = True
    neglect: bool = True
    age_out: bool = False


class LifecycleConfig(Strict):
    """Exits and arrivals (SPEC 8): triggers, the exit-storm guard, suppression during city events, newcomers.

    ``features.lifecycle`` switches automatic exits on; see docs/lifecycle.md.
    """

    exits: ExitRules = ExitRules()
    eviction_unpaid_days: int = Field(2, ge=1, le=100, description="consecutive unpaid rents that bring a notice")
    eviction_recovery_days: Annotated[float, Field(ge=0.0, le=100.0)] = Field(
        1.0, description="days after the notice to settle the arrears"
    )
    unemployment_days: Annotated[float, Field(gt=0.0, le=100.0)] = Field(
        2.0, description="days without wages (while a job is held or vacant) before leaving"
    )
    neglect_level: Unit = Field(0.9, description="a need above this counts as neglected")
    neglect_share: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        0.25, description="share of the last day spent neglected that makes an agent leave"
    )
    age_out_days: Annotated[float, Field(gt=0.0, le=10_000.0)] = Field(
        60.0, description="age at which an agent retires (when exits.age_out is on)"
    )
    max_exits_per_day: int = Field(2, ge=0, le=10_000, description="exit-storm guard: exits per in-sim day")
    exit_spacing: Ticks = Field(120, description="exit-storm guard: ticks between two exits")
    city_event_grace: Ticks = Field(200, description="ticks after a city-wide outage during which facility exits wait")
    spawn_delay: tuple[Ticks, Ticks] = Field((5, 20), description="ticks from an exit to the newcomer's arrival")
    check_every: int = Field(
        10, ge=1, le=1000, description="ticks between checks of the slow rules (unemployment, neglect, age-out)"
    )

    @field_validator("spawn_delay")
    @classmethod
    def _delay_ordered(cls, value: tuple[int, int]) -> tuple[int, int]:
        # A field validator (not a model one) so the error names the key path.
        if not 1 <= value[0] <= value[1]:
            raise ValueError("spawn_delay must be (low, high) with 1 <= low <= high")
        return value


class PerturbationConfig(Strict):
    """One kind of perturbation: how often, how strong, how long, and what it may hit."""

    daily_probability: Unit = 0.1
    magnitude: tuple[Annotated[float, Field(ge=0.0, le=100.0)], Annotated[float, Field(ge=0.0, le=100.0)]] = (1.0, 1.0)
    duration: tuple[Ticks, Ticks] = (40, 120)
    targets: list[str] = Field([], description="items (price_spike) or place kinds (closed_facility, arranged_meet)")

    @model_validator(mode="after")
    def _ranges_ordered(self) -> PerturbationConfig:
        if self.magnitude[0] > self.magnitude[1]:
            raise ValueError("magnitude must be (low, high) with low <= high")
        if not 1 <= self.duration[0] <= self.duration[1]:
            raise ValueError("duration must be (low, high) with 1 <= low <= high")
        return self


class PriceSpikeConfig(PerturbationConfig):
    """A price spike: an item's price times ``magnitude`` for a while."""

    daily_probability: Unit = 0.2
    magnitude: tuple[Annotated[float, Field(ge=0.0, le=100.0)], Annotated[float, Field(ge=0.0, le=100.0)]] = (1.3, 1.8)
    duration: tuple[Ticks, Ticks] = (200, 600)
    targets: list[str] = ["raw_food", "cafe_meal"]


class ClosedFacilityConfig(PerturbationConfig):
    """A closed facility: one place of the target kinds closed to the public for a while."""

    daily_probability: Unit = 0.15
    duration: tuple[Ticks, Ticks] = (100, 300)
    targets: list[str] = ["cafe", "grocer", "gym", "park"]


class ArrangedMeetConfig(PerturbationConfig):
    """An arranged meet: the strongest rivals free to meet are sent to chat at a place of the target kinds."""

    daily_probability: Unit = 0.3
    duration: tuple[Ticks, Ticks] = (80, 80)
    targets: list[str] = ["cafe"]


class PerturbationsConfig(Strict):
    """Scheduled city events (SPEC 9); ``features.perturbations`` switches the daily dice on."""

    price_spike: PriceSpikeConfig = PriceSpikeConfig()
    blackout: PerturbationConfig = PerturbationConfig()
    water_outage: PerturbationConfig = PerturbationConfig()
    closed_facility: ClosedFacilityConfig = ClosedFacilityConfig()
    arranged_meet: ArrangedMeetConfig = ArrangedMeetConfig()
    window: tuple[Clock, Clock] = Field(("07:00", "21:00"), description="times of day scheduled events may start")
    stagger_gap: Ticks = Field(60, description="ticks kept between two city-wide events")
    agent_cooldown: Ticks = Field(1500, description="ticks before an agent can be targeted again")
    min_rivalry: Unit = Field(0.05, description="rivalry needed for an arranged meet")
    retry_every: Ticks = Field(60, description="a due event with nothing to act on retries this much later")


class HomeostasisWeights(Strict):
    """Weights of the squared need deficits in the homeostasis term."""

    hunger: Annotated[float, Field(ge=0.0, le=1.0)] = 0.02
    hygiene: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01
    energy: Annotated[float, Field(ge=0.0, le=1.0)] = 0.015
    social: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01


class SocialRewardsConfig(Strict):
    """Social reward weights; ``features.social_rewards`` (C1 < C2 < C3) decides which apply."""

    chat_success: Annotated[float, Field(ge=0.0, le=1.0)] = Field(0.05, description="C1: per successful chat")
    polite_queue: Annotated[float, Field(ge=0.0, le=1.0)] = Field(0.01, description="C2: per queue joined politely")
    conflict: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.05, description="C2: penalty per reservation let expire or shove through a queue"
    )
    relationship_quality: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.002, description="C3: per tick, times the mean trust of the agent's ties"
    )


class RewardsConfig(Strict):
    """Reward terms and guardrails (SPEC 13); every weight is per tick unless it says per event."""

    homeostasis: HomeostasisWeights = HomeostasisWeights()
    potential_shaping: bool = False
    shaping_gamma: Unit = 0.99
    survival: Annotated[float, Field(ge=0.0, le=1.0)] = Field(0.01, description="per living tick")
    wage: Annotated[float, Field(ge=0.0, le=10.0)] = Field(0.5, description="per meal unit of wages earned")
    punctuality: Annotated[float, Field(ge=0.0, le=1.0)] = Field(0.1, description="peak bonus for an on-time arrival")
    punctuality_minutes: Annotated[float, Field(gt=0.0, le=600.0)] = Field(
        30.0, description="half-width of the triangular punctuality window, in sim minutes"
    )
    punctuality_cap_share: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(
        0.5, description="the bonus is capped at this share of one skipped meal's pain"
    )
    skipped_meal: tuple[Unit, Unit] = Field(
        (0.45, 0.7), description="(hunger when a meal is due, hunger a meal relieves) to price a skipped meal"
    )
    faint_penalty: Annotated[float, Field(ge=0.0, le=10.0)] = Field(0.1, description="per collapse")
    eviction_penalty: Annotated[float, Field(ge=0.0, le=10.0)] = Field(0.1, description="per eviction notice")
    terminal_penalty: Annotated[float, Field(ge=0.0, le=10.0)] = Field(0.2, description="on exit")
    social: SocialRewardsConfig = SocialRewardsConfig()
    clip_tick: Annotated[float, Field(gt=0.0, le=100.0)] = 0.2
    clip_episode: Annotated[float, Field(gt=0.0, le=1_000_000.0)] = 50.0
    exit_guard_ticks: Ticks = Field(10, description="no positive reward this many ticks after an exit trigger")
    social_need_cap: Unit = Field(0.85, description="social terms are ignored while any need is above this")

    @model_validator(mode="after")
    def _terminal_fits_the_clip(self) -> RewardsConfig:
        if self.terminal_penalty > self.clip_tick:
            raise ValueError("terminal_penalty must not exceed clip_tick (it would be clipped away)")
        return self


class NarrationGaps(Strict):
    """Ticks between two lines of one category (0: only the global limit and de-duplication apply)."""

    late_and_blocked: Ticks = 120
    first_clash: Ticks = 120
    bonded_over_lunch: Ticks = 120
    arrival: Ticks = 0
    exit: Ticks = 0
    eviction_notice: Ticks = 0
    price_spike: Ticks = 0
    blackout: Ticks = 0
    water_outage: Ticks = 0
    closed_facility: Ticks = 0
    arranged_meet: Ticks = 120
    restored: Ticks = 60


class NarrationConfig(Strict):
    """Narration (SPEC 10): throttles, de-duplication, privacy, and the line templates."""

    privacy: Literal["on", "off"] = Field("off", description="replace agent names with stable pseudonyms")
    global_limit: int = Field(6, ge=1, le=10_000, description="lines at most per global_window")
    global_window: Ticks = 250
    category_gaps: NarrationGaps = NarrationGaps()
    dedupe_window: Ticks = Field(1000, description="an identical line is not repeated within this many ticks")
    recent: int = Field(50, ge=1, le=100_000, description="lines kept in Narrator.recent")
    blocked_window: Ticks = Field(200, description="how recent a hold-up must be to explain a late arrival")
    pseudonym_salt: str = Field("townlet", max_length=64, description="changes every pseudonym when changed")
    templates: dict[str, str] = Field({}, description="per-category template overrides (see docs/lifecycle.md)")

    @field_validator("privacy", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: object) -> object:
        # YAML reads bare on/off as booleans; keep them as the flag words.
        if isinstance(value, bool):
            return "on" if value else "off"
        return value


class CaptureConfig(Strict):
    """Scripted-trajectory capture for behaviour cloning (``townlet capture``): episodes and their stresses."""

    scenarios: list[Literal["routine", "low_money", "outage", "price_spike", "queue_contention", "lateness"]] = [
        "routine", "low_money", "outage", "price_spike", "queue_contention", "lateness",
    ]
    seeds: int = Field(4, ge=1, le=10_000, description="episodes per scenario (run seeds seed, seed+1, ...)")
    ticks: int = Field(4000, ge=1, le=10_000_000, description="ticks per episode (4 days: later days drift)")
    low_money_share: Unit = Field(0.5, description="low_money: share of agents left nearly broke")
    low_money_wallet: Money = Field(1.0, description="low_money: what they keep, in meal units")
    low_money_food: int = Field(0, ge=0, le=1000, description="low_money: raw food they keep at most")
    outage_after: Clock = Field("06:00", description="outage: from this time, cut the utility under the first user")
    outage_duration: Ticks = Field(150, description="outage: ticks until the utility is repaired")
    price_spike_at: Clock = "07:00"
    price_spike_magnitude: Annotated[float, Field(gt=1.0, le=100.0)] = Field(2.0, description="price multiplier")
    price_spike_duration: Ticks = 600
    contention_at: Clock = Field("19:00", description="queue_contention: when everybody needs a wash at once")
    contention_duration: Ticks = Field(300, description="queue_contention: ticks the homes' water stays off")
    lateness_lead: Ticks = Field(60, description="lateness: ticks before the first shift when the employed get hungry")


class BehaviourCloningConfig(Strict):
    """Behaviour cloning from a captured dataset to a policy checkpoint."""

    holdout: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(
        0.25, description="share of each scenario's episodes held out for the accuracy check (at least one)"
    )
    epochs: int = Field(10, ge=1, le=10_000)
    batch_size: int = Field(1024, ge=1, le=1_000_000)
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 2e-3
    hidden: int = Field(128, ge=8, le=4096, description="hidden width of the MLP")
    stay_bias: Annotated[float, Field(ge=0.0, le=100.0)] = Field(
        4.0, description="initial learned bias toward continuing the running option (as PPO's)"
    )
    decision_weight: Annotated[float, Field(ge=1.0, le=1000.0)] = Field(
        10.0, description="loss weight of samples where the scripted routine chose an option (vs continuing one)"
    )
    target_accuracy: Unit = Field(0.9, description="held-out action accuracy the clone must reach")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    threads: int = Field(1, ge=1, le=256, description="CPU threads for training (more only contend on small nets)")


class AnnealConfig(Strict):
    """The anneal from mostly scripted to fully learned agents, frozen when KPIs drop against scripted."""

    start: Unit = Field(0.8, description="share of agents left to the scripted routine at first")
    end: Unit = Field(0.0, description="share scripted at the end")
    step: Annotated[float, Field(gt=0.0, le=1.0)] = Field(0.2, description="share handed over per passing window")
    window_ticks: int = Field(1000, ge=1, le=10_000_000)
    max_drop: Unit = Field(0.3, description="freeze when a KPI falls more than this share below the scripted one")
    kpis: list[Literal["attendance", "need_ok_share", "self_sufficiency"]] = [
        "attendance", "need_ok_share", "self_sufficiency",
    ]

    @model_validator(mode="after")
    def _downhill(self) -> AnnealConfig:
        if self.end > self.start:
            raise ValueError("end must not exceed start (the anneal hands agents over to the learned policy)")
        return self


class ImitationConfig(Strict):
    """Behaviour cloning and the anneal (SPEC 15): capture, training, hand-over."""

    capture: CaptureConfig = CaptureConfig()
    bc: BehaviourCloningConfig = BehaviourCloningConfig()
    anneal: AnnealConfig = AnnealConfig()


class GateConfig(Strict):
    """The A/B gate: a candidate passes when no KPI is worse than the baseline's beyond a tolerance."""

    higher_better: list[str] = ["attendance", "need_ok_share", "self_sufficiency", "relationship_formation"]
    lower_better: list[str] = ["lateness", "starvation", "conflict_escalation"]
    relative: Unit = Field(0.1, description="allowed shortfall as a share of the baseline value")
    absolute: Unit = Field(0.05, description="allowed shortfall in any case (small values are noisy)")


class EvaluationConfig(Strict):
    """The fixed-seed evaluation suite and its scorecard."""

    seeds: list[Annotated[int, Field(ge=0)]] = Field([1001, 1002, 1003], min_length=1)
    days: Annotated[float, Field(gt=0.0, le=10_000.0)] = Field(3.0, description="in-sim days per scenario")
    stages: list[str] = Field([], description="stages of the suite (empty: every stage in ``stages``)")
    greedy: bool = Field(True, description="learned policies take their most likely option (else sample)")
    relationship_familiarity: Unit = Field(
        0.05, description="a tie this familiar (and not distrustful) counts as a formed relationship"
    )
    rival_level: Unit = Field(0.05, description="a tie with this much rivalry counts as an escalated conflict")
    gate: GateConfig = GateConfig()


class StabilityConfig(Strict):
    """The stability monitor's rolling windows and canaries."""

    window_ticks: int = Field(1000, ge=1, le=10_000_000)
    lateness_factor: Annotated[float, Field(ge=1.0, le=100.0)] = Field(
        2.0, description="lateness spike: window lateness above this times the baseline's"
    )
    lateness_floor: Unit = Field(0.05, description="baseline lateness used when the real one is lower")
    min_arrivals: int = Field(3, ge=0, le=1_000_000, description="arrivals a window needs to judge lateness")
    starvation_max: int = Field(0, ge=0, le=1_000_000, description="collapses a window tolerates")
    thrash_rate: Unit = Field(0.25, description="option thrash: share of option starts that abandon a young option")
    thrash_ticks: int = Field(30, ge=1, le=1_000_000, description="an option abandoned younger than this is thrash")
    min_option_starts: int = Field(10, ge=1, le=1_000_000)
    reward_drop: Annotated[float, Field(gt=0.0, le=100.0)] = Field(
        3.0, description="reward collapse: window mean below baseline mean minus this many baseline stds"
    )
    reward_margin: Annotated[float, Field(ge=0.0, le=100.0)] = Field(
        0.005, description="reward collapse: and below the baseline mean by at least this much"
    )
    baseline_windows: int = Field(3, ge=1, le=1000, description="scripted windows measured for the baseline")


class PromotionConfig(Strict):
    """Release vs shadow: promotion after passing windows and the evaluation suite; the registry."""

    windows_to_promote: int = Field(2, ge=1, le=1000, description="consecutive passing shadow windows needed")
    probation_windows: int = Field(
        2, ge=0, le=1000, description="windows after a promotion in which a failing release is rolled back"
    )
    registry: str = Field("~/.townlet/registry.sqlite", description="the SQLite policy registry")


class TownletConfig(Strict):
    """The whole configuration; one YAML entry point validates into this."""

    version: Literal[1] = 1
    seed: int = Field(0, ge=0, le=2**63 - 1)
    stages: dict[str, StageConfig] = {}  # before ``stage`` so the stage check can see them
    stage: str | None = None
    features: FeaturesConfig = FeaturesConfig()
    town: TownConfig = TownConfig()
    population: PopulationConfig = PopulationConfig()
    time: TimeConfig = TimeConfig()
    needs: NeedsConfig = NeedsConfig()
    weather: WeatherConfig = WeatherConfig()
    utilities: UtilitiesConfig = UtilitiesConfig()
    queues: QueuesConfig = QueuesConfig()
    economy: EconomyConfig = EconomyConfig()
    employment: EmploymentConfig = EmploymentConfig()
    relationships: RelationshipsConfig = RelationshipsConfig()
    options: OptionsConfig = OptionsConfig()
    hooks: HooksConfig = HooksConfig()
    identity: IdentityConfig = IdentityConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()
    perturbations: PerturbationsConfig = PerturbationsConfig()
    rewards: RewardsConfig = RewardsConfig()
    narration: NarrationConfig = NarrationConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    console: ConsoleConfig = ConsoleConfig()
    server: ServerConfig = ServerConfig()
    snapshots: SnapshotsConfig = SnapshotsConfig()
    logging: LoggingConfig = LoggingConfig()
    observations: ObservationsConfig = ObservationsConfig()
    env: EnvConfig = EnvConfig()
    imitation: ImitationConfig = ImitationConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    stability: StabilityConfig = StabilityConfig()
    promotion: PromotionConfig = PromotionConfig()
    affordances: str = "affordances.yaml"

    @field_validator("stage")
    @classmethod
    def _stage_known(cls, value: str | None, info: ValidationInfo) -> str | None:
        # A field validator (not a model one) so the error names the key path ``stage``.
        stages = info.data.get("stages", {})
        if value is not None and value not in stages:
            known = ", ".join(sorted(stages)) or "none defined"
            raise ValueError(f"stage {value!r} is not defined in stages ({known})")
        return value
