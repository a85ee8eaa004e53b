"""Per-agent rewards from the state and the tick's events (SPEC 13): every term, then the guardrails.

Terms (weights in ``rewards``; the table with defaults is in docs/lifecycle.md):

- ``homeostasis``: ``-sum_i w_i * deficit_i**2`` every living tick; ``shaping``: optional potential shaping
  ``gamma * phi(s') - phi(s)`` with ``phi`` the homeostasis term.
- ``need_threshold``: ``-need_threshold_penalty`` every living tick per need at or above ``needs.ok_threshold``.
  The squared deficits barely tell 0.65 from 0.75, while the ``need_ok_share`` and ``self_sufficiency`` KPIs
  fail a tick (a day) at 0.7; this step puts that line into the reward.
- ``survival``: a small bonus every living tick; ``wage``: ``rewards.wage`` per meal unit earned this tick.
- ``punctuality``: on clocking in, a triangular bonus peaking at the shift start and reaching 0 at
  ``punctuality_minutes`` early or late; its peak is capped below one skipped meal's pain.
- ``faint`` (a collapse), ``eviction`` (an eviction notice), ``terminal`` (leaving town): penalties.
- Social, by ``features.social_rewards``: C1 ``chat`` (successful chats); C2 adds ``conflict`` (a bonus for
  queueing politely, a penalty for letting a reservation expire or shoving through); C3 adds
  ``relationship`` (mean trust of one's ties). Ignored while any need is above ``social_need_cap``.

Guardrails, in order: no positive reward within ``exit_guard_ticks`` of an exit trigger (collapse, eviction
notice, pending exit, the exit itself); clip to ``±clip_tick``; then the episode cap: a positive reward is cut
so that the episode's return never exceeds ``+clip_episode``. The cap bounds what exploiting positive terms
can earn and nothing else: a penalty is never clipped by it, however much an agent has lost (a floor on the
return would make every later penalty free, and a policy that had lost enough would stop caring). Their net
effect is the ``guardrails`` entry of the breakdown, so the breakdown of a slot always sums to its reward.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numba
import numpy as np

from townlet.config.models import NEED_NAMES, TownletConfig
from townlet.rewards.stats import RunningStats, merge_sums
from townlet.world.events import EventKind
from townlet.world.relationships import TRUST

if TYPE_CHECKING:
    from townlet.world.state import World

TERMS = (
    "homeostasis",
    "need_threshold",
    "shaping",
    "survival",
    "wage",
    "punctuality",
    "faint",
    "eviction",
    "terminal",
    "chat",
    "conflict",
    "relationship",
    "curiosity",
    "guardrails",
)
SOCIAL_TERMS = ("chat", "conflict", "relationship")
STAGE_LEVEL = {"OFF": 0, "C1": 1, "C2": 2, "C3": 3}
_TRIGGERS = {EventKind.COLLAPSE, EventKind.EVICTION_NOTICE, EventKind.EXIT_PENDING, EventKind.AGENT_EXIT}
_RELEVANT = _TRIGGERS | {
    EventKind.SHIFT_ARRIVED,
    EventKind.CHAT,
    EventKind.QUEUE_JOINED,
    EventKind.RESERVATION_EXPIRED,
    EventKind.GHOST_STEP,
}


def skipped_meal_pain(config: TownletConfig) -> float:
    """Extra cost of skipping one meal (homeostasis and need-threshold terms), under the configured weights.

    A meal is due at hunger ``skipped_meal[0]`` and relieves ``skipped_meal[1]``; over the ticks that relief
    lasts, the hunger terms of an agent who skipped it exceed those of one who ate by the returned total.
    """
    due, relief = config.rewards.skipped_meal
    rate = config.needs.decay.get("hunger", 0.0)
    ticks = math.ceil(relief / rate) if rate > 0 else config.time.ticks_per_day
    t = np.arange(ticks, dtype=np.float64)
    fed = np.clip(max(due - relief, 0.0) + rate * t, 0.0, 1.0)
    hungry = np.clip(due + rate * t, 0.0, 1.0)
    squares = config.rewards.homeostasis.hunger * (hungry**2 - fed**2).sum()
    ok = config.needs.ok_threshold
    over = np.count_nonzero(hungry >= ok) - np.count_nonzero(fed >= ok)
    return float(squares + config.rewards.need_threshold_penalty * over)


class Rewards:
    """Rewards of every slot for the tick just simulated.

    Attributes:
        last: ``float32[C]`` reward per slot (an agent that left this tick has its terminal penalty there).
        breakdown: Term -> ``float32[C]`` for the last tick; the terms of a slot sum to ``last``.
        episode_return: ``float32[C]`` clipped return since the slot's agent arrived (reset at spawn).
        stats: Running mean/std of every reward handed out (living and leaving agents).
        stage: Social reward stage (0 OFF, 1 C1, 2 C2, 3 C3); 0 below relationship stage C (B: not rewarded).
        uses: ``int32[C, affordances]`` completions of each affordance by the slot's agent (curiosity on).
        punctuality_peak: The punctuality bonus after its cap.
        skipped_meal_pain: The cap's yardstick (see :func:`skipped_meal_pain`).
    """

    def __init__(self, world: World) -> None:
        cfg = world.config.rewards
        self.cfg = cfg
        cap = world.agents.capacity
        self.tpd = world.ticks_per_day
        self.weights = np.array([getattr(cfg.homeostasis, n) for n in NEED_NAMES], dtype=np.float32)
        features = world.config.features
        self.stage = STAGE_LEVEL[features.social_rewards] if features.ties_rewarded else 0  # B: not rewarded
        self.curious = features.curiosity == "on"
        self._relevant = _RELEVANT | {EventKind.AFFORDANCE_COMPLETED} if self.curious else _RELEVANT
        self._aff_index = {aff.id: aff.index for aff in world.manifest.affordances}
        self.uses = np.zeros((cap, len(self._aff_index) if self.curious else 0), dtype=np.int32)  # completions
        self.last = np.zeros(cap, dtype=np.float32)
        self._terms = np.zeros((len(TERMS), cap), dtype=np.float32)  # one row per term, zeroed in one go
        self.breakdown = {term: self._terms[i] for i, term in enumerate(TERMS)}
        self.episode_return = np.zeros(cap, dtype=np.float32)
        self.trigger_tick = np.full(cap, -(10**9), dtype=np.int64)
        self.last_trigger = -(10**9)
        self.potential = np.zeros(cap, dtype=np.float32)
        self.stats = RunningStats()
        self.skipped_meal_pain = skipped_meal_pain(world.config)
        self.punctuality_peak = min(cfg.punctuality, cfg.punctuality_cap_share * self.skipped_meal_pain)
        self.punctuality_window = cfg.punctuality_minutes * self.tpd / 1440.0
        self._neg_weights = -self.weights
        self._ok = np.float32(world.config.needs.ok_threshold)
        self._threshold_penalty = np.float32(cfg.need_threshold_penalty)
        self._survival = np.float32(cfg.survival)
        self._spawned = -1
        self._lo_tick, self._hi_tick = np.float32(-cfg.clip_tick), np.float32(cfg.clip_tick)
        self._hi_episode = np.float32(cfg.clip_episode)
        self._return_bound = 0.0  # an upper bound on every episode_return (skips the episode cap while far below)
        self.pack()

    def pack(self) -> None:
        """Pack the settings the kernels read into one array (again after a snapshot restores them)."""
        self._consts = _constants(self)

    def update(self, world: World) -> None:
        """Compute every slot's reward for this tick (the ``rewards`` phase)."""
        a, tick, cfg, bd = world.agents, world.tick, self.cfg, self.breakdown
        alive = a.alive
        born: np.ndarray | None = None
        if world.counters["spawned"] != self._spawned:  # somebody arrived since the last tick
            self._spawned = world.counters["spawned"]
            born = (alive & (a.spawn_tick == tick)).nonzero()[0]
            self.episode_return[born] = 0.0
            self.trigger_tick[born] = -(10**9)
            self.uses[born] = 0
        paid_tick, paid, amounts = world.economy.wages_paid
        if paid_tick != tick:
            paid, amounts = _NOBODY, _NOTHING
        stats = self.stats  # its count, mean and M2 are merged in the kernels (stats.merge_sums)
        running = (stats.count, stats.mean, stats._m2, self._return_bound)
        events = world.events
        slow = self.stage or cfg.potential_shaping
        if events and not slow:
            relevant = self._relevant
            for e in events:
                if e.kind in relevant:
                    slow = True
                    break
        if not slow:  # the common tick: only the per-tick terms, in one kernel with the guardrails
            stats.count, stats.mean, stats._m2, self._return_bound = _reward_tick(
                self._terms,
                a.needs,
                alive,
                self._consts,
                paid,
                amounts,
                self.last,
                self.episode_return,
                self.trigger_tick,
                tick,
                self.last_trigger,
                running,
            )
            return
        _living_terms(self._terms, a.needs, alive, self._consts, paid, amounts)
        if cfg.potential_shaping:
            hom = bd["homeostasis"]
            if born is not None:
                self.potential[born] = hom[born]  # no shaping on an agent's first tick
            np.subtract(np.float32(cfg.shaping_gamma) * hom, self.potential, out=bd["shaping"])
            bd["shaping"] *= alive
            self.potential[:] = hom
        exited = self._events(world)
        if self.stage >= 3:
            rel = world.relationships
            has = rel.other >= 0
            count = has.sum(axis=1)
            trust = np.where(has, rel.values[:, :, TRUST], 0.0).sum(axis=1)
            bd["relationship"][:] = cfg.social.relationship_quality * trust / np.maximum(count, 1) * alive
        if self.stage:
            desperate = a.needs.max(axis=1) > cfg.social_need_cap
            if desperate.any():
                for term in SOCIAL_TERMS:
                    bd[term][desperate] = 0.0
        stats.count, stats.mean, stats._m2, self._return_bound = _guardrails(
            self._terms,
            alive,
            self._consts,
            self.last,
            self.episode_return,
            self.trigger_tick,
            tick,
            self.last_trigger,
            running,
            len(exited),
        )

    def _events(self, world: World) -> list[int]:
        """Event-driven terms; returns the slots that left town this tick."""
        cfg, bd, tick, stage = self.cfg, self.breakdown, world.tick, self.stage
        exited: list[int] = []
        for e in world.events:
            kind = e.kind
            if kind not in self._relevant:
                continue
            if kind in _TRIGGERS:
                self.trigger_tick[e.agent] = tick
                self.last_trigger = tick
                if kind is EventKind.COLLAPSE:
                    bd["faint"][e.agent] -= cfg.faint_penalty
                elif kind is EventKind.EVICTION_NOTICE:
                    bd["eviction"][e.agent] -= cfg.eviction_penalty
                elif kind is EventKind.AGENT_EXIT:
                    bd["terminal"][e.agent] -= cfg.terminal_penalty
                    exited.append(e.agent)
            elif kind is EventKind.AFFORDANCE_COMPLETED:  # only with curiosity on
                uses = self.uses[e.agent]
                index = self._aff_index[e.detail]
                uses[index] += 1
                bd["curiosity"][e.agent] += cfg.curiosity / math.sqrt(uses[index])
            elif kind is EventKind.SHIFT_ARRIVED:
                bd["punctuality"][e.agent] += self.punctuality(world, e.agent)
            elif stage >= 1 and kind is EventKind.CHAT:
                if e.value > 0:
                    bd["chat"][e.agent] += cfg.social.chat_success
                    bd["chat"][e.other] += cfg.social.chat_success
            elif stage >= 2 and kind is EventKind.QUEUE_JOINED:
                bd["conflict"][e.agent] += cfg.social.polite_queue
            elif stage >= 2:  # RESERVATION_EXPIRED (blocked an object) or GHOST_STEP (shoved through)
                bd["conflict"][e.agent] -= cfg.social.conflict
        return exited

    def punctuality(self, world: World, slot: int) -> float:
        """The bonus for clocking in now: peak at the shift start, 0 at ``punctuality_minutes`` either side."""
        job = int(world.agents.job[slot])
        if job < 0:
            return 0.0
        half = self.tpd // 2
        offset = (world.tick % self.tpd - int(world.employment.start[job]) + half) % self.tpd - half
        return self.punctuality_peak * max(0.0, 1.0 - abs(offset) / self.punctuality_window)


