"""Shared fixtures: the default config, a simulation factory, and YAML files written into tmp_path."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from townlet.config import LoadedConfig, load_config
from townlet.config.loader import DEFAULTS_DIR
from townlet.logs import reset_logging
from townlet.sim import Simulation
from townlet.world.events import Event
from townlet.world.state import World

SHIPPED_AFFORDANCES = DEFAULTS_DIR / "affordances.yaml"


@pytest.fixture(autouse=True)
def _structured_logging_reset() -> Any:
    """Commands run in-process (`run`, `serve`) install the structured log handler: remove it after each test."""
    yield
    reset_logging()


@pytest.fixture(autouse=True, scope="session")
def _private_home(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Tests never touch the real ``~/.townlet``: HOME is a session folder (caches stay where they were)."""
    real = Path.home()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MPLCONFIGDIR", os.environ.get("MPLCONFIGDIR", str(real / ".config" / "matplotlib")))
        patch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        yield


@pytest.fixture
def loaded() -> LoadedConfig:
    """The shipped default config, freshly loaded."""
    return load_config()


@pytest.fixture
def make_sim() -> Callable[..., Simulation]:
    """Factory: ``make_sim(seed=0, overrides=[...], agents=N, policy="scripted", manual=False)``.

    ``agents`` sets ``population.agents``. With ``manual=True`` the policy phase is removed, so agents
    do only what the test tells them (``world.go_use``...) while the rest of the tick runs as usual.
    """

    def make(
        seed: int = 0,
        overrides: Iterable[str] = (),
        agents: int | None = None,
        policy: Any = "scripted",
        manual: bool = False,
    ) -> Simulation:
        sets = list(overrides)
        if agents is not None:
            sets.append(f"population.agents={agents}")
        sim = Simulation(load_config(overrides=sets), seed=seed, policy=policy)
        if manual:
            names = [name for name, _ in sim.phases]
            assert "policy" in names, f"no 'policy' phase to remove (phases: {names})"
            sim.phases = [(name, phase) for name, phase in sim.phases if name != "policy"]
        return sim

    return make


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[[str, Any], Path]:
    """Write ``data`` (a mapping, or raw text) to ``tmp_path/name`` and return the path."""

    def write(name: str, data: Any) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    return write


@pytest.fixture
def write_manifest(write_yaml: Callable[[str, Any], Path]) -> Callable[..., str]:
    """Write the shipped affordances plus/over ``entries`` to tmp_path; return the ``affordances=`` override."""

    def write(entries: dict[str, Any], name: str = "affordances.yaml") -> str:
        data = yaml.safe_load(SHIPPED_AFFORDANCES.read_text(encoding="utf-8"))
        data["affordances"].update(entries)
        return f"affordances={write_yaml(name, data)}"

    return write


@pytest.fixture
def use_now() -> Callable[[World, int, int, str], None]:
    """Put an agent on a free access tile of ``obj`` and send it to use ``aff_id`` (it starts this tick)."""

    def use(world: World, slot: int, obj: int, aff_id: str) -> None:
        here = int(world.agents.tile[slot])
        tiles = world.objects.access[obj]
        tile = next((t for t in tiles if t == here or world.occupancy[t] == 0), None)
        assert tile is not None, f"every access tile of {world.objects.ids[obj]} is occupied"
        if tile != here:
            world.teleport(slot, tile)
        world.go_use(slot, obj, world.manifest.by_id[aff_id].index)

    return use


@pytest.fixture
def run() -> Callable[[Simulation, int], list[Event]]:
    """Step a simulation ``ticks`` times and return every event, in order."""

    def step(sim: Simulation, ticks: int) -> list[Event]:
        events: list[Event] = []
        for _ in range(ticks):
            events.extend(sim.step().events)
        return events

    return step
