"""Tests for hooks: allow-listed modules, typed payloads in a fixed order, failures, errors, global hooks."""

from __future__ import annotations

import dataclasses
import sys
import textwrap

import pytest

from townlet.config import ConfigError, load_config
from townlet.world.agents import Activity
from townlet.world.events import EventKind
from townlet.world.hooks import HookError, HookPayload, HookRegistry
from townlet.world.needs import ENERGY

PROBE = "townlet_test_probe_hooks"
PROBE_SOURCE = '''
"""Hooks written by the tests: every payload is appended to ``registry.probe_log``."""


def register(registry):
    registry.probe_log = []

    def recorder(name):
        def hook(payload):
            registry.probe_log.append((name, payload))
        return hook

    def explode(payload):
        raise RuntimeError("boom in " + payload.phase)

    for name in ("probe_before", "probe_after", "probe_after_2", "probe_fail"):
        registry.add(name, recorder(name))
    registry.add("explode", explode)
    for event in ("power_cut", "affordance_before", "affordance_after", "affordance_fail", "price_change",
                  "quit_job", "agent_spawn", "weather_change"):
        registry.on(event, recorder("global:" + event))
    registry.on("weather_change", explode, "explode")
'''
# cook_meal with probes in every phase; snack with a hook that raises before a probe.
PROBED = {
    "cook_meal": {
        "object": "stove",
        "place": "home",
        "duration": 18,
        "requires": ["power"],
        "preconditions": ["own_home", "inventory.raw_food >= 1", "power_on"],
        "needs": {"hunger": -0.7},
        "inventory": {"raw_food": -1},
        "hooks": {
            "before": ["probe_before"],
            "after": ["count_meal", "probe_after", "probe_after_2"],
            "fail": ["probe_fail"],
        },
    },
    "snack": {
        "object": "fridge",
        "place": "home",
        "duration": 6,
        "preconditions": ["own_home", "inventory.raw_food >= 1"],
        "needs": {"hunger": -0.45},
        "inventory": {"raw_food": -1},
        "hooks": {"after": ["explode", "probe_after"]},
    },
    "warm_bath": {
        "object": "shower",
        "place": "home",
        "duration": 30,
        "requires": ["power"],
        "per_tick": {"energy": -0.01},
        "needs": {"hygiene": -0.5},
        "hooks": {"fail": ["probe_fail"]},
    },
}
MODULES = f"[townlet.world.builtin_hooks, {PROBE}]"


