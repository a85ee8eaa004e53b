"""Rewards: a hand-computed case for every term and every guardrail, the breakdown, stats, and the scale."""

from __future__ import annotations

import numpy as np
import pytest

from townlet.rewards import TERMS, skipped_meal_pain
from townlet.world.events import EventKind

NO_NEEDS = [f"rewards.homeostasis.{n}=0" for n in ("hunger", "hygiene", "energy", "social")]


def emit_next_tick(sim, kind, **fields) -> None:
    """Make ``kind`` happen at the start of the next tick (through the command queue)."""
    sim.enqueue(lambda w: w.emit(kind, **fields))


def terms_of(sim, slot: int) -> dict[str, float]:
    return {t: float(sim.rewards.breakdown[t][slot]) for t in TERMS}


def test_homeostasis_is_minus_the_weighted_squared_deficits(make_sim) -> None:
    """Homeostasis = -(0.02 h^2 + 0.01 y^2 + 0.015 e^2 + 0.01 s^2) of the needs after this tick's decay."""
    sim = make_sim(agents=2, manual=True)
    a = sim.world.agents
    a.needs[0] = [0.5, 0.4, 0.3, 0.0]
    sim.step()
    h, y, e, s = (float(x) for x in a.needs[0])
    expected = -(0.02 * h * h + 0.01 * y * y + 0.015 * e * e + 0.01 * s * s)
    assert terms_of(sim, 0)["homeostasis"] == pytest.approx(expected, rel=1e-5)
    assert h == pytest.approx(0.5 + 0.0014, abs=1e-6), "computed after the needs grew"


def test_need_threshold_penalty_fires_per_need_at_or_above_the_ok_line_only(make_sim) -> None:
    """-0.02 per need at or above needs.ok_threshold (0.7) after this tick's decay; nothing below it."""
    sim = make_sim(agents=3, manual=True)
    a = sim.world.agents
    a.needs[0] = [0.69, 0.5, 0.3, 0.0]  # hunger reaches 0.6914: over the line
    a.needs[1] = [0.75, 0.9, 0.7, 0.1]  # three needs over
    a.needs[2] = [0.6, 0.69, 0.5, 0.2]  # all below after the decay
    sim.step()
    assert terms_of(sim, 0)["need_threshold"] == 0.0, "0.6914 is still below 0.7"
    assert terms_of(sim, 1)["need_threshold"] == pytest.approx(-0.06)
    assert terms_of(sim, 2)["need_threshold"] == 0.0
    a.needs[0, 0] = 0.6995
    sim.step()
    assert a.needs[0, 0] >= 0.7 and terms_of(sim, 0)["need_threshold"] == pytest.approx(-0.02)
    assert terms_of(sim, 5)["need_threshold"] == 0.0, "empty slots pay nothing"
    off = make_sim(agents=1, manual=True, overrides=["rewards.need_threshold_penalty=0"])
    off.world.agents.needs[0] = [0.9, 0.9, 0.9, 0.9]
    off.step()
    assert float(off.rewards.breakdown["need_threshold"][0]) == 0.0


def test_survival_bonus_for_each_living_agent_and_nothing_for_empty_slots(make_sim) -> None:
    """Every living agent gets rewards.survival per tick; empty slots get exactly 0 everywhere."""
    sim = make_sim(agents=2, manual=True)
    sim.step()
    assert terms_of(sim, 1)["survival"] == pytest.approx(0.01)
    empty = 5
    assert not sim.world.agents.alive[empty]
    assert all(v == 0.0 for v in terms_of(sim, empty).values()) and sim.rewards.last[empty] == 0.0


def test_wage_term_pays_half_a_point_per_meal_unit_earned(make_sim, use_now) -> None:
    """An agent working its shift earns wage_per_tick and is rewarded 0.5 x that in the wage term."""
    sim = make_sim(agents=1, manual=True)
    sim.step()  # jobs are handed out in the first tick
    w, a = sim.world, sim.world.agents
    job = int(a.job[0])
    assert job >= 0
    w.tick = int(w.employment.start[job]) + 5
    use_now(w, 0, int(w.employment.station[job]), "work")
    sim.step()  # starts working
    sim.step()
    assert terms_of(sim, 0)["wage"] == pytest.approx(0.5 * float(w.employment.wage_per_tick[job]), rel=1e-5)


