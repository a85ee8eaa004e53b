"""Which policy drives a town: resolving a reference, checking that it fits, installing it, reinstating a snapshot's.

A policy reference (``--policy`` on every command that runs a town, ``ref`` of the console's ``policy`` command):

| reference | the policy |
|---|---|
| `scripted`, `random` | the built-in routine, or uniform random among the allowed options |
| `default` | the small learned policy shipped in the package (:mod:`townlet.policy.shipped`) |
| `release` | the policy registry's current release |
| a file path | a checkpoint (the command line only: the console never takes a path from a client) |
| a policy hash or unique prefix | a registered policy (or the shipped default by its hash) |

A learned policy must fit the town (:mod:`townlet.policy.compat`: variant, observation size, option set,
config) before it drives; it then drives as a :class:`~townlet.policy.driver.PolicyDriver`, with the
console's possessions still overriding it. A snapshot records the driving policy (:mod:`townlet.sim.driving`);
:func:`reinstate` brings it back on resume, or refuses naming the hash it cannot find.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from townlet.config.loader import LoadedConfig
from townlet.policy import compat, shipped
from townlet.policy.checkpoint import Checkpoint, CheckpointError, load
from townlet.policy.driver import PolicyDriver
from townlet.policy.learned import LearnedPolicy
from townlet.sim.simulation import Simulation
from townlet.training.registry import BUILTINS, PolicyRegistry

REFERENCES = "scripted, random, default, release, a checkpoint file or a registered policy hash (or unique prefix)"


class PolicyNotFound(LookupError):
    """A policy reference that names nothing this town can find."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "policy not found"


@dataclass(frozen=True)
class PolicyChoice:
    """A resolved policy reference.

    Attributes:
        kind: ``scripted``, ``random`` or ``learned``.
        name: How people call it (``scripted``, ``default``, a path, a policy hash).
        source: Where it was found: ``builtin``, ``default``, ``path``, ``registry``, ``release`` or ``snapshot``.
        policy_hash: The checkpoint's hash (the name of a built-in).
        checkpoint: The loaded checkpoint of a learned policy.
        path: Its file ("" for built-ins).
    """

    kind: str
    name: str
    source: str
    policy_hash: str
    checkpoint: Checkpoint | None = None
    path: str = ""

    def to_dict(self) -> dict[str, Any]:
        """``{hash, name, source, kind, path}`` (the ``policy`` field of ``townlet run --json``)."""
        return {
            "hash": self.policy_hash,
            "name": self.name,
            "source": self.source,
            "kind": self.kind,
            "path": self.path,
        }


def builtin(name: str, source: str = "builtin") -> PolicyChoice:
    """The choice of a built-in policy (``scripted`` or ``random``)."""
    return PolicyChoice(name, name, source, name)


def _learned(checkpoint: Checkpoint, name: str, source: str, path: str | Path) -> PolicyChoice:
    return PolicyChoice("learned", name, source, checkpoint.policy_hash, checkpoint, str(path))


@contextmanager
def _torch_needed() -> Iterator[None]:
    """Loading a checkpoint without PyTorch (the runtime image, a bare install) is one clear error."""
    try:
        yield
    except ModuleNotFoundError as exc:
        raise CheckpointError(
            f"a learned policy needs PyTorch, which this installation lacks ({exc.name}); "
            "install townlet[train] (or use the training image)"
        ) from None


def _load(path: str | Path) -> Checkpoint:
    with _torch_needed():
        return load(path)


def open_registry(loaded: LoadedConfig, path: str | Path | None = None, create: bool = False) -> PolicyRegistry | None:
    """The policy registry at ``path`` (default ``promotion.registry``); None when it does not exist yet.

    With ``create`` a missing registry is created empty.
    """
    where = str(path or loaded.config.promotion.registry)
    if where != ":memory:" and not create and not Path(where).expanduser().is_file():
        return None
    return PolicyRegistry(where)


def default_choice() -> PolicyChoice:
    """The shipped default policy (raises :class:`CheckpointError` when it is missing or damaged)."""
    with _torch_needed():
        checkpoint = shipped.load_default()
    return _learned(checkpoint, shipped.NAME, "default", shipped.CHECKPOINT_FILE)


def resolve(ref: str, registry: PolicyRegistry | None = None, *, paths: bool = True) -> PolicyChoice:
    """What a policy reference names (see the module table).

    Args:
        ref: The reference.
        registry: Where ``release`` and policy hashes are looked up (None: nowhere).
        paths: Accept a checkpoint file path (False for references that come from a client).

    Raises:
        PolicyNotFound: nothing by that name.
        CheckpointError: a file that is not a readable checkpoint, or a registered one whose file changed.
    """
    ref = ref.strip()
    if ref in BUILTINS:
        return builtin(ref)
    if ref == shipped.NAME:
        return default_choice()
    if ref == "release":
        if registry is None:
            raise PolicyNotFound(
                "release: there is no policy registry yet (create one with townlet promote register / promote)"
            )
        record = registry.release
        if record is None:
            raise PolicyNotFound(f"release: the registry at {registry.path} has no release yet")
        return _from_record(record, registry, "release")
    if paths and (Path(ref).expanduser().is_file() or "/" in ref or ref.endswith(".pt")):
        file = Path(ref).expanduser()
        return _learned(_load(file), ref, "path", file.resolve())
    if _is_default_hash(ref):
        return default_choice()
    if registry is not None:
        record = registry.lookup(ref)
        if record is not None:
            return _from_record(record, registry, "registry")
    where = f"the registry at {registry.path}" if registry is not None else "no policy registry"
    raise PolicyNotFound(f"no policy {ref[:80]!r} ({where}); a policy is {REFERENCES}")


