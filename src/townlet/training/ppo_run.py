"""One PPO run's state between updates: setup (resume, curriculum, towns, network), logging, window hooks.

:func:`townlet.training.ppo.train` reads top to bottom: build a :class:`PPORun`, then collect, learn, close the
KPI windows and log until the budget is spent, then finish. Everything those steps need lives here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from townlet.training.ppo import PPOArgs


class PPORun:
    """A training run between updates: towns, network, optimiser, curriculum, anneal, best windows and logs.

    Args:
        args: The run's arguments (a ``resume`` replaces them with the resumed run's own, see
            :func:`_resumed_args`).
    """

    def __init__(self, args: PPOArgs) -> None:
        self.started = time.perf_counter()
        self.resumed: Checkpoint | None = None
        if args.resume:
            self.resumed = load(resume_path(args.resume))
            args = _resumed_args(self.resumed, args)
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(args.seed)
        torch.set_num_threads(max(args.torch_threads, 1))
        self.device = torch.device(args.device)
        self.rng = np.random.default_rng(args.seed)
        moved_by_hand = self._curriculum()
        self.collector = _collector(args, self.stage_overrides(), seed=_town_seed(args, self.update))
        self.loaded = self.collector.loaded
        self.window_ticks = args.window_ticks or self.loaded.config.time.ticks_per_day
        if self.curriculum is not None and not self.curriculum.history:
            self.curriculum.history.append((self.global_step, self.curriculum.stage))
        self._network()
        self.best = BestWindows(args.best_weights, args.best_windows, self.loaded.config.time.ticks_per_day)
        if self.resumed is not None and self.resumed.meta.get("best"):
            self.best.load_state_dict(self.resumed.meta["best"])
        self.metrics = MetricsLog(self.out / "metrics.jsonl")
        baselines = self._log_start() if self.resumed is None else {}
        if moved_by_hand and self.curriculum is not None:
            self.metrics.write("stage", global_step=self.global_step, stage=self.curriculum.stage, reason="by hand")
        self.anneal = _anneal(args, self.loaded, self.resumed, baselines, self.stage_overrides(), self.window_ticks)
        if self.anneal is not None:
            self.collector.set_scripted_share(self.anneal.scripted_share)
        self.last_window: dict[str, float] | None = None
        self.first_step = self.global_step
        self.lr = args.learning_rate

    # -- setup ----------------------------------------------------------------------------------------------

    def _curriculum(self) -> bool:
        """The curriculum (the stage decides the towns' feature flags) and the step counters; True on a manual move."""
        args, resumed = self.args, self.resumed
        base = load_config(args.config, args.overrides)
        start_stage = args.stage or (resumed.meta.get("stage") if resumed is not None else None) or base.config.stage
        self.curriculum = Curriculum.from_config(base, start_stage, args.auto_curriculum) if start_stage else None
        self.global_step, self.update = 0, 0
        moved_by_hand = False
        if resumed is not None:
            self.global_step, self.update = resumed.step, int(resumed.meta.get("update", 0))
            curriculum = self.curriculum
            if curriculum is not None and resumed.meta.get("curriculum"):
                curriculum.load_state_dict(resumed.meta["curriculum"])
                curriculum.auto = args.auto_curriculum
                if args.stage and args.stage != curriculum.stage:  # a manual move on resume
                    curriculum.advance(self.global_step, args.stage)
                    moved_by_hand = True
        return moved_by_hand

    def stage_overrides(self) -> list[str]:
        """The run's config overrides plus the current stage."""
        args = self.args
        return [*args.overrides, f"stage={self.curriculum.stage}"] if self.curriculum else list(args.overrides)

    def _network(self) -> None:
        """The network: fresh, from ``--init``, or from the checkpoint being resumed; and its optimiser."""
        args, layout, n_actions = self.args, self.collector.layout, self.collector.n_actions
        self.source = self.resumed or (load(args.init) if args.init else None)
        spec = (
            self.source.spec
            if self.source
            else NetworkSpec.for_layout(layout, n_actions, args.hidden, args.lstm, args.stay_bias)
        )
        if spec.decisions != "points":  # an older per-tick policy as a warm start: from now on it decides at points
            spec = dataclasses.replace(spec, decisions="points")
        if spec.obs_dim != layout.size or spec.n_actions != n_actions:
            raise CheckpointError(
                f"checkpoint reads {spec.obs_dim} features / {spec.n_actions} actions but the towns "
                f"give {layout.size} / {n_actions} ({layout.variant})"
            )
        self.spec = spec
        self.net = OptionPolicyNet(spec).to(self.device)
        if self.source is not None:
            self.net.load_state_dict(self.source.state_dict)
        self.rollout_net = self.net if self.device.type == "cpu" else OptionPolicyNet(spec)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=args.learning_rate, eps=1e-5)
        if self.resumed is not None and "optimizer" in self.resumed.meta:
            self.optimizer.load_state_dict(self.resumed.meta["optimizer"])

    def _log_start(self) -> dict[str, dict[str, float]]:
        """A fresh run's first lines (start, stage, baselines); returns the baselines' KPIs by policy."""
        args, metrics, curriculum, source = self.args, self.metrics, self.curriculum, self.source
        metrics.write(
            "start",
            args=asdict(args),
            config_id=self.loaded.config_id,
            variant=self.collector.layout.variant,
            spec=asdict(self.spec),
            stage=curriculum.stage if curriculum else None,
            init=args.init,
            init_hash=source.policy_hash if source else None,
        )
        if curriculum is not None:
            metrics.write("stage", global_step=0, stage=curriculum.stage, reason="start")
        baselines: dict[str, dict[str, float]] = {}
        if args.baselines:
            # Windows over a whole episode (up to 5): a town's first morning alone flatters everybody.
            window_ticks = self.window_ticks
            span = min(max(self.loaded.config.env.horizon, window_ticks), 5 * window_ticks)
            for policy in ("scripted", "random"):
                kpis = baseline_kpis(
                    args.config, self.stage_overrides(), args.towns, span, args.seed + 7919, policy, window=window_ticks
                )
                baselines[policy] = kpis
                metrics.write("baseline", policy=policy, ticks=span, window=window_ticks, kpis=kpis)
        return baselines

    # -- one update -----------------------------------------------------------------------------------------

    def budget_used(self) -> float | None:
        """Share of the budget spent (steps, or wall time under ``max_seconds``); None once it is all spent."""
        args = self.args
        if self.global_step >= args.total_steps:
            return None
        done = self.global_step / args.total_steps
        if args.max_seconds > 0:
            done = max(done, (time.perf_counter() - self.started) / args.max_seconds)
            if done >= 1.0:
                return None
        return done

    def collect(self, done: float) -> Any:
        """Start the next update (learning rate annealed by ``done``) and collect its rollout."""
        args = self.args
        self.update += 1
        self.lr = args.learning_rate * (1.0 - done) if args.anneal_lr else args.learning_rate
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        if self.rollout_net is not self.net:
            self.rollout_net.load_state_dict({k: v.cpu() for k, v in self.net.state_dict().items()})
        ro = self.collector.collect(self.rollout_net, args.rollout_ticks)
        self.global_step += ro.town_ticks
        return ro

    def learn(self, ro: Any) -> dict[str, Any]:
        """One PPO update on the rollout; returns the update's metrics row."""
        t0 = time.perf_counter()
        stats = ppo_update(self.net, self.optimizer, ro, self.args, self.device, self.rng)
        learn_s = time.perf_counter() - t0
        return {
            "update": self.update,
            "global_step": self.global_step,
            "decisions": ro.size,
            "lr": self.lr,
            "stage": self.curriculum.stage if self.curriculum else None,
            "reward_mean": float(ro.rewards.sum() / max(ro.ticks.sum(), 1)),
            "ticks_per_decision": float(ro.ticks.mean()) if ro.size else None,
            "episodes": len(ro.episode_returns),
            "episode_return": float(np.mean(ro.episode_returns)) if ro.episode_returns else None,
            "collect_ticks_per_s": ro.town_ticks / ro.collect_s,
            "env_ticks_per_s": ro.town_ticks / max(ro.env_s, 1e-9),
            "collect_s": ro.collect_s,
            "policy_s": ro.policy_s,
            "learn_s": learn_s,
            "elapsed_s": time.perf_counter() - self.started,
            **stats,
        }

    def close_windows(self, ro: Any, row: dict[str, Any]) -> tuple[str | None, bool]:
        """Show each KPI window that closed (a day each) to best.pt, the curriculum and the anneal.

        Returns the stage to move to (or None) and whether best.pt improved; adds the windows to ``row``.
        """
        move_to, improved = None, False
        tpd = self.loaded.config.time.ticks_per_day
        for raw, at in zip(ro.windows, ro.window_ends, strict=True):
            self.last_window = window = window_kpis(raw, tpd)
            row.setdefault("windows", []).append(window)
            row.setdefault("window_steps", []).append(self.global_step - ro.town_ticks + at)
            row["window"] = window
            if self.collector.scripted_share == 0.0:  # a window of partly scripted agents says little of the policy
                row["window_score"], better = self.best.observe(raw, self.global_step)
                improved = improved or better
            if self.curriculum is not None and move_to is None:
                move_to = self.curriculum.observe(window, self.global_step)
            anneal = self.anneal
            if anneal is not None and not anneal.finished:
                decision = anneal.observe(window)
                self.collector.set_scripted_share(anneal.scripted_share)
                self.metrics.write(
                    "anneal",
                    global_step=self.global_step,
                    decision=decision,
                    scripted_share=anneal.scripted_share,
                    reason=anneal.reason,
                )
        row["scripted_share"] = self.collector.scripted_share
        return move_to, improved

    def log_update(self, row: dict[str, Any], move_to: str | None, improved: bool) -> None:
        """Write the update's line; save best.pt, move the curriculum, checkpoint every ``checkpoint_every``."""
        metrics, best = self.metrics, self.best
        metrics.write("update", **row)
        if improved:
            self.checkpoint("best.pt")
            metrics.write(
                "best",
                global_step=self.global_step,
                update=self.update,
                score=best.score,
                kpis=best.kpis,
                windows=len(best.recent),
                checkpoint=str(self.out / "best.pt"),
            )
        if move_to is not None:
            metrics.write("stage", global_step=self.global_step, stage=move_to, reason="bands held")
            best.reset()  # best.pt is the best of the stage being trained
            self.collector.close()
            self.collector = _collector(self.args, self.stage_overrides(), seed=_town_seed(self.args, self.update))
            self.loaded = self.collector.loaded
            if self.anneal is not None:
                self.collector.set_scripted_share(self.anneal.scripted_share)
        if self.update % self.args.checkpoint_every == 0:
            self.checkpoint()

    def checkpoint(self, name: str | None = None) -> Path:
        """Save the policy and all ``--resume`` needs (``checkpoints/update_N.pt`` or ``name``), and latest.pt."""
        curriculum, anneal, out = self.curriculum, self.anneal, self.out
        ck = from_network(
            self.net,
            self.collector.layout.variant,
            self.loaded.config_id,
            step=self.global_step,
            update=self.update,
            stage=curriculum.stage if curriculum else None,
            args=asdict(self.args),
            optimizer=self.optimizer.state_dict(),
            curriculum=curriculum.state_dict() if curriculum else None,
            window=self.last_window,
            anneal=anneal.to_dict() if anneal else None,
            best=self.best.state_dict(),
        )
        path = save(ck, out / "checkpoints" / f"update_{self.update:06d}.pt") if name is None else save(ck, out / name)
        shutil.copyfile(path, out / ".latest.tmp")
        (out / ".latest.tmp").replace(out / "latest.pt")
        return path

    # -- the end --------------------------------------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        """final.pt, the fixed-seed scorecards, the learning curves; returns the run's summary."""
        args, out, best, metrics = self.args, self.out, self.best, self.metrics
        final = self.checkpoint("final.pt")
        train_s = time.perf_counter() - self.started
        shares = _time_shares(out / "metrics.jsonl", self.first_step, train_s)
        best_path = out / "best.pt" if best.step is not None and (out / "best.pt").is_file() else None
        scorecards = final_scorecards(final, args, self.stage_overrides(), best_path) if args.final_eval else None
        if scorecards is not None:
            (out / "scorecard.json").write_text(json.dumps(scorecards, indent=2) + "\n", encoding="utf-8")
            metrics.write("final", global_step=self.global_step, scorecards=scorecards)
        metrics.close()
        title = f"Townlet PPO - {self.collector.layout.variant}, config {self.loaded.config_id}"
        png = plot_learning_curves(out / "metrics.jsonl", out / "learning_curves.png", title=title)
        anneal, curriculum = self.anneal, self.curriculum
        return {
            "out": str(out),
            "final": str(final),
            "metrics": str(out / "metrics.jsonl"),
            "curves": str(png),
            "global_step": self.global_step,
            "updates": self.update,
            "stage": curriculum.stage if curriculum else None,
            "policy_hash": load(final).policy_hash,
            "window": self.last_window,
            "train_seconds": round(train_s, 1),
            "ticks_per_s": round((self.global_step - self.first_step) / train_s, 1) if train_s > 0 else None,
            **shares,
            "seconds": round(time.perf_counter() - self.started, 1),
            "anneal": anneal.to_dict() if anneal else None,
            "best_checkpoint": str(best_path) if best_path else None,
            "best_score": best.score if best_path else None,
            "best_tick": best.step,
            "best_window": best.kpis,
            "scorecards": scorecards,
        }


