"""The town's vocabulary: names of needs, options, activities, traits, weathers, tiles, targets and stages.

Each tuple's order is the index used in arrays, observations, actions and the telemetry schema, so every module
that names these things imports them from here (the ``Literal`` types too: config keys, console arguments). The
world's older names are aliases of these (``world.agents.PERSONALITY_TRAITS``, ``world.weather.WEATHER_STATES``);
its integer codes (``world.agents.Activity``, ``config.town_map.TileKind``, read by compiled kernels) are kept
in the vocabulary's order by ``tests/test_vocabulary.py``. The live server serves
the vocabulary to viewers with the need thresholds from the config (``GET /api/town``).
"""

from __future__ import annotations

from typing import Literal

NeedName = Literal["hunger", "hygiene", "energy", "social"]
NEEDS: tuple[NeedName, ...] = ("hunger", "hygiene", "energy", "social")
OptionName = Literal["GetFed", "GetClean", "GoToWork", "ShopGroceries", "Sleep", "Socialise", "Idle"]
OPTIONS: tuple[OptionName, ...] = ("GetFed", "GetClean", "GoToWork", "ShopGroceries", "Sleep", "Socialise", "Idle")
ACTIVITIES = ("idle", "moving", "queued", "using", "waiting")
TRAITS = ("extroversion", "forgiveness", "ambition", "patience", "frugality")
OBSERVED_TRAITS = TRAITS[:3]  # what observations show of a personality
WeatherName = Literal["sunny", "rainy", "cold"]
WEATHERS: tuple[WeatherName, ...] = ("sunny", "rainy", "cold")
TILES = ("floor", "wall", "door", "road", "counter", "queue", "grass", "object")
TARGETS = ("shower", "fridge", "till", "home", "work")  # the key targets observations point at
DIRECTIONS = ("north", "east", "south", "west")
VariantName = Literal["full", "hybrid", "compact"]
VARIANTS: tuple[VariantName, ...] = ("full", "hybrid", "compact")  # observation variants
RelationshipStage = Literal["OFF", "A", "B", "C1", "C2", "C3"]
RELATIONSHIP_STAGES: tuple[RelationshipStage, ...] = ("OFF", "A", "B", "C1", "C2", "C3")
SocialRewardStage = Literal["OFF", "C1", "C2", "C3"]
SOCIAL_REWARD_STAGES: tuple[SocialRewardStage, ...] = ("OFF", "C1", "C2", "C3")


def vocabulary() -> dict[str, list[str]]:
    """The vocabulary as JSON-ready lists, by name (what viewers are served)."""
    return {
        "needs": list(NEEDS),
        "options": list(OPTIONS),
        "activities": list(ACTIVITIES),
        "traits": list(TRAITS),
        "weathers": list(WEATHERS),
        "tile_kinds": list(TILES),
    }
