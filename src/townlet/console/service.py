"""The console service: rate-limit, authenticate, authorise, validate, de-duplicate, queue, apply, audit, answer.

``submit(token, payload, source)`` is what a transport (the live server's HTTP endpoint, a test) calls; the
HTTP endpoint calls its two halves, :meth:`ConsoleService.admit` (before it reads the body) and
:meth:`ConsoleService.submit_as`. The payload is ``{"cmd": NAME, "args": {...}, "cmd_id": ...}``; the role
comes only from the verified token (a ``role`` or ``mode`` in the payload is ignored).

Every request spends from a rate limit before anything else is done for it: the verified principal's bucket,
or, when the token does not verify, the source address's bucket of failed authentications - refusals
included, and a valid token is never charged for someone else's failures. Refusals are answered at once;
accepted commands are queued with ``Simulation.enqueue`` and applied at the next tick boundary in arrival
order, and the returned future resolves with the :class:`Result` after application. Every command is
audited: accepted ones line by line, refusals and failures line by line up to a budget and then summarised
(see :mod:`townlet.console.audit`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from townlet.console.audit import MAX_NAME, AuditLog
from townlet.console.auth import Principal, TokenAuthority, console_paths
from townlet.console.catalog import REGISTRY
from townlet.console.errors import (
    E_CONFLICT,
    E_FORBIDDEN,
    E_INVALID_ARG,
    E_NOT_FOUND,
    E_RATE_LIMITED,
    E_UNAUTHENTICATED,
    CommandError,
    clip,
)
from townlet.console.limits import TokenBucket
from townlet.console.possession import PossessionPolicy
from townlet.console.registry import Command, Context, Registry

if TYPE_CHECKING:
    from townlet.config.models import ConsoleConfig
    from townlet.sim.simulation import Simulation
    from townlet.telemetry.publisher import TelemetryPublisher
    from townlet.telemetry.state import StateBuilder
    from townlet.world.events import Event

__all__ = ["ConsoleService", "Result", "TokenBucket"]
log = logging.getLogger("townlet.console")
MAX_CMD_ID = 128
LOCAL = "local"  # the source of requests made in process (tests, replay), not over a network


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


def _resolved(result: Result) -> Future[Result]:
    future: Future[Result] = Future()
    future.set_result(result)
    return future


class ConsoleService:
    """Typed, authorised, rate-limited, audited commands for one simulation.

    Args:
        sim: The simulation the commands act on. Its policy is wrapped for possession.
            (``policies``, the policy desk of the ``policy`` command, is set by whoever runs the town.)
        authority: Verifies tokens (None: no token is accepted; a replay applies its recorded commands directly).
        audit: The audit log (None: nothing is written; tests only).
        publisher: The telemetry publisher, for the ``health`` command.
        registry: The commands (the full registry by default).
        rate_limit: ``f(principal) -> allowed``, charged for every request of a verified principal; None: no limit.
        dedup_size: How many ``cmd_id`` answers are remembered for retries.
        failures: ``f(source) -> allowed``, charged for every request whose token fails; None: no limit.
    """

    def __init__(
        self,
        sim: Simulation,
        authority: TokenAuthority | None,
        audit: AuditLog | None = None,
        publisher: TelemetryPublisher | None = None,
        registry: Registry = REGISTRY,
        rate_limit: Callable[[str], bool] | None = None,
        dedup_size: int = 4096,
        failures: Callable[[str], bool] | None = None,
    ) -> None:
        self.sim = sim
        self.authority = authority
        self.audit = audit
        self.publisher = publisher
        self.registry = registry
        self.rate_limit = rate_limit
        self.failures = failures
        self.dedup_size = dedup_size
        self.answers: OrderedDict[tuple[str, str], tuple[str, Future[Result]]] = OrderedDict()
        self.counts = {
            "submitted": 0,
            "refused": 0,
            "applied": 0,
            "failed": 0,
            "duplicates": 0,
            "internal_errors": 0,
            "rate_limited": 0,
        }
        self._lock = threading.Lock()
        self._builder: StateBuilder | None = None
        self.policies: Any = None  # the live town's policy desk (console/policy.py), installed by the server
        if isinstance(sim.policy, PossessionPolicy):
            self.possession = sim.policy
        else:
            self.possession = PossessionPolicy(sim.policy, sim.world)
            sim.policy = self.possession
        if audit is not None:
            sim.after_step.append(lambda _sim: audit.sweep())  # a flood's summary goes out when its interval ends

    @classmethod
    def from_config(
        cls, sim: Simulation, publisher: TelemetryPublisher | None = None, cfg: ConsoleConfig | None = None
    ) -> ConsoleService:
        """A service with the token files, audit log, de-duplication and rate limits of the config.

        The per-principal limit is ``console.rate_limit``; failed authentications per source address are
        limited by ``server.auth_failures``.
        """
        cfg = cfg or sim.config.console
        paths = console_paths(cfg)
        per, fail = cfg.rate_limit, sim.config.server.auth_failures
        return cls(
            sim,
            TokenAuthority.from_config(cfg),
            AuditLog.from_config(paths["audit"], cfg),
            publisher,
            rate_limit=TokenBucket(per.per_second, per.burst) if per.per_second else None,
            dedup_size=cfg.dedup_size,
            failures=TokenBucket(fail.per_second, fail.burst) if fail.per_second else None,
        )

    # -- the entry points ---------------------------------------------------------------------------

    def submit(self, token: Any, payload: Any, source: str | None = None) -> Future[Result]:
        """Rate-limit, check and queue one command; the future resolves with its :class:`Result`.

        Refusals (``E_RATE_LIMITED``, ``E_UNAUTHENTICATED``, ``E_FORBIDDEN``, ``E_NOT_FOUND`` for an unknown
        command, ``E_INVALID_ARG``, ``E_CONFLICT`` for a reused ``cmd_id``) resolve at once; accepted commands
        resolve after the next tick boundary. ``source`` is the client's address (None: in process). Never raises.
        """
        cmd = payload.get("cmd") if isinstance(payload, dict) else None
        raw_args = payload.get("args") if isinstance(payload, dict) else payload
        admitted = self.admit(token, source, cmd, raw_args)
        if isinstance(admitted, Result):
            return _resolved(admitted)
        return self.submit_as(admitted, payload, source)

    def admit(self, token: Any, source: str | None = None, cmd: Any = None, raw_args: Any = None) -> Principal | Result:
        """Verify the token and charge the request to a rate limit, before any other work is done for it.

        Returns:
            The verified principal, or the refusal (``E_UNAUTHENTICATED``; ``E_RATE_LIMITED`` once the
            principal, or for a failing token the source address, is over its limit), already audited.
        """
        with self._lock:
            self.counts["submitted"] += 1
        where = source or LOCAL
        try:
            if self.authority is None:
                raise CommandError(E_UNAUTHENTICATED, "this console accepts no tokens")
            principal = self.authority.verify(token)
        except CommandError as exc:
            refusal = exc
            if self.failures is not None and not self.failures(where):
                refusal = CommandError(E_RATE_LIMITED, "too many failed authentications from this address; wait")
            return self._refuse(None, source, cmd, raw_args, None, refusal)
        except Exception as exc:  # a bug in checking must not reach the caller's loop
            return self._internal(None, cmd, raw_args, None, exc)
        if self.rate_limit is not None and not self.rate_limit(principal.name):
            return self._refuse(
                principal, source, cmd, raw_args, None, CommandError(E_RATE_LIMITED, "too many commands; slow down")
            )
        return principal

    def submit_as(self, principal: Principal, payload: Any, source: str | None = None) -> Future[Result]:
        """Check and queue one command of an admitted principal (see :meth:`admit`). Never raises."""
        cmd_name = payload.get("cmd") if isinstance(payload, dict) else None
        raw_args = payload.get("args") if isinstance(payload, dict) else payload
        cmd_id: str | None = None
        try:
            if not isinstance(payload, dict):
                raise CommandError(E_INVALID_ARG, "payload must be an object {cmd, args, cmd_id}")
            if not isinstance(cmd_name, str) or not cmd_name:
                raise CommandError(E_INVALID_ARG, "cmd: a command name is required")
            command = self.registry.get(cmd_name)
            if command is None:
                raise CommandError(E_NOT_FOUND, f"no command {clip(cmd_name, MAX_NAME)!r} (try help)")
            if command.admin and not principal.is_admin:
                raise CommandError(E_FORBIDDEN, f"{cmd_name} needs an admin token")
            cmd_id = self._cmd_id(payload.get("cmd_id"))
            fingerprint = _fingerprint(cmd_name, raw_args) if cmd_id is not None else ""
            if cmd_id is not None:
                earlier = self._earlier(principal, cmd_id, fingerprint, raw_args)
                if earlier is not None:
                    return earlier
            args = command.parse(raw_args)
            if command.admin_ops and command.needs_admin(args) and not principal.is_admin:
                raise CommandError(E_FORBIDDEN, f"{cmd_name} op={getattr(args, 'op', '')} needs an admin token")
        except CommandError as exc:
            return _resolved(self._refuse(principal, source, cmd_name, raw_args, cmd_id, exc))
        except Exception as exc:  # a bug in checking must not reach the caller's loop
            return _resolved(self._internal(principal, cmd_name, raw_args, cmd_id, exc))
        future: Future[Result] = Future()
        if cmd_id is not None:
            self._remember(principal.name, cmd_id, fingerprint, future)
        self.sim.enqueue(lambda world: self._apply(command, args, principal, cmd_id, future))
        return future

    def execute(self, token: Any, payload: Any, timeout: float | None = None) -> Result:
        """Submit and wait for the answer (for a caller on another thread than the tick loop)."""
        return self.submit(token, payload).result(timeout)

    def flush(self) -> list[Event]:
        """Apply everything queued now, outside a tick (a paused live loop answers commands with this).

        Returns the events the commands emitted (see :meth:`Simulation.apply_pending`).
        """
        return self.sim.apply_pending()

    # -- applying -----------------------------------------------------------------------------------

    def _apply(
        self, command: Command, args: Any, principal: Principal, cmd_id: str | None, future: Future[Result]
    ) -> None:
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
        self._record(principal, None, args.model_dump(mode="json"), result)
        if not future.done():
            future.set_result(result)

    def _refuse(
        self,
        principal: Principal | None,
        source: str | None,
        cmd: Any,
        raw_args: Any,
        cmd_id: str | None,
        exc: CommandError,
    ) -> Result:
        result = Result(
            False,
            clip(cmd, MAX_NAME) if isinstance(cmd, str) else None,
            exc.code,
            exc.message,
            cmd_id=cmd_id,
            tick=int(self.sim.world.tick),
        )
        with self._lock:
            self.counts["refused"] += 1
            if exc.code == E_RATE_LIMITED:
                self.counts["rate_limited"] += 1
        self._record(principal, source, raw_args, result)
        return result

    def _internal(
        self, principal: Principal | None, cmd: Any, args: Any, cmd_id: str | None, exc: Exception, audit: bool = True
    ) -> Result:
        log.exception("console command %s failed unexpectedly", clip(cmd, MAX_NAME))
        with self._lock:
            self.counts["internal_errors"] += 1
        result = Result(
            False,
            clip(cmd, MAX_NAME) if isinstance(cmd, str) else None,
            E_CONFLICT,
            f"internal error ({type(exc).__name__}); the town was not changed by it",
            cmd_id=cmd_id,
            tick=int(self.sim.world.tick),
        )
        if audit:
            self._record(principal, None, args, result)
        return result

    def _record(self, principal: Principal | None, source: str | None, args: Any, result: Result) -> None:
        if self.audit is None:
            return
        fields: dict[str, Any] = {
            "tick": result.tick,
            "principal": principal.name if principal else None,
            "role": principal.role if principal else None,
            "cmd": result.cmd,
            "args": args,
            "cmd_id": result.cmd_id,
            "ok": result.ok,
            "code": result.code,
            "message": result.message,
            "data": result.data,
            "duplicate": result.duplicate,
        }
        if source is not None:
            fields["source"] = source
        if result.ok:
            self.audit.record(**fields)
        else:  # refusals and failures: line by line up to a budget per principal (or source), then summarised
            who = {"principal": principal.name} if principal else {"source": source or LOCAL}
            self.audit.refusal(who, **fields)

    # -- idempotency --------------------------------------------------------------------------------

    @staticmethod
    def _cmd_id(value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int) or len(str(value)) > MAX_CMD_ID:
            raise CommandError(E_INVALID_ARG, f"cmd_id: a string or integer of at most {MAX_CMD_ID} characters")
        return str(value)

    def _earlier(self, principal: Principal, cmd_id: str, fingerprint: str, args: Any) -> Future[Result] | None:
        """The answer to an earlier command with the same ``cmd_id`` from the same principal.

        Raises:
            CommandError: ``E_CONFLICT`` when that ``cmd_id`` was used for a different command or arguments.
        """
        key = (principal.name, cmd_id)
        with self._lock:
            remembered = self.answers.get(key)
            if remembered is None:
                return None
            if remembered[0] != fingerprint:
                raise CommandError(
                    E_CONFLICT,
                    f"cmd_id {cmd_id!r} was already used for a different command or arguments; use a new cmd_id",
                )
            self.answers.move_to_end(key)
            self.counts["duplicates"] += 1
        earlier = remembered[1]
        if not earlier.done():  # still queued: the retry waits for the same application
            if self.audit is not None:
                self.audit.record(
                    tick=int(self.sim.world.tick),
                    principal=principal.name,
                    role=principal.role,
                    cmd=None,
                    args=args,
                    cmd_id=cmd_id,
                    ok=None,
                    code=None,
                    message="pending",
                    duplicate=True,
                )
            return earlier
        first = earlier.result()
        again = Result(first.ok, first.cmd, first.code, first.message, first.data, first.cmd_id, first.tick, True)
        if self.audit is not None:
            self.audit.record(
                tick=int(self.sim.world.tick),
                principal=principal.name,
                role=principal.role,
                cmd=first.cmd,
                args=args,
                cmd_id=cmd_id,
                ok=first.ok,
                code=first.code,
                message=first.message,
                duplicate=True,
                applied_tick=first.tick,
            )
        return _resolved(again)

    def _remember(self, principal: str, cmd_id: str, fingerprint: str, future: Future[Result]) -> None:
        if not self.dedup_size:
            return
        with self._lock:
            self.answers[(principal, cmd_id)] = (fingerprint, future)
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
        """Telemetry health (or the tick timings alone without a publisher), console counters, live canaries."""
        sim = self.sim
        if self.publisher is not None:
            out = self.publisher.health()
        else:
            out = {"tick": int(sim.world.tick), "transports": {}, "perf": sim.perf()}
        with self._lock:
            counts = dict(self.counts)
        audit = self.audit
        out["console"] = {
            **counts,
            "queued": len(sim.commands),
            "audit_records": audit.records if audit else 0,
            "audit_summarised": audit.summarised if audit else 0,
            "audit_rotations": audit.rotations if audit else 0,
            "credentials": self.authority.alert or "ok" if self.authority is not None else "ok",
            "possessed": len(self.possession.owners),
        }
        if self.policies is not None:  # the live canaries and who drives (console/policy.py)
            out["stability"] = {
                "policy": self.policies.driving(),
                "canaries": self.policies.canary_states(),
                "promotion_state": self.policies.promotion_state(),
            }
        return out


def _fingerprint(cmd: str, args: Any) -> str:
    try:
        raw = orjson.dumps([cmd, args], option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        raw = repr([cmd, args]).encode("utf-8", "replace")
    return hashlib.sha256(raw).hexdigest()
