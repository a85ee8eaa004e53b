"""Console commands: every admin happy path changes the world as described; errors carry the stable codes."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest

from townlet.config.loader import load_config
from townlet.console import REGISTRY, ConsoleService, TokenAuthority
from townlet.console.audit import AuditLog
from townlet.console.errors import (
    E_ALREADY_POSSESSED,
    E_BLOCKED_TILE,
    E_BUSY_TARGET,
    E_CONFLICT,
    E_FORBIDDEN,
    E_INVALID_ARG,
    E_NOT_FOUND,
)
from townlet.console.possession import PossessionPolicy
from townlet.policy.options import OPTION_LABELS
from townlet.sim import Simulation
from townlet.telemetry.publisher import TelemetryPublisher
from townlet.telemetry.transports import StdoutTransport
from townlet.world.agents import Activity
from townlet.world.events import EventKind


class Desk:
    """A console with an admin (alice), a second admin (bob) and a viewer, over a town with ties."""

    def __init__(self, tmp_path: Path, overrides: list[str] | None = None) -> None:
        sim = Simulation(load_config(overrides=["stage=M3"] + (overrides or [])), seed=0)
        self.authority = TokenAuthority(tmp_path / "k.json", tmp_path / "r.json", tmp_path / "i.jsonl")
        self.audit_path = tmp_path / "audit.jsonl"
        self.console = ConsoleService(sim, self.authority, AuditLog(self.audit_path))
        self.sim, self.world = sim, sim.world
        self.admin = self.authority.issue("alice", "admin", 3600)[0]
        self.bob = self.authority.issue("bob", "admin", 3600)[0]
        self.viewer = self.authority.issue("stream", "viewer", 3600)[0]
        self.events: list = []

    def do(self, cmd: str, token: str | None = None, **args):
        """Run one command at the next tick boundary; keep that tick's events."""
        future = self.console.submit(token or self.admin, {"cmd": cmd, "args": args})
        assert not future.done() or not future.result().ok  # accepted commands wait for the tick
        result = self.sim.step()
        self.events = result.events
        return future.result(timeout=1)

    def ok(self, cmd: str, **args) -> dict:
        result = self.do(cmd, **args)
        assert result.ok, result
        return result.data

    def slot(self, agent: str) -> int:
        return self.world.agents.slot_of[agent]

    def kinds(self) -> set[str]:
        return {e.kind.value for e in self.events}


@pytest.fixture
def desk(tmp_path: Path) -> Desk:
    return Desk(tmp_path)


def free_outdoor_tile(world) -> tuple[int, int]:
    tile = int(np.flatnonzero(world.grid.walkable & world.grid.outdoors)[0])
    return tile % world.grid.width, tile // world.grid.width


# -- happy paths, one per command ------------------------------------------------------------------------


def spawn(d: Desk) -> None:
    x, y = free_outdoor_tile(d.world)
    data = d.ok("spawn", agent="visitor", x=x, y=y, needs={"hunger": 0.5})
    slot = d.slot("visitor")
    assert data == {"agent": "visitor", "slot": slot, "x": x, "y": y}
    assert d.world.agents.needs[slot, 0] == pytest.approx(0.5, abs=0.01)
    home = d.ok("spawn", home="home_3")
    assert d.world.agents.home[d.slot(home["agent"])] == d.world.objects.place_ids.index("home_3")


