"""Stage shards: gzipped JSON lines with deterministic names and bytes, written atomically.

Why gzipped JSON lines rather than Parquet: records are nested and change per stage (LLM outputs,
provenance lists), every tool can read them (`zcat | jq`), a shard can be written as a stream
without holding a row group in memory, and Beam reads them natively on any runner. Parquet export
of the final dataset is a separate step where column types are settled.

This module is the shard format only; every open, listing and write goes through
`webinstruct.core.io`, so a run directory may be local or any fsspec URL (`s3://`, `gs://`,
`memory://`), and a shard appears under its real name only once it is complete.
"""
from __future__ import annotations

import gzip
import io
import json
from typing import Any, Iterable, Iterator

from webinstruct.core import io as fio
from webinstruct.core.schema import validate
from webinstruct.core.resources import bundled

SHARD_GLOB = "part-*.jsonl.gz"
# The names other modules use from here: the same functions as webinstruct.core.io.
join, makedirs, exists, read_json = fio.join, fio.makedirs, fio.exists, fio.read_json


def open_text(path) -> io.TextIOBase:
    """A UTF-8 text file for reading: plain, gzip (`.gz`) or xz (`.xz`), by its name.

    For the bundled data files (seeds, benchmarks) and user-given training files. A relative
    `data/...` path that does not exist from the working directory is read from the installed
    package."""
    return fio.open(bundled(str(path)), "r")


class MissingInput(FileNotFoundError):
    """A stage's input is absent: the message says which command produces it."""


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


def iter_shard(path: str, schema: type | None = None) -> Iterator[dict[str, Any]]:
    with fio.open(path, "rb", compression=None) as raw:
        with gzip.GzipFile(fileobj=raw) as gz:
            for lineno, line in enumerate(io.TextIOWrapper(gz, encoding="utf-8"), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{lineno}: not a JSON line ({err})") from None
                yield validate(rec, schema) if schema is not None else rec


def read_shards(directory: str, schema: type | None = None, produced_by: str = "") -> Iterator[dict[str, Any]]:
    """Every record of a stage directory, shard by shard in name order."""
    paths = list_shards(directory)
    if not paths:
        hint = f": run `{produced_by}` first" if produced_by else ""
        raise MissingInput(f"no shards ({SHARD_GLOB}) in {directory}{hint}")
    for path in paths:
        yield from iter_shard(path, schema)


def remove_stale_shards(directory: str, keep: Iterable[str]) -> list[str]:
    """Delete shards of an earlier run (another shard count) that the new run did not write."""
    keep = set(keep)
    stale = [p for p in list_shards(directory) if p not in keep]
    fio.remove(stale)
    return stale
