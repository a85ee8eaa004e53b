"""Config sections for the town's stakes: lifecycle, perturbations, rewards, narration."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from townlet.config.base import Clock, Strict, Ticks, Unit


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
    need_threshold_penalty: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.02, description="per living tick, per need at or above needs.ok_threshold (the KPIs' line for a failed day)"
    )
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
    curiosity: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.05,
        description="with features.curiosity on: bonus for an agent's n-th completion of an affordance, "
        "this / sqrt(n) (novelty, for early curriculum stages)",
    )
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
