"""Shard IO: round trip, atomic writes, deterministic bytes, clear errors."""
from __future__ import annotations

import gzip
import json

import pytest

from webinstruct.core import shards
from webinstruct.core.schema import RecalledDocument, SchemaError, validate

DOC = {"id": "a", "url": "http://x.org/1", "domain": "x.org", "text": "t", "score": 0.9,
       "warc_file": "f", "record_id": "r", "offset": 0, "content_hash": "h"}


def test_round_trip_and_names(tmp_path):
    path = shards.join(str(tmp_path), shards.shard_name(1, 4))
    assert path.endswith("part-00001-of-00004.jsonl.gz")
    assert shards.write_shard(path, [DOC, {**DOC, "id": "b"}], RecalledDocument) == 2
    shards.publish_stage(str(tmp_path), "recall")
    assert [r["id"] for r in shards.read_shards(str(tmp_path), RecalledDocument)] == ["a", "b"]
    # Plain gzip + JSON lines: readable by any tool.
    lines = gzip.open(path, "rt").read().splitlines()
    assert json.loads(lines[0])["url"] == "http://x.org/1"


def test_atomic_and_deterministic(tmp_path):
    a, b = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    shards.write_shard(str(a), [DOC])
    shards.write_shard(str(b), [DOC])
    assert a.read_bytes() == b.read_bytes()
    shards.write_shard(str(a), [DOC, DOC])  # overwrite in place
    assert len(list(shards.iter_shard(str(a)))) == 2
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_schema_checked_on_write(tmp_path):
    bad = {k: v for k, v in DOC.items() if k != "url"}
    with pytest.raises(SchemaError, match="url"):
        shards.write_shard(str(tmp_path / "x.jsonl.gz"), [bad], RecalledDocument)
    assert not list(tmp_path.iterdir())  # nothing half-written
    with pytest.raises(SchemaError):
        validate("not a dict", RecalledDocument)


def test_missing_input_names_the_command(tmp_path):
    with pytest.raises(shards.MissingInput, match="run `webinstruct recall` first"):
        list(shards.read_shards(str(tmp_path), produced_by="webinstruct recall"))


def test_stale_shards_removed(tmp_path):
    for i in range(3):
        shards.write_shard(shards.join(str(tmp_path), shards.shard_name(i, 3)), [DOC])
    keep = [shards.join(str(tmp_path), shards.shard_name(i, 2)) for i in range(2)]
    for p in keep:
        shards.write_shard(p, [DOC])
    removed = shards.remove_stale_shards(str(tmp_path), keep)
    assert len(removed) == 3
    assert shards.list_shards(str(tmp_path)) == sorted(keep)


def test_json_atomic(tmp_path):
    shards.write_json(str(tmp_path / "stats.json"), {"b": 1, "a": 2})
    assert shards.read_json(str(tmp_path / "stats.json")) == {"a": 2, "b": 1}
