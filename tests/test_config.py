"""Tests for configuration loading: defaults, --set overrides, errors with key paths, stages, config_id."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from townlet.config import ConfigError, LoadedConfig, load_config
from townlet.config.loader import DEFAULT_CONFIG, DEFAULTS_DIR
from townlet.config.models import clock_to_tick


def config_error(*args: object, **kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(*args, **kwargs)
    return info.value


# --- the shipped default --------------------------------------------------------------------------


def test_default_config_loads_the_shipped_town(loaded: LoadedConfig) -> None:
    """With no arguments the shipped default.yaml loads, and its map and manifest resolve to real files."""
    assert loaded.source == DEFAULT_CONFIG.resolve()
    assert loaded.config.population.agents == 8
    assert loaded.config.time.ticks_per_day == 1000
    assert loaded.map_path == (DEFAULTS_DIR / "town.yaml").resolve()
    assert loaded.affordances_path == (DEFAULTS_DIR / "affordances.yaml").resolve()
    assert re.fullmatch(r"[0-9a-f]{12}", loaded.config_id)


def test_default_config_defines_the_curriculum_stages(loaded: LoadedConfig) -> None:
    """The default config ships stages M0..M5 and selects none of them."""
    assert loaded.config.stage is None
    assert sorted(loaded.config.stages) == ["M0", "M1", "M2", "M3", "M4", "M5"]


# --- --set overrides -----------------------------------------------------------------------------


def test_set_override_changes_a_value() -> None:
    """``population.agents=3`` replaces the default 8."""
    assert load_config(overrides=["population.agents=3"]).config.population.agents == 3


def test_set_override_reaches_nested_keys() -> None:
    """A dotted path reaches into nested sections (an item's price inside economy.items)."""
    cfg = load_config(overrides=["economy.items.raw_food.price=1.2", "queues.tie_break=uniform"]).config
    assert cfg.economy.items["raw_food"].price == pytest.approx(1.2)
    assert cfg.economy.items["cafe_meal"].price == pytest.approx(1.5)
    assert cfg.queues.tie_break == "uniform"


def test_set_override_values_are_typed_as_yaml() -> None:
    """Override values parse as YAML: a flow list becomes a list and a flow mapping replaces a section."""
    cfg = load_config(
        overrides=[
            "hooks.allowed_modules=[townlet.world.builtin_hooks, some.other]",
            "employment.jobs={clerk: {site: office, positions: 2}}",
        ]
    ).config
    assert cfg.hooks.allowed_modules == ["townlet.world.builtin_hooks", "some.other"]
    assert list(cfg.employment.jobs) == ["clerk"]
    assert cfg.employment.jobs["clerk"].positions == 2


def test_later_override_of_the_same_key_wins() -> None:
    """Overrides apply in order, so the last one for a key decides."""
    assert load_config(overrides=["population.agents=3", "population.agents=5"]).config.population.agents == 5


def test_overrides_do_not_leak_into_the_next_load() -> None:
    """Overriding a value changes only that load; the next default load is untouched."""
    load_config(overrides=["population.agents=3", "economy.rent_per_day=9"])
    cfg = load_config().config
    assert cfg.population.agents == 8
    assert cfg.economy.rent_per_day == pytest.approx(4.0)


def test_time_of_day_override_stays_a_time() -> None:
    """``shift_start=10:00`` is read as a time of day, not YAML 1.1's base-60 number 600."""
    cfg = load_config(overrides=["employment.jobs.clerk.shift_start=10:00", "economy.rent_time=23:30"]).config
    assert cfg.employment.jobs["clerk"].shift_start == "10:00"
    assert cfg.economy.rent_time == "23:30"


def test_unquoted_time_of_day_in_a_config_file_stays_a_time(write_yaml) -> None:
    """An unquoted ``rent_time: 10:00`` in a config file is the time 10:00."""
    path = write_yaml("town.yaml", "version: 1\neconomy:\n  rent_time: 10:00\n")
    assert load_config(path).config.economy.rent_time == "10:00"


# --- errors name the key path and where the value came from --------------------------------------


def test_unknown_config_key_names_its_path() -> None:
    """A misspelt key from --set is an error naming ``population.agentz`` and blaming --set."""
    err = config_error(overrides=["population.agentz=3"])
    assert (err.file, err.field) == ("--set", "population.agentz")
    assert "unknown key" in err.message
    assert str(err).startswith("--set: population.agentz: ")


def test_unknown_top_level_section_names_its_path() -> None:
    """An unknown top-level section is named by its key."""
    assert config_error(overrides=["weathr.change_every=5"]).field == "weathr"


def test_unknown_key_in_a_config_file_names_the_file(write_yaml) -> None:
    """A misspelt key inside a config file names that file and the dotted key path."""
    path = write_yaml("custom.yaml", {"version": 1, "population": {"agents": 2, "colour": "red"}})
    err = config_error(path)
    assert (err.file, err.field) == (str(path), "population.colour")


@pytest.mark.parametrize(
    "override, field",
    [
        ("population.agents=0", "population.agents"),
        ("population.agents=abc", "population.agents"),
        ("needs.decay.hunger=0.5", "needs.decay.hunger"),
        ("needs.decay.happiness=0.1", "needs.decay.happiness"),
        ("economy.rent_per_day=-1", "economy.rent_per_day"),
        ("time.ticks_per_day=10", "time.ticks_per_day"),
        ("economy.items.raw_food.price=0", "economy.items.raw_food.price"),
        ("features.relationships=D", "features.relationships"),
        ("features.lifecycle=maybe", "features.lifecycle"),
        ("economy.rent_time=25:00", "economy.rent_time"),
        ("employment.jobs.clerk.site=moon", "employment.jobs.clerk.site"),
        ("version=2", "version"),
    ],
)
def test_out_of_range_value_names_its_path(override: str, field: str) -> None:
    """An invalid value from --set is an error naming its exact key path and attributed to --set."""
    err = config_error(overrides=[override])
    assert err.file == "--set"
    assert err.field == field


def test_bad_value_in_a_config_file_is_attributed_to_the_file(write_yaml) -> None:
    """The same bad value written in a file (not passed with --set) blames the file."""
    path = write_yaml("custom.yaml", {"version": 1, "population": {"agents": 0}})
    err = config_error(path)
    assert (err.file, err.field) == (str(path), "population.agents")


def test_cross_field_rule_names_its_section() -> None:
    """A rule spanning fields (capacity below agents) names the section and the fields in its message."""
    err = config_error(overrides=["population.agents=10", "population.capacity=4"])
    assert err.file == "--set"
    assert err.field.startswith("population")
    assert "capacity" in err.message


def test_override_without_an_equals_sign_is_an_error() -> None:
    """``--set population.agents`` with no value is refused and attributed to --set."""
    err = config_error(overrides=["population.agents"])
    assert err.file == "--set"
    assert "key.path=value" in err.message


def test_override_cannot_descend_into_a_value() -> None:
    """``seed.x=1`` is refused because ``seed`` is a value, not a section."""
    err = config_error(overrides=["seed.x=1"])
    assert (err.file, err.field) == ("--set", "seed")


def test_yaml_syntax_error_names_the_file_and_line(write_yaml) -> None:
    """A YAML syntax error names the file and the line (counting from 1) where parsing failed."""
    path = write_yaml("broken.yaml", "version: 1\npopulation:\n  agents: 2\n   bad: 3\n")
    err = config_error(path)
    assert err.file == str(path)
    assert re.match(r"line 4\b", err.field)
    assert "YAML syntax error" in err.message


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    """Loading a config file that does not exist names that file."""
    path = tmp_path / "nowhere.yaml"
    assert config_error(path).file == str(path)


@pytest.mark.parametrize("key", ["town.map", "affordances"])
def test_missing_data_file_from_set_is_named(key: str) -> None:
    """A map or affordance file that cannot be found is named, with its key, and blamed on --set."""
    err = config_error(overrides=[f"{key}=no_such_file.yaml"])
    assert (err.file, err.field) == ("--set", key)
    assert "no_such_file.yaml" in err.message


def test_missing_map_named_in_a_config_file_blames_that_file(write_yaml) -> None:
    """A missing map named inside a config file is reported against that config file."""
    path = write_yaml("custom.yaml", {"version": 1, "town": {"map": "atlantis.yaml"}})
    err = config_error(path)
    assert (err.file, err.field) == (str(path), "town.map")
    assert "atlantis.yaml" in err.message


def test_data_files_resolve_next_to_the_config_first(write_yaml) -> None:
    """A relative affordance file is found next to the config before the shipped defaults."""
    manifest = write_yaml("affordances.yaml", (DEFAULTS_DIR / "affordances.yaml").read_text(encoding="utf-8"))
    path = write_yaml("custom.yaml", {"version": 1})
    result = load_config(path)
    assert result.affordances_path == manifest.resolve()
    assert result.map_path == (DEFAULTS_DIR / "town.yaml").resolve()


# --- stages and feature flags ---------------------------------------------------------------------


def test_stage_selection_switches_feature_flags() -> None:
    """``stage=M2`` turns on lifecycle and sets relationships to A, as the stage table says."""
    features = load_config(overrides=["stage=M2"]).config.features
    assert (features.relationships, features.lifecycle, features.perturbations) == ("A", "on", "off")
    assert load_config(overrides=["stage=M0"]).config.features.relationships == "OFF"


def test_explicit_feature_override_beats_the_stage() -> None:
    """``--set features.lifecycle=off`` wins over the stage whichever order they are given in."""
    for overrides in (["stage=M2", "features.lifecycle=off"], ["features.lifecycle=off", "stage=M2"]):
        features = load_config(overrides=overrides).config.features
        assert features.lifecycle == "off"
        assert features.relationships == "A"


def test_stage_selected_in_a_config_file(write_yaml) -> None:
    """A config file can define its own stages and select one; the stage's flags apply."""
    text = "version: 1\nstage: S\nstages:\n  S: {features: {curiosity: on, observations: full}}\n"
    path = write_yaml("custom.yaml", text)
    features = load_config(path).config.features
    assert (features.curiosity, features.observations) == ("on", "full")


def test_unknown_stage_names_the_stage_key() -> None:
    """Selecting a stage that is not defined is an error on the key ``stage`` listing the known ones."""
    err = config_error(overrides=["stage=M9"])
    assert (err.file, err.field) == ("--set", "stage")
    assert "M5" in err.message


def test_yaml_on_off_booleans_are_accepted_as_flag_words(write_yaml) -> None:
    """``lifecycle: on`` (which YAML reads as true) and ``curiosity: off`` are the flag words on/off."""
    path = write_yaml("custom.yaml", "version: 1\nfeatures: {lifecycle: on, perturbations: on, curiosity: off}\n")
    features = load_config(path).config.features
    assert (features.lifecycle, features.perturbations, features.curiosity) == ("on", "on", "off")
    assert load_config(overrides=["features.lifecycle=on"]).config.features.lifecycle == "on"


# --- config_id ------------------------------------------------------------------------------------


def test_config_id_is_stable_for_the_same_config(loaded: LoadedConfig) -> None:
    """Loading the same config twice gives the same config_id."""
    assert load_config().config_id == loaded.config_id
    assert (
        load_config(overrides=["population.agents=3"]).config_id
        == load_config(overrides=["population.agents=3"]).config_id
    )


def test_config_id_ignores_the_seed(loaded: LoadedConfig) -> None:
    """The seed is not behaviour-relevant config: changing it keeps the config_id."""
    assert load_config(overrides=["seed=12345"]).config_id == loaded.config_id


@pytest.mark.parametrize(
    "override", ["economy.rent_per_day=5", "population.agents=9", "stage=M3", "employment.jobs.clerk.shift_start=08:30"]
)
def test_config_id_changes_when_a_behaviour_value_changes(loaded: LoadedConfig, override: str) -> None:
    """Changing any behaviour value (rent, population, stage, shift time) changes the config_id."""
    assert load_config(overrides=[override]).config_id != loaded.config_id


def test_config_id_changes_when_the_affordance_file_changes(write_manifest) -> None:
    """The manifest's contents are part of the identity: a longer cook_meal is a different config."""
    same = load_config(overrides=[write_manifest({}, name="same.yaml")])
    entry = {"object": "stove", "place": "home", "duration": 19, "preconditions": ["own_home"]}
    changed = load_config(overrides=[write_manifest({"cook_meal": entry}, name="changed.yaml")])
    assert changed.config_id != same.config_id


def test_config_id_ignores_where_an_identical_manifest_lives(loaded: LoadedConfig, write_yaml) -> None:
    """A byte-identical copy of the shipped manifest elsewhere gives the same config_id."""
    copy = write_yaml("copy.yaml", loaded.affordances_path.read_text(encoding="utf-8"))
    assert load_config(overrides=[f"affordances={copy}"]).config_id == loaded.config_id


# --- clock_to_tick --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "clock, ticks_per_day, tick",
    [
        ("00:00", 1000, 0),
        ("06:00", 1000, 250),
        ("09:00", 1000, 375),
        ("12:00", 1000, 500),
        ("17:00", 1000, 708),
        ("23:59", 1000, 999),
        ("12:00", 96, 48),
        ("06:00", 1440, 360),
    ],
)
def test_clock_to_tick_maps_a_time_of_day_to_a_tick(clock: str, ticks_per_day: int, tick: int) -> None:
    """``HH:MM`` maps to the nearest tick of the day, ``00:00`` being tick 0."""
    assert clock_to_tick(clock, ticks_per_day) == tick


@pytest.mark.parametrize("clock", ["24:00", "9:00", "12:60", "noon", "12:00:00", ""])
def test_clock_to_tick_rejects_a_malformed_time(clock: str) -> None:
    """Anything but a two-digit ``HH:MM`` within the day is refused."""
    with pytest.raises(ValueError):
        clock_to_tick(clock, 1000)
