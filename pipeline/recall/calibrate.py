"""Choosing the recall threshold on crawl pages, at the crawl's base rate.

The held-out seed split is about one positive per negative and its texts are clean dataset rows;
a crawl is well under 1% math and its pages carry menus, tables and numbers. A threshold that is
precise on the seeds keeps recipes and sports tables on a crawl. So the threshold is chosen on a
labelled crawl-like sample instead: WARC files and a `labels.tsv` (columns `url` and `label`;
`math` is positive, `general` negative, any other label such as the borderline `edu` is ignored),
scored by the recall stage's own path (language gate, cheap pass, math-aware extraction, fastText),
so a page the stage would drop before scoring counts as not kept.

Precision is reported at a base rate `base_rate` of positives rather than the sample's own:
    precision_at_base_rate = b * TPR / (b * TPR + (1 - b) * FPR).
The rule: among the cuts that gain a positive, the lowest one whose precision at the base rate
still reaches `crawl_precision`; the threshold sits halfway (in log-odds) between that positive's
score and the highest negative score below it, so it does not rest on one page's exact score.
"""
from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from typing import Any, Iterable

from webinstruct.core import io as fio
from webinstruct.core.resources import bundled

log = logging.getLogger(__name__)

POSITIVE, NEGATIVE = "math", "general"


@dataclass
class Scored:
    url: str
    label: str
    score: float  # -1 when the recall path dropped the page before scoring it
    reason: str  # why it was dropped before scoring ("" when scored)


def read_labels(path: str) -> dict[str, str]:
    """url -> label from a tab-separated file with a header holding `url` and `label`."""
    with fio.open(bundled(path), "rt") as fh:
        rows = csv.DictReader(fh, delimiter="\t")
        if not rows.fieldnames or "url" not in rows.fieldnames or "label" not in rows.fieldnames:
            raise ValueError(f"{path}: a labels file needs a header with the columns url and label "
                             f"(tab-separated), found {rows.fieldnames}")
        return {r["url"]: r["label"] for r in rows if r.get("url")}


def score_pages(model_path: str, warc: Iterable[str], labels: dict[str, str], settings: dict[str, Any]) -> list[Scored]:
    """Every labelled page of the WARC files through the recall path with the threshold at 0.
    `settings`: RecallConfig.page_settings(), the options the recall stage decides pages with."""
    from webinstruct.pipeline.recall.job import expand_inputs
    from webinstruct.pipeline.recall.transforms import ScorePages
    from webinstruct.pipeline.recall.warc import read_pages

    scorer = ScorePages.from_settings(model_path, 0.0, settings)
    out: list[Scored] = []
    seen: set[str] = set()
    for path in expand_inputs(list(warc)):
        for page in read_pages(path, settings["max_page_bytes"]):
            label = labels.get(page["url"])
            if label is None or page["url"] in seen:
                continue
            seen.add(page["url"])
            reasons: list[str] = []
            doc = scorer(page, lambda name, n=1: reasons.append(name), {})
            dropped = [r for r in reasons if r.startswith("dropped_")]
            score = doc["score"] if doc is not None else -1.0  # at a threshold of 0, only a drop loses a page
            out.append(Scored(page["url"], label, float(score), dropped[0] if dropped else ""))
    return out


def precision_at(base_rate: float, tpr: float, fpr: float) -> float:
    den = base_rate * tpr + (1 - base_rate) * fpr
    return base_rate * tpr / den if den > 0 else 0.0


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


def choose(scored: list[Scored], base_rate: float, target: float) -> tuple[float, str]:
    """(threshold, how): see the module's docstring."""
    pos = sorted((s.score for s in scored if s.label == POSITIVE), reverse=True)
    neg = sorted((s.score for s in scored if s.label == NEGATIVE), reverse=True)
    if not pos or not neg:
        raise ValueError(f"the calibration sample needs `{POSITIVE}` and `{NEGATIVE}` pages, "
                         f"found {len(pos)} and {len(neg)}")
    best = None
    for i, t in enumerate(pos):
        if t < 0:  # dropped before scoring: no threshold keeps it
            break
        tpr = (i + 1) / len(pos)
        fpr = sum(1 for s in neg if s >= t) / len(neg)
        if precision_at(base_rate, tpr, fpr) >= target:
            best = t
    if best is None:
        return min(max(pos[0], 1e-6), 1 - 1e-6), "crawl_top_positive"
    below = [s for s in neg if 0 <= s < best]
    if not below:
        return min(max(best, 1e-6), 1 - 1e-6), "crawl"
    mid = (_logit(best) + _logit(below[0])) / 2
    return min(max(1 / (1 + math.exp(-mid)), 1e-6), 1 - 1e-6), "crawl"


def metrics(scored: list[Scored], threshold: float, base_rate: float) -> dict[str, Any]:
    """Kept counts by label, recall, false-positive rate and precision at the base rate."""
    by_label: dict[str, list[int]] = {}
    for s in scored:
        kept, total = by_label.setdefault(s.label, [0, 0])
        by_label[s.label] = [kept + (s.score >= threshold), total + 1]
    kp, np_ = by_label.get(POSITIVE, [0, 0])
    kn, nn = by_label.get(NEGATIVE, [0, 0])
    tpr, fpr = (kp / np_ if np_ else 0.0), (kn / nn if nn else 0.0)
    return {"threshold": threshold, "base_rate": base_rate, "recall": tpr, "false_positive_rate": fpr,
            "precision_at_base_rate": precision_at(base_rate, tpr, fpr),
            "sample_precision": kp / (kp + kn) if kp + kn else 0.0,
            "kept": {label: {"kept": k, "pages": n} for label, (k, n) in sorted(by_label.items())}}


def kept_summary(m: dict[str, Any]) -> str:
    """One line of `metrics`: pages kept per label, recall, false-positive rate, precision."""
    kept = ", ".join(f"{label} {v['kept']}/{v['pages']}" for label, v in m["kept"].items())
    return (f"kept {kept}; recall {m['recall']:.3f}, false-positive rate {m['false_positive_rate']:.4f}, "
            f"precision {m['sample_precision']:.3f} (at a {m['base_rate']:.1%} base rate: "
            f"{m['precision_at_base_rate']:.3f})")


def calibrate(model_path: str, warc: list[str], labels_path: str, settings: dict[str, Any],
              base_rate: float, target: float, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score the labelled crawl sample, choose the threshold and write it into the model's
    classifier.json with the sample's metrics (under "calibration"); the seed split's threshold
    stays as "seed_threshold". `meta`: the model's metadata when the caller has it (else read).
    Returns the metadata as written."""
    from webinstruct.pipeline.recall.classifier import meta_path

    labels = read_labels(labels_path)
    scored = score_pages(model_path, warc, labels, settings)
    threshold, how = choose(scored, base_rate, target)
    record = {"warc": list(warc), "labels": labels_path, "pages": len(scored), "rule": how,
              "crawl_precision": target, **metrics(scored, threshold, base_rate)}
    mp = meta_path(model_path)
    meta = dict(fio.read_json(mp) if meta is None else meta)
    meta["seed_threshold"] = meta.get("seed_threshold", meta["threshold"])
    meta["threshold"] = threshold
    meta["threshold_chosen_by"] = how
    meta["calibration"] = record
    fio.write_json(mp, meta, sort_keys=False)
    return meta