def test_punctuality_is_a_triangle_of_30_sim_minutes_either_side(make_sim) -> None:
    """Full bonus on the dot, half at 15 minutes early or late, nothing at 30 minutes or more."""
    sim = make_sim(agents=1, manual=True)
    sim.step()
    w, r = sim.world, sim.rewards
    start = int(w.employment.start[int(w.agents.job[0])])
    minute = w.ticks_per_day / 1440
    for offset, share in ((0, 1.0), (15, 0.5), (-15, 0.5), (30, 0.0), (-45, 0.0), (400, 0.0)):
        w.tick = start + round(offset * minute)
        expected = r.punctuality_peak * max(0.0, 1 - abs(round(offset * minute)) / (30 * minute))
        assert r.punctuality(w, 0) == pytest.approx(expected, abs=1e-9)
        assert r.punctuality(w, 0) == pytest.approx(share * r.punctuality_peak, abs=0.05 * r.punctuality_peak)
    assert r.punctuality_peak == pytest.approx(0.1)


def test_a_shift_arrival_event_pays_the_punctuality_bonus(make_sim) -> None:
    """A SHIFT_ARRIVED event on the dot puts the full peak into that agent's punctuality term."""
    sim = make_sim(agents=2, manual=True)
    sim.step()
    w = sim.world
    w.tick = int(w.employment.start[int(w.agents.job[1])])
    emit_next_tick(sim, EventKind.SHIFT_ARRIVED, agent=1)
    sim.step()
    assert terms_of(sim, 1)["punctuality"] == pytest.approx(0.1)
    assert terms_of(sim, 0)["punctuality"] == 0.0


def test_punctuality_bonus_is_smaller_than_one_skipped_meals_pain(make_sim, use_now) -> None:
    """Under default weights, skipping a meal costs more (homeostasis and need threshold) than an arrival pays."""
    totals = []
    for eat in (True, False):
        sim = make_sim(agents=1, manual=True)
        w, a = sim.world, sim.world.agents
        a.needs[0] = [0.45, 0.0, 0.0, 0.0]
        if eat:
            use_now(w, 0, int(w.objects.of_type_in_place("stove", int(a.home[0]))[0]), "cook_meal")
        total = 0.0
        for _ in range(500):
            sim.step()
            total += float(sim.rewards.breakdown["homeostasis"][0] + sim.rewards.breakdown["need_threshold"][0])
        totals.append(total)
    pain = totals[0] - totals[1]
    assert pain > 2.0, "a skipped meal hurts"
    peak = sim.rewards.punctuality_peak
    assert peak < pain and peak < 0.5 * skipped_meal_pain(sim.config)
    assert skipped_meal_pain(sim.config) == pytest.approx(pain, rel=0.25), "the cap's yardstick matches a real meal"


def test_punctuality_is_capped_below_the_skipped_meal_even_if_configured_higher(make_sim) -> None:
    """A configured bonus above the cap is cut to punctuality_cap_share of one skipped meal's pain."""
    sim = make_sim(
        agents=1,
        manual=True,
        overrides=[
            "rewards.punctuality=1.0",
            "rewards.homeostasis.hunger=0.001",
            "rewards.need_threshold_penalty=0.001",
        ],
    )
    pain = skipped_meal_pain(sim.config)
    assert sim.rewards.punctuality_peak == pytest.approx(0.5 * pain) and sim.rewards.punctuality_peak < pain


