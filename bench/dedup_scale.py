"""Refine dedup at scale: the partitioned Beam steps (pipeline/refine/beam_dedup.py) against the
old single-key step (every row under one key, then `dedup.dedup` in memory).

Synthetic refine rows: questions of 25-35 words (1-3 numbers each) from a 5000-word vocabulary,
about 10% exact copies (case, spacing and punctuation changed), 5% near copies (one or two words
changed, numbers kept), 1% A~B~C chains (two words changed per step, so A and C are not near),
5% members of template families (the same words, other numbers: all kept) and 0.5% one-word
variants of a single question (a band bucket far above MAX_BUCKET: star + chain). Each row is
generated from its own index, so the rows are made inside the pipeline (no 1e6-element Create).

    python bench/dedup_scale.py --rows 100000 1000000 --old-upto 100000 [--workers 2]

runs each size on the `multiprocess` runner (FnApiRunner, multi_processing, `--workers`
processes; or `--runner dask`: a local Dask cluster of `--workers` processes, which reports no
group sizes, as Beam's Dask runner has no metrics) and reports wall time, the peak RSS of each worker process (psutil, sampled every
0.2 s over the children of this process) and of the runner process itself (which holds Beam's
in-memory shuffle on this runner), the largest group a dedup step held (rows; band entries:
Beam distributions), plus the rows kept and the drop counters.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RATES = {"exact": 0.10, "near": 0.05, "chain": 0.01, "template": 0.05, "giant": 0.005}
_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "pa", "qu", "dor", "len", "mar", "tis", "ban",
              "cor", "fel", "gim", "hul", "jor", "kex", "lum", "nop", "ost", "pri", "sul", "tev", "urn", "wex"]


_VOCAB: dict[tuple[int, int], list[str]] = {}  # a plain dict, not lru_cache: Beam pickles __main__ by value


def vocabulary(seed: int = 7, size: int = 5000) -> list[str]:
    if (seed, size) not in _VOCAB:
        rng = random.Random(seed)
        words: set[str] = set()
        while len(words) < size:
            words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))))
        _VOCAB[seed, size] = sorted(words)
    return _VOCAB[seed, size]


def base_question(k: int, seed: int = 0) -> list[str]:
    """Question k of the corpus as words (deterministic in k)."""
    rng = random.Random(k * 104729 + seed * 7 + 1)
    vocab = vocabulary()
    words = [rng.choice(vocab) for _ in range(rng.randint(25, 35))]
    for _ in range(rng.randint(1, 3)):
        words.insert(rng.randrange(1, len(words)), str(rng.randint(2, 999)))
    return words


def _replace(words: list[str], rng: random.Random, count: int, avoid: set[int] = frozenset()) -> tuple[list[str], set[int]]:
    """`count` non-number words replaced, at least 2 apart, away from the positions in `avoid`."""
    words, vocab, used = list(words), vocabulary(), set(avoid)
    while count:
        i = rng.randrange(1, len(words) - 1)
        if words[i].isdigit() or any(abs(i - j) < 3 for j in used):
            continue
        words[i] = rng.choice(vocab) + "x"
        used.add(i)
        count -= 1
    return words, used - set(avoid)


def _formatted(words: list[str], rng: random.Random) -> str:
    """An exact copy: same `normalize` key, other surface form."""
    text = "  ".join(words) if rng.random() < 0.5 else " ".join(words)
    if rng.random() < 0.5:
        text = text[:1].upper() + text[1:]
    if rng.random() < 0.5:
        text = text.upper()
    return text + rng.choice(["?", " ?", "?!", "."])


def question(j: int, seed: int = 0, rates: dict[str, float] = RATES) -> str:
    rng = random.Random(j * 7919 + seed)
    u, edge = rng.random(), 0.0
    k = rng.randrange(j) if j else 0
    for kind in ("exact", "near", "chain", "template", "giant"):
        edge += rates[kind]
        if u >= edge:
            continue
        if kind == "exact":
            return _formatted(base_question(k, seed), rng)
        if kind == "near":
            return " ".join(_replace(base_question(k, seed), rng, rng.randint(1, 2))[0]) + "?"
        if kind == "chain":  # level 1 or 2 of the chain of base k: 2 then 4 words changed
            level = rng.randint(1, 2)
            crng = random.Random(k * 31 + seed + 5)
            words, used = _replace(base_question(k, seed), crng, 2)
            if level == 2:
                words, _ = _replace(words, crng, 2, used)
            return " ".join(words) + "?"
        if kind == "template":  # one of 20 templates, fresh numbers: a different problem each
            t = rng.randrange(20)
            words = [w for w in base_question(10 ** 9 + t, seed) if not w.isdigit()]
            return " ".join(words[:10] + [str(rng.randint(2, 10 ** 6))] + words[10:20] + [str(rng.randint(2, 999))]
                            + words[20:]) + "?"
        words, _ = _replace(base_question(10 ** 9 + 99, seed), rng, 1)  # giant family
        return " ".join(words) + "?"
    return " ".join(base_question(j, seed)) + "?"


def synthetic_row(j: int, seed: int = 0, rates: dict[str, float] = RATES) -> dict[str, Any]:
    rng = random.Random(j * 15485863 + seed + 3)
    return {"id": hashlib.sha1(f"row{seed}-{j}".encode()).hexdigest()[:20], "question": question(j, seed, rates),
            "answer": "x" * rng.randint(20, 400), "answer_check": rng.choice(["consistent", "unchecked", "changed"]),
            "doc_score": round(rng.random(), 1), "index": -1}


def synthetic_rows(n: int, seed: int = 0, rates: dict[str, float] = RATES) -> list[dict[str, Any]]:
    return [synthetic_row(j, seed, rates) for j in range(n)]


def _chunk(i: int, n: int, size: int, seed: int) -> Iterator[tuple[str, Any]]:
    for j in range(i * size, min(n, (i + 1) * size)):
        yield "record", synthetic_row(j, seed)
    yield "stats", {"generated": min(n, (i + 1) * size) - i * size}


def _old_dedup(kv, stage: str) -> Iterator[tuple[str, Any]]:
    """The step this replaces: every row under one key, `dedup` in memory, then numbering."""
    from webinstruct.core.stats import StageCounter
    from webinstruct.pipeline.refine.dedup import dedup
    from webinstruct.pipeline.refine.transforms import score

    from webinstruct.pipeline.refine.beam_dedup import GROUP_ROWS

    count = StageCounter(stage)
    rows = []
    for kind, payload in kv[1]:
        if kind == "record":
            rows.append(payload)
        else:
            yield kind, payload
    GROUP_ROWS.update(len(rows))
    rows, dropped = dedup(rows, score)
    for d in dropped:
        count(f"dropped_{d['reason']}", 1)
    for i, row in enumerate(sorted(rows, key=lambda r: r["id"])):
        row["index"] = i
        yield "record", row
    count("rows_out", len(rows))
    yield "stats", count.drain()


def _tally(item: tuple[str, Any]) -> tuple[int, Any]:
    kind, payload = item
    if kind == "record":
        return 0, payload["index"]
    return 1, payload if kind == "stats" else {}


def _summarise(kv, path: str) -> None:
    from webinstruct.core.stats import merge

    items = list(kv[1])
    indexes = [x for k, x in items if k == 0]
    stats = merge(x for k, x in items if k == 1)
    ok = sorted(indexes) == list(range(len(indexes)))
    Path(path).write_text(json.dumps({"records": len(indexes), "index_ok": ok, "stats": stats}))


def build(p, n: int, seed: int, approach: str, partitions: int, result: str) -> None:
    import apache_beam as beam

    from webinstruct.pipeline.refine.beam_dedup import Dedup, Number
    from webinstruct.pipeline.refine.transforms import score

    size = 5000
    items = (p
             | "Chunks" >> beam.Create(list(range((n + size - 1) // size)))
             | "Spread" >> beam.Reshuffle()
             | "Generate" >> beam.FlatMap(_chunk, n, size, seed))
    if approach == "beam":
        items = items | "Dedup" >> Dedup(score, partitions=partitions) | "Number" >> Number()
    else:
        items = (items
                 | "KeyAllRows" >> beam.Map(lambda item: (0, item))
                 | "GroupAllRows" >> beam.GroupByKey()
                 | "OldDedup" >> beam.FlatMap(_old_dedup, "refine"))
    (items
     | "Tally" >> beam.Map(_tally)
     | "KeyAll" >> beam.Map(lambda kv: (0, kv))
     | "GroupAll" >> beam.GroupByKey()
     | "Summarise" >> beam.Map(_summarise, result))


class PeakRSS:
    """Peak RSS of this process and of each child process (Beam's workers), sampled in a thread."""

    def __init__(self, interval: float = 0.2):
        import psutil

        self.me = psutil.Process()
        self.interval = interval
        self.children: dict[int, int] = {}
        self.main = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            self.main = max(self.main, self.me.memory_info().rss)
            for child in self.me.children(recursive=True):
                try:
                    rss = child.memory_info().rss
                except psutil.Error:
                    continue
                self.children[child.pid] = max(self.children.get(child.pid, 0), rss)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_one(n: int, approach: str, workers: int, partitions: int, seed: int,
            runner_kind: str = "multiprocess") -> dict[str, Any]:
    import apache_beam as beam

    from webinstruct.pipeline.runners import beam_runner

    with tempfile.TemporaryDirectory() as tmp:
        result = os.path.join(tmp, "result.json")
        t0 = time.monotonic()
        with PeakRSS() as rss, beam_runner(runner_kind, workers) as (runner, options):
            p = beam.Pipeline(runner=runner, options=options)
            build(p, n, seed, approach, partitions, result)
            run = p.run()
            run.wait_until_finish()
        wall = time.monotonic() - t0
        out = json.loads(Path(result).read_text())
        groups = {}
        try:
            distributions = run.metrics().query()["distributions"]
        except Exception:  # a runner without Beam metrics (Dask): group sizes unknown
            distributions = []
        for d in distributions:
            name = d.key.metric.name.rsplit(".", 1)[-1]
            value = d.committed or d.attempted
            if value is not None and value.count:
                prev = groups.get(name, {"max": 0, "count": 0})
                groups[name] = {"max": max(prev["max"], value.max), "count": prev["count"] + value.count}
        out["largest_group"] = {k: v["max"] for k, v in groups.items()}
    mib = 1 << 20
    workers_rss = sorted((v // mib for v in rss.children.values()), reverse=True)
    return {"rows": n, "approach": approach, "wall_s": round(wall, 1), "worker_peak_rss_mib": workers_rss,
            "runner_peak_rss_mib": rss.main // mib, **out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--old-upto", type=int, default=100_000, help="also run the old single-key step up to this size")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runner", choices=["multiprocess", "dask"], default="multiprocess",
                    help="dask: a local Dask cluster of --workers processes (its workers are this process's children)")
    ap.add_argument("--partitions", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="compare the counts with the in-memory dedup (small sizes)")
    args = ap.parse_args()
    for n in args.rows:
        approaches = ["beam"] + (["old"] if n <= args.old_upto else [])
        for approach in approaches:
            res = run_one(n, approach, args.workers, args.partitions, args.seed, args.runner)
            print(json.dumps(res), flush=True)
        if args.check:
            from webinstruct.pipeline.refine.dedup import dedup
            from webinstruct.pipeline.refine.transforms import score

            kept, dropped = dedup(synthetic_rows(n, args.seed), score)
            reasons: dict[str, int] = {}
            for d in dropped:
                reasons[d["reason"]] = reasons.get(d["reason"], 0) + 1
            print(json.dumps({"rows": n, "reference_kept": len(kept), "reference_dropped": reasons}), flush=True)


if __name__ == "__main__":
    main()
