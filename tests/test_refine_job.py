"""The refine stage end to end against the real local vLLM server: planted contamination, merge
policies, schema of the WebInstruct shards, exports, dataset card, report, resume."""
from __future__ import annotations

import gzip
import json

import pytest

from webinstruct.core import shards
from webinstruct.pipeline.extract.transforms import pair_id, structured_pairs
from webinstruct.pipeline.llm.config import LLMConfig
from webinstruct.pipeline.recall import job as recall_job
from webinstruct.pipeline.recall.config import RecallConfig
from webinstruct.pipeline.refine import job
from webinstruct.pipeline.refine.checks import REASONS
from webinstruct.pipeline.refine.config import RefineConfig
from webinstruct.core.schema import QAPair, WebInstructRow, validate

from conftest import ROOT, SAMPLE_WARC

pytestmark = pytest.mark.slow
# SmolLM2-135M cuts most rewrites at max_tokens (3 of 5 here): accept its failures to test the rest.
LLM = dict(max_concurrency=8, max_tokens=384, max_tokens_cap=512, timeout_s=300, max_failure_share=1.0)


def gsm8k_question(i: int) -> str:
    with gzip.open(ROOT / "data/benchmarks/gsm8k/GSM8K_test.jsonl.gz", "rt") as fh:
        for n, line in enumerate(fh):
            if n == i:
                return json.loads(line)["query"]
    raise IndexError(i)


def pair(doc_id: str, question: str, answer: str, url: str) -> dict:
    return {"id": pair_id(doc_id, question), "doc_id": doc_id, "url": url, "domain": url.split("/")[2],
            "question": question, "answer": answer, "extractor": "test", "chunk": 0, "raw": "", "doc_score": 0.9}


@pytest.fixture(scope="module")
def extract_run(tmp_path_factory, small_classifier):
    """RUN/extract made of real pairs (the sample's StackExchange pages, by their markup) plus
    planted ones: a GSM8K test question inside a forum post, and a near miss of another."""
    run = tmp_path_factory.mktemp("refine")
    recall_job.run(RecallConfig(warc=[str(SAMPLE_WARC / "*.warc*")], run=str(run), num_shards=1), small_classifier)
    real = [p for d in shards.read_shards(str(run / "recall")) if d.get("structured") for p in structured_pairs(d, 1)]
    assert real, "the sample should have structured pages"
    planted_q = gsm8k_question(0)
    words = gsm8k_question(1).split()
    near_miss = " ".join(w if i % 5 else "quite" for i, w in enumerate(words))  # every 5th word changed
    planted = [
        pair("planted-1", f"Hi all, my homework says: {planted_q} I got 20, is that right?",
             "She has 16 - 3 - 4 = 9 eggs left and sells them at $2 each, so she makes $18.\n#### 18",
             "https://homework-forum.example/t/1"),
        pair("planted-2", near_miss, "Work it out step by step and you get the result.", "https://homework-forum.example/t/2"),
        pair("made-up-1", "Solve for x: 3x - 7 = 11. Please show the steps?", "Add 7: 3x = 18. Divide by 3: x = 6.\n#### 6",
             "https://algebra-help.example/q/3"),
    ]
    shards.write_shard(str(run / "extract" / "part-00000-of-00001.jsonl.gz"),
                       sorted(real + planted, key=lambda p: p["id"]), QAPair)
    shards.publish_stage(str(run / "extract"), "extract")
    return run, real, planted


@pytest.fixture(scope="module")
def refined(extract_run, llm_server):
    run, real, planted = extract_run
    # SmolLM2 fails most rewrites: keep_original makes sure the sample gives rows to check.
    cfg = RefineConfig(run=str(run), num_shards=2, keep_original=True)
    llm = LLMConfig(url=[llm_server.url], **LLM)
    return run, cfg, llm, job.run(cfg, llm, {"llm": LLM}), real, planted


def test_planted_contamination_is_removed_and_counted(refined):
    run, cfg, _, stats, _, planted = refined
    assert stats["decontaminated_gsm8k"] >= 1
    pages = list(shards.iter_shard(str(run / "refine" / "contaminated.jsonl.gz")))
    assert {"url": planted[0]["url"], "benchmark": "gsm8k"}.items() <= pages[0].items()
    assert planted[1]["url"] not in {p["url"] for p in pages}  # the near miss was refined, not dropped
    assert stats["contaminated_pages"] == len({p["url"] for p in pages})
    rows = list(shards.read_shards(cfg.out_dir(), WebInstructRow))
    assert planted[0]["id"] not in {r["pair_id"] for r in rows}


