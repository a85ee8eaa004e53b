"""Tests for ties between agents: capacity and eviction, personality scaling, decay, chat odds, stages."""

from __future__ import annotations

import numpy as np
import pytest

from townlet.config.loader import load_config
from townlet.world.events import EventKind
from townlet.world.relationships import FAMILIARITY, RIVALRY, TRUST
from townlet.world.rng import RngStreams
from townlet.world.state import World

EXTROVERSION, FORGIVENESS, AMBITION = 0, 1, 2


def make_world(*overrides: str, agents: int = 10, seed: int = 0) -> World:
    """A world with ``agents`` spawned agents, all with a neutral (all-zero) personality."""
    world = World(load_config(overrides=[f"population.agents={agents}", *overrides]), RngStreams(seed))
    for _ in range(agents):
        world.spawn()
    world.agents.personality[:] = 0.0
    return world


def ties_of(world: World, slot: int) -> set[int]:
    return {int(o) for o in world.relationships.other[slot] if o >= 0}


def set_tie(world: World, slot: int, other: int, trust: float, fam: float, rivalry: float = 0.0) -> None:
    """Write one tie directly (what a console ``set_rel`` would do)."""
    rel = world.relationships
    hit = np.flatnonzero(rel.other[slot] == other)
    k = int(hit[0]) if len(hit) else int(np.flatnonzero(rel.other[slot] < 0)[0])
    rel.other[slot, k] = other
    rel.values[slot, k] = (trust, fam, rivalry)


def test_an_agent_holds_at_most_k_ties() -> None:
    """However many agents one meets, it keeps at most max_ties (K = 6) ties."""
    world = make_world(agents=12)
    rel = world.relationships
    assert rel.k == world.config.relationships.max_ties == 6
    for other in range(1, 12):
        rel.apply(world, 0, other, "good_chat")
    assert len(ties_of(world, 0)) == 6
    assert rel.other.shape[1] == 6


def test_weakest_tie_is_evicted_for_a_stronger_new_one() -> None:
    """With all K ties in use, a new tie stronger than the weakest replaces exactly that weakest one."""
    world = make_world()
    rel = world.relationships
    rel.apply(world, 0, 1, "queued_politely")  # the faint-ish one (strength 0.03)
    for other in range(2, 7):
        for _ in range(other):
            rel.apply(world, 0, other, "good_chat")
    assert ties_of(world, 0) == {1, 2, 3, 4, 5, 6}
    before = {o: rel.tie(0, o).copy() for o in range(2, 7)}
    rel.apply(world, 0, 7, "good_chat")
    assert ties_of(world, 0) == {2, 3, 4, 5, 6, 7}
    assert rel.tie(0, 1) is None
    assert rel.tie(0, 7)[FAMILIARITY] == pytest.approx(0.1)
    for other, values in before.items():
        assert np.array_equal(rel.tie(0, other), values), "other ties are untouched"


def test_new_tie_weaker_than_every_existing_one_is_refused() -> None:
    """When full of strong ties, a weak new tie is not created and nothing is evicted."""
    world = make_world()
    rel = world.relationships
    for other in range(1, 7):
        rel.apply(world, 0, other, "good_chat")
        rel.apply(world, 0, other, "good_chat")
    snapshot = rel.values[0].copy()
    rel.apply(world, 0, 8, "queued_politely")
    assert ties_of(world, 0) == {1, 2, 3, 4, 5, 6}
    assert np.array_equal(rel.values[0], snapshot)


def test_faint_new_tie_is_not_created_even_with_room() -> None:
    """An event whose delta is below the faint level never starts a tie, though it still updates an existing one."""
    world = make_world("relationships.faint=0.05")
    rel = world.relationships
    rel.apply(world, 0, 1, "queued_politely")  # (0.02, 0.03, 0): faint at faint=0.05
    assert rel.tie(0, 1) is None and not ties_of(world, 0)
    rel.apply(world, 0, 1, "good_chat")
    rel.apply(world, 0, 1, "queued_politely")
    assert rel.tie(0, 1)[TRUST] == pytest.approx(0.08 + 0.02)


def test_ties_are_one_directional_unless_applied_as_a_pair() -> None:
    """One-way apply changes only the actor's view; apply_pair changes both agents' ties."""
    world = make_world()
    rel = world.relationships
    rel.apply(world, 0, 1, "good_chat")
    assert rel.tie(0, 1) is not None and rel.tie(1, 0) is None
    rel.apply_pair(world, 2, 3, "shared_meal")
    assert np.array_equal(rel.tie(2, 3), rel.tie(3, 2))
    assert rel.tie(2, 3)[TRUST] == pytest.approx(0.05)


def test_tie_values_stay_within_minus_one_and_one() -> None:
    """Repeating an event many times saturates the tie components at +/-1."""
    world = make_world()
    rel = world.relationships
    for _ in range(40):
        rel.apply(world, 0, 1, "took_my_shift")
        rel.apply(world, 0, 2, "helped_when_late")
    assert rel.tie(0, 1)[TRUST] == -1.0 and rel.tie(0, 1)[RIVALRY] == 1.0
    assert rel.tie(0, 2)[TRUST] == 1.0
    assert np.abs(rel.values).max() <= 1.0


