"""The ``policy`` console command: which policy drives the town, and (admins) swap, promote or roll back.

``op=status`` is open to viewers: the driving policy's hash and name, the tick it took over, the release,
the candidate in shadow, any pin, and the live stability canaries. ``op=swap ref=…`` (a registered policy's
hash or unique prefix, ``default``, ``release``, ``scripted`` or ``random``; never a file path),
``op=promote ref=…`` (the same references, made the registry's release) and ``op=rollback`` need an admin
token. Every change takes effect at the tick boundary the command runs at, possessed agents keep obeying
their admin, and it emits a ``policy_changed`` event and a narration line.

The work is done by the live town's *policy desk* (:class:`PolicyDesk`, the server installs
:class:`townlet.training.live.LivePolicies` as ``ConsoleService.policies``). A desk signals an unknown
reference with :class:`LookupError` (``E_NOT_FOUND``) and a policy that does not fit the town, a pinned
release or nothing to roll back to with :class:`ValueError` (``E_CONFLICT``); both messages are passed on.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Protocol

from pydantic import Field, model_validator

from townlet.console.errors import E_CONFLICT, E_NOT_FOUND, CommandError
from townlet.console.registry import Args, Context, Registry

# Letters, digits, '_' and '-' only: a hash, a prefix or a name, never a path.
PolicyRef = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Reason = Annotated[str, Field(min_length=1, max_length=200)]


class PolicyDesk(Protocol):
    """What the ``policy`` command asks of the live town (see :class:`townlet.training.live.LivePolicies`)."""

    def status(self) -> dict[str, Any]:
        """The driving policy, the release, the candidate in shadow, any pin, the canaries."""
        ...

    def swap(self, ref: str, who: str) -> dict[str, Any]:
        """Let ``ref`` drive from now on (the registry's release is unchanged)."""
        ...

    def promote(self, ref: str, who: str, reason: str) -> dict[str, Any]:
        """Make ``ref`` the registry's release and let it drive."""
        ...

    def rollback(self, who: str, reason: str) -> dict[str, Any]:
        """Go back to the release before the current one and let it drive."""
        ...


class PolicyArgs(Args):
    """``op``: status (default), swap, promote or rollback; ``ref``: which policy (swap, promote); ``reason``."""

    op: Literal["status", "swap", "promote", "rollback"] = "status"
    ref: PolicyRef | None = None
    reason: Reason | None = None

    @model_validator(mode="after")
    def _ref_when_needed(self) -> PolicyArgs:
        if self.op in ("swap", "promote") and self.ref is None:
            raise ValueError(
                f"op={self.op} needs ref (a registered policy hash or prefix, default, release, scripted or random)"
            )
        if self.op in ("status", "rollback") and self.ref is not None:
            raise ValueError(f"op={self.op} takes no ref")
        return self


COMMANDS = Registry()  # joined into the console's registry by townlet.console.catalog


@COMMANDS.command("policy", PolicyArgs, admin=False, admin_ops=("swap", "promote", "rollback"))
def policy_cmd(ctx: Context, args: PolicyArgs) -> dict[str, Any]:
    """Which policy drives (status); admins: swap, promote or roll back the driving policy."""
    desk: PolicyDesk | None = getattr(ctx.service, "policies", None)
    if desk is None:
        if args.op == "status":
            return _bare_status(ctx)
        raise CommandError(E_CONFLICT, "this town has no policy desk (policies are managed by townlet serve)")
    who = ctx.principal.name
    reason = args.reason or f"console {args.op} by {who}"
    try:
        if args.op == "status":
            return desk.status()
        if args.op == "swap":
            assert args.ref is not None
            return desk.swap(args.ref, who)
        if args.op == "promote":
            assert args.ref is not None
            return desk.promote(args.ref, who, reason)
        return desk.rollback(who, reason)
    except LookupError as exc:
        raise CommandError(E_NOT_FOUND, str(exc)) from None
    except ValueError as exc:
        raise CommandError(E_CONFLICT, str(exc)) from None
    except OSError as exc:  # a registered checkpoint whose file went away
        raise CommandError(E_CONFLICT, f"cannot load the policy ({exc})") from None


def _bare_status(ctx: Context) -> dict[str, Any]:
    """``op=status`` of a town without a desk (no registry, no live canaries): who drives, from the town itself."""
    from townlet.sim.driving import driving_kind

    actor = ctx.sim.actor
    if actor is not None and hasattr(actor, "identity"):
        policy = {**actor.identity(), "kind": "learned"}
    else:
        kind = driving_kind(ctx.sim)
        policy = {"hash": kind, "name": kind, "source": "builtin" if kind != "other" else "in-process", "kind": kind}
    return {
        "policy": policy,
        "release": None,
        "pinned": None,
        "candidate": None,
        "registry": None,
        "canaries": {},
        "windows": 0,
        "changes": [],
    }
