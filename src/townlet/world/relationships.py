"""Relationships: a sparse tie graph of at most K ties per agent, as fixed-width (N x K) arrays.

Each tie holds (trust, familiarity, rivalry) in [-1, 1]. Social events apply small deltas scaled by
personality; ties decay toward 0 every in-sim hour; faint ties are dropped; when an agent's ties are
full the weakest is evicted for a new one, unless the new one would itself be faint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba
import numpy as np

from townlet.world.events import EventKind

if TYPE_CHECKING:
    from townlet.world.state import World

TRUST, FAMILIARITY, RIVALRY = 0, 1, 2
EXTROVERSION, FORGIVENESS, AMBITION = 0, 1, 2
WORK_EVENTS = ("took_my_shift", "coworkers")


class Relationships:
    """Tie arrays and the rules that change them.

    Attributes:
        other: ``int32[C, K]`` the slot each tie points at, -1 for an empty tie.
        values: ``float32[C, K, 3]`` (trust, familiarity, rivalry).
        enabled: False at stage OFF: events are ignored and no ties exist.
    """

    def __init__(self, world: World) -> None:
        cfg = world.config.relationships
        self.cfg = cfg
        cap = world.agents.capacity
        self.k = cfg.max_ties
        self.other = np.full((cap, self.k), -1, dtype=np.int32)
        self.values = np.zeros((cap, self.k, 3), dtype=np.float32)
        self.enabled = world.config.features.relationships != "OFF"
        self.deltas = {name: np.array(d, dtype=np.float32) for name, d in cfg.deltas.items()}
        self.decay_factor = np.float32(1.0 - cfg.decay_per_hour)
        self.ticks_per_hour = world.ticks_per_day / 24.0
        self._quiet = (0, 0)  # ticks ``[lo, hi)`` that start no new hour (a function of the tick alone)

    def tie(self, slot: int, other: int) -> np.ndarray | None:
        """The (trust, fam, rivalry) of ``slot``'s tie to ``other``, or None."""
        hit = (self.other[slot] == other).nonzero()[0]
        return self.values[slot, hit[0]] if len(hit) else None

    def strength(self, slot: int) -> np.ndarray:
        """``float32[K]`` tie strength (max |component|); 0 for empty ties."""
        s = np.abs(self.values[slot]).max(axis=1)
        s[self.other[slot] < 0] = 0.0
        return s

    def scaled(self, world: World, slot: int, event: str) -> np.ndarray:
        """The event's delta for ``slot``, scaled by its personality."""
        return _scaled(self.deltas[event], world.agents.personality[slot], event in WORK_EVENTS)

    def apply(self, world: World, slot: int, other: int, event: str) -> None:
        """Apply a social event of ``slot`` toward ``other`` (one direction)."""
        if not self.enabled or slot == other or slot < 0 or other < 0 or event not in self.deltas:
            return
        k = _apply(
            self.other,
            self.values,
            world.agents.personality,
            slot,
            other,
            self.deltas[event],
            event in WORK_EVENTS,
            float(self.cfg.faint),
        )
        if k >= 0:
            world.emit(
                EventKind.TIE_CHANGED, agent=slot, other=other, value=float(self.values[slot, k, TRUST]), detail=event
            )

    def apply_pair(self, world: World, a: int, b: int, event: str) -> None:
        """Apply a symmetric social event to both agents."""
        self.apply(world, a, b, event)
        self.apply(world, b, a, event)

    def chat(self, world: World, slot: int, partner: int) -> bool:
        """Attempt a chat: success odds rise with trust and familiarity; ties update either way."""
        tie = self.tie(slot, partner)
        trust, fam = (float(tie[TRUST]), float(tie[FAMILIARITY])) if tie is not None else (0.0, 0.0)
        logit = self.cfg.chat_base + self.cfg.chat_trust_weight * trust + self.cfg.chat_familiarity_weight * fam
        success = bool(world.rng.world.random() < 1.0 / (1.0 + np.exp(-logit)))
        self.apply_pair(world, slot, partner, "good_chat" if success else "failed_chat")
        world.emit(
            EventKind.CHAT, agent=slot, other=partner, value=float(success), detail="good" if success else "failed"
        )
        return success

    def update(self, world: World) -> None:
        """Hourly decay toward 0 and dropping of faint ties."""
        if not self.enabled:
            return
        tick = world.tick
        lo, hi = self._quiet
        if lo <= tick < hi:
            return
        self._quiet = (tick + 1, self._next_hour(tick + 1))
        if tick == 0 or not self._new_hour(tick):
            return
        self.values *= self.decay_factor
        faint = (np.abs(self.values).max(axis=2) < self.cfg.faint) & (self.other >= 0)
        self.other[faint] = -1
        self.values[faint] = 0.0

    def _new_hour(self, tick: int) -> bool:
        """Whether ``tick`` is the first tick of an hour (the hour of ``tick - 1`` differs)."""
        return int(tick / self.ticks_per_hour) != int((tick - 1) / self.ticks_per_hour)

    def _next_hour(self, tick: int) -> int:
        """The first tick at or after ``tick`` that starts a new hour (by :meth:`_new_hour` itself)."""
        if self._new_hour(tick):
            return tick
        at = max(tick, int((int(tick / self.ticks_per_hour) + 1) * self.ticks_per_hour) - 1)  # just before it
        while not self._new_hour(at):
            at += 1
        return at

    def set_tie(
        self, world: World, slot: int, other: int, values: tuple[float | None, float | None, float | None]
    ) -> None:
        """Set ``slot``'s tie to ``other`` (console ``set_rel``): components given replace, None keep.

        A new tie takes an empty place or evicts the weakest tie; values are clipped to [-1, 1].
        """
        if not self.enabled or slot == other or slot < 0 or other < 0:
            raise ValueError("relationships are off, or the two agents are the same")
        row = self.other[slot]
        hit = (row == other).nonzero()[0]
        if len(hit):
            k = int(hit[0])
        else:
            empty = (row < 0).nonzero()[0]
            k = int(empty[0]) if len(empty) else int(np.argmin(self.strength(slot)))
            row[k] = other
            self.values[slot, k] = 0.0
        for c, value in enumerate(values):
            if value is not None:
                self.values[slot, k, c] = np.clip(value, -1.0, 1.0)
        world.emit(
            EventKind.TIE_CHANGED, agent=slot, other=other, value=float(self.values[slot, k, TRUST]), detail="console"
        )

    def forget(self, slot: int) -> None:
        """Erase an agent's ties and every tie pointing at it (the agent left)."""
        self.other[slot] = -1
        self.values[slot] = 0.0
        pointing = self.other == slot
        self.other[pointing] = -1
        self.values[pointing] = 0.0

    def top(self, slot: int, n: int = 2, by: int = TRUST, largest: bool = True) -> list[tuple[int, np.ndarray]]:
        """Up to ``n`` ties sorted by one component (friends: trust desc; rivals: rivalry desc)."""
        ks = (self.other[slot] >= 0).nonzero()[0]
        if not len(ks):
            return []
        keys = self.values[slot, ks, by]
        order = ks[np.argsort(-keys if largest else keys, kind="stable")][:n]
        return [(int(self.other[slot, k]), self.values[slot, k]) for k in order]


