"""Run report and dataset card: every section renders from a small fake run, charts are real PNGs
with deterministic bytes, missing stages give notes instead of errors, the card's counts match."""
from __future__ import annotations

import os
import shutil

import pytest
import yaml

from webinstruct.core import shards
from webinstruct.pipeline.report.dataset_card import count_tokens, render_card, write_card
from webinstruct.pipeline.report.run_report import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SECTIONS = ("## Funnel", "## Classifier scores", "## Top domains", "## Question and answer lengths",
            "## Drops by reason", "## LLM accounting")
DOMAINS = [f"site{i:02d}.org" for i in range(20)]
SCORE_BINS = [30, 25, 20, 18, 15, 12, 10, 10, 9, 8, 8, 9, 10, 12, 15, 20, 25, 35, 50, 59]  # 400 pages

RECALL_STATS = {"records_read": 1000, "records_response": 600, "pages_decoded": 580, "pages_scored": 400,
                "pages_recalled": 120, "docs_written": 110, "dropped_below_threshold": 280,
                "dropped_too_short": 20, "dropped_duplicate_url": 10, "wall_seconds": 3.5,
                **{f"score_bin_{i:02d}": n for i, n in enumerate(SCORE_BINS)}}
EXTRACT_STATS = {"docs_in": 110, "docs_with_pairs": 60, "docs_structured": 10, "pairs_out": 90,
                 "dropped_chunk_length": 3, "dropped_chunks_over_limit": 12, "requests_sent": 150,
                 "cache_hits": 5, "prompt_tokens": 300_000, "completion_tokens": 20_000, "wall_seconds": 42.0}
REFINE_STATS = {"pairs_in": 90, "rows_out": 40, "dropped_no_answer": 5, "dropped_duplicate_exact": 7,
                "dropped_duplicate_minhash": 5, "decontaminated_gsm8k": 2, "decontaminated_math": 1,
                "answers_consistent": 25, "answers_changed": 10, "answers_unchecked": 5,
                "requests_sent": 90, "cache_hits": 0, "prompt_tokens": 90_000, "completion_tokens": 30_000,
                "wall_seconds": 30.0}


def refine_rows(n: int = 40) -> list[dict]:
    rows = []
    for i in range(n):
        q = f"What is {i} plus {i}?"
        rows.append({"orig_question": q, "orig_answer": f"{2 * i}",
                     "question": f"Compute the sum {i} + {i}.", "answer": f"Adding gives {i} + {i} = {2 * i}. "
                     + "So the answer is " * (i % 5) + f"$\\boxed{{{2 * i}}}$",
                     "source": DOMAINS[i % 3], "index": i, "refiner": "llm" if i % 4 else "identity",
                     "model": "smollm2-135m", "url": f"https://{DOMAINS[i % 3]}/q/{i}", "doc_id": f"d{i}",
                     "pair_id": f"p{i}", "extractor": "llm:smollm2-135m", "doc_score": 0.9,
                     "final_answer": str(2 * i), "answer_check": "consistent"})
    return rows


def make_run(run: str) -> str:
    """A run with recall, extract and refine output: stats, shards, domain table, classifier threshold."""
    recall, extract, refine = (os.path.join(run, s) for s in ("recall", "extract", "refine"))
    docs = [{"id": f"d{i}", "url": f"https://{DOMAINS[i % 20]}/p/{i}", "domain": DOMAINS[i % 20],
             "text": "A page about sums. " * 20, "score": 0.35 + (i % 13) / 20, "warc_file": "w.warc.gz",
             "record_id": f"r{i}", "offset": i, "content_hash": f"h{i}"} for i in range(110)]
    for k in range(2):
        shards.write_shard(shards.join(recall, shards.shard_name(k, 2)), docs[k::2])
    shards.write_shard(shards.join(recall, "domains.jsonl.gz"),
                       [{"domain": d, "pages_seen": 30 - i, "pages_recalled": 20 - i, "recalled_share": (20 - i) / (30 - i),
                         "mean_score": 0.6, "top_paths": [["/q", 20 - i], ["/a|b", 1]]} for i, d in enumerate(DOMAINS)])
    shards.write_json(shards.join(recall, "stats.json"), RECALL_STATS)
    shards.write_json(shards.join(recall, "config.json"),
                      {"threshold": -1.0, "classifier": os.path.join(run, "classifier", "classifier.bin")})
    shards.write_json(os.path.join(run, "classifier", "classifier.json"), {"threshold": 0.35})
    pairs = [{"id": f"p{i}", "doc_id": f"d{i}", "url": docs[i]["url"], "domain": docs[i]["domain"],
              "question": f"What is {i} plus {i}?", "answer": f"{2 * i}", "extractor": "llm:m"} for i in range(90)]
    shards.write_shard(shards.join(extract, shards.shard_name(0, 1)), pairs)
    shards.write_json(shards.join(extract, "stats.json"), EXTRACT_STATS)
    shards.write_shard(shards.join(refine, shards.shard_name(0, 1)), refine_rows())
    shards.write_json(shards.join(refine, "stats.json"), REFINE_STATS)
    for stage in (recall, extract, refine):
        shards.publish_stage(stage, files=["domains.jsonl.gz"] if stage == recall else [])
    return run


