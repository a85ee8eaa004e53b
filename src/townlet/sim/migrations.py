"""Snapshot migrations: steps that turn a state captured under one config into one valid under another.

Two kinds of step lead from a snapshot's config to the one it is loaded under:

- **declarative** migrations, data written in YAML (:mod:`townlet.config.migrations`): the shipped ones
  (``townlet/config/defaults/migrations/``), those in the loading config's ``snapshots.migrations_dir``
  (``migrations/`` next to the config file) and those in ``snapshots.migrations``. One applies when the
  snapshot's config has its ``from`` values; it carries the config to its ``to`` values, every other value
  unchanged, and edits the decoded state (``rename``, ``default``, ``set``, ``reset``). Nothing in them runs.
- **registered** steps, Python functions from one config_id to another (:func:`register_migration`).

Loading follows the shortest chain of steps to the loading config's config_id; every step applied is
recorded (name, from, to, tick) and travels with the town into later snapshots.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from townlet.config.errors import ConfigError
from townlet.config.loader import DEFAULTS_DIR, LoadedConfig, compute_config_id
from townlet.config.migrations import MigrationSpec, Step, read_migrations_dir
from townlet.config.models import TownletConfig

Migration = Callable[[dict[str, Any]], dict[str, Any]]
SHIPPED_DIR = DEFAULTS_DIR / "migrations"
MAX_CHAIN = 16


class MigrationError(Exception):
    """No chain of migrations leads from a snapshot's config to the current one, or a step does not fit."""


@dataclasses.dataclass(frozen=True)
class MigrationStep:
    """One registered migration: turns a state captured under ``source`` into one valid under ``target``."""

    name: str
    source: str
    target: str
    apply: Migration


MIGRATIONS: dict[tuple[str, str], MigrationStep] = {}


def register_migration(name: str, source: str, target: str, apply: Migration) -> MigrationStep:
    """Register a migration from config_id ``source`` to ``target`` (``apply`` edits the state dict)."""
    step = MigrationStep(name, source, target, apply)
    MIGRATIONS[(source, target)] = step
    return step


# -- declarative migrations ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Declared:
    """A declarative migration and where it was written (a file, or ``snapshots.migrations`` of a config)."""

    spec: MigrationSpec
    origin: str

    def _with(self, config: dict[str, Any], values: dict[str, Any], role: str) -> dict[str, Any]:
        """``config`` with ``values`` at their dotted keys, validated and dumped (so YAML spellings compare)."""
        out = copy.deepcopy(config)
        for key, value in values.items():
            parts = key.split(".")
            node: Any = out
            for part in parts[:-1]:
                node = node.get(part) if isinstance(node, dict) else None
            if not isinstance(node, dict) or parts[-1] not in node:
                raise MigrationError(
                    f"migration {self.spec.name} ({self.origin}): {role} names {key}, which is not a config key"
                )
            node[parts[-1]] = value
        try:
            return TownletConfig.model_validate(out).model_dump(mode="json")
        except ValidationError as exc:
            err = exc.errors()[0]
            raise MigrationError(
                f"migration {self.spec.name} ({self.origin}): its {role} values make an invalid "
                f"config ({'.'.join(map(str, err['loc']))}: {err['msg']})"
            ) from None

    def matches(self, config: dict[str, Any]) -> bool:
        """Whether a config (a dumped one) has this migration's ``from`` values."""
        return self._with(config, self.spec.source, "from") == config

    def carry(self, config: dict[str, Any]) -> dict[str, Any]:
        """The config with this migration's ``to`` values."""
        return self._with(config, self.spec.target, "to")

    def apply(self, state: dict[str, Any]) -> dict[str, Any]:
        """Carry out the steps on a decoded state (in place; returned)."""
        for number, step in enumerate(self.spec.steps):
            try:
                _edit(state, step)
            except MigrationError as exc:
                raise MigrationError(
                    f"migration {self.spec.name} ({self.origin}), step {number} ({step.kind}): {exc}"
                ) from None
        return state


def _parent(state: dict[str, Any], path: str) -> tuple[dict[str, Any] | None, str]:
    parts = path.split("/")
    node: Any = state
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    return (node if isinstance(node, dict) else None), parts[-1]


def _value(current: Any, value: Any, path: str) -> Any:
    """A YAML value for ``path``: an array there keeps its dtype and shape (a scalar fills it)."""
    if not isinstance(current, np.ndarray):
        return copy.deepcopy(value)
    try:
        return np.array(np.broadcast_to(np.asarray(value, dtype=current.dtype), current.shape))
    except (ValueError, TypeError) as exc:
        raise MigrationError(
            f"{path} is a {current.dtype} array of shape {current.shape}; the value does not fit it ({exc})"
        ) from None


