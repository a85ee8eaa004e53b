"""Fixtures of the hostile-input tests: a real ``townlet serve`` process tuned so attacks resolve in seconds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from attacks import Target
from server_support import ServerProcess, issue

TICK_S = 0.05  # 20 ticks a second at 1x: a tick rate is measurable in a few seconds
# Limits scaled down from the defaults so each attack is decided quickly; the figures tool uses the defaults.
QUICK = [
    f"time.live_tick_seconds={TICK_S}",
    "server.header_timeout_s=1",
    "server.idle_timeout_s=1",
    "server.ws_ping_s=0.5",
    "server.send_timeout_s=1.5",
    "server.max_viewers=5",
    "server.max_connections=40",
    "console.audit.summary_s=600",
]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Target, ServerProcess]]:
    """One live town for a module of attacks, with an admin and a viewer token."""
    state = tmp_path_factory.mktemp("hostile") / "state"
    proc = ServerProcess(state, "--speed", "1x", *(a for s in QUICK for a in ("--set", s)))
    try:
        assert proc.admin_token is not None
        yield Target(proc.url, proc.proc.pid, proc.admin_token, issue(state, "viewer", "stream")), proc
    finally:
        proc.stop()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: a fresh ``townlet serve`` with extra arguments (stopped after the test)."""
    started: list[ServerProcess] = []

    def make(*args: str, state: Path | None = None) -> ServerProcess:
        proc = ServerProcess(state or tmp_path / f"state{len(started)}", *args)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()
