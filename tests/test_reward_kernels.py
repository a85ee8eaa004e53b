"""The fused reward and needs kernels (issue 18) against the same rules written out slot by slot in Python."""

from __future__ import annotations

import numpy as np
import pytest

from townlet.rewards import RunningStats
from townlet.rewards.terms import (
    CLIP_EPISODE,
    CLIP_TICK,
    GUARD_TICKS,
    HI_EPISODE,
    HI_TICK,
    HOMEOSTASIS,
    LO_TICK,
    NEED_THRESHOLD,
    OK,
    SURVIVAL,
    SURVIVAL_BONUS,
    TERMS,
    THRESHOLD_PENALTY,
    WAGE,
    WAGE_RATE,
    _guardrails,
    _living_terms,
    _reward_tick,
)
from townlet.sim import snapshot
from townlet.world.needs import COLD_ENERGY, COLLAPSE_AFTER, COLLAPSE_LEVEL, CRITICAL, ENERGY, HUNGER, _decay
from townlet.world.weather import COLD, RAINY

C = 48  # slots of the random towns
F32 = np.float32


def _consts(rng: np.random.Generator, clip_episode: float) -> np.ndarray:
    out = np.zeros(CLIP_EPISODE + 1)
    out[:4] = -rng.random(4).astype(F32)
    out[[OK, THRESHOLD_PENALTY, SURVIVAL_BONUS]] = F32(0.7), F32(0.01), F32(0.002)
    out[[WAGE_RATE, GUARD_TICKS]] = 0.5, 10
    out[[LO_TICK, HI_TICK, HI_EPISODE]] = F32(-0.2), F32(0.2), F32(clip_episode)
    out[[CLIP_TICK, CLIP_EPISODE]] = 0.2, clip_episode
    return out


def _reference(terms, needs, alive, consts, paid, amounts, ret, trigger, tick, last_trigger, running, extra):
    """The reward rules slot by slot: living terms, extra (event) terms, guardrails, then the stats merge."""
    terms[:] = 0.0
    for s in range(C):
        if alive[s]:
            hom, over = F32(0.0), 0
            for k in range(4):
                hom += needs[s, k] * needs[s, k] * F32(consts[k])
                over += bool(needs[s, k] >= F32(consts[OK]))
            terms[HOMEOSTASIS, s] = hom
            terms[NEED_THRESHOLD, s] = -F32(consts[THRESHOLD_PENALTY]) * F32(over)
            terms[SURVIVAL, s] = F32(consts[SURVIVAL_BONUS])
    for slot, amount in zip(paid, amounts, strict=True):
        terms[WAGE, slot] += F32(consts[WAGE_RATE] * amount)
    terms += extra
    count, mean, m2, bound = running
    near_exit = tick - last_trigger <= consts[GUARD_TICKS]
    capped = bound + consts[CLIP_TICK] >= consts[CLIP_EPISODE]
    reward = np.zeros(C, dtype=F32)
    for s in range(C):
        raw = F32(0.0)
        for t in range(len(TERMS) - 1):
            raw += terms[t, s]
        r = max(raw, F32(consts[LO_TICK]))
        if near_exit and tick - trigger[s] <= consts[GUARD_TICKS]:
            r = min(r, F32(0.0))
        r = min(r, F32(consts[HI_TICK]))
        if capped and r > 0:
            r = max(min(r, F32(consts[HI_EPISODE]) - ret[s]), F32(0.0))
        ret[s] += r
        reward[s] = r
        terms[-1, s] = r - raw
    stats = RunningStats()
    stats.count, stats.mean, stats._m2 = count, mean, m2
    total = squares = 0.0
    for r in reward:  # in slot order, as the kernel adds them (the squares are float32 products)
        total, squares = total + float(r), squares + float(r * r)
    stats.update_sums(int(alive.sum()), total, squares)
    bound = float(ret.max(initial=0.0)) if capped else bound + consts[CLIP_TICK]
    return reward, (stats.count, stats.mean, stats._m2, bound)