HOMEOSTASIS, NEED_THRESHOLD, SURVIVAL, WAGE = (
    TERMS.index(t) for t in ("homeostasis", "need_threshold", "survival", "wage")
)
_NOBODY, _NOTHING = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)  # no wages paid this tick
# The kernels' settings, packed by :func:`_constants` after the negated homeostasis weights (one per need).
OK, THRESHOLD_PENALTY, SURVIVAL_BONUS, WAGE_RATE, GUARD_TICKS, LO_TICK, HI_TICK, HI_EPISODE, CLIP_TICK, CLIP_EPISODE = (
    len(NEED_NAMES) + i for i in range(10)
)


def _constants(rewards: Rewards) -> np.ndarray:
    """The settings the reward kernels read, as one ``float64`` array (indices ``OK`` ... ``CLIP_EPISODE``).

    Every float32 setting is stored exactly (a float64 holds any float32) and read back as float32.
    """
    cfg = rewards.cfg
    out = np.zeros(CLIP_EPISODE + 1)
    out[: len(NEED_NAMES)] = rewards._neg_weights
    out[OK:] = (
        rewards._ok,
        rewards._threshold_penalty,
        rewards._survival,
        cfg.wage,
        cfg.exit_guard_ticks,
        rewards._lo_tick,
        rewards._hi_tick,
        rewards._hi_episode,
        cfg.clip_tick,
        cfg.clip_episode,
    )
    return out