def test_faint_eviction_and_terminal_penalties(make_sim) -> None:
    """A collapse costs 0.1, an eviction notice 0.1, leaving town 0.2 (in the leaver's slot)."""
    sim = make_sim(agents=3, manual=True, overrides=NO_NEEDS)
    emit_next_tick(sim, EventKind.COLLAPSE, agent=0)
    emit_next_tick(sim, EventKind.EVICTION_NOTICE, agent=1)
    sim.enqueue(lambda w: sim.lifecycle.exit(2, "console"))
    sim.step()
    assert terms_of(sim, 0)["faint"] == pytest.approx(-0.1)
    assert terms_of(sim, 1)["eviction"] == pytest.approx(-0.1)
    assert terms_of(sim, 2)["terminal"] == pytest.approx(-0.2)
    assert sim.rewards.last[0] == pytest.approx(-0.09), "the penalty plus the survival bonus"
    assert sim.rewards.last[2] == pytest.approx(-0.2) and not sim.world.agents.alive[2]


def test_never_a_positive_reward_on_death(make_sim, run) -> None:
    """Even with a huge survival bonus the reward on the exit tick is the terminal penalty alone."""
    sim = make_sim(agents=2, manual=True, overrides=NO_NEEDS + ["rewards.survival=0.5", "rewards.wage=10"])
    run(sim, 3)
    sim.enqueue(lambda w: sim.lifecycle.exit(0, "console"))
    sim.step()
    assert sim.rewards.last[0] == pytest.approx(-0.2)
    assert sim.rewards.last[1] == pytest.approx(0.2), "the living one is clipped at +0.2"


def test_potential_shaping_is_gamma_phi_next_minus_phi(make_sim) -> None:
    """With shaping on, shaping = 0.99 * phi(s') - phi(s), phi being the homeostasis term; 0 on a first tick."""
    sim = make_sim(agents=1, manual=True, overrides=["rewards.potential_shaping=true"])
    sim.step()
    assert terms_of(sim, 0)["shaping"] == pytest.approx(-0.01 * terms_of(sim, 0)["homeostasis"], rel=1e-4)
    before = terms_of(sim, 0)["homeostasis"]
    sim.step()
    after = terms_of(sim, 0)["homeostasis"]
    assert terms_of(sim, 0)["shaping"] == pytest.approx(0.99 * after - before, rel=1e-4)


def test_social_rewards_by_stage(make_sim) -> None:
    """C1 pays successful chats; C2 adds polite queueing and conflict penalties; C3 adds mean trust; OFF none."""
    events = [
        (EventKind.CHAT, {"agent": 0, "other": 1, "value": 1.0}),
        (EventKind.CHAT, {"agent": 2, "other": 3, "value": 0.0}),
        (EventKind.QUEUE_JOINED, {"agent": 2, "other": 0}),
        (EventKind.RESERVATION_EXPIRED, {"agent": 3}),
        (EventKind.GHOST_STEP, {"agent": 1, "other": 2}),
    ]
    got = {}
    for stage in ("OFF", "C1", "C2", "C3"):
        sim = make_sim(
            agents=4, manual=True, overrides=[f"features.social_rewards={stage}", "features.relationships=C3"]
        )
        w = sim.world
        w.relationships.apply(w, 0, 1, "good_chat")
        w.relationships.apply(w, 0, 2, "failed_chat")
        for kind, fields in events:
            emit_next_tick(sim, kind, **fields)
        sim.step()
        got[stage] = {
            t: [round(terms_of(sim, s)[t], 6) for s in range(4)] for t in ("chat", "conflict", "relationship")
        }
        if stage == "C3":
            trust = w.relationships.values[0, :2, 0]
            expected = 0.002 * float(trust.mean())
    assert got["OFF"] == {t: [0.0] * 4 for t in ("chat", "conflict", "relationship")}
    assert got["C1"]["chat"] == [0.05, 0.05, 0.0, 0.0] and got["C1"]["conflict"] == [0.0] * 4
    assert got["C2"]["chat"] == got["C1"]["chat"]
    assert got["C2"]["conflict"] == [0.0, -0.05, 0.01, -0.05]
    assert got["C2"]["relationship"] == [0.0] * 4
    assert got["C3"]["relationship"][0] == pytest.approx(expected, abs=1e-6) and expected != 0
    assert got["C3"]["relationship"][3] == 0.0, "no ties, no quality term"