def _edit(state: dict[str, Any], step: Step) -> None:
    if step.reset is not None:
        parent, key = _parent(state, step.reset)
        if parent is not None:
            parent.pop(key, None)
        return
    if step.rename is not None:
        source, target = step.rename.source, step.rename.target
        parent, key = _parent(state, source)
        if parent is None or key not in parent:
            raise MigrationError(f"the snapshot has no {source} to rename")
        new_parent, new_key = _parent(state, target)
        if new_parent is None:
            raise MigrationError(f"the snapshot has no {target.rsplit('/', 1)[0]} to rename {source} into")
        if new_key in new_parent:
            raise MigrationError(f"{target} already holds a value")
        new_parent[new_key] = parent.pop(key)
        return
    put = step.default if step.default is not None else step.set
    assert put is not None
    parent, key = _parent(state, put.path)
    if parent is None:
        raise MigrationError(f"the snapshot has no {put.path.rsplit('/', 1)[0]} to put {key} into")
    if step.default is not None and key in parent:
        return
    parent[key] = _value(parent.get(key), put.value, put.path)


def declared(loaded: LoadedConfig) -> list[Declared]:
    """The declarative migrations the loading config sees: shipped, its directory's, then its own.

    Raises:
        MigrationError: a migration file that does not validate, or one name used twice.
    """
    cfg = loaded.config.snapshots
    directory = Path(cfg.migrations_dir).expanduser()
    if not directory.is_absolute():
        directory = loaded.source.parent / directory
    found: list[Declared] = []
    try:
        for folder in dict.fromkeys([SHIPPED_DIR, directory]):  # the shipped config's own folder: once
            found += [Declared(spec, str(path)) for path, spec in read_migrations_dir(folder)]
    except ConfigError as exc:
        raise MigrationError(f"bad migration file: {exc}") from None
    found += [Declared(spec, f"{loaded.source}: snapshots.migrations") for spec in cfg.migrations]
    names: dict[str, str] = {}
    for item in found:
        if item.spec.name in names:
            raise MigrationError(
                f"migration {item.spec.name} is defined twice ({names[item.spec.name]} and {item.origin})"
            )
        names[item.spec.name] = item.origin
    return found


# -- chains -------------------------------------------------------------------------------------------------


def migration_path(
    source: str, target: str | LoadedConfig, config: dict[str, Any] | None = None
) -> list[MigrationStep]:
    """The shortest chain of migrations from config_id ``source`` to ``target`` (empty when equal).

    Declarative migrations take part when ``target`` is a loaded config and ``config`` is the snapshot's config
    (its data files are taken to be the target's: the chain is refused when their contents differ).

    Raises:
        MigrationError: when no chain exists, or a migration does not validate.
    """
    target_id = target if isinstance(target, str) else target.config_id
    if source == target_id:
        return []
    steps = declared(target) if isinstance(target, LoadedConfig) else []
    start = None
    files = (target.map_path, target.affordances_path) if isinstance(target, LoadedConfig) else None
    if steps and config is not None and files is not None:
        start = _normal(config)
        if start is None or _config_id(start, files) != source:
            start = None  # another map or manifest: only registered migrations can bridge that
    frontier: list[tuple[str, dict[str, Any] | None, list[MigrationStep]]] = [(source, start, [])]
    seen = {source}
    while frontier:
        here, here_config, chain = frontier.pop(0)
        if len(chain) >= MAX_CHAIN:
            continue
        options: list[tuple[str, dict[str, Any] | None, MigrationStep]] = [
            (b, None, MigrationStep(step.name, a, b, step.apply)) for (a, b), step in MIGRATIONS.items() if a == here
        ]
        if here_config is not None and files is not None:
            for item in steps:
                if item.matches(here_config):
                    moved = item.carry(here_config)
                    moved_id = _config_id(moved, files)
                    options.append((moved_id, moved, MigrationStep(item.spec.name, here, moved_id, item.apply)))
        for b, b_config, hop in options:
            if b == target_id:
                return [*chain, hop]
            if b not in seen:
                seen.add(b)
                frontier.append((b, b_config, [*chain, hop]))
    raise MigrationError(
        f"config_id mismatch: snapshot was taken under {source}, this config is {target_id}, "
        "and no registered or declarative migration leads from one to the other (see "
        "docs/snapshots.md, Migrations)"
    )


def _normal(config: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return TownletConfig.model_validate(config).model_dump(mode="json")
    except ValidationError:
        return None


def _config_id(config: dict[str, Any], files: tuple[Path, Path]) -> str:
    return compute_config_id(TownletConfig.model_validate(config), *files)


def migrate(
    state: dict[str, Any],
    source: str,
    target: str | LoadedConfig,
    tick: int,
    applied: list[dict[str, Any]],
    config: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the chain from ``source`` to ``target`` over ``state``; returns it and ``applied`` plus the new steps.

    Raises:
        MigrationError: when no chain exists or a step does not fit the state.
    """
    applied = list(applied)
    for hop in migration_path(source, target, config):
        state = hop.apply(state)
        applied.append({"name": hop.name, "from": hop.source, "to": hop.target, "tick": tick})
    return state, applied