def teleport(d: Desk) -> None:
    x, y = free_outdoor_tile(d.world)
    d.ok("teleport", agent="agent_1", x=x, y=y, force=True)
    moved = [e for e in d.events if e.kind is EventKind.TELEPORT]
    assert moved and moved[0].agent == d.slot("agent_1") and moved[0].value == d.world.grid.tile(x, y)
    here = int(d.world.agents.tile[d.slot("agent_1")])  # it may have taken one step since, not more
    assert abs(here % d.world.grid.width - x) + abs(here // d.world.grid.width - y) <= 1


def kill(d: Desk) -> None:
    d.ok("kill", agent="agent_2", note="testing")
    assert "agent_2" not in d.world.agents.slot_of
    assert "agent_exit" in d.kinds() and d.sim.lifecycle.exits["console"] == 1


def setneed(d: Desk) -> None:
    d.ok("setneed", agent="agent_0", need="hunger", value=0.9)
    assert d.world.agents.needs[d.slot("agent_0"), 0] >= 0.9
    assert "need_threshold" in d.kinds()


def set_rel(d: Desk) -> None:
    data = d.ok("set_rel", agent="agent_0", other="agent_1", trust=-0.5, rivalry=0.7, both_ways=True)
    assert (data["trust"], data["rivalry"]) == (-0.5, 0.7)
    tie = d.world.relationships.tie(d.slot("agent_1"), d.slot("agent_0"))
    assert tie is not None and tie[2] == pytest.approx(0.7)


def force_chat(d: Desk) -> None:
    d.world.agents.asleep[:] = False
    data = d.ok("force_chat", agent="agent_0", other="agent_1")
    assert isinstance(data["success"], bool) and "chat" in d.kinds()
    assert d.world.relationships.tie(d.slot("agent_0"), d.slot("agent_1")) is not None


def possess(d: Desk) -> None:
    d.ok("possess", agent="agent_3")
    assert d.console.possession.owners == {"agent_3": "alice"}
    assert isinstance(d.sim.policy, PossessionPolicy)
    assert d.do("possess", token=d.bob, agent="agent_3").code == E_ALREADY_POSSESSED
    for _ in range(200):  # a possessed agent without orders only idles (or finishes what it was doing)
        d.sim.step()
    slot = d.slot("agent_3")
    assert d.world.agents.option[slot] in (-1, OPTION_LABELS.index("Idle"))


def unpossess(d: Desk) -> None:
    d.ok("possess", agent="agent_3")
    assert d.do("unpossess", token=d.bob, agent="agent_3").code == E_FORBIDDEN
    d.ok("unpossess", agent="agent_3")
    assert d.console.possession.owners == {}
    assert d.do("unpossess", agent="agent_3").code == E_CONFLICT


def act(d: Desk) -> None:
    assert d.do("act", agent="agent_4", option="GetFed").code == E_CONFLICT  # not possessed
    d.ok("possess", agent="agent_4")
    data = d.ok("act", agent="agent_4", option="ShopGroceries")
    slot = d.slot("agent_4")
    assert data["started"] and d.world.agents.option[slot] == OPTION_LABELS.index("ShopGroceries")
    assert "option_started" in d.kinds()
    for _ in range(30):  # the policy does not take it back
        d.sim.step()
        if d.world.agents.option[slot] < 0:
            break
        assert d.world.agents.option[slot] == OPTION_LABELS.index("ShopGroceries")


def price(d: Desk) -> None:
    data = d.ok("price", item="raw_food", price=1.25)
    assert d.world.economy.prices["raw_food"] == 1.25 and isinstance(data["invariant_violations"], list)
    assert "price_changed" in d.kinds()


def blackout(d: Desk) -> None:
    d.ok("blackout", state="on")
    assert not d.world.utilities.power_on.any()
    d.ok("blackout", state="off")
    assert d.world.utilities.power_on.all()
    data = d.ok("blackout", state="on", place="cafe")
    assert data["power_off"] == ["cafe"]


def outage(d: Desk) -> None:
    data = d.ok("outage", utility="water", place="gym", ticks=5)
    gym = d.world.objects.place_ids.index("gym")
    assert not d.world.utilities.water_on[gym] and data["repair_tick"] == d.sim.world.tick - 1 + 5
    for _ in range(6):
        d.sim.step()
    assert d.world.utilities.water_on[gym]
    d.ok("outage", utility="power")
    assert not d.world.utilities.power_on.any()
    d.ok("outage", utility="power", state="on")
    assert d.world.utilities.power_on.all()


def rain(d: Desk) -> None:
    assert d.ok("rain", state="start") == {"weather": "rainy"} and d.world.weather.is_raining
    assert d.ok("rain", state="stop") == {"weather": "sunny"}


def status(d: Desk) -> None:
    data = d.ok("status", token=d.viewer)
    assert data["agents"] == 8 and data["tick"] == d.sim.world.tick - 1 and data["clock"]["speed"] == "1x"


def agent(d: Desk) -> None:
    data = d.ok("agent", token=d.viewer, agent="agent_5")
    assert data["agent"] == "agent_5" and set(data["needs"]) == {"hunger", "hygiene", "energy", "social"}
    assert data["slot"] == d.slot("agent_5") and "wallet" in data and "x" in data


def health(d: Desk) -> None:
    cfg = d.sim.config.telemetry.model_copy(update={"health_every": 5})
    publisher = TelemetryPublisher(d.sim, cfg, transports=[StdoutTransport(stream=io.BytesIO())]).attach()
    d.console.publisher = publisher
    d.ok("rain", state="start")
    d.sim.run(10)
    data = d.ok("health", token=d.viewer)
    publisher.close()
    assert set(data["transports"]["stdout"]) >= {
        "queue_depth",
        "dropped",
        "retry_streak",
        "last_error",
        "connected",
        "last_success_tick",
        "last_failure_tick",
    }
    assert data["perf"]["phase_ms"]["policy"] > 0 and data["perf"]["slowest"]
    assert data["console"]["applied"] >= 1


def help_(d: Desk) -> None:
    data = d.ok("help")
    assert {c["name"] for c in data["commands"]} == set(REGISTRY.names())
    one = d.ok("help", command="teleport")
    assert one["role"] == "admin" and "x" in one["args"]["properties"]


def speed(d: Desk) -> None:
    assert d.ok("speed", value="100x")["speed"] == "100x"
    assert d.sim.clock.interval() == pytest.approx(0.0025)
    d.ok("speed", value="max")
    assert d.sim.clock.interval() == 0.0


def pause(d: Desk) -> None:
    assert d.ok("pause")["paused"] and d.sim.clock.paused
    assert not d.ok("pause", on=False)["paused"]


def toggle_mortality(d: Desk) -> None:
    d.ok("toggle_mortality", on=False)
    assert d.sim.lifecycle.mortality is False
    d.ok("toggle_mortality", on=True)
    assert d.sim.lifecycle.mortality is True


def set_exit_cap(d: Desk) -> None:
    d.ok("set_exit_cap", per_day=5)
    assert d.sim.lifecycle.exit_cap == 5


def set_spawn_delay(d: Desk) -> None:
    d.ok("set_spawn_delay", low=3, high=4)
    assert d.sim.lifecycle.spawn_delay == (3, 4)
    d.ok("kill", agent="agent_6")
    arrivals = d.sim.lifecycle.arrivals
    assert arrivals and 3 <= arrivals[0].due - (d.sim.world.tick - 1) <= 4


def arrange_meet(d: Desk) -> None:
    data = d.ok("arrange_meet", agents=["agent_0", "agent_7"], place="cafe", duration=50)
    assert data["kind"] == "arranged_meet" and "perturbation_started" in d.kinds()
    assert [p.kind for p in d.sim.perturbations.active] == ["arranged_meet"]


def perturbation_trigger(d: Desk) -> None:
    data = d.ok("perturbation_trigger", kind="price_spike", item="cafe_meal", magnitude=2.0, duration=20)
    assert d.world.economy.prices["cafe_meal"] == pytest.approx(3.0) and data["ends"] == data["started"] + 20
    d.ok("perturbation_trigger", kind="blackout", duration=10)
    assert not d.world.utilities.power_on.any()


def perturbation_cancel(d: Desk) -> None:
    started = d.ok("perturbation_trigger", kind="water_outage", duration=500)
    assert not d.world.utilities.water_on.any()
    d.ok("perturbation_cancel", id=started["id"])
    assert d.world.utilities.water_on.all() and "perturbation_ended" in d.kinds()
    assert d.do("perturbation_cancel", id=started["id"]).code == E_NOT_FOUND


def perturbations(d: Desk) -> None:
    d.sim.run(1000 - d.world.tick)  # midnight: the dice roll (stage M3 has perturbations on)
    d.world.events = []
    assert d.sim.perturbations.enabled
    off = d.ok("perturbations", state="off")
    assert off["schedule"] == "off" and off["next_roll_tick"] is None
    assert not d.sim.perturbations.enabled and d.sim.perturbations.scheduled == []
    on = d.ok("perturbations", state="on")
    assert on == {"schedule": "on", "dropped": [], "running": on["running"], "next_roll_tick": 2000}
    assert d.ok("status", token=d.viewer)["perturbation_schedule"] == "on"


def narrate(d: Desk) -> None:
    d.ok("narrate", text="The mayor waves from the park.", agent="agent_1")
    lines = [e for e in d.events if e.kind is EventKind.NARRATION]
    assert lines and lines[0].detail == "The mayor waves from the park." and lines[0].agent == d.slot("agent_1")


def snapshot_(d: Desk) -> None:
    d.sim.config.snapshots.dir = str(d.audit_path.parent / "snaps")
    saved = d.ok("snapshot", op="save", file="a.snap")
    d.sim.run(30)
    loaded = d.ok("snapshot", op="load", file="a.snap")
    assert loaded["state_hash"] == saved["state_hash"] and d.sim.world.tick == saved["tick"] + 1  # d.ok stepped
    assert d.ok("snapshot", op="migrate", file="a.snap")["migrations"] == []
    assert d.do("snapshot", op="load", file="missing.snap").code == E_NOT_FOUND


def policy_(d: Desk) -> None:
    from townlet.training.live import LivePolicies
    from townlet.training.stability import Baseline

    d.console.policies = LivePolicies(d.sim, None, Baseline(0.05, 0.0))
    assert d.ok("policy", token=d.viewer)["policy"]["hash"] == "scripted"
    swapped = d.ok("policy", op="swap", ref="default")
    assert swapped["policy"]["source"] == "default" and d.sim.actor is not None
    assert EventKind.POLICY_CHANGED.value in d.kinds()


def reload_(d: Desk) -> None:
    data = d.ok("reload")
    assert data["applied"] == [] and "affordances" in data["unchanged"]


HAPPY: dict[str, Callable[[Desk], None]] = {
    "spawn": spawn,
    "teleport": teleport,
    "kill": kill,
    "setneed": setneed,
    "set_rel": set_rel,
    "force_chat": force_chat,
    "possess": possess,
    "unpossess": unpossess,
    "act": act,
    "price": price,
    "blackout": blackout,
    "outage": outage,
    "rain": rain,
    "status": status,
    "agent": agent,
    "health": health,
    "help": help_,
    "speed": speed,
    "pause": pause,
    "toggle_mortality": toggle_mortality,
    "set_exit_cap": set_exit_cap,
    "set_spawn_delay": set_spawn_delay,
    "arrange_meet": arrange_meet,
    "perturbation_trigger": perturbation_trigger,
    "perturbation_cancel": perturbation_cancel,
    "narrate": narrate,
    "perturbations": perturbations,
    "snapshot": snapshot_,
    "reload": reload_,
    "policy": policy_,
}


def test_every_registered_command_has_a_happy_path_test() -> None:
    """The registry and the happy-path table name the same commands."""
    assert set(HAPPY) == set(REGISTRY.names())


@pytest.mark.parametrize("name", sorted(HAPPY))
def test_admin_happy_path(name: str, desk: Desk) -> None:
    """The command changes the world as described (and is audited as applied)."""
    HAPPY[name](desk)
    log = [orjson.loads(x) for x in desk.audit_path.read_bytes().splitlines()]
    assert any(r["cmd"] == name and r["ok"] and r["tick"] is not None for r in log)


def test_every_audit_line_is_synced_to_disk_before_the_answer(desk: Desk, monkeypatch) -> None:
    """The audit log is append-only JSONL and fsync'd once per record."""
    import townlet.console.audit as audit

    synced = []
    monkeypatch.setattr(audit.os, "fsync", lambda fd: synced.append(fd))
    desk.do("rain", state="start")
    desk.do("rain", token=desk.viewer, state="stop")
    lines = desk.audit_path.read_bytes().splitlines()
    assert len(synced) == len(lines) == 2
    first, second = (orjson.loads(x) for x in lines)
    assert (first["principal"], first["cmd"], first["args"], first["ok"]) == ("alice", "rain", {"state": "start"}, True)
    assert (second["principal"], second["code"]) == ("stream", E_FORBIDDEN)
    assert first["tick"] == 0 and first["data"] == {"weather": "rainy"}


# -- the tick boundary --------------------------------------------------------------------------------------


def test_commands_apply_at_the_next_tick_boundary_in_arrival_order(desk: Desk) -> None:
    """Queued commands wait for the tick, then apply first thing, in the order they arrived."""
    futures = [
        desk.console.submit(desk.admin, {"cmd": "price", "args": {"item": "raw_food", "price": p}})
        for p in (1.1, 1.2, 1.3)
    ]
    assert not any(f.done() for f in futures) and desk.world.economy.prices["raw_food"] == 1.0
    result = desk.sim.step()
    assert [f.result().tick for f in futures] == [result.tick] * 3
    prices = [e.value for e in result.events if e.kind is EventKind.PRICE_CHANGED]
    assert prices[:3] == pytest.approx([1.1, 1.2, 1.3]) and desk.world.economy.prices["raw_food"] == 1.3


def test_commands_from_another_thread_are_answered_after_application(desk: Desk) -> None:
    """execute() from a server thread blocks until the tick loop has applied the command."""
    answers = []
    thread = threading.Thread(
        target=lambda: answers.append(
            desk.console.execute(desk.admin, {"cmd": "rain", "args": {"state": "start"}}, timeout=5)
        )
    )
    thread.start()
    while not desk.sim.commands:
        pass
    desk.sim.step()
    thread.join(5)
    assert answers[0].ok and desk.world.weather.is_raining


def test_flush_applies_queued_commands_while_the_town_is_paused(desk: Desk) -> None:
    """A paused live loop calls flush() so commands (like resume) still get answered."""
    desk.ok("pause")
    future = desk.console.submit(desk.admin, {"cmd": "pause", "args": {"on": False}})
    tick = desk.sim.world.tick
    desk.console.flush()
    assert future.result(0).ok and not desk.sim.clock.paused and desk.sim.world.tick == tick


# -- error codes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cmd", "args", "code"),
    [
        ("teleport", {"agent": "nobody", "x": 1, "y": 1}, E_NOT_FOUND),
        ("teleport", {"agent": "agent_0", "x": 0, "y": 0}, E_BLOCKED_TILE),
        ("teleport", {"agent": "agent_0", "x": 500, "y": 1}, E_BLOCKED_TILE),
        ("teleport", {"agent": "agent_0", "x": "3", "y": 1}, E_INVALID_ARG),
        ("teleport", {"agent": "agent_0", "x": 3, "y": 1, "z": 2}, E_INVALID_ARG),
        ("setneed", {"agent": "agent_0", "need": "hunger", "value": 1.5}, E_INVALID_ARG),
        ("setneed", {"agent": "agent_0", "need": "joy", "value": 0.5}, E_INVALID_ARG),
        ("spawn", {"agent": "agent_0"}, E_CONFLICT),
        ("spawn", {"agent": "bad id!"}, E_INVALID_ARG),
        ("spawn", {"home": "cafe"}, E_INVALID_ARG),
        ("spawn", {"home": "atlantis"}, E_NOT_FOUND),
        ("spawn", {"x": 3}, E_INVALID_ARG),
        ("price", {"item": "caviar", "price": 2.0}, E_NOT_FOUND),
        ("price", {"item": "raw_food", "price": 0}, E_INVALID_ARG),
        ("force_chat", {"agent": "agent_0", "other": "agent_0"}, E_INVALID_ARG),
        ("set_rel", {"agent": "agent_0", "other": "agent_1"}, E_INVALID_ARG),
        ("perturbation_trigger", {"kind": "blackout", "item": "raw_food"}, E_INVALID_ARG),
        ("perturbation_trigger", {"kind": "price_spike", "item": "caviar"}, E_NOT_FOUND),
        ("perturbation_trigger", {"kind": "meteor"}, E_INVALID_ARG),
        ("arrange_meet", {"agents": ["agent_0", "ghost"]}, E_NOT_FOUND),
        ("set_spawn_delay", {"low": 9, "high": 3}, E_INVALID_ARG),
        ("outage", {"utility": "gas"}, E_INVALID_ARG),
        ("outage", {"utility": "water", "state": "on", "ticks": 5}, E_INVALID_ARG),
        ("blackout", {"state": "on", "place": "moon"}, E_NOT_FOUND),
        ("narrate", {"text": "bell\x07"}, E_INVALID_ARG),
        ("help", {"command": "fly"}, E_NOT_FOUND),
        ("fly", {}, E_NOT_FOUND),
    ],
)
def test_refusals_carry_stable_codes(desk: Desk, cmd: str, args: dict, code: str) -> None:
    """Bad names, values and targets are refused with the documented code; the tick loop carries on."""
    before = desk.world.agents.alive.sum()
    result = desk.do(cmd, **args)
    assert not result.ok and result.code == code, result
    assert desk.world.agents.alive.sum() == before and desk.console.counts["internal_errors"] == 0


