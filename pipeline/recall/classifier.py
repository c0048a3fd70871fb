"""The recall classifier: a fastText model that scores how exam/quiz/educational a web document is.

MAmmoTH2 and DeepSeekMath recall candidate documents from Common Crawl with a fastText classifier
trained on seed positives (educational pages) against random web negatives. This module trains it
(with a held-out split and a decision threshold chosen on that split), saves model + metadata
atomically, and loads it for scoring. Text goes through `normalize_for_classifier` both ways.

Files go through `webinstruct.core.io`, so the model may live at a URL: fastText reads and writes
only local files, so a remote model is saved from, and loaded through, a local temporary copy.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
import typing
from typing import Annotated, Any, Iterable, Literal

import annotated_types as at

import numpy as np

from webinstruct.core import io as fio
from webinstruct.core.config import NonNegativeInt, PositiveFloat, PositiveInt, option
from webinstruct.core.shards import open_text
from webinstruct.pipeline.text.normalize import NORMALIZE_VERSION, normalization_spec, normalize_for_classifier

log = logging.getLogger(__name__)

POS, NEG = "__label__pos", "__label__neg"
Rule = Literal["precision", "percentile"]
RULES: tuple[str, ...] = typing.get_args(Rule)


@dataclass
class ClassifierConfig:
    """fastText settings (MAmmoTH2 / DeepSeekMath: dim 256, lr 0.1, word n-grams up to 3,
    min count 3, 3 epochs) plus the held-out split and threshold rule.

    The model holds (vocabulary + bucket) x dim float32 weights: fastText's default bucket of 2M
    with dim 256 gives a ~2 GB model, so the default here is 200K (~0.2 GB); n-gram hash collisions
    grow as bucket shrinks. Training with threads > 1 is not bit-reproducible (Hogwild updates);
    threads=1 with a fixed seed gives the same model every run.

    Held-out precision is measured at the seeds' class ratio (about 1:1). On a crawl where
    educational pages are rare, the same threshold has far lower precision: raise
    target_precision, or re-pick the threshold on a sample of the crawl.
    """
    dim: PositiveInt = option(256, "fastText vector size")
    lr: PositiveFloat = option(0.1, "fastText learning rate")
    word_ngrams: PositiveInt = option(3, "word n-grams up to this length")
    min_count: NonNegativeInt = option(3, "drop words seen fewer times")
    epoch: PositiveInt = option(3, "training epochs")
    bucket: NonNegativeInt = option(200_000, "hash buckets for word n-grams (2M default of fastText with "
                                  "dim 256 makes a 2 GB model)")
    loss: Literal["softmax", "hs", "ns", "ova"] = option("softmax", "fastText loss: softmax, hs, ns or ova")
    threads: PositiveInt = option(2, "training threads; 1 makes training bit-reproducible")
    seed: int = option(0, "seed for the shuffle, the held-out split and fastText")
    holdout: Annotated[float, at.Gt(0), at.Lt(1)] = option(0.1, "fraction of each class held out to measure and pick the "
                                 "threshold")
    threshold_rule: Rule = option("precision", "how to pick the threshold: 'precision' (lowest "
                                 "threshold reaching target_precision on held-out, else best "
                                 "F1) or 'percentile' (keep the top `percentile` percent of "
                                 "held-out docs)")
    target_precision: Annotated[float, at.Gt(0), at.Le(1)] = option(0.98, "held-out precision the 'precision' rule must reach")
    percentile: Annotated[float, at.Gt(0), at.Le(100)] = option(50.0, "'percentile' rule: percent of held-out documents (both "
                                     "classes) scoring at or above the threshold")
    max_chars: PositiveInt = option(20000, "characters of normalised text the classifier sees")
    calibrate_warc: list[str] = option([], "WARC files of a labelled crawl-like sample: when set, the threshold is "
                                           "chosen on these pages (see pipeline/recall/calibrate.py) instead of the seed split")
    calibrate_labels: str = option("", "the sample's labels: tab-separated, columns url and label (math positive, "
                                       "general negative, others ignored)")
    base_rate: Annotated[float, at.Gt(0), at.Lt(1)] = option(0.01, "share of positives in the crawl the threshold is for "
                                                               "(Common Crawl: well under 1% math)")
    crawl_precision: Annotated[float, at.Gt(0), at.Le(1)] = option(0.3, "precision at base_rate the calibrated threshold "
                                                                 "must reach on the crawl sample")

    def __post_init__(self) -> None:
        if self.threshold_rule not in RULES:
            raise ValueError(f"threshold_rule must be one of {RULES}, got {self.threshold_rule!r}")
        if not 0.0 < self.holdout < 1.0:
            raise ValueError(f"holdout must be in (0, 1), got {self.holdout}")
        if not 0.0 < self.percentile <= 100.0:
            raise ValueError(f"percentile must be in (0, 100], got {self.percentile}")


def load_texts(paths: Iterable[str], limit: int | None = None,
               stats: dict[str, int] | None = None) -> list[str]:
    """The `text` field of each JSON line in `paths`, in order, at most `limit` in all.

    Blank lines are skipped; lines that are not JSON objects with a non-empty string `text` are
    counted as `malformed` in `stats` (if given) and logged.
    """
    texts: list[str] = []
    counts = {"read": 0, "malformed": 0} if stats is None else stats
    counts.setdefault("read", 0)
    counts.setdefault("malformed", 0)
    for path in paths:
        with open_text(path) as fh:
            for line in fh:
                if limit is not None and len(texts) >= limit:
                    return texts
                if not line.strip():
                    continue
                try:
                    text = json.loads(line).get("text")
                except (json.JSONDecodeError, AttributeError):
                    text = None
                if not isinstance(text, str) or not text.strip():
                    counts["malformed"] += 1
                    continue
                counts["read"] += 1
                texts.append(text)
    if counts["malformed"]:
        log.warning("load_texts: skipped %d malformed lines", counts["malformed"])
    return texts


# ---- metrics and threshold --------------------------------------------------------------------

def _metrics(scores: np.ndarray, labels: np.ndarray, t: float) -> dict[str, float]:
    pred = scores >= t
    tp = int(np.sum(pred & labels)); fp = int(np.sum(pred & ~labels))
    fn = int(np.sum(~pred & labels)); tn = int(np.sum(~pred & ~labels))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"threshold": float(t), "precision": p, "recall": r, "f1": f1,
            "accuracy": (tp + tn) / len(labels), "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def choose_threshold(scores: np.ndarray, labels: np.ndarray,
                     cfg: ClassifierConfig) -> tuple[float, str]:
    """(threshold, how it was chosen); a document is recalled when score >= threshold."""
    if cfg.threshold_rule == "percentile":
        keep = max(1, math.ceil(cfg.percentile / 100.0 * len(scores)))
        return _clamp(float(np.sort(scores)[::-1][keep - 1])), "percentile"
    # Sweep thresholds from high to low; a threshold t = s[j] recalls every score >= t, so only the
    # last index of each run of tied scores is a real cut.
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    tp, fp = np.cumsum(y), np.cumsum(~y)
    cut = np.append(s[1:] != s[:-1], True)
    precision = tp / (tp + fp)
    # Only cuts that gain a positive are candidates: lowering the threshold to a negative's score
    # only adds false positives, so the lowest candidate reaching the target maximises recall.
    # (Precision is not monotonic in the threshold, hence "lowest", not "first".)
    gains = cut & _group_has_positive(s, y)
    ok = np.flatnonzero(gains & (precision >= cfg.target_precision))
    if ok.size:
        return _clamp(float(s[ok[-1]])), "precision"
    f1 = 2 * tp / (2 * tp + fp + (int(y.sum()) - tp))
    f1 = np.where(cut, f1, -1.0)
    return _clamp(float(s[int(np.argmax(f1))])), "best_f1_fallback"  # argmax: highest on ties


def _group_has_positive(s: np.ndarray, y: np.ndarray) -> np.ndarray:
    """For sorted scores s, True at each index whose run of tied scores holds a positive."""
    starts = np.flatnonzero(np.append(True, s[1:] != s[:-1]))
    has = np.logical_or.reduceat(y, starts)
    return np.repeat(has, np.diff(np.append(starts, len(s))))


def _clamp(t: float) -> float:
    # Keep the threshold strictly inside (0, 1): 0 would accept everything, 1 nothing but ties.
    return min(max(t, 1e-6), 1.0 - 1e-6)


def _histogram(scores: np.ndarray, labels: np.ndarray, bins: int = 10) -> dict[str, list]:
    edges = np.linspace(0.0, 1.0, bins + 1)
    return {"edges": [round(float(e), 3) for e in edges],
            "pos": np.histogram(scores[labels], edges)[0].tolist(),
            "neg": np.histogram(scores[~labels], edges)[0].tolist()}


# ---- training ---------------------------------------------------------------------------------

def _dedup(texts: list[str], cfg: ClassifierConfig) -> tuple[list[tuple[str, str]], int, int]:
    """(hash, normalised text) pairs, dropping empty-after-normalisation and duplicate texts."""
    seen: set[str] = set()
    out, empty, dup = [], 0, 0
    for text in texts:
        norm = normalize_for_classifier(text, cfg.max_chars)
        if not norm:
            empty += 1
            continue
        # Identical fastText inputs are the duplicates that matter here (and hashing the
        # normalised text halves the cost of content_hash on the raw text).
        h = hashlib.sha1(norm.encode("utf-8")).hexdigest()
        if h in seen:
            dup += 1
            continue
        seen.add(h)
        out.append((h, norm))
    return out, empty, dup


# The name tests/test_classifier.py imports; the one atomic writer is webinstruct.core.io's.
_atomic_write = fio.write_atomic_with


def _fasttext_version() -> str:
    from importlib import metadata
    for dist in ("fasttext-numpy2", "fasttext", "fasttext-wheel"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


NAN_RETRIES = 4


def _train_fasttext(train_file: str, cfg: ClassifierConfig):
    """fastText, retried with the next seed when it stops with "Encountered NaN.".

    fastText 0.9.x intermittently aborts this way on some inputs (seen here on the domain-round
    training sets, with the same data passing on a rerun); a new seed gets past it. The number of
    retries is recorded in the metadata so a flaky model is visible.
    """
    import fasttext

    for attempt in range(NAN_RETRIES + 1):
        try:
            model = fasttext.train_supervised(
                input=train_file, dim=cfg.dim, lr=cfg.lr, wordNgrams=cfg.word_ngrams,
                minCount=cfg.min_count, epoch=cfg.epoch, bucket=cfg.bucket, loss=cfg.loss,
                thread=cfg.threads, seed=cfg.seed + attempt, verbose=0)
            return model, attempt
        except RuntimeError as err:
            if "NaN" not in str(err) or attempt == NAN_RETRIES:
                raise
            log.warning("fastText stopped with %s (seed %d): retrying with seed %d",
                        err, cfg.seed + attempt, cfg.seed + attempt + 1)
    raise AssertionError("unreachable")


def train_classifier(positives: list[str], negatives: list[str], out_path: str,
                     cfg: ClassifierConfig,
                     sources: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Train, measure on a stratified held-out split, pick the threshold, save model + metadata.

    `out_path` is the model file (e.g. runs/x/classifier.bin); the metadata goes beside it with a
    .json suffix. `sources` ({"positives": [paths], "negatives": [paths]}) is recorded in the
    metadata with file sizes. Returns the metadata.
    """
    import fasttext  # here, not at import time: the scoring side imports this module in workers

    started = time.time()
    pos, pos_empty, pos_dup = _dedup(positives, cfg)
    neg, neg_empty, neg_dup = _dedup(negatives, cfg)
    # A text labelled both ways teaches nothing and would leak across the split: drop it from both.
    both = {h for h, _ in pos} & {h for h, _ in neg}
    pos = [n for h, n in pos if h not in both]
    neg = [n for h, n in neg if h not in both]
    if len(pos) < 2 or len(neg) < 2:
        raise ValueError(f"need at least 2 positives and 2 negatives, got {len(pos)} and "
                         f"{len(neg)}")

    rng = random.Random(cfg.seed)
    rng.shuffle(pos)
    rng.shuffle(neg)
    n_hold_pos = min(len(pos) - 1, max(1, round(cfg.holdout * len(pos))))
    n_hold_neg = min(len(neg) - 1, max(1, round(cfg.holdout * len(neg))))
    held = [(t, True) for t in pos[:n_hold_pos]] + [(t, False) for t in neg[:n_hold_neg]]
    train = [(t, True) for t in pos[n_hold_pos:]] + [(t, False) for t in neg[n_hold_neg:]]
    rng.shuffle(train)  # fastText reads the file in order: interleave the classes

    out = str(out_path)
    # fastText reads its training set from a local file: a scratch file beside a local model.
    with fio.scratch_file(out, prefix=".fasttext-train.", suffix=".txt") as train_file:
        with open(train_file, "w", encoding="utf-8") as fh:
            for text, is_pos in train:
                fh.write(f"{POS if is_pos else NEG} {text}\n")
        t0 = time.time()
        model, nan_retries = _train_fasttext(train_file, cfg)
        train_seconds = time.time() - t0

    scores = np.asarray(_predict_pos(model, [t for t, _ in held]))
    labels = np.array([y for _, y in held], dtype=bool)
    threshold, rule_used = choose_threshold(scores, labels, cfg)
    if rule_used == "best_f1_fallback":
        log.warning("target precision %.3f not reached on held-out; using the best-F1 threshold",
                    cfg.target_precision)

    fio.write_atomic_with(out, model.save_model)
    meta = {
        "model_path": fio.basename(out),
        "model_bytes": fio.size(out),
        "config": dataclasses.asdict(cfg),
        "threshold": threshold,
        "threshold_rule": cfg.threshold_rule,
        "threshold_chosen_by": rule_used,  # "precision", "percentile" or "best_f1_fallback"
        "metrics": {"at_threshold": _metrics(scores, labels, threshold),
                    "at_0.5": _metrics(scores, labels, 0.5),  # all measured on the held-out split
                    "histogram": _histogram(scores, labels)},
        "counts": {
            "positives_in": len(positives), "negatives_in": len(negatives),
            "positives_empty": pos_empty, "negatives_empty": neg_empty,
            "positives_duplicate": pos_dup, "negatives_duplicate": neg_dup,
            "in_both_classes": len(both),
            "train_pos": len(pos) - n_hold_pos, "train_neg": len(neg) - n_hold_neg,
            "heldout_pos": n_hold_pos, "heldout_neg": n_hold_neg,
            "vocabulary": len(model.words),
        },
        "training_data": {role: [{"path": str(p), "bytes": fio.size(p) if fio.exists(p) else None}
                                 for p in paths]
                          for role, paths in (sources or {}).items()},
        "normalize_version": NORMALIZE_VERSION,
        "normalization": normalization_spec(),  # the steps, for scoring this model in another tool
        "fasttext_version": _fasttext_version(),
        "train_seconds": round(train_seconds, 3),
        "nan_retries": nan_retries,
        "total_seconds": round(time.time() - started, 3),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    fio.write_json(meta_path(out), meta, sort_keys=False)
    return meta


# ---- scoring ----------------------------------------------------------------------------------

def meta_path(model_path: str | Path) -> str:
    """The metadata file of a model: its name with the suffix replaced by .json."""
    path = str(model_path)
    stem, dot, suffix = path.rpartition(".")
    return f"{stem}.json" if dot and "/" not in suffix else f"{path}.json"


def _predict_pos(model, norm_texts: list[str], batch_size: int = 1024) -> list[float]:
    """P(positive) for already-normalised texts; empty text scores 0.0."""
    scores = [0.0] * len(norm_texts)
    idx = [i for i, t in enumerate(norm_texts) if t]
    for start in range(0, len(idx), batch_size):
        chunk = idx[start:start + batch_size]
        labels, probs = model.predict([norm_texts[i] for i in chunk], k=2)
        for i, labs, ps in zip(chunk, labels, probs):
            p = dict(zip(labs, ps)).get(POS, 0.0)
            scores[i] = min(max(float(p), 0.0), 1.0)  # fastText's softmax can exceed 1 by 1e-5
    return scores


class Classifier:
    """A trained recall classifier: `score(text)` is P(educational); recall when >= `threshold`.

    Holds no global state; loading is one file read, so Beam DoFns load it in `setup()`. Pickling
    stores only the path and reloads on unpickle.
    """

    def __init__(self, model: Any, meta: dict[str, Any], path: str):
        self.model, self.meta, self.path = model, meta, path
        self.threshold: float = float(meta["threshold"])
        self.max_chars: int = int(meta["config"]["max_chars"])

    @classmethod
    def load(cls, path: str | Path) -> "Classifier":
        """Load `path` (the model file, or a directory holding classifier.bin) and its metadata."""
        p = str(path)
        if fio.isdir(p):
            p = fio.join(p, "classifier.bin")
        if not fio.isfile(p):
            raise FileNotFoundError(
                f"no classifier at {p}: run `webinstruct classifier train` first")
        mp = meta_path(p)
        if not fio.isfile(mp):
            raise FileNotFoundError(f"classifier metadata {mp} is missing: retrain with "
                                    "`webinstruct classifier train`")
        meta = fio.read_json(mp)
        if meta.get("model_bytes") not in (None, fio.size(p)):
            raise ValueError(f"{p} and {mp} do not belong together (size differs from metadata)")
        if meta.get("normalize_version") != NORMALIZE_VERSION:
            log.warning("%s was trained with normalize version %s, this code has %s: retrain",
                        p, meta.get("normalize_version"), NORMALIZE_VERSION)
        import fasttext
        with fio.local_copy(p) as local:  # fastText reads the whole model into memory
            model = fasttext.load_model(local)
        return cls(model, meta, p)

    def __reduce__(self):
        return (Classifier.load, (str(self.path),))

    def score(self, text: str) -> float:
        return self.score_many([text])[0]

    def score_many(self, texts: Iterable[str], batch_size: int = 1024) -> list[float]:
        norm = [normalize_for_classifier(t or "", self.max_chars) for t in texts]
        return _predict_pos(self.model, norm, batch_size)
