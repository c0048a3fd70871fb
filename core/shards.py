"""Stage shards: gzipped JSON lines with deterministic names and bytes, written atomically.

Why gzipped JSON lines rather than Parquet: records are nested and change per stage (LLM outputs,
provenance lists), every tool can read them (`zcat | jq`), a shard can be written as a stream
without holding a row group in memory, and Beam reads them natively on any runner. Parquet export
of the final dataset is a separate step where column types are settled.

This module is the shard format only; every open, listing and write goes through
`webinstruct.core.io`, so a run directory may be local or any fsspec URL (`s3://`, `gs://`,
`memory://`), and a shard appears under its real name only once it is complete. A stage folder as
a whole is complete only with its `_SUCCESS` marker (core/publish.py): `read_shards` and
`complete_shards` refuse a folder without one.
"""
from __future__ import annotations

import gzip
import io
import json
import zlib
from typing import Any, Iterable, Iterator

from webinstruct.core import io as fio
from webinstruct.core import publish as _publish
from webinstruct.core.publish import (MARKER, SHARD_GLOB, MissingInput, StageBusy, StageIncomplete,  # noqa: F401
                                      complete_shards, is_complete, stage_output)
from webinstruct.core.schema import validate
from webinstruct.core.resources import bundled

# The names other modules use from here: the same functions as webinstruct.core.io.
join, makedirs, exists, read_json = fio.join, fio.makedirs, fio.exists, fio.read_json


def open_text(path) -> io.TextIOBase:
    """A UTF-8 text file for reading: plain, gzip (`.gz`) or xz (`.xz`), by its name.

    For the bundled data files (seeds, benchmarks) and user-given training files. A relative
    `data/...` path that does not exist from the working directory is read from the installed
    package."""
    return fio.open(bundled(str(path)), "r")


def shard_name(index: int, count: int) -> str:
    return f"part-{index:05d}-of-{count:05d}.jsonl.gz"

def encode_records(records: Iterable[dict[str, Any]], schema: type | None = None) -> tuple[bytes, int]:
    """Gzip a stream of records as JSON lines; mtime 0 so identical records give identical bytes."""
    buf = io.BytesIO()
    count = 0
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=6) as gz:
        for rec in records:
            if schema is not None:
                validate(rec, schema)
            gz.write(json.dumps(rec, ensure_ascii=False, sort_keys=True).encode("utf-8"))
            gz.write(b"\n")
            count += 1
    return buf.getvalue(), count


def write_shard(path: str, records: Iterable[dict[str, Any]], schema: type | None = None) -> int:
    """Write records to one shard atomically; return how many were written."""
    data, count = encode_records(records, schema)
    fio.write_atomic(path, data)
    return count


def write_json(path: str, obj: Any) -> None:
    """Write a JSON document (stats, metadata) atomically, keys sorted."""
    fio.write_json(path, obj, sort_keys=True)


def list_shards(directory: str, pattern: str = SHARD_GLOB) -> list[str]:
    return fio.glob(fio.join(directory, pattern))


class ShardUnreadable(ValueError):
    """A shard that cannot be read to its end (truncated, not gzip, a line that is not JSON): the
    message names the file and, where known, the line."""


def iter_shard(path: str, schema: type | None = None) -> Iterator[dict[str, Any]]:
    """The records of one shard. A shard cut short, not gzip, or with a line that is not JSON
    raises `ShardUnreadable` naming `path:line`."""
    lineno = 0
    try:
        with fio.open(path, "rb", compression=None) as raw:
            with gzip.GzipFile(fileobj=raw) as gz:
                for lineno, line in enumerate(io.TextIOWrapper(gz, encoding="utf-8"), 1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError as err:
                        raise ShardUnreadable(f"{path}:{lineno}: not a JSON line ({err})") from None
                    yield validate(rec, schema) if schema is not None else rec
    except (EOFError, zlib.error, gzip.BadGzipFile, UnicodeDecodeError) as err:
        what = ("truncated shard: its gzip stream ends" if isinstance(err, EOFError)
                else f"unreadable shard ({type(err).__name__}: {err}),")
        raise ShardUnreadable(f"{path}:{lineno + 1}: {what} after line {lineno}; rerun the stage that wrote it") \
            from err


def read_shards(directory: str, schema: type | None = None, produced_by: str = "") -> Iterator[dict[str, Any]]:
    """Every record of a stage directory, shard by shard in name order.

    The folder must be complete (its `_SUCCESS` marker lists its shards, see core/publish.py):
    MissingInput when it has no shards, StageIncomplete when a run into it did not finish;
    `produced_by` (a stage name or a command) is what the message tells to run."""
    for path in complete_shards(directory, produced_by):
        yield from iter_shard(path, schema)


def publish_stage(directory: str, stage: str = "", files: Iterable[str] = ()) -> dict[str, Any]:
    """Mark `directory` complete: the `_SUCCESS` marker listing its shards, `files` and stats.json /
    config.json (see core/publish.py). The stages' last step, and how tests make a stage folder."""
    return _publish.publish(directory, stage, files)


def remove_stale_shards(directory: str, keep: Iterable[str]) -> list[str]:
    """Delete shards of an earlier run (another shard count) that the new run did not write."""
    keep = set(keep)
    stale = [p for p in list_shards(directory) if p not in keep]
    fio.remove(stale)
    return stale
