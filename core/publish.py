"""Complete-or-absent stage outputs: a completion marker, a lock per stage folder, stale temporaries.

A stage (recall, extract, refine, augment) writes its folder RUN/<stage>/ in place: shards
`part-NNNNN-of-MMMMM.jsonl.gz` (each written atomically by a Beam worker), extra data files
(recall's domains.jsonl.gz, refine's contaminated pages), stats.json and config.json. Those files
appear one by one, at different moments and from different processes, so a kill -9 in the middle
leaves a mix of new files and an earlier run's. What makes the folder a stage's output is the
completion marker `_SUCCESS`, written by the driver as the very last step, after every worker has
finished:

    {"format": 1, "stage": "recall", "created": "2026-12-01T21:00:00Z",
     "shards": {"part-00000-of-00002.jsonl.gz": {"bytes": 1234, "sha256": "..."}, ...},
     "files":  {"stats.json": {...}, "config.json": {...}, "domains.jsonl.gz": {...}}}

`stage_output(directory, stage)` is what a stage runs inside: it takes the folder's lock, deletes
the marker *first* (so from that moment on, and after any kill, the folder is refused), deletes
stale temporary files (`.NAME.XXXX.tmp` left by an atomic write that a kill or a full disk
interrupted), and `publish` writes the marker. Shards of an earlier run with another shard count
are removed by the stage itself (`pipeline.stage.finish`) before it publishes.

Readers (`complete_shards`, and `shards.read_shards` on top of it) refuse a folder without a valid
marker, or whose listed files are missing or of another size, with one line naming the folder and
the command that rewrites it. Sizes are checked on every read (one stat per file); the sha256 of
each file is recorded for `complete_shards(..., deep=True)` and anyone checking a copied run.

Lock: on a local disk, `fcntl.flock` on RUN/<stage>/.lock, taken without waiting and held for the
whole run; a second run into the same folder fails at once naming the pid that holds it. The
kernel drops the lock when the holder dies (even by SIGKILL), so there is never a stale lock to
remove. Remote folders (s3://, gs://, ...): object stores have no locks, so none is taken; two
concurrent runs into one remote folder are not detected (the marker still makes a reader see one
complete run or a refused folder, but which run's files it lists is whichever published last, and
the shards may be a mix: run one writer per remote run folder).
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import os
from typing import Any, Iterable, Iterator

from webinstruct.core import io as fio

log = logging.getLogger(__name__)

SHARD_GLOB = "part-*.jsonl.gz"
MARKER = "_SUCCESS"
LOCK = ".lock"
FORMAT = 1
# The files a stage leaves besides its shards; listed in the marker when present.
STAGE_FILES = ("stats.json", "config.json")
# How to rewrite each stage's folder, for the messages of a refused folder.
STAGE_COMMANDS = {
    "recall": "`make recall` (webinstruct recall)",
    "extract": "`make extract` (webinstruct extract)",
    "refine": "`make refine` (webinstruct refine)",
    "augment": "`make augment` (webinstruct augment)",
}
_TEMP_GLOBS = (".*.tmp", ".*.tmp-*")


class MissingInput(FileNotFoundError):
    """A stage's input is absent: the message says which command produces it."""


class StageIncomplete(MissingInput):
    """A stage folder without a valid completion marker (a run was stopped before it finished, or
    files were changed since): the message names the folder and the command that rewrites it."""


class StageBusy(ValueError):
    """Another run holds the stage folder's lock."""


def command_for(directory: str, produced_by: str = "") -> str:
    """The command that writes `directory`, as shown in messages: a stage name gives its make
    target and webinstruct command, any other text is shown as a command, nothing: the folder's
    name is tried as a stage name."""
    if produced_by in STAGE_COMMANDS:
        return STAGE_COMMANDS[produced_by]
    if produced_by:
        return f"`{produced_by}`"
    return STAGE_COMMANDS.get(fio.basename(os.fspath(directory)), "the stage that writes it")


# ---- the marker -------------------------------------------------------------------------------

def _digest(path: str) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    with fio.open(path, "rb", compression=None) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            n += len(block)
    return n, h.hexdigest()


def _entry(path: str) -> dict[str, Any]:
    n, sha = _digest(path)
    return {"bytes": n, "sha256": sha}


def publish(directory: str, stage: str = "", files: Iterable[str] = ()) -> dict[str, Any]:
    """Write `directory`'s completion marker: every shard now in it, `files` (names relative to the
    folder, e.g. "domains.jsonl.gz", "export/webinstruct.parquet") and stats.json / config.json
    when present, each with its size and sha256. Call it last, once everything is written; the
    marker itself is written atomically. Returns the marker."""
    directory = os.fspath(directory)
    shard_paths = fio.glob(fio.join(directory, SHARD_GLOB))
    names = list(dict.fromkeys([*files, *(f for f in STAGE_FILES if fio.exists(fio.join(directory, f)))]))
    marker = {
        "format": FORMAT,
        "stage": stage or fio.basename(directory),
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "shards": {fio.basename(p): _entry(p) for p in shard_paths},
        "files": {name: _entry(fio.join(directory, name)) for name in names},
    }
    fio.write_json(fio.join(directory, MARKER), marker)
    return marker


def read_marker(directory: str) -> dict[str, Any] | None:
    """The folder's marker, or None when there is none; ValueError when it is not a marker."""
    try:
        marker = fio.read_json(fio.join(directory, MARKER))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"unreadable {MARKER} ({err})") from None
    ok = (isinstance(marker, dict) and marker.get("format") == FORMAT
          and all(isinstance(marker.get(k), dict) for k in ("shards", "files"))
          and all(isinstance(v, dict) and isinstance(v.get("bytes"), int)
                  for k in ("shards", "files") for v in marker[k].values()))
    if not ok:
        raise ValueError(f"{MARKER} is not a completion marker of format {FORMAT}")
    return marker


