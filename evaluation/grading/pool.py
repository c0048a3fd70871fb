"""Run one function over many inputs in worker processes, with a hard time limit per input.

Symbolic grading can run for ever (sympy on a power tower) inside C code that no signal
interrupts, and math-verify's own timeout only works in a main thread. So each input runs in a
worker process; the pool gives it `timeout` seconds from the moment it is handed out, then kills
the worker and starts a fresh one, and the input's outcome is "timeout". A worker that dies
(segfault, out of memory) costs only its current input ("crashed"). Outcomes come back in input
order.

`IsolatedPool` starts its workers once and keeps them for every `submit` until `close`: an
evaluation grades chunk after chunk while its GPUs generate the next one, without paying for
fresh interpreters (and the sympy import) each time. A thread of the pool hands out inputs,
watches the clocks and replaces workers; `submit` returns at once with a future of the outcomes.
`run_isolated` is the one-call form (a pool for one list of inputs).

Workers are fresh interpreters (`python -c`, talking over a socket pair), never forks: the caller
may hold threads (an HTTP client, a progress bar), and forking a threaded process can deadlock
the child. Unlike multiprocessing's "spawn", they do not re-import the caller's main script, so a
script without an `if __name__ == "__main__":` guard still works. A worker reports "ready" after
its imports, and an input's clock starts only then: the second spent importing sympy is not
charged to the first answer. Workers die with the pool's thread, hence with the process (Linux).
"""
from __future__ import annotations

import importlib
import signal
import socket
import subprocess
import threading
import time
import traceback
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Callable

from webinstruct.core.procs import die_with_parent, spawn_connected

START_TIMEOUT = 120.0  # seconds a worker may take to import its modules
START_FAILURES = 3  # give up (outcome "error" for what is left) after this many failed starts in a row


@dataclass(frozen=True)
class Outcome:
    status: str  # "ok", "timeout", "crashed" (the worker died), "error" (the function raised)
    value: Any = None
    detail: str = ""


def _serve(fd: int) -> None:
    """A worker: receive the function and modules to import, say ready, then answer
    (index, args) requests until told to stop or the parent goes away."""
    die_with_parent(signal.SIGKILL)  # a killed evaluator must not leave a worker spinning in sympy
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    conn = Connection(fd)
    try:
        fn, preload = conn.recv()  # unpickling the function imports its module
        for name in preload:
            importlib.import_module(name)
    except BaseException:
        conn.send(("failed", traceback.format_exc(limit=3)))
        return
    conn.send(("ready", None))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        index, args = msg
        try:
            reply = (index, "ok", fn(*args))
        except Exception as e:  # the function's failure is this input's outcome, not the pool's
            reply = (index, "error", f"{type(e).__name__}: {e}")
        try:
            conn.send(reply)
        except Exception as e:
            conn.send((index, "error", f"unpicklable result: {e}"))


class _Worker:
    def __init__(self, fn: Callable, preload: tuple[str, ...]):
        self.proc, self.conn = spawn_connected(__name__, "_serve")
        self.started = time.monotonic()
        self.ready = False
        self.task: tuple[_Job, int] | None = None
        self.deadline = 0.0
        try:
            self.conn.send((fn, preload))
        except OSError:  # it died at once; the pool sees EOF and counts a failed start
            pass

    def give(self, job: _Job, index: int) -> None:
        self.task, self.deadline = (job, index), time.monotonic() + job.timeout
        try:
            self.conn.send((index, job.inputs[index]))
        except OSError:  # it just died: the pool reads EOF next and counts the input "crashed"
            pass

    def stop(self, force: bool = False) -> None:
        if not force:
            try:
                self.conn.send(None)
                self.proc.wait(1.0)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.conn.close()


@dataclass(eq=False)
class _Job:
    """One `submit`: its inputs, their outcomes so far and the future the caller holds."""
    inputs: list[tuple]
    timeout: float
    future: Future
    results: list = field(default_factory=list)
    left: int = 0

    def finish(self, index: int, outcome: Outcome) -> None:
        if self.results[index] is None:
            self.results[index], self.left = outcome, self.left - 1
            if not self.left:
                self.future.set_result(self.results)


