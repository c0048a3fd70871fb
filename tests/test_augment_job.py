"""The augment stage end to end against the real local server (SmolLM2 on vLLM's CPU build).

SmolLM2-135M gets most answers wrong, so these tests check the mechanics: every kind of request is
sent and counted, kept rows have MetaMathQA's format and the gold answer at the end, a rerun sends
nothing, the training data reader accepts the shards."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from webinstruct.core import shards
from webinstruct.pipeline.augment import transforms as T
from webinstruct.pipeline.augment.accept import TYPES, metamathqa_row
from webinstruct.core.schema import MetaMathRow

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample" / "augment"


def _augment(run: Path, server, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "webinstruct.infra.cli", "augment", "--config", "infra/recipes/sample.yaml", "--run", str(run),
           "--input", str(SAMPLE / "gsm8k_train.jsonl"), str(SAMPLE / "math_train.jsonl"),
           "--llm-url", server.url, "--llm-model", server.model, *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def augmented(tmp_path_factory, llm_server):
    run = tmp_path_factory.mktemp("augment")
    # Two GSM8K-style and two MATH-style questions (--limit is per input file).
    args = ("--limit", "2", "--ansaug-samples", "2", "--rephrasings", "1", "--rephrase-samples", "1",
            "--sv-samples", "1", "--fobar-samples", "1", "--max-masks", "2")
    proc = _augment(run, llm_server, *args)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return run, args, proc


@pytest.mark.slow
def test_all_four_kinds_are_sent_counted_and_written_in_metamathqa_format(augmented):
    run, _, proc = augmented
    out = run / "augment"
    stats = json.loads((out / "stats.json").read_text())
    assert stats["seeds_in"] == 4 and stats["seeds_gsm8k"] == 2 and stats["seeds_math"] == 2
    for kind in T.KINDS:
        assert stats[f"{kind}_samples"] > 0, kind
        assert f"{kind}_accepted" in stats
    assert set(stats["acceptance"]) == set(T.KINDS)
    assert stats["targets"]["GSM_AnsAug"]["target"] == 80_000
    rows = list(shards.read_shards(str(out), MetaMathRow))
    assert len(rows) == stats["rows_out"] == sum(stats.get(f"kept_{t}", 0) for t in TYPES)
    for r in rows:
        assert r["type"] in TYPES and r["query"] and r["original_question"]
        assert r["response"].rstrip().splitlines()[-1].startswith("The answer is: ")
        if r["type"].endswith(("SV", "FOBAR")):
            assert "unknown variable" in r["query"]
    assert "augment ->" in proc.stdout


@pytest.mark.slow
def test_rerun_sends_no_request_and_writes_the_same_rows(augmented, llm_server):
    run, args, _ = augmented
    before = {p.name: p.read_bytes() for p in (run / "augment").glob("part-*")}
    proc = _augment(run, llm_server, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = json.loads((run / "augment" / "stats.json").read_text())
    assert stats["requests_sent"] == 0 and stats["cache_hits"] > 0
    assert before == {p.name: p.read_bytes() for p in (run / "augment").glob("part-*")}


@pytest.mark.slow
def test_make_train_accepts_the_shards(augmented):
    run, _, _ = augmented
    rows = json.loads((run / "augment" / "stats.json").read_text())["rows_out"]
    # The MetaMath recipe trains on RUN/augment; the dry run reads and encodes it with the tokenizer. The recipe
    # has no rate for the embedded model (the paper trained 7B models): it is given, else the plan stops.
    proc = subprocess.run(["make", "-s", "train", f"RUN={run}", "RECIPE=metamath", "MODEL=smollm2-135m", "DRY_RUN=1",
                           "TRAIN_ARGS=--lr 2e-5"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"data             {rows} sequences" in proc.stdout and "learning rate    2e-05 (set with lr)" in proc.stdout


def test_training_reads_augment_shards(tmp_path):
    from webinstruct.training.data import read_examples
    from webinstruct.pipeline.stage import write_records

    rows = [{"id": f"r{i}", **metamathqa_row(t, f"question {i}?", f"original {i}?", f"step\nThe answer is: {i}")}
            for i, t in enumerate(TYPES)]
    items = [("record", r) for r in rows]
    list(write_records((0, items), "augment", str(tmp_path), 1, MetaMathRow))
    shards.publish_stage(str(tmp_path), "augment")
    counts = Counter()
    examples = list(read_examples(str(tmp_path), counts=counts))
    assert len(examples) == len(TYPES)
    assert {e["question"] for e in examples} == {f"question {i}?" for i in range(len(TYPES))}
    assert all(e["answer"].endswith(f"The answer is: {i}") for i, e in enumerate(sorted(examples, key=lambda e: e["question"])))


def test_cap_keeps_at_most_the_target_per_type():
    rows = [("record", {"id": f"{i:03d}", "type": "GSM_FOBAR"}) for i in range(10)]
    out = list(T.cap_type(("GSM_FOBAR", rows), {"GSM_FOBAR": 4}))
    kept = [p for k, p in out if k == "record"]
    stats = [p for k, p in out if k == "stats"][0]
    assert [r["id"] for r in kept] == ["000", "001", "002", "003"]
    assert stats["dropped_over_target_GSM_FOBAR"] == 6 and stats["kept_GSM_FOBAR"] == 4


def test_types_are_grouped_under_integer_keys(tmp_path):
    """KeyByType gives every MetaMathQA type its own integer key (strings mis-group on Dask) and
    stats key 0; through a Beam GroupByKey the cap gives what cap_type gives per type."""
    import apache_beam as beam

    from webinstruct.pipeline.augment.accept import TYPES
    from webinstruct.pipeline.runners import beam_runner

    items = [("record", {"id": f"{i:03d}", "type": TYPES[i % len(TYPES)]}) for i in range(60)] + [("stats", {"x": 1})]
    keys = {T.key_by_type(item)[0] for item in items}
    assert all(isinstance(k, int) for k in keys) and len(keys) == len(TYPES) + 1
    assert T.key_by_type(("stats", {"x": 1}))[0] == 0
    targets = {"GSM_FOBAR": 2, "MATH_SV": 0}
    expected = sorted(json.dumps(x, sort_keys=True) for t in TYPES
                      for x in T.cap_type((t, [i for i in items if i[0] == "record" and i[1]["type"] == t]), targets))
    expected += [json.dumps(("stats", {"x": 1}), sort_keys=True)]
    path = tmp_path / "capped.jsonl"

    def sink(kv):
        path.write_text("\n".join(json.dumps(x, sort_keys=True) for x in kv[1]))

    with beam_runner("local") as (runner, options):
        p = beam.Pipeline(runner=runner, options=options)
        (p | beam.Create(items) | "KeyByType" >> beam.Map(T.key_by_type) | "GroupByType" >> beam.GroupByKey()
         | "CapTypes" >> beam.FlatMap(T.cap_group, targets)
         | "KeyAll" >> beam.Map(lambda x: (0, x)) | "GroupAll" >> beam.GroupByKey() | "Sink" >> beam.Map(sink))
        p.run().wait_until_finish()
    assert sorted(path.read_text().splitlines()) == sorted(expected)


def test_first_round_requests_and_masks():
    seed = {"id": "s1", "question": "Tom has 3 apples and buys 5 more. How many apples does he have?",
            "answer": "8", "solution": "", "domain": "gsm8k"}
    c = {"ansaug_samples": 2, "rephrasings": 1, "fobar_samples": 1, "max_masks": 0, "temperature": 0.7,
         "max_tokens": 256}
    reqs, masks = T.first_round(seed, c)
    kinds = Counter(r["id"].split(":")[1] for r in reqs)
    assert [m.value for m in masks] == ["3", "5"]
    assert kinds == {"ansaug": 2, "rephrase": 1, "sv_rewrite": 1, "fobar": 2}
    fobar = [r for r in reqs if ":fobar:" in r["id"]]
    assert "Tom has x apples" in fobar[0]["messages"][-1]["content"]
    assert "answer to the above question is 8" in fobar[0]["messages"][-1]["content"]
    assert len({r["seed"] for r in reqs if ":ansaug:" in r["id"]}) == 2, "samples differ by seed"
    assert T.masks_of(seed, 1) == masks[:1]
