"""Narration: a line for each notable moment, throttles and de-duplication that hold, and privacy mode."""

from __future__ import annotations

import numpy as np
import pytest

from townlet.config import ConfigError
from townlet.narration import CATEGORIES, Pseudonyms
from townlet.perturbations import KINDS
from townlet.world.events import EventKind

UNTHROTTLED = ["narration.global_limit=1000"] + [f"narration.category_gaps.{c}=0" for c in CATEGORIES]


def lines_of(events):
    return [e for e in events if e.kind is EventKind.NARRATION]


def say_next_tick(sim, fn) -> list:
    """Run ``fn(world)`` as a command in the next tick and return that tick's narration events."""
    sim.enqueue(fn)
    return lines_of(sim.step().events)


def test_every_category_has_its_line(make_sim) -> None:
    """Each notable moment yields one line of its category, naming the agents involved."""
    sim = make_sim(
        agents=4, manual=True, overrides=UNTHROTTLED + ["features.lifecycle=on", "lifecycle.spawn_delay=[1, 1]"]
    )
    w = sim.world
    shower = int(w.objects.of_type_in_place("shower", int(w.agents.home[0]))[0])
    got = {}

    def record(category: str, fn) -> None:
        found = say_next_tick(sim, fn)
        assert [CATEGORIES[int(e.value)] for e in found] == [category], (category, [e.detail for e in found])
        got[category] = found[0].detail

    def late(world) -> None:
        world.emit(EventKind.QUEUE_JOINED, agent=0, other=1, obj=shower)
        world.emit(EventKind.SHIFT_ARRIVED, agent=0, value=42.0)

    record("late_and_blocked", late)
    record("first_clash", lambda world: world.relationships.apply_pair(world, 2, 3, "blocked_shower"))
    assert not say_next_tick(sim, lambda world: world.relationships.apply_pair(world, 3, 2, "took_my_shift"))
    record("bonded_over_lunch", lambda world: world.relationships.apply_pair(world, 0, 2, "shared_meal"))
    record("eviction_notice", lambda world: world.emit(EventKind.EVICTION_NOTICE, agent=1))
    record("exit", lambda world: sim.lifecycle.exit(3, "console"))
    record("arrival", lambda world: None)
    record(
        "price_spike",
        lambda world: sim.perturbations.trigger("price_spike", item="raw_food", magnitude=1.25, duration=1),
    )
    record("restored", lambda world: None)
    for kind in ("blackout", "water_outage"):
        record(kind, lambda world, k=kind: sim.perturbations.trigger(k, duration=1))
        record("restored", lambda world: None)
    record("closed_facility", lambda world: sim.perturbations.trigger("closed_facility", place="gym", duration=5))
    record("arranged_meet", lambda world: sim.perturbations.trigger("arranged_meet", agents=(0, 1), place="cafe"))
    assert got == {
        "late_and_blocked": "agent_0 was 60 minutes late for work, held up by agent_1 at the shower.",
        "first_clash": "agent_2 and agent_3 clashed for the first time, over a blocked shower.",
        "bonded_over_lunch": "agent_0 and agent_2 bonded over lunch at the cafe.",
        "eviction_notice": "agent_1 got an eviction notice for unpaid rent.",
        "exit": "agent_3 left town: sent away by the operator.",
        "arrival": f"agent_4 arrived in town and moved into {w.objects.place_ids[int(w.agents.home[3])]}.",
        "price_spike": "Prices jumped: raw food now costs 25% more.",
        "restored": "The water outage is over.",
        "blackout": "The power went out all over town.",
        "water_outage": "The water went off all over town.",
        "closed_facility": "The gym closed its doors for a while.",
        "arranged_meet": "Rivals agent_0 and agent_1 were invited to talk it out at the cafe.",
    }
    assert set(got) == set(CATEGORIES)
    assert [line.text for line in sim.narration.recent][-1] == got["arranged_meet"]
    assert sim.kpis.report(w)["narrations"] == len(sim.narration.recent) == 14