def _time_shares(metrics: Path, first_step: int, train_s: float) -> dict[str, float]:
    """Shares of this invocation's wall time spent collecting (policy included), in the policy, and learning."""
    rows = [r for r in read_metrics(metrics) if r.get("kind") == "update" and r["global_step"] > first_step]
    total = max(train_s, 1e-9)
    return {
        "collect_share": round(sum(r["collect_s"] for r in rows) / total, 3),
        "policy_share": round(sum(r.get("policy_s", 0.0) for r in rows) / total, 3),
        "learn_share": round(sum(r["learn_s"] for r in rows) / total, 3),
    }


def final_scorecards(checkpoint: Path, args: PPOArgs, overrides: list[str], best: Path | None = None) -> dict[str, Any]:
    """Fixed-seed evaluation scorecards of the trained policy, the scripted and the random policies.

    ``best`` (``best.pt``) is scored too, as ``best``, when given and not the same policy as ``checkpoint``.
    """
    from townlet.training.evaluation import evaluate

    days = args.eval_days or None
    policies: list[tuple[str, Any]] = [("ppo", checkpoint)]
    if best is not None and load(best).policy_hash != load(checkpoint).policy_hash:
        policies.append(("best", best))
    policies += [("scripted", "scripted"), ("random", "random")]
    return {
        name: evaluate(policy, args.config, overrides, stages=[None], days=days).scorecard for name, policy in policies
    }


def _anneal(
    args: PPOArgs,
    loaded: Any,
    resumed: Checkpoint | None,
    baselines: dict[str, dict[str, float]],
    overrides: list[str],
    window_ticks: int,
) -> Any:
    """The anneal schedule when asked for (restored on resume); None otherwise."""
    if not args.anneal:
        return None
    from townlet.training.anneal import AnnealSchedule

    cfg = loaded.config.imitation.anneal
    state = resumed.meta.get("anneal") if resumed is not None else None
    baseline = (
        state["baseline"]
        if state
        else baselines.get("scripted")
        or baseline_kpis(args.config, overrides, args.towns, window_ticks, args.seed + 7919, "scripted")
    )
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
    from townlet.training.ppo import PPOArgs  # the arguments' module imports this one

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
    return dataclasses.replace(
        args, out=out, resume=given.resume, init=None, stage=given.stage, **{k: getattr(given, k) for k in keep}
    )


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

        return RayCollector(
            args.config,
            overrides,
            args.workers,
            args.towns,
            seed,
            args.gamma,
            address=args.ray,
            window_ticks=args.window_ticks,
        )
    return Collector(
        args.config, overrides, args.towns, seed, args.gamma, workers=env_workers(args), window_ticks=args.window_ticks
    )
