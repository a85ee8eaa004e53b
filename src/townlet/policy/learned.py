"""A learned policy driving a live town: observations -> network -> options for the agents that must choose.

``LearnedPolicy.act(sim)`` returns the option array that :meth:`Simulation.step` takes; it also keeps the
latest option probabilities and values per slot for the viewer's policy inspector. A semi-MDP policy
(``spec.decisions == "points"``, what ``townlet train`` makes) is asked only for the agents at a decision
point (their option finished or failed, they just arrived, a need rose past a decision level): everybody else
continues the running option and costs no forward pass. A per-tick policy (older checkpoints) is asked for
every living agent every tick. Either way the mask is the one option mask the policy trained with
(:mod:`townlet.policy.options`, through :meth:`Simulation.masks`). Torch is imported only
when a learned policy is actually used. The forward pass runs on ``threads`` torch threads (one by default):
a small network acting tick by tick only loses to thread hand-offs (about 30 ticks/s against 420 on a busy
2-core machine). A recurrent policy's state is per slot and starts from zero for a newcomer in the slot or
whenever the observation's ``ctx_reset`` flag is set.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from townlet.policy.checkpoint import Checkpoint, CheckpointError, build_network, load
from townlet.policy.options import OPTION_COUNT

if TYPE_CHECKING:
    from townlet.sim.simulation import Simulation


@contextmanager
def torch_threads(threads: int = 1) -> Iterator[None]:
    """Run the block on ``threads`` torch CPU threads (0: leave torch's setting alone); restored after.

    Does nothing when torch is not loaded yet (no learned policy in play), so scripted runs never import it.
    """
    torch = sys.modules.get("torch")
    if torch is None or threads <= 0:
        yield
        return
    before = torch.get_num_threads()
    if before != threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if before != threads:
            torch.set_num_threads(before)


class LearnedPolicy:
    """Chooses options from a checkpoint for the agents that must choose (every living agent, per tick).

    Args:
        checkpoint: A :class:`Checkpoint` or a path to one.
        greedy: Take the most likely option instead of sampling (sampling uses the ``policy`` stream).
        threads: Torch CPU threads for the forward pass (``promotion.policy_threads``; 0: torch's default).

    Attributes:
        probs: ``float32[C, 7]`` option probabilities at each agent's last decision (zeros for empty slots).
        values: ``float32[C]`` value estimates at each agent's last decision.
        decision_points: The policy chooses at decision points only (a semi-MDP policy).
        deciders: ``int64[n]`` slots that chose at the last tick (empty: nobody did).
        masks: ``bool[n, 7]`` their mask rows.
    """

    def __init__(self, checkpoint: Checkpoint | str | Path, greedy: bool = False, threads: int = 1) -> None:
        self.checkpoint = checkpoint if isinstance(checkpoint, Checkpoint) else load(checkpoint)
        self.net = build_network(self.checkpoint)
        self.greedy = greedy
        self.threads = threads
        self.decision_points = self.checkpoint.spec.decisions == "points"
        self.deciders = np.zeros(0, dtype=np.int64)
        self.masks = np.zeros((0, OPTION_COUNT), dtype=bool)
        self.encoder: Any = None
        self._world: Any = None
        self._state: Any = None
        self._spawn = np.zeros(0, dtype=np.int64)  # spawn tick of the agent each slot's recurrent state is for
        self._ctx = 0
        self.probs = np.zeros((0, OPTION_COUNT), dtype=np.float32)
        self.values = np.zeros(0, dtype=np.float32)

    @property
    def policy_hash(self) -> str:
        """The checkpoint's policy hash."""
        return self.checkpoint.policy_hash

    def _bind(self, sim: Simulation) -> None:
        from townlet.observations import ObservationEncoder

        variant = self.checkpoint.variant
        self.encoder = ObservationEncoder(sim.world, variant)
        if self.encoder.size != self.checkpoint.spec.obs_dim:
            raise CheckpointError(
                f"policy {self.policy_hash} reads {self.checkpoint.spec.obs_dim} features ({variant}) but this town "
                f"produces {self.encoder.size}: observation shapes differ"
            )
        cap = sim.world.agents.capacity
        self.probs = np.zeros((cap, OPTION_COUNT), dtype=np.float32)
        self.values = np.zeros(cap, dtype=np.float32)
        self._state = self.net.initial_state(cap)
        self._spawn = np.full(cap, np.iinfo(np.int64).min, dtype=np.int64)
        self._ctx = self.encoder.layout.index("ctx_reset")
        self._world = sim.world

    def reset_state(self, slots: np.ndarray) -> None:
        """Zero the recurrent state of ``slots`` (a no-op for a feed-forward policy)."""
        if self._state is not None and len(slots):
            idx = np.asarray(slots)
            self._state[0][:, idx] = 0.0
            self._state[1][:, idx] = 0.0

    def act(self, sim: Simulation) -> np.ndarray:
        """One option per slot for the coming tick (-1 for empty slots; the running option where nobody chooses)."""
        import torch

        if self._world is not sim.world:
            self._bind(sim)
        world = sim.world
        a = world.agents
        actions = np.where(a.alive, a.option, -1).astype(np.int64)
        live = sim.controller.deciding().nonzero()[0] if self.decision_points else a.slots()
        self.deciders = live
        if not len(live):
            self.masks = np.zeros((0, OPTION_COUNT), dtype=bool)
            return actions
        obs = self.encoder.encode()
        mask = sim.masks(self.decision_points)[live]
        self.masks = mask
        if self._state is not None:
            spawn = a.spawn_tick[live]
            fresh = (spawn != self._spawn[live]) | (obs[live, self._ctx] > 0.5)
            self.reset_state(live[fresh])
            self._spawn[live] = spawn
        with torch_threads(self.threads), torch.no_grad():
            state = None
            if self._state is not None:
                state = (self._state[0][:, live], self._state[1][:, live])
            logits, value, state = self.net(torch.from_numpy(obs[live]), torch.from_numpy(mask), state)
            if state is not None:
                self._state[0][:, live], self._state[1][:, live] = state
            probs = torch.softmax(logits, dim=-1).numpy()
        if self.greedy:
            choice = probs.argmax(axis=1)
        else:
            cumulative = probs.cumsum(axis=1)
            draws = world.rng.policy.random(len(live))[:, None]
            choice = (cumulative < draws).sum(axis=1).clip(0, OPTION_COUNT - 1)
        actions[live] = choice
        self.probs[~a.alive] = 0.0
        self.probs[live] = probs
        self.values[live] = value.numpy()
        return actions
