"""Config sections for learning and release: imitation, evaluation, stability, promotion."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    model_validator,
)

from townlet.config.base import Clock, Money, Strict, Ticks, Unit


class CaptureConfig(Strict):
    """Scripted-trajectory capture for behaviour cloning (``townlet capture``): episodes and their stresses."""

    scenarios: list[Literal["routine", "low_money", "outage", "price_spike", "queue_contention", "lateness"]] = [
        "routine",
        "low_money",
        "outage",
        "price_spike",
        "queue_contention",
        "lateness",
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
    epochs: int = Field(
        50,
        ge=1,
        le=10_000,
        description="passes over the training episodes (a capture holds only decision points: ~10k samples)",
    )
    batch_size: int = Field(256, ge=1, le=1_000_000)
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 2e-3
    hidden: int = Field(128, ge=8, le=4096, description="hidden width of the MLP")
    target_accuracy: Unit = Field(
        0.8,
        description="held-out accuracy the clone must reach at decision points (the routine's own coin flips "
        "between Socialise and Idle cap it near 0.96; docs/evaluation.md)",
    )
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
        "attendance",
        "need_ok_share",
        "self_sufficiency",
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
    social_kpis: list[str] = Field(
        ["relationship_formation", "conflict_escalation"],
        description="KPIs judged only on scenarios whose features.social_rewards is at least social_from",
    )
    social_from: Literal["C1", "C2", "C3"] = Field(
        "C1", description="the social reward stage from which the social KPIs gate (no policy is social before)"
    )


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
    baseline_cache: str = Field(
        "~/.townlet/baselines", description="where the live town keeps measured baselines (per config_id and seed)"
    )


class PromotionConfig(Strict):
    """Release vs shadow: promotion after passing windows and the evaluation suite; the registry."""

    windows_to_promote: int = Field(2, ge=1, le=1000, description="consecutive passing shadow windows needed")
    probation_windows: int = Field(
        2, ge=0, le=1000, description="windows after a promotion in which a failing release is rolled back"
    )
    registry: str = Field("~/.townlet/registry.sqlite", description="the SQLite policy registry")
    live_rollback: bool = Field(
        True, description="a canary firing on the live town's release rolls back to the release before (else: pin)"
    )
    policy_threads: int = Field(
        1, ge=0, le=256, description="torch CPU threads of a learned policy driving a town (0: torch's default)"
    )