@numba.njit(cache=True)
def _living_terms(
    terms: np.ndarray,
    needs: np.ndarray,
    alive: np.ndarray,
    consts: np.ndarray,
    paid: np.ndarray,
    amounts: np.ndarray,
) -> None:
    """Zero every term, then write the per-tick ones (rows of ``terms``).

    Homeostasis, need threshold and survival of the living slots; the wage term of the slots ``paid``
    ``amounts`` this tick. ``consts`` is :func:`_constants`'s array.
    """
    terms[:] = 0.0
    ok = np.float32(consts[OK])
    penalty = -np.float32(consts[THRESHOLD_PENALTY])
    survival = np.float32(consts[SURVIVAL_BONUS])
    for s in range(len(alive)):
        if not alive[s]:
            continue
        hom = np.float32(0.0)
        over = 0
        for k in range(needs.shape[1]):
            x = needs[s, k]
            hom += x * x * np.float32(consts[k])
            if x >= ok:
                over += 1
        terms[HOMEOSTASIS, s] = hom
        terms[NEED_THRESHOLD, s] = penalty * np.float32(over)
        terms[SURVIVAL, s] = survival
    wage = consts[WAGE_RATE]
    for i in range(len(paid)):
        terms[WAGE, paid[i]] += np.float32(wage * amounts[i])


