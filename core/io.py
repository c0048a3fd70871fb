"""The one way webinstruct opens, lists, checks and writes its files, local or remote.

Every artifact a run leaves behind (stage shards, stats and config JSON, the recall classifier, the
decontamination index, the exports, the dataset card, reports, evaluation predictions, the local
server's state file) goes through this module, so where a run lives is a matter of its path:
`runs/x`, `/data/runs/x`, `s3://bucket/runs/x`, `gs://...`, or `memory://...` in tests.

Why fsspec (and not Beam's `FileSystems`): fsspec is a single API over the local disk, object
stores (s3fs, gcsfs, adlfs) and an in-memory file system, which lets the tests round-trip remote
paths without a server; it supports appending and compressed text files; and it is independent
of Beam, so training and evaluation, which never start a Beam pipeline, use the same code. Beam's
`FileSystems` has no in-memory file system and no append.

Local paths never go through fsspec: they are handled with the standard library, so a relative
path stays relative in what `glob` returns, appends are real O_APPEND writes followed by fsync,
and an atomic write is a temporary file in the target's directory, fsync'd and renamed over the
target (`os.replace`). A killed process therefore never leaves a half-written file under a real
name, only a hidden `.NAME.*.tmp` beside it. On an object store a single upload is already atomic
(readers see the old object or the whole new one), so the same functions write the final key in
one put and never rename. `file://` URIs are treated as local paths.
"""
from __future__ import annotations

import builtins
import contextlib
import glob as _glob
import gzip
import json
import lzma
import os
import shutil
import tempfile
from typing import IO, Any, Callable, Iterable, Iterator

ATOMIC_MODE = 0o644  # mkstemp makes 0600; artifacts are meant for everyone who can read the run


# ---- paths ------------------------------------------------------------------------------------

def _protocol(path: str) -> str:
    head, sep, _ = str(path).partition("://")
    return head.lower() if sep and head.isidentifier() else ""


def is_remote(path: str | os.PathLike) -> bool:
    """Whether `path` is a URI of a non-local file system (`s3://`, `gs://`, `memory://`, ...)."""
    return _protocol(os.fspath(path)) not in ("", "file")


def local_path(path: str | os.PathLike) -> str:
    """A local path as a plain string (a `file://` URI loses its scheme); a remote URI as given."""
    path = os.fspath(path)
    return path[len("file://"):] if _protocol(path) == "file" else path


def require_local(path: str | os.PathLike, what: str) -> str:
    """`path` as a local path, or ValueError naming `what` needs a local file."""
    if is_remote(path):
        raise ValueError(f"{what} needs a local path, got {os.fspath(path)!r}")
    return local_path(path)


def _fs(path: str):
    from fsspec.core import url_to_fs

    return url_to_fs(path)


def join(directory: str | os.PathLike, *names: str) -> str:
    directory = os.fspath(directory)
    if is_remote(directory):
        return "/".join([directory.rstrip("/"), *(n.strip("/") for n in names)])
    return os.path.join(directory, *names)


def absolute(path: str | os.PathLike) -> str:
    """A local path made absolute (against this process's working directory); a URI as given."""
    path = os.fspath(path)
    return path if is_remote(path) else os.path.abspath(local_path(path))