def test_forgiveness_softens_negative_deltas_only() -> None:
    """A forgiving agent loses less trust from a failed chat than an unforgiving one; positives are unchanged."""
    world = make_world()
    rel = world.relationships
    world.agents.personality[0, FORGIVENESS] = 1.0
    world.agents.personality[1, FORGIVENESS] = 0.0
    world.agents.personality[2, FORGIVENESS] = -1.0
    for slot in (0, 1, 2):
        rel.apply(world, slot, 5, "failed_chat")  # (-0.04, +0.05, +0.03)
    forgiving, neutral, grudging = rel.tie(0, 5), rel.tie(1, 5), rel.tie(2, 5)
    assert neutral[TRUST] == pytest.approx(-0.04)
    assert forgiving[TRUST] == pytest.approx(-0.02)
    assert abs(forgiving[TRUST]) < abs(neutral[TRUST])
    assert grudging[TRUST] == pytest.approx(neutral[TRUST]), "negative forgiveness does not harden"
    assert forgiving[FAMILIARITY] == neutral[FAMILIARITY] and forgiving[RIVALRY] == neutral[RIVALRY]


def test_extroversion_adds_familiarity() -> None:
    """The same chat gives an extrovert more familiarity than a neutral agent, and an introvert less."""
    world = make_world()
    rel = world.relationships
    for slot, trait in ((0, 1.0), (1, 0.0), (2, -1.0)):
        world.agents.personality[slot, EXTROVERSION] = trait
        rel.apply(world, slot, 5, "good_chat")
    fam = [float(rel.tie(s, 5)[FAMILIARITY]) for s in (0, 1, 2)]
    assert fam[0] > fam[1] > fam[2] > 0
    assert fam[1] == pytest.approx(0.1)
    assert rel.tie(0, 5)[TRUST] == rel.tie(1, 5)[TRUST], "trust does not depend on extroversion"


def test_ambition_amplifies_rivalry_for_work_events_only() -> None:
    """An ambitious agent gains more rivalry from a taken shift, but not from a blocked shower."""
    world = make_world()
    rel = world.relationships
    world.agents.personality[0, AMBITION] = 1.0
    for slot in (0, 1):
        rel.apply(world, slot, 5, "took_my_shift")
        rel.apply(world, slot, 6, "blocked_shower")
    assert rel.tie(1, 5)[RIVALRY] == pytest.approx(0.1)
    assert rel.tie(0, 5)[RIVALRY] > rel.tie(1, 5)[RIVALRY]
    assert rel.tie(0, 6)[RIVALRY] == rel.tie(1, 6)[RIVALRY] == pytest.approx(0.08)


def test_ties_decay_toward_zero_once_per_in_sim_hour() -> None:
    """Tie components shrink by decay_per_hour at each hour boundary, keeping their sign, and not in between."""
    world = make_world()
    rel = world.relationships
    set_tie(world, 0, 1, 0.5, 0.4, -0.3)
    start = rel.tie(0, 1).copy()
    factor = 1.0 - world.config.relationships.decay_per_hour
    hours = 0
    for tick in range(1, 601):
        world.tick = tick
        before = rel.tie(0, 1).copy()
        rel.update(world)
        if not np.array_equal(before, rel.tie(0, 1)):
            hours += 1
    assert hours == int(600 / (world.ticks_per_day / 24))  # 14 hour boundaries in 600 ticks
    assert np.allclose(rel.tie(0, 1), start * factor**hours, rtol=1e-5)
    assert np.all(np.sign(rel.tie(0, 1)) == np.sign(start))
    assert np.all(np.abs(rel.tie(0, 1)) < np.abs(start))


def test_faint_ties_are_dropped_by_decay() -> None:
    """A barely-there tie fades below the faint level within a day and is dropped; a strong one survives."""
    world = make_world()
    rel = world.relationships
    set_tie(world, 0, 1, 0.0, 0.025)
    set_tie(world, 0, 2, 0.6, 0.6)
    for tick in range(1, world.ticks_per_day + 1):
        world.tick = tick
        rel.update(world)
    assert rel.tie(0, 1) is None
    assert ties_of(world, 0) == {2}
    assert np.count_nonzero(rel.values[0, rel.other[0] < 0]) == 0, "dropped ties leave zeroed rows"


def chat_success_rate(world: World, trust: float, fam: float, draws: int = 1500) -> float:
    """Fraction of chats from slot 0 to slot 1 that succeed, resetting the tie before each attempt."""
    wins = 0
    for _ in range(draws):
        set_tie(world, 0, 1, trust, fam)
        wins += world.relationships.chat(world, 0, 1)
        world.events.clear()
    return wins / draws


def test_chat_success_odds_rise_with_trust_and_familiarity() -> None:
    """Over many seeded draws, chats succeed more often as trust, then familiarity, rises."""
    world = make_world(seed=11)
    hostile = chat_success_rate(world, trust=-0.8, fam=0.0)
    stranger = chat_success_rate(world, trust=0.0, fam=0.0)
    familiar = chat_success_rate(world, trust=0.0, fam=0.9)
    friend = chat_success_rate(world, trust=0.8, fam=0.9)
    # each gap is many standard errors (<= 0.013 at n=1500)
    assert hostile + 0.15 < stranger < familiar - 0.1
    assert familiar + 0.05 < friend
    assert 0.05 < hostile and friend < 1.0


