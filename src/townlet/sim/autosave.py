"""Periodic autosave with retention, and crash recovery from the newest valid snapshot in a directory."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from townlet.sim import snapshot

if TYPE_CHECKING:
    from townlet.config.loader import LoadedConfig
    from townlet.sim.simulation import Simulation

log = logging.getLogger(__name__)
PATTERN = "town-*.snap"


def snapshot_name(tick: int) -> str:
    """The autosave file name for a tick (sorts by tick)."""
    return f"town-{tick:012d}.snap"


class Autosaver:
    """Writes a snapshot every ``every`` ticks into ``directory`` and keeps the newest ``keep``.

    Attach it with :meth:`attach`; it runs between ticks (``Simulation.after_step``), so every file is a
    whole state. Each file is written atomically, so a crash at any moment leaves the previous ones intact.
    """

    def __init__(self, directory: str | Path, every: int, keep: int) -> None:
        self.directory = Path(directory).expanduser()
        self.every = int(every)
        self.keep = int(keep)
        self.saved = 0

    @classmethod
    def from_config(cls, sim: Simulation, directory: str | Path | None = None) -> Autosaver:
        """An autosaver from the ``snapshots`` config section (``directory`` overrides ``snapshots.dir``)."""
        cfg = sim.config.snapshots
        return cls(directory or cfg.dir, cfg.autosave_every, cfg.keep)

    def attach(self, sim: Simulation) -> Autosaver:
        """Save from now on after every ``every``-th tick (a no-op when ``every`` is 0)."""
        if self.every > 0:
            sim.after_step.append(self.maybe_save)
        return self

    def maybe_save(self, sim: Simulation) -> Path | None:
        """Save when the tick just finished is a multiple of ``every``; prune beyond ``keep``."""
        if self.every <= 0 or sim.world.tick % self.every:
            return None
        return self.save(sim)

    def save(self, sim: Simulation) -> Path:
        """Write a snapshot now and prune old ones."""
        path = snapshot.write(sim, self.directory / snapshot_name(sim.world.tick))
        self.saved += 1
        for old in sorted(self.directory.glob(PATTERN))[: -self.keep]:
            old.unlink(missing_ok=True)
        return path


def newest_valid(
    directory: str | Path, loaded: LoadedConfig | None = None, policy: Any = "scripted"
) -> tuple[Simulation, Path, list[str]]:
    """Load the newest snapshot in ``directory`` that passes its checksum and loads.

    Returns:
        The simulation, the file it came from, and one warning per newer file that was skipped.

    Raises:
        snapshot.SnapshotError: when no file in the directory is usable.
    """
    warnings: list[str] = []
    files = sorted(Path(directory).expanduser().glob(PATTERN), reverse=True)
    for path in files:
        try:
            return snapshot.load(path, loaded, policy=policy), path, warnings
        except snapshot.SnapshotError as exc:
            warnings.append(f"skipping {path.name}: {exc}")
            log.warning("skipping snapshot %s: %s", path, exc)
    raise snapshot.SnapshotError(f"no valid snapshot in {directory} ({len(files)} file(s) tried)")
