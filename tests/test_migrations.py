"""Declarative snapshot migrations: the shipped relationships-stage example, YAML steps, strict validation, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from townlet.cli.main import main
from townlet.config.errors import ConfigError
from townlet.config.loader import DEFAULT_CONFIG, load_config
from townlet.config.migrations import parse_migration
from townlet.sim import snapshot
from townlet.sim.migrations import Declared, MigrationError, declared
from townlet.sim.simulation import Simulation
from townlet.world.needs import SOCIAL

C1 = ["features.relationships=C1"]


def saved(tmp_path: Path, ticks: int = 100, overrides: list[str] | None = None) -> Path:
    """A default-config town (relationship stage B) run ``ticks`` ticks and saved."""
    sim = Simulation(load_config(overrides=overrides), seed=1)
    sim.run(ticks)
    return snapshot.write(sim, tmp_path / "b.snap")


def config_dir(tmp_path: Path, migrations: dict[str, dict] | None = None, **extra) -> Path:
    """A copy of the default config in its own folder, with ``migrations/NAME.yaml`` files beside it."""
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw.update(extra)
    folder = tmp_path / "cfg"
    (folder / "migrations").mkdir(parents=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    for name, body in (migrations or {}).items():
        (folder / "migrations" / f"{name}.yaml").write_text(yaml.safe_dump(body))
    return path


def test_shipped_migration_moves_a_snapshot_across_a_relationships_stage(tmp_path: Path) -> None:
    """A stage B snapshot loads under stage C1 via the shipped YAML: recorded, and the social need now grows."""
    path = saved(tmp_path)
    c1 = load_config(overrides=C1)
    moved = snapshot.load(path, c1)
    assert [m["name"] for m in moved.applied_migrations] == ["relationships-b-to-c1"]
    assert moved.applied_migrations[0]["to"] == c1.config_id and moved.tick == 100
    fresh = Simulation(c1, seed=1)
    np.testing.assert_array_equal(moved.world.needs.rates, fresh.world.needs.rates)
    assert moved.world.needs.rates[SOCIAL] > 0, "rates rebuilt from the C1 config"
    alive = moved.world.agents.alive
    before = moved.world.agents.needs[alive, SOCIAL].copy()
    moved.run(500)
    assert (moved.world.agents.needs[alive, SOCIAL] > before).any(), "the social need grows after the move"
    # a bare identity step (no reset) would have kept stage B's zero social rate: the steps matter
    key = (snapshot.read(path).identity["config_id"], c1.config_id)
    snapshot.register_migration("identity", *key, lambda state: state)
    try:
        kept = Simulation(c1, seed=1)
        snapshot.restore(kept, snapshot.read(path).migrated(key[1])[0])
    finally:
        snapshot.MIGRATIONS.pop(key)
    assert kept.world.needs.rates[SOCIAL] == 0


def test_cli_migrate_and_resume_use_the_shipped_migration(tmp_path: Path, capsys) -> None:
    """``snapshot migrate`` and ``run --resume`` both cross the stage change; ``snapshot migrations`` lists it."""
    path = saved(tmp_path, 30)
    out = tmp_path / "c1.snap"
    assert main(["snapshot", "migrate", str(path), "--set", "features.relationships=C1", "--out", str(out)]) == 0
    assert "relationships-b-to-c1" in capsys.readouterr().out
    assert snapshot.read(out).header["migrations"][0]["name"] == "relationships-b-to-c1"
    assert main(["run", "--resume", str(path), "--set", "features.relationships=C1", "--ticks", "5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["migrations"][0]["name"] == "relationships-b-to-c1"
    assert main(["snapshot", "migrations", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["name"] == "relationships-b-to-c1" and rows[0]["steps"] == ["reset", "reset"]


def test_a_migrations_directory_beside_the_config_is_used(tmp_path: Path) -> None:
    """A YAML file in ``migrations/`` next to the config carries a snapshot across the config change it names."""
    path = saved(tmp_path, 20)
    cfg = config_dir(
        tmp_path,
        {
            "rent": {
                "name": "dearer-rent",
                "from": {"economy.rent_per_day": 4.0},
                "to": {"economy.rent_per_day": 9.5},
                "steps": [
                    {"set": {"path": "components/sim.world.economy/treasury", "value": 123.0}},
                    {"reset": "components/sim.world.economy/rent"},
                ],
            }
        },
        economy={**yaml.safe_load(DEFAULT_CONFIG.read_text())["economy"], "rent_per_day": 9.5},
    )
    assert load_config().config.economy.rent_per_day == 4.0, "the example's from value is the shipped one"
    moved = snapshot.load(path, load_config(cfg))
    assert moved.applied_migrations[0]["name"] == "dearer-rent"
    assert moved.world.economy.treasury == 123.0
    assert moved.config.economy.rent_per_day == moved.world.economy.rent == 9.5, "the new rent, not the saved one"


def test_config_sections_are_never_restored_from_a_snapshot(tmp_path: Path) -> None:
    """Components' config sections are settings: a migrated town runs under the loading config's values."""
    path = saved(tmp_path, 10)
    assert not any(".cfg" in p for p in snapshot.read(path).state()["components"])
    inline = (
        "snapshots.migrations=[{name: dearer-rent, from: {economy.rent_per_day: 4.0}, to: {economy.rent_per_day: 9.5}}]"
    )
    moved = snapshot.load(path, load_config(overrides=[inline, "economy.rent_per_day=9.5"]))
    assert moved.world.economy.cfg.rent_per_day == moved.config.economy.rent_per_day == 9.5


def test_inline_config_migrations_and_chains(tmp_path: Path) -> None:
    """``snapshots.migrations`` in the config chains with the shipped one (rent change, then stage B -> C1)."""
    path = saved(tmp_path, 20)
    inline = (
        "snapshots.migrations=[{name: dearer-rent, from: {economy.rent_per_day: 4.0}, to: {economy.rent_per_day: 9.5}}]"
    )
    moved = snapshot.load(path, load_config(overrides=[inline, "economy.rent_per_day=9.5", *C1]))
    chain = moved.applied_migrations
    assert sorted(m["name"] for m in chain) == ["dearer-rent", "relationships-b-to-c1"]
    assert chain[0]["to"] == chain[1]["from"] and chain[1]["to"] == moved.loaded.config_id


def test_a_migration_covers_only_the_keys_it_names(tmp_path: Path) -> None:
    """B -> C1 with another change besides is refused: every other config value must be equal."""
    path = saved(tmp_path, 10)
    with pytest.raises(snapshot.SnapshotError, match="no registered or declarative migration"):
        snapshot.load(path, load_config(overrides=[*C1, "economy.rent_per_day=9.5"]))


def test_steps_rename_default_set_and_reset() -> None:
    """Each step kind edits the decoded state as documented; arrays keep their dtype and shape."""
    spec = parse_migration(
        {
            "name": "steps",
            "from": {},
            "to": {"economy.rent_per_day": 5.0},
            "steps": [
                {"rename": {"from": "components/sim.a/old", "to": "components/sim.a/new"}},
                {"default": {"path": "components/sim.a/added", "value": [1, 2]}},
                {"default": {"path": "components/sim.a/kept", "value": 9}},
                {"set": {"path": "components/sim.a/levels", "value": 0.5}},
                {"reset": "components/sim.a/derived"},
                {"reset": "components/sim.missing/anything"},
            ],
        },
        "test",
    )
    state = {"components": {"sim.a": {"old": 1, "kept": 3, "levels": np.zeros(3, np.float32), "derived": 7}}}
    out = Declared(spec, "test").apply(state)["components"]["sim.a"]
    assert out["new"] == 1 and "old" not in out and out["added"] == [1, 2] and out["kept"] == 3
    assert out["levels"].dtype == np.float32 and out["levels"].tolist() == [0.5, 0.5, 0.5]
    assert "derived" not in out


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"rename": {"from": "components/sim.a/nope", "to": "components/sim.a/x"}}, "has no components/sim.a/nope"),
        ({"rename": {"from": "components/sim.a/old", "to": "components/sim.a/kept"}}, "already holds a value"),
        ({"set": {"path": "components/sim.zz/x", "value": 1}}, "has no components/sim.zz"),
        ({"set": {"path": "components/sim.a/levels", "value": [1, 2]}}, "does not fit it"),
    ],
)
def test_a_step_that_does_not_fit_names_the_migration_and_step(step: dict, message: str) -> None:
    """A step that does not fit the state fails with the migration, the step number and kind, and why."""
    spec = parse_migration({"name": "bad", "from": {}, "to": {"economy.rent_per_day": 5.0}, "steps": [step]}, "f")
    state = {"components": {"sim.a": {"old": 1, "kept": 3, "levels": np.zeros(3, np.float32)}}}
    with pytest.raises(MigrationError, match=f"migration bad \\(f\\), step 0 .*{message}"):
        Declared(spec, "f").apply(state)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"name": "x", "from": {}, "to": {"features.relationships": "C1"}, "steps": [{"exec": "rm -rf /"}]},
            "steps.0.exec: unknown key",
        ),
        (
            {"name": "x", "from": {}, "to": {"features.relationships": "C1"}, "steps": [{"reset": "a", "set": None}]},
            "steps.0: a step is exactly one of rename, default, set, reset",
        ),
        ({"name": "x", "from": {}, "to": {}}, "to:"),
        ({"name": "x", "to": {"features.relationships": "C1"}}, "from: required key is missing"),
        ({"name": "x", "from": {}, "to": {"relationships": "C1"}}, "not a dotted config key"),
        (
            {"name": "x", "from": {}, "to": {"features.relationships": "C1"}, "steps": [{"reset": "a/ b"}]},
            "not a state path",
        ),
        (
            {"name": "x", "from": {}, "to": {"features.relationships": "C1"}, "steps": [{"set": {"path": "a/b"}}]},
            "steps.0.set.value: required key is missing",
        ),
        ({"name": "x", "from": {}, "to": {"features.relationships": "C1"}, "surprise": 1}, "surprise: unknown key"),
        (["not", "a", "mapping"], "a migration is a mapping"),
    ],
)
def test_migration_files_are_validated_strictly(body: object, message: str) -> None:
    """A malformed migration is refused with the file and the key path of the problem."""
    with pytest.raises(ConfigError, match=message) as err:
        parse_migration(body, "m.yaml")
    assert str(err.value).startswith("m.yaml")


def test_bad_files_in_the_directory_are_reported_and_never_executed(tmp_path: Path, capsys) -> None:
    """A YAML tag that would build a Python object is refused by the safe parser; duplicate names are refused."""
    cfg = config_dir(tmp_path)
    marker = tmp_path / "ran"
    (cfg.parent / "migrations" / "evil.yaml").write_text(
        f"name: evil\nfrom: {{}}\nto: !!python/object/apply:os.system ['touch {marker}']\n"
    )
    assert main(["snapshot", "migrations", str(cfg)]) == 1
    assert "evil.yaml" in capsys.readouterr().err and not marker.exists()
    (cfg.parent / "migrations" / "evil.yaml").write_text(
        yaml.safe_dump({"name": "relationships-b-to-c1", "from": {}, "to": {"features.relationships": "C1"}})
    )
    with pytest.raises(MigrationError, match="defined twice"):
        declared(load_config(cfg))


def test_a_to_key_that_is_not_in_the_config_is_refused(tmp_path: Path) -> None:
    """A ``to`` naming a key the config does not have fails when the chain is searched, naming the migration."""
    path = saved(tmp_path, 5)
    inline = "snapshots.migrations=[{name: typo, from: {}, to: {features.relashionships: C1}}]"
    with pytest.raises(snapshot.SnapshotError, match="typo .*features.relashionships, which is not a config key"):
        snapshot.load(path, load_config(overrides=[inline, *C1]))
