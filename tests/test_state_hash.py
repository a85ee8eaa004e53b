"""The state hash is derived from the snapshot capture: every captured field counts, process machinery does not."""

from __future__ import annotations

import collections
import dataclasses
import enum
from typing import Any

import numpy as np
import pytest

from townlet.sim import components, snapshot

BUSY = ["features.lifecycle=on", "features.perturbations=on", "features.social_rewards=C1"]


def _other(value: Any) -> Any:
    """A different value of the same plain kind (the probe set into one captured field)."""
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return np.zeros((1,) * max(value.ndim, 1), dtype=value.dtype)
        out = value.copy()
        flat = out.reshape(-1)
        flat[0] = "x" if out.dtype.kind in "US" else (0 if flat[0] else 1)
        return out
    if isinstance(value, enum.Enum):
        members = list(type(value))
        return members[(members.index(value) + 1) % len(members)] if len(members) > 1 else None
    if isinstance(value, (bool, np.bool_)):
        return not value
    if isinstance(value, (int, float, np.number)):
        return value + 1
    if value is None:
        return 0
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, bytes):
        return value + b"x"
    if isinstance(value, collections.deque):
        return (
            collections.deque(
                [*value, 0] if value.maxlen is None or value.maxlen > len(value) else [0] * len(value),
                maxlen=value.maxlen,
            )
            if value.maxlen != 0
            else None
        )
    if isinstance(value, dict):
        out = value.copy()
        out["probe"] = 0
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        return type(value)([*value, 0]) if not isinstance(value, (set, frozenset)) else type(value)({*value, "probe"})
    if dataclasses.is_dataclass(value):
        return None
    raise AssertionError(f"no probe for {type(value)}")


def _probe(sim: Any, every_field: bool) -> int:
    """Change captured fields in turn (each put back after) and assert the hash moves each time; return the count."""
    base = sim.state_hash()
    probed = 0
    found = components.components(sim)
    for path, fields in components.town_components(sim).items():
        names = [n for n in fields if n != "__dict__"]  # a pydantic model's values: probed as its own fields
        for name in names if every_field else names[-1:]:
            obj, value = found[path], fields[name]
            object.__setattr__(obj, name, _other(value))
            try:
                assert sim.state_hash() != base, f"{path}.{name} is not in the state hash"
            finally:
                object.__setattr__(obj, name, value)
            probed += 1
    assert sim.state_hash() == base
    return probed


def test_changing_a_field_of_each_captured_component_changes_the_state_hash(make_sim) -> None:
    """One field of every captured component (its last), changed in turn and put back, changes state_hash."""
    sim = make_sim(seed=5, overrides=BUSY)
    sim.run(300)
    assert _probe(sim, every_field=False) == len(components.town_components(sim))


@pytest.mark.slow
def test_changing_any_captured_field_changes_the_state_hash(make_sim) -> None:
    """Every field of every captured component, changed in turn and put back, changes state_hash."""
    sim = make_sim(seed=5, overrides=BUSY)
    sim.run(300)
    fields = sum(len([n for n in f if n != "__dict__"]) for f in components.town_components(sim).values())
    assert fields > 200  # the whole town's state, not a handful of components
    assert _probe(sim, every_field=True) == fields


def test_the_fields_the_hand_written_hash_missed_now_count(make_sim) -> None:
    """economy.rent_unpaid_days (drives eviction) and controller.failures change the hash in place."""
    sim = make_sim(seed=5)
    sim.run(50)
    base = sim.state_hash()
    sim.world.economy.rent_unpaid_days[0] += 1
    assert sim.state_hash() != base
    sim.world.economy.rent_unpaid_days[0] -= 1
    sim.controller.failures[1] += 1
    assert sim.state_hash() != base
    sim.controller.failures[1] -= 1
    assert sim.state_hash() == base


def test_rng_and_distance_field_sections_count(make_sim) -> None:
    """Drawing from an RNG stream or adding a distance field (the other hashed sections) changes the hash."""
    sim = make_sim(seed=5)
    sim.run(20)
    base = sim.state_hash()
    sim.rng.world.random()
    after_draw = sim.state_hash()
    assert after_draw != base
    sim.world.grid.field((0,))
    assert sim.state_hash() != after_draw


def test_process_machinery_is_not_state(make_sim) -> None:
    """Tick timings (components.SKIP), the policy objects and the driving-policy section leave the hash alone."""
    sim = make_sim(seed=5)
    sim.run(20)
    base = sim.state_hash()
    sim.timings.record(sim.tick, 99.0)
    assert sim.state_hash() == base
    sim.policy.probe = {"agent_0": "alice"}  # e.g. the console's possession wrapper's owners
    sim.after_step.append(lambda s: None)  # callbacks of this process (console, autosave)
    assert sim.state_hash() == base


def test_restoring_keeps_the_process_callbacks(make_sim, tmp_path) -> None:
    """Restoring a snapshot into a town leaves its between-tick callbacks (autosave, console) in place."""
    sim = make_sim(seed=5)
    sim.run(10)
    path = snapshot.write(sim, tmp_path / "s.snap")
    other = make_sim(seed=5)
    other.after_step.append(hook := lambda s: None)
    snapshot.restore(other, snapshot.read(path).state())
    assert other.after_step == [hook]
    assert other.state_hash() == sim.state_hash()
    assert snapshot.SECTIONS["policy"].hashed is None
    assert {name for name, s in snapshot.SECTIONS.items() if s.hashed} >= {"components", "rng", "grid_fields"}


@pytest.mark.parametrize("restored", [False, True])
def test_equal_states_hash_equal(make_sim, tmp_path, restored: bool) -> None:
    """Two towns of one config and seed (one of them restored from a snapshot) hash alike at every check."""
    a, b = make_sim(seed=9, overrides=BUSY), make_sim(seed=9, overrides=BUSY)
    a.run(400)
    b.run(400)
    if restored:
        b = snapshot.load(snapshot.write(b, tmp_path / "b.snap"))
    assert a.state_hash() == b.state_hash()
    a.run(200)
    b.run(200)
    assert a.state_hash() == b.state_hash()
