"""The schema of declarative snapshot migrations: which config change they cover and the steps, as data.

A migration is YAML, either a file of its own (one mapping per file, in a migrations directory) or an entry
of ``snapshots.migrations`` in the config::

    name: relationships-b-to-c1
    description: stage B -> C1, the social need starts to grow
    from: {features.relationships: B}     # the snapshot's config has these values
    to: {features.relationships: C1}      # the config it is carried to: these changed, all else equal
    steps:
      - reset: components/sim.world.needs/rates
      - rename: {from: components/sim.world.x/old, to: components/sim.world.x/new}
      - default: {path: components/sim.world.x/added, value: 0}
      - set: {path: components/sim.world.x/level, value: 0.5}

Steps name places in the decoded state by ``section/key/key`` (component paths keep their dots). Nothing
here is code: values are JSON-like data, and every key, path and value is checked before anything runs.
The steps themselves are carried out by :mod:`townlet.sim.migrations`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationError, model_validator

from townlet.config.base import Strict
from townlet.config.errors import ConfigError

MAX_STEPS = 256
STEP_KINDS = ("rename", "default", "set", "reset")
MAX_VALUE_ITEMS = 100_000
_PATH = re.compile(r"^[^/\s]+(?:/[^/\s]+)*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
_KEY = re.compile(r"^[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+$")


def _check_path(value: str) -> str:
    if len(value) > 500 or not _PATH.match(value):
        raise ValueError(f"{value!r} is not a state path (section/key/key..., no empty parts or spaces)")
    return value


def _check_value(value: Any) -> Any:
    count = 0

    def walk(v: Any, depth: int) -> None:
        nonlocal count
        count += 1
        if depth > 32 or count > MAX_VALUE_ITEMS:
            raise ValueError("value is nested too deep or too large")
        if v is None or type(v) in (bool, int, float, str):
            return
        if type(v) is list:
            for item in v:
                walk(item, depth + 1)
            return
        if type(v) is dict and all(type(k) is str for k in v):
            for item in v.values():
                walk(item, depth + 1)
            return
        raise ValueError(
            f"values are JSON-like data (null, booleans, numbers, strings, lists, maps), not {type(v).__name__}"
        )

    walk(value, 0)
    return value


def _check_keys(value: dict[str, Any]) -> dict[str, Any]:
    for key, item in value.items():
        if not _KEY.match(key):
            raise ValueError(f"{key!r} is not a dotted config key (section.key)")
        _check_value(item)
    return value


StatePath = Annotated[str, AfterValidator(_check_path)]
Value = Annotated[Any, AfterValidator(_check_value)]
ConfigValues = Annotated[dict[str, Any], AfterValidator(_check_keys)]


class Move(Strict):
    """``rename``: the value at ``from`` moves to ``to`` (a renamed field or component)."""

    model_config = {**Strict.model_config, "populate_by_name": True}

    source: StatePath = Field(alias="from")
    target: StatePath = Field(alias="to")


class Put(Strict):
    """``default`` / ``set``: a value for ``path`` (an array there keeps its dtype and shape: a scalar fills it)."""

    path: StatePath
    value: Value


class Step(Strict):
    """One edit of the decoded state: exactly one of ``rename``, ``default``, ``set``, ``reset``.

    Attributes:
        rename: Move a value to another path; the snapshot must have it.
        default: Give a field the snapshot lacks a value (a new feature's default); one it has is kept.
        set: Overwrite a value (the path's parent must exist).
        reset: Drop a value, so the town built from the new config keeps its own (state derived from config).
    """

    rename: Move | None = None
    default: Put | None = None
    set: Put | None = None
    reset: StatePath | None = None

    @model_validator(mode="after")
    def _one_edit(self) -> Step:
        given = self.model_fields_set
        if len(given) != 1 or getattr(self, next(iter(given))) is None:
            raise ValueError(f"a step is exactly one of {', '.join(STEP_KINDS)}")
        return self

    @property
    def kind(self) -> str:
        """Which edit this step is."""
        return next(name for name in STEP_KINDS if getattr(self, name) is not None)


class MigrationSpec(Strict):
    """One declarative migration (see the module docstring for the YAML form).

    Attributes:
        name: Shown in ``snapshot inspect``, ``run --json`` and telemetry once applied.
        description: For people.
        source: Config values (dotted keys) a snapshot's config must have for this migration to apply.
        target: Config values the migrated snapshot's config has instead; every other value stays.
        steps: Edits of the decoded state, in order.
    """

    model_config = {**Strict.model_config, "populate_by_name": True}

    name: Annotated[str, Field(pattern=_NAME.pattern)]
    description: str = Field("", max_length=2000)
    source: ConfigValues = Field(alias="from")
    target: ConfigValues = Field(alias="to", min_length=1)
    steps: list[Step] = Field(default_factory=list, max_length=MAX_STEPS)


def parse_migration(data: Any, where: str) -> MigrationSpec:
    """Validate one migration mapping.

    Raises:
        ConfigError: naming ``where`` and the key path of the first problem.
    """
    if not isinstance(data, dict):
        raise ConfigError(where, "", "a migration is a mapping (name, from, to, steps)")
    try:
        return MigrationSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        if err["type"] == "missing":
            msg = "required key is missing"
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        raise ConfigError(where, loc, msg) from None


def read_migrations_dir(directory: Path) -> list[tuple[Path, MigrationSpec]]:
    """Every ``*.yaml`` / ``*.yml`` migration in ``directory`` with its file, by file name (none without it).

    Raises:
        ConfigError: a file that does not parse or validate.
    """
    from townlet.config.loader import read_yaml

    if not directory.is_dir():
        return []
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    return [(path, parse_migration(read_yaml(path), str(path))) for path in files]
