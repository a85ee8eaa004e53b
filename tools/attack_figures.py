"""The hostile-input figures of docs/ops/security.md, measured against a real ``townlet serve``; prints JSON.

Starts the shipped town at 1x (250 ms a tick, default limits) and runs, one after another:

- ``audit_flood``: 1,000 refused viewer requests with 60 KB arguments (admin commands, unknown commands,
  a reused cmd_id): the audit log's growth in bytes (target <= 200 KB);
- ``huge_headers``: four concurrent requests streaming 32 MB headers, repeated: answers and the server's
  peak RSS growth (target <= 20 MB);
- ``slow_headers``: 200 connections trickling request heads, reopened as they are cut off;
- ``auth_flood``: bad tokens as fast as one client sends them;
- ``stalled_viewers``: five viewers that never read, reopened as they are evicted; and at 100x, the seconds
  until a stalled viewer's slot is free (target <= 10 s);

and for each the tick rate at 1x while it lasted over the nominal rate (target >= 0.95). Each attack runs
for ``--window`` seconds (default 20). Run: ``.venv/bin/python tools/attack_figures.py [--window S]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "security"), str(ROOT / "tests")]

from attacks import (  # noqa: E402 - the attacks live with the tests that hold them
    Target,
    Ticking,
    huge_headers,
    refused_flood,
    slow_headers,
    stalled_viewer,
    viewers,
    wait_for,
)
from server_support import ServerProcess, issue  # noqa: E402

TICK_S = 0.25


def repeated(target: Target, window: float, attack: Callable[[], Any]) -> tuple[list[Any], Ticking]:
    """Run ``attack`` again and again for ``window`` seconds; its results and how the town ticked meanwhile."""
    results: list[Any] = []
    start_tick, start = target.health()["tick"], time.monotonic()
    while time.monotonic() - start < window:
        results.append(attack())
    end_tick, end = target.health()["tick"], time.monotonic()
    return results, Ticking(end_tick - start_tick, end - start, 1 / TICK_S)


def figures(window: float) -> dict[str, Any]:
    """Start a server and run every attack against it."""
    state = Path(tempfile.mkdtemp(prefix="townlet-attacks-")) / "state"
    proc = ServerProcess(state, "--speed", "1x")
    try:
        assert proc.admin_token is not None
        target = Target(proc.url, proc.proc.pid, proc.admin_token, issue(state, "viewer", "stream"))
        time.sleep(2)
        out: dict[str, Any] = {"nominal_tick_rate": 1 / TICK_S, "window_s": window}
        audit = state / "audit.jsonl"
        before = audit.stat().st_size if audit.exists() else 0
        sizes: list[int] = []

        def flood() -> dict[int, int]:  # the first 1,000 are measured; more keep the pressure on for the window
            statuses = refused_flood(target, 1000, 60_000)
            sizes.append(audit.stat().st_size)
            return statuses

        results, ticking = repeated(target, window, flood)
        out["audit_flood"] = {
            "requests": 1000,
            "statuses": results[0],
            "audit_bytes": sizes[0] - before,
            "rounds": len(results),
            "audit_bytes_all_rounds": sizes[-1] - before,
            "tick_ratio_1x": round(ticking.ratio, 3),
        }
        results, ticking = repeated(target, window, lambda: huge_headers(target, 4, 32))
        out["huge_headers"] = {
            "rounds": len(results),
            "answers": sorted({a for r in results for a in r["answers"]}),
            "rss_growth_mb_max": max(r["rss_growth_mb"] for r in results),
            "tick_ratio_1x": round(ticking.ratio, 3),
        }
        results, ticking = repeated(target, window, lambda: slow_headers(target, 200, 30.0))
        out["slow_headers"] = {
            "rounds": len(results),
            "cut_off_after_s_max": round(max(max(r) for r in results), 2),
            "tick_ratio_1x": round(ticking.ratio, 3),
        }
        out["auth_flood"] = _auth_flood(target, window)
        out["stalled_viewers"] = _stalled(target, window)
        # by now the flood's summary interval (console.audit.summary_s, 60 s) has ended: its summary line is written
        wait_for(lambda: any(b'"summary":true' in line for line in audit.read_bytes().splitlines()), 30.0)
        out["audit_bytes_after_all_attacks"] = audit.stat().st_size - before  # summaries included
        return out
    finally:
        proc.stop()


def _auth_flood(target: Target, window: float) -> dict[str, Any]:
    import httpx

    counts: dict[int, int] = {}

    def burst() -> None:
        with httpx.Client(timeout=10) as client:
            for _ in range(200):
                code = client.post(
                    f"{target.url}/api/console",
                    json={"cmd": "status"},
                    headers={"Authorization": "Bearer forged.token.value"},
                ).status_code
                counts[code] = counts.get(code, 0) + 1

    _, ticking = repeated(target, window, burst)
    return {"requests": sum(counts.values()), "statuses": counts, "tick_ratio_1x": round(ticking.ratio, 3)}


def _stalled(target: Target, window: float) -> dict[str, Any]:
    held: list[Any] = []
    stop = threading.Event()

    def keep_five() -> None:  # reopen stalled viewers as they are evicted, for the whole window
        while not stop.is_set():
            if viewers(target) < 5:
                held.append(stalled_viewer(target))
            time.sleep(0.2)

    keeper = threading.Thread(target=keep_five)
    keeper.start()
    _, ticking = repeated(target, window, lambda: time.sleep(0.5))
    stop.set()
    keeper.join()
    for s in held:
        s.close()
    wait_for(lambda: viewers(target) == 0, 15.0)
    assert target.command(target.admin, "speed", value="100x")[0] == 200
    frees = []
    for _ in range(3):
        socks = [stalled_viewer(target) for _ in range(5)]
        assert wait_for(lambda: viewers(target) == 5, 5.0) is not None
        frees.append(wait_for(lambda: viewers(target) == 0, 30.0))
        for s in socks:
            s.close()
    target.command(target.admin, "speed", value="1x")
    dropped = [
        line
        for line in __import__("httpx").get(f"{target.url}/metrics", timeout=10).text.splitlines()
        if line.startswith('townlet_telemetry_messages_dropped_total{transport="viewers"}')
    ]
    return {
        "evicted_at_1x": len(held),
        "tick_ratio_1x": round(ticking.ratio, 3),
        "slot_free_after_s_100x": [None if f is None else round(f, 2) for f in frees],
        "dropped_metric": dropped[0].rsplit(" ", 1)[1] if dropped else None,
    }


def main() -> int:
    """Measure and print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=float, default=20.0, metavar="S", help="seconds per attack (default 20)")
    args = parser.parse_args()
    print(json.dumps(figures(args.window), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