@numba.njit(cache=True)
def _scaled(delta: np.ndarray, traits: np.ndarray, work: bool) -> np.ndarray:
    """A copy of ``delta`` (float32) scaled by one agent's personality ``traits``."""
    out = delta.copy()
    soften = np.float32(1.0 - 0.5 * max(np.float64(traits[FORGIVENESS]), 0.0))
    for c in range(len(out)):
        if out[c] < 0:
            out[c] = out[c] * soften
    out[FAMILIARITY] = out[FAMILIARITY] * np.float32(1.0 + 0.5 * np.float64(traits[EXTROVERSION]))
    if work:
        out[RIVALRY] = out[RIVALRY] * np.float32(1.0 + 0.5 * np.float64(traits[AMBITION]))
    return out


@numba.njit(cache=True)
def _apply(
    other: np.ndarray,
    values: np.ndarray,
    personality: np.ndarray,
    slot: int,
    to: int,
    delta: np.ndarray,
    work: bool,
    faint: float,
) -> int:
    """Add the scaled ``delta`` to ``slot``'s tie to ``to`` (taking a free or the weakest place); its index or -1.

    A new tie is not made when the delta is faint, or weaker than every tie the agent already has.
    """
    d = _scaled(delta, personality[slot], work)
    size = np.float32(0.0)
    for c in range(len(d)):
        size = max(size, abs(d[c]))
    k = -1
    for j in range(other.shape[1]):
        if other[slot, j] == to:
            k = j
            break
    if k < 0:
        if np.float64(size) < faint:
            return -1
        for j in range(other.shape[1]):
            if other[slot, j] < 0:
                k = j
                break
        if k < 0:  # full: the weakest tie (the first of equals) gives way, unless the new one is weaker still
            weakest = np.float32(np.inf)
            for j in range(other.shape[1]):
                strength = np.float32(0.0)
                for c in range(values.shape[2]):
                    strength = max(strength, abs(values[slot, j, c]))
                if strength < weakest:
                    k, weakest = j, strength
            if weakest > size:
                return -1
        other[slot, k] = to
        for c in range(values.shape[2]):
            values[slot, k, c] = 0.0
    for c in range(values.shape[2]):
        values[slot, k, c] = min(max(values[slot, k, c] + d[c], np.float32(-1.0)), np.float32(1.0))
    return k
