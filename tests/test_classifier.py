"""The recall classifier and its text normalisation, on real seed documents (data/seeds, the
bundled copy of shared/seeds)."""
from __future__ import annotations

import gzip
import json
import lzma
import pickle
from pathlib import Path

import numpy as np
import pytest

from webinstruct.pipeline.recall.classifier import (Classifier, ClassifierConfig, _atomic_write,
                                        choose_threshold, load_texts, train_classifier)
from webinstruct.pipeline.text.normalize import content_hash, normalize_for_classifier

from conftest import SEEDS

N_TRAIN, N_HELD = 800, 100
# The bundled seeds keep shared/seeds' order: positive.jsonl.gz is positive.jsonl, and
# negative.jsonl.xz starts with negative.jsonl's rows (then the negative_extra_* files).
POSITIVE, NEGATIVE = SEEDS / "positive.jsonl.gz", SEEDS / "negative.jsonl.xz"


def _rows(path: Path, limit: int = N_TRAIN + N_HELD) -> list[dict]:
    opener = {".gz": gzip.open, ".xz": lzma.open}.get(path.suffix, open)
    rows = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if len(rows) == limit:
                break
            rows.append(json.loads(line))
    return rows


@pytest.fixture(scope="module")
def seeds():
    pos, neg = _rows(POSITIVE), _rows(NEGATIVE)
    return {
        "train_pos": [r["text"] for r in pos[:N_TRAIN]],
        "train_neg": [r["text"] for r in neg[:N_TRAIN]],
        # Never seen in training: the documents that follow in the same files.
        "held_pos": pos[N_TRAIN:N_TRAIN + N_HELD],
        "held_neg": neg[N_TRAIN:N_TRAIN + N_HELD],
    }


@pytest.fixture(scope="module")
def trained(seeds, tmp_path_factory):
    out = tmp_path_factory.mktemp("clf") / "classifier.bin"
    cfg = ClassifierConfig(threads=1)  # one thread: the same model every run
    meta = train_classifier(seeds["train_pos"], seeds["train_neg"], str(out), cfg,
                            sources={"positives": [str(POSITIVE)]})
    return out, meta


# ---- training -----------------------------------------------------------------------------------

def test_training_metrics_and_metadata(trained):
    out, meta = trained
    held = meta["metrics"]["at_threshold"]
    assert held["f1"] > 0.8, meta["metrics"]
    assert 0.0 < meta["threshold"] < 1.0
    assert meta["threshold_chosen_by"] in {"precision", "best_f1_fallback"}
    if meta["threshold_chosen_by"] == "precision":
        assert held["precision"] >= 0.9
    assert meta["counts"]["heldout_pos"] == 80 and meta["counts"]["train_pos"] == 720
    assert sum(meta["metrics"]["histogram"]["pos"]) == 80
    on_disk = json.loads(out.with_suffix(".json").read_text())
    assert on_disk["threshold"] == meta["threshold"]
    assert on_disk["config"]["dim"] == 256 and on_disk["fasttext_version"] != "unknown"
    assert on_disk["training_data"]["positives"][0]["bytes"] > 0


