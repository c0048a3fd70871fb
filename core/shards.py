"""Shard IO shared by every stage: gzipped JSON lines, written atomically, with deterministic names.

Why gzipped JSON lines rather than Parquet: records are nested and change per stage (LLM outputs,
provenance lists), every tool can read them (`zcat | jq`), a shard can be written as a stream
without holding a row group in memory, and Beam reads them natively on any runner. Parquet export
of the final dataset is a separate step where column types are settled.

Paths go through Beam's `FileSystems`, so `gs://`, `s3://` and `hdfs://` work wherever Beam has the
file system installed. A shard is written under a temporary name in its directory and renamed
into place, so a killed job never leaves a half-written shard under a real name.
"""
from __future__ import annotations

import gzip
import io
import json
import lzma
import uuid
from typing import Any, Iterable, Iterator

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from webinstruct.core.schema import validate
from webinstruct.core.resources import bundled

SHARD_GLOB = "part-*.jsonl.gz"


def open_text(path) -> io.TextIOBase:
    """A local UTF-8 text file for reading: plain, gzip (`.gz`) or xz (`.xz`), by its name.

    For the bundled data files (seeds, benchmarks) and user-given training files; stage shards go
    through `iter_shard` and Beam's file systems instead. A relative `data/...` path that does not
    exist from the working directory is read from the installed package."""
    name = bundled(str(path))
    if name.endswith(".gz"):
        return gzip.open(name, "rt", encoding="utf-8")
    if name.endswith(".xz"):
        return lzma.open(name, "rt", encoding="utf-8")
    return open(name, encoding="utf-8")


class MissingInput(FileNotFoundError):
    """A stage's input is absent: the message says which command produces it."""


def shard_name(index: int, count: int) -> str:
    return f"part-{index:05d}-of-{count:05d}.jsonl.gz"


def join(directory: str, name: str) -> str:
    return FileSystems.join(directory, name)


def makedirs(directory: str) -> None:
    if not FileSystems.exists(directory):
        FileSystems.mkdirs(directory)


def _atomic_write_bytes(path: str, data: bytes) -> None:
    directory, name = FileSystems.split(path)
    tmp = join(directory, f".{name}.tmp-{uuid.uuid4().hex[:8]}")
    makedirs(directory)
    with FileSystems.create(tmp, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        fh.write(data)
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])


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
    _atomic_write_bytes(path, data)
    return count


def write_json(path: str, obj: Any) -> None:
    """Write a JSON document (stats, metadata) atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    _atomic_write_bytes(path, text.encode("utf-8"))


def read_json(path: str) -> Any:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        return json.loads(fh.read().decode("utf-8"))


def list_shards(directory: str, pattern: str = SHARD_GLOB) -> list[str]:
    match = FileSystems.match([join(directory, pattern)])[0]
    return sorted(m.path for m in match.metadata_list)


def iter_shard(path: str, schema: type | None = None) -> Iterator[dict[str, Any]]:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
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
    if stale:
        FileSystems.delete(stale)
    return stale
