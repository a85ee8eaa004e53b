"""The learned policy that drives a town: who it is, where it came from, and what it keeps between ticks.

:class:`PolicyDriver` is what ``Simulation.actor`` holds when a checkpoint drives a town (``--policy``, the
console's ``policy swap``, a release). It wraps a :class:`~townlet.policy.learned.LearnedPolicy` and adds

- its identity for telemetry, snapshots and the console: policy hash, name (``default``, a path, a registry
  hash), source (``default``, ``path``, ``registry``, ``release``) and the tick it took over (``since``);
- possession: an agent an admin possesses is left to the built-in policy (action -1), whose console
  wrapper carries out the admin's orders, so a possession always overrides the learned policy;
- the policy inspector's numbers (:meth:`inspect`): each agent's option probabilities and value at its last
  decision under this policy;
- its per-agent state for snapshots (:meth:`state` / :meth:`load_state`): the recurrent state, the slots'
  spawn ticks, the inspector's numbers and the observation encoder's memory of who it has seen, so a
  resumed town decides exactly as the uninterrupted one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from townlet.policy.learned import LearnedPolicy
from townlet.policy.options import OPTION_LABELS

if TYPE_CHECKING:
    from townlet.sim.simulation import Simulation

# Plain per-slot attributes of the learned policy and its observation encoder that carry over between ticks.
_POLICY_STATE = ("probs", "values", "_spawn")
_ENCODER_STATE = ("buffer", "_seen_alive", "_seen_spawn", "_fresh", "_encodes")


class PolicyDriver:
    """A learned policy as a town's actor, with identity, possession override, inspector and snapshot state.

    Args:
        learned: The learned policy.
        name: How people name it (``default``, a checkpoint path, a registry hash).
        source: Where it was found: ``default``, ``path``, ``registry`` or ``release``.
        since: The tick from which it drives.
        path: The checkpoint file it was loaded from ("" when unknown).
    """

    def __init__(self, learned: LearnedPolicy, name: str, source: str, since: int = 0, path: str = "") -> None:
        self.learned = learned
        self.name = name
        self.source = source
        self.since = since
        self.path = path

    @property
    def policy_hash(self) -> str:
        """The checkpoint's policy hash."""
        return self.learned.policy_hash

    @property
    def greedy(self) -> bool:
        """Whether it takes the most likely option (else samples with the ``policy`` stream)."""
        return self.learned.greedy

    def act(self, sim: Simulation) -> np.ndarray:
        """One option per slot; -1 for possessed agents, whom the built-in (possession) policy drives."""
        actions = self.learned.act(sim)
        possessed = getattr(sim.policy, "possessed_by", None)
        if possessed:
            actions[list(possessed)] = -1
        return actions

    def identity(self) -> dict[str, Any]:
        """``{hash, name, source, since, path, greedy}``."""
        return {
            "hash": self.policy_hash,
            "name": self.name,
            "source": self.source,
            "since": int(self.since),
            "path": self.path,
            "greedy": bool(self.greedy),
        }

    # -- the inspector ----------------------------------------------------------------------------

    def inspect(self, slots: np.ndarray, top: int = 3, digits: int = 4) -> list[dict[str, Any] | None]:
        """Per slot: ``{hash, top: [[option, p], ...] best first, value}`` at its last decision, or None.

        None for a slot that has not decided under this policy yet (a newcomer, or every agent right after a
        swap until its option ends).
        """
        learned = self.learned
        if not len(learned.probs):
            return [None] * len(slots)
        probs = learned.probs[slots].astype(np.float64)
        decided = probs.sum(axis=1) > 0
        order = np.argsort(-probs, axis=1, kind="stable")[:, :top]
        best = np.round(np.take_along_axis(probs, order, axis=1), digits).tolist()
        values = np.round(learned.values[slots].astype(np.float64), digits).tolist()
        out: list[dict[str, Any] | None] = []
        for i, ok in enumerate(decided.tolist()):
            if not ok:
                out.append(None)
                continue
            out.append(
                {
                    "hash": self.policy_hash,
                    "top": [[OPTION_LABELS[o], p] for o, p in zip(order[i].tolist(), best[i], strict=True)],
                    "value": values[i],
                }
            )
        return out

    # -- snapshots --------------------------------------------------------------------------------

    def bind(self, sim: Simulation) -> None:
        """Get ready to drive ``sim`` (the observation encoder and per-slot arrays), as the first act would."""
        if self.learned._world is not sim.world:
            self.learned._bind(sim)

    def state(self) -> dict[str, Any]:
        """Plain data of everything it carries between ticks (empty before it first acted)."""
        learned = self.learned
        if learned.encoder is None:
            return {}
        out: dict[str, Any] = {
            "policy": {k: _copy(getattr(learned, k)) for k in _POLICY_STATE},
            "encoder": {k: _copy(getattr(learned.encoder, k)) for k in _ENCODER_STATE},
        }
        if learned._state is not None:
            out["recurrent"] = [t.detach().cpu().numpy().copy() for t in learned._state]
        return out

    def load_state(self, sim: Simulation, state: dict[str, Any]) -> None:
        """Put :meth:`state` back after binding to ``sim``.

        Raises:
            ValueError: the state does not fit (another capacity, variant or network).
        """
        if not state:
            return
        self.bind(sim)
        learned = self.learned
        for owner, names, saved in (
            (learned, _POLICY_STATE, state.get("policy", {})),
            (learned.encoder, _ENCODER_STATE, state.get("encoder", {})),
        ):
            for name in names:
                if name in saved:
                    setattr(owner, name, _into(getattr(owner, name), saved[name], name))
        recurrent = state.get("recurrent")
        if recurrent is not None:
            if learned._state is None or len(recurrent) != len(learned._state):
                raise ValueError("the saved recurrent state does not fit this policy")
            for tensor, saved in zip(learned._state, recurrent, strict=True):
                if tuple(tensor.shape) != tuple(np.shape(saved)):
                    raise ValueError("the saved recurrent state does not fit this policy")
                np.copyto(tensor.detach().numpy(), np.asarray(saved))  # a CPU tensor's numpy view: in place


def _copy(value: Any) -> Any:
    return value.copy() if isinstance(value, np.ndarray) else value


def _into(current: Any, saved: Any, name: str) -> Any:
    """Copy a saved array into the live one in place (compiled kernels hold references to it)."""
    if isinstance(current, np.ndarray):
        saved = np.asarray(saved)
        if saved.shape != current.shape:
            raise ValueError(f"saved {name} has shape {saved.shape}, this town needs {current.shape}")
        np.copyto(current, saved.astype(current.dtype, copy=False))
        return current
    if type(saved) is not type(current):
        raise ValueError(f"saved {name} is a {type(saved).__name__}, not a {type(current).__name__}")
    return saved
