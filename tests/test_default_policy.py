"""The learned policy shipped in the package: it loads, is the one its scorecard describes, and beats random."""

from __future__ import annotations

import tomllib
from pathlib import Path

from townlet.config.loader import load_config
from townlet.policy import shipped
from townlet.policy.compat import check_config
from townlet.training.evaluation import evaluate

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_policy_loads_and_its_hash_is_the_scorecards() -> None:
    """policy.pt (under 2 MB) loads, is the policy scorecard.json names, and fits the shipped town as it is now."""
    checkpoint = shipped.load_default()
    check_config(checkpoint, load_config())  # a change to the town's config needs the policy trained again
    card = shipped.default_card()
    assert checkpoint.policy_hash == card["policy_hash"]
    assert shipped.CHECKPOINT_FILE.stat().st_size < 2 * 1024 * 1024
    assert card["commands"]["train"].startswith("townlet ") and card["variant"] == checkpoint.variant
    assert set(card["scorecards"]) == {"default", "scripted", "random"}


def test_the_shipped_policy_is_package_data() -> None:
    """pyproject.toml ships both files, so an installed townlet has them."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["townlet"]
    assert {"policy/default/policy.pt", "policy/default/scorecard.json"} <= set(data)


def test_the_shipped_policy_beats_random_by_a_wide_margin_on_a_short_evaluation() -> None:
    """Two fixed-seed days: far better attendance and need care than random, and no more collapses."""
    days = {"seeds": [1001], "days": 2}
    learned = evaluate(shipped.load_default(), **days).scorecard
    rand = evaluate("random", **days).scorecard
    assert learned["attendance"] >= rand["attendance"] + 0.3, (learned, rand)
    assert learned["need_ok_share"] >= rand["need_ok_share"] + 0.1, (learned, rand)
    assert learned["collapses"] <= rand["collapses"], (learned, rand)
    card = shipped.default_card()["scorecards"]  # and the recorded full suite says the same
    assert card["default"]["attendance"] >= card["random"]["attendance"] + 0.3
