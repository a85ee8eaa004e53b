"""Fuzz: 10,000 random and malformed console payloads yield only documented codes, and the town stays valid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_fuzz import problems_in
from townlet.config.loader import load_config
from townlet.console import ERROR_CODES, REGISTRY, ConsoleService, TokenAuthority
from townlet.console.audit import AuditLog
from townlet.sim import Simulation

BATCHES = 100
PER_BATCH = 100  # 100 x 100 = 10,000 payloads

names = st.sampled_from(REGISTRY.names() + ["", "SPAWN", "drop_table", "help "])
agents = st.sampled_from([f"agent_{i}" for i in range(12)] + ["", "ghost", "agent_-1", "a" * 80])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    agents,
    st.sampled_from(
        [
            "on",
            "off",
            "start",
            "stop",
            "power",
            "water",
            "raw_food",
            "hunger",
            "GetFed",
            "1x",
            "max",
            "cafe",
            "home_0",
            "blackout",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)
arg_keys = st.sampled_from(
    [
        "agent",
        "other",
        "x",
        "y",
        "need",
        "value",
        "item",
        "price",
        "state",
        "place",
        "utility",
        "ticks",
        "kind",
        "duration",
        "id",
        "text",
        "on",
        "per_day",
        "low",
        "high",
        "option",
        "force",
        "agents",
        "magnitude",
        "command",
        "trust",
        "rivalry",
        "home",
    ]
)
good_args = st.dictionaries(arg_keys, scalars, max_size=5)
# Plausible values per argument name, so many payloads get past validation and really act on the town.
some_agent = st.sampled_from([f"agent_{i}" for i in range(12)])
POOL = {
    "agent": some_agent,
    "other": some_agent,
    "x": st.integers(0, 47),
    "y": st.integers(0, 47),
    "need": st.sampled_from(["hunger", "hygiene", "energy", "social"]),
    "value": st.floats(0, 1),
    "item": st.sampled_from(["raw_food", "cafe_meal", "caviar"]),
    "price": st.floats(0.1, 5),
    "state": st.sampled_from(["on", "off", "start", "stop"]),
    "place": st.sampled_from(["cafe", "gym", "home_0", "x"]),
    "utility": st.sampled_from(["power", "water"]),
    "ticks": st.integers(1, 60),
    "kind": st.sampled_from(["price_spike", "blackout", "water_outage", "closed_facility", "arranged_meet"]),
    "duration": st.integers(1, 80),
    "id": st.integers(0, 12),
    "text": st.text("abc xyz", min_size=1, max_size=20),
    "on": st.booleans(),
    "per_day": st.integers(0, 5),
    "low": st.integers(1, 30),
    "high": st.integers(1, 30),
    "option": st.sampled_from(["GetFed", "GetClean", "GoToWork", "ShopGroceries", "Sleep", "Socialise", "Idle"]),
    "force": st.booleans(),
    "agents": st.lists(some_agent, min_size=2, max_size=2),
    "magnitude": st.floats(0.5, 3),
    "command": names,
    "trust": st.floats(-1, 1),
    "familiarity": st.floats(-1, 1),
    "rivalry": st.floats(-1, 1),
    "both_ways": st.booleans(),
    "home": st.sampled_from(["home_0", "home_5", "cafe"]),
    "needs": st.dictionaries(st.sampled_from(["hunger", "energy"]), st.floats(0, 1), max_size=2),
    "note": st.text(max_size=5),
}


def plausible_args(name: str) -> st.SearchStrategy:
    fields = REGISTRY.commands[name].args.model_fields
    required = {k: POOL.get(k, scalars) for k, f in fields.items() if f.is_required()}
    optional = {k: POOL.get(k, scalars) for k, f in fields.items() if not f.is_required()}
    return st.fixed_dictionaries(
        {"cmd": st.just(name), "args": st.fixed_dictionaries(required, optional=optional)},
        optional={"cmd_id": st.integers(0, 50)},
    )


plausible = st.sampled_from(REGISTRY.names()).flatmap(plausible_args)
payloads = st.one_of(
    plausible,
    plausible,
    st.fixed_dictionaries({"cmd": names, "args": good_args}, optional={"cmd_id": scalars, "mode": scalars}),
    st.fixed_dictionaries({"cmd": values, "args": values}),
    values,
)


class Town:
    """A busy town with a console; tokens for an admin, a viewer, and junk."""

    def __init__(self, folder: Path) -> None:
        self.sim = Simulation(load_config(overrides=["stage=M3", "population.agents=10"]), seed=9)
        authority = TokenAuthority(folder / "k.json", folder / "r.json", folder / "i.jsonl")
        self.audit = folder / "audit.jsonl"
        # fsync off: 10,000 syncs would only time the disk (test_console checks the audit log is fsync'd)
        self.console = ConsoleService(self.sim, authority, AuditLog(self.audit, fsync=False))
        self.tokens = [
            authority.issue("fuzz-admin", "admin", 3600)[0],
            authority.issue("fuzz-view", "viewer", 3600)[0],
            None,
            "garbage",
            7,
        ]
        self.futures: list = []
        self.sent = 0


def fuzz(folder: Path, batches: int) -> None:
    """Send ``batches`` x 100 payloads, a tick after each batch; check codes, the town and the audit log."""
    town = Town(folder)
    money = town.sim.world.economy.total_money(town.sim.world)
    choice = np.random.default_rng(batches)

    @settings(
        max_examples=batches, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(st.lists(payloads, min_size=PER_BATCH, max_size=PER_BATCH))
    def batch(items: list) -> None:
        for payload in items:
            token = town.tokens[int(choice.integers(len(town.tokens))) if choice.random() < 0.3 else 0]
            town.futures.append(town.console.submit(token, payload))
            town.sent += 1
        town.sim.step()
        found = problems_in(town.sim.world)
        assert not found, found

    batch()
    assert town.sent == batches * PER_BATCH
    town.sim.step()
    results = [f.result(timeout=0) for f in town.futures]
    codes = {r.code for r in results if not r.ok}
    assert codes <= set(ERROR_CODES), codes - set(ERROR_CODES)
    assert town.console.counts["internal_errors"] == 0
    assert sum(r.ok for r in results) > len(results) // 20  # the fuzz reached real commands, not only refusals
    assert abs(town.sim.world.economy.total_money(town.sim.world) - money) < 1e-6
    town.console.audit.sweep(force=True)  # refusals past the line budget are counted in summaries: write them
    audit = [orjson.loads(line) for line in town.audit.read_bytes().splitlines()]
    lines = [r for r in audit if not r.get("summary")]
    assert len(lines) + sum(r["suppressed"] for r in audit if r.get("summary")) == batches * PER_BATCH
    for record in lines[:: max(len(lines) // 200, 1)]:
        assert {"ts", "tick", "principal", "cmd", "args", "ok", "code"} <= set(record)


@pytest.mark.slow
def test_10000_random_and_malformed_payloads_give_only_documented_codes_and_a_valid_town(tmp_path: Path) -> None:
    """10,000 payloads (100 batches of 100): only documented codes, no internal errors, a valid town."""
    fuzz(tmp_path, BATCHES)


def test_1000_random_and_malformed_payloads_quick(tmp_path: Path) -> None:
    """The same fuzz at a tenth of the size, in the default suite."""
    fuzz(tmp_path, BATCHES // 10)
