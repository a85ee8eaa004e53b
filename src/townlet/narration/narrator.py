"""The narrator: turns notable events into short lines, throttled and de-duplicated, published as events.

Notable moments (SPEC 10): a late arrival after being held up in a queue or shoved aside, the first clash of
two agents, the first lunch two agents share, arrivals, exits, eviction notices, and every perturbation's
start and end. A line is published (an ``EventKind.NARRATION`` event: detail = the text, value = the index
of its category in ``CATEGORIES``, agent/other = the slots it is about) unless an identical line went out
within ``dedupe_window`` ticks, its category spoke within its gap, or ``global_limit`` lines already went
out within ``global_window`` ticks. With ``privacy: on`` every agent name becomes a stable pseudonym.
"""

from __future__ import annotations

import string
from collections import Counter, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from townlet.config.errors import ConfigError
from townlet.narration.privacy import Pseudonyms
from townlet.narration.templates import CATEGORIES, CLASHES, ENDED, EXIT_REASONS, FIELDS, TEMPLATES, readable
from townlet.world.events import Event, EventKind

if TYPE_CHECKING:
    from townlet.world.state import World

_WATCHED = {
    EventKind.QUEUE_JOINED,
    EventKind.GHOST_STEP,
    EventKind.SHIFT_ARRIVED,
    EventKind.TIE_CHANGED,
    EventKind.AGENT_ARRIVED,
    EventKind.AGENT_EXIT,
    EventKind.EVICTION_NOTICE,
    EventKind.PERTURBATION_STARTED,
    EventKind.PERTURBATION_ENDED,
}


@dataclass(frozen=True, slots=True)
class Line:
    """One published line."""

    tick: int
    category: str
    text: str


