"""Tests for personalities: a Halton low-discrepancy spread over [-1, 1] per trait, fixed at spawn."""

from __future__ import annotations

import numpy as np
import pytest

from townlet.config.loader import load_config
from townlet.world.agents import PERSONALITY_TRAITS
from townlet.world.personality import halton_personality, radical_inverse
from townlet.world.rng import RngStreams
from townlet.world.state import World


def spawned_personalities(n: int, seed: int = 0) -> np.ndarray:
    world = World(load_config(overrides=[f"population.agents={n}"]), RngStreams(seed))
    slots = [world.spawn() for _ in range(n)]
    return world.agents.personality[slots].copy()


def test_radical_inverse_mirrors_the_digits() -> None:
    """The van der Corput radical inverse reflects the base-b digits about the radix point."""
    assert [radical_inverse(i, 2) for i in range(1, 8)] == [0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875]
    assert radical_inverse(1, 3) == pytest.approx(1 / 3) and radical_inverse(5, 3) == pytest.approx(2 / 3 + 1 / 9)
    assert radical_inverse(0, 5) == 0.0


def test_halton_personality_has_one_value_per_trait_in_range() -> None:
    """A Halton personality is a float32 vector in [-1, 1) with one entry per trait; too many traits are refused."""
    p = halton_personality(0, len(PERSONALITY_TRAITS))
    assert p.dtype == np.float32 and p.shape == (len(PERSONALITY_TRAITS),)
    for i in range(500):
        v = halton_personality(i, 5, offset=123)
        assert (v >= -1).all() and (v < 1).all()
    with pytest.raises(ValueError):
        halton_personality(0, 9)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_64_spawns_cover_every_octant_of_the_first_three_traits(seed: int) -> None:
    """64 spawned agents fill all 8 sign-octants of (extroversion, forgiveness, ambition), none crowded."""
    p = spawned_personalities(64, seed)
    octant = (p[:, 0] > 0) * 4 + (p[:, 1] > 0) * 2 + (p[:, 2] > 0)
    counts = np.bincount(octant, minlength=8)
    assert counts.min() >= 4 and counts.max() <= 12, counts


@pytest.mark.parametrize("seed", [0, 5])
def test_each_trait_is_spread_evenly_over_minus_one_to_one(seed: int) -> None:
    """Per trait, 64 spawns put 6-10 agents in each eighth of [-1, 1] and average near 0 (low discrepancy)."""
    p = spawned_personalities(64, seed)
    assert (p >= -1).all() and (p <= 1).all()
    for k in range(3):
        bins = np.bincount(np.clip(((p[:, k] + 1) * 4).astype(int), 0, 7), minlength=8)
        assert bins.min() >= 6 and bins.max() <= 10, (PERSONALITY_TRAITS[k], bins)
        assert abs(float(p[:, k].mean())) < 0.05
    assert len({tuple(row) for row in p.tolist()}) == 64, "no two agents share a personality"


def test_personalities_depend_on_the_seed_and_are_reproducible() -> None:
    """The same seed gives the same personalities; a different seed shifts the sequence."""
    a, b, c = spawned_personalities(8, 4), spawned_personalities(8, 4), spawned_personalities(8, 9)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_newcomers_continue_the_sequence_and_personality_is_fixed() -> None:
    """An agent arriving after another left gets the next point of the sequence, not the leaver's one."""
    world = World(load_config(overrides=["population.agents=5"]), RngStreams(0))
    slots = [world.spawn() for _ in range(4)]
    first = world.agents.personality[slots[0]].copy()
    world.remove(slots[0])
    again = world.spawn()
    assert again == slots[0]
    assert not np.array_equal(world.agents.personality[again], first)
    assert np.array_equal(world.agents.personality[again], spawned_personalities(5, seed=0)[4])
