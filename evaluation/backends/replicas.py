"""Data parallelism: several copies of a backend, each in a process of its own, answering
contiguous shares of every `generate` call; the answers come back merged in request order.

Each replica is a fresh interpreter (`python -c`, a socket pair to this process, as the grading
pool's workers) started with its own environment: on GPUs `CUDA_VISIBLE_DEVICES` lists the replica's
tp GPUs, so a vLLM engine inside sees exactly those and runs tensor-parallel over them; on a CPU a
replica is pinned to its share of the cores. The backend is built in the replica by a factory
(a module-level callable, pickled by reference, e.g. `make_backend`) with the arguments given, so
the same runner serves vLLM on GPUs and transformers on a CPU (the tests run two hf replicas).

All replicas load at the same time; a replica that fails to load or dies fails the backend with
its error, and `close` stops them all. Replicas die with this process (Linux: SIGTERM when it dies).
"""
from __future__ import annotations

import os
import signal
import subprocess
import traceback
from multiprocessing.connection import Connection
from typing import Any, Callable

from webinstruct.core.procs import die_with_parent, spawn_connected

STOP_WAIT = 60.0  # seconds a replica may take to shut its engine down before it is killed


def _serve(fd: int) -> None:
    """A replica: receive (factory, args, kwargs, cpus), build the backend, say ready, then answer
    lists of requests with lists of generations until told to stop or this process's parent dies."""
    die_with_parent(signal.SIGTERM)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    conn = Connection(fd)
    try:
        factory, args, kwargs, cpus = conn.recv()
        if cpus:
            os.sched_setaffinity(0, cpus)
        backend = factory(*args, **kwargs)
    except BaseException:
        conn.send(("failed", traceback.format_exc(limit=5)))
        return
    try:
        conn.send(("ready", {"name": getattr(backend, "name", ""), "chunk": getattr(backend, "chunk", 0)}))
        while True:
            try:
                requests = conn.recv()
            except (EOFError, OSError):
                return
            if requests is None:
                return
            try:
                reply = ("ok", backend.generate(requests))
            except Exception:
                reply = ("error", traceback.format_exc(limit=5))
            conn.send(reply)
    finally:
        backend.close()


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else text


class _Replica:
    def __init__(self, index: int, factory: Callable, args: tuple, kwargs: dict, env: dict[str, str],
                 cpus: list[int] | None):
        self.index, self.label = index, f"replica {index}" + "".join(
            f" ({k}={v})" for k, v in env.items() if k == "CUDA_VISIBLE_DEVICES")
        self.proc, self.conn = spawn_connected(__name__, "_serve", env)
        try:
            self.conn.send((factory, args, kwargs, cpus))
        except OSError:  # it died at once: receive() reports it
            pass

    def receive(self) -> tuple[str, Any]:
        """The replica's next message; raises RuntimeError when it died instead."""
        while not self.conn.poll(1.0):
            if self.proc.poll() is not None and not self.conn.poll(0):
                raise RuntimeError(f"{self.label} died (exit code {self.proc.returncode})")
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            raise RuntimeError(f"{self.label} died (exit code {self.proc.wait()})") from None

    def ask_stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.conn.send(None)
            except OSError:
                pass

    def stop(self, wait_s: float = STOP_WAIT) -> None:
        """Wait up to `wait_s` for the replica to exit (after `ask_stop`), then terminate it."""
        try:
            self.proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()
        self.conn.close()


def split(n: int, parts: int) -> list[tuple[int, int]]:
    """`parts` contiguous (start, end) ranges covering range(n), sizes differing by at most one."""
    bounds = [n * i // parts for i in range(parts + 1)]
    return list(zip(bounds, bounds[1:]))


class ReplicaBackend:
    """`len(envs)` replicas of `factory(*args, **kwargs)`, replica i started with the variables
    `envs[i]` added to this process's environment and, when `cpus` is given, pinned to the cores
    `cpus[i]`. `generate` gives replica i the i-th contiguous share of the requests."""

    def __init__(self, factory: Callable, args: tuple = (), kwargs: dict | None = None,
                 envs: list[dict[str, str]] | None = None, cpus: list[list[int]] | None = None):
        envs = envs or [{}]
        self.replicas: list[_Replica] = []
        try:
            for i, env in enumerate(envs):
                self.replicas.append(_Replica(i, factory, tuple(args), dict(kwargs or {}), env,
                                              cpus[i] if cpus else None))
            infos = []
            for r in self.replicas:  # they load in parallel; wait for each in turn
                kind, value = r.receive()
                if kind != "ready":
                    raise RuntimeError(f"{r.label} failed to start: {_last_line(value)}\n{value}")
                infos.append(value)
        except BaseException:
            self.close(force=True)
            raise
        self.name = infos[0]["name"]
        # vLLM replicas each want a big chunk: ask `evaluate` for one per replica at a time.
        self.chunk = sum(i["chunk"] for i in infos) if all(i["chunk"] for i in infos) else 0

    @property
    def pids(self) -> list[int]:
        return [r.proc.pid for r in self.replicas]

    def generate(self, requests: list) -> list:
        shares = split(len(requests), len(self.replicas))
        busy = []
        for r, (lo, hi) in zip(self.replicas, shares):
            if hi > lo:
                try:
                    r.conn.send(requests[lo:hi])
                except OSError:  # it died: receive() says how
                    pass
                busy.append(r)
        results: list = []
        errors = []
        for r in busy:  # every reply is read, so the replicas stay in step after an error
            try:
                kind, value = r.receive()
            except RuntimeError as err:
                errors.append(str(err))
                continue
            if kind == "ok":
                results.extend(value)
            else:
                errors.append(f"{r.label}: {_last_line(value)}\n{value}")
        if errors:
            raise RuntimeError("generation failed in " + "; ".join(errors))
        return results

    def close(self, force: bool = False) -> None:
        """Stop the replicas (`force`: at once, without letting their engines shut down)."""
        if not force:
            for r in self.replicas:  # ask them all first: the engines shut down in parallel
                r.ask_stop()
        for r in self.replicas:
            r.stop(0 if force else STOP_WAIT)
        self.replicas = []