def _problem(directory: str, marker: dict[str, Any], deep: bool) -> str:
    """Why the files do not match the marker, or ""."""
    for section in ("shards", "files"):
        for name, meta in sorted(marker[section].items()):
            path = fio.join(directory, name)
            try:
                n = fio.size(path)
            except FileNotFoundError:
                return f"{name} listed in {MARKER} is missing"
            if n != meta["bytes"]:
                return f"{name} has {n} bytes, {MARKER} says {meta['bytes']}"
            if deep and meta.get("sha256") and _digest(path)[1] != meta["sha256"]:
                return f"{name} does not have the sha256 {MARKER} lists"
    return ""


def complete_shards(directory: str, produced_by: str = "", deep: bool = False) -> list[str]:
    """The shards of a complete stage folder (those its marker lists, in name order); see
    `complete_marker` for the errors."""
    directory = os.fspath(directory)
    marker = complete_marker(directory, produced_by, deep)
    return [fio.join(directory, name) for name in sorted(marker["shards"])]


def complete_marker(directory: str, produced_by: str = "", deep: bool = False) -> dict[str, Any]:
    """The marker of a complete stage folder, its listed shards and files checked.

    MissingInput when the folder holds no shards and no marker (the stage never ran there);
    StageIncomplete when it has files but no marker, an unreadable marker, or a listed file that
    is missing or of another size (`deep`: or of another sha256)."""
    directory = os.fspath(directory)
    cmd = command_for(directory, produced_by)
    try:
        marker = read_marker(directory)
    except ValueError as err:
        raise StageIncomplete(f"{directory} is incomplete ({err}): rerun {cmd}") from None
    if marker is None:
        if not fio.glob(fio.join(directory, SHARD_GLOB)):
            if was_started(directory):
                raise StageIncomplete(f"{directory} is incomplete (no shards and no {MARKER}: its last run stopped "
                                      f"before writing any): rerun {cmd}")
            raise MissingInput(f"no shards ({SHARD_GLOB}) in {directory}: run {cmd} first")
        raise StageIncomplete(f"{directory} is incomplete (no {MARKER}: its last run did not finish): rerun {cmd}")
    problem = _problem(directory, marker, deep)
    if problem:
        raise StageIncomplete(f"{directory} is incomplete ({problem}): rerun {cmd}")
    return marker


def was_started(directory: str) -> bool:
    """Whether a stage run has worked in `directory` (it leaves its lock file there), finished or not."""
    return fio.exists(fio.join(os.fspath(directory), LOCK))


def is_complete(directory: str, deep: bool = False) -> bool:
    """Whether `directory` is a complete stage folder (see `complete_shards`)."""
    try:
        complete_shards(directory, deep=deep)
    except MissingInput:
        return False
    return True


# ---- writing a stage folder -------------------------------------------------------------------

def clean_temporaries(directory: str) -> list[str]:
    """Delete the hidden temporary files of interrupted atomic writes (`.NAME.XXXX.tmp`) in
    `directory` and its subfolders (one level down on a remote file system); return them. Only
    for a folder this process holds the lock of: a live writer's temporaries look the same."""
    directory = os.fspath(directory)
    found: list[str] = []
    if not fio.is_remote(directory):
        import fnmatch

        for root, _, names in os.walk(fio.local_path(directory)):
            found += [os.path.join(root, n) for n in names if any(fnmatch.fnmatch(n, g) for g in _TEMP_GLOBS)]
    else:
        for pattern in _TEMP_GLOBS:
            found += fio.glob(fio.join(directory, pattern)) + fio.glob(fio.join(directory, "*", pattern))
    found = sorted(set(found))
    fio.remove(found)
    if found:
        log.info("removed %d stale temporary file(s) in %s", len(found), directory)
    return found


@contextlib.contextmanager
def lock(directory: str) -> Iterator[None]:
    """Hold `directory`'s lock (a local folder; see the module's docstring) for the block, or raise
    StageBusy at once when another process holds it. Remote folders: no lock is taken."""
    directory = os.fspath(directory)
    if fio.is_remote(directory):
        log.debug("no lock for the remote folder %s: run one writer at a time", directory)
        yield
        return
    import fcntl

    local = fio.local_path(directory)
    os.makedirs(local, exist_ok=True)
    fd = os.open(os.path.join(local, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise StageBusy(f"{directory} is being written by another run (pid {holder}); wait for it to "
                            "finish or stop it, then run again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class StageOutput:
    """The folder a stage is writing (see `stage_output`)."""

    def __init__(self, directory: str, stage: str):
        self.directory, self.stage = directory, stage

    def publish(self, files: Iterable[str] = ()) -> dict[str, Any]:
        """The stage's last step: write the completion marker (see `publish`)."""
        return publish(self.directory, self.stage, files)


@contextlib.contextmanager
def stage_output(directory: str, stage: str) -> Iterator[StageOutput]:
    """Write a stage folder: lock it, remove its marker (a kill from here on leaves a folder that
    readers refuse), remove stale temporaries; the stage calls `.publish()` as its last step."""
    directory = os.fspath(directory)
    fio.makedirs(directory)
    with lock(directory):
        fio.remove(fio.join(directory, MARKER))
        clean_temporaries(directory)
        yield StageOutput(directory, stage)
