"""Hot reload of the affordance manifest and the perturbation settings, swapped at a tick boundary.

A reload reads the files, dry-run parses and validates them, and compares checksums; only a file that
changed and validates is swapped in, between ticks, so no tick ever sees half of each. A broken file is
rejected and the town keeps running on the old one. Changes that alter the action space, the reward or
the learned policy's inputs (adding/removing/reordering affordances, reward weights, the observation
layout / network, the identity embedding size, any other section) are refused with the reason: restart.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from townlet.config.errors import ConfigError
from townlet.config.loader import compute_config_id, read_yaml
from townlet.config.models import TownletConfig, clock_to_tick
from townlet.perturbations.schedule import KINDS, Perturbations
from townlet.world.affordances import AffordanceManifest, load_manifest

if TYPE_CHECKING:
    from townlet.sim.simulation import Simulation

log = logging.getLogger(__name__)
# Sections of the YAML that may change without a restart (operations never reach the town state).
RELOADABLE = {"perturbations", "affordances"}
OPERATIONAL = {
    "telemetry",
    "console",
    "server",
    "logging",
    "snapshots",
    "imitation",
    "evaluation",
    "stability",
    "promotion",
    "stages",
}
RESTART_REASONS = {
    "rewards": "reward weights changed: needs a restart",
    "observations": "the observation layout (network input) changed: needs a restart",
    "env": "the action/observation interface changed: needs a restart",
    "identity": "the identity embedding size changed: needs a restart",
    "features": "feature flags change the network and rewards: needs a restart",
}


@dataclasses.dataclass
class ReloadResult:
    """What one reload attempt did.

    Attributes:
        applied: Files swapped in (``affordances``, ``perturbations``).
        rejected: File -> reason it was refused (the old version keeps running).
        unchanged: Files whose checksum had not changed.
    """

    applied: list[str] = dataclasses.field(default_factory=list)
    rejected: dict[str, str] = dataclasses.field(default_factory=dict)
    unchanged: list[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (console answers, telemetry)."""
        return dataclasses.asdict(self)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class HotReloader:
    """Watches the affordance manifest and the config file (for its ``perturbations`` section).

    Args:
        sim: The simulation to reload into.
        every: Check the files every ``every`` ticks from :meth:`attach` (0: only on :meth:`reload`).
    """

    def __init__(self, sim: Simulation, every: int = 0) -> None:
        self.sim = sim
        self.every = int(every)
        loaded = sim.loaded
        self.affordances_sha = sim.world.manifest.checksum
        self.config_sha = _sha(loaded.source) if loaded.source.is_file() else ""
        self._raw = read_yaml(loaded.source) if self.config_sha else {}
        self._mtimes = self._stat()
        self.history: list[dict[str, Any]] = []

    def attach(self) -> HotReloader:
        """Check for changed files between ticks every ``every`` ticks (a no-op when ``every`` is 0)."""
        if self.every > 0:
            self.sim.after_step.append(self._maybe)
        return self

    def _stat(self) -> tuple[int, ...]:
        loaded = self.sim.loaded
        return tuple(p.stat().st_mtime_ns if p.is_file() else 0 for p in (loaded.affordances_path, loaded.source))

    def _maybe(self, sim: Simulation) -> None:
        if sim.world.tick % self.every == 0 and self._stat() != self._mtimes:
            self.reload()

    def reload(self) -> ReloadResult:
        """Dry-run both files and swap in what changed and validates (call between ticks)."""
        self._mtimes = self._stat()
        result = ReloadResult()
        manifest = self._check_affordances(result)
        perturbations = self._check_config(result)
        if manifest is not None:
            self._swap_manifest(manifest)
            result.applied.append("affordances")
        if perturbations is not None:
            self._swap_perturbations(perturbations)
            result.applied.append("perturbations")
        for name, reason in result.rejected.items():
            log.warning("hot reload of %s rejected: %s", name, reason)
        if result.applied or result.rejected:
            self.history.append({"tick": self.sim.world.tick, **result.as_dict()})
        return result

    # -- affordances --------------------------------------------------------------------------------

    def _check_affordances(self, result: ReloadResult) -> AffordanceManifest | None:
        w = self.sim.world
        path = self.sim.loaded.affordances_path
        try:
            sha = _sha(path)
        except OSError as exc:
            result.rejected["affordances"] = f"cannot read {path}: {exc.strerror or exc}"
            return None
        if sha == self.affordances_sha:
            result.unchanged.append("affordances")
            return None
        try:
            new = load_manifest(path, set(w.agents.items), set(w.objects.type_names), w.ticks_per_day)
            for aff in new.affordances:
                for phase, names in aff.hooks.items():
                    for name in names:
                        if not w.hooks.known(name):
                            where = f"affordances.{aff.id}.hooks.{phase}"
                            raise ConfigError(str(path), where, f"unknown hook {name!r}")
        except ConfigError as exc:
            result.rejected["affordances"] = str(exc)
            return None
        old_ids = [a.id for a in w.manifest.affordances]
        new_ids = [a.id for a in new.affordances]
        if new_ids != old_ids:
            result.rejected["affordances"] = (
                "adding, removing or reordering affordances changes the action space: needs a restart"
            )
            return None
        self.affordances_sha = sha
        return new

    def _swap_manifest(self, manifest: AffordanceManifest) -> None:
        sim = self.sim
        sim.world.manifest = manifest
        self._new_identity()
        log.info("hot reload: affordances swapped at tick %d (checksum %s)", sim.world.tick, manifest.checksum[:12])

    # -- perturbations ------------------------------------------------------------------------------

    def _check_config(self, result: ReloadResult) -> TownletConfig | None:
        source = self.sim.loaded.source
        if not self.config_sha:
            return None
        try:
            sha = _sha(source)
        except OSError as exc:
            result.rejected["perturbations"] = f"cannot read {source}: {exc.strerror or exc}"
            return None
        if sha == self.config_sha:
            result.unchanged.append("perturbations")
            return None
        try:
            raw = read_yaml(source) or {}
            if not isinstance(raw, dict):
                raise ConfigError(str(source), "", "top level must be a mapping of sections")
            changed = {k for k in set(raw) | set(self._raw) if raw.get(k) != self._raw.get(k)}
            blocked = sorted(changed - RELOADABLE - OPERATIONAL)
            if blocked:
                reasons = [
                    RESTART_REASONS.get(
                        k, f"{k} changed: needs a restart (only affordances and perturbations hot-reload)"
                    )
                    for k in blocked
                ]
                result.rejected["perturbations"] = "; ".join(reasons)
                return None
            merged = self.sim.config.model_dump(mode="json")
            merged["perturbations"] = raw.get("perturbations", {})
            new = TownletConfig.model_validate(merged)
            probe = SimpleNamespace(kinds={kind: getattr(new.perturbations, kind) for kind in KINDS})
            Perturbations._check_targets(probe, self.sim.world)  # type: ignore[arg-type]  # dry run
        except ConfigError as exc:
            result.rejected["perturbations"] = str(exc)
            return None
        except ValueError as exc:  # pydantic ValidationError
            result.rejected["perturbations"] = f"{source}: perturbations: {exc}".splitlines()[0]
            return None
        self.config_sha, self._raw = sha, raw
        if "perturbations" not in changed:
            result.unchanged.append("perturbations")
            return None
        return new

    def _swap_perturbations(self, config: TownletConfig) -> None:
        sim = self.sim
        p, cfg, tpd = sim.perturbations, config.perturbations, sim.world.ticks_per_day
        sim.config = sim.world.config = config
        sim.loaded = sim.world.loaded = dataclasses.replace(sim.loaded, config=config)
        p.cfg = cfg
        p.kinds = {kind: getattr(cfg, kind) for kind in KINDS}
        p.window = (clock_to_tick(cfg.window[0], tpd), clock_to_tick(cfg.window[1], tpd))
        self._new_identity()
        log.info("hot reload: perturbation settings swapped at tick %d", sim.world.tick)

    def _new_identity(self) -> None:
        sim = self.sim
        loaded = sim.loaded
        new_id = compute_config_id(loaded.config, loaded.map_path, loaded.affordances_path)
        sim.loaded = sim.world.loaded = dataclasses.replace(loaded, config_id=new_id)