def test_funnel_adds_up(refined):
    _, _, _, stats, real, planted = refined
    assert stats["pairs_in"] == len(real) + len(planted)
    dropped = sum(stats.get(f"dropped_{r}", 0) for r in REASONS)
    dropped += sum(v for k, v in stats.items() if k.startswith("dropped_refine_"))
    contaminated = sum(v for k, v in stats.items() if k.startswith("decontaminated_"))
    assert stats["pairs_in"] == stats["rows_refined"] + dropped + contaminated
    # One refiner: a pair whose revision failed is kept as extracted or counted without revision.
    assert stats["rows_original_kept"] + stats["pairs_without_revision"] >= dropped
    assert stats["rows_out"] == (stats["rows_refined"] + stats["rows_original_kept"]
                                 - stats["dropped_duplicate_exact"] - stats["dropped_duplicate_near"])
    assert stats["rows_out"] == stats["records_written"] >= 1
    assert stats["requests_sent"] >= stats["pairs_in"] - contaminated and stats["completion_tokens"] > 0


def test_webinstruct_shards_exports_card_and_report(refined):
    run, cfg, _, stats, _, _ = refined
    rows = list(shards.read_shards(cfg.out_dir(), WebInstructRow))
    for row in rows:
        validate(row, WebInstructRow)
        assert row["question"] and row["answer"] and row["orig_question"] and row["refiner"] in ("refiner", "original")
        assert row["answer_check"] in ("consistent", "unchecked", "changed")
    assert sorted(r["index"] for r in rows) == list(range(len(rows)))
    import pyarrow.parquet as pq

    table = pq.read_table(str(run / "refine" / "export" / "webinstruct.parquet"))
    assert table.column_names[:6] == ["orig_question", "orig_answer", "question", "answer", "source", "index"]
    assert table.num_rows == len(rows)
    lines = (run / "refine" / "export" / "webinstruct.jsonl").read_text().splitlines()
    assert [json.loads(x)["index"] for x in lines] == list(range(len(rows)))
    card = (run / "refine" / "README.md").read_text()
    assert card.startswith("---") and str(len(rows)) in card and "decontaminated_gsm8k" in card
    assert (run / "report.md").exists()
    config = shards.read_json(str(run / "refine" / "config.json"))
    assert config["decontamination"] and config["refiners"][0]["llm"]["api_key"] == "***"


def test_rerun_sends_nothing_and_writes_the_same_bytes(refined):
    run, cfg, llm, _, _, _ = refined
    before = {p: open(p, "rb").read() for p in shards.list_shards(cfg.out_dir())}
    again = job.run(cfg, llm)
    assert again["requests_sent"] == 0 and again["cache_hits"] > 0
    assert {p: open(p, "rb").read() for p in shards.list_shards(cfg.out_dir())} == before


def test_two_refiners_keep_all_and_alternate(refined, tmp_path):
    run, _, llm, first, _, _ = refined
    refiners = [{"name": "greedy"}, {"name": "warm", "temperature": 0.7}]
    keep_all = RefineConfig(run=str(run), out=str(tmp_path / "keep_all"), refiners=refiners, merge="keep_all")
    stats = job.run(keep_all, llm)
    rows = list(shards.read_shards(keep_all.out_dir(), WebInstructRow))
    assert {r["refiner"] for r in rows} <= {"greedy", "warm"}
    # The greedy refiner sends the same requests as the default one: all of them are cache hits.
    assert stats["cache_hits"] + stats["cache_hits_failed"] >= first["requests"]
    alternate = RefineConfig(run=str(run), out=str(tmp_path / "alternate"), refiners=refiners, merge="alternate")
    alt = job.run(alternate, llm)
    contaminated = sum(v for k, v in alt.items() if k.startswith("decontaminated_"))
    assert alt["requests"] <= alt["pairs_in"]  # one refiner per pair
    assert alt["requests"] >= alt["pairs_in"] - contaminated


def test_missing_extract_output_is_a_clear_error(tmp_path):
    with pytest.raises(shards.MissingInput, match="run `make extract`"):
        job.run(RefineConfig(run=str(tmp_path)), LLMConfig(url=["http://127.0.0.1:9/v1"]))