@pytest.fixture
def run_dir(tmp_path) -> str:
    return make_run(str(tmp_path / "run"))


@pytest.fixture(scope="module")
def full_report(tmp_path_factory) -> tuple[str, str]:
    """(run dir, report path) rendered once for the tests that only read it."""
    run = make_run(str(tmp_path_factory.mktemp("full") / "run"))
    return run, write_report(run)


def pngs(run: str) -> dict[str, bytes]:
    folder = os.path.join(run, "report")
    return {n: open(os.path.join(folder, n), "rb").read() for n in sorted(os.listdir(folder))}


def test_report_has_every_section_and_valid_charts(full_report):
    run_dir, path = full_report
    assert path == os.path.join(run_dir, "report.md")
    text = open(path).read()
    for heading in SECTIONS:
        assert heading in text
    charts = pngs(run_dir)
    assert sorted(charts) == ["drops.png", "funnel.png", "lengths.png", "scores.png"]
    for name, data in charts.items():
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, name
        assert f"(report/{name})" in text
    assert b"Software" not in charts["funnel.png"] and b"matplotlib" not in charts["funnel.png"]
    # Numbers land in the tables.
    assert "| recall | records_read | 1,000 |" in text
    assert "| refine | rows_out | 40 |" in text
    assert "Threshold 0.3500 (from `classifier/classifier.json`)" in text
    assert "scored pages (recall counters); 400 pages" in text
    assert "| site00.org | 30 | 20 |" in text and "site15.org" not in text  # top 15 only
    assert "/a\\|b (1)" in text  # pipes in cells escaped
    assert "| site00.org | 14 | 35.0% |" in text  # final rows' sources: 40 rows over 3 domains
    for counter in ("dropped_below_threshold", "dropped_chunks_over_limit", "decontaminated_gsm8k"):
        assert f"| {counter} |" in text
    assert "| extract | 150 | 5 | 300,000 | 20,000 | 42.00 |" in text
    assert "| question | 40 |" in text and "| orig_answer | 40 |" in text
    assert not [n for n in os.listdir(run_dir) if n.endswith(".tmp")]


def test_report_is_deterministic(full_report):
    run_dir, path = full_report
    text = open(path, "rb").read()
    first = pngs(run_dir)
    assert open(write_report(run_dir), "rb").read() == text
    assert pngs(run_dir) == first


def test_only_recall_gives_notes_not_errors(run_dir):
    write_report(run_dir)  # a full report first: its charts for later stages must go
    shutil.rmtree(os.path.join(run_dir, "extract"))
    shutil.rmtree(os.path.join(run_dir, "refine"))
    text = open(write_report(run_dir)).read()
    for heading in SECTIONS:
        assert heading in text
    assert "| refine | (stage has not run) |" in text
    assert "Refine has not run: no final rows" in text
    assert "Neither extract nor refine has run" in text
    assert "No stage that calls an LLM has run." in text
    assert sorted(pngs(run_dir)) == ["drops.png", "funnel.png", "scores.png"]


