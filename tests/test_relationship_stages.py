"""Relationship stages A and B differ as documented, and features.curiosity pays a novelty bonus."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from townlet.config.loader import load_config
from townlet.observations.encoder import ObservationEncoder
from townlet.world.events import EventKind

SHIPPED = Path(__file__).resolve().parents[1] / "src" / "townlet" / "policy" / "default" / "scorecard.json"


def _social_columns(enc: ObservationEncoder) -> list[int]:
    tied = ("social.", "local.mean_", "local.max_", "flag.rival_in_queue")
    return [i for f in enc.layout.features if f.name.startswith(tied) for i in range(f.start, f.stop, f.step)]


def _ties_and_social_obs(make_sim, stage: str) -> tuple[int, float, int]:
    sim = make_sim(seed=2, overrides=[f"features.relationships={stage}"])
    sim.run(700)
    enc = ObservationEncoder(sim.world, "hybrid")
    enc.encode()
    seen = np.abs(enc.buffer[:, _social_columns(enc)]).sum()
    return int((sim.world.relationships.other >= 0).sum()), float(seen), enc.layout.size


def test_stage_a_tracks_ties_but_does_not_show_them(make_sim) -> None:
    """Stage A forms ties like B but its observations' social snippet reads 0; B shows them; same layout."""
    ties_a, seen_a, size_a = _ties_and_social_obs(make_sim, "A")
    ties_b, seen_b, size_b = _ties_and_social_obs(make_sim, "B")
    assert ties_a > 0 and ties_a == ties_b
    assert seen_a == 0.0 and seen_b > 0.0
    assert size_a == size_b


def test_curiosity_pays_a_shrinking_bonus_for_each_completion(make_sim) -> None:
    """Curiosity on: an agent's n-th completion of an affordance earns rewards.curiosity / sqrt(n); off: nothing."""
    on = make_sim(seed=1, overrides=["features.curiosity=on"])
    weight = on.config.rewards.curiosity
    expected: dict[int, float] = {}
    counts: dict[tuple[int, str], int] = {}
    paid = 0.0
    for _ in range(1200):
        result = on.step()
        expected.clear()
        for e in result.events:
            if e.kind is EventKind.AFFORDANCE_COMPLETED:
                counts[e.agent, e.detail] = counts.get((e.agent, e.detail), 0) + 1
                expected[e.agent] = expected.get(e.agent, 0.0) + weight / math.sqrt(counts[e.agent, e.detail])
        got = on.rewards.breakdown["curiosity"]
        for slot in range(len(got)):
            assert math.isclose(float(got[slot]), expected.get(slot, 0.0), rel_tol=1e-5, abs_tol=1e-7)
        paid += float(got.sum())
    assert paid > 0.0 and max(counts.values()) > 1
    off = make_sim(seed=1)
    for _ in range(300):
        off.step()
        assert not off.rewards.breakdown["curiosity"].any()


def test_the_curiosity_weight_at_its_default_keeps_every_config_id() -> None:
    """rewards.curiosity at its default is left out of config_id: the shipped policy's config still matches."""
    shipped = json.loads(SHIPPED.read_text())["config_id"]
    assert load_config().config_id == shipped
    assert load_config(overrides=["rewards.curiosity=0.1"]).config_id != shipped
