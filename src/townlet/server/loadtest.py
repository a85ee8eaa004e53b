"""The live server's load benchmark: many WebSocket spectators on loopback against a real server.

Three timed phases on one server (the real app, uvicorn, the console API to change speed):

1. ``100x`` with no spectators: the tick rate the town reaches at 100x on this machine;
2. ``100x`` with N spectators connected: the tick rate must stay within 10% of phase 1;
3. ``1x`` with N spectators: the tick lag (how late each tick starts against its schedule), p99 < 50 ms.

:func:`compare_policies` runs the phases once per driving policy (the scripted routine, then the shipped
learned policy by default), each on a fresh server.

Spectators run in a separate process (as real viewers would) and count what they receive.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

LAG_LIMIT_MS = 50.0
RATE_TOLERANCE = 0.10


def _spectate(urls: list[str], ready: Any, stop: Any, results: Any) -> None:
    """Child process: hold one connection open per URL, reading everything, until ``stop`` is set."""
    from websockets.asyncio.client import connect

    async def one(url: str, tally: dict[str, Any]) -> None:
        try:
            async with connect(url, max_size=2**24, open_timeout=30, ping_interval=None) as ws:
                tally["connected"] += 1
                first = True
                while not stop.is_set():
                    try:
                        message = await asyncio.wait_for(ws.recv(), 0.5)
                    except TimeoutError:
                        continue
                    text = message if isinstance(message, str) else message.decode()
                    if first:
                        tally["first_snapshot"] += text.startswith('{"type":"snapshot"')
                        first = False
                    # one frame per tick (as the browser viewer asks): a snapshot or diff line, then event lines
                    tally["frames"] += 1
                    tally["messages"] += text.count("\n") + 1
                    tally["bytes"] += len(message)
                    snapshot = text.startswith('{"type":"snapshot"')
                    tally["snapshots"] += snapshot
                    if not snapshot:
                        tally["diff_frames"] += 1
                        tally["diff_bytes"] += len(message)
        except Exception as exc:  # counted, not fatal: the report says how many stayed connected
            tally["errors"].append(f"{type(exc).__name__}: {exc}"[:200])

    async def main() -> None:
        tally: dict[str, Any] = {
            "connected": 0,
            "first_snapshot": 0,
            "frames": 0,
            "messages": 0,
            "bytes": 0,
            "snapshots": 0,
            "diff_frames": 0,
            "diff_bytes": 0,
            "errors": [],
        }
        tasks = [asyncio.create_task(one(url, tally)) for url in urls]
        while tally["connected"] + len(tally["errors"]) < len(urls):
            await asyncio.sleep(0.05)
        ready.set()
        await asyncio.gather(*tasks)
        tally["errors"] = tally["errors"][:5]
        # each frame is one tick's update (a diff or a snapshot) with its events
        tally["bytes_per_update"] = round(tally["bytes"] / tally["frames"], 1) if tally["frames"] else 0.0
        # a tick's diff frame: what a viewer receives per tick when it keeps up (1x)
        tally["bytes_per_diff"] = round(tally["diff_bytes"] / tally["diff_frames"], 1) if tally["diff_frames"] else 0.0
        results.put(tally)

    asyncio.run(main())


class LoadBench:
    """A server on loopback (port picked by the OS) with an admin token, ready for timed phases.

    Args:
        overrides: Config overrides (``--set``), applied to the shipped config or ``config``.
        config: A YAML config file, or None for the shipped one.
        seed: The run seed.
        policy: Who drives (a ``--policy`` reference: scripted, default, a checkpoint...).
    """

    def __init__(
        self, overrides: list[str], config: str | None = None, seed: int | None = None, policy: str = "scripted"
    ) -> None:
        from townlet.config.loader import load_config
        from townlet.console.auth import TokenAuthority
        from townlet.server.live import LiveTown
        from townlet.server.stack import bind
        from townlet.training.policies import resolve

        self.tmp = tempfile.TemporaryDirectory(prefix="townlet-bench-live-")
        sets = [
            *overrides,
            f"console.state_dir={self.tmp.name}",
            "server.host=127.0.0.1",
            "server.port=0",
            "server.speed=100x",
            "console.audit_fsync=false",
        ]
        self.loaded = load_config(config, sets)
        self.choice = resolve(policy)
        self.live = LiveTown.build(self.loaded, seed=seed, policy=self.choice)
        self.live.freeze_heap = True  # as townlet serve does
        self.token, _ = TokenAuthority.from_config(self.loaded.config.console).issue("bench", "admin", 3600)
        self.sock = bind("127.0.0.1", 0)
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server: Any = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Serve on a background thread (the tick loop starts with the app)."""
        import uvicorn

        from townlet.server.app import create_app
        from townlet.server.stack import Limits, StackConfig

        server = self.loaded.config.server
        config = StackConfig(create_app(self.live), Limits.from_config(server), ws_max_size=server.max_body_bytes)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the benchmark server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server and remove its temporary state."""
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(30)
        self.tmp.cleanup()

    def command(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Run a console command through the HTTP API."""
        request = urllib.request.Request(
            f"{self.base}/api/console",
            data=json.dumps({"cmd": cmd, "args": args}).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def phase(self, speed: str, seconds: float) -> dict[str, Any]:
        """Run at ``speed`` for ``seconds``; tick rate, lag percentiles and telemetry counters."""
        answer = self.command("speed", value=speed)
        if not answer.get("ok"):
            raise RuntimeError(f"speed {speed}: {answer}")
        time.sleep(min(2.0, seconds / 10))  # settle at the new pace
        stats = self.live.stats
        stats.clear_lags()
        health0 = self.live.viewers.health()
        t0, n0 = time.monotonic(), stats.ticks
        time.sleep(seconds)
        t1, n1 = time.monotonic(), stats.ticks
        lags = stats.lag_quantiles()
        health1 = self.live.viewers.health()
        return {
            "speed": speed,
            "seconds": round(t1 - t0, 3),
            "ticks": n1 - n0,
            "tick_rate": round((n1 - n0) / (t1 - t0), 2),
            "lag_ms": {k: round(v * 1000, 3) for k, v in lags.items()},
            "viewers": health1["clients"],
            "messages_sent": health1["sent"] - health0["sent"],
            "messages_dropped": health1["dropped"] - health0["dropped"],
            "snapshots_sent": health1["snapshots"] - health0["snapshots"],
        }


def run_load_bench(
    spectators: int,
    duration: float,
    overrides: list[str],
    config: str | None = None,
    seed: int | None = None,
    log: Any = None,
    policy: str = "scripted",
    view: tuple[str, tuple[int, int]] = ("auto", (48, 27)),
) -> dict[str, Any]:
    """The three phases with ``policy`` driving; returns the JSON report (with ``pass`` flags).

    ``view`` is what spectators ask for (``?view=``) and the tiles each viewport shows (spread over the town).
    """
    say = log or (lambda text: None)
    bench = LoadBench(overrides, config, seed, policy)
    say(f"policy {bench.choice.name} ({bench.choice.policy_hash})")
    ctx = mp.get_context("spawn")
    ready, stop, results = ctx.Event(), ctx.Event(), ctx.Queue()
    urls = spectator_urls(bench, spectators, view)
    child = ctx.Process(target=_spectate, args=(urls, ready, stop, results), daemon=True)
    bench.start()
    try:
        say(f"phase 1/3: 100x, no spectators, {duration:g} s")
        alone = bench.phase("100x", duration)
        say(f"connecting {spectators} spectators")
        child.start()
        if not ready.wait(120):
            raise RuntimeError("the spectators did not connect within 120 s")
        say(f"phase 2/3: 100x, {spectators} spectators, {duration:g} s")
        crowded = bench.phase("100x", duration)
        say(f"phase 3/3: 1x, {spectators} spectators, {duration:g} s")
        paced = bench.phase("1x", duration)
        stop.set()
        tally = results.get(timeout=60)
        child.join(30)
    finally:
        stop.set()
        if child.is_alive():
            child.terminate()
        bench.stop()
    ratio = crowded["tick_rate"] / alone["tick_rate"] if alone["tick_rate"] else 0.0
    lag_ok = paced["lag_ms"]["p99"] < LAG_LIMIT_MS
    rate_ok = ratio >= 1.0 - RATE_TOLERANCE
    return {
        "benchmark": "live-server load",
        "spectators": spectators,
        "view": {"asked": view[0], "tiles": list(view[1])},
        "duration_s": duration,
        "agents": int(bench.live.sim.world.agents.alive.sum()),
        "config_id": bench.loaded.config_id,
        "policy": bench.choice.to_dict(),
        "pace_1x": {**paced, "lag_p99_limit_ms": LAG_LIMIT_MS, "pass": lag_ok},
        "speed_100x": {
            "alone": alone,
            "with_spectators": crowded,
            "ratio": round(ratio, 4),
            "min_ratio": 1.0 - RATE_TOLERANCE,
            "pass": rate_ok,
        },
        "spectator_side": tally,
        "pass": lag_ok and rate_ok and tally["connected"] == spectators,
    }


def compare_policies(
    policies: list[str],
    spectators: int,
    duration: float,
    overrides: list[str],
    config: str | None = None,
    seed: int | None = None,
    log: Any = None,
    view: tuple[str, tuple[int, int]] = ("auto", (48, 27)),
    optional: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """:func:`run_load_bench` for each policy, one after the other.

    The report is the first policy's run (the contract of one run) plus ``by_policy``: every run by policy
    name, side by side; ``pass`` holds when every run passed. A policy in ``optional`` that does not fit the
    town (:class:`~townlet.policy.compat.IncompatiblePolicy`, e.g. the shipped one in a town of another size)
    is left out and listed in ``skipped`` (``policy``, ``reason``); any other policy that does not fit raises.
    """
    from townlet.policy.compat import IncompatiblePolicy

    say = log or (lambda text: None)
    runs, skipped = {}, []
    for policy in policies:
        say(f"=== {policy}")
        try:
            runs[policy] = run_load_bench(spectators, duration, overrides, config, seed, log, policy, view)
        except IncompatiblePolicy as exc:
            if policy not in optional:
                raise
            say(f"skipped {policy}: {exc}")
            skipped.append({"policy": policy, "reason": str(exc)})
    if not runs:
        raise IncompatiblePolicy(skipped[0]["policy"], [s["reason"] for s in skipped])
    first = runs[next(p for p in policies if p in runs)]
    return {**first, "by_policy": runs, "skipped": skipped, "pass": all(r["pass"] for r in runs.values())}


def spectator_urls(bench: LoadBench, count: int, view: tuple[str, tuple[int, int]]) -> list[str]:
    """Each spectator's stream URL: one frame per tick, ``?view=`` as asked, viewports spread over the town."""
    from townlet.server.streambench import rects

    base = bench.base.replace("http://", "ws://") + f"/ws/telemetry?frames=tick&view={view[0]}"
    if view[0] == "full":
        return [base] * count
    town = bench.live.sim.world.town
    return [base + "&rect=" + ",".join(map(str, r)) for r in rects(int(town.width), int(town.height), view[1], count)]


def report_path(path: str | None, report: dict[str, Any]) -> None:
    """Write the report to ``path`` (when given)."""
    if path:
        Path(path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
