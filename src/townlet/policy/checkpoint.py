"""Policy checkpoints: the network weights plus the identity that says where they may run.

A checkpoint carries the network spec, the observation variant and the config_id it was trained on, the
training step and stage, and a policy hash (a digest of the spec and every weight) that names it in
registries, telemetry and snapshots. Torch is imported lazily so the simulation never needs it.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from townlet.files import write_atomic

if TYPE_CHECKING:
    from townlet.policy.networks import NetworkSpec, OptionPolicyNet

FORMAT = "townlet-policy/1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or does not fit the town it is asked to drive."""


@dataclass
class Checkpoint:
    """A loaded (or about to be saved) policy.

    Attributes:
        spec: The network's shape.
        state_dict: Its weights.
        variant: Observation variant it reads.
        config_id: Config it was trained under.
        policy_hash: Digest of spec + weights.
        step: Environment steps of training behind it.
        meta: Free-form extras (stage, metrics, optimiser state, BC accuracy...).
    """

    spec: NetworkSpec
    state_dict: dict[str, Any]
    variant: str
    config_id: str
    policy_hash: str = ""
    step: int = 0
    meta: dict[str, Any] = field(default_factory=dict)


def policy_hash(spec: NetworkSpec, state_dict: dict[str, Any]) -> str:
    """A stable digest of a network's shape and weights."""
    h = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True).encode())
    for name in sorted(state_dict):
        h.update(name.encode())
        h.update(state_dict[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def from_network(net: OptionPolicyNet, variant: str, config_id: str, step: int = 0, **meta: Any) -> Checkpoint:
    """Wrap a live network as a checkpoint (weights copied)."""
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    return Checkpoint(net.spec, state, variant, config_id, policy_hash(net.spec, state), step, dict(meta))


def save(checkpoint: Checkpoint, path: str | Path) -> Path:
    """Write atomically (temp file, fsync, rename); returns the path."""
    import torch

    payload = {
        "format": FORMAT,
        "spec": asdict(checkpoint.spec),
        "state_dict": checkpoint.state_dict,
        "variant": checkpoint.variant,
        "config_id": checkpoint.config_id,
        "policy_hash": checkpoint.policy_hash,
        "step": checkpoint.step,
        "meta": checkpoint.meta,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return write_atomic(path, buffer.getvalue())


def load(path: str | Path) -> Checkpoint:
    """Read a checkpoint, checking its format and that the weights match the recorded hash."""
    import torch

    from townlet.policy.networks import NetworkSpec

    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a corrupt checkpoint
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} checkpoint")
    spec_data = dict(payload["spec"])
    if spec_data.get("map_shape") is not None:
        spec_data["map_shape"] = tuple(spec_data["map_shape"])
    spec = NetworkSpec(**spec_data)
    checkpoint = Checkpoint(
        spec,
        payload["state_dict"],
        payload["variant"],
        payload["config_id"],
        payload["policy_hash"],
        int(payload.get("step", 0)),
        dict(payload.get("meta", {})),
    )
    actual = policy_hash(spec, checkpoint.state_dict)
    if actual != checkpoint.policy_hash:
        raise CheckpointError(f"{path}: weights do not match the recorded policy hash (corrupt file?)")
    return checkpoint


def build_network(checkpoint: Checkpoint) -> OptionPolicyNet:
    """A network in eval mode with the checkpoint's weights."""
    from townlet.policy.networks import OptionPolicyNet

    net = OptionPolicyNet(checkpoint.spec)
    net.load_state_dict(checkpoint.state_dict)
    net.eval()
    return net
