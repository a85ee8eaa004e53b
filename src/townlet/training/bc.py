"""Behaviour cloning: train the option policy to imitate the scripted routine from a captured dataset.

Whole episodes are held out (a share of each scenario's seeds), so the held-out accuracy measures days the
network never saw. The samples are the routine's choices at decision points (:mod:`townlet.training.capture`),
so the clone is a semi-MDP policy like those PPO trains; the loss is the masked categorical cross-entropy of
the scripted option (``imitation.bc``). The result is an ordinary policy checkpoint (``townlet train --init``
and ``townlet evaluate --checkpoint`` take it) whose ``meta["bc"]`` holds the accuracy report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from townlet.config.models import BehaviourCloningConfig
from townlet.policy.checkpoint import Checkpoint, from_network
from townlet.policy.networks import NetworkSpec, OptionPolicyNet
from townlet.training.capture import Dataset, load_dataset
from townlet.training.evaluation import single_thread


@dataclass
class BcReport:
    """How the clone did.

    Attributes:
        holdout_accuracy: Share of held-out decisions where the greedy option is the scripted one.
        train_accuracy: Accuracy on the training episodes.
        per_scenario: Held-out accuracy per scenario.
        train_samples / holdout_samples: Sample counts.
        holdout_episodes: ``scenario-seed`` of each held-out episode.
        epochs: Passes over the training set.
        seconds: Wall time of training.
        history: Held-out accuracy after each epoch.
        target: The accuracy the config asks for; ``passed`` says whether it was reached.
    """

    holdout_accuracy: float
    train_accuracy: float
    per_scenario: dict[str, float]
    train_samples: int
    holdout_samples: int
    holdout_episodes: list[str]
    epochs: int
    seconds: float
    history: list[float] = field(default_factory=list)
    target: float = 0.9
    passed: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return asdict(self)


def split_episodes(data: Dataset, holdout: float) -> tuple[list[int], list[int]]:
    """Shard indices ``(train, held_out)``: the last ``holdout`` share of each scenario's episodes held out.

    A scenario with a single episode keeps it for training, unless every scenario has just one: then a
    ``holdout`` share of all episodes (at least one, spread over scenarios) is held out.
    """
    shards = data.manifest["shards"]
    by_scenario: dict[str, list[int]] = {}
    for i, shard in enumerate(shards):
        by_scenario.setdefault(shard["scenario"], []).append(i)
    held: list[int] = []
    if any(len(ix) > 1 for ix in by_scenario.values()):
        for ix in by_scenario.values():
            if len(ix) > 1:
                k = min(max(1, round(len(ix) * holdout)), len(ix) - 1)
                held += ix[-k:]
    elif len(shards) > 1:
        k = min(max(1, round(len(shards) * holdout)), len(shards) - 1)
        step = len(shards) / k
        held = sorted({int(len(shards) - 1 - j * step) for j in range(k)})
    train = [i for i in range(len(shards)) if i not in held]
    return train, sorted(held)


def _split_single(data: Dataset, holdout: float) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One episode only: hold out its last ``holdout`` share of ticks."""
    arrays = data.join([0])
    ticks = arrays["tick"]
    cut = np.quantile(ticks, 1.0 - holdout)
    late = ticks >= cut
    return ({k: v[~late] for k, v in arrays.items()}, {k: v[late] for k, v in arrays.items()})


def _tensors(arrays: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        torch.from_numpy(np.ascontiguousarray(arrays["obs"], dtype=np.float32)),
        torch.from_numpy(arrays["mask"].astype(bool)),
        torch.from_numpy(arrays["action"].astype(np.int64)),
    )


