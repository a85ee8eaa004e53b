"""The policy registry (SQLite): every candidate, release, rollback and pin, each with its reason.

Two tables. ``policies`` holds one row per policy: its hash (or ``scripted``/``random`` for the built-in
routines), checkpoint path, observation variant, config_id and status (``candidate``, ``release``,
``retired``, ``rejected``). ``decisions`` is append-only: ``register``, ``shadow``, ``promote``, ``rollback``,
``reject``, ``pin`` and ``unpin``, each with the time, the simulation tick (when there is one), the policy, the release
before it, a reason and JSON details (window reports, gate checks).

The current release is the top of the release stack that the decisions build (a promotion pushes, a rollback
pops back to the release before). While the registry is *pinned* (a regression), promotions are refused.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from townlet.policy.compat import check_config

if TYPE_CHECKING:
    from townlet.config.loader import LoadedConfig

BUILTINS = ("scripted", "random")
SCHEMA = """
CREATE TABLE IF NOT EXISTS policies (
    policy_hash TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    variant TEXT NOT NULL,
    config_id TEXT NOT NULL,
    status TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    meta TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    tick INTEGER,
    action TEXT NOT NULL,
    policy_hash TEXT NOT NULL,
    previous TEXT,
    reason TEXT NOT NULL,
    details TEXT NOT NULL
);
"""


class RegistryError(ValueError):
    """A registry operation that cannot be done (unknown policy, nothing to roll back to, pinned)."""


@dataclass(frozen=True)
class PolicyRecord:
    """One registered policy."""

    policy_hash: str
    path: str
    variant: str
    config_id: str
    status: str
    registered_at: str
    meta: dict[str, Any]


@dataclass(frozen=True)
class Decision:
    """One line of the decision log."""

    id: int
    at: str
    tick: int | None
    action: str
    policy_hash: str
    previous: str | None
    reason: str
    details: dict[str, Any]


def _policy(row: tuple[Any, ...]) -> PolicyRecord:
    return PolicyRecord(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]))


def _decision(row: tuple[Any, ...]) -> Decision:
    return Decision(row[0], row[1], row[2], row[3], row[4], row[5], row[6], json.loads(row[7]))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class PolicyRegistry:
    """A SQLite policy registry (created on first use).

    Args:
        path: Database file (``~`` expanded; ``:memory:`` for a throwaway one).
    """

    def __init__(self, path: str | Path) -> None:
        text = str(path)
        if text != ":memory:":
            file = Path(text).expanduser()
            file.parent.mkdir(parents=True, exist_ok=True)
            text = str(file)
        self.path = text
        self.db = sqlite3.connect(text, check_same_thread=False)  # the live town's tick thread uses it too
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    def scratch_copy(self) -> PolicyRegistry:
        """An in-memory copy to try decisions on without touching this file (``townlet replay``)."""
        copy = PolicyRegistry(":memory:")
        self.db.backup(copy.db)
        return copy

    def __enter__(self) -> PolicyRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- policies -------------------------------------------------------------------------------------

    def register(
        self,
        policy: Any,
        reason: str = "registered",
        tick: int | None = None,
        path: str | Path | None = None,
        town: LoadedConfig | None = None,
    ) -> PolicyRecord:
        """Add a candidate and return its record (a known policy just returns its record).

        Args:
            policy: A checkpoint path, ``scripted``/``random``, or a loaded
                :class:`~townlet.policy.checkpoint.Checkpoint` (then ``path`` says where it is saved).
            reason: Why it is registered.
            tick: The simulation tick, when there is one.
            path: The checkpoint file of a loaded checkpoint.
            town: The town's config: a checkpoint that does not fit it is refused
                (:class:`~townlet.policy.compat.IncompatiblePolicy`, naming each difference).
        """
        file, variant, config_id, meta = "", "", "", {}
        if isinstance(policy, str) and policy in BUILTINS:
            policy_hash = policy
        else:
            from townlet.policy.checkpoint import Checkpoint, load

            checkpoint = policy if isinstance(policy, Checkpoint) else load(policy)
            if town is not None:
                check_config(checkpoint, town)
            where = path if isinstance(policy, Checkpoint) else policy
            file = str(Path(where).resolve()) if where else ""
            policy_hash, variant, config_id = checkpoint.policy_hash, checkpoint.variant, checkpoint.config_id
            meta = {"step": checkpoint.step, "source": checkpoint.meta.get("source", "")}
        known = self.get(policy_hash)
        if known is not None:
            return known
        with self.db:
            self.db.execute(
                "INSERT INTO policies VALUES (?, ?, ?, ?, ?, ?, ?)",
                (policy_hash, file, variant, config_id, "candidate", _now(), json.dumps(meta)),
            )
            self._decide("register", policy_hash, reason, tick)
        record = self.get(policy_hash)
        assert record is not None
        return record

    def register_custom(
        self, name: str, reason: str = "registered", tick: int | None = None, meta: dict[str, Any] | None = None
    ) -> PolicyRecord:
        """Add an in-process policy known by ``name`` (no checkpoint: a hand-written or test policy)."""
        known = self.get(name)
        if known is not None:
            return known
        with self.db:
            self.db.execute(
                "INSERT INTO policies VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, "", "", "", "candidate", _now(), json.dumps({"custom": True, **(meta or {})})),
            )
            self._decide("register", name, reason, tick)
        record = self.get(name)
        assert record is not None
        return record

    def get(self, policy_hash: str) -> PolicyRecord | None:
        """The record of a policy, or None."""
        row = self.db.execute("SELECT * FROM policies WHERE policy_hash = ?", (policy_hash,)).fetchone()
        return None if row is None else _policy(row)

    def lookup(self, ref: str) -> PolicyRecord | None:
        """A policy by hash or unique hash prefix (never by path), or None.

        Raises:
            RegistryError: more than one registered policy starts with ``ref``.
        """
        record = self.get(ref)
        if record is not None or not ref:
            return record
        hits = [
            r[0]
            for r in self.db.execute(
                "SELECT policy_hash FROM policies WHERE substr(policy_hash, 1, ?) = ?", (len(ref), ref)
            )
        ]
        if len(hits) > 1:
            raise RegistryError(f"{ref!r} is ambiguous ({len(hits)} registered policies start with it)")
        return self.get(hits[0]) if hits else None

    def resolve(self, ref: str) -> PolicyRecord:
        """A policy by hash, unique hash prefix, or checkpoint path (raises :class:`RegistryError`)."""
        if Path(ref).exists() and self.get(ref) is None:
            rows = self.db.execute("SELECT policy_hash FROM policies WHERE path = ?", (str(Path(ref).resolve()),))
            hits = [r[0] for r in rows]
            record = self.get(hits[0]) if len(hits) == 1 else None
        else:
            record = self.lookup(ref)
        if record is None:
            raise RegistryError(f"no registered policy {ref!r}")
        return record

    def policies(self, status: str | None = None) -> list[PolicyRecord]:
        """Every registered policy (optionally of one status), oldest first."""
        query, args = "SELECT * FROM policies", cast(tuple[Any, ...], ())
        if status is not None:
            query, args = query + " WHERE status = ?", (status,)
        return [_policy(r) for r in self.db.execute(query + " ORDER BY rowid", args)]

    def load(self, record: PolicyRecord) -> Any:
        """What drives a town: ``scripted``/``random``, or the checkpoint (its hash checked against the record)."""
        if record.policy_hash in BUILTINS:
            return record.policy_hash
        from townlet.policy.checkpoint import load

        checkpoint = load(record.path)
        if checkpoint.policy_hash != record.policy_hash:
            raise RegistryError(
                f"{record.path} now holds policy {checkpoint.policy_hash}, registered as {record.policy_hash}"
            )
        return checkpoint

    # -- decisions ------------------------------------------------------------------------------------

    def _decide(
        self,
        action: str,
        policy_hash: str,
        reason: str,
        tick: int | None,
        previous: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.db.execute(
            "INSERT INTO decisions (at, tick, action, policy_hash, previous, reason, details) VALUES (?,?,?,?,?,?,?)",
            (_now(), tick, action, policy_hash, previous, reason, json.dumps(details or {}, default=str)),
        )

    def _set_status(self, policy_hash: str, status: str) -> None:
        self.db.execute("UPDATE policies SET status = ? WHERE policy_hash = ?", (status, policy_hash))

    def decisions(self, action: str | None = None) -> list[Decision]:
        """The decision log, oldest first (optionally one action)."""
        query, args = "SELECT * FROM decisions", cast(tuple[Any, ...], ())
        if action is not None:
            query, args = query + " WHERE action = ?", (action,)
        return [_decision(r) for r in self.db.execute(query + " ORDER BY id", args)]

    def releases(self) -> list[str]:
        """The release stack, oldest first (promotions push, rollbacks pop)."""
        stack: list[str] = []
        for d in self.decisions():
            if d.action == "promote":
                stack.append(d.policy_hash)
            elif d.action == "rollback" and stack:
                stack.pop()
        return stack

    @property
    def release(self) -> PolicyRecord | None:
        """The current release, or None before the first promotion."""
        stack = self.releases()
        return self.get(stack[-1]) if stack else None

    @property
    def pinned(self) -> Decision | None:
        """The pin in force (its reason), or None."""
        for d in reversed(self.decisions()):
            if d.action in ("pin", "unpin"):
                return d if d.action == "pin" else None
        return None

    def state(self, **more: Any) -> dict[str, Any]:
        """``promotion_state`` for structured logs: the release, how deep the release stack is, any pin.

        ``more`` adds what the caller knows (the ``driving`` policy, a ``candidate`` in shadow).
        """
        stack = self.releases()
        pin = self.pinned
        return {
            "release": stack[-1] if stack else None,
            "releases": len(stack),
            "pinned": pin.reason if pin else None,
            **more,
        }

    def promote(
        self,
        ref: str,
        reason: str,
        tick: int | None = None,
        details: dict[str, Any] | None = None,
        force: bool = False,
        town: LoadedConfig | None = None,
    ) -> PolicyRecord:
        """Make a registered policy the release (refused while pinned unless ``force``).

        With ``town`` (the config of the town it will drive) a checkpoint that does not fit is refused
        (:class:`~townlet.policy.compat.IncompatiblePolicy`, naming each difference).
        """
        record = self.resolve(ref)
        if town is not None and record.policy_hash not in BUILTINS and not record.meta.get("custom"):
            check_config(self.load(record), town)
        pin = self.pinned
        if pin is not None and not force:
            raise RegistryError(f"the release is pinned ({pin.reason}); unpin first or force")
        current = self.release
        if current is not None and current.policy_hash == record.policy_hash:
            raise RegistryError(f"{record.policy_hash} is already the release")
        with self.db:
            if current is not None:
                self._set_status(current.policy_hash, "retired")
            self._set_status(record.policy_hash, "release")
            self._decide("promote", record.policy_hash, reason, tick, current.policy_hash if current else None, details)
        return self.resolve(record.policy_hash)

    def rollback(self, reason: str, tick: int | None = None, details: dict[str, Any] | None = None) -> PolicyRecord:
        """Go back to the release before the current one; returns it."""
        stack = self.releases()
        if len(stack) < 2:
            raise RegistryError("no earlier release to roll back to")
        bad, good = stack[-1], stack[-2]
        with self.db:
            self._set_status(bad, "rejected")
            self._set_status(good, "release")
            self._decide("rollback", good, reason, tick, bad, details)
        record = self.get(good)
        assert record is not None
        return record

    def reject(self, ref: str, reason: str, tick: int | None = None, details: dict[str, Any] | None = None) -> None:
        """Turn a candidate down."""
        record = self.resolve(ref)
        with self.db:
            if record.status == "candidate":
                self._set_status(record.policy_hash, "rejected")
            self._decide("reject", record.policy_hash, reason, tick, None, details)

    def pin(self, reason: str, tick: int | None = None, details: dict[str, Any] | None = None) -> None:
        """Hold the current release in place (no promotions) because of a regression."""
        current = self.release
        with self.db:
            self._decide("pin", current.policy_hash if current else "", reason, tick, None, details)

    def shadow(self, ref: str, tick: int | None = None) -> None:
        """Record that a candidate went into a shadow town (``townlet promote shadow``)."""
        record = self.resolve(ref)
        current = self.release
        with self.db:
            self._decide(
                "shadow",
                record.policy_hash,
                "candidate in a shadow town beside the release",
                tick,
                current.policy_hash if current else None,
            )

    def in_shadow(self) -> Decision | None:
        """The ``shadow`` decision of a candidate not yet promoted or turned down since (None: none in shadow)."""
        decided: set[str] = set()
        for d in reversed(self.decisions()):
            if d.action in ("promote", "reject"):
                decided.add(d.policy_hash)
            elif d.action == "shadow" and d.policy_hash not in decided:
                return d
        return None

    def unpin(self, reason: str, tick: int | None = None) -> None:
        """Allow promotions again."""
        current = self.release
        with self.db:
            self._decide("unpin", current.policy_hash if current else "", reason, tick)
