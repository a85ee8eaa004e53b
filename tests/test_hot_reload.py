"""Hot reload: changed affordances/perturbations swap in at a tick boundary; bad or restart-only changes are refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from townlet.config.loader import DEFAULT_CONFIG, load_config
from townlet.console.audit import AuditLog
from townlet.console.auth import TokenAuthority
from townlet.console.service import ConsoleService
from townlet.sim import Simulation
from townlet.sim.reload import HotReloader


def _town(tmp_path: Path) -> tuple[Simulation, Path, Path]:
    """A town whose config and affordance files are private copies we can edit."""
    for name in ("default.yaml", "affordances.yaml", "town.yaml"):
        shutil.copy(DEFAULT_CONFIG.parent / name, tmp_path / name)
    sim = Simulation(load_config(tmp_path / "default.yaml"), seed=1)
    return sim, tmp_path / "default.yaml", tmp_path / "affordances.yaml"


def _edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_changed_affordance_takes_effect_at_the_next_tick(tmp_path: Path) -> None:
    """A reload queued through the console swaps the manifest at the tick boundary; agents use the new values."""
    sim, _, affs = _town(tmp_path)
    authority = TokenAuthority(tmp_path / "k.json", tmp_path / "r.json", tmp_path / "i.jsonl")
    console = ConsoleService(sim, authority, AuditLog(tmp_path / "audit.jsonl", fsync=False))
    admin = authority.issue("alice", "admin", 3600)[0]
    sim.run(20)
    old_id, old = sim.loaded.config_id, sim.world.manifest
    _edit(affs, lambda d: d["affordances"]["snack"].update(duration=61))
    future = console.submit(admin, {"cmd": "reload"})
    assert sim.world.manifest is old  # nothing changes until the tick boundary
    sim.step()
    answer = future.result(timeout=1)
    assert answer.ok and answer.data["applied"] == ["affordances"]
    assert sim.world.manifest.by_id["snack"].duration == 61
    assert sim.world.manifest.checksum != old.checksum and sim.loaded.config_id != old_id
    sim.run(1500)  # the town keeps running on the new manifest
    assert sim.world.agents.alive.sum() == 8


def test_broken_affordance_file_is_rejected_and_the_old_one_keeps_running(tmp_path: Path) -> None:
    """A YAML error or an invalid field is refused with the reason; the old manifest stays in place."""
    sim, _, affs = _town(tmp_path)
    reloader = HotReloader(sim)
    old, good = sim.world.manifest, affs.read_text()
    affs.write_text(good + "\n  broken: [unclosed\n")
    result = reloader.reload()
    assert result.applied == [] and "YAML syntax error" in result.rejected["affordances"]
    affs.write_text(good)
    _edit(affs, lambda d: d["affordances"]["snack"].update(duration=-3))
    result = reloader.reload()
    assert "snack" in result.rejected["affordances"]
    assert sim.world.manifest is old
    sim.run(50)
    assert sim.tick == 50


def test_structural_and_restart_only_changes_are_refused(tmp_path: Path) -> None:
    """Removing an affordance, or changing reward weights / embedding size, is refused as needing a restart."""
    sim, cfg, affs = _town(tmp_path)
    reloader = HotReloader(sim)
    _edit(affs, lambda d: d["affordances"].pop("snack"))
    assert "needs a restart" in reloader.reload().rejected["affordances"]
    _edit(cfg, lambda d: d.setdefault("rewards", {}).update(survival=0.5))
    assert "reward weights changed: needs a restart" in reloader.reload().rejected["perturbations"]
    _edit(cfg, lambda d: d.setdefault("identity", {}).update(embedding_slots=32))
    assert "embedding size" in reloader.reload().rejected["perturbations"]


def test_perturbation_settings_hot_reload(tmp_path: Path) -> None:
    """A changed perturbation section is swapped in; a bad target is rejected and the old settings stay."""
    sim, cfg, _ = _town(tmp_path)
    reloader = HotReloader(sim)
    _edit(cfg, lambda d: d.setdefault("perturbations", {}).update(stagger_gap=123))
    result = reloader.reload()
    assert result.applied == ["perturbations"] and sim.perturbations.cfg.stagger_gap == 123
    _edit(cfg, lambda d: d["perturbations"].update(price_spike={"targets": ["caviar"]}))
    result = reloader.reload()
    assert "unknown item 'caviar'" in result.rejected["perturbations"]
    assert sim.perturbations.cfg.stagger_gap == 123


def test_file_watch_reloads_on_change(tmp_path: Path) -> None:
    """With a watch interval the changed file is picked up between ticks without a command."""
    sim, _, affs = _town(tmp_path)
    sim.reloader = HotReloader(sim, every=5).attach()
    sim.run(3)
    _edit(affs, lambda d: d["affordances"]["snack"].update(duration=44))
    sim.run(5)
    assert sim.world.manifest.by_id["snack"].duration == 44
    assert sim.reloader.history[0]["applied"] == ["affordances"]
