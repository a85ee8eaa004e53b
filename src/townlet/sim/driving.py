"""The ``policy`` snapshot section: which policy drove the town, and a learned one's per-agent state.

Captured: ``{"kind": "scripted" | "random" | "learned" | "other", ...}``; a learned policy (a
:class:`~townlet.policy.driver.PolicyDriver`) adds its identity (``hash``, ``name``, ``source``, ``since``,
``path``, ``greedy``) and its ``state`` (recurrent state, the inspector's numbers, the observation encoder's
memory). Restoring only *records* it on ``sim.recorded_policy``: finding the checkpoint again (the shipped
default, the policy registry, the recorded path with its hash checked) and reinstalling it is the policy
resolver's job (:func:`townlet.training.policies.reinstate`), which every command that resumes a town calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from townlet.sim.simulation import Simulation

KINDS = ("scripted", "random", "learned", "other")
_IDENTITY = {"hash": str, "name": str, "source": str, "since": int, "path": str, "greedy": bool}


def driving_kind(sim: Simulation) -> str:
    """``learned`` (a policy driver), ``other`` (any other actor), else the built-in policy's kind."""
    actor = sim.actor
    if actor is not None:
        return "learned" if hasattr(actor, "state") and hasattr(actor, "identity") else "other"
    inner = getattr(sim.policy, "inner", sim.policy)  # the console's possession wrapper
    return "random" if type(inner).__name__ == "RandomPolicy" else "scripted"


def capture(sim: Simulation) -> dict[str, Any]:
    """The section: the driving policy's kind, and a learned one's identity and state."""
    kind = driving_kind(sim)
    if kind != "learned":
        return {"kind": kind}
    actor = sim.actor
    return {"kind": kind, **actor.identity(), "state": actor.state()}


def restore(sim: Simulation, saved: Any) -> None:
    """Record the section on ``sim.recorded_policy`` (checked for shape; reinstalled by the policy resolver).

    Raises:
        ValueError: not a policy section.
    """
    if not isinstance(saved, dict) or saved.get("kind") not in KINDS:
        raise ValueError(f"the policy section must say which kind of policy drove ({', '.join(KINDS)})")
    if saved["kind"] == "learned":
        for name, kind in _IDENTITY.items():
            if not isinstance(saved.get(name), kind):
                raise ValueError(f"the policy section's {name} is missing or not a {kind.__name__}")
        if not isinstance(saved.get("state"), dict):
            raise ValueError("the policy section's state is missing")
    sim.recorded_policy = saved