@pytest.fixture
def probe(tmp_path, monkeypatch, write_manifest) -> list[str]:
    """Write the probe hook module into tmp_path and return the overrides that allow-list and use it."""
    (tmp_path / f"{PROBE}.py").write_text(PROBE_SOURCE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(PROBE, None)
    yield [f"hooks.allowed_modules={MODULES}", f"hooks.modules={MODULES}", write_manifest(PROBED)]
    sys.modules.pop(PROBE, None)


def log_of(world, *, globals_too: bool = True) -> list[tuple[str, HookPayload]]:
    return [(n, p) for n, p in world.hooks.probe_log if globals_too or not n.startswith("global:")]


def home_obj(world, slot: int, obj_type: str) -> int:
    return int(world.objects.of_type_in_place(obj_type, int(world.agents.home[slot]))[0])


def test_affordance_hooks_get_typed_payloads_in_order(make_sim, probe, use_now, run) -> None:
    """before, then after hooks in manifest order, then the global after hook, each with the typed fields."""
    sim = make_sim(agents=1, manual=True, overrides=probe)
    world = sim.world
    stove = home_obj(world, 0, "stove")
    world.hooks.probe_log.clear()
    start = sim.tick
    use_now(world, 0, stove, "cook_meal")
    run(sim, 18)
    names = [n for n, _ in log_of(world)]
    assert names == [
        "probe_before",
        "global:affordance_before",
        "probe_after",
        "probe_after_2",
        "global:affordance_after",
    ]
    before, after = log_of(world)[0][1], log_of(world)[2][1]
    assert (before.tick, before.phase, before.agent, before.object, before.affordance) == (
        start,
        "before",
        "agent_0",
        "home_0.stove.0",
        "cook_meal",
    )
    assert dict(before.effects) == {}
    assert (after.tick, after.phase, after.agent, after.object, after.affordance) == (
        start + 17,
        "after",
        "agent_0",
        "home_0.stove.0",
        "cook_meal",
    )
    assert set(after.effects) == {"hunger", "raw_food"}
    assert after.effects["hunger"] == pytest.approx(-0.7)
    assert after.effects["raw_food"] == -1
    assert world.hooks.stats["meals"] == 1
    assert world.hooks.calls["probe_after"] == 1


def test_hook_payload_is_read_only(make_sim, probe, use_now, run) -> None:
    """A hook cannot change its payload or the effects it reports."""
    sim = make_sim(agents=1, manual=True, overrides=probe)
    use_now(sim.world, 0, home_obj(sim.world, 0, "stove"), "cook_meal")
    run(sim, 18)
    payload = log_of(sim.world, globals_too=False)[-1][1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        payload.tick = 0  # type: ignore[misc]
    with pytest.raises(TypeError):
        payload.effects["hunger"] = 0.0  # type: ignore[index]


def test_power_cut_mid_cooking_delivers_a_fail_payload(make_sim, probe, use_now, run) -> None:
    """Cutting power at home while cooking runs the fail hook (reason power_lost) and no after hooks."""
    sim = make_sim(agents=1, manual=True, overrides=probe)
    world = sim.world
    stove = home_obj(world, 0, "stove")
    use_now(world, 0, stove, "cook_meal")
    run(sim, 5)
    world.hooks.probe_log.clear()
    world.utilities.set(world, "power", False, int(world.agents.home[0]))
    tick = sim.tick
    events = run(sim, 1)
    names = [n for n, _ in log_of(world)]
    assert names == ["global:power_cut", "probe_fail", "global:affordance_fail"]
    cut, fail = log_of(world)[0][1], log_of(world)[1][1]
    assert (cut.phase, cut.detail, cut.agent, cut.object) == ("power_cut", "home_0", None, None)
    assert (fail.tick, fail.phase, fail.agent, fail.object, fail.affordance, fail.detail) == (
        tick,
        "fail",
        "agent_0",
        "home_0.stove.0",
        "cook_meal",
        "power_lost",
    )
    assert dict(fail.effects) == {}
    assert [e.detail for e in events if e.kind == EventKind.AFFORDANCE_FAILED] == ["cook_meal:power_lost"]
    assert world.hooks.stats["power_cut_failures"] == 1


def test_power_cut_failure_releases_the_stove_and_the_agent_carries_on(make_sim, probe, use_now, run) -> None:
    """After the failed cook the stove has no reservation or user and the agent can snack at once."""
    sim = make_sim(agents=1, manual=True, overrides=probe)
    world = sim.world
    stove, fridge = home_obj(world, 0, "stove"), home_obj(world, 0, "fridge")
    raw = world.agents.item_index["raw_food"]
    food = int(world.agents.inventory[0, raw])
    use_now(world, 0, stove, "cook_meal")
    run(sim, 5)
    world.utilities.set(world, "power", False, int(world.agents.home[0]))
    run(sim, 1)
    assert world.objects.reserved_by[stove] == -1 and world.objects.user[stove] == -1
    assert not world.objects.queue[stove] and world.queues.length[stove] == 0
    assert world.agents.activity[0] == Activity.IDLE
    assert world.agents.inventory[0, raw] == food  # the failed cook used no food
    world.go_use(0, fridge, world.manifest.by_id["snack"].index)
    events = run(sim, 30)
    assert "snack" in [e.detail for e in events if e.kind == EventKind.AFFORDANCE_COMPLETED]
    assert world.agents.inventory[0, raw] == food - 1


def test_fail_payload_reports_per_tick_effects_accrued(make_sim, probe, use_now, run) -> None:
    """The fail payload's effects are the per-tick effects accrued before the failure."""
    sim = make_sim(agents=1, manual=True, overrides=probe)
    world = sim.world
    world.agents.needs[0, ENERGY] = 0.8
    use_now(world, 0, home_obj(world, 0, "shower"), "warm_bath")
    run(sim, 10)
    world.utilities.set(world, "power", False, int(world.agents.home[0]))
    run(sim, 1)
    fail = [p for n, p in log_of(world) if n == "probe_fail"]
    assert len(fail) == 1 and fail[0].affordance == "warm_bath"
    assert set(fail[0].effects) == {"energy"}
    assert -0.11 - 1e-6 <= fail[0].effects["energy"] <= -0.10 + 1e-6


def test_scripted_agent_recovers_from_a_power_cut_while_cooking(make_sim, probe, run) -> None:
    """In a scripted town, cutting power under a cooking agent fails it cleanly and it goes on living."""
    sim = make_sim(seed=0, overrides=probe)
    world = sim.world
    cook = world.manifest.by_id["cook_meal"].index
    for _ in range(3000):
        run(sim, 1)
        cooking = [
            s
            for s in world.agents.slots()
            if world.agents.activity[s] == Activity.USING and world.agents.target_aff[s] == cook
        ]
        if cooking:
            break
    assert cooking, "no agent cooked in 3000 ticks"
    slot = int(cooking[0])
    stove = int(world.agents.target_obj[slot])
    world.utilities.set(world, "power", False, int(world.agents.home[slot]))
    events = run(sim, 1)
    assert any(e.kind == EventKind.AFFORDANCE_FAILED and e.agent == slot for e in events)
    assert [p.agent for n, p in log_of(world) if n == "probe_fail"] == [world.agents.ids[slot]]
    assert world.objects.user[stove] == -1
    later = run(sim, 300)
    assert any(e.kind == EventKind.AFFORDANCE_COMPLETED and e.agent == slot for e in later)
    assert world.objects.user[stove] == -1  # nobody can cook without power


def test_hook_that_raises_is_reported_and_the_tick_goes_on(make_sim, probe, use_now, run) -> None:
    """A raising hook becomes a HOOK_ERROR event; later hooks still run and the snack still completes."""
    sim = make_sim(agents=1, manual=True, overrides=probe)
    world = sim.world
    fridge = home_obj(world, 0, "fridge")
    use_now(world, 0, fridge, "snack")
    events = run(sim, 6)
    errors = [e for e in events if e.kind == EventKind.HOOK_ERROR]
    assert len(errors) == 1
    assert errors[0].detail == "explode: RuntimeError: boom in after"
    assert (errors[0].agent, errors[0].obj) == (0, fridge)
    assert [n for n, _ in log_of(world, globals_too=False)] == ["probe_after"]
    assert "snack" in [e.detail for e in events if e.kind == EventKind.AFFORDANCE_COMPLETED]
    assert world.objects.user[fridge] == -1 and world.objects.reserved_by[fridge] == -1
    run(sim, 20)
    assert sim.kpis.counts["hook_errors"] == 1


def test_global_hook_that_raises_is_reported(make_sim, probe) -> None:
    """A raising global hook is a HOOK_ERROR; the change it listens to still happens."""
    world = make_sim(agents=1, manual=True, overrides=probe).world
    world.events.clear()
    world.weather.set(world, "rainy")
    assert world.weather.name == "rainy"
    errors = [e for e in world.events if e.kind == EventKind.HOOK_ERROR]
    assert [e.detail for e in errors] == ["explode: RuntimeError: boom in weather_change"]
    assert [n for n, _ in log_of(world)][-1] == "global:weather_change"


def test_global_power_cut_hook_fires_once_per_place_cut(make_sim, probe) -> None:
    """``registry.on("power_cut")`` fires for each place that loses power, not for repeats or water cuts."""
    world = make_sim(agents=1, manual=True, overrides=probe).world
    world.hooks.probe_log.clear()
    grocer = world.objects.place_ids.index("grocer")
    world.utilities.set(world, "power", False, grocer)
    world.utilities.set(world, "power", False, grocer)
    world.utilities.set(world, "water", False, grocer)
    assert [(n, p.detail) for n, p in log_of(world)] == [("global:power_cut", "grocer")]
    world.utilities.set(world, "power", False)
    cuts = [p.detail for n, p in log_of(world) if n == "global:power_cut"]
    assert cuts == ["grocer", *[p for p in world.objects.place_ids if p != "grocer"]]


def test_global_hooks_fire_for_spawn_price_change_and_job_loss(make_sim, probe) -> None:
    """agent_spawn, price_change and quit_job global hooks receive the agent and detail."""
    world = make_sim(agents=2, manual=True, overrides=probe).world
    assert [p.agent for n, p in log_of(world) if n == "global:agent_spawn"] == ["agent_0", "agent_1"]
    world.economy.set_price(world, "raw_food", 1.1)
    world.employment.hire(world, 1, 0)
    world.employment.fire(world, 1, "testing")
    tail = [(n, p.agent, p.detail) for n, p in log_of(world)][-2:]
    assert tail == [("global:price_change", None, "raw_food:1.0->1.1"), ("global:quit_job", "agent_1", "testing")]


def test_hook_order_is_deterministic_across_runs(make_sim, probe, run) -> None:
    """Two scripted runs with the same seed deliver the same hook calls in the same order."""
    logs = []
    for _ in range(2):
        sim = make_sim(seed=3, overrides=probe)
        run(sim, 700)
        logs.append([(n, p.tick, p.agent, p.object, p.affordance, p.phase) for n, p in sim.world.hooks.probe_log])
    assert len(logs[0]) > 10
    assert logs[0] == logs[1]


# --- the allow-list -------------------------------------------------------------------------------


def test_module_not_on_the_allow_list_is_refused(probe) -> None:
    """Naming a hook module that is not allow-listed is a ConfigError on ``hooks``."""
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[f"hooks.modules={MODULES}"])
    assert info.value.file == "--set"
    assert info.value.field.startswith("hooks")
    assert PROBE in info.value.message


def test_allow_listed_module_that_cannot_be_imported_is_refused(make_sim) -> None:
    """An allow-listed module that does not exist fails the world's construction on ``hooks.modules``."""
    missing = "[townlet.world.builtin_hooks, townlet_no_such_hook_module]"
    with pytest.raises(ConfigError) as info:
        make_sim(agents=1, overrides=[f"hooks.allowed_modules={missing}", f"hooks.modules={missing}"])
    assert info.value.field == "hooks.modules"
    assert "townlet_no_such_hook_module" in info.value.message


def test_module_without_register_is_refused(make_sim, tmp_path, monkeypatch) -> None:
    """A hook module must define ``register(registry)``."""
    name = "townlet_test_hooks_without_register"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent('"""No register here."""\n'), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    try:
        with pytest.raises(ConfigError) as info:
            make_sim(agents=1, overrides=[f"hooks.allowed_modules=[{name}]", f"hooks.modules=[{name}]"])
    finally:
        sys.modules.pop(name, None)
    assert "register" in info.value.message


def test_registry_refuses_unknown_events_and_duplicate_names() -> None:
    """Global hooks exist only for the listed events, and a hook name may be registered once."""
    registry = HookRegistry()
    registry.add("x", lambda payload: None)
    with pytest.raises(HookError):
        registry.add("x", lambda payload: None)
    with pytest.raises(HookError):
        registry.on("sunrise", lambda payload: None)
    with pytest.raises(HookError):
        HookRegistry.from_modules(["os"], allowed=["townlet.world.builtin_hooks"])