def test_busy_target_and_blocked_tiles(desk: Desk) -> None:
    """Teleporting an agent mid-affordance needs force; an occupied indoor tile is blocked; sleepers don't chat."""
    for _ in range(300):
        desk.sim.step()
        using = np.flatnonzero(desk.world.agents.alive & (desk.world.agents.activity == Activity.USING))
        if len(using):
            break
    name = desk.world.agents.ids[int(using[0])]
    x, y = free_outdoor_tile(desk.world)
    desk.console.submit(desk.admin, {"cmd": "teleport", "args": {"agent": name, "x": x, "y": y}})
    # apply right now, while the agent is still using its object
    busy = desk.console.submit(desk.admin, {"cmd": "teleport", "args": {"agent": name, "x": x, "y": y}})
    desk.console.flush()
    assert busy.result(0).code == E_BUSY_TARGET
    a = desk.world.agents
    indoor = [int(a.tile[s]) for s in a.slots() if not desk.world.grid.outdoors[int(a.tile[s])]]
    other = next(desk.world.agents.ids[s] for s in a.slots() if int(a.tile[s]) not in indoor[:1])
    w = desk.world.grid.width
    result = desk.do("teleport", agent=other, x=indoor[0] % w, y=indoor[0] // w, force=True)
    assert result.code in (E_BLOCKED_TILE,) or int(a.tile[desk.slot(other)]) == indoor[0]
    desk.world.agents.asleep[desk.slot("agent_1")] = True
    assert desk.do("force_chat", agent="agent_0", other="agent_1").code in (E_BUSY_TARGET,)


def test_perturbations_switched_off_live_start_no_more_until_switched_on(tmp_path: Path) -> None:
    """After `perturbations state=off` nothing scheduled starts for days (today's rolls included); on resumes."""
    certain = [f"perturbations.{k}.daily_probability=1.0" for k in ("price_spike", "blackout", "water_outage")]
    d = Desk(tmp_path, certain)
    d.sim.run(1001)  # past midnight of day 1: today's dice have rolled
    assert d.sim.perturbations.scheduled, "with probability 1 something is scheduled for today"
    off = d.ok("perturbations", state="off")
    assert {e["kind"] for e in off["dropped"]} >= {"price_spike", "blackout", "water_outage"}
    started = sum(d.sim.perturbations.started.values())
    for _ in range(3000):  # three in-sim days
        assert all(e.kind is not EventKind.PERTURBATION_STARTED for e in d.sim.step().events)
    assert sum(d.sim.perturbations.started.values()) == started and not d.sim.perturbations.scheduled
    d.ok("perturbations", state="on")
    d.sim.run(2000)  # the next midnight's dice, then the day's window
    assert sum(d.sim.perturbations.started.values()) > started
    audit = [orjson.loads(x) for x in d.audit_path.read_bytes().splitlines()]
    assert [r["args"] for r in audit if r["cmd"] == "perturbations"] == [{"state": "off"}, {"state": "on"}]
    assert d.do("perturbations", token=d.viewer, state="off").code == E_FORBIDDEN
    assert d.do("perturbations", state="maybe").code == E_INVALID_ARG