@numba.njit(cache=True)
def _guardrails(
    terms: np.ndarray,
    alive: np.ndarray,
    consts: np.ndarray,
    reward: np.ndarray,
    episode_return: np.ndarray,
    trigger_tick: np.ndarray,
    tick: int,
    last_trigger: int,
    running: tuple[int, float, float, float],
    exits: int,
) -> tuple[int, float, float, float]:
    """Sum every term but the last (the guardrails row) into ``reward``, apply the guardrails in place.

    Writes the guardrails' net effect into the last row and adds the rewards to ``episode_return``. The
    episode cap only ever lowers a positive reward (to what keeps the return at or below ``HI_EPISODE``), and
    is skipped while ``running``'s bound on every return plus one tick's clip stays below it. ``running`` is
    the reward statistics' count, mean and M2 and that bound; returns them updated with this tick's rewards
    of the living and the ``exits`` slots that left (:func:`townlet.rewards.stats.merge_sums`).
    """
    count, mean, m2, return_bound = running
    guard_ticks = int(consts[GUARD_TICKS])
    near_exit = tick - last_trigger <= guard_ticks
    clip_episode = return_bound + consts[CLIP_TICK] >= consts[CLIP_EPISODE]
    lo, hi, hi_episode = np.float32(consts[LO_TICK]), np.float32(consts[HI_TICK]), np.float32(consts[HI_EPISODE])
    guard_row = terms.shape[0] - 1
    zero = np.float32(0.0)
    total, squares, bound = 0.0, 0.0, 0.0
    n = exits
    for s in range(terms.shape[1]):
        n += alive[s]
        raw = zero
        for t in range(guard_row):
            raw += terms[t, s]
        r = max(raw, lo)
        if near_exit and tick - trigger_tick[s] <= guard_ticks:
            r = min(r, zero)  # no positive reward right after an exit trigger
        r = min(r, hi)
        ret = episode_return[s]
        if clip_episode and r > zero:
            r = max(min(r, hi_episode - ret), zero)
        episode_return[s] = ret + r
        reward[s] = r
        terms[guard_row, s] = r - raw
        total += float(r)
        squares += float(r) * float(r)
        bound = max(bound, float(episode_return[s]))
    return_bound = bound if clip_episode else return_bound + consts[CLIP_TICK]
    count, mean, m2 = merge_sums(count, mean, m2, n, total, squares)
    return count, mean, m2, return_bound


@numba.njit(cache=True)
def _reward_tick(
    terms: np.ndarray,
    needs: np.ndarray,
    alive: np.ndarray,
    consts: np.ndarray,
    paid: np.ndarray,
    amounts: np.ndarray,
    reward: np.ndarray,
    episode_return: np.ndarray,
    trigger_tick: np.ndarray,
    tick: int,
    last_trigger: int,
    running: tuple[int, float, float, float],
) -> tuple[int, float, float, float]:
    """A tick with no event-driven, shaping or social term: :func:`_living_terms` then :func:`_guardrails`."""
    _living_terms(terms, needs, alive, consts, paid, amounts)
    return _guardrails(terms, alive, consts, reward, episode_return, trigger_tick, tick, last_trigger, running, 0)
