"""``townlet train``: PPO over options with a progress bar; metrics, learning curves and checkpoints under DIR."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any, get_type_hints

from townlet.cli.extras import missing_extra

EXAMPLES = """examples:
  townlet train --steps 100000000 --out runs/ppo --ppo max_seconds=1200   # 20 minutes from scratch (the recipe)
  townlet train --steps 5000000 --out runs/m3 --stage M3 --no-advance     # lifecycle and perturbations on
  townlet train --steps 200000 --out runs/m0 --stage M0     # start the curriculum at M0; moves on by KPI bands
  townlet train --steps 500000 --out runs/bc --init bc/policy.pt   # warm start from behaviour cloning
  townlet train --steps 2000000 --resume runs/hybrid        # continue a run (to 2M ticks in total)
  townlet train --resume runs/m0 --stage M2 --steps 800000  # move the curriculum by hand, then go on
  townlet train --steps 1000000 --out runs/ray --ray local --workers 2   # rollout workers on a local Ray
  townlet train --steps 1000000 --out runs/ray --ray auto --workers 16   # ... on the Ray cluster of this node
  townlet train --variant full --steps 5000000 --out runs/full --ppo lstm=true   # CNN over the map, recurrent

Agents decide at decision points only (PPO over options as a semi-MDP). The run directory gets metrics.jsonl
(one JSON line per update), learning_curves.png, checkpoints/, latest.pt and final.pt; see docs/training.md.
"""


def register(sub: Any, formatter: Any) -> None:
    """Add the ``train`` subcommand."""
    from townlet.cli.main import add_config_arguments

    p = sub.add_parser(
        "train",
        help="train the option policy with PPO",
        formatter_class=formatter,
        description="Train one shared option policy with PPO over options as a semi-MDP, from "
        "scratch, over batched towns (PyTorch; CPU by default). Prints a JSON summary "
        "on stdout at the end.",
        epilog=EXAMPLES,
    )
    add_config_arguments(p)
    p.add_argument(
        "--steps",
        type=_positive,
        required=True,
        metavar="N",
        help="environment ticks to train for, summed over towns (with --resume: the new total)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="run directory (default runs/ppo; with --resume: the resumed run's directory)",
    )
    p.add_argument(
        "--variant",
        choices=("full", "hybrid", "compact"),
        default=None,
        help="observation variant (default: the config's features.observations)",
    )
    p.add_argument("--agents", type=_positive, default=None, metavar="N", help="agents per town")
    p.add_argument("--towns", type=_positive, default=None, metavar="N", help="towns per rollout worker (default 8)")
    p.add_argument(
        "--stage",
        default=None,
        metavar="NAME",
        help="curriculum stage to start at (or to move to on --resume), e.g. M0",
    )
    p.add_argument("--no-advance", action="store_true", help="stay in the stage: no automatic curriculum moves")
    p.add_argument(
        "--init", metavar="CHECKPOINT", default=None, help="start from a checkpoint's weights (e.g. behaviour cloning)"
    )
    p.add_argument(
        "--resume",
        metavar="DIR|CHECKPOINT",
        default=None,
        help="continue a run from DIR/latest.pt or a checkpoint file",
    )
    p.add_argument(
        "--ray",
        metavar="ADDRESS|local",
        default=None,
        help="collect rollouts on Ray actors: 'local' or a cluster address (e.g. auto, ray://head:10001)",
    )
    p.add_argument("--workers", type=_positive, default=None, metavar="N", help="Ray rollout workers (default 2)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="learner device (default cpu)")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="training seed (default 1)")
    p.add_argument(
        "--ppo",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set any PPO argument (repeatable), e.g. --ppo learning_rate=1e-4 --ppo lstm=true; "
        "names in docs/training.md",
    )
    p.add_argument("--json", action="store_true", help="no progress bar; only the JSON summary")
    p.set_defaults(handler=train_command)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def ppo_args(args: argparse.Namespace) -> Any:
    """The :class:`~townlet.training.ppo.PPOArgs` of a ``train`` command line."""
    from townlet.training.ppo import PPOArgs

    overrides = list(args.overrides)
    if args.variant:
        overrides.append(f"features.observations={args.variant}")
    if args.agents:
        overrides.append(f"population.agents={args.agents}")
    values: dict[str, Any] = {}
    hints = get_type_hints(PPOArgs)
    names = {f.name for f in dataclasses.fields(PPOArgs)}
    for item in args.ppo:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in names:
            raise ValueError(f"--ppo {item!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(names))}")
        values[key] = _typed(key, raw.strip(), hints[key])
    if "best_weights" in values:
        from townlet.training.windows import score_weights

        values["best_weights"] = score_weights(values["best_weights"])
    explicit = {
        "config": args.config,
        "overrides": overrides,
        "total_steps": args.steps,
        "stage": args.stage,
        "auto_curriculum": not args.no_advance,
        "init": args.init,
        "resume": args.resume,
        "ray": args.ray,
        "device": args.device,
    }
    for key, value in (("out", args.out), ("towns", args.towns), ("workers", args.workers), ("seed", args.seed)):
        if value is not None:
            explicit[key] = value
    return PPOArgs(**{**values, **explicit})


def _typed(key: str, raw: str, hint: Any) -> Any:
    text = str(hint)
    try:
        if text.startswith("dict"):  # name:number,name:number
            pairs = [item.partition(":") for item in raw.split(",") if item.strip()]
            if not pairs or any(not sep for _, sep, _ in pairs):
                raise ValueError(raw)
            return {name.strip(): float(value) for name, _, value in pairs}
        if "bool" in text:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1", "yes", "on")
        if raw.lower() in ("none", "null") and "None" in text:
            return None
        if "float" in text:
            return float(raw)
        if "int" in text:
            return int(raw)
    except ValueError:
        raise ValueError(f"--ppo {key}={raw}: expected {text}") from None
    return raw


def train_command(args: argparse.Namespace) -> int:
    """Run PPO with a progress bar on stderr; print the summary JSON on stdout."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    needs = ("torch", "matplotlib", *(("ray",) if args.ray else ()))  # (the learning-curve PNG: matplotlib)
    if (code := missing_extra("train", "train", needs)) is not None:
        return code
    from townlet.policy.checkpoint import CheckpointError
    from townlet.training.ppo import train

    try:
        ppo = ppo_args(args)
    except ValueError as exc:
        print(f"townlet train: error: {exc}", file=sys.stderr)
        return 2
    if ppo.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("townlet train: error: --device cuda but no CUDA device is available", file=sys.stderr)
            return 2
    from townlet.config.loader import load_config
    from townlet.logs import configure_logging

    loaded = load_config(args.config, list(args.overrides))
    configure_logging(loaded.config.logging.format, loaded.config.logging.level)
    watch = TrainingWatch(loaded, ppo.out)
    err = Console(stderr=True)
    with Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        console=err,
        disable=args.json,
        transient=False,
    ) as bar:
        task = bar.add_task("train", total=ppo.total_steps, info="")

        def progress(done: int, total: int, row: dict[str, Any]) -> None:
            window = row.get("window") or {}
            info = f"{row['collect_ticks_per_s']:.0f} ticks/s  reward {row['reward_mean']:+.4f}"
            if window:
                info += f"  attendance {window['attendance']:.2f}  self-sufficiency {window['self_sufficiency']:.2f}"
            if row.get("stage"):
                info += f"  stage {row['stage']}"
            bar.update(task, total=total, completed=done, info=info)
            watch.row(row)

        try:
            summary = train(ppo, progress=progress)
        except CheckpointError as exc:
            print(f"townlet train: error: {exc}", file=sys.stderr)
            return 2
    watch.done(summary)
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


