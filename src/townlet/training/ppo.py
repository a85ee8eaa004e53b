"""PPO over options as a semi-MDP, CleanRL-style: the arguments, then the training loop, top to bottom.

Agents choose an option only at decision points (their option finished or failed, they just arrived, a need
turned critical or rose past ``options.decision_level``), from one shared network (masked categorical head,
value head; MLP for hybrid/compact, a small CNN over the map for full, optional LSTM); between decisions their
option runs with no policy call. The update is :func:`~townlet.training.update.ppo_update`. Rollouts of
``rollout_ticks`` ticks per town come from :class:`~townlet.training.rollout.Collector` (in-process, towns
optionally split over worker processes) or from Ray actors (:mod:`townlet.training.ray_rollouts`). Each
transition carries the reward of its ticks discounted per tick and bootstraps with ``gamma**k V(next
decision)``; advantages are GAE over each agent's decisions
(:func:`~townlet.training.advantages.gae`), cut at exits and arrivals. The run directory gets
``metrics.jsonl`` (one line per update, see :mod:`townlet.training.metrics`), ``learning_curves.png``,
``checkpoints/update_NNNNNN.pt``, ``latest.pt`` and ``final.pt`` (policy checkpoints carrying the policy
hash, variant, config_id, and the optimiser and curriculum state that ``--resume`` needs), and ``best.pt``:
the policy after the best-scoring KPI windows (:class:`~townlet.training.windows.BestWindows`).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from townlet.training.ppo_run import PPORun


@dataclass
class PPOArgs:
    """Everything a training run needs; ``townlet train`` fills it from its flags (``--ppo key=value``)."""

    config: str | None = None
    """YAML config file (None: the shipped town)"""
    overrides: list[str] = field(default_factory=list)
    """``key.path=value`` config overrides (variant, population, ...)"""
    out: str = "runs/ppo"
    """run directory: metrics.jsonl, learning_curves.png, checkpoints"""
    stage: str | None = None
    """curriculum stage to start at (None: the config's ``stage``; without one there is no curriculum)"""
    auto_curriculum: bool = True
    """move to the next stage once its KPI bands (``stages.X.advance_when``) hold for two windows"""
    init: str | None = None
    """start from this checkpoint's weights and network shape (e.g. a behaviour-cloning checkpoint)"""
    resume: str | None = None
    """continue a run: its directory (``latest.pt``) or a checkpoint file"""
    ray: str | None = None
    """collect on Ray rollout actors: ``local`` (a local Ray instance) or a cluster address"""
    workers: int = 2
    """Ray rollout workers, each stepping ``towns`` towns"""
    device: str = "cpu"
    """device of the learner (``cpu`` or ``cuda``); rollouts always run on the CPU"""
    seed: int = 1
    """seed of the network, the minibatch order and the towns"""
    torch_threads: int = 1
    """torch CPU threads in the learner"""
    total_steps: int = 1_000_000
    """environment ticks to train for, summed over all towns"""
    max_seconds: float = 0.0
    """also stop after this much wall time (0: no limit); the learning rate then anneals by time or ticks,
    whichever is further along"""
    towns: int = 8
    """towns stepped together (per worker with Ray)"""
    env_workers: int = -1
    """worker processes stepping a share of the towns beside the learner's process (-1: one per spare CPU core,
    at most one per town; 0: every town in the learner's process)"""
    rollout_ticks: int = 1024
    """ticks each town runs between two updates (on average over the towns)"""
    learning_rate: float = 3e-4
    """Adam learning rate"""
    anneal_lr: bool = True
    """decay the learning rate linearly to 0 over the run"""
    gamma: float = 0.995
    """discount per tick (a transition of k ticks is discounted by gamma**k)"""
    gae_lambda: float = 0.95
    """GAE lambda, per decision"""
    minibatches: int = 4
    """minibatches per epoch"""
    update_epochs: int = 4
    """passes over each rollout"""
    norm_adv: bool = True
    """normalise advantages per minibatch"""
    clip_coef: float = 0.2
    """policy ratio clip"""
    clip_vloss: bool = False
    """clip the value loss around the old values"""
    ent_coef: float = 0.01
    """entropy bonus"""
    vf_coef: float = 0.5
    """value loss weight"""
    max_grad_norm: float = 0.5
    """gradient clipping norm"""
    target_kl: float | None = 0.03
    """stop the epochs of an update early past this approximate KL (None: never)"""
    reward_scale: float = 1.0
    """rewards are multiplied by this before advantages and value targets"""
    hidden: int = 128
    """width of the hidden layers"""
    lstm: bool = False
    """add a recurrent core (state kept across option switches, reset at arrivals)"""
    stay_bias: float | None = None
    """initial learned bias toward continuing the running option at a critical decision point (None: none)"""
    window_ticks: int = 0
    """ticks per town of one KPI window (curriculum bands, learning curves); 0: one in-sim day"""
    checkpoint_every: int = 20
    """updates between checkpoints"""
    best_weights: dict[str, float] = field(
        default_factory=lambda: {"self_sufficiency": 0.5, "need_ok_share": 0.25, "attendance": 0.25}
    )
    """window KPI -> weight of the score that picks ``best.pt`` (``--ppo best_weights=self_sufficiency:2,attendance:1``;
    only windows with no scripted agents are scored)"""
    best_windows: int = 2
    """KPI windows scored together for ``best.pt`` (their sums added up), so one lucky window does not win alone"""
    baselines: bool = True
    """measure the scripted and random policies for one window first (reference lines on the curves)"""
    anneal: bool = False
    """hand the agents over from the scripted routine while training (``imitation.anneal``: 80/20 scripted/learned
    down to 0 scripted one passing window at a time, frozen when a KPI drops more than 30% below scripted)"""
    final_eval: bool = True
    """score the final policy, the scripted and the random one on the fixed-seed suite (``evaluation.*``):
    ``DIR/scorecard.json``"""
    eval_days: float = 0.0
    """in-sim days per evaluation scenario (0: ``evaluation.days``)"""


# -- the loop -----------------------------------------------------------------------------------------------

Progress = Callable[[int, int, dict[str, Any]], None]


def train(args: PPOArgs, progress: Progress | None = None) -> dict[str, Any]:
    """Run PPO until ``args.total_steps`` env ticks; returns a summary (paths, steps, last window KPIs).

    Setup, the per-update logging, the KPI-window hooks (best.pt, curriculum, anneal) and checkpoints are
    :class:`~townlet.training.ppo_run.PPORun`'s; the update itself is :func:`~townlet.training.update.ppo_update`.
    """
    run = PPORun(args)  # resume, curriculum, towns, network, optimiser, best windows, logs, baselines, anneal
    # Everything built so far lives for the whole run: keep it out of the garbage collector's full passes,
    # each of which would otherwise stall rollouts for tens of milliseconds (see docs/architecture.md).
    gc.freeze()
    try:
        while (done := run.budget_used()) is not None:
            ro = run.collect(done)  # rollout_ticks ticks of every town, decisions at decision points
            row = run.learn(ro)  # one PPO update; the update's metrics row
            move_to, improved = run.close_windows(ro, row)  # best.pt, curriculum and anneal see each window
            run.log_update(row, move_to, improved)  # metrics line, best.pt, stage move, periodic checkpoint
            if progress is not None:
                progress(run.global_step - run.first_step, run.args.total_steps - run.first_step, row)
    finally:
        run.collector.close()
    return run.finish()  # final.pt, scorecards, learning curves, the summary