@pytest.mark.parametrize("relationships", ["OFF", "A", "B", "C1"])
def test_social_rewards_are_paid_from_relationship_stage_c(make_sim, relationships: str) -> None:
    """social_rewards C3 pays chats only at relationship stages C1-C3 (B: observed, not rewarded)."""
    sim = make_sim(
        agents=2, manual=True, overrides=["features.social_rewards=C3", f"features.relationships={relationships}"]
    )
    emit_next_tick(sim, EventKind.CHAT, agent=0, other=1, value=1.0)
    sim.step()
    paid = terms_of(sim, 0)["chat"]
    assert paid == (pytest.approx(0.05) if relationships == "C1" else 0.0)


def test_social_terms_are_ignored_while_a_need_is_critical(make_sim) -> None:
    """A successful chat pays nothing to an agent with a need above 0.85; its partner still gets paid."""
    sim = make_sim(agents=2, manual=True, overrides=["features.social_rewards=C1", "features.relationships=C1"])
    sim.world.agents.needs[0, 1] = 0.9
    emit_next_tick(sim, EventKind.CHAT, agent=0, other=1, value=1.0)
    sim.step()
    assert terms_of(sim, 0)["chat"] == 0.0 and terms_of(sim, 1)["chat"] == pytest.approx(0.05)


def test_reward_is_clipped_to_0_2_per_tick(make_sim) -> None:
    """A raw +0.5 becomes +0.2 and a raw -0.6 becomes -0.2; the guardrails entry holds the difference."""
    sim = make_sim(
        agents=2,
        manual=True,
        overrides=NO_NEEDS + ["rewards.survival=0.5", "rewards.faint_penalty=1.0", "rewards.exit_guard_ticks=0"],
    )
    sim.step()
    emit_next_tick(sim, EventKind.COLLAPSE, agent=1)
    sim.step()
    assert sim.rewards.last[0] == pytest.approx(0.2) and sim.rewards.last[1] == pytest.approx(-0.2)
    assert terms_of(sim, 0)["guardrails"] == pytest.approx(-0.3)
    assert terms_of(sim, 1)["guardrails"] == pytest.approx(0.3)


def test_episode_cap_stops_positive_rewards_at_the_limit(make_sim, run) -> None:
    """With clip_episode 1 and +0.2 a tick, the return stops at 1.0 after 5 ticks; later positive rewards are 0."""
    sim = make_sim(agents=1, manual=True, overrides=NO_NEEDS + ["rewards.survival=0.2", "rewards.clip_episode=1"])
    seen = []
    for _ in range(8):
        sim.step()
        seen.append(round(float(sim.rewards.last[0]), 6))
    assert seen == [0.2] * 5 + [0.0] * 3
    assert sim.rewards.episode_return[0] == pytest.approx(1.0)


def test_penalties_keep_arriving_after_any_loss(make_sim) -> None:
    """Far below -clip_episode every collapse still costs its penalty; at +clip_episode penalties still bite."""
    sim = make_sim(
        agents=2,
        manual=True,
        overrides=NO_NEEDS
        + ["rewards.survival=0", "rewards.clip_episode=1", "rewards.faint_penalty=0.2", "rewards.exit_guard_ticks=0"],
    )
    losses = []
    for _ in range(40):  # -0.2 a tick for 40 ticks: a return of -8, eight times the cap
        emit_next_tick(sim, EventKind.COLLAPSE, agent=0)
        sim.step()
        losses.append(float(sim.rewards.last[0]))
    assert losses == pytest.approx([-0.2] * 40), "no penalty is ever silenced"
    assert sim.rewards.episode_return[0] == pytest.approx(-8.0, abs=1e-4)
    capped = make_sim(
        agents=1,
        manual=True,
        overrides=NO_NEEDS
        + ["rewards.survival=0.2", "rewards.clip_episode=1", "rewards.faint_penalty=0.5", "rewards.exit_guard_ticks=0"],
    )
    for _ in range(6):
        capped.step()  # the return reaches the cap of 1.0 and stays there
    emit_next_tick(capped, EventKind.COLLAPSE, agent=0)
    capped.step()
    assert float(capped.rewards.last[0]) == pytest.approx(-0.2), "raw 0.2 - 0.5 = -0.3, clipped per tick only"
    capped.step()
    assert float(capped.rewards.last[0]) == pytest.approx(0.2), "back below the cap: positive rewards pay again"
    assert capped.rewards.episode_return[0] == pytest.approx(1.0)