def _is_default_hash(ref: str) -> bool:
    try:
        return len(ref) >= 4 and shipped.default_hash().startswith(ref)
    except CheckpointError:
        return False


def _from_record(record: Any, registry: PolicyRegistry, source: str) -> PolicyChoice:
    if record.policy_hash in BUILTINS:
        return builtin(record.policy_hash, source)
    if record.meta.get("custom"):
        raise PolicyNotFound(f"{record.policy_hash} is an in-process policy; no checkpoint to load")
    with _torch_needed():
        checkpoint = registry.load(record)
    return _learned(checkpoint, record.policy_hash, source, record.path)


def install(
    sim: Simulation, choice: PolicyChoice, *, greedy: bool | None = None, strict: bool = True, since: int | None = None
) -> PolicyDriver | None:
    """Make ``choice`` drive every agent of ``sim`` from its next decision on (newcomers included).

    The console's possession wrapper stays in place (possessed agents keep obeying their admin). Returns the
    driver of a learned policy (None for a built-in).

    Args:
        sim: The town.
        choice: The resolved policy.
        greedy: Take the most likely option (default ``evaluation.greedy``).
        strict: Refuse a checkpoint that does not fit (see :mod:`townlet.policy.compat`); False checks only
            what running needs.
        since: The tick it drives from (default: the town's next tick).

    Raises:
        IncompatiblePolicy: the checkpoint does not fit this town.
    """
    from townlet.policy.scripted import RandomPolicy, ScriptedPolicy

    driver = None
    if choice.kind == "learned":
        assert choice.checkpoint is not None
        compat.check(choice.checkpoint, sim.world, strict)
        greedy = sim.config.evaluation.greedy if greedy is None else greedy
        learned = LearnedPolicy(choice.checkpoint, greedy=greedy, threads=sim.config.promotion.policy_threads)
        driver = PolicyDriver(learned, choice.name, choice.source, sim.tick if since is None else since, choice.path)
    builtin_policy: Any = RandomPolicy() if choice.kind == "random" else ScriptedPolicy(sim.world)
    if hasattr(sim.policy, "inner"):  # the console's possession wrapper: swap what it wraps
        sim.policy.inner = builtin_policy
    else:
        sim.policy = builtin_policy
    sim.actor = driver
    return driver


def describe(sim: Simulation) -> dict[str, Any]:
    """The driving policy: ``{hash, name, source, kind}`` plus ``since`` (and ``path``) for a learned one."""
    actor = sim.actor
    if isinstance(actor, PolicyDriver):
        return {**actor.identity(), "kind": "learned"}
    if actor is not None:
        name = str(getattr(actor, "policy_hash", None) or type(actor).__name__)
        return {"hash": name, "name": name, "source": "in-process", "kind": "other"}
    from townlet.sim.driving import driving_kind

    kind = driving_kind(sim)
    return {"hash": kind, "name": kind, "source": "builtin", "kind": kind}


def reinstate(
    sim: Simulation, override: PolicyChoice | None = None, registry: PolicyRegistry | None = None, strict: bool = True
) -> PolicyChoice:
    """After a snapshot was restored into ``sim``: install ``override``, else the policy the snapshot records.

    A recorded learned policy is found by its hash: the shipped default, then the registry, then the recorded
    checkpoint path (when the file there still has that hash). Its per-agent state comes back with it, so the
    resumed town decides as the uninterrupted one would have.

    Raises:
        PolicyNotFound: the recorded policy cannot be found (the message names its hash).
        IncompatiblePolicy: the policy does not fit the town.
    """
    recorded = sim.recorded_policy or {"kind": "scripted"}
    sim.recorded_policy = None
    if override is not None:
        install(sim, override, strict=strict)
        return override
    kind = recorded["kind"]
    if kind in BUILTINS:
        choice = builtin(kind, "snapshot")
        install(sim, choice)
        return choice
    if kind != "learned":
        raise PolicyNotFound(
            "the snapshot was driven by an in-process policy that cannot be reinstated; "
            "pass --policy to choose who drives"
        )
    choice = find_recorded(recorded, registry)
    driver = install(sim, choice, greedy=recorded["greedy"], strict=strict, since=recorded["since"])
    assert driver is not None
    try:
        driver.load_state(sim, recorded["state"])
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"the snapshot's state of policy {choice.policy_hash} does not fit: {exc}") from None
    return choice


def find_recorded(recorded: dict[str, Any], registry: PolicyRegistry | None) -> PolicyChoice:
    """The checkpoint of a policy a snapshot names, by its hash (see :func:`reinstate`).

    Raises:
        PolicyNotFound: neither the shipped default, the registry nor the recorded file has it.
    """
    wanted, name, source = recorded["hash"], recorded["name"], recorded["source"]
    if _is_default_hash(wanted) and shipped.default_hash() == wanted:
        return default_choice()
    if registry is not None:
        record = registry.get(wanted)
        if record is not None:
            return _from_record(record, registry, source)
    path = recorded.get("path") or ""
    if path and Path(path).is_file():
        try:
            checkpoint = _load(path)
        except CheckpointError:
            checkpoint = None
        if checkpoint is not None and checkpoint.policy_hash == wanted:
            return _learned(checkpoint, name, source, path)
    where = f"the registry at {registry.path}" if registry is not None else "no policy registry"
    gone = f", and {path} is missing or holds another policy" if path else ""
    raise PolicyNotFound(
        f"the snapshot was taken under policy {wanted} ({name}), which is neither the shipped "
        f"default nor in {where}{gone}; pass --policy to choose who drives"
    )
