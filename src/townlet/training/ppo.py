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

import dataclasses
import gc
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from townlet.config.loader import load_config
from townlet.policy.checkpoint import Checkpoint, CheckpointError, from_network, load, save
from townlet.policy.networks import NetworkSpec, OptionPolicyNet
from townlet.training.curriculum import Curriculum
from townlet.training.metrics import MetricsLog, plot_learning_curves, read_metrics
from townlet.training.rollout import Collector
from townlet.training.update import ppo_update
from townlet.training.windows import BestWindows, baseline_kpis, window_kpis


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
        default_factory=lambda: {"self_sufficiency": 0.5, "need_ok_share": 0.25, "attendance": 0.25})
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
    """Run PPO until ``args.total_steps`` env ticks; returns a summary (paths, steps, last window KPIs)."""
    started = time.perf_counter()
    resumed: Checkpoint | None = None
    if args.resume:
        resumed = load(resume_path(args.resume))
        args = _resumed_args(resumed, args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    torch.set_num_threads(max(args.torch_threads, 1))
    device = torch.device(args.device)
    rng = np.random.default_rng(args.seed)

    # The curriculum: the stage decides the feature flags of the towns.
    base = load_config(args.config, args.overrides)
    start_stage = args.stage or (resumed.meta.get("stage") if resumed is not None else None) or base.config.stage
    curriculum = Curriculum.from_config(base, start_stage, args.auto_curriculum) if start_stage else None
    global_step, update = 0, 0
    moved_by_hand = False
    if resumed is not None:
        global_step, update = resumed.step, int(resumed.meta.get("update", 0))
        if curriculum is not None and resumed.meta.get("curriculum"):
            curriculum.load_state_dict(resumed.meta["curriculum"])
            curriculum.auto = args.auto_curriculum
            if args.stage and args.stage != curriculum.stage:  # a manual move on resume
                curriculum.advance(global_step, args.stage)
                moved_by_hand = True

    def stage_overrides() -> list[str]:
        return [*args.overrides, f"stage={curriculum.stage}"] if curriculum else list(args.overrides)

    collector = _collector(args, stage_overrides(), seed=_town_seed(args, update))
    loaded = collector.loaded
    window_ticks = args.window_ticks or loaded.config.time.ticks_per_day
    if curriculum is not None and not curriculum.history:
        curriculum.history.append((global_step, curriculum.stage))

    # The network: fresh, from --init, or from the checkpoint being resumed.
    source = resumed or (load(args.init) if args.init else None)
    spec = source.spec if source else NetworkSpec.for_layout(collector.layout, collector.n_actions, args.hidden,
                                                              args.lstm, args.stay_bias)
    if spec.decisions != "points":  # an older per-tick policy as a warm start: from now on it decides at points
        spec = dataclasses.replace(spec, decisions="points")
    if spec.obs_dim != collector.layout.size or spec.n_actions != collector.n_actions:
        raise CheckpointError(f"checkpoint reads {spec.obs_dim} features / {spec.n_actions} actions but the towns "
                              f"give {collector.layout.size} / {collector.n_actions} ({collector.layout.variant})")
    net = OptionPolicyNet(spec).to(device)
    if source is not None:
        net.load_state_dict(source.state_dict)
    rollout_net = net if device.type == "cpu" else OptionPolicyNet(spec)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.learning_rate, eps=1e-5)
    if resumed is not None and "optimizer" in resumed.meta:
        optimizer.load_state_dict(resumed.meta["optimizer"])

    best = BestWindows(args.best_weights, args.best_windows, loaded.config.time.ticks_per_day)
    if resumed is not None and resumed.meta.get("best"):
        best.load_state_dict(resumed.meta["best"])
    metrics = MetricsLog(out / "metrics.jsonl")
    baselines: dict[str, dict[str, float]] = {}
    if resumed is None:
        metrics.write("start", args=asdict(args), config_id=loaded.config_id, variant=collector.layout.variant,
                      spec=asdict(spec), stage=curriculum.stage if curriculum else None,
                      init=args.init, init_hash=source.policy_hash if source else None)
        if curriculum is not None:
            metrics.write("stage", global_step=0, stage=curriculum.stage, reason="start")
        if args.baselines:
            # Windows over a whole episode (up to 5): a town's first morning alone flatters everybody.
            span = min(max(loaded.config.env.horizon, window_ticks), 5 * window_ticks)
            for policy in ("scripted", "random"):
                kpis = baseline_kpis(args.config, stage_overrides(), args.towns, span, args.seed + 7919, policy,
                                     window=window_ticks)
                baselines[policy] = kpis
                metrics.write("baseline", policy=policy, ticks=span, window=window_ticks, kpis=kpis)
    if moved_by_hand and curriculum is not None:
        metrics.write("stage", global_step=global_step, stage=curriculum.stage, reason="by hand")
    anneal = _anneal(args, loaded, resumed, baselines, stage_overrides(), window_ticks)
    if anneal is not None:
        collector.set_scripted_share(anneal.scripted_share)

    def checkpoint(name: str | None = None) -> Path:
        ck = from_network(net, collector.layout.variant, loaded.config_id, step=global_step, update=update,
                          stage=curriculum.stage if curriculum else None, args=asdict(args),
                          optimizer=optimizer.state_dict(),
                          curriculum=curriculum.state_dict() if curriculum else None, window=last_window,
                          anneal=anneal.to_dict() if anneal else None, best=best.state_dict())
        path = save(ck, out / "checkpoints" / f"update_{update:06d}.pt") if name is None else save(ck, out / name)
        shutil.copyfile(path, out / ".latest.tmp")
        (out / ".latest.tmp").replace(out / "latest.pt")
        return path

    last_window: dict[str, float] | None = None
    first_step = global_step
    # Everything built so far lives for the whole run: keep it out of the garbage collector's full passes,
    # each of which would otherwise stall rollouts for tens of milliseconds (see docs/architecture.md).
    gc.freeze()
    try:
        while global_step < args.total_steps:
            done = global_step / args.total_steps
            if args.max_seconds > 0:
                done = max(done, (time.perf_counter() - started) / args.max_seconds)
                if done >= 1.0:
                    break
            update += 1
            lr = args.learning_rate * (1.0 - done) if args.anneal_lr else args.learning_rate
            for group in optimizer.param_groups:
                group["lr"] = lr
            if rollout_net is not net:
                rollout_net.load_state_dict({k: v.cpu() for k, v in net.state_dict().items()})
            ro = collector.collect(rollout_net, args.rollout_ticks)
            global_step += ro.town_ticks
            t0 = time.perf_counter()
            stats = ppo_update(net, optimizer, ro, args, device, rng)
            learn_s = time.perf_counter() - t0
            row: dict[str, Any] = {
                "update": update, "global_step": global_step, "decisions": ro.size, "lr": lr,
                "stage": curriculum.stage if curriculum else None,
                "reward_mean": float(ro.rewards.sum() / max(ro.ticks.sum(), 1)),
                "ticks_per_decision": float(ro.ticks.mean()) if ro.size else None,
                "episodes": len(ro.episode_returns),
                "episode_return": float(np.mean(ro.episode_returns)) if ro.episode_returns else None,
                "collect_ticks_per_s": ro.town_ticks / ro.collect_s,
                "env_ticks_per_s": ro.town_ticks / max(ro.env_s, 1e-9),
                "collect_s": ro.collect_s, "policy_s": ro.policy_s, "learn_s": learn_s,
                "elapsed_s": time.perf_counter() - started,
                **stats,
            }
            move_to, improved = None, False
            for raw, at in zip(ro.windows, ro.window_ends, strict=True):  # windows that closed (a day each)
                last_window = window_kpis(raw, loaded.config.time.ticks_per_day)
                row.setdefault("windows", []).append(last_window)
                row.setdefault("window_steps", []).append(global_step - ro.town_ticks + at)
                row["window"] = last_window
                if collector.scripted_share == 0.0:  # a window of partly scripted agents says little of the policy
                    row["window_score"], better = best.observe(raw, global_step)
                    improved = improved or better
                if curriculum is not None and move_to is None:
                    move_to = curriculum.observe(last_window, global_step)
                if anneal is not None and not anneal.finished:
                    decision = anneal.observe(last_window)
                    collector.set_scripted_share(anneal.scripted_share)
                    metrics.write("anneal", global_step=global_step, decision=decision,
                                  scripted_share=anneal.scripted_share, reason=anneal.reason)
            row["scripted_share"] = collector.scripted_share
            metrics.write("update", **row)
            if improved:
                checkpoint("best.pt")
                metrics.write("best", global_step=global_step, update=update, score=best.score, kpis=best.kpis,
                              windows=len(best.recent), checkpoint=str(out / "best.pt"))
            if move_to is not None:
                metrics.write("stage", global_step=global_step, stage=move_to, reason="bands held")
                best.reset()  # best.pt is the best of the stage being trained
                collector.close()
                collector = _collector(args, stage_overrides(), seed=_town_seed(args, update))
                loaded = collector.loaded
                if anneal is not None:
                    collector.set_scripted_share(anneal.scripted_share)
            if update % args.checkpoint_every == 0:
                checkpoint()
            if progress is not None:
                progress(global_step - first_step, args.total_steps - first_step, row)
    finally:
        collector.close()
    final = checkpoint("final.pt")
    train_s = time.perf_counter() - started
    shares = _time_shares(out / "metrics.jsonl", first_step, train_s)
    best_path = out / "best.pt" if best.step is not None and (out / "best.pt").is_file() else None
    scorecards = final_scorecards(final, args, stage_overrides(), best_path) if args.final_eval else None
    if scorecards is not None:
        (out / "scorecard.json").write_text(json.dumps(scorecards, indent=2) + "\n", encoding="utf-8")
        metrics.write("final", global_step=global_step, scorecards=scorecards)
    metrics.close()
    png = plot_learning_curves(out / "metrics.jsonl", out / "learning_curves.png",
                               title=f"Townlet PPO - {collector.layout.variant}, config {loaded.config_id}")
    return {
        "out": str(out), "final": str(final), "metrics": str(out / "metrics.jsonl"), "curves": str(png),
        "global_step": global_step, "updates": update, "stage": curriculum.stage if curriculum else None,
        "policy_hash": load(final).policy_hash, "window": last_window, "train_seconds": round(train_s, 1),
        "ticks_per_s": round((global_step - first_step) / train_s, 1) if train_s > 0 else None, **shares,
        "seconds": round(time.perf_counter() - started, 1), "anneal": anneal.to_dict() if anneal else None,
        "best_checkpoint": str(best_path) if best_path else None, "best_score": best.score if best_path else None,
        "best_tick": best.step, "best_window": best.kpis, "scorecards": scorecards,
    }


