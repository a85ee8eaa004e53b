"""Loading the YAML entry point: dotted overrides, stage flags, file resolution, errors and config_id."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from townlet.config.errors import ConfigError
from townlet.config.models import PathsConfig, TownletConfig

DEFAULTS_DIR = Path(__file__).resolve().parent / "defaults"
DEFAULT_CONFIG = DEFAULTS_DIR / "default.yaml"
OVERRIDES = "--set"
HASHED_WHEN_CHANGED = ("memory",)  # agent memory (issue 19): its defaults are the behaviour of every config
_DEFAULT_BODY = TownletConfig().model_dump(mode="json", include=set(HASHED_WHEN_CHANGED))


class _Loader(yaml.SafeLoader):
    """A safe YAML loader that reads ``10:00`` as a time of day, not the YAML 1.1 base-60 number 600."""


_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _digit in "0123456789":
    _Loader.yaml_implicit_resolvers.setdefault(_digit, []).insert(
        0, ("tag:yaml.org,2002:str", re.compile(r"^\d{1,2}:\d{2}$"))
    )


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config with the files it points at resolved and its identity computed.

    Attributes:
        config: The typed configuration.
        source: The YAML file it came from.
        map_path: The resolved town map file.
        affordances_path: The resolved affordance manifest.
        config_id: A short hash of everything that changes behaviour (not the seed).
        overrides: The ``--set`` overrides it was loaded with (None when rebuilt otherwise, e.g. from a snapshot).
    """

    config: TownletConfig
    source: Path
    map_path: Path
    affordances_path: Path
    config_id: str
    overrides: tuple[str, ...] | None = None


def read_yaml(path: Path) -> Any:
    """Parse one YAML file, turning I/O and syntax problems into :class:`ConfigError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read file ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            str(path),
            "",
            f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); save the file as UTF-8",
        ) from None
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} col {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(str(path), where, f"YAML syntax error: {problem}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``key.path=value`` into its path and a YAML-typed value."""
    if "=" not in text:
        raise ConfigError(OVERRIDES, text, "expected key.path=value")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in parts):
        raise ConfigError(OVERRIDES, text, "empty key path")
    try:
        value = yaml.load(raw, Loader=_Loader) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> set[tuple[str, ...]]:
    """Set each ``key.path=value`` into ``raw`` in place; return the set of paths touched."""
    touched: set[tuple[str, ...]] = set()
    for text in overrides:
        parts, value = parse_override(text)
        node = raw
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(OVERRIDES, ".".join(parts[: i + 1]), "is a value, not a section")
            node = child
        node[parts[-1]] = value
        touched.add(tuple(parts))
    return touched


def _apply_stage(raw: dict[str, Any], touched: set[tuple[str, ...]]) -> None:
    """Fold the selected stage's feature flags into ``features`` (explicit overrides still win)."""
    stage = raw.get("stage")
    stages = raw.get("stages") or {}
    if stage is None or not isinstance(stages, dict) or stage not in stages:
        return  # validation reports an unknown stage
    stage_features = (stages[stage] or {}).get("features") or {}
    features = raw.setdefault("features", {})
    if not isinstance(features, dict):
        return
    for name, value in stage_features.items():
        if ("features", name) not in touched:
            features[name] = value


def _error_from_validation(exc: ValidationError, source: Path, touched: set[tuple[str, ...]]) -> ConfigError:
    err = exc.errors()[0]
    loc = tuple(str(p) for p in err["loc"] if p != "[key]")  # a bad dict key is named by the key itself
    path = ".".join(loc) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "required key is missing"
    more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    origin = OVERRIDES if any(loc[: len(t)] == t or t[: len(loc)] == loc for t in touched) else str(source)
    return ConfigError(origin, path, f"{msg}{more}")


def _resolve(name: str, base: Path, field: str, source: Path | str) -> Path:
    candidate = Path(name)
    if candidate.is_absolute():
        found = candidate if candidate.is_file() else None
    else:
        found = next((p for p in (base / candidate, DEFAULTS_DIR / candidate) if p.is_file()), None)
    if found is None:
        raise ConfigError(str(source), field, f"file {name!r} not found (looked next to the config and in defaults)")
    return found.resolve()


# Knobs added after configs (and the policies trained under them) existed, whose default reproduces what the
# town did before: left out of the config_id while at that default, so adding one keeps every existing identity.
NEUTRAL_DEFAULTS = (
    "rewards.curiosity",
    "options.night_energy",
)


def compute_config_id(config: TownletConfig, *files: Path) -> str:
    """Hash the behaviour-relevant config and the contents of its data files.

    Left out: the seed, the names of the data files (their contents are hashed instead, so the
    same manifest copied elsewhere is the same config), and operational settings (telemetry, console,
    logging, live pacing) that never change what happens in the town. Sections added after config_ids were
    recorded in shipped policies and snapshots (:data:`HASHED_WHEN_CHANGED`) count only when they differ from
    their defaults, so those ids stay valid.
    """
    body = config.model_dump(
        mode="json",
        exclude={
            "seed": True,
            "affordances": True,
            "town": {"map"},
            # Operations, not behaviour: where telemetry goes, who may use the console, how logs look, pacing.
            "telemetry": True,
            "console": True,
            "server": True,
            "snapshots": True,
            "logging": True,
            "time": {"live_tick_seconds"},
            # Training control: when the curriculum moves on, not what happens in a town.
            "stages": {"__all__": {"advance_when"}},
            # Learning and release settings: how policies are trained, judged and promoted, not the town.
            "imitation": True,
            "evaluation": True,
            "stability": True,
            "promotion": True,
        },
    )
    if body["town"].get("paths") == PathsConfig().model_dump(mode="json"):
        del body["town"]["paths"]  # default path keeping adds nothing: ids from before it was configurable hold
    for name in HASHED_WHEN_CHANGED:
        if body.get(name) == _DEFAULT_BODY[name]:
            del body[name]
    for dotted in NEUTRAL_DEFAULTS:
        *parents, leaf = dotted.split(".")
        holder, model = body, config
        for name in parents:
            holder, model = holder[name], getattr(model, name)
        if getattr(model, leaf) == type(model).model_fields[leaf].default:
            del holder[leaf]
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode())
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> LoadedConfig:
    """Load, override and validate a config file (the shipped default when ``path`` is None).

    Raises:
        ConfigError: naming the file (or ``--set``) and the key path of the first problem.
    """
    source = Path(path) if path is not None else DEFAULT_CONFIG
    raw = read_yaml(source)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(str(source), "", "top level must be a mapping of sections")
    raw = copy.deepcopy(raw)
    touched = apply_overrides(raw, list(overrides or []))
    _apply_stage(raw, touched)
    try:
        config = TownletConfig.model_validate(raw)
    except ValidationError as exc:
        raise _error_from_validation(exc, source, touched) from None
    base = source.resolve().parent

    def origin(*key: str) -> Path | str:
        return OVERRIDES if key in touched else source  # a missing file named by --set is --set's fault

    map_path = _resolve(config.town.map, base, "town.map", origin("town", "map"))
    aff_path = _resolve(config.affordances, base, "affordances", origin("affordances"))
    return LoadedConfig(
        config=config,
        source=source.resolve(),
        map_path=map_path,
        affordances_path=aff_path,
        config_id=compute_config_id(config, map_path, aff_path),
        overrides=tuple(overrides or ()),
    )
