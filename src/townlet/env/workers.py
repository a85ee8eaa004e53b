"""Worker processes for ``BatchedTowns(workers=k)``: each steps a contiguous share of the towns in place.

The stacked buffers live in anonymous shared memory mapped before the workers are forked, so their writes
are visible to the parent without copying; the parent steps a share of its own meanwhile
(:meth:`WorkerPool.send`, then :meth:`WorkerPool.gather`). A step is signalled through a shared counter per
worker (on x86-64, whose memory order makes a counter written after the data safe to read before it) or a
short pipe message (elsewhere); other commands always go through the pipe. Needs the ``fork``
start method (Linux, macOS; elsewhere use ``workers=0``); build the batch before the process starts threads
of its own (a torch training loop, a server), as forking a threaded process is unsafe.
"""

from __future__ import annotations

import dataclasses
import gc
import mmap
import multiprocessing as mp
import os
import platform
import time
import traceback
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import numpy as np

from townlet.config.loader import LoadedConfig

if TYPE_CHECKING:
    from townlet.env.core import Decisions

Shapes = dict[str, tuple[tuple[int, ...], type]]
SPIN_S = 0.005  # how long a waiting side polls before it blocks (see :func:`receive`)
IDLE_POLL_S = 0.0005  # past that, how often an idle worker looks at its step counter
SHARED_COUNTERS = platform.machine().lower() in ("x86_64", "amd64")  # see the module docstring
ASKED, DONE, SEED = 0, 1, 2  # columns of WorkerPool.sync


class WorkerError(RuntimeError):
    """A batch worker failed: the message names the worker, its towns and the command, and carries its traceback.

    The pool is closed when this is raised (the failed worker's towns are in an unknown state); build another
    batch with the same arguments to go on.
    """


@dataclasses.dataclass(frozen=True)
class _Failure:
    """What a worker sends instead of an answer when a command raised: the formatted traceback."""

    command: str
    traceback: str


def receive(conn: Connection) -> Any:
    """``conn.recv()``, polling for up to ``SPIN_S`` first.

    Between two steps of a batch each side waits well under a millisecond; a process that blocked instead
    has to be woken by the kernel, which on a virtual machine's idle CPU can cost as much as a town's step.
    Longer waits (a training update) fall through to the blocking receive and use no CPU.
    """
    deadline = time.perf_counter() + SPIN_S
    while not conn.poll(0):
        if time.perf_counter() > deadline:
            break
    return conn.recv()


def _serve(
    conn: Connection,
    loaded: LoadedConfig,
    arrays: dict[str, np.ndarray],
    towns: list[int],
    n_towns: int,
    autoreset: bool,
    sync: np.ndarray,
    decisions: Decisions,
    gamma: float,
) -> None:
    """A worker's loop: build its towns on its side, then answer steps and reset / query messages.

    A step is asked for by the counter ``sync[ASKED]`` moving past ``sync[DONE]``, or by a pipe message.
    """
    from townlet.env.batched import observer_of, reset_towns, step_towns, town_buffers
    from townlet.env.core import TownCore

    cores = {}
    for i in towns:
        core = TownCore(loaded, decisions=decisions, gamma=gamma)
        core.buffers = town_buffers(arrays, i)
        cores[i] = core
    observer = observer_of(cores)
    gc.freeze()  # its heap is long-lived: a full collection over it would stall every step of the batch
    conn.send("ready")
    busy = time.perf_counter()
    command = "step"
    try:
        while True:
            if sync[ASKED] != sync[DONE]:
                command = "step"
                step_towns(cores, arrays, n_towns, int(sync[SEED]), autoreset, observer)
                sync[DONE] = sync[ASKED]  # after the buffers: the parent reads them once it sees this
                busy = time.perf_counter()
                continue
            if not conn.poll(0 if time.perf_counter() - busy < SPIN_S else IDLE_POLL_S):
                os.sched_yield()
                continue
            command, seed = conn.recv()
            busy = time.perf_counter()
            if command == "step":
                step_towns(cores, arrays, n_towns, seed, autoreset, observer)
                conn.send(None)
            elif command == "reset":
                reset_towns(cores, arrays, seed)
                conn.send(None)
            elif command == "hashes":
                conn.send([cores[i].sim.state_hash() for i in towns])
            elif command == "invalid":
                conn.send([cores[i].sim.invalid_actions for i in towns])
            else:
                break
    except (EOFError, KeyboardInterrupt):
        pass
    except Exception:  # noqa: BLE001 - forwarded: the parent raises it as a WorkerError and closes the pool
        try:
            conn.send(_Failure(command, traceback.format_exc()))
        except (BrokenPipeError, OSError):
            pass
    finally:
        conn.close()