def _time_shares(metrics: Path, first_step: int, train_s: float) -> dict[str, float]:
    """Shares of this invocation's wall time spent collecting (policy included), in the policy, and learning."""
    rows = [r for r in read_metrics(metrics) if r.get("kind") == "update" and r["global_step"] > first_step]
    total = max(train_s, 1e-9)
    return {"collect_share": round(sum(r["collect_s"] for r in rows) / total, 3),
            "policy_share": round(sum(r.get("policy_s", 0.0) for r in rows) / total, 3),
            "learn_share": round(sum(r["learn_s"] for r in rows) / total, 3)}


def final_scorecards(checkpoint: Path, args: PPOArgs, overrides: list[str],
                     best: Path | None = None) -> dict[str, Any]:
    """Fixed-seed evaluation scorecards of the trained policy, the scripted and the random policies.

    ``best`` (``best.pt``) is scored too, as ``best``, when given and not the same policy as ``checkpoint``.
    """
    from townlet.training.evaluation import evaluate

    days = args.eval_days or None
    policies: list[tuple[str, Any]] = [("ppo", checkpoint)]
    if best is not None and load(best).policy_hash != load(checkpoint).policy_hash:
        policies.append(("best", best))
    policies += [("scripted", "scripted"), ("random", "random")]
    return {name: evaluate(policy, args.config, overrides, stages=[None], days=days).scorecard
            for name, policy in policies}


