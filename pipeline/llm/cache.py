"""A persistent request cache for LLM calls, so a rerun (or a resumed run) pays only for new work.

Keys are sha256 digests of the canonical JSON of the request as sent (model, messages, sampling
parameters, response format and schema, seed); values are the finished reply as JSON. Only valid,
complete replies are stored, so a truncated or failed reply is asked again next time.

Two stores, chosen by the path (`open_cache`):

- A local path: one SQLite file in WAL mode (`RequestCache`). Several Beam worker processes may read
  and write it at once (WAL lets readers run beside the single writer; `busy_timeout` makes a writer
  wait for the lock instead of failing). Every put commits by itself, so a `kill -9` loses only the
  requests then in flight. WAL needs a local file system (not NFS), which is why this file is the one
  artifact that does not go through `webinstruct.core.io`'s writers: SQLite's own journal is its
  crash safety.
- A URI (`s3://bucket/run/cache/llm.sqlite`, any remote file system of `core.io`): a folder of
  immutable segment files beside it, `llm.segments/seg-*.jsonl.gz` (`SegmentedCache`). Object stores
  cannot append or lock, and workers on other machines cannot share one SQLite file, so each worker
  process keeps its own local SQLite copy: filled from every segment when it first opens the cache,
  written through on each put, and the new entries uploaded as a new segment (one atomic put, a name
  no other process uses) every FLUSH_EVERY entries or FLUSH_SECONDS seconds, when a client closes and
  when the process exits. A `kill -9` therefore loses at most the entries since the last flush
  (those requests are paid again on the rerun), never a segment in part. After the stage, the
  driver merges the segments into one (`compact`), so the next run lists and downloads one object.

  Why not a cache server: it would be one more service to start, secure and keep alive beside the
  LLM servers, and a single point that every worker waits on; segments need nothing but the bucket
  the run already writes to. The price is that each worker process downloads the whole cache once
  (measured in bench/RESULTS.md, "LLM cache on object storage").
"""
from __future__ import annotations

import atexit
import gzip
import hashlib
import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from typing import Any, Iterable, Union

from webinstruct.core import io as fio

BUSY_TIMEOUT_MS = 30_000
FLUSH_EVERY = 256      # new entries that make a segment
FLUSH_SECONDS = 30.0   # or this long since the last flush, whichever comes first
SEGMENTS = ".segments"  # a remote cache path `.../llm.sqlite` is the folder `.../llm.segments/`

log = logging.getLogger(__name__)


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

    def flush(self) -> None:
        """Nothing to do: every put is already durable (the same call as `SegmentedCache.flush`)."""

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


# ---- the cache on object storage ---------------------------------------------------------------

def segments_dir(path: str) -> str:
    """The segment folder of a remote cache path: `.../llm.sqlite` -> `.../llm.segments`."""
    path = os.fspath(path).rstrip("/")
    stem = path[: -len(".sqlite")] if path.endswith(".sqlite") else path
    return stem + SEGMENTS


def _segment_names(folder: str) -> list[str]:
    return [n for n in fio.listdir(folder) if n.startswith("seg-") and n.endswith(".jsonl.gz")]


def _write_segment(folder: str, name: str, entries: Iterable[tuple[str, str]]) -> None:
    """One segment file, `key<TAB>value JSON` lines gzipped, written in one put."""
    body = "".join(f"{k}\t{v}\n" for k, v in entries).encode("utf-8")
    fio.write_atomic(fio.join(folder, name), gzip.compress(body, compresslevel=6, mtime=0))


def _segment_lines(data: bytes) -> Iterable[tuple[str, str]]:
    """(key, value JSON) of each whole line of a segment's gzipped bytes."""
    for line in gzip.decompress(data).decode("utf-8").splitlines():
        if line:
            key, _, value = line.partition("\t")
            yield key, value


