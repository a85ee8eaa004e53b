"""Kernels read named bundles of the town's arrays; the commitment window is one rule that every reader shares."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from env_support import LIFECYCLE as LIFE
from townlet.observations import ObservationEncoder
from townlet.policy.options import option_mask
from townlet.sim import snapshot

SRC = Path(__file__).resolve().parents[1] / "src" / "townlet"
# agents age out within a tenth of a day and newcomers take their slots
LIFECYCLE = [f"{k}={str(v).lower()}" for k, v in LIFE.items()]


def test_no_kernel_takes_more_than_twelve_positional_parameters() -> None:
    """Every compiled kernel in src/ has at most 12 parameters."""
    too_long = []
    kernels = 0
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and any("njit" in ast.unparse(d) for d in node.decorator_list):
                kernels += 1
                if len(node.args.args) > 12:
                    too_long.append(f"{path.name}::{node.name} ({len(node.args.args)})")
    assert kernels > 40  # the walk found the kernels (world/, observations/, policy/, env/ ...)
    assert not too_long


@pytest.mark.parametrize("window", [4, 40])
def test_mask_observation_and_controller_agree_on_the_commitment_window(make_sim, window: int) -> None:
    """With options.commitment_window changed, the mask, commitment_left and may_switch give the same answer."""
    sim = make_sim(seed=2, agents=10, overrides=[f"options.commitment_window={window}"])
    encoder = ObservationEncoder(sim.world)
    at = encoder.layout.index("option.commitment_left")
    a = sim.world.agents
    seen = {True: 0, False: 0}
    for _ in range(30):
        sim.run(7)
        obs = encoder.encode()
        slots = a.slots()
        masks = option_mask(sim.world, slots, commitment=window)  # no critical streaks: the window alone
        possible = option_mask(sim.world, slots, commitment=0)
        for slot, row, free_row in zip(slots.tolist(), masks, possible, strict=True):
            option = int(a.option[slot])
            if option < 0:
                continue
            free = sim.controller.may_switch(slot)
            seen[free] += 1
            left = round(float(obs[slot, at]) * window)
            assert left == max(window - (sim.world.tick - int(a.option_started[slot])), 0)
            assert free == (left == 0)
            if free:
                assert np.array_equal(row, free_row)
            else:
                assert row.sum() == 1 and row[option]
    assert seen[True] and seen[False]


def _encoded(encoder: ObservationEncoder) -> np.ndarray:
    """Living rows, without ``ctx_reset`` (a new encoder sees every agent for the first time, by design)."""
    out = encoder.encode().copy()
    out[~encoder.world.agents.alive] = 0.0
    out[:, encoder.layout.index("ctx_reset")] = 0.0
    return out


def test_bundles_built_before_a_snapshot_restore_read_the_restored_town(make_sim) -> None:
    """An encoder and masks whose bundles were built before a live snapshot load see the loaded town exactly."""
    source = make_sim(seed=4, agents=12, overrides=LIFECYCLE)
    source.run(400)
    state = snapshot.capture(source)
    target = make_sim(seed=9, agents=12, overrides=LIFECYCLE)
    target.run(50)
    early = ObservationEncoder(target.world)
    early.encode()  # builds its bundles from the town as it was
    snapshot.restore(target, state)
    assert target.state_hash() == source.state_hash()
    assert np.array_equal(_encoded(early), _encoded(ObservationEncoder(source.world)))
    assert np.array_equal(option_mask(target.world, commitment=15), option_mask(source.world, commitment=15))


def test_bundles_follow_arrivals_and_exits(make_sim) -> None:
    """Over a churning population a long-lived encoder matches a fresh one at every check."""
    sim = make_sim(seed=1, agents=6, overrides=LIFECYCLE)
    encoder = ObservationEncoder(sim.world)
    ids = set(sim.world.agents.slot_of)
    changes = 0
    for _ in range(25):
        sim.run(40)
        now = set(sim.world.agents.slot_of)
        changes += now != ids
        ids = now
        assert np.array_equal(_encoded(encoder), _encoded(ObservationEncoder(sim.world)))
    assert changes
