"""The chat-partner scan picks exactly whom the documented rule picks (near, chatters first, then nearest)."""

from __future__ import annotations

import numpy as np
import pytest

from townlet.world import scans
from townlet.world.agents import Activity

C, W, H = 48, 12, 10  # slots, map width and height of the random towns


def _rule(slot: int, alive, tile, activity, target_aff, place_index, chat, radius: int) -> int:
    """The rule as array code: near = in radius or staying in the same place; least distance, +100 if not chatting."""
    others = alive.nonzero()[0]
    others = others[others != slot]
    if not len(others):
        return -1
    x, y = tile[slot] % W, tile[slot] // W
    dist = np.abs(tile[others] % W - x) + np.abs(tile[others] // W - y)
    place = place_index[tile[slot]]
    staying = (activity[others] == Activity.USING) | (activity[others] == Activity.WAITING)
    together = (place >= 0) & (place_index[tile[others]] == place) & staying
    near = (dist <= radius) | together
    if not near.any():
        return -1
    aff = target_aff[others]
    score = dist + np.where((aff >= 0) & chat[np.maximum(aff, 0)], 0, 100)
    score[~near] = 1 << 30
    return int(others[int(np.argmin(score))])


@pytest.mark.parametrize("seed", range(30))
def test_chat_partner_scan_matches_the_rule(seed: int) -> None:
    """For random towns and every living slot, the compiled scan returns the rule's partner (or -1)."""
    rng = np.random.default_rng(seed)
    alive = rng.random(C) < 0.5
    tile = rng.integers(0, W * H, C).astype(np.int32)
    activity = rng.integers(0, 5, C).astype(np.int8)
    target_aff = rng.integers(-1, 6, C).astype(np.int32)
    place_index = rng.integers(-1, 3, W * H).astype(np.int32)
    chat = rng.random(6) < 0.5
    radius = int(rng.integers(0, 4))
    for slot in alive.nonzero()[0].tolist():
        got = scans.chat_partner(slot, alive, tile, activity, target_aff, place_index, chat, W, radius)
        assert got == _rule(slot, alive, tile, activity, target_aff, place_index, chat, radius)


def test_lonely_agent_has_no_partner() -> None:
    """With nobody else alive, or everybody far away and elsewhere, there is no partner."""
    alive = np.zeros(4, dtype=bool)
    alive[0] = True
    tile = np.array([0, 5, 9, 11], dtype=np.int32)
    activity = np.zeros(4, dtype=np.int8)
    target_aff = np.full(4, -1, dtype=np.int16)
    place_index = np.full(W * H, -1, dtype=np.int16)
    chat = np.ones(1, dtype=bool)
    assert scans.chat_partner(0, alive, tile, activity, target_aff, place_index, chat, W, 3) == -1
    alive[3] = True
    assert scans.chat_partner(0, alive, tile, activity, target_aff, place_index, chat, W, 3) == -1
    assert scans.chat_partner(0, alive, tile, activity, target_aff, place_index, chat, W, 11) == 3