class WorkerPool:
    """Worker processes sharing the stacked buffers of one batch, one per share of towns.

    Args:
        loaded: The towns' config.
        shapes: Shape and dtype of every stacked buffer.
        n_towns: Towns in the whole batch.
        shares: Batch indices of the towns each worker steps (one worker per non-empty share).
        autoreset: Reset finished towns (see :class:`~townlet.env.batched.BatchedTowns`).
        decisions: ``"ticks"`` or ``"points"`` (see :mod:`townlet.env.core`).
        gamma: Discount per tick of the towns' discounted reward sums.

    Attributes:
        arrays: The stacked buffers (numpy views of shared memory), by name.
        sync: ``int64[workers, 3]`` step counters (asked, done) and the step's seed, in shared memory.
    """

    def __init__(
        self,
        loaded: LoadedConfig,
        shapes: Shapes,
        n_towns: int,
        shares: list[list[int]],
        autoreset: bool,
        decisions: Decisions = "ticks",
        gamma: float = 0.99,
    ) -> None:
        if "fork" not in mp.get_all_start_methods():
            raise RuntimeError("BatchedTowns workers need the 'fork' start method; use workers=0 here")
        self.arrays: dict[str, np.ndarray] = {}
        self._maps = []
        for key, (shape, dtype) in shapes.items():
            nbytes = max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1)
            shared = mmap.mmap(-1, nbytes)  # anonymous and shared with the children forked below
            self._maps.append(shared)
            self.arrays[key] = np.ndarray(shape, dtype=dtype, buffer=shared)
        busy_shares = [share for share in shares if share]
        counters = mmap.mmap(-1, max(len(busy_shares), 1) * 3 * 8)
        self._maps.append(counters)
        self.sync = np.ndarray((len(busy_shares), 3), dtype=np.int64, buffer=counters)
        self.shares = busy_shares
        self._pending: str | None = None  # the command sent and not yet gathered
        self._stepping = False
        # As Python's docs advise before a fork: the children then leave the parent's objects (and their
        # pages) alone, and neither side's full collections walk them again.
        gc.freeze()
        ctx = mp.get_context("fork")
        self._conns: list[Connection] = []
        self._procs = []
        for k, share in enumerate(busy_shares):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_serve,
                daemon=True,
                args=(child, loaded, self.arrays, share, n_towns, autoreset, self.sync[k], decisions, gamma),
            )
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        for k, conn in enumerate(self._conns):
            try:
                ready = conn.recv()
            except EOFError:
                ready = _Failure("start", "(the worker exited without a word)")
            if ready != "ready":
                self._fail(k, ready if isinstance(ready, _Failure) else _Failure("start", repr(ready)))

    def call(self, command: str, seed: int) -> Any:
        """Send a command to every worker and wait for all; list answers are concatenated in town order."""
        self.send(command, seed)
        return self.gather()

    def send(self, command: str, seed: int) -> None:
        """Start a command on every worker without waiting (collect the answers with :meth:`gather`).

        Raises:
            RuntimeError: a command is still pending (one :meth:`send`, then one :meth:`gather`), or the pool
                is closed.
        """
        if not self._procs:
            raise RuntimeError("WorkerPool.send: the pool is closed (after close() or a worker's failure)")
        if self._pending is not None:
            raise RuntimeError(
                f"WorkerPool.send({command!r}): {self._pending!r} is still pending; call gather() for its answers first"
            )
        self._pending = command
        if command == "step" and SHARED_COUNTERS:
            self.sync[:, SEED] = seed
            self.sync[:, ASKED] += 1  # after the actions and the seed: a worker reads them once it sees this
            self._stepping = True
            return
        for conn in self._conns:
            conn.send((command, seed))

    def gather(self) -> Any:
        """Wait for every worker's answer to the last :meth:`send`; lists are concatenated in town order.

        Raises:
            RuntimeError: nothing was sent.
            WorkerError: a worker failed (its traceback in the message); the pool is closed.
        """
        if self._pending is None:
            raise RuntimeError("WorkerPool.gather: nothing is pending (send a command first)")
        if self._stepping:
            self._wait_steps()
            self._pending, self._stepping = None, False
            return None
        answers = [self._answer(k, conn) for k, conn in enumerate(self._conns)]
        self._pending = None
        if answers and isinstance(answers[0], list):
            return [x for part in answers for x in part]
        return None

    def _answer(self, k: int, conn: Connection) -> Any:
        try:
            answer = receive(conn)
        except (EOFError, OSError):
            answer = _Failure(self._pending or "?", "(the worker exited without an answer)")
        if isinstance(answer, _Failure):
            self._fail(k, answer)
        return answer

    def _fail(self, k: int, failure: _Failure) -> None:
        """Close the pool and raise the worker's failure with its traceback."""
        towns = self.shares[k]
        self.close()
        raise WorkerError(
            f"batch worker {k} (towns {towns[0]}..{towns[-1]}) failed in {failure.command!r}; "
            f"its traceback:\n{failure.traceback.rstrip()}"
        )

    def _wait_steps(self) -> None:
        """Poll the step counters until every worker is done (sleeping between polls after ``SPIN_S``)."""
        asked, done = self.sync[:, ASKED], self.sync[:, DONE]
        deadline = time.perf_counter() + SPIN_S
        while not np.array_equal(asked, done):
            os.sched_yield()  # a spinning process must not starve a worker that shares its CPU
            if time.perf_counter() > deadline:
                time.sleep(IDLE_POLL_S)
                for k, (conn, proc) in enumerate(zip(self._conns, self._procs, strict=True)):
                    if asked[k] != done[k] and (conn.poll(0) or not proc.is_alive()):
                        self._answer(k, conn)  # a failure's traceback, or the worker's end
                        self._fail(k, _Failure("step", "(the worker died while stepping)"))

    def close(self) -> None:
        """Stop the workers (the shared buffers stay readable until the batch is dropped)."""
        self._pending, self._stepping = None, False
        for conn in self._conns:
            try:
                conn.send(("close", 0))
            except (BrokenPipeError, OSError):
                pass
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
        for conn in self._conns:
            conn.close()
        self._conns, self._procs = [], []