def predict(net: OptionPolicyNet, obs: torch.Tensor, mask: torch.Tensor, batch: int = 8192) -> torch.Tensor:
    """Greedy option per sample (no gradients)."""
    out = []
    with torch.no_grad():
        for i in range(0, len(obs), batch):
            logits, _, _ = net(obs[i : i + batch], mask[i : i + batch])
            out.append(logits.argmax(dim=1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)


def accuracy(net: OptionPolicyNet, arrays: dict[str, np.ndarray]) -> float:
    """Accuracy of the greedy policy on some samples (1.0 when empty)."""
    obs, mask, action = _tensors(arrays)
    if not len(action):
        return 1.0
    return float((predict(net, obs, mask) == action).float().mean())


def train_bc(
    data: Dataset | str | Path,
    cfg: BehaviourCloningConfig | None = None,
    *,
    epochs: int | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> tuple[Checkpoint, BcReport]:
    """Clone the scripted routine from a dataset; return the checkpoint and its report.

    Args:
        data: A :class:`Dataset` or a dataset directory (checksums are verified).
        cfg: Training settings (the defaults of ``imitation.bc`` when None).
        epochs: Overrides ``cfg.epochs``.
        progress: ``progress(epoch, epochs, holdout_accuracy)`` after each epoch.
    """
    cfg = cfg or BehaviourCloningConfig()
    data = data if isinstance(data, Dataset) else load_dataset(data)
    with single_thread(cfg.threads):
        return _train(data, cfg, cfg.epochs if epochs is None else epochs, progress)


def _train(
    data: Dataset, cfg: BehaviourCloningConfig, epochs: int, progress: Callable[[int, int, float], None] | None
) -> tuple[Checkpoint, BcReport]:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    shards = data.manifest["shards"]
    if len(shards) > 1:
        train_ix, held_ix = split_episodes(data, cfg.holdout)
        train, held = data.join(train_ix), data.join(held_ix)
        held_names = [f"{shards[i]['scenario']}-{shards[i]['seed']}" for i in held_ix]
        held_scenario = np.concatenate([np.full(len(data.shards[i]["action"]), shards[i]["scenario"]) for i in held_ix])
    else:
        train, held = _split_single(data, cfg.holdout)
        held_names = [f"{shards[0]['scenario']}-{shards[0]['seed']} (last {cfg.holdout:.0%} of ticks)"]
        held_scenario = np.full(len(held["action"]), shards[0]["scenario"])
    spec = NetworkSpec.for_layout(data.layout(), int(data.manifest["n_actions"]), cfg.hidden)
    net = OptionPolicyNet(spec)
    obs, mask, action = _tensors(train)
    # A label its own mask forbids (a command or a perturbation moved the mask within the tick) cannot be learned.
    weight = mask[torch.arange(len(action)), action].float()
    optimiser = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(epochs, 1))
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    history: list[float] = []
    started = time.perf_counter()
    n = len(action)
    for epoch in range(epochs):
        net.train()
        order = torch.from_numpy(rng.permutation(n))
        for i in range(0, n, cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            logits, _, _ = net(obs[idx], mask[idx])
            w = weight[idx]
            loss = (loss_fn(logits, action[idx]) * w).sum() / w.sum().clamp(min=1.0)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        schedule.step()
        net.eval()
        history.append(accuracy(net, held))
        if progress is not None:
            progress(epoch + 1, epochs, history[-1])
    seconds = time.perf_counter() - started
    net.eval()
    held_acc = accuracy(net, held)
    per_scenario = {}
    for name in dict.fromkeys(held_scenario.tolist()):
        rows = held_scenario == name
        per_scenario[str(name)] = accuracy(net, {k: v[rows] for k, v in held.items()})
    report = BcReport(
        holdout_accuracy=round(held_acc, 4),
        train_accuracy=round(accuracy(net, train), 4),
        per_scenario={k: round(v, 4) for k, v in per_scenario.items()},
        train_samples=int(n),
        holdout_samples=int(len(held["action"])),
        holdout_episodes=held_names,
        epochs=epochs,
        seconds=round(seconds, 2),
        history=[round(h, 4) for h in history],
        target=cfg.target_accuracy,
        passed=held_acc >= cfg.target_accuracy,
    )
    checkpoint = from_network(
        net,
        data.variant,
        str(data.manifest["config_id"]),
        step=0,
        source="bc",
        dataset=str(data.root),
        bc=report.to_dict(),
    )
    return checkpoint, report
