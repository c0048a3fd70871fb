"""Run one function over many inputs in worker processes, with a hard time limit per input.

Symbolic grading can run for ever (sympy on a power tower) inside C code that no signal
interrupts, and math-verify's own timeout only works in a main thread. So each input runs in a
worker process; the parent gives it `timeout` seconds from the moment it is handed out, then
kills the worker and starts a fresh one, and the input's outcome is "timeout". A worker that dies
(segfault, out of memory) costs only its current input ("crashed"). Outcomes come back in input
order.

Workers are fresh interpreters (`python -c`, talking over a socket pair), never forks: the caller
may hold threads (an HTTP client, a progress bar), and forking a threaded process can deadlock
the child. Unlike multiprocessing's "spawn", they do not re-import the caller's main script, so a
script without an `if __name__ == "__main__":` guard still works. A worker reports "ready" after
its imports, and an input's clock starts only then: the second spent importing sympy is not
charged to the first answer. Workers die with the process that started them (Linux).
"""
from __future__ import annotations

import importlib
import json
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable

from webinstruct.core.procs import die_with_parent

START_TIMEOUT = 120.0  # seconds a worker may take to import its modules
START_FAILURES = 3  # give up (outcome "error" for what is left) after this many failed starts
_BOOT = ("import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
         "from webinstruct.evaluation.grading.pool import _serve; _serve(int(sys.argv[2]))")


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
        mine, theirs = socket.socketpair()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, json.dumps([str(p) for p in sys.path]), str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        theirs.close()  # else the parent never sees EOF when the worker dies
        self.conn = Connection(mine.detach())
        self.started = time.monotonic()
        self.ready = False
        self.task: int | None = None
        self.deadline = 0.0
        try:
            self.conn.send((fn, preload))
        except OSError:  # it died at once; the parent sees EOF and counts a failed start
            pass

    def give(self, index: int, args: tuple, timeout: float) -> None:
        self.task, self.deadline = index, time.monotonic() + timeout
        self.conn.send((index, args))

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


def run_isolated(fn: Callable, inputs: list[tuple], workers: int = 2, timeout: float = 5.0,
                 preload: tuple[str, ...] = ()) -> list[Outcome]:
    """`fn(*args)` for each args in `inputs`, in `workers` processes, each call limited to
    `timeout` seconds. `fn` must be importable by module and name (it is pickled by reference);
    `preload` names modules a worker imports before it reports ready."""
    n = len(inputs)
    if n == 0:
        return []
    results: list[Outcome | None] = [None] * n
    todo = deque(range(n))
    pool: list[_Worker] = []
    failed_starts, last_failure, left = 0, "", n

    def finish(index: int, outcome: Outcome) -> None:
        nonlocal left
        results[index], left = outcome, left - 1

    def replace(w: _Worker) -> None:
        w.stop(force=True)
        pool[pool.index(w)] = _Worker(fn, preload)

    try:
        pool.extend(_Worker(fn, preload) for _ in range(max(1, min(workers, n))))
        while left:
            if failed_starts >= START_FAILURES:
                for i in [i for i, r in enumerate(results) if r is None]:
                    finish(i, Outcome("error", detail=f"workers failed to start: {last_failure}"))
                break
            for w in pool:
                if w.ready and w.task is None and todo:
                    i = todo.popleft()
                    w.give(i, inputs[i], timeout)
            limits = [w.deadline if w.task is not None else w.started + START_TIMEOUT
                      for w in pool if w.task is not None or not w.ready]
            wait_s = max(0.0, min(limits) - time.monotonic()) if limits else None
            readable = wait([w.conn for w in pool], timeout=wait_s)
            for w in list(pool):
                if w.conn not in readable:
                    continue
                try:
                    kind, *rest = w.conn.recv()
                except (EOFError, OSError):
                    code = w.proc.wait()
                    if w.task is not None:
                        finish(w.task, Outcome("crashed", detail=f"worker exit code {code}"))
                    else:
                        failed_starts, last_failure = failed_starts + 1, f"worker exit code {code}"
                    replace(w)
                    continue
                if kind == "ready":
                    w.ready, failed_starts = True, 0
                elif kind == "failed":
                    failed_starts, last_failure = failed_starts + 1, rest[0].strip().splitlines()[-1]
                    replace(w)
                else:
                    status, value = rest
                    finish(kind, Outcome("ok", value) if status == "ok" else Outcome(status, detail=value))
                    w.task = None
            now = time.monotonic()
            for w in list(pool):
                if w.task is not None and now >= w.deadline:
                    finish(w.task, Outcome("timeout", detail=f"over {timeout:g}s"))
                    replace(w)
                elif not w.ready and now >= w.started + START_TIMEOUT:
                    failed_starts, last_failure = failed_starts + 1, f"not ready after {START_TIMEOUT:g}s"
                    replace(w)
    finally:
        for w in pool:
            w.stop()
    return results  # type: ignore[return-value]