def test_no_temporary_files_left(trained):
    out, _ = trained
    assert sorted(p.name for p in out.parent.iterdir()) == ["classifier.bin", "classifier.json"]


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "classifier.bin"
    target.write_text("old")

    def fail(tmp):
        Path(tmp).write_text("half written")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        _atomic_write(target, fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["classifier.bin"]


# ---- scoring ------------------------------------------------------------------------------------

def test_round_trip_scores_held_out_documents(trained, seeds):
    out, meta = trained
    clf = Classifier.load(out.parent)  # a directory holding classifier.bin works too
    assert clf.threshold == meta["threshold"]
    pos = clf.score_many([r["text"] for r in seeds["held_pos"]])
    neg = clf.score_many([r["text"] for r in seeds["held_neg"]])
    assert np.mean(pos) > clf.threshold > np.mean(neg)
    assert np.mean(np.array(pos) >= clf.threshold) > 0.8
    assert np.mean(np.array(neg) < clf.threshold) > 0.8

    gsm8k = next(r["text"] for r in seeds["held_pos"] if "grade-school-math" in r["source"])
    legal = next(r["text"] for r in seeds["held_neg"] if "fineweb-legal" in r["source"]
                 and any(w in r["text"].lower() for w in ("court", "law", "agreement")))
    assert clf.score(gsm8k) > clf.threshold > clf.score(legal)


def test_score_edge_cases_and_pickle(trained, seeds):
    out, _ = trained
    clf = Classifier.load(out)
    assert clf.score("") == 0.0 and clf.score("   \n\t") == 0.0
    texts = [r["text"] for r in seeds["held_pos"][:5]] + ["", "x"]
    batch = clf.score_many(texts, batch_size=2)
    assert batch == [clf.score(t) for t in texts]
    assert all(0.0 <= s <= 1.0 for s in batch)
    assert pickle.loads(pickle.dumps(clf)).score_many(texts) == batch


def test_load_missing_model_says_how_to_train(tmp_path):
    with pytest.raises(FileNotFoundError, match="webinstruct classifier train"):
        Classifier.load(tmp_path / "nope" / "classifier.bin")


# ---- threshold rules ----------------------------------------------------------------------------

def test_threshold_rules():
    scores = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2])
    labels = np.array([1, 1, 0, 1, 1, 0, 1, 0], dtype=bool)
    # Precision at the positives' scores: .95->1, .9->1, .7->.75, .6->.8, .3->.714
    t, how = choose_threshold(scores, labels, ClassifierConfig(target_precision=0.75))
    assert (t, how) == (0.6, "precision")  # lowest threshold reaching the target
    t, how = choose_threshold(scores, labels, ClassifierConfig(target_precision=0.99))
    assert (t, how) == (0.9, "precision")
    # With the labels flipped no threshold reaches 0.5 precision; F1 is best (6/11) at 0.2.
    t, how = choose_threshold(scores, ~labels, ClassifierConfig(target_precision=0.5))
    assert (t, how) == (0.2, "best_f1_fallback")
    t, how = choose_threshold(scores, labels, ClassifierConfig(threshold_rule="percentile",
                                                               percentile=25.0))
    assert (t, how) == (0.9, "percentile")  # top 2 of 8 documents
    with pytest.raises(ValueError):
        ClassifierConfig(threshold_rule="magic")


def test_load_texts_counts_malformed_lines(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "a"}\nnot json\n\n{"text": ""}\n[1]\n{"text": "b"}\n{"text": "c"}\n')
    stats: dict[str, int] = {}
    assert load_texts([str(path)], stats=stats) == ["a", "b", "c"]
    assert stats == {"read": 3, "malformed": 3}
    assert load_texts([str(path), str(path)], limit=4) == ["a", "b", "c", "a"]


# ---- normalisation and hashing ------------------------------------------------------------------

def test_normalize_one_line_with_tex_tokens():
    text = "Let $\\frac{1}{2}x^2 = 2019$.\r\nThen\t\\Delta\u2028 __label__pos \x00 x_1 \\\\ \\{a\\}"
    out = normalize_for_classifier(text)
    assert "\n" not in out and "\r" not in out and "\x00" not in out and "  " not in out
    tokens = out.split(" ")
    assert "\\frac" in tokens and "\\delta" in tokens and "\\\\" in tokens and "\\{" in tokens
    assert "0000" in tokens and "__label__pos" not in out
    assert out == out.lower() and out == out.strip()


def test_normalize_idempotent_and_truncated(seeds):
    docs = [r["text"] for r in seeds["held_pos"] + seeds["held_neg"]]
    for doc in docs:
        once = normalize_for_classifier(doc)
        assert normalize_for_classifier(once) == once
    long_doc = " ".join(docs)
    short = normalize_for_classifier(long_doc, max_chars=1000)
    assert len(short) <= 1000 and normalize_for_classifier(short, max_chars=1000) == short
    assert normalize_for_classifier("") == "" and normalize_for_classifier(" \n ") == ""
    fancy = "\uff26\uff55\uff4c\uff4c \u201cquoted\u201d"  # fullwidth letters, curly quotes
    assert normalize_for_classifier(fancy) == 'full " quoted "'


def test_content_hash_collides_on_formatting_only():
    base = "Solve 2x + 3 = 7.\n\nThe answer is 2."
    variants = ["solve 2x+3=7. the answer is 2.", "  SOLVE 2x + 3 = 7.   The answer is 2.\n",
                "**Solve** 2x + 3 = 7.\r\nThe answer is 2.", "Solve 2x + 3 = 7.\tThe answer is 2."]
    assert len({content_hash(v) for v in [base, *variants]}) == 1
    assert content_hash("\u201cHello\u201d \u2014 world") == content_hash('"hello" - world')
    assert content_hash(base) != content_hash(base.replace("+", "-"))
    assert content_hash(base) != content_hash(base.replace("2.", "3."))
    assert len(content_hash(base)) == 40