class _Store:
    """One process's local copy of a remote cache, shared by every SegmentedCache of that URI."""

    def __init__(self, folder: str):
        self.folder = folder
        self.tmp = fio.process_temp_dir("webinstruct-llm-cache-")
        self.local = RequestCache(os.path.join(self.tmp, "cache.sqlite"))
        self.loaded: set[str] = set()
        self.pending: list[tuple[str, str]] = []
        self.last_flush = time.monotonic()
        self.lock = threading.Lock()
        self.load()

    def load(self) -> None:
        """Load the segments not yet loaded into the local copy."""
        new = [n for n in _segment_names(self.folder) if n not in self.loaded]
        if not new:
            return
        blobs = fio.read_many([fio.join(self.folder, n) for n in new])
        n_entries = 0
        conn = self.local._conn()
        conn.execute("BEGIN")
        try:
            for name, data in zip(new, blobs):
                if data is None:  # merged away by a compaction since the listing: its entries are in the merged one
                    continue
                rows = [(k, v, 0.0) for k, v in _segment_lines(data)]
                conn.executemany("INSERT OR REPLACE INTO cache (key, value, created) VALUES (?, ?, ?)", rows)
                n_entries += len(rows)
                self.loaded.add(name)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.debug("LLM cache: loaded %d entries from %d segments of %s", n_entries, len(new), self.folder)

    def put(self, key: str, value: Any) -> None:
        self.local.put(key, value)
        with self.lock:
            self.pending.append((key, json.dumps(value, ensure_ascii=False)))
            due = len(self.pending) >= FLUSH_EVERY or time.monotonic() - self.last_flush >= FLUSH_SECONDS
        if due:
            self.flush()

    def flush(self) -> None:
        with self.lock:
            pending, self.pending = self.pending, []
            self.last_flush = time.monotonic()
        if not pending:
            return
        name = f"seg-{time.time_ns():020d}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl.gz"
        try:
            _write_segment(self.folder, name, pending)
        except BaseException:
            with self.lock:  # not lost: the next flush tries again
                self.pending[:0] = pending
            raise
        self.loaded.add(name)


_STORES: dict[tuple[int, str], _Store] = {}
_STORES_LOCK = threading.Lock()


def _store(folder: str) -> _Store:
    with _STORES_LOCK:
        key = (os.getpid(), folder)
        store = _STORES.get(key)
        if store is None:
            store = _STORES[key] = _Store(folder)
        return store


@atexit.register
def _flush_all() -> None:
    for (pid, folder), store in list(_STORES.items()):
        if pid == os.getpid():
            try:
                store.flush()
            except Exception as err:  # at exit there is no one left to raise to
                log.warning("LLM cache: could not write the last entries to %s: %s", folder, err)


class SegmentedCache:
    """The request cache of a remote run (see the module docstring): the same calls as
    `RequestCache`, over a folder of segment files. Picklable; each process loads the segments
    once, on first use."""

    def __init__(self, path: str):
        self.path = os.fspath(path)
        self.folder = segments_dir(self.path)

    @property
    def _s(self) -> _Store:
        return _store(self.folder)

    def get(self, key: str) -> Any | None:
        return self._s.local.get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return self._s.local.get_many(keys)

    def put(self, key: str, value: Any) -> None:
        self._s.put(key, value)

    def flush(self) -> None:
        """Upload the entries not yet in a segment (the LLM client calls this when it closes)."""
        self._s.flush()

    def close(self) -> None:
        self.flush()

    def __len__(self) -> int:
        return len(self._s.local)

    def __contains__(self, key: str) -> bool:
        return key in self._s.local

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        self.__init__(state["path"])


Cache = Union[RequestCache, SegmentedCache]


def open_cache(path: str | os.PathLike) -> Cache:
    """The request cache at `path`: SQLite for a local path, segment files for a URI."""
    return SegmentedCache(os.fspath(path)) if fio.is_remote(path) else RequestCache(path)


def compact(path: str | os.PathLike) -> int:
    """Merge a remote cache's segments into one (run by the driver once a stage's workers are
    done; nothing else writes then). Returns the number of segments merged; 0 for a local cache.
    The merged segment is written before the merged ones are deleted, so a kill in between leaves
    duplicates (harmless), never a loss."""
    if not fio.is_remote(path):
        return 0
    folder = segments_dir(os.fspath(path))
    names = _segment_names(folder)
    if len(names) < 2:
        return 0
    entries: dict[str, str] = {}
    for data in fio.read_many([fio.join(folder, n) for n in names]):
        if data is not None:
            entries.update(_segment_lines(data))
    _write_segment(folder, f"seg-{time.time_ns():020d}-merged-{len(entries)}.jsonl.gz", sorted(entries.items()))
    fio.remove([fio.join(folder, n) for n in names])
    log.info("LLM cache: merged %d segments (%d entries) of %s", len(names), len(entries), folder)
    return len(names)
