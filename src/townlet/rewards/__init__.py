"""Rewards (SPEC 13): per-agent terms from state and events, guardrails, a breakdown and running stats."""

from townlet.rewards.stats import RunningStats
from townlet.rewards.terms import SOCIAL_TERMS, TERMS, Rewards, skipped_meal_pain

__all__ = ["SOCIAL_TERMS", "TERMS", "Rewards", "RunningStats", "skipped_meal_pain"]