def test_no_positive_reward_within_10_ticks_of_an_exit_trigger(make_sim, run) -> None:
    """After an exit trigger the positive survival bonus is withheld for 10 ticks, then comes back."""
    sim = make_sim(agents=2, manual=True, overrides=NO_NEEDS)
    run(sim, 2)
    emit_next_tick(sim, EventKind.EXIT_PENDING, agent=0, detail="neglect")
    rewards = []
    for _ in range(13):
        sim.step()
        rewards.append(float(sim.rewards.last[0]))
        assert sim.rewards.last[1] == pytest.approx(0.01)
    assert rewards[:11] == [0.0] * 11 and rewards[11] == pytest.approx(0.01)


def test_breakdown_sums_to_the_reward_and_stats_track_every_reward(make_sim) -> None:
    """Over a scripted day each slot's terms add up to its reward; running mean/std match the rewards seen."""
    sim = make_sim(seed=1, overrides=["features.social_rewards=C3", "features.relationships=C3"])
    seen = []
    for _ in range(1000):
        sim.step()
        total = sum(sim.rewards.breakdown[t] for t in TERMS)
        np.testing.assert_allclose(total, sim.rewards.last, atol=1e-6)
        seen.append(sim.rewards.last[sim.world.agents.alive].copy())
    flat = np.concatenate(seen).astype(np.float64)
    stats = sim.rewards.stats
    assert stats.count == len(flat)
    assert stats.mean == pytest.approx(flat.mean(), rel=1e-4) and stats.std == pytest.approx(flat.std(), rel=1e-3)
    assert sim.kpis.report(sim.world)["reward"]["mean"] == pytest.approx(flat.mean(), abs=1e-5)
    assert np.allclose(
        sim.rewards.episode_return[sim.world.agents.alive],
        np.sum(seen, axis=0)[: int(sim.world.agents.alive.sum())],
        atol=1e-3,
    )


def test_episode_return_starts_again_for_a_newcomer(make_sim, run) -> None:
    """A newcomer in a reused slot starts from a zero return; the leaver's return stayed until then."""
    sim = make_sim(agents=2, overrides=["features.lifecycle=on", "lifecycle.spawn_delay=[3, 3]"])
    run(sim, 50)
    before = float(sim.rewards.episode_return[1])
    assert before > 0.3
    sim.enqueue(lambda w: sim.lifecycle.exit(1, "console"))
    run(sim, 1)
    assert sim.rewards.episode_return[1] == pytest.approx(before - 0.2, abs=1e-5)
    run(sim, 3)
    assert sim.world.agents.alive[1] and sim.world.agents.ids[1] == "agent_2"
    assert sim.rewards.episode_return[1] == pytest.approx(float(sim.rewards.last[1]))


def test_typical_daily_return_of_the_scripted_town_is_far_above_10x_the_terminal_penalty(make_sim) -> None:
    """Five scripted days: the median agent's daily return is at least 3 x (10 x terminal penalty)."""
    sim = make_sim(seed=0)
    sim.run(5 * sim.world.ticks_per_day)
    alive = sim.world.agents.alive
    daily = sim.rewards.episode_return[alive] / 5
    bar = 10 * sim.config.rewards.terminal_penalty
    assert float(np.median(daily)) >= 3 * bar, daily
    assert (daily > bar).all()


def test_a_terminal_penalty_larger_than_the_tick_clip_is_refused(loaded) -> None:
    """The config refuses a terminal penalty that the per-tick clip would cut."""
    from townlet.config import ConfigError, load_config

    with pytest.raises(ConfigError) as info:
        load_config(overrides=["rewards.terminal_penalty=0.5"])
    assert "rewards" in str(info.value) and "terminal_penalty" in str(info.value)
