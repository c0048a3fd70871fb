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
import logging
import time
from typing import Any, Callable, Iterable, Iterator

from webinstruct.core import shards
from webinstruct.core.stats import StageCounter, merge
from webinstruct.pipeline.llm.config import LLMConfig

log = logging.getLogger(__name__)


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
                derive: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                max_failure_share: float = LLMConfig.max_failure_share) -> dict[str, Any]:
    """Complete a finished stage's stats.json: every `accounting` counter present (a 0 says
    something, e.g. "requests_sent: 0" on a rerun), entries `derive(stats)` computes from the
    counters, and the wall time since `started` (time.monotonic()).

    Then the LLM check: when more than `max_failure_share` (the stage passes its
    `llm.max_failure_share`) of the LLM client's requests failed for the model's own reasons, log a warning and raise `LLMModelFailures` (stats.json is written first)."""
    path = shards.join(out_dir, "stats.json")
    stats = shards.read_json(path)
    for name in accounting:
        stats.setdefault(name, 0)
    if derive is not None:
        stats.update(derive(stats))
    stats["wall_seconds"] = round(time.monotonic() - started, 2)
    shards.write_json(path, stats)
    check_model_failures(stats, out_dir, max_failure_share)
    return stats


def check_model_failures(stats: dict[str, Any], where: str, limit: float) -> None:
    """Raise `LLMModelFailures` when the client's `model_failures` exceed `limit` of its `requests`."""
    requests, failed = int(stats.get("requests") or 0), int(stats.get("model_failures") or 0)
    if not requests or failed <= limit * requests:
        return
    from webinstruct.pipeline.llm.client import FINAL_CAUSES, LLMModelFailures  # openai: only when needed
    causes = ", ".join(f"{c} {stats[f'failures_{c}']}" for c in FINAL_CAUSES if stats.get(f"failures_{c}"))
    cached = int(stats.get("cache_hits_failed") or 0)
    why = "; ".join(x for x in (causes, f"{cached} recorded in the cache" if cached else "") if x)
    message = (f"{failed} of {requests} LLM requests ({failed / requests:.0%}) in {where} failed for the model's own "
               f"reasons ({why}), over llm.max_failure_share={limit:g}: check the model and its prompts, or accept "
               f"them with --llm-max-failure-share 1 (recipe llm: max_failure_share: 1)")
    log.warning("%s", message)
    raise LLMModelFailures(message)


def llm_settings(llm: Any) -> dict[str, Any]:
    """An LLM config as recorded in a stage's config.json: everything but the API key."""
    return {**dataclasses.asdict(llm), "api_key": "***"}