def _anneal(args: PPOArgs, loaded: Any, resumed: Checkpoint | None, baselines: dict[str, dict[str, float]],
            overrides: list[str], window_ticks: int) -> Any:
    """The anneal schedule when asked for (restored on resume); None otherwise."""
    if not args.anneal:
        return None
    from townlet.training.anneal import AnnealSchedule

    cfg = loaded.config.imitation.anneal
    state = resumed.meta.get("anneal") if resumed is not None else None
    baseline = state["baseline"] if state else baselines.get("scripted") or baseline_kpis(
        args.config, overrides, args.towns, window_ticks, args.seed + 7919, "scripted")
    schedule = AnnealSchedule(cfg, baseline)
    if state:
        schedule.scripted_share = float(state["scripted_share"])
        schedule.frozen, schedule.completed, schedule.reason = state["frozen"], state["completed"], state["reason"]
    return schedule


def resume_path(target: str | Path) -> Path:
    """The checkpoint to resume from: ``DIR/latest.pt`` for a run directory, else the file itself."""
    path = Path(target)
    if path.is_dir():
        path = path / "latest.pt"
    if not path.is_file():
        raise CheckpointError(f"{path}: nothing to resume (no such checkpoint)")
    return path


def _resumed_args(checkpoint: Checkpoint, given: PPOArgs) -> PPOArgs:
    """The resumed run's own arguments, with this invocation's budget, place and hardware."""
    saved = checkpoint.meta.get("args")
    if not saved:
        raise CheckpointError("checkpoint has no training arguments: resume needs a checkpoint written by train")
    names = {f.name for f in dataclasses.fields(PPOArgs)}
    args = PPOArgs(**{k: v for k, v in saved.items() if k in names})
    keep = ("total_steps", "max_seconds", "device", "ray", "workers", "torch_threads", "auto_curriculum")
    out = given.out if given.out != PPOArgs.out else args.out
    if given.resume and Path(given.resume).is_dir():
        out = given.resume
    # The stage comes back from the checkpoint; a --stage given now moves the curriculum there by hand.
    return dataclasses.replace(args, out=out, resume=given.resume, init=None, stage=given.stage,
                               **{k: getattr(given, k) for k in keep})


def _town_seed(args: PPOArgs, update: int) -> int:
    """Seed of a fresh set of towns: new towns after a resume or a stage change, never a replay."""
    return args.seed * 1_000_003 + update * 7919


def env_workers(args: PPOArgs) -> int:
    """Worker processes for the in-process collector's batch (``env_workers``; -1: one per spare core)."""
    if args.env_workers >= 0:
        return min(args.env_workers, max(args.towns - 1, 0))
    return max(min((os.cpu_count() or 1) - 1, args.towns - 1), 0)


def _collector(args: PPOArgs, overrides: list[str], seed: int) -> Any:
    """In-process collector, or Ray rollout actors when ``args.ray`` is set."""
    if args.ray:
        from townlet.training.ray_rollouts import RayCollector

        return RayCollector(args.config, overrides, args.workers, args.towns, seed, args.gamma, address=args.ray,
                            window_ticks=args.window_ticks)
    return Collector(args.config, overrides, args.towns, seed, args.gamma, workers=env_workers(args),
                     window_ticks=args.window_ticks)
