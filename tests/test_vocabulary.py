"""One vocabulary: the world's older names agree with townlet.config.vocabulary, and viewers are served it."""

from __future__ import annotations

from pathlib import Path

from townlet.config.loader import load_config
from townlet.config.town_map import TileKind
from townlet.config.vocabulary import ACTIVITIES, NEEDS, OPTIONS, TILES, TRAITS, WEATHERS, vocabulary
from townlet.policy.options import OPTION_LABELS, Option
from townlet.server.town import town_description
from townlet.sim import Simulation
from townlet.world.agents import PERSONALITY_TRAITS, Activity
from townlet.world.needs import NEED_NAMES
from townlet.world.weather import WEATHER_STATES

CARD = Path(__file__).resolve().parents[1] / "src" / "townlet" / "server" / "static" / "js" / "card.js"


def test_the_worlds_names_are_the_vocabularys() -> None:
    """Activity codes, traits, weathers, tiles, options and needs index the vocabulary's tuples."""
    assert [getattr(Activity, name.upper()) for name in ACTIVITIES] == list(range(len(ACTIVITIES)))
    assert PERSONALITY_TRAITS == TRAITS and WEATHER_STATES == WEATHERS and NEED_NAMES == NEEDS
    assert tuple(k.name.lower() for k in sorted(TileKind)) == TILES
    assert OPTION_LABELS == OPTIONS and len(Option) == len(OPTIONS)


def test_viewers_get_the_vocabulary_and_the_configs_need_thresholds() -> None:
    """/api/town's description carries every vocabulary list and needs.ok_threshold / needs.critical."""
    sim = Simulation(load_config(overrides=["needs.ok_threshold=0.6", "needs.critical=0.9"]), seed=0)
    town = town_description(sim)
    assert {k: town[k] for k in vocabulary()} == vocabulary()
    assert town["tiles"][0] and all(isinstance(row, str) for row in town["tiles"])  # the map rows, not the kinds
    assert town["need_thresholds"] == {"ok": 0.6, "critical": 0.9}


def test_the_agent_card_colours_needs_by_the_served_thresholds() -> None:
    """card.js reads need_thresholds from the town description instead of hard-coded limits."""
    source = CARD.read_text()
    assert "need_thresholds" in source and "[0.5," not in source and "[0.8," not in source
