"""Semi-MDP returns and advantages: hand-computed transitions with known tick gaps, episode cuts, the collector."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from townlet.config import load_config
from townlet.policy.networks import NetworkSpec, OptionPolicyNet
from townlet.sim import Simulation
from townlet.training.advantages import gae
from townlet.training.rollout import Collector

GAMMA, LAM = 0.9, 0.8


def discounted(rewards: list[float]) -> float:
    return sum(GAMMA**i * r for i, r in enumerate(rewards))


def test_three_decisions_with_known_tick_gaps_match_the_hand_computed_returns() -> None:
    """Decisions at ticks 0, 3 and 8 (lasting 3, 5 and 2 ticks), then a 4th at tick 10 with V = 4: by hand."""
    ticks = [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0, 10.0], [-1.0, -1.0]]
    rewards = np.array([discounted(t) for t in ticks], np.float32)
    assert rewards == pytest.approx([1 + 0.9 * 2 + 0.81 * 3, 0.9**4 * 10, -1 - 0.9])  # 5.23, 6.561, -1.9
    discounts = np.array([GAMMA ** len(t) for t in ticks], np.float32)  # 0.729, 0.59049, 0.81
    values = np.array([0.5, 1.0, 2.0], np.float32)
    next_values = np.array([1.0, 2.0, 4.0], np.float32)  # V at the next decision of the same agent
    ends = np.zeros(3, bool)
    following = np.array([1, 2, -1])
    adv, ret = gae(rewards, values, discounts, next_values, ends, following, LAM)
    d2 = -1.9 + 0.81 * 4.0 - 2.0  # -0.66
    d1 = 6.561 + 0.59049 * 2.0 - 1.0  # 6.74198
    d0 = 5.23 + 0.729 * 1.0 - 0.5  # 5.459
    a2 = d2
    a1 = d1 + 0.59049 * LAM * a2  # 6.430201
    a0 = d0 + 0.729 * LAM * a1  # 9.209093
    assert adv == pytest.approx([a0, a1, a2], abs=1e-5)
    assert adv == pytest.approx([9.209093, 6.430201, -0.66], abs=1e-5)
    assert ret == pytest.approx(adv + values, abs=1e-6)
    # lambda = 1: the discounted Monte Carlo return of the ticks, bootstrapped with V = 4 at tick 10
    _, mc = gae(rewards, values, discounts, next_values, ends, following, 1.0)
    flat = [r for t in ticks for r in t]
    assert mc[0] == pytest.approx(discounted(flat) + GAMMA**10 * 4.0, abs=1e-5)
    assert mc[1] == pytest.approx(discounted(flat[3:]) + GAMMA**7 * 4.0, abs=1e-5)
    assert mc == pytest.approx([10.58980, 7.35226, 1.34], abs=1e-4)


def test_an_exit_ends_the_chain_and_a_newcomer_starts_its_own() -> None:
    """An exit bootstraps nothing and no advantage flows back past it; the slot's newcomer is independent."""
    rewards = np.array([1.0, -2.0, 3.0], np.float32)
    values = np.array([0.5, 0.25, 1.0], np.float32)
    discounts = np.array([0.9, 0.8, 0.7], np.float32)
    next_values = np.array([0.25, 0.0, 2.0], np.float32)  # the second transition ends in an exit
    ends = np.array([False, True, False])
    adv, _ = gae(rewards, values, discounts, next_values, ends, np.array([1, -1, -1]), LAM)
    assert adv[1] == pytest.approx(-2.0 - 0.25)
    assert adv[0] == pytest.approx(1.0 + 0.9 * 0.25 - 0.5 + 0.9 * LAM * adv[1])
    assert adv[2] == pytest.approx(3.0 + 0.7 * 2.0 - 1.0), "the newcomer's chain owes nothing to the leaver's"


def test_a_horizon_cut_bootstraps_with_the_final_value_but_carries_nothing_on() -> None:
    """A transition that ends at the horizon keeps gamma**k V(final obs) but no advantage of a next episode."""
    adv, _ = gae(
        np.array([1.0, 5.0], np.float32),
        np.array([0.0, 0.0], np.float32),
        np.array([0.5, 0.5], np.float32),
        np.array([2.0, 0.0], np.float32),
        np.array([True, False]),
        np.array([1, -1]),
        LAM,
    )
    assert adv[0] == pytest.approx(1.0 + 0.5 * 2.0)


def test_with_one_tick_per_transition_it_is_the_textbook_gae() -> None:
    """With one tick per transition (k = 1) it is the familiar per-step recursion with gamma."""
    rng = np.random.default_rng(0)
    r, v = rng.normal(size=6).astype(np.float32), rng.normal(size=6).astype(np.float32)
    nv = np.r_[v[1:], 0.3].astype(np.float32)
    adv, _ = gae(r, v, np.full(6, GAMMA, np.float32), nv, np.zeros(6, bool), np.r_[np.arange(1, 6), -1], LAM)
    expected, running = np.zeros(6), 0.0
    for t in range(5, -1, -1):
        running = r[t] + GAMMA * nv[t] - v[t] + GAMMA * LAM * running
        expected[t] = running
    np.testing.assert_allclose(adv, expected, rtol=1e-5, atol=1e-6)


def test_collected_transitions_carry_each_agents_discounted_rewards_between_its_decisions() -> None:
    """Replaying the collector's decisions tick by tick: every transition's R, gamma**k and chain are exact."""
    gamma = 0.97
    overrides = ["env.horizon=100000"]
    collector = Collector(None, overrides, n_towns=1, seed=11, gamma=gamma)
    torch.manual_seed(0)
    net = OptionPolicyNet(NetworkSpec.for_layout(collector.layout, collector.n_actions, hidden=16))
    ro = collector.collect(net, 600)
    assert ro.size > 30 and ro.town_ticks >= 600
    np.testing.assert_allclose(ro.discounts, gamma ** ro.ticks.astype(np.float64), rtol=1e-5)
    linked = ro.next_index >= 0
    assert (ro.slots[ro.next_index[linked]] == ro.slots[linked]).all()
    np.testing.assert_array_equal(ro.next_values[linked], ro.values[ro.next_index[linked]])
    # Decision ticks: each agent's chain starts at tick 0 and each transition lasts its ticks. Up to the first
    # decision still open at the end (its choice is not in the rollout) every choice is known.
    decisions: dict[int, dict[int, int]] = {}
    known = 10**9
    for slot in range(8):
        rows = np.flatnonzero(ro.slots == slot)
        starts = np.r_[0, np.cumsum(ro.ticks[rows])]
        decisions[slot] = {int(t): int(ro.actions[r]) for t, r in zip(starts, rows, strict=False)}
        known = min(known, int(starts[-1]))
    assert known > 100
    twin = Simulation(load_config(overrides=overrides), seed=11)
    a = twin.world.agents
    per_tick = []
    for tick in range(known):
        actions = np.where(a.alive, a.option, -1).astype(np.int64)
        for slot, chosen in decisions.items():
            if tick in chosen:
                actions[slot] = chosen[tick]
        twin.step(actions)
        per_tick.append(twin.rewards.last.copy())
    rewards = np.array(per_tick)
    checked = 0
    for slot in decisions:
        start = 0
        for r in np.flatnonzero(ro.slots == slot):
            k = int(ro.ticks[r])
            if start + k > known:
                break
            expected = sum(gamma**i * float(rewards[start + i, slot]) for i in range(k))
            assert ro.rewards[r] == pytest.approx(expected, abs=1e-4)
            start += k
            checked += 1
    assert checked > 20
