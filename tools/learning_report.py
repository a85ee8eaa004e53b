"""Report training runs: scorecards of final.pt and best.pt, speed, and the stability check of each run.

Reads run directories written by ``townlet train`` (``metrics.jsonl``; ``eval5_final.json`` /
``eval5_best.json`` from ``townlet evaluate --checkpoint DIR/{final,best}.pt --days 5 --json``, else the
run's own ``scorecard.json``; the ``townlet train --json`` summary as ``DIR/summary.json`` or
``DIR.summary.json`` beside it) and prints Markdown:

- one scorecard row per run and checkpoint (final, best), beside any ``--card LABEL=FILE`` (the scripted and
  random baselines, a BC clone: ``townlet evaluate ... --json`` output), with exits per agent-day;
- the issue-15 targets per final policy: attendance >= 0.95, 0 collapses, need_ok_share >= 0.98,
  self_sufficiency >= the scripted routine's (``--card scripted=FILE``);
- speed: env ticks, train seconds, town-ticks per second (global_step / train_seconds), the collection,
  policy and update shares of wall time, and the ratio to ``--base DIR`` (a run of the code before);
- stability: final vs best.pt self_sufficiency (within ``--drift`` 0.05?), the first training KPI window that
  passes the targets, and how many windows after it fall below half the running best self_sufficiency.

    python tools/learning_report.py runs/accept/seed1 runs/accept/seed2 --base runs/accept/base_tp5 \\
        --card scripted=runs/eval_scripted.json --card random=runs/eval_random.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from townlet.training.metrics import read_metrics, window_series

KEYS = ("attendance", "lateness", "collapses", "need_ok_share", "self_sufficiency", "reward_mean")


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file's object, or None when it is missing, empty or unreadable (a run still going)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def summary_of(run: Path) -> dict[str, Any]:
    """The ``townlet train --json`` summary of a run (empty when the run has not finished)."""
    return read_json(run / "summary.json") or read_json(run.parent / f"{run.name}.summary.json") or {}


def card_of(run: Path, which: str) -> dict[str, Any] | None:
    """The scorecard of ``final`` or ``best``: the 5-day evaluation when present, else the run's own."""
    card = read_json(run / f"eval5_{which}.json")
    if card is None:
        own = read_json(run / "scorecard.json") or {}
        card = own.get("ppo" if which == "final" else "best")
    return card


def targets(card: dict[str, Any], scripted_ss: float | None) -> list[str]:
    """The issue-15 targets a final scorecard misses (empty: all met)."""
    missed = []
    if card["attendance"] < 0.95:
        missed.append("attendance")
    if card["collapses"] > 0:
        missed.append("collapses")
    if card["need_ok_share"] < 0.98:
        missed.append("need_ok")
    if scripted_ss is not None and card["self_sufficiency"] < scripted_ss:
        missed.append("self_sufficiency")
    return missed


def passes(window: dict[str, float], scripted_ss: float) -> bool:
    """Whether a training KPI window meets the targets."""
    return (
        window["attendance"] >= 0.95
        and window["collapses"] == 0
        and window["need_ok_share"] >= 0.98
        and window["self_sufficiency"] >= scripted_ss
    )


def stability(rows: list[dict[str, Any]], scripted_ss: float) -> dict[str, Any]:
    """First passing window, then the windows below half the running best self_sufficiency."""
    series = window_series(rows)
    first = None
    best = 0.0
    lowest: float | None = None
    below: list[tuple[int, float]] = []
    for step, window in series:
        if first is None and passes(window, scripted_ss):
            first = step
        if first is None:
            continue
        ss = window["self_sufficiency"]
        best = max(best, ss)
        lowest = ss if lowest is None else min(lowest, ss)
        if ss < 0.5 * best:
            below.append((step, ss))
    return {"windows": len(series), "first_pass": first, "min_after": lowest, "best": best, "below_half": below}


