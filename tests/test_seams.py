"""Public seams: commands applied between ticks, an amended publish that only reads, explicit console registration."""

from __future__ import annotations

import pytest

from townlet.console import catalog
from townlet.console.registry import Registry
from townlet.telemetry.encoder import TelemetryEncoder
from townlet.world.events import EventKind


def test_apply_pending_returns_what_the_commands_emitted(make_sim) -> None:
    """apply_pending runs queued commands now, returns their events and leaves the last tick's events alone."""
    sim = make_sim(seed=1)
    sim.run(30)
    last = list(sim.world.events)
    sim.enqueue(lambda w: w.emit(EventKind.NARRATION, value=-1.0, detail="the console speaks"))
    emitted = sim.apply_pending()
    assert [e.detail for e in emitted] == ["the console speaks"]
    assert sim.world.events == last and sim.commands == []
    assert "the console speaks" not in [e.detail for e in sim.step().events]


def test_an_amended_publish_reads_the_world_without_writing_it(make_sim) -> None:
    """amend() labels the state with the last tick simulated; world.tick never changes while it builds."""
    sim = make_sim(seed=1)
    sim.run(30)
    encoder = TelemetryEncoder(sim, sim.config.telemetry)
    encoder.encode()
    seen = []
    agents = encoder.builder.agents

    def spy(*args, **kwargs):
        seen.append(sim.world.tick)
        return agents(*args, **kwargs)

    encoder.builder.agents = spy  # type: ignore[method-assign]
    batch = encoder.amend([])
    assert seen == [30] and sim.world.tick == 30
    assert batch.tick == 29 and encoder.state["clock"]["tick_of_day"] == 29


def test_console_commands_come_from_the_catalogs_modules() -> None:
    """The registry is exactly the join of each listed module's COMMANDS; a name defined twice is refused."""
    joined = {name for module in catalog.MODULES for name in module.COMMANDS.names()}
    assert set(catalog.REGISTRY.names()) == joined and len(joined) == sum(
        len(module.COMMANDS.names()) for module in catalog.MODULES
    )
    with pytest.raises(ValueError, match="registered twice"):
        Registry.joined(catalog.MODULES[0].COMMANDS, catalog.MODULES[0].COMMANDS)
