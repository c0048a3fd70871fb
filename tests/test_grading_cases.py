"""The committed grading case set (data/grading_cases): it loads, is big enough, covers every
benchmark and protocol, and every case is well formed with both verdicts."""
from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from webinstruct.evaluation.benchmarks import REGISTRY, load
from webinstruct.evaluation.items import KINDS, Item

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "data" / "grading_cases" / "cases.jsonl.gz"
PROTOCOLS = ("mammoth2", "metamath", "chat")
FIELDS = {"id", "benchmark", "protocol", "style", "item", "output", "human", "human_answer", "oracle", "oracle_answer"}


@pytest.fixture(scope="module")
def cases():
    with gzip.open(CASES, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_size_and_coverage(cases):
    assert len(cases) >= 2000
    per = Counter((c["benchmark"], c["protocol"]) for c in cases)
    for bench in REGISTRY:
        for protocol in PROTOCOLS:
            assert per[(bench, protocol)] >= 60, (bench, protocol, per[(bench, protocol)])
    assert set(per) == {(b, p) for b in REGISTRY for p in PROTOCOLS}


def test_fields_and_verdicts(cases):
    for c in cases:
        assert set(c) == FIELDS, (c["id"], set(c) ^ FIELDS)
        assert isinstance(c["output"], str) and isinstance(c["style"], str) and c["style"]
        assert isinstance(c["human"], bool) and isinstance(c["oracle"], bool), c["id"]
        assert isinstance(c["human_answer"], str) and isinstance(c["oracle_answer"], str), c["id"]
        assert c["id"].startswith(f"{c['benchmark']}/{c['protocol']}/"), c["id"]
        if not c["human_answer"]:
            assert not c["human"], c["id"]  # no answer read, so it cannot be right


def test_ids_unique(cases):
    ids = [c["id"] for c in cases]
    assert len(ids) == len(set(ids))


def test_items_are_real_items(cases):
    bundled = {b: {it.id: it for it in load(b)} for b in REGISTRY}
    for c in cases:
        item = Item.from_dict(c["item"])
        assert item.to_dict() == c["item"], c["id"]
        assert item.benchmark == c["benchmark"] and item.kind in KINDS
        assert bundled[item.benchmark][item.id] == item, c["id"]  # the bundled item, unchanged


def test_both_verdicts_occur(cases):
    human = Counter(c["human"] for c in cases)
    assert min(human.values()) >= 0.35 * len(cases)  # roughly balanced
    for bench in REGISTRY:
        verdicts = {(c["human"], c["oracle"]) for c in cases if c["benchmark"] == bench}
        assert (True, True) in verdicts and (False, False) in verdicts, bench