def dirname(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    if is_remote(path):
        scheme, rest = path.split("://", 1)
        return f"{scheme}://{rest.rstrip('/').rpartition('/')[0]}"
    return os.path.dirname(local_path(path))


def basename(path: str | os.PathLike) -> str:
    return os.fspath(path).rstrip("/").rsplit("/", 1)[-1]


# Beam's S3 pipeline options and the AWS variables boto3 (so s3fs, so this module) reads instead.
BEAM_S3_OPTIONS = {
    "s3_access_key_id": "AWS_ACCESS_KEY_ID",
    "s3_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "s3_session_token": "AWS_SESSION_TOKEN",
    "s3_region_name": "AWS_DEFAULT_REGION",
    "s3_endpoint_url": "AWS_ENDPOINT_URL_S3",
}


def use_beam_s3_options(tokens: Iterable[str]) -> dict[str, str]:
    """Beam's S3 options among pipeline-option tokens (`--s3_endpoint_url=URL`, ...) as the AWS
    environment variables of this process, so the launcher and the workers it starts (local,
    multiprocess, a local Dask cluster) reach the same bucket the same way. Given options win
    over variables already set. Returns the variables set (values of secrets included)."""
    found: dict[str, str] = {}
    tokens = list(tokens)
    for i, token in enumerate(tokens):
        name, eq, value = token.lstrip("-").partition("=")
        if name in BEAM_S3_OPTIONS and token.startswith("--"):
            if not eq and i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                value = tokens[i + 1]
            found[BEAM_S3_OPTIONS[name]] = value
    os.environ.update(found)
    return found


# ---- checking and listing ---------------------------------------------------------------------

def _ask(path: str | os.PathLike, local: Callable[[str], Any], remote: str) -> Any:
    """`local(path)` for a local path, else the fsspec file system's method `remote`."""
    path = os.fspath(path)
    if not is_remote(path):
        return local(local_path(path))
    fs, p = _fs(path)
    return getattr(fs, remote)(p)


def exists(path: str | os.PathLike) -> bool:
    return _ask(path, os.path.exists, "exists")


def isdir(path: str | os.PathLike) -> bool:
    return _ask(path, os.path.isdir, "isdir")


def isfile(path: str | os.PathLike) -> bool:
    return _ask(path, os.path.isfile, "isfile")


def size(path: str | os.PathLike) -> int:
    return int(_ask(path, os.path.getsize, "size"))


def glob(pattern: str | os.PathLike) -> list[str]:
    """Sorted paths matching `pattern`, spelled the way the pattern is (a relative pattern gives
    relative paths, `memory://x/*` gives `memory://x/...`). Hidden files (leading dot, such as an
    atomic write's temporary file) match only a pattern that names the dot."""
    pattern = os.fspath(pattern)
    if not is_remote(pattern):
        return sorted(_glob.glob(local_path(pattern)))
    fs, stripped = _fs(pattern)
    scheme, rest = pattern.split("://", 1)
    # fsspec returns paths without the scheme, sometimes with a leading "/" the URI did not have
    # (memory://x -> /x): put back what the caller wrote.
    lead = stripped[:len(stripped) - len(rest)] if stripped.endswith(rest) else ""
    out = []
    for p in fs.glob(stripped):
        if fs.isdir(p):
            continue
        p = p[len(lead):] if lead and p.startswith(lead) else p
        out.append(f"{scheme}://{p}")
    return sorted(out)


def fsspec_paths(paths: list[str]) -> tuple[Any, list[str]]:
    """The fsspec file system of URIs of one scheme and their paths on it, for libraries that take
    an fsspec file system (pyarrow's datasets) or for batched calls."""
    if not paths or not all(is_remote(p) for p in paths) or len({_protocol(p) for p in paths}) != 1:
        raise ValueError("fsspec_paths: give URIs of one scheme")
    fs, _ = _fs(paths[0])
    return fs, [_fs(p)[1] for p in paths]


def listdir(directory: str | os.PathLike) -> list[str]:
    """Names (not paths) of the entries of `directory`, sorted; [] when it does not exist."""
    directory = os.fspath(directory)
    if not is_remote(directory):
        d = local_path(directory)
        return sorted(os.listdir(d)) if os.path.isdir(d) else []
    fs, p = _fs(directory)
    if not fs.isdir(p):
        return []
    return sorted(basename(e) for e in fs.ls(p, detail=False))


def makedirs(directory: str | os.PathLike) -> None:
    directory = os.fspath(directory)
    if not directory:
        return
    if not is_remote(directory):
        os.makedirs(local_path(directory), exist_ok=True)
        return
    fs, p = _fs(directory)
    fs.makedirs(p, exist_ok=True)


def remove(paths: str | os.PathLike | Iterable[str | os.PathLike], missing_ok: bool = True) -> None:
    """Delete files (one path or several)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [os.fspath(p) for p in paths]
    remote = [p for p in paths if is_remote(p)]
    if len(remote) > 1 and missing_ok and len({_protocol(p) for p in remote}) == 1:
        # Many objects: one bulk request per thousand keys where the store has it (S3's
        # DeleteObjects), instead of an existence check and a delete for each.
        fs, stripped = fsspec_paths(remote)
        try:
            fs.rm(stripped)
        except FileNotFoundError:
            pass  # some were gone already: the loop below deletes the rest one by one
        else:
            paths = [p for p in paths if not is_remote(p)]
    for path in paths:
        if not is_remote(path):
            try:
                os.remove(local_path(path))
            except FileNotFoundError:
                if not missing_ok:
                    raise
            continue
        fs, p = _fs(path)
        if fs.exists(p):
            fs.rm_file(p)
        elif not missing_ok:
            raise FileNotFoundError(path)


# ---- reading ----------------------------------------------------------------------------------

def _compression(path: str) -> str | None:
    if path.endswith(".gz"):
        return "gzip"
    if path.endswith(".xz"):
        return "xz"
    return None


def open(path: str | os.PathLike, mode: str = "r", *, compression: str | None = "infer",
         encoding: str = "utf-8", errors: str | None = None) -> IO:
    """A file object for `path`: text unless `mode` has "b"; gzip or xz (de)compression chosen by
    the `.gz` / `.xz` suffix unless `compression` says otherwise (None: the raw bytes).

    Writing with "w" here is not atomic: artifacts go through `atomic_writer` / `write_atomic`.
    "a" appends (remote file systems that cannot append raise; `append_lines` handles them)."""
    path = os.fspath(path)
    comp = _compression(path) if compression == "infer" else compression
    binary = "b" in mode
    text_args = {} if binary else {"encoding": encoding, "errors": errors}
    if not is_remote(path):
        p = local_path(path)
        if comp == "gzip":
            return gzip.open(p, mode if binary else mode.replace("t", "") + "t", **text_args)
        if comp == "xz":
            return lzma.open(p, mode if binary else mode.replace("t", "") + "t", **text_args)
        if comp is not None:
            raise ValueError(f"unknown compression {comp!r}")
        return builtins.open(p, mode, **text_args)
    import fsspec

    return fsspec.open(path, mode, compression=comp, **text_args).open()


def read_bytes(path: str | os.PathLike) -> bytes:
    """The raw bytes of `path` (no decompression)."""
    with open(path, "rb", compression=None) as fh:
        return fh.read()


def read_text(path: str | os.PathLike, errors: str | None = None) -> str:
    """The text of `path`, decompressed by suffix."""
    with open(path, "r", errors=errors) as fh:
        return fh.read()


def read_many(paths: list[str]) -> list[bytes | None]:
    """The raw bytes of each path, None for one that does not exist. URIs of one scheme are fetched
    in one concurrent batch (s3fs, gcsfs), which matters for hundreds of small objects."""
    paths = [os.fspath(p) for p in paths]
    if paths and all(is_remote(p) for p in paths) and len({_protocol(p) for p in paths}) == 1:
        fs, stripped = fsspec_paths(paths)
        got = fs.cat(stripped, on_error="return")
        return [v if isinstance(v, (bytes, bytearray)) else None for v in (got.get(p) for p in stripped)]
    out: list[bytes | None] = []
    for path in paths:
        try:
            out.append(read_bytes(path))
        except FileNotFoundError:
            out.append(None)
    return out


def read_json(path: str | os.PathLike) -> Any:
    with open(path, "r", compression=None) as fh:
        return json.load(fh)


@contextlib.contextmanager
def local_copy(path: str | os.PathLike) -> Iterator[str]:
    """A local file name holding `path`'s bytes, for libraries that only read local files
    (fastText, numpy's mmap): the path itself when local, else a downloaded temporary copy that
    is deleted afterwards."""
    path = os.fspath(path)
    if not is_remote(path):
        yield local_path(path)
        return
    with tempfile.TemporaryDirectory(prefix="webinstruct-") as tmp:
        copy = os.path.join(tmp, basename(path))
        fs, p = _fs(path)
        fs.get_file(p, copy)
        yield copy


@contextlib.contextmanager
def scratch_file(near: str | os.PathLike, prefix: str = ".scratch.", suffix: str = ".tmp") -> Iterator[str]:
    """A local temporary file name, deleted afterwards: in `near`'s directory when that is local
    (same disk as the output, not a possibly small /tmp), else in the system temp directory."""
    near = os.fspath(near)
    directory = None
    if not is_remote(near):
        directory = os.path.dirname(os.path.abspath(local_path(near)))
        os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    os.close(fd)
    try:
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def process_temp_dir(prefix: str = "webinstruct-") -> str:
    """A local temporary directory that lives as long as this process (removed at exit), for
    state a long-lived object keeps beside a remote run, such as a worker's copy of the LLM cache."""
    import atexit

    directory = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, directory, True)
    return directory


# ---- writing ----------------------------------------------------------------------------------

def fsync_dir(directory: str | os.PathLike) -> None:
    """Make a rename or a new file in `directory` durable (best effort: some file systems refuse)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """A local temporary file name to write; when the block ends without an exception its content
    becomes `path` in one step, otherwise `path` is left as it was and the temporary is deleted.

    Local: the temporary is `.NAME.XXXX.tmp` in the target's directory; it is fsync'd, made
    world-readable (0644) and renamed over the target. Remote: the temporary is in the system temp
    directory and is uploaded to `path` in a single put. This is the one atomic writer of the
    project; `atomic_writer`, `write_atomic` and `write_json` are built on it."""
    path = os.fspath(path)
    remote = is_remote(path)
    if remote:
        directory = None
    else:
        path = local_path(path)
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{basename(path)}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        yield tmp
        if remote:
            fs, p = _fs(path)
            parent = fs._parent(p)
            if parent:
                fs.makedirs(parent, exist_ok=True)
            fs.put_file(tmp, p)
        else:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(tmp, ATOMIC_MODE)
            os.replace(tmp, path)
            fsync_dir(directory)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb", encoding: str = "utf-8") -> Iterator[IO]:
    """A file object whose content replaces `path` atomically when the block ends cleanly
    (see `atomic_path`). "w" for text, "wb" for bytes; no compression is applied."""
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_writer writes a whole file: mode 'w' or 'wb', not {mode!r}")
    with atomic_path(path) as tmp:
        with builtins.open(tmp, mode, **({} if "b" in mode else {"encoding": encoding})) as fh:
            yield fh


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write `data` (str is written as UTF-8) to `path` so that readers see the old content or the
    whole new one, never part of it."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    elif not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"write_atomic takes bytes or str, not {type(data).__name__}")
    with atomic_writer(path, "wb") as fh:
        fh.write(data)


def write_atomic_with(path: str | os.PathLike, write: Callable[[str], Any]) -> None:
    """Atomically replace `path` with what `write(local_tmp_name)` writes to a local file name
    (for writers that only take a file name, such as fastText's save_model)."""
    with atomic_path(path) as tmp:
        write(tmp)


def write_json(path: str | os.PathLike, obj: Any, *, sort_keys: bool = True, indent: int | None = 2,
               default: Callable[[Any], Any] | None = None) -> None:
    """Write a JSON document atomically (UTF-8, a trailing newline)."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=False, default=default) + "\n"
    write_atomic(path, text)


def append_lines(path: str | os.PathLike, lines: Iterable[str], durable: bool = True) -> None:
    """Append text lines (each must end with a newline) to `path`, creating it and its directory.

    Local: one O_APPEND write stream, flushed and (when `durable`) fsync'd before returning, so a
    kill -9 afterwards loses nothing and a kill during it leaves at most one torn last line (see
    `trim_partial_line`). Remote object stores cannot append: the whole file is rewritten in one
    put, so a reader sees the old lines or all of them."""
    path = os.fspath(path)
    lines = list(lines)
    if not is_remote(path):
        p = local_path(path)
        os.makedirs(os.path.dirname(os.path.abspath(p)), exist_ok=True)
        with builtins.open(p, "a", encoding="utf-8") as fh:
            fh.writelines(lines)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        return
    old = read_bytes(path) if exists(path) else b""
    write_atomic(path, old + "".join(lines).encode("utf-8"))


def trim_partial_line(path: str | os.PathLike) -> int:
    """Cut a last line without its newline (a write torn by a kill) off `path`; return the number
    of bytes removed (0 when the file is whole or absent)."""
    path = os.fspath(path)
    if not isfile(path):
        return 0
    if not is_remote(path):
        p = local_path(path)
        with builtins.open(p, "r+b") as fh:
            end = fh.seek(0, os.SEEK_END)
            # Scan back from the end for the last newline, a block at a time.
            pos, keep = end, 0
            while pos > 0:
                step = min(65536, pos)
                pos -= step
                fh.seek(pos)
                at = fh.read(step).rfind(b"\n")
                if at >= 0:
                    keep = pos + at + 1
                    break
            if keep < end:
                fh.truncate(keep)
                fh.flush()
                os.fsync(fh.fileno())
        return end - keep
    data = read_bytes(path)
    keep = data.rfind(b"\n") + 1
    if keep < len(data):
        write_atomic(path, data[:keep])
    return len(data) - keep


def copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy one file, atomically at the destination, between any two file systems."""
    with open(src, "rb", compression=None) as fin, atomic_writer(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