class IsolatedPool:
    """`workers` processes running `fn`, started once and reused by every `submit` until `close`.

    `fn` must be importable by module and name (it is pickled by reference); `preload` names
    modules a worker imports before it reports ready. Inputs of several submissions share the
    workers first come, first served. A pool whose workers fail to start `START_FAILURES` times
    in a row answers "error" for what it holds and for later submissions. Usable as a context
    manager; `close` lets submitted work finish (cancel=True: answers "error" for it instead).
    `lazy`: the workers start with the first submission (a run that never needs them pays nothing)."""

    def __init__(self, fn: Callable, workers: int = 2, timeout: float = 5.0, preload: tuple[str, ...] = (),
                 lazy: bool = False):
        self.fn, self.preload, self.timeout = fn, tuple(preload), timeout
        self.size = max(1, workers)
        self.lazy = lazy  # start the workers with the first submission, not now
        self._lock = threading.Lock()
        self._queue: deque[tuple[_Job, int]] = deque()  # inputs not yet handed to a worker
        self._jobs: list[_Job] = []  # submissions not finished
        self._closing = self._cancel = False
        self._broken = ""  # why the workers cannot start, once they failed too often
        self._workers: list[_Worker] = []
        self._wake_recv, self._wake_send = socket.socketpair()
        self._started = threading.Event()
        # The workers are started and replaced by this thread only: Linux's parent-death signal
        # follows the thread that started a child, and this one lives as long as the pool.
        self._thread = threading.Thread(target=self._run, name="isolated-pool", daemon=True)
        self._thread.start()
        self._started.wait()

    # -- the caller's side -------------------------------------------------------------------

    def submit(self, inputs: list[tuple], timeout: float | None = None) -> Future:
        """A future of `fn(*args)`'s outcome for each args in `inputs`, in order (`Outcome`s;
        `timeout` overrides the pool's seconds per input for this submission)."""
        future: Future = Future()
        job = _Job(list(inputs), self.timeout if timeout is None else timeout, future, [None] * len(inputs),
                   len(inputs))
        if not inputs:
            future.set_result([])
            return future
        with self._lock:
            if self._closing:
                raise RuntimeError("submit on a closed IsolatedPool")
            if self._broken:
                for i in range(len(inputs)):
                    job.finish(i, Outcome("error", detail=self._broken))
                return future
            self._jobs.append(job)
            self._queue.extend((job, i) for i in range(len(inputs)))
        self._wake()
        return future

    def map(self, inputs: list[tuple], timeout: float | None = None) -> list[Outcome]:
        """`submit(...).result()`: the outcomes, waiting for them."""
        return self.submit(inputs, timeout).result()

    @property
    def pids(self) -> list[int]:
        """Process ids of the current workers (they change only when one is replaced)."""
        with self._lock:
            return [w.proc.pid for w in self._workers]

    def close(self, cancel: bool = False) -> None:
        """Stop the workers once submitted work is done (`cancel`: at once, "error" for the rest)."""
        with self._lock:
            self._closing = True
            self._cancel = self._cancel or cancel
        self._wake()
        self._thread.join()
        self._wake_recv.close()
        self._wake_send.close()

    def __enter__(self) -> IsolatedPool:
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.close(cancel=exc_type is not None)

    def _wake(self) -> None:
        try:
            self._wake_send.send(b"x")
        except OSError:  # closed: the pool's thread is gone already
            pass

    # -- the pool's thread -------------------------------------------------------------------

    def _start_workers(self) -> None:
        workers = [_Worker(self.fn, self.preload) for _ in range(self.size)]
        with self._lock:
            self._workers = workers

    def _run(self) -> None:
        try:
            if not self.lazy:
                self._start_workers()
            self._started.set()
            self._loop()
        except BaseException as e:  # a bug or no processes left: callers get errors, never a hang
            self._fail_all(f"pool: {type(e).__name__}: {e}", broken=True)
        finally:
            self._started.set()
            with self._lock:
                workers, self._workers = self._workers, []
            for w in workers:  # one still importing would make a polite stop wait for nothing
                w.stop(force=self._cancel or w.task is not None or not w.ready)

    def _fail_all(self, detail: str, broken: bool = False) -> None:
        """Answer "error" for every input held; `broken`: for later submissions too."""
        with self._lock:
            if broken:
                self._broken = detail
            jobs, self._jobs = self._jobs, []
            self._queue.clear()
        for job in jobs:
            for i in range(len(job.inputs)):
                job.finish(i, Outcome("error", detail=detail))
        for w in self._workers:
            w.task = None

    def _replace(self, w: _Worker) -> None:
        w.stop(force=True)
        fresh = _Worker(self.fn, self.preload)
        with self._lock:
            self._workers[self._workers.index(w)] = fresh

    def _done(self, job: _Job, index: int, outcome: Outcome) -> None:
        job.finish(index, outcome)
        if not job.left:
            with self._lock:
                if job in self._jobs:
                    self._jobs.remove(job)

    def _loop(self) -> None:
        failed_starts, last_failure = 0, ""
        while True:
            with self._lock:
                closing, cancel, busy = self._closing, self._cancel, bool(self._jobs)
            if cancel:
                self._fail_all("the pool was closed")
                return
            if closing and not busy:
                return
            if failed_starts >= START_FAILURES:
                self._fail_all(f"workers failed to start: {last_failure}", broken=True)
                return  # the workers stop; later submissions are answered "error" at once
            if busy and not self._workers:
                self._start_workers()
            handout = []
            with self._lock:
                for w in self._workers:
                    if w.ready and w.task is None and self._queue:
                        handout.append((w, *self._queue.popleft()))
            for w, job, index in handout:
                try:
                    w.give(job, index)
                except Exception as e:  # the input cannot be pickled: its outcome, not the pool's
                    w.task = None
                    self._done(job, index, Outcome("error", detail=f"unpicklable input: {e}"))
            limits = [w.deadline if w.task is not None else w.started + START_TIMEOUT
                      for w in self._workers if w.task is not None or not w.ready]
            wait_s = max(0.0, min(limits) - time.monotonic()) if limits else None
            readable = wait([w.conn for w in self._workers] + [self._wake_recv], timeout=wait_s)
            if self._wake_recv in readable:
                self._wake_recv.recv(4096)
            for w in list(self._workers):
                if w.conn not in readable:
                    continue
                try:
                    kind, *rest = w.conn.recv()
                except (EOFError, OSError):
                    code = w.proc.wait()
                    if w.task is not None:
                        self._done(*w.task, Outcome("crashed", detail=f"worker exit code {code}"))
                    elif not w.ready:
                        failed_starts, last_failure = failed_starts + 1, f"worker exit code {code}"
                    self._replace(w)
                    continue
                if kind == "ready":
                    w.ready, failed_starts = True, 0
                elif kind == "failed":
                    failed_starts, last_failure = failed_starts + 1, rest[0].strip().splitlines()[-1]
                    self._replace(w)
                else:
                    status, value = rest
                    job, index = w.task
                    w.task = None
                    self._done(job, index, Outcome("ok", value) if status == "ok" else Outcome(status, detail=value))
            now = time.monotonic()
            for w in list(self._workers):
                if w.task is not None and now >= w.deadline:
                    job, index = w.task
                    self._done(job, index, Outcome("timeout", detail=f"over {job.timeout:g}s"))
                    self._replace(w)
                elif not w.ready and now >= w.started + START_TIMEOUT:
                    failed_starts, last_failure = failed_starts + 1, f"not ready after {START_TIMEOUT:g}s"
                    self._replace(w)


def run_isolated(fn: Callable, inputs: list[tuple], workers: int = 2, timeout: float = 5.0,
                 preload: tuple[str, ...] = ()) -> list[Outcome]:
    """`fn(*args)` for each args in `inputs`, in `workers` processes, each call limited to
    `timeout` seconds: a pool of its own for this one list (`IsolatedPool` for many)."""
    if not inputs:
        return []
    pool = IsolatedPool(fn, workers=min(workers, len(inputs)), timeout=timeout, preload=preload)
    try:
        return pool.map(inputs)
    finally:
        pool.close()