class Narrator:
    """Lines about the town, rate-limited globally and per category.

    Attributes:
        recent: The last ``narration.recent`` published lines, oldest first.
        published: Lines published so far, by category.
        suppressed: Lines held back so far, by cause (``dedupe``, ``category``, ``global``).
        privacy: Whether agent names are replaced by pseudonyms.
        pseudonyms: The pseudonym registry (telemetry can reuse it for its own fields).
    """

    def __init__(self, world: World) -> None:
        cfg = world.config.narration
        self.cfg = cfg
        self.world = world
        source = str(world.loaded.source)
        for category in cfg.templates:
            if category not in TEMPLATES:
                known = ", ".join(CATEGORIES)
                raise ConfigError(source, f"narration.templates.{category}", f"unknown category (known: {known})")
        self.templates = TEMPLATES | cfg.templates
        for category, template in cfg.templates.items():
            used = {f for _, f, _, _ in string.Formatter().parse(template) if f}
            if not used <= FIELDS[category]:
                bad = ", ".join(sorted(used - FIELDS[category]))
                allowed = ", ".join(sorted(FIELDS[category])) or "none"
                message = f"unknown field {bad} (allowed: {allowed})"
                raise ConfigError(source, f"narration.templates.{category}", message)
        self.gaps: dict[str, int] = cfg.category_gaps.model_dump()
        self.privacy = cfg.privacy == "on"
        self.pseudonyms = Pseudonyms(cfg.pseudonym_salt)
        self.recent: deque[Line] = deque(maxlen=cfg.recent)
        self.published: Counter[str] = Counter()
        self.suppressed: Counter[str] = Counter()
        self._window: deque[int] = deque()
        self._last_of: dict[str, int] = {}
        self._said: dict[str, int] = {}
        self._clashed: set[frozenset[str]] = set()
        self._bonded: set[frozenset[str]] = set()
        self._held_up: dict[int, tuple[int, int, int]] = {}  # slot -> (tick, blocker, object)
        self._names: list[str | None] = list(world.agents.ids)  # last tick's names: leavers keep theirs here
        self._spawned = world.counters["spawned"]
        self._late = world.config.employment.punctuality_window
        self._minutes_per_tick = 1440.0 / world.ticks_per_day

    # -- the phase ----------------------------------------------------------------------------------

    def update(self, world: World) -> None:
        """Narrate this tick's notable events (the ``narration`` phase)."""
        events = world.events
        left = False
        if events:
            for i in range(len(events)):  # lines are appended while we read: stop at the tick's own events
                e = events[i]
                if e.kind in _WATCHED:
                    left |= e.kind is EventKind.AGENT_EXIT
                    self._narrate(world, e)
        if left or world.counters["spawned"] != self._spawned:
            self._names = list(world.agents.ids)
            self._spawned = world.counters["spawned"]

    def _narrate(self, world: World, e: Event) -> None:
        kind, tick = e.kind, world.tick
        if kind is EventKind.QUEUE_JOINED:
            if e.other >= 0:
                self._held_up[e.agent] = (tick, e.other, e.obj)
        elif kind is EventKind.GHOST_STEP:
            if e.other >= 0:  # the walker had to shove past whoever stood in its way
                self._held_up[e.agent] = (tick, e.other, int(world.agents.target_obj[e.agent]))
        elif kind is EventKind.SHIFT_ARRIVED:
            held = self._held_up.get(e.agent)
            if e.value > self._late and held is not None and tick - held[0] <= self.cfg.blocked_window:
                obj = held[2]
                what = readable(world.objects.types[obj]) if obj >= 0 else "door"
                minutes = round(e.value * self._minutes_per_tick)
                self.say("late_and_blocked", e.agent, held[1], minutes=minutes, object=what)
        elif kind is EventKind.TIE_CHANGED:
            self._tie(world, e)
        elif kind is EventKind.AGENT_ARRIVED:
            home = world.objects.place_ids[int(world.agents.home[e.agent])]
            self.say("arrival", e.agent, home=home)
        elif kind is EventKind.AGENT_EXIT:
            self.say("exit", e.agent, reason=EXIT_REASONS.get(e.detail, readable(e.detail)))
        elif kind is EventKind.EVICTION_NOTICE:
            self.say("eviction_notice", e.agent)
        elif kind is EventKind.PERTURBATION_STARTED:
            self._perturbation_started(e)
        else:  # PERTURBATION_ENDED
            what, _, target = e.detail.partition(":")
            label = ENDED.get(what)
            if label is not None:
                self.say("restored", what=label.format(target=readable(target.split(":")[0])))

    def _tie(self, world: World, e: Event) -> None:
        if e.detail not in CLASHES and e.detail != "shared_meal":
            return
        pair = frozenset((self._real_name(e.agent), self._real_name(e.other)))
        if e.detail == "shared_meal":
            if pair not in self._bonded:
                self._bonded.add(pair)
                obj = int(world.agents.target_obj[e.agent])
                place = world.objects.place_ids[world.objects.place[obj]] if obj >= 0 else "cafe"
                self.say("bonded_over_lunch", e.agent, e.other, place=readable(place))
        elif pair not in self._clashed:
            self._clashed.add(pair)
            self.say("first_clash", e.agent, e.other, what=CLASHES[e.detail])

    def _perturbation_started(self, e: Event) -> None:
        kind, _, rest = e.detail.partition(":")
        target, _, magnitude = rest.partition(":")
        if kind == "price_spike":
            percent = round((float(magnitude or 1.0) - 1.0) * 100)
            self.say("price_spike", item=readable(target), percent=percent)
        elif kind == "closed_facility":
            self.say("closed_facility", place=readable(target))
        elif kind == "arranged_meet":
            self.say("arranged_meet", e.agent, e.other, place=readable(target))
        elif kind in ("blackout", "water_outage"):
            self.say(kind)

    # -- names and publishing -----------------------------------------------------------------------

    def _real_name(self, slot: int) -> str:
        a = self.world.agents
        if 0 <= slot < a.capacity:
            name = a.ids[slot] if a.alive[slot] else self._names[slot]
            if name is not None:
                return name
        return "someone"

    def name(self, slot: int) -> str:
        """The published name of the agent in ``slot`` (a pseudonym in privacy mode; leavers keep theirs)."""
        name = self._real_name(slot)
        return self.pseudonyms.of(name) if self.privacy and name != "someone" else name

    def say(self, category: str, agent: int = -1, other: int = -1, **fields: Any) -> bool:
        """Publish a line of ``category`` about ``agent``/``other`` unless a throttle holds it back."""
        if agent >= 0:
            fields["agent"] = self.name(agent)
        if other >= 0:
            fields["other"] = self.name(other)
        text = self.templates[category].format(**fields)
        tick = self.world.tick
        said = self._said.get(text)
        if said is not None and tick - said < self.cfg.dedupe_window:
            self.suppressed["dedupe"] += 1
            return False
        last = self._last_of.get(category)
        if last is not None and tick - last < self.gaps[category]:
            self.suppressed["category"] += 1
            return False
        window = self._window
        while window and window[0] <= tick - self.cfg.global_window:
            window.popleft()
        if len(window) >= self.cfg.global_limit:
            self.suppressed["global"] += 1
            return False
        window.append(tick)
        self._last_of[category] = tick
        self._said[text] = tick
        if len(self._said) > 4096:
            self._said = {t: k for t, k in self._said.items() if tick - k < self.cfg.dedupe_window}
        self.recent.append(Line(tick, category, text))
        self.published[category] += 1
        self.world.emit(
            EventKind.NARRATION, agent=agent, other=other, value=float(CATEGORIES.index(category)), detail=text
        )
        return True
