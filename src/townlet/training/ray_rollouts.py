"""Rollout workers as Ray actors: the same :class:`~townlet.training.rollout.Collector`, one per actor.

``RayCollector`` has the in-process collector's interface, so the PPO loop does not know which it drives.
Each update the learner puts its weights in Ray's object store once; every actor loads them, steps its own
towns and returns its :class:`~townlet.training.rollout.Rollout`; the rollouts are joined along the slot
axis. Worker ``k`` steps towns seeded ``seed + k * towns + i``: the same first episodes as one process
stepping all ``workers * towns`` towns.

``address="local"`` starts (or joins) a Ray instance on this machine; any other value is passed to
``ray.init(address=...)`` to join an existing cluster (``auto``, ``ray://head:10001``, ``head:6379``). The
nodes need townlet and its ``train`` extra installed (see docs/training.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from townlet.training.rollout import Collector, Rollout

_worker_class: Any = None


def connect(address: str, workers: int) -> bool:
    """Join or start Ray; returns True when this call started a local instance (to shut down later)."""
    import ray

    if ray.is_initialized():
        return False
    if address == "local":
        ray.init(num_cpus=max(workers, 1), include_dashboard=False, log_to_driver=False, configure_logging=False)
    else:
        ray.init(address=address, log_to_driver=False)
    return True


def worker_class() -> Any:
    """The ``RolloutWorker`` actor class (defined on first use so importing this module needs no Ray)."""
    global _worker_class
    if _worker_class is not None:
        return _worker_class
    import ray

    @ray.remote(num_cpus=1)
    class RolloutWorker:
        """One Ray actor owning a :class:`Collector` and a CPU copy of the policy network."""

        def __init__(
            self, config: str | None, overrides: list[str], towns: int, seed: int, gamma: float, window_ticks: int
        ) -> None:
            import torch

            torch.set_num_threads(1)
            self.collector = Collector(config, overrides, towns, seed, gamma, window_ticks=window_ticks)
            self.net: Any = None

        def describe(self) -> dict[str, Any]:
            c = self.collector
            return {"layout": c.layout, "n_actions": c.n_actions, "capacity": c.capacity, "slots": c.slots}

        def collect(self, spec: Any, weights: dict[str, Any], ticks: int) -> Rollout:
            from townlet.policy.networks import OptionPolicyNet

            if self.net is None or self.net.spec != spec:
                self.net = OptionPolicyNet(spec)
            self.net.load_state_dict(weights)
            return self.collector.collect(self.net, ticks)

        def set_scripted_share(self, share: float) -> None:
            self.collector.set_scripted_share(share)

        def close(self) -> None:
            self.collector.close()

    _worker_class = RolloutWorker
    return RolloutWorker


class RayCollector:
    """``workers`` Ray actors of ``towns`` towns each, driven like one :class:`Collector`.

    Args:
        config: YAML config path (None: the shipped town); must be readable on the worker nodes.
        overrides: ``key.path=value`` config overrides.
        workers: Rollout actors.
        towns: Towns per actor.
        seed: Seed of the first town of the first actor.
        gamma: Discount per tick.
        address: ``local`` or a Ray cluster address.
        window_ticks: Ticks per town of a KPI window (0: a day); the actors' windows are added up.
    """

    def __init__(
        self,
        config: str | Path | None,
        overrides: list[str],
        workers: int,
        towns: int,
        seed: int,
        gamma: float,
        address: str = "local",
        window_ticks: int = 0,
    ) -> None:
        import ray

        from townlet.env import env_config

        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.loaded = env_config(config, overrides=list(overrides))  # fails here, not in an actor, on bad input
        self._started = connect(address, workers)
        cls = worker_class()
        path = None if config is None else str(Path(config).resolve())
        self.workers = [
            cls.remote(path, list(overrides), towns, seed + k * towns, gamma, window_ticks) for k in range(workers)
        ]
        info = ray.get(self.workers[0].describe.remote())
        self.layout = info["layout"]
        self.n_actions = info["n_actions"]
        self.capacity = info["capacity"]
        self.n_towns = workers * towns
        self.slots = workers * info["slots"]
        self.scripted_share = 0.0

    def collect(self, net: Any, ticks: int) -> Rollout:
        """One rollout from every actor with ``net``'s current weights, joined along the slot axis."""
        import ray

        weights = ray.put({k: v.detach().cpu() for k, v in net.state_dict().items()})
        parts = ray.get([w.collect.remote(net.spec, weights, ticks) for w in self.workers])
        return Rollout.concat(parts, self.slots // len(self.workers))

    def set_scripted_share(self, share: float) -> None:
        """Forward the anneal's scripted share to every actor."""
        import ray

        self.scripted_share = float(share)
        ray.get([w.set_scripted_share.remote(share) for w in self.workers])

    def close(self) -> None:
        """Stop the actors (and the local Ray instance if this collector started it)."""
        import ray

        for w in self.workers:
            ray.kill(w)
        self.workers = []
        if self._started:
            ray.shutdown()
