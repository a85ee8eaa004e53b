"""``--policy`` on the commands that run a town: one option, resolved and refused the same way everywhere."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from townlet.config.loader import LoadedConfig
    from townlet.training.policies import PolicyChoice

HELP = (
    "who drives the agents: scripted, random, default (the learned policy shipped with Townlet), release "
    "(the policy registry's), a checkpoint file, or a registered policy hash (or unique prefix)"
)


def add_policy_argument(parser: argparse.ArgumentParser, default: str | None = None, more: str = "") -> None:
    """Add ``--policy REF`` (and ``--registry PATH`` for registry references)."""
    parser.add_argument("--policy", default=default, metavar="REF", help=HELP + (f"; {more}" if more else ""))
    parser.add_argument(
        "--registry",
        default=None,
        metavar="PATH",
        help="the policy registry for release and hashes (default promotion.registry)",
    )


def fail(exc: BaseException) -> NoReturn:
    """Stop the command: ``townlet: error: …`` on one line, exit status 2 (bad input)."""
    from townlet.cli.main import BadInput

    raise BadInput(str(exc)) from None


def policy_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean a bad ``--policy`` (or a recorded policy that cannot be found)."""
    from townlet.policy.checkpoint import CheckpointError
    from townlet.training.policies import PolicyNotFound
    from townlet.training.registry import RegistryError

    return PolicyNotFound, CheckpointError, RegistryError


def registry_of(args: argparse.Namespace, loaded: LoadedConfig, create: bool = False) -> Any:
    """The policy registry of ``--registry`` or ``promotion.registry`` (None when it does not exist yet)."""
    from townlet.training.policies import open_registry

    return open_registry(loaded, getattr(args, "registry", None), create=create)


def choose(ref: str, loaded: LoadedConfig, args: argparse.Namespace) -> PolicyChoice:
    """Resolve a ``--policy`` reference (exits 2 with one line when it names nothing usable)."""
    from townlet.training.policies import resolve

    try:
        registry = registry_of(args, loaded) if _needs_registry(ref) else None
        return resolve(ref, registry)
    except policy_errors() as exc:
        fail(exc)


def _needs_registry(ref: str) -> bool:
    return ref not in ("scripted", "random", "default") and "/" not in ref and not ref.endswith(".pt")
