"""Helpers for tests against a real ``townlet serve`` process: start it, read its URL, issue tokens, post commands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from townlet.config.loader import load_config
from townlet.config.models import ConsoleConfig
from townlet.console.auth import TokenAuthority
from townlet.server.credentials import keys_file


class ServerProcess:
    """``townlet serve --port 0`` in a subprocess, with its state in ``state_dir``.

    Attributes:
        url: The base URL it printed (``http://127.0.0.1:PORT``).
        admin_token: The first-run admin token it printed (None on a later start).
        lines: Everything it printed on stdout.
    """

    def __init__(self, state_dir: Path, *args: str, env: dict[str, str] | None = None, verify: Any = True) -> None:
        self.state_dir = state_dir
        self.verify = verify
        first_run = not Path(keys_file(_console(state_dir))).exists()  # the server will print an admin token
        self.log = open(state_dir.parent / f"{state_dir.name}-server.log", "ab")  # noqa: SIM115 - closed in stop
        cmd = [sys.executable, "-m", "townlet.cli.main", "serve", "--port", "0", "--state-dir", str(state_dir), *args]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self.log, text=True, env={**os.environ, **(env or {})}
        )
        self.lines: list[str] = []
        self.url = ""
        self.admin_token: str | None = None
        self._seen = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._seen.wait(60):
            self.stop()
            raise RuntimeError(f"the server printed no URL: {self.lines} {self.log_text()}")
        try:
            self.wait_healthy()
            # the token is printed before the server answers, but the reader thread may not have parsed it yet
            deadline = time.monotonic() + 60
            while first_run and self.admin_token is None and time.monotonic() < deadline:
                time.sleep(0.02)
        except BaseException:
            self.stop()
            raise

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if "admin token" in line:
                self.admin_token = line.rsplit(" ", 1)[1].strip()
            if "the live town is at " in line:
                self.url = line.split("the live town is at ", 1)[1].split()[0].rstrip("/")
                self._seen.set()

    def log_text(self) -> str:
        """What the server wrote on stderr."""
        if not self.log.closed:
            self.log.flush()
        return (self.state_dir.parent / f"{self.state_dir.name}-server.log").read_text(errors="replace")

    def wait_healthy(self, timeout: float = 30.0) -> dict[str, Any]:
        """Wait for ``/healthz`` to answer ok; returns it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                answer = httpx.get(f"{self.url}/healthz", timeout=5, verify=self.verify)
                if answer.status_code == 200:
                    return answer.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the server never became healthy: {self.log_text()}")

    def health(self) -> dict[str, Any]:
        """The current ``/healthz`` body."""
        return httpx.get(f"{self.url}/healthz", timeout=10, verify=self.verify).json()

    def wait_tick(self, tick: int, timeout: float = 60.0) -> int:
        """Wait until the town has simulated ``tick``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = self.health()["tick"]
            if now >= tick:
                return now
            time.sleep(0.05)
        raise TimeoutError(f"tick {tick} not reached")

    def stop(self) -> int:
        """Interrupt it (Ctrl+C) and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        return self.proc.returncode


def _console(state_dir: Path) -> ConsoleConfig:
    return load_config(overrides=[f"console.state_dir={state_dir}"]).config.console


def issue(state_dir: Path, role: str, principal: str, ttl_s: int = 3600) -> str:
    """A token signed with the key set in ``state_dir``."""
    token, _ = TokenAuthority.from_config(_console(state_dir)).issue(principal, role, ttl_s)
    return token


def post(url: str, token: str | None, cmd: str, **args: Any) -> tuple[int, dict[str, Any]]:
    """``POST /api/console``; returns the HTTP status and the JSON body."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = httpx.post(f"{url}/api/console", json={"cmd": cmd, "args": args}, headers=headers, timeout=30)
    return answer.status_code, answer.json()