def noisy_run(make_sim, privacy: str, ticks: int = 2000):
    """A town with every perturbation daily, console triggers every 40 ticks and an exit every 250 ticks."""
    overrides = [
        "features.lifecycle=on",
        "features.perturbations=on",
        f"narration.privacy={privacy}",
        "perturbations.agent_cooldown=100",
    ] + [f"perturbations.{k}.daily_probability=1" for k in KINDS]
    sim = make_sim(agents=10, seed=11, overrides=overrides)
    w = sim.world
    rng = np.random.default_rng(5)
    names = {name for name in w.agents.ids if name}
    events = []
    for tick in range(ticks):
        if tick % 40 == 20:
            kind = ("blackout", "water_outage", "price_spike", "closed_facility")[int(rng.integers(4))]
            sim.enqueue(lambda world, k=kind: sim.perturbations.trigger(k, duration=15))
        if tick % 250 == 100:
            sim.enqueue(lambda world: sim.lifecycle.exit(int(world.agents.slots()[0]), "console"))
        if tick % 30 == 0:
            a, b = (int(s) for s in rng.choice(w.agents.slots(), 2, replace=False))
            sim.enqueue(lambda world, a=a, b=b: world.relationships.apply_pair(world, a, b, "ghost_pushed"))
        result = sim.step()
        events.extend(result.events)
        names |= {e.detail for e in result.events if e.kind is EventKind.AGENT_ARRIVED}
    return sim, events, names


def test_throttles_and_deduplication_hold_over_a_noisy_2000_tick_run(make_sim) -> None:
    """Global limit per window, per-category gaps and the de-duplication window all hold; each one bites."""
    sim, events, _ = noisy_run(make_sim, "off")
    cfg = sim.config.narration
    lines = lines_of(events)
    assert len(lines) >= 30
    ticks = np.array([e.tick for e in lines])
    for t in ticks:
        assert ((ticks > t - cfg.global_window) & (ticks <= t)).sum() <= cfg.global_limit
    gaps = cfg.category_gaps.model_dump()
    last_of: dict[str, int] = {}
    said: dict[str, int] = {}
    for e in lines:
        category = CATEGORIES[int(e.value)]
        if category in last_of:
            assert e.tick - last_of[category] >= gaps[category], (category, e.tick)
        if e.detail in said:
            assert e.tick - said[e.detail] >= cfg.dedupe_window, e.detail
        last_of[category] = said[e.detail] = e.tick
    held = sim.narration.suppressed
    assert held["global"] > 0 and held["category"] > 0 and held["dedupe"] > 0, held
    assert [line.text for line in sim.narration.recent] == [e.detail for e in lines][-cfg.recent :]


def test_privacy_mode_leaks_no_real_name_into_any_published_line(make_sim) -> None:
    """With privacy on, no agent id ever appears in a narration line; each agent keeps one stable pseudonym."""
    sim, events, names = noisy_run(make_sim, "on")
    lines = [e.detail for e in lines_of(events)]
    assert len(lines) >= 30 and len(names) > 10
    for text in lines + [line.text for line in sim.narration.recent]:
        assert "agent_" not in text, text
        assert not any(name in text for name in names)
    used = sim.narration.pseudonyms.names
    assert set(used) <= names and len(set(used.values())) == len(used), "distinct agents, distinct pseudonyms"
    assert any(pseudonym in text for text in lines for pseudonym in used.values())
    again = Pseudonyms(sim.config.narration.pseudonym_salt)
    assert all(again.of(agent) == pseudonym for agent, pseudonym in sorted(used.items()))
    assert Pseudonyms("other salt").of("agent_0") != again.of("agent_0")


def test_a_leaver_is_named_in_its_exit_line(make_sim) -> None:
    """The exit line names the agent who left (its slot is empty by the time narration runs)."""
    sim = make_sim(agents=3, overrides=["narration.privacy=on"])
    found = say_next_tick(sim, lambda world: sim.lifecycle.exit(2, "console"))
    assert [e.detail for e in found] == [
        f"{sim.narration.pseudonyms.of('agent_2')} left town: sent away by the operator."
    ]
    assert found[0].agent == 2


def test_templates_can_be_overridden_with_their_own_fields(make_sim) -> None:
    """A template from the config replaces the default; unknown categories and fields are refused."""
    sim = make_sim(agents=2, overrides=['narration.templates.blackout="Lights out!"'])
    found = say_next_tick(sim, lambda world: sim.perturbations.trigger("blackout", duration=5))
    assert [e.detail for e in found] == ["Lights out!"]
    with pytest.raises(ConfigError) as info:
        make_sim(agents=1, overrides=['narration.templates.sunset="x"'])
    assert "narration.templates.sunset" in str(info.value)
    with pytest.raises(ConfigError) as info:
        make_sim(agents=1, overrides=['narration.templates.exit="{agent} left, owing {money}"'])
    assert "narration.templates.exit" in str(info.value) and "money" in str(info.value)