class TrainingWatch:
    """Structured log lines of a training run: ``stability.window`` per KPI window, ``promotion.candidate`` at the end.

    Both carry ``promotion_state``: the policy registry's release and pin (when the registry exists), and the
    run's candidate (its ``--out`` directory, then the final checkpoint's hash).
    """

    def __init__(self, loaded: Any, out: Any) -> None:
        import logging

        self.loaded = loaded
        self.out = str(out)
        self.stability = logging.getLogger("townlet.stability")
        self.promotion = logging.getLogger("townlet.promotion")
        self.windows = 0
        self.baseline: dict[str, float] | None = None

    def state(self, candidate: str) -> dict[str, Any]:
        """``promotion_state``: the registry's release and pin, and this run's candidate."""
        from townlet.training.policies import open_registry

        registry = open_registry(self.loaded)
        if registry is None:
            return {"release": None, "pinned": None, "registry": None, "candidate": candidate}
        with registry:
            return registry.state(registry=registry.path, candidate=candidate)

    def row(self, row: dict[str, Any]) -> None:
        """Log a closed training window (rows without one are skipped)."""
        from townlet.logs import log_event
        from townlet.training.stability import training_canaries

        window = row.get("window")
        if not window:
            return
        if self.baseline is None:
            self.baseline = self._scripted_baseline()
        canaries = training_canaries(window, self.loaded.config.stability, self.baseline)
        log_event(
            self.stability,
            "stability.window",
            None,
            label="train",
            window=self.windows,
            global_step=row.get("global_step"),
            stage=row.get("stage"),
            passed="fired" not in canaries.values(),
            canaries=canaries,
            **window,
            promotion_state=self.state(self.out),
        )
        self.windows += 1

    def _scripted_baseline(self) -> dict[str, float]:
        """The scripted routine's window KPIs the trainer measured first (``metrics.jsonl``; empty when not)."""
        from pathlib import Path

        try:
            lines = (Path(self.out) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        except OSError:
            return {}
        for line in lines:
            record = json.loads(line)
            if record.get("kind") == "baseline" and record.get("policy") == "scripted":
                return dict(record.get("kpis") or {})
        return {}

    def done(self, summary: dict[str, Any]) -> None:
        """Log the run's final checkpoint as a candidate for the registry."""
        from townlet.logs import log_event

        final = summary.get("policy_hash")
        log_event(
            self.promotion,
            "promotion.candidate",
            None,
            policy=final,
            checkpoint=summary.get("final"),
            best=summary.get("best_checkpoint"),
            windows=self.windows,
            next=f"townlet promote register {summary.get('final')}",
            promotion_state=self.state(final or ""),
        )
