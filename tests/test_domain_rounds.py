"""Two domain rounds on the bundled sample: select, retrain, recall again, report the overlap."""
from __future__ import annotations

import pytest

from webinstruct.core import shards
from webinstruct.pipeline.recall import job
from webinstruct.pipeline.recall.classifier import Classifier, ClassifierConfig
from webinstruct.pipeline.recall.config import RecallConfig
from webinstruct.pipeline.recall.rounds import DomainsConfig, run_round, select

from conftest import SAMPLE_WARC, SEEDS

pytestmark = pytest.mark.slow


def test_two_rounds(tmp_path, small_classifier):
    recall_cfg = RecallConfig(warc=[str(SAMPLE_WARC / "*.warc*")], run=str(tmp_path), num_shards=2)
    first = job.run(recall_cfg, small_classifier)
    assert first["docs_written"] > 5

    # Domains with two or more recalled pages are "educational"; the rest give round-2 negatives.
    cfg = DomainsConfig(run=str(tmp_path), min_recalled=2, min_share=0.5,
                        positives=[str(SEEDS / "positive.jsonl.gz")], negatives=[str(SEEDS / "negative.jsonl.xz")])
    report = select(cfg)
    assert "stackexchange.com" in report["selected"]
    assert report["verdicts"]["mathhelpforum.com"] == "too_few_recalled"
    assert shards.read_json(str(tmp_path / "domains" / "selected.json"))["selected"] == report["selected"]

    result = run_round(cfg, recall_cfg, ClassifierConfig(dim=128, bucket=50_000, threads=1))
    round_dir = tmp_path / "domains" / "round-2"
    assert Classifier.load(str(round_dir / "classifier.bin")).threshold > 0
    assert result["training"]["positives_from_selected_domains"] >= 4
    assert result["training"]["negatives_from_other_domains"] >= 1
    second = shards.read_json(str(round_dir / "recall" / "stats.json"))
    docs = list(shards.read_shards(str(round_dir / "recall")))
    assert docs and all(d["round"] == 2 for d in docs)
    ov = shards.read_json(str(round_dir / "overlap.json"))["overlap"]
    assert ov["previous"] == first["docs_written"] and ov["current"] == second["docs_written"]
    assert ov["both"] + ov["only_current"] == ov["current"]
    assert ov["share_of_current_already_found"] == round(ov["both"] / ov["current"], 4)
    # The documents of rejected domains were negatives: round 2 should not keep more of them.
    rejected = {d for d, v in report["verdicts"].items() if v != "selected"}
    prev = {d["url"] for d in shards.read_shards(str(tmp_path / "recall")) if d["domain"] in rejected}
    cur = {d["url"] for d in docs if d["domain"] in rejected}
    assert len(cur) <= len(prev)


def test_no_domain_selected_is_a_clear_error(tmp_path, small_classifier):
    recall_cfg = RecallConfig(warc=[str(SAMPLE_WARC / "pages.warc.gz")], run=str(tmp_path), num_shards=1)
    job.run(recall_cfg, small_classifier)
    cfg = DomainsConfig(run=str(tmp_path), min_recalled=10_000)
    with pytest.raises(ValueError, match="no domain passed the rules"):
        run_round(cfg, recall_cfg, ClassifierConfig(dim=16, bucket=1000))


def test_llm_labels_the_candidate_domains(tmp_path, small_classifier, llm_server):
    """`--labeler llm`: one cached request per domain that passed the rules, verdicts recorded."""
    from webinstruct.pipeline.llm.config import LLMConfig

    recall_cfg = RecallConfig(warc=[str(SAMPLE_WARC / "*.warc*")], run=str(tmp_path), num_shards=2)
    job.run(recall_cfg, small_classifier)
    cfg = DomainsConfig(run=str(tmp_path), min_recalled=1, min_share=0.5, labeler="llm")
    llm = LLMConfig(url=[llm_server.url], model=llm_server.model, max_concurrency=8)
    report = select(cfg, llm)
    by_rule = select(DomainsConfig(run=str(tmp_path), min_recalled=1, min_share=0.5))["selected"]
    labels = report["labels"]
    assert sorted(labels) == sorted(by_rule) and len(labels) >= 3  # only rule-passing domains are asked
    for domain, label in labels.items():
        if "error" in label:
            assert report["verdicts"][domain] == "labeler_failed"
            continue
        assert isinstance(label["educational"], bool) and label["category"] and label["reason"]
        assert (report["verdicts"][domain] == "selected") == label["educational"]
    acct = report["labeler_accounting"]
    assert acct["requests"] == len(labels) and acct["requests_sent"] >= 1
    # Selecting again costs nothing: every label comes from the cache.
    again = select(cfg, llm)
    assert again["labeler_accounting"].get("requests_sent", 0) == 0 and again["labels"] == labels
