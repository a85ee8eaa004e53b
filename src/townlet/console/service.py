"""The console service: authenticate, authorise, validate, de-duplicate, queue, apply, audit, answer.

``submit(token, payload)`` is what a transport (the live server's HTTP endpoint, a test) calls. The payload is
``{"cmd": NAME, "args": {...}, "cmd_id": ...}``; the role comes only from the verified token (a ``role`` or
``mode`` in the payload is ignored). Refusals are answered at once; accepted commands are queued with
``Simulation.enqueue`` and applied at the next tick boundary in arrival order, and the returned future
resolves with the :class:`Result` after application. Every command, accepted or refused, is audited.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from townlet.console import commands as _commands  # noqa: F401 - registers the world commands
from townlet.console import controls as _controls  # noqa: F401 - registers the run commands
from townlet.console import snapshots as _snapshots  # noqa: F401 - registers snapshot and reload
from townlet.console.audit import AuditLog
from townlet.console.auth import Principal, TokenAuthority, console_paths
from townlet.console.errors import (
    E_CONFLICT,
    E_FORBIDDEN,
    E_INVALID_ARG,
    E_NOT_FOUND,
    E_RATE_LIMITED,
    CommandError,
)
from townlet.console.possession import PossessionPolicy
from townlet.console.registry import REGISTRY, Command, Context, Registry

if TYPE_CHECKING:
    from townlet.config.models import ConsoleConfig
    from townlet.sim.simulation import Simulation
    from townlet.telemetry.publisher import TelemetryPublisher
    from townlet.telemetry.state import StateBuilder

log = logging.getLogger("townlet.console")
MAX_CMD_ID = 128


@dataclass
class Result:
    """The answer to one command.

    Attributes:
        ok: Whether it was applied.
        cmd: The command name (None when the payload had none).
        code: A stable error code when not ok.
        message: What went wrong, in words (empty when ok).
        data: What the command reports (ids, new values...).
        cmd_id: The caller's ``cmd_id``, if any.
        tick: The tick it was applied at (or refused at).
        duplicate: This answer is a retry's: the command ran once, earlier.
    """

    ok: bool
    cmd: str | None = None
    code: str | None = None
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    cmd_id: str | None = None
    tick: int | None = None
    duplicate: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


class TokenBucket:
    """Per-principal rate limit: ``per_second`` refill, ``burst`` capacity."""

    def __init__(self, per_second: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_second
        self.burst = float(burst)
        self.clock = clock
        self.buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def __call__(self, principal: str) -> bool:
        """Take one token for ``principal``; False when the bucket is empty."""
        now = self.clock()
        with self._lock:
            level, last = self.buckets.get(principal, (self.burst, now))
            level = min(self.burst, level + (now - last) * self.rate)
            allowed = level >= 1.0
            self.buckets[principal] = (level - 1.0 if allowed else level, now)
            return allowed


def _resolved(result: Result) -> Future[Result]:
    future: Future[Result] = Future()
    future.set_result(result)
    return future


class ConsoleService:
    """Typed, authorised, audited commands for one simulation.

    Args:
        sim: The simulation the commands act on. Its policy is wrapped for possession.
        authority: Verifies tokens.
        audit: The audit log (None: nothing is written; tests only).
        publisher: The telemetry publisher, for the ``health`` command.
        registry: The commands (the full registry by default).
        rate_limit: ``f(principal) -> allowed``; None disables rate limiting.
        dedup_size: How many ``cmd_id`` answers are remembered for retries.
    """

    def __init__(self, sim: Simulation, authority: TokenAuthority, audit: AuditLog | None = None,
                 publisher: TelemetryPublisher | None = None, registry: Registry = REGISTRY,
                 rate_limit: Callable[[str], bool] | None = None, dedup_size: int = 4096) -> None:
        self.sim = sim
        self.authority = authority
        self.audit = audit
        self.publisher = publisher
        self.registry = registry
        self.rate_limit = rate_limit
        self.dedup_size = dedup_size
        self.answers: OrderedDict[tuple[str, str], Future[Result]] = OrderedDict()
        self.counts = {"submitted": 0, "refused": 0, "applied": 0, "failed": 0, "duplicates": 0, "internal_errors": 0}
        self._lock = threading.Lock()
        self._builder: StateBuilder | None = None
        if isinstance(sim.policy, PossessionPolicy):
            self.possession = sim.policy
        else:
            self.possession = PossessionPolicy(sim.policy, sim.world)
            sim.policy = self.possession

    @classmethod
    def from_config(cls, sim: Simulation, publisher: TelemetryPublisher | None = None,
                    cfg: ConsoleConfig | None = None) -> ConsoleService:
        """A service with the token files, audit log, de-duplication and rate limit of the ``console`` config."""
        cfg = cfg or sim.config.console
        paths = console_paths(cfg)
        limit = TokenBucket(cfg.rate_limit.per_second, cfg.rate_limit.burst) if cfg.rate_limit.per_second else None
        return cls(sim, TokenAuthority.from_config(cfg), AuditLog(paths["audit"], cfg.audit_fsync), publisher,
                   rate_limit=limit, dedup_size=cfg.dedup_size)

    # -- the entry point ----------------------------------------------------------------------------

    def submit(self, token: Any, payload: Any) -> Future[Result]:
        """Check and queue one command; the future resolves with its :class:`Result`.

        Refusals (``E_UNAUTHENTICATED``, ``E_FORBIDDEN``, ``E_NOT_FOUND`` for an unknown command,
        ``E_INVALID_ARG``, ``E_RATE_LIMITED``) resolve at once; accepted commands resolve after the next tick
        boundary. Never raises.
        """
        with self._lock:
            self.counts["submitted"] += 1
        principal: Principal | None = None
        cmd_name = payload.get("cmd") if isinstance(payload, dict) else None
        raw_args = payload.get("args") if isinstance(payload, dict) else payload
        cmd_id: str | None = None
        try:
            principal = self.authority.verify(token)
            if not isinstance(payload, dict):
                raise CommandError(E_INVALID_ARG, "payload must be an object {cmd, args, cmd_id}")
            if not isinstance(cmd_name, str) or not cmd_name:
                raise CommandError(E_INVALID_ARG, "cmd: a command name is required")
            command = self.registry.get(cmd_name)
            if command is None:
                raise CommandError(E_NOT_FOUND, f"no command {cmd_name[:64]!r} (try help)")
            if command.admin and not principal.is_admin:
                raise CommandError(E_FORBIDDEN, f"{cmd_name} needs an admin token")
            cmd_id = self._cmd_id(payload.get("cmd_id"))
            if cmd_id is not None:
                earlier = self._earlier(principal, cmd_id, raw_args)
                if earlier is not None:
                    return earlier
            if self.rate_limit is not None and not self.rate_limit(principal.name):
                raise CommandError(E_RATE_LIMITED, "too many commands; slow down")
            args = command.parse(raw_args)
        except CommandError as exc:
            result = Result(False, cmd_name if isinstance(cmd_name, str) else None, exc.code, exc.message,
                            cmd_id=cmd_id, tick=int(self.sim.world.tick))
            self._record(principal, raw_args, result)
            with self._lock:
                self.counts["refused"] += 1
            return _resolved(result)
        except Exception as exc:  # a bug in checking must not reach the caller's loop
            return _resolved(self._internal(principal, cmd_name, raw_args, cmd_id, exc))
        future: Future[Result] = Future()
        if cmd_id is not None:
            self._remember(principal.name, cmd_id, future)
        self.sim.enqueue(lambda world: self._apply(command, args, principal, cmd_id, future))
        return future

    def execute(self, token: Any, payload: Any, timeout: float | None = None) -> Result:
        """Submit and wait for the answer (for a caller on another thread than the tick loop)."""
        return self.submit(token, payload).result(timeout)

    def flush(self) -> None:
        """Apply everything queued now, outside a tick (a paused live loop answers commands with this)."""
        self.sim._apply_commands()

    # -- applying -----------------------------------------------------------------------------------

    def _apply(self, command: Command, args: Any, principal: Principal, cmd_id: str | None,
               future: Future[Result]) -> None:
        tick = int(self.sim.world.tick)
        try:
            data = command.handler(Context(self.sim, principal, self), args)
            result = Result(True, command.name, data=data, cmd_id=cmd_id, tick=tick)
            key = "applied"
        except CommandError as exc:
            result = Result(False, command.name, exc.code, exc.message, cmd_id=cmd_id, tick=tick)
            key = "failed"
        except Exception as exc:  # never let a command break the tick loop
            result = self._internal(principal, command.name, args.model_dump(), cmd_id, exc, audit=False)
            key = "failed"
        with self._lock:
            self.counts[key] += 1
        self._record(principal, args.model_dump(mode="json"), result)
        if not future.done():
            future.set_result(result)

    def _internal(self, principal: Principal | None, cmd: Any, args: Any, cmd_id: str | None, exc: Exception,
                  audit: bool = True) -> Result:
        log.exception("console command %s failed unexpectedly", cmd)
        with self._lock:
            self.counts["internal_errors"] += 1
        result = Result(False, cmd if isinstance(cmd, str) else None, E_CONFLICT,
                        f"internal error ({type(exc).__name__}); the town was not changed by it",
                        cmd_id=cmd_id, tick=int(self.sim.world.tick))
        if audit:
            self._record(principal, args, result)
        return result

    def _record(self, principal: Principal | None, args: Any, result: Result) -> None:
        if self.audit is None:
            return
        self.audit.record(
            tick=result.tick, principal=principal.name if principal else None,
            role=principal.role if principal else None, cmd=result.cmd, args=args, cmd_id=result.cmd_id,
            ok=result.ok, code=result.code, message=result.message, data=result.data, duplicate=result.duplicate,
        )

    # -- idempotency --------------------------------------------------------------------------------

    @staticmethod
    def _cmd_id(value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int) or len(str(value)) > MAX_CMD_ID:
            raise CommandError(E_INVALID_ARG, f"cmd_id: a string or integer of at most {MAX_CMD_ID} characters")
        return str(value)

    def _earlier(self, principal: Principal, cmd_id: str, args: Any) -> Future[Result] | None:
        """The answer to an earlier command with the same ``cmd_id`` from the same principal."""
        key = (principal.name, cmd_id)
        with self._lock:
            earlier = self.answers.get(key)
            if earlier is None:
                return None
            self.answers.move_to_end(key)
            self.counts["duplicates"] += 1
        if not earlier.done():  # still queued: the retry waits for the same application
            if self.audit is not None:
                self.audit.record(tick=int(self.sim.world.tick), principal=principal.name, role=principal.role,
                                  cmd=None, args=args, cmd_id=cmd_id, ok=None, code=None, message="pending",
                                  duplicate=True)
            return earlier
        first = earlier.result()
        again = Result(first.ok, first.cmd, first.code, first.message, first.data, first.cmd_id, first.tick, True)
        if self.audit is not None:
            self.audit.record(tick=int(self.sim.world.tick), principal=principal.name, role=principal.role,
                              cmd=first.cmd, args=args, cmd_id=cmd_id, ok=first.ok, code=first.code,
                              message=first.message, duplicate=True, applied_tick=first.tick)
        return _resolved(again)

    def _remember(self, principal: str, cmd_id: str, future: Future[Result]) -> None:
        if not self.dedup_size:
            return
        with self._lock:
            self.answers[(principal, cmd_id)] = future
            while len(self.answers) > self.dedup_size:
                self.answers.popitem(last=False)

    # -- read-only helpers --------------------------------------------------------------------------

    def state_builder(self) -> StateBuilder:
        """A telemetry state builder over this simulation (for ``agent``)."""
        if self._builder is None:
            from townlet.telemetry.state import StateBuilder

            self._builder = StateBuilder(self.sim)
        return self._builder

    def health(self) -> dict[str, Any]:
        """Telemetry health (or the tick timings alone without a publisher) plus console counters."""
        sim = self.sim
        if self.publisher is not None:
            out = self.publisher.health()
        else:
            out = {"tick": int(sim.world.tick), "transports": {}, "perf": sim.perf()}
        with self._lock:
            counts = dict(self.counts)
        out["console"] = {**counts, "queued": len(sim.commands),
                          "audit_records": self.audit.records if self.audit else 0,
                          "possessed": len(self.possession.owners)}
        return out
