"""Training metrics: one JSON line per update in ``metrics.jsonl``, and the learning-curve PNG drawn from it.

Every line has ``kind``: ``"update"`` (losses, speed, reward; a ``window`` object when a KPI window closed
with that update), ``"stage"`` (the curriculum moved), ``"baseline"`` (KPIs of the scripted and random
policies on the same towns, drawn as reference lines), ``"best"`` (a new best window score: ``best.pt`` was
saved) or ``"final"`` (the closing scorecard).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

CURVES = (
    ("attendance", "attendance (window)"),
    ("self_sufficiency", "self-sufficiency (window)"),
    ("need_ok_share", "need-ok share (window)"),
    ("reward", "reward per agent-tick (window)"),
)


class MetricsLog:
    """Appends JSON lines to ``path`` (a resumed run keeps writing after the lines already there)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a", encoding="utf-8")

    def write(self, kind: str, **fields: Any) -> None:
        """One line: ``{"kind": kind, **fields}``; flushed so a crash loses nothing."""
        self._handle.write(json.dumps({"kind": kind, **fields}, default=_plain) + "\n")
        self._handle.flush()

    def close(self) -> None:
        """Close the file."""
        self._handle.close()


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Every line of a ``metrics.jsonl`` (a torn last line from a crash is skipped)."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def window_series(rows: list[dict[str, Any]]) -> list[tuple[int, dict[str, float]]]:
    """``(global_step, kpis)`` of every KPI window in a run's metrics, in order (several may close in one update)."""
    out: list[tuple[int, dict[str, float]]] = []
    for r in rows:
        if r.get("kind") != "update":
            continue
        if r.get("windows"):
            out += list(zip(r.get("window_steps") or [r["global_step"]] * len(r["windows"]), r["windows"], strict=True))
        elif r.get("window"):
            out.append((r["global_step"], r["window"]))
    return out


def plot_learning_curves(metrics: str | Path, out: str | Path, title: str = "Townlet PPO") -> Path:
    """Draw the window KPIs, the losses and the entropy against env ticks into a PNG.

    Scripted and random baselines (``baseline`` lines) are dashed references; stage changes are vertical lines;
    the step of the last ``best`` line (``best.pt``) is a dotted gold line on the KPI plots.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics)
    updates = [r for r in rows if r.get("kind") == "update"]
    windows = window_series(rows)
    baselines = {r["policy"]: r["kpis"] for r in rows if r.get("kind") == "baseline"}
    stages = [(r["global_step"], r["stage"]) for r in rows if r.get("kind") == "stage"]
    bests = [r["global_step"] for r in rows if r.get("kind") == "best"]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8), constrained_layout=True)
    fig.suptitle(title)
    for ax, (key, label) in zip(axes.flat[:4], CURVES, strict=True):
        xs = [s for s, w in windows if key in w]
        ax.plot(xs, [w[key] for s, w in windows if key in w], color="tab:blue", label="PPO")
        for name, color in (("scripted", "tab:green"), ("random", "tab:red")):
            if name in baselines and key in baselines[name]:
                ax.axhline(baselines[name][key], color=color, linestyle="--", label=name)
        if bests:
            ax.axvline(bests[-1], color="goldenrod", linestyle=":", label="best.pt")
        ax.set_title(label)
        ax.set_xlabel("env ticks")
        if key != "reward":
            ax.set_ylim(-0.03, 1.05)
    _curve(axes.flat[4], updates, (("policy_loss", "policy loss"), ("value_loss", "value loss")), "losses")
    _curve(
        axes.flat[5],
        updates,
        (("entropy", "entropy"), ("approx_kl", "approx KL x 100")),
        "policy",
        scale={"approx_kl": 100.0},
    )
    for ax in axes.flat:
        for step, name in stages:
            ax.axvline(step, color="grey", linewidth=0.8)
            ax.annotate(name, (step, 1.0), xycoords=("data", "axes fraction"), fontsize=7, va="top")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def _curve(
    ax: Any,
    updates: list[dict[str, Any]],
    keys: tuple[tuple[str, str], ...],
    title: str,
    scale: dict[str, float] | None = None,
) -> None:
    for key, label in keys:
        pts = [
            (u["global_step"], u[key] * (scale or {}).get(key, 1.0))
            for u in updates
            if isinstance(u.get(key), int | float) and math.isfinite(u[key])
        ]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label)
    ax.set_title(title)
    ax.set_xlabel("env ticks")
