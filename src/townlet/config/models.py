"""Typed configuration models: every tunable number of the town, validated with ranges.

The YAML entry point (``default.yaml``) is validated into :class:`TownletConfig`. Unknown keys are
errors (``extra="forbid"``); ranges are declared on the fields so a bad value names its key path.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from townlet.config.base import (  # noqa: F401 - re-exported: models is the one place to import from
    NEED_NAMES,
    OPTION_NAMES,
    Clock,
    Money,
    NeedName,
    Rate,
    Strict,
    Ticks,
    Unit,
    clock_to_tick,
)
from townlet.config.learning import (  # noqa: F401 - re-exported
    AnnealConfig,
    BehaviourCloningConfig,
    CaptureConfig,
    EvaluationConfig,
    GateConfig,
    ImitationConfig,
    PromotionConfig,
    StabilityConfig,
)
from townlet.config.operations import (  # noqa: F401 - re-exported
    ConsoleConfig,
    FileTransportConfig,
    LoggingConfig,
    NetworkTransportBase,
    RateLimitConfig,
    ServerConfig,
    SnapshotsConfig,
    StdoutTransportConfig,
    TcpTransportConfig,
    TelemetryConfig,
    TelemetryTransportBase,
    TransportConfig,
    WebSocketTransportConfig,
    is_loopback_host,
)
from townlet.config.stakes import (  # noqa: F401 - re-exported
    ArrangedMeetConfig,
    ClosedFacilityConfig,
    ExitRules,
    HomeostasisWeights,
    LifecycleConfig,
    NarrationConfig,
    NarrationGaps,
    PerturbationConfig,
    PerturbationsConfig,
    PriceSpikeConfig,
    RewardsConfig,
    SocialRewardsConfig,
)
from townlet.config.vocabulary import (  # noqa: F401 - the stages re-exported
    RELATIONSHIP_STAGES,
    SOCIAL_REWARD_STAGES,
    WEATHERS,
    RelationshipStage,
    SocialRewardStage,
    VariantName,
    WeatherName,
)


class FeaturesConfig(Strict):
    """Feature flags (SPEC 21); stages switch them on in order."""

    relationships: RelationshipStage = "B"
    social_rewards: SocialRewardStage = "OFF"
    lifecycle: Literal["on", "off"] = "off"
    perturbations: Literal["on", "off"] = "off"
    observations: VariantName = "hybrid"
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

    # The relationship stages (docs/configuration.md): OFF no ties; A ties tracked, not observed; B observed,
    # not rewarded; C1-C3 observed, with the social need and the social rewards that social_rewards names.
    @property
    def ties_observed(self) -> bool:
        """Whether agents see their ties (the social snippet and tie summaries): stages B and C."""
        return self.relationships not in ("OFF", "A")

    @property
    def ties_rewarded(self) -> bool:
        """Whether the social need grows and social rewards are paid: stages C1-C3."""
        return self.relationships.startswith("C")


class PathsConfig(Strict):
    """How distance fields are kept (see townlet.world.fields): windows around goals, chunk routes beyond."""

    chunk: int = Field(48, ge=8, le=4096, description="tiles per side of a route chunk")
    margin: int = Field(16, ge=1, le=4096, description="tiles a field's window extends beyond its chunk")
    route_budget_mb: int = Field(
        512, ge=1, le=65_536, description="MiB the chunk fields may take; chunks double until they fit"
    )


class TownConfig(Strict):
    """Which map file the town is built from, how many copies of it are tiled, and how paths are kept."""

    map: str = "town.yaml"
    scale: int = Field(1, ge=1, le=16)
    paths: PathsConfig = PathsConfig()


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

    decay: dict[NeedName, Rate] = {
        "hunger": 0.0014,
        "hygiene": 0.0006,
        "energy": 0.0008,
        "social": 0.0004,
    }
    asleep_multiplier: dict[NeedName, Annotated[float, Field(ge=0, le=2)]] = {
        "hunger": 0.5,
        "hygiene": 0.5,
        "social": 0.0,
    }
    initial: dict[NeedName, Unit] = {
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
    transitions: dict[WeatherName, dict[WeatherName, Unit]] = {
        "sunny": {"sunny": 0.6, "rainy": 0.25, "cold": 0.15},
        "rainy": {"sunny": 0.5, "rainy": 0.35, "cold": 0.15},
        "cold": {"sunny": 0.5, "rainy": 0.2, "cold": 0.3},
    }
    cold_energy_multiplier: float = Field(1.5, ge=1.0, le=5.0)
    rain_move_cost: float = Field(1.5, ge=1.0, le=10.0, description="ticks per outdoor step while raining")

    @field_validator("transitions")
    @classmethod
    def _rows_sum_to_one(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for state in WEATHERS:
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
    decision_level: Unit = Field(
        0.5, description="a need rising to this deficit is a decision point of semi-MDP policies (as is needs.critical)"
    )
    hygiene_trigger: Unit = 0.5
    energy_trigger: Unit = 0.7
    night_energy: Unit = Field(0.15, description="energy deficit above which the scripted routine goes to bed at night")
    social_trigger: Unit = 0.6
    bedtime: Clock = "22:00"
    wake_time: Clock = "06:00"
    grocery_low_stock: int = Field(3, ge=0, le=100)
    grocery_buy: int = Field(6, ge=1, le=100)
    commute_margin: Ticks = 45
    idle_ticks: Ticks = Field(10, description="how long one Idle option waits")


class MemoryConfig(Strict):
    """Agent memory (SPEC 3): objects that failed an agent, avoided for a while, and the shops it knows.

    Hashed into config_id only when it differs from these defaults (see ``compute_config_id``).
    """

    failure_ticks: Ticks = Field(
        240, description="ticks an agent avoids an object that failed it (0 = no avoidance); then it forgets"
    )
    failure_slots: int = Field(4, ge=1, le=64, description="failures remembered per agent (the oldest goes first)")
    failure_reasons: list[str] = Field(
        [
            "power_lost",
            "water_lost",
            "closed",
            "precondition: stock.",
            "precondition: power_on",
            "precondition: water_on",
        ],
        max_length=64,
        description="step-failure reasons (prefixes) that are the object's fault, not the agent's",
    )


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
    memory: MemoryConfig = MemoryConfig()
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