def test_scores_fall_back_to_recalled_documents(run_dir):
    stats = {k: v for k, v in RECALL_STATS.items() if not k.startswith("score_bin_")}
    shards.write_json(os.path.join(run_dir, "recall", "stats.json"), stats)
    shards.publish_stage(os.path.join(run_dir, "recall"), files=["domains.jsonl.gz"])
    os.remove(os.path.join(run_dir, "classifier", "classifier.json"))
    text = open(write_report(run_dir)).read()
    assert "recalled documents only" in text and "110 pages" in text
    assert "Threshold unknown." in text
    assert "scores.png" in pngs(run_dir)


def test_extract_pairs_stand_in_for_rows_before_refine(run_dir):
    shutil.rmtree(os.path.join(run_dir, "refine"))
    text = open(write_report(run_dir)).read()
    assert "lengths of the extracted pairs" in text and "| question | 90 |" in text
    assert "| extract | 150 |" in text


def test_empty_run_says_what_to_run(tmp_path):
    with pytest.raises(shards.MissingInput, match="recall"):
        write_report(str(tmp_path))


def test_card_front_matter_counts_and_filters(tmp_path):
    rows = refine_rows()
    recipe = {"name": "webinstruct-demo", "llm": {"model": "smollm2-135m", "api_key": "sk-secret", "max_tokens": 512},
              "refine": {"refiners": ["llm", "identity"]}, "tokenizer_dir": str(tmp_path / "absent")}
    path = write_card(str(tmp_path), rows, REFINE_STATS, recipe)
    assert path == str(tmp_path / "README.md")
    text = open(path).read()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["license"] == "other" and front["task_categories"] == ["question-answering"]
    assert front["language"] == ["en"] and front["size_categories"] == ["n<1K"]
    for heading in ("## Summary", "## Fields", "## Counts", "## Filters", "## Sources", "## Token counts",
                    "## Recipe", "## How it was made", "## Limitations"):
        assert heading in text
    assert "Rows: 40." in text
    assert "| llm | 30 | 75.0% |" in text and "| identity | 10 | 25.0% |" in text
    assert "| answers_consistent | 25 |" in text and "| answers_changed | 10 |" in text
    for name, value in REFINE_STATS.items():
        if name.startswith(("dropped_", "decontaminated_")):
            assert f"| {name} | {value} |" in text
    for field in ("orig_question", "orig_answer", "index", "pair_id", "answer_check"):
        assert f"| {field} |" in text
    assert "| site00.org | 14 |" in text
    words = sum(len(r["question"].split()) for r in rows)
    assert "whitespace-separated words" in text and f"| question | {words:,} |" in text
    recipe_yaml = text.split("```yaml\n")[1].split("```")[0]
    dumped = yaml.safe_load(recipe_yaml)
    assert dumped["llm"] == {"model": "smollm2-135m", "api_key": "***", "max_tokens": 512}
    assert "sk-secret" not in text
    assert render_card(rows, REFINE_STATS, recipe) == text  # nothing time-dependent


def test_count_tokens_uses_the_tokenizer():
    def tok(texts, add_special_tokens):
        assert add_special_tokens is False
        return {"input_ids": [list(t) for t in texts]}  # one token per character

    assert count_tokens(["ab", "cde"], tok, batch=1) == [2, 3]
    assert count_tokens(["a b", "c"]) == [2, 1]


@pytest.mark.slow
def test_card_counts_tokens_with_a_real_tokenizer(tmp_path):
    """A tiny word-level tokenizer saved the transformers way (importing transformers costs seconds)."""
    import tokenizers  # installed by `make install` (the cpu extra), so this runs on every clone
    import transformers
    vocab = {"[UNK]": 0, "What": 1, "is": 2}
    tk = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok_dir = tmp_path / "tok"
    transformers.PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]").save_pretrained(str(tok_dir))
    rows = [{"question": "What is 2+2?", "answer": "4", "source": "x.org", "refiner": "llm"}]
    text = render_card(rows, {}, {"tokenizer_dir": str(tok_dir)})
    assert f"tokenizer from `{tok_dir}`" in text
    assert "| question | 6 | 6.0 |" in text  # What, is, 2, +, 2, ?
    assert "| answer | 1 | 1.0 |" in text