def speed(run: Path, summary: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Ticks, seconds, ticks per second and time shares (from the metrics when the summary lacks them)."""
    updates = [r for r in rows if r.get("kind") == "update"]
    steps = summary.get("global_step") or (updates[-1]["global_step"] if updates else 0)
    seconds = summary.get("train_seconds") or (updates[-1].get("elapsed_s") if updates else None)
    out: dict[str, Any] = {
        "ticks": steps,
        "seconds": seconds,
        "ticks_per_s": steps / seconds if seconds else None,
        "finished": bool(summary),
    }
    for share, key in (("collect_share", "collect_s"), ("policy_share", "policy_s"), ("learn_share", "learn_s")):
        value = summary.get(share)
        if value is None and seconds:
            value = sum(r.get(key, 0.0) for r in updates) / seconds
        out[share] = value
    return out


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def card_row(label: str, card: dict[str, Any] | None) -> str:
    """One Markdown scorecard row."""
    if card is None:
        return f"| {label} | pending |" + " |" * len(KEYS)
    days = card.get("agent_days") or 0
    exits = f"{card.get('exits', 0)} ({card.get('exits', 0) / days:.3f}/agent-day)" if days else "—"
    return "| " + " | ".join([label, *(fmt(card.get(k), 4 if k == "reward_mean" else 3) for k in KEYS), exits]) + " |"


def report(runs: list[Path], cards: dict[str, Path], base: Path | None, drift: float) -> str:
    """The whole Markdown report."""
    extra = {label: read_json(path) for label, path in cards.items()}
    scripted_ss = (extra.get("scripted") or {}).get("self_sufficiency")
    lines = [
        "## Scorecards (greedy, fixed-seed suite)",
        "",
        "| policy | " + " | ".join(KEYS) + " | exits |",
        "|---" * (len(KEYS) + 2) + "|",
    ]
    lines += [card_row(label, card) for label, card in extra.items()]
    for run in runs:
        for which in ("final", "best"):
            lines.append(card_row(f"{run.name} {which}", card_of(run, which)))
    base_tps = None
    if base is not None:
        base_tps = speed(base, summary_of(base), read_metrics(base / "metrics.jsonl") if base.exists() else [])
        base_tps = base_tps["ticks_per_s"]
    lines += [
        "",
        "## Speed and stability",
        "",
        "| run | ticks | train s | ticks/s | × base | collect | policy | update | final−best SS | "
        "first passing window | windows after it below ½ best | stable | targets missed (final) |",
        "|---" * 13 + "|",
    ]
    for run in runs:
        summary = summary_of(run)
        rows = read_metrics(run / "metrics.jsonl") if (run / "metrics.jsonl").exists() else []
        sp = speed(run, summary, rows)
        final, best = card_of(run, "final"), card_of(run, "best")
        reference = scripted_ss if scripted_ss is not None else _baseline_ss(rows)
        st = stability(rows, reference) if rows and reference is not None else None
        delta = final["self_sufficiency"] - best["self_sufficiency"] if final and best else None
        stable = None
        if st is not None and delta is not None and sp["finished"]:
            stable = "yes" if abs(delta) <= drift and not st["below_half"] else "no"
        ratio = sp["ticks_per_s"] / base_tps if sp["ticks_per_s"] and base_tps else None
        label = run.name if sp["finished"] else f"{run.name} (running)"
        lines.append(
            "| "
            + " | ".join(
                [
                    label,
                    fmt(sp["ticks"]),
                    fmt(sp["seconds"], 0),
                    fmt(sp["ticks_per_s"], 0),
                    fmt(ratio, 2),
                    fmt(sp["collect_share"]),
                    fmt(sp["policy_share"]),
                    fmt(sp["learn_share"]),
                    fmt(delta),
                    ("none" if st["first_pass"] is None else fmt(st["first_pass"])) if st else "—",
                    f"{len(st['below_half'])} of {st['windows']}" if st else "—",
                    stable or "—",
                    (", ".join(targets(final, scripted_ss)) or "none") if final else "pending",
                ]
            )
            + " |"
        )
    if base_tps is not None:
        lines += ["", f"Base ({base}): {base_tps:.0f} town-ticks/s."]
    lines += [
        "",
        f"Stable: |final − best.pt| self_sufficiency ≤ {drift} and no window after the first passing one "
        "below half the running best. A passing window: attendance ≥ 0.95, no collapse, need-ok ≥ 0.98, "
        f"self-sufficiency ≥ the scripted routine's ({fmt(scripted_ss)} on its scorecard, else its "
        "training baseline).",
    ]
    return "\n".join(lines) + "\n"


def _baseline_ss(rows: list[dict[str, Any]]) -> float | None:
    """The scripted baseline's self_sufficiency written at the start of a run, if any."""
    for r in rows:
        if r.get("kind") == "baseline" and r.get("policy") == "scripted":
            return float(r["kpis"]["self_sufficiency"])
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run directories (townlet train --out)")
    p.add_argument(
        "--card",
        action="append",
        default=[],
        metavar="LABEL=FILE",
        help="a scorecard to show beside the runs (townlet evaluate --json); 'scripted' sets the "
        "self-sufficiency target",
    )
    p.add_argument("--base", type=Path, help="a run of the code before, for the throughput ratio")
    p.add_argument("--drift", type=float, default=0.05, help="allowed final vs best.pt self_sufficiency gap")
    args = p.parse_args(argv)
    cards = {}
    for item in args.card:
        label, sep, path = item.partition("=")
        if not sep:
            p.error(f"--card {item!r}: expected LABEL=FILE")
        cards[label] = Path(path)
    sys.stdout.write(report(args.runs, cards, args.base, args.drift))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
