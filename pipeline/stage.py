"""Steps every Beam stage ends with: shard by key, write shards, sum the counters into stats.json.

A stage's main DoFn emits `(kind, payload)` pairs: ("record", dict) for output records, ("stats",
counts) for counters, plus stage-specific kinds. The stage keys them with `key_by_shard`, groups,
writes with `write_records` (or its own writer), then groups everything under one key and calls
`finish`. Keys are integers so grouping agrees across worker processes (see recall/transforms.py
for why the graph is a single chain).
"""
from __future__ import annotations

import hashlib
import dataclasses
import time
from typing import Any, Callable, Iterable, Iterator

from webinstruct.core import shards
from webinstruct.core.stats import StageCounter, merge


def bucket(key: str, n: int) -> int:
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") % n


def task_groups(paths: list[str], tasks: int) -> list[list[str]]:
    """Recall shards dealt round-robin into `tasks` groups (no empty group)."""
    tasks = max(1, min(tasks, len(paths)))
    return [paths[i::tasks] for i in range(tasks)]


def key_by_shard(item: tuple[str, Any], num_shards: int, field: str = "id") -> tuple[int, tuple[str, Any]]:
    """Records go to the shard of their `field`; everything else to the stats key `num_shards`."""
    kind, payload = item
    if kind == "record":
        return bucket(str(payload[field]), num_shards), item
    return num_shards, item


def write_records(kv: tuple[int, Iterable[tuple[str, Any]]], stage: str, out_dir: str, num_shards: int,
                  schema: type) -> Iterator[tuple[str, Any]]:
    """Write one shard (records sorted by id); pass other items on."""
    key, items = kv
    if key >= num_shards:
        yield from items
        return
    count = StageCounter(stage)
    records = sorted((payload for _, payload in items), key=lambda r: r["id"])
    path = shards.join(out_dir, shards.shard_name(key, num_shards))
    count("records_written", shards.write_shard(path, records, schema))
    yield ("shard", path)
    yield ("stats", count.drain())


def finish(kv: tuple[int, Iterable[tuple[str, Any]]], out_dir: str, num_shards: int,
           required_files: tuple[str, ...] = ()) -> dict[str, int]:
    """Empty shards for buckets that got nothing, stale shards removed, stats.json written.

    `required_files` are extra files the stage always leaves (an empty one when no item of kind
    ("file", name) said it was written), so a rerun never keeps an earlier run's copy.
    """
    _, items = kv
    written, files, stats = set(), set(), []
    for kind, payload in items:
        if kind == "shard":
            written.add(payload)
        elif kind == "file":
            files.add(payload)
        elif kind == "stats":
            stats.append(payload)
    expected = [shards.join(out_dir, shards.shard_name(i, num_shards)) for i in range(num_shards)]
    for path in expected:
        if path not in written:
            shards.write_shard(path, [])
    shards.remove_stale_shards(out_dir, expected)
    for name in required_files:
        if name not in files:
            shards.write_shard(shards.join(out_dir, name), [])
    total = merge(stats)
    shards.write_json(shards.join(out_dir, "stats.json"), total)
    return total


def close_stats(out_dir: str, started: float, accounting: Iterable[str] = (),
                derive: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Complete a finished stage's stats.json: every `accounting` counter present (a 0 says
    something, e.g. "requests_sent: 0" on a rerun), entries `derive(stats)` computes from the
    counters, and the wall time since `started` (time.monotonic())."""
    path = shards.join(out_dir, "stats.json")
    stats = shards.read_json(path)
    for name in accounting:
        stats.setdefault(name, 0)
    if derive is not None:
        stats.update(derive(stats))
    stats["wall_seconds"] = round(time.monotonic() - started, 2)
    shards.write_json(path, stats)
    return stats


def llm_settings(llm: Any) -> dict[str, Any]:
    """An LLM config as recorded in a stage's config.json: everything but the API key."""
    return {**dataclasses.asdict(llm), "api_key": "***"}
