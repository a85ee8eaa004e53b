"""GAE over many agent slots: hand-computed cases, resets at exits and spawns."""

from __future__ import annotations

import numpy as np
import pytest

from townlet.training.advantages import gae


def test_single_agent_matches_hand_computed_gae() -> None:
    """Two steps, no termination: the textbook recursion with bootstrap."""
    r = np.array([[1.0], [0.5]], np.float32)
    v = np.array([[0.2], [0.4]], np.float32)
    adv, ret = gae(r, v, np.zeros((2, 1), bool), np.ones((2, 1), bool), np.array([0.3], np.float32), 0.9, 0.8)
    d1 = 0.5 + 0.9 * 0.3 - 0.4
    d0 = 1.0 + 0.9 * 0.4 - 0.2
    assert adv[1, 0] == pytest.approx(d1)
    assert adv[0, 0] == pytest.approx(d0 + 0.9 * 0.8 * d1)
    assert ret[0, 0] == pytest.approx(adv[0, 0] + 0.2)


def test_nothing_is_bootstrapped_across_an_exit() -> None:
    """An exit at step 0 cuts the recursion: step 0's advantage is its own TD error without a next value."""
    r = np.array([[-5.0], [1.0]], np.float32)
    v = np.array([[0.5], [2.0]], np.float32)
    dones = np.array([[True], [False]])
    adv, _ = gae(r, v, dones, np.ones((2, 1), bool), np.array([0.0], np.float32), 0.99, 0.95)
    assert adv[0, 0] == pytest.approx(-5.0 - 0.5)


def test_empty_slots_get_zero_advantage_and_a_newcomer_starts_fresh() -> None:
    """A slot empty at step 1 contributes nothing; the newcomer at step 2 does not leak into step 0."""
    r = np.array([[1.0], [9.0], [2.0]], np.float32)
    v = np.zeros((3, 1), np.float32)
    dones = np.array([[True], [False], [False]])
    valid = np.array([[True], [False], [True]])
    adv, ret = gae(r, v, dones, valid, np.array([0.0], np.float32), 0.99, 0.95)
    assert adv[1, 0] == 0.0 and ret[1, 0] == 0.0
    assert adv[0, 0] == pytest.approx(1.0)
    assert adv[2, 0] == pytest.approx(2.0)


def test_columns_are_independent() -> None:
    """Each agent slot is computed on its own."""
    rng = np.random.default_rng(0)
    r, v = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(5, 3)).astype(np.float32)
    dones = rng.random((5, 3)) < 0.2
    valid = np.ones((5, 3), bool)
    last = rng.normal(size=3).astype(np.float32)
    adv, _ = gae(r, v, dones, valid, last, 0.95, 0.9)
    for b in range(3):
        one = slice(b, b + 1)
        single, _ = gae(r[:, one], v[:, one], dones[:, one], valid[:, one], last[one], 0.95, 0.9)
        np.testing.assert_allclose(adv[:, b], single[:, 0], rtol=1e-6)