def _town(seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    consts = _consts(rng, clip_episode=float(rng.choice([1.0, 50.0])))
    needs = rng.random((C, 4)).astype(F32)
    alive = rng.random(C) < 0.8
    paid = rng.choice(C, 5, replace=False).astype(np.int64)
    amounts = rng.random(5) * 3
    ret = (rng.random(C) * 1.1).astype(F32)
    trigger = rng.integers(80, 101, C).astype(np.int64)
    running = (int(rng.integers(0, 500)), float(rng.normal()), float(rng.random()), float(rng.random() * 1.2))
    return consts, needs, alive, paid, amounts, ret, trigger, 100, int(rng.choice([85, 95])), running


@pytest.mark.parametrize("seed", range(12))
def test_fused_reward_tick_matches_the_rules_bit_for_bit(seed: int) -> None:
    """_reward_tick writes the same terms, rewards, returns and running stats as the rules applied slot by slot."""
    consts, needs, alive, paid, amounts, ret, trigger, tick, last_trigger, running = _town(seed)
    terms, reward, got_ret = np.full((len(TERMS), C), 9.0, dtype=F32), np.zeros(C, dtype=F32), ret.copy()
    got = _reward_tick(
        terms, needs, alive, consts, paid, amounts, reward, got_ret, trigger, tick, last_trigger, running
    )
    ref_terms, ref_ret = np.zeros_like(terms), ret.copy()
    want_reward, want = _reference(
        ref_terms, needs, alive, consts, paid, amounts, ref_ret, trigger, tick, last_trigger, running, 0
    )
    assert np.array_equal(terms, ref_terms) and np.array_equal(reward, want_reward) and np.array_equal(got_ret, ref_ret)
    assert got == want and isinstance(got[0], int)


@pytest.mark.parametrize("seed", range(6))
def test_two_step_path_adds_event_terms_and_counts_the_leavers(seed: int) -> None:
    """_living_terms, event terms added, then _guardrails equals the rules with those terms; leavers are counted."""
    consts, needs, alive, paid, amounts, ret, trigger, tick, last_trigger, running = _town(seed)
    rng = np.random.default_rng(100 + seed)
    extra = np.zeros((len(TERMS), C), dtype=F32)
    extra[5:12] = np.where(rng.random((7, C)) < 0.1, rng.normal(0, 0.3, (7, C)), 0).astype(F32)
    terms, reward, got_ret = np.zeros((len(TERMS), C), dtype=F32), np.zeros(C, dtype=F32), ret.copy()
    _living_terms(terms, needs, alive, consts, paid, amounts)
    terms += extra
    got = _guardrails(terms, alive, consts, reward, got_ret, trigger, tick, last_trigger, running, 2)
    ref_terms, ref_ret = np.zeros_like(terms), ret.copy()
    want_reward, want = _reference(
        ref_terms, needs, alive, consts, paid, amounts, ref_ret, trigger, tick, last_trigger, running, extra
    )
    assert np.array_equal(terms, ref_terms) and np.array_equal(reward, want_reward)
    assert got[0] == want[0] + 2, "two leavers beside the living"


@pytest.mark.parametrize("cold", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_needs_kernel_matches_the_growth_rule(seed: int, cold: bool) -> None:
    """_decay grows, clips and reports crossings then collapses exactly as the documented rule does."""
    rng = np.random.default_rng(seed)
    needs = (0.85 + 0.15 * rng.random((C, 4))).astype(F32)
    alive, asleep = rng.random(C) < 0.8, rng.random(C) < 0.3
    tile, outdoors = rng.integers(0, 10, C), rng.random(10) < 0.5
    consts = np.zeros(COLLAPSE_AFTER + 1)
    consts[:8] = rng.random(8).astype(F32) * F32(0.02)
    consts[[COLD_ENERGY, CRITICAL, COLLAPSE_LEVEL, COLLAPSE_AFTER]] = F32(1.5), F32(0.9), F32(0.97), 3
    ticks = rng.integers(0, 3, C).astype(np.int32)
    want_needs, want_ticks, crossed, collapsed = needs.copy(), ticks.copy(), [], []
    for s in range(C):
        if alive[s]:
            for k in range(4):
                g = F32(consts[(4 if asleep[s] else 0) + k])
                if cold and k == ENERGY and outdoors[tile[s]]:
                    g = g * F32(1.5)
                before = want_needs[s, k]
                want_needs[s, k] = min(before + g, F32(1.0))
                if before < F32(0.9) <= want_needs[s, k]:
                    crossed.append([s, k])
        if alive[s] and want_needs[s, HUNGER] >= F32(0.97):
            want_ticks[s] += 1
            if want_ticks[s] == 3:
                collapsed.append([s, -1])
        else:
            want_ticks[s] = 0
    hits = np.empty((5 * C, 2), dtype=np.int64)
    n = _decay(needs, alive, asleep, tile, outdoors, COLD if cold else RAINY, consts, ticks, hits)
    assert np.array_equal(needs, want_needs) and np.array_equal(ticks, want_ticks)
    assert hits[:n].tolist() == crossed + collapsed and n > 0


def test_packed_settings_follow_a_snapshot_restore(make_sim) -> None:
    """Restoring a snapshot re-packs the kernels' settings from the restored needs and reward settings."""
    saved = make_sim(seed=1, agents=4)
    state = snapshot.capture(saved)
    sim = make_sim(seed=1, agents=4)
    sim.world.needs.rates *= 2
    sim.world.needs.pack()
    sim.rewards._ok = np.float32(0.1)
    sim.rewards.pack()
    snapshot.restore(sim, state)
    assert np.array_equal(sim.world.needs._consts, saved.world.needs._consts)
    assert np.array_equal(sim.rewards._consts, saved.rewards._consts)
