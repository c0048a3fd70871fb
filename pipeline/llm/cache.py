"""A persistent request cache for LLM calls, so a rerun (or a resumed run) pays only for new work.

Keys are sha256 digests of the canonical JSON of the request as sent (model, messages, sampling
parameters, response format and schema, seed); values are the finished reply as JSON. Only valid,
complete replies are stored, so a truncated or failed reply is asked again next time.

SQLite in WAL mode: several Beam worker processes may read and write the same file at once (WAL lets
readers run beside the single writer; `busy_timeout` makes a writer wait for the lock instead of
failing). Every put commits by itself, so a `kill -9` loses only the requests then in flight. WAL
needs a local file system (not NFS): on a multi-machine runner give each machine its own path.
That is also why this file is the one artifact that does not go through `webinstruct.core.io`'s
writers: SQLite's own journal is its crash safety, and a URL is refused (`require_local`).
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from typing import Any, Iterable

from webinstruct.core import io as fio

BUSY_TIMEOUT_MS = 30_000


def request_key(request: dict) -> str:
    """sha256 of the request's canonical JSON (sorted keys, no whitespace): equal requests share a
    key whatever their dict order; any change of any field changes it."""
    canon = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


class RequestCache:
    """`key -> JSON value` in an SQLite file; one connection per process and thread."""

    def __init__(self, path: str | os.PathLike):
        self.path = fio.require_local(path, "the LLM request cache (an SQLite file)")
        fio.makedirs(os.path.dirname(os.path.abspath(self.path)))
        self._local = threading.local()
        self._conn()  # create the file and table now, so a bad path fails at construction

    def _conn(self) -> sqlite3.Connection:
        # sqlite3 connections must not cross threads, and a connection inherited through fork
        # shares file locks with the parent: so one per (process, thread).
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=True)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        # Switching to WAL takes an exclusive lock; several workers opening a new file at the same
        # moment can see SQLITE_BUSY here despite busy_timeout, so retry briefly.
        for attempt in range(50):
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
                             "created REAL NOT NULL)")
                break
            except sqlite3.OperationalError as err:
                if ("locked" not in str(err) and "busy" not in str(err)) or attempt == 49:
                    raise
                time.sleep(0.05)
        # NORMAL in WAL mode: a commit survives a process crash (kill -9); only a power loss can drop
        # the last commits, which costs re-asking those requests, not corruption.
        conn.execute("PRAGMA synchronous=NORMAL")
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def get(self, key: str) -> Any | None:
        row = self._conn().execute("SELECT value FROM cache WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The cached values of those keys that are present (one query per 500 keys)."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, Any] = {}
        conn = self._conn()
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            marks = ",".join("?" * len(chunk))
            for key, value in conn.execute(f"SELECT key, value FROM cache WHERE key IN ({marks})", chunk):
                out[key] = json.loads(value)
        return out

    def put(self, key: str, value: Any) -> None:
        # Autocommit (isolation_level=None): the statement is its own transaction, durable on return.
        self._conn().execute("INSERT OR REPLACE INTO cache (key, value, created) VALUES (?, ?, ?)",
                             (key, json.dumps(value, ensure_ascii=False), time.time()))

    def __len__(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM cache").fetchone()[0]

    def __contains__(self, key: str) -> bool:
        return self._conn().execute("SELECT 1 FROM cache WHERE key = ?", (key,)).fetchone() is not None

    def close(self) -> None:
        """Close this thread's connection (others close when their thread's objects are collected)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    def __getstate__(self):
        # Picklable for Beam: the connection is reopened wherever the object lands.
        return {"path": self.path}

    def __setstate__(self, state):
        self.path = state["path"]
        self._local = threading.local()
