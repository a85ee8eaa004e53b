"""Snapshot migrations: registered steps that turn a state captured under one config_id into one valid under another.

A migration is ``fn(state) -> state`` over the decoded sections of a snapshot (``{"components": …, "rng": …,
"grid_fields": …, <registered sections>}``, see :mod:`townlet.sim.snapshot`). Loading under a different
config_id follows the shortest chain of registered steps; every step applied is recorded (name, from, to,
tick) and travels with the town into later snapshots.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

Migration = Callable[[dict[str, Any]], dict[str, Any]]


class MigrationError(Exception):
    """No registered chain of migrations leads from a snapshot's config_id to the current one."""


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


def migration_path(source: str, target: str) -> list[MigrationStep]:
    """The chain of registered migrations from ``source`` to ``target`` (empty when equal).

    Raises:
        MigrationError: when no chain exists.
    """
    if source == target:
        return []
    frontier: list[tuple[str, list[MigrationStep]]] = [(source, [])]
    seen = {source}
    while frontier:
        here, chain = frontier.pop(0)
        for (a, b), step in MIGRATIONS.items():
            if a == here and b not in seen:
                if b == target:
                    return [*chain, step]
                seen.add(b)
                frontier.append((b, [*chain, step]))
    raise MigrationError(f"config_id mismatch: snapshot was taken under {source}, this config is {target}, "
                         "and no registered migration leads from one to the other")


def migrate(state: dict[str, Any], source: str, target: str, tick: int,
            applied: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the chain from ``source`` to ``target`` over ``state``; returns it and ``applied`` plus the new steps.

    Raises:
        MigrationError: when no chain exists.
    """
    applied = list(applied)
    for step in migration_path(source, target):
        state = step.apply(state)
        applied.append({"name": step.name, "from": step.source, "to": step.target, "tick": tick})
    return state, applied
