"""``townlet watch URL``: a terminal dashboard of a live town over its telemetry WebSocket (Rich).

Shows the town summary (clock, speed, weather, money, KPIs), a table of agents (place, option, needs,
wallet, job), the latest narration and the stream's health. The state is rebuilt exactly as any consumer
does: a snapshot, then merge-patch diffs; a gap (lost messages) reconnects for a fresh snapshot.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

EXAMPLES = """examples:
  townlet watch http://127.0.0.1:8000
  townlet watch https://town.example:8443 --cafile ca.pem
  townlet watch http://127.0.0.1:8000 --once          # print one frame and exit (scripts)
"""
NEEDS = ("hunger", "hygiene", "energy", "social")


def register(sub: Any, formatter: Any) -> None:
    """Add the ``watch`` subcommand."""
    p = sub.add_parser(
        "watch",
        help="terminal dashboard of a live town (agents, narration, health)",
        formatter_class=formatter,
        description=__doc__,
        epilog=EXAMPLES,
    )
    p.add_argument("url", metavar="URL", help="the server (http[s]://host:port) or its stream (ws[s]://…/ws/telemetry)")
    p.add_argument("--refresh", type=float, default=4.0, metavar="HZ", help="screen updates per second (default 4)")
    p.add_argument("--agents", type=int, default=40, metavar="N", help="agent rows shown at most (default 40)")
    p.add_argument("--once", action="store_true", help="print one frame after the first snapshot, then exit")
    p.add_argument("--timeout", type=float, default=15.0, metavar="S", help="--once: give up after S seconds")
    p.add_argument("--cafile", default=None, metavar="F", help="CA bundle to verify a wss server")
    p.add_argument("--insecure", action="store_true", help="do not verify the server certificate (testing only)")
    p.set_defaults(handler=watch_command)


def stream_url(url: str) -> str:
    """The WebSocket URL of a server URL (``http://h:p`` -> ``ws://h:p/ws/telemetry``)."""
    url = url.rstrip("/")
    if url.startswith(("ws://", "wss://")):
        return url if url.split("//", 1)[1].count("/") else f"{url}/ws/telemetry"
    if url.startswith("https://"):
        return "wss://" + url[len("https://") :] + "/ws/telemetry"
    if url.startswith("http://"):
        return "ws://" + url[len("http://") :] + "/ws/telemetry"
    return f"ws://{url}/ws/telemetry"


@dataclass
class WatchState:
    """What the dashboard knows: the rebuilt state plus stream health seen from this end."""

    url: str
    reader: Any = None
    connected: bool = False
    messages: int = 0
    snapshots: int = 0
    events: int = 0
    gaps: int = 0
    reconnects: int = 0
    last_message: float = 0.0
    last_error: str = ""
    recent_events: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        from townlet.telemetry.replay import StreamState

        self.reader = StreamState()

    def feed(self, text: str | bytes) -> bool:
        """Apply one message; False when a diff did not follow on (the caller reconnects)."""
        message = orjson.loads(text)
        self.messages += 1
        self.last_message = time.monotonic()
        kind = message.get("type")
        if kind == "snapshot":
            self.snapshots += 1
        elif kind == "event":
            self.events += 1
            if message.get("kind") != "narration":
                self.recent_events = [message, *self.recent_events[:9]]
            return True
        gaps = self.reader.gaps
        self.reader.feed(message)
        if self.reader.gaps != gaps:
            self.gaps += 1
            return False
        return True

    @property
    def state(self) -> dict[str, Any] | None:
        """The current town state (None before the first snapshot)."""
        return self.reader.state


def _needs_cell(needs: dict[str, float]) -> Text:
    text = Text()
    for i, name in enumerate(NEEDS):
        value = needs[name]
        style = "green" if value < 0.5 else "yellow" if value < 0.8 else "bold red"
        text.append(f"{value:.2f}", style=style)
        if i < len(NEEDS) - 1:
            text.append(" ")
    return text


def render(view: WatchState, max_agents: int = 40) -> RenderableType:
    """One frame of the dashboard (fits 80 columns)."""
    state = view.state
    if state is None:
        return Panel(Text(f"waiting for the town at {view.url} …  {view.last_error}"), title="townlet watch")
    clock, kpis = state["clock"], state.get("kpis", {})
    speed = "paused" if clock.get("paused") else clock.get("speed", "?")
    money = kpis.get("money", {})
    summary = Table.grid(padding=(0, 3))
    summary.add_row(
        f"[bold]Day {clock['day']} {clock['time']}[/]  tick {state['tick']}",
        f"speed [bold]{speed}[/]",
        f"{state['weather']['state']}, {len(state['agents'])} agents",
    )
    summary.add_row(
        f"needs ok {kpis.get('need_ok_share', 0):.3f}",
        f"attendance {kpis.get('attendance', 0):.3f}",
        f"lateness {kpis.get('lateness', 0):.3f}",
    )
    summary.add_row(
        f"collapses {kpis.get('collapses', 0)}",
        f"mean wallet {money.get('wallet_mean', 0):.2f}",
        f"treasury {state['economy']['treasury']:.0f}",
    )
    off = state["utilities"]
    if off.get("power_off") or off.get("water_off") or state.get("perturbations"):
        events = ", ".join(p["kind"] for p in state.get("perturbations", []))
        summary.add_row(
            f"power off: {', '.join(off['power_off']) or '-'}",
            f"water off: {', '.join(off['water_off']) or '-'}",
            f"events: {events or '-'}",
        )
    rows = sorted(state["agents"].items())[:max_agents]
    agents = Table(expand=True, pad_edge=False, box=None, header_style="bold")
    agents.add_column("agent", no_wrap=True, min_width=max((len(n) for n, _ in rows), default=5))
    agents.add_column("place", no_wrap=True, overflow="ellipsis")
    agents.add_column("doing", no_wrap=True, overflow="ellipsis")
    agents.add_column("hun hyg ene soc", no_wrap=True, min_width=19)
    agents.add_column("wallet", justify="right", no_wrap=True)
    agents.add_column("job", no_wrap=True, overflow="ellipsis")
    for name, a in rows:
        job = a.get("job")
        doing = a.get("option", a["activity"]) + (" zz" if a["asleep"] else "")
        agents.add_row(
            name,
            a.get("place", f"({a['x']},{a['y']})"),
            doing,
            _needs_cell(a["needs"]),
            f"{a['wallet']:.2f}",
            f"{job['title']} (late {job['late']})" if job else "-",
        )
    hidden = len(state["agents"]) - max_agents
    narration = Text()
    for line in list(state.get("narration", []))[-6:][::-1]:
        narration.append(f"t{line['tick']} ", style="dim")
        narration.append(line["text"] + "\n")
    if not narration:
        narration.append("nothing notable yet", style="dim")
    return Group(
        Panel(
            summary, title=f"townlet watch · {view.url}", subtitle=f"config {view.reader.header.get('config_id', '?')}"
        ),
        Panel(agents, title=f"agents ({len(state['agents'])})" + (f", {hidden} more" if hidden > 0 else "")),
        Panel(narration, title="narration"),
        Panel(_health(view, state), title="health"),
    )


def _health(view: WatchState, state: dict[str, Any]) -> Table:
    age = time.monotonic() - view.last_message if view.last_message else 0.0
    grid = Table.grid(padding=(0, 2))
    grid.add_row(
        "[green]connected[/]" if view.connected else "[red]disconnected[/]",
        f"messages {view.messages}",
        f"snapshots {view.snapshots}",
        f"last {age:.1f}s ago",
    )
    grid.add_row(f"gaps {view.gaps}", f"reconnects {view.reconnects}", "", "")
    viewers = state.get("transports", {}).get("viewers")
    perf = state.get("perf")
    if viewers or perf:
        grid.add_row(
            f"server: {viewers.get('clients', '?')} viewers" if viewers else "server:",
            f"dropped {viewers['dropped']}" if viewers else "",
            f"drop rate {viewers.get('drop_rate', 0):.1%}" if viewers else "",
            f"tick {perf['tick_ms_mean']:.3f} ms" if perf else "",
        )
    if view.last_error:
        grid.add_row(f"[yellow]{view.last_error}[/]")
    return grid


def _ssl_context(args: argparse.Namespace, url: str) -> ssl.SSLContext | None:
    if not url.startswith("wss://"):
        return None
    context = ssl.create_default_context(cafile=args.cafile)
    if args.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def follow(view: WatchState, context: ssl.SSLContext | None, stop: asyncio.Event) -> None:
    """Keep ``view`` fed from the stream, reconnecting with backoff, until ``stop`` is set."""
    from websockets.asyncio.client import connect

    backoff = 0.5
    while not stop.is_set():
        try:
            async with connect(view.url, ssl=context, max_size=2**24, open_timeout=10) as ws:
                view.connected, backoff, view.last_error = True, 0.5, ""
                async for message in ws:
                    if not view.feed(message):
                        break  # lost messages: start again from a fresh snapshot
                    if stop.is_set():
                        return
        except Exception as exc:  # refused, reset, handshake failure, a garbled message
            view.last_error = f"{type(exc).__name__}: {exc}"
        view.connected = False
        view.reader.state = None
        if stop.is_set():
            return
        view.reconnects += 1
        try:
            await asyncio.wait_for(stop.wait(), backoff)
        except TimeoutError:
            pass
        backoff = min(backoff * 2, 10.0)


async def _run(args: argparse.Namespace) -> int:
    url = stream_url(args.url)
    view = WatchState(url)
    stop = asyncio.Event()
    task = asyncio.create_task(follow(view, _ssl_context(args, url), stop))
    console = Console()
    try:
        if args.once:
            deadline = time.monotonic() + args.timeout
            while view.state is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if view.state is None:
                print(
                    f"townlet: error: no telemetry from {url} within {args.timeout:g} s {view.last_error}",
                    file=sys.stderr,
                )
                return 1
            console.print(render(view, args.agents))
            return 0
        period = 1.0 / max(args.refresh, 0.1)
        with Live(render(view, args.agents), console=console, auto_refresh=False, screen=False) as live:
            while True:
                await asyncio.sleep(period)
                live.update(render(view, args.agents), refresh=True)
    finally:
        stop.set()
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass


def watch_command(args: argparse.Namespace) -> int:
    """Run the dashboard until Ctrl+C (or one frame with ``--once``)."""
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return 0