def test_chat_updates_both_ties_and_emits_a_chat_event() -> None:
    """A chat leaves both partners with a tie and reports its outcome as a CHAT event."""
    world = make_world()
    success = world.relationships.chat(world, 0, 1)
    assert world.relationships.tie(0, 1) is not None and world.relationships.tie(1, 0) is not None
    chats = [e for e in world.events if e.kind is EventKind.CHAT]
    assert len(chats) == 1 and (chats[0].agent, chats[0].other) == (0, 1)
    assert chats[0].value == float(success)


def test_chat_outcomes_are_reproducible_for_a_seed() -> None:
    """Two worlds with the same seed get the same sequence of chat outcomes."""
    runs = []
    for _ in range(2):
        world = make_world(seed=5)
        runs.append([world.relationships.chat(world, 0, 1) for _ in range(50)])
    assert runs[0] == runs[1]
    assert 0 < sum(runs[0]) < 50


def test_stage_off_ignores_social_events() -> None:
    """With relationships OFF, events, chats and decay never create or change a tie."""
    world = make_world("features.relationships='OFF'")
    rel = world.relationships
    assert not rel.enabled
    for event in world.config.relationships.deltas:
        rel.apply(world, 0, 1, event)
        rel.apply_pair(world, 2, 3, event)
    rel.chat(world, 0, 1)
    for tick in range(1, 100):
        world.tick = tick
        rel.update(world)
    assert (rel.other == -1).all() and not rel.values.any()
    assert not [e for e in world.events if e.kind is EventKind.TIE_CHANGED]


def test_unknown_event_and_self_ties_are_ignored() -> None:
    """An event name not in the config, or an agent's event toward itself, creates no tie."""
    world = make_world()
    world.relationships.apply(world, 0, 1, "stole_my_bike")
    world.relationships.apply(world, 0, 0, "good_chat")
    assert not ties_of(world, 0)


def test_forget_erases_ties_both_ways() -> None:
    """Forgetting removes the agent's own ties and every tie pointing at it, and leaves unrelated ties alone."""
    world = make_world()
    rel = world.relationships
    rel.apply_pair(world, 0, 1, "good_chat")
    rel.apply_pair(world, 0, 2, "shared_meal")
    rel.apply_pair(world, 1, 2, "good_chat")
    rel.forget(0)
    assert not ties_of(world, 0) and not rel.values[0].any()
    assert 0 not in rel.other
    assert ties_of(world, 1) == {2} and ties_of(world, 2) == {1}


def test_leaving_the_town_erases_ties_to_the_leaver() -> None:
    """Removing an agent from the world drops every tie that pointed at its slot."""
    world = make_world()
    rel = world.relationships
    for other in (1, 2, 3):
        rel.apply_pair(world, 0, other, "good_chat")
    world.remove(0)
    assert 0 not in rel.other
    newcomer = world.spawn()
    assert newcomer == 0, "the freed slot is reused"
    assert not ties_of(world, 1) and not ties_of(world, newcomer)


def test_top_lists_friends_by_trust_and_rivals_by_rivalry() -> None:
    """top() returns the strongest friends by trust and strongest rivals by rivalry, best first."""
    world = make_world()
    set_tie(world, 0, 1, 0.2, 0.1, 0.0)
    set_tie(world, 0, 2, 0.7, 0.1, 0.0)
    set_tie(world, 0, 3, -0.5, 0.1, 0.6)
    set_tie(world, 0, 4, 0.0, 0.1, 0.3)
    friends = [o for o, _ in world.relationships.top(0, 2, by=TRUST)]
    rivals = [o for o, _ in world.relationships.top(0, 2, by=RIVALRY)]
    assert friends == [2, 1] and rivals == [3, 4]
    assert world.relationships.top(5) == []


@pytest.mark.parametrize("tpd", [96, 100, 997, 1000, 1440])
def test_hourly_decay_runs_on_exactly_the_ticks_that_start_an_hour(tpd: int) -> None:
    """The cached quiet span decays ties on the same ticks as int(t / ticks_per_hour) changing, restores included."""
    world = make_world(f"time.ticks_per_day={tpd}")
    rel = world.relationships
    set_tie(world, 0, 1, 0.5, 0.5)
    tph = tpd / 24.0
    expected = [t for t in range(1, 3 * tpd) if int(t / tph) != int((t - 1) / tph)]
    decayed = []
    for t in [*range(3 * tpd), *range(tpd // 2, tpd)]:  # then back in time, as a snapshot restore does
        world.tick = t
        before = rel.values[0, 0, TRUST]
        rel.update(world)
        if rel.values[0, 0, TRUST] != before:
            decayed.append(t)
        rel.values[0, 0] = (0.5, 0.5, 0.0)
    assert decayed == expected + [t for t in expected if tpd // 2 <= t < tpd]
