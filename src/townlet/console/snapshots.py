"""Admin commands for snapshots and hot reload: ``snapshot`` (save, load, migrate) and ``reload``.

Snapshot files live in ``snapshots.dir``; commands name them by bare file name so a token cannot read or
write elsewhere. Loading replaces the running town's state at the tick boundary the command runs at, and
the policy the snapshot records drives again (through the live town's policy desk).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from townlet.console.errors import E_CONFLICT, E_INVALID_ARG, E_NOT_FOUND, CommandError
from townlet.console.registry import Args, Context, Registry

FileName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+\.snap$")]
COMMANDS = Registry()  # joined into the console's registry by townlet.console.catalog
command = COMMANDS.command


class SnapshotArgs(Args):
    """``op``: save, load or migrate; ``file``: a ``*.snap`` name in ``snapshots.dir``."""

    op: Literal["save", "load", "migrate"]
    file: FileName


def _path(ctx: Context, name: str) -> Path:
    if name.startswith("."):
        raise CommandError(E_INVALID_ARG, "file: hidden names are not allowed")
    return Path(ctx.sim.config.snapshots.dir).expanduser() / name


@command("snapshot", SnapshotArgs)
def snapshot_cmd(ctx: Context, args: SnapshotArgs) -> dict[str, Any]:
    """Save the town to a snapshot, load one in its place, or migrate one to this config (re-saved)."""
    from townlet.sim import snapshot

    sim, path = ctx.sim, _path(ctx, args.file)
    if args.op == "save":
        snapshot.write(sim, path)
        return {"op": "save", "file": args.file, "tick": sim.world.tick, "state_hash": sim.state_hash()}
    if not path.is_file():
        raise CommandError(E_NOT_FOUND, f"no snapshot {args.file!r}")
    try:
        snap = snapshot.read(path, snapshot.SnapshotKeys.from_config(sim.config))
        state, applied = snap.migrated(sim.loaded)
    except snapshot.SnapshotError as exc:
        raise CommandError(E_CONFLICT, str(exc)) from None
    if args.op == "migrate":
        from townlet.sim.simulation import Simulation

        fresh = Simulation(sim.loaded, seed=snap.identity["seed"])
        try:
            snapshot.restore(fresh, state)
        except snapshot.SnapshotError as exc:
            raise CommandError(E_CONFLICT, str(exc)) from None
        fresh.applied_migrations = applied
        snapshot.write(fresh, path)
        return {"op": "migrate", "file": args.file, "migrations": applied}
    before = snapshot.capture(sim)
    try:
        snapshot.restore(sim, state)
    except snapshot.SnapshotError as exc:
        snapshot.restore(sim, before)  # a state that does not fit leaves the running town as it was
        sim.recorded_policy = None  # (its policy never stopped driving)
        raise CommandError(E_CONFLICT, str(exc)) from None
    sim.applied_migrations = applied
    out = {
        "op": "load",
        "file": args.file,
        "tick": sim.world.tick,
        "state_hash": sim.state_hash(),
        "migrations": applied,
    }
    desk = getattr(ctx.service, "policies", None)
    if desk is not None and sim.recorded_policy is not None:  # the policy the snapshot records drives again
        try:
            out["policy"] = desk.reinstate_recorded()
        except (LookupError, ValueError) as exc:  # the town is loaded; the policy driving now keeps driving
            out["policy_warning"] = f"{exc}; the policy driving before the load keeps driving"
    sim.recorded_policy = None
    return out


@command("reload")
def reload_cmd(ctx: Context, args: Args) -> dict[str, Any]:
    """Hot-reload the affordance manifest and perturbation settings (dry run, checksum, swap now)."""
    from townlet.sim.reload import HotReloader

    sim = ctx.sim
    reloader = getattr(sim, "reloader", None)
    if reloader is None:
        reloader = sim.reloader = HotReloader(sim)
    return reloader.reload().as_dict()
