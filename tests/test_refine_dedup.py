"""Question dedup: exact and near copies merge keeping the best score, questions that differ in
their numbers stay apart, and the result does not depend on the input order."""
from __future__ import annotations

import gzip
import json
import random
import time

import pytest

from webinstruct.pipeline.refine.dedup import NearDup, dedup, normalize, tokens

from conftest import BENCHMARKS  # data/benchmarks: shared/benchmarks, gzipped


# 30 words, one number.
LONG = ("A farmer plants apple trees along the northern edge of his field and pear trees along the "
        "southern edge so each row holds 12 trees. How many trees in total?")


def score_field(row: dict) -> float:
    return row["score"]


def rows_of(*questions: str, scores: list[float] | None = None) -> list[dict]:
    scores = scores or [0.0] * len(questions)
    return [{"id": f"r{i:03d}", "question": q, "score": s} for i, (q, s) in enumerate(zip(questions, scores))]


def outcome(kept: list[dict], dropped: list[dict]) -> tuple[list[str], list[tuple[str, str, str]]]:
    return [r["id"] for r in kept], [(d["row"]["id"], d["reason"], d["kept_id"]) for d in dropped]


def replace_word(text: str, index: int, new: str) -> str:
    words = text.split()
    words[index] = new
    return " ".join(words)


def test_normalize_keeps_math_and_drops_formatting():
    same = [("What is 3+5?", "what is 3 + 5"), ("Compute  $\\frac{1}{2}$ .", "compute \\frac{1}{2}"),
            ("He paid $1,000.", "he paid 1000"), ("3 × 4 − 2", "3*4-2"), ("x \\le 2", "x ≤ 2"),
            ("$\\left( \\dfrac{a}{b} \\right)$", "(\\frac{a}{b})"), ("Find  f'(x), please!", "find f'(x) please")]
    for a, b in same:
        assert normalize(a) == normalize(b), (a, b)
    different = [("What is 3.5?", "What is 35?"), ("Solve x<3", "Solve x>3"), ("What is 3+5?", "What is 3-5?"),
                 ("Find f'(x)", "Find f(x)"), ("Compute 5!", "Compute 5"), ("What is 3+5?", "What is 4+7?")]
    for a, b in different:
        assert normalize(a) != normalize(b), (a, b)
    assert normalize("  ") == "" and tokens("What is 2^10?") == ["what", "is", "2", "^", "10"]


def test_exact_duplicates_keep_the_best_score():
    variants = [LONG, LONG.upper(), "  ".join(LONG.split()), LONG.replace("?", " ???").replace(".", ""),
                f"**{LONG}**", LONG.replace("12", "$12$")]
    other = "How many trees does a farmer plant in a field with 7 rows of 9 trees each?"
    rows = rows_of(*variants, other, scores=[0.1, 0.9, 0.3, 0.2, 0.5, 0.9, 0.0])
    kept, dropped = dedup(rows, score_field)
    # r001 and r005 tie at 0.9: the smaller id wins.
    assert outcome(kept, dropped) == (["r001", "r006"],
                                      [(f"r00{i}", "duplicate_exact", "r001") for i in (0, 2, 3, 4, 5)])


def test_near_duplicates_merge_keeping_the_best_score():
    assert len(LONG.split()) == 30
    one = replace_word(LONG, 14, "saplings")  # a word in the middle
    two = replace_word(replace_word(LONG, 5, "beside"), 20, "row")  # two words apart
    shorter = LONG.replace("northern ", "")  # a word left out
    rows = rows_of(LONG, one, two, shorter, scores=[0.2, 0.1, 0.7, 0.3])
    kept, dropped = dedup(rows, score_field)
    assert outcome(kept, dropped) == (["r002"], [(f"r00{i}", "duplicate_near", "r002") for i in (0, 1, 3)])


def test_questions_that_differ_in_numbers_stay_apart():
    rows = rows_of("What is 3+5?", "What is 4+7?", "what is 3 + 5 ?", LONG, LONG.replace("12", "15"),
                   replace_word(LONG.replace("12", "15"), 14, "saplings"),
                   "A train travels 60 miles in 2 hours. What is its average speed in miles per hour?",
                   "A train travels 90 miles in 3 hours. What is its average speed in miles per hour?")
    kept, dropped = dedup(rows, score_field)
    assert [r["id"] for r in kept] == ["r000", "r001", "r003", "r004", "r006", "r007"]
    assert outcome(kept, dropped)[1] == [("r002", "duplicate_exact", "r000"), ("r005", "duplicate_near", "r004")]


def test_short_template_questions_stay_apart():
    rows = rows_of("Find the derivative of sin(x).", "Find the derivative of cos(x).",
                   "Find the derivative of x^2.", "Find the integral of sin(x).", "Factor x^2 - 1.")
    kept, dropped = dedup(rows, score_field)
    assert len(kept) == 5 and not dropped


def test_exact_copies_point_to_the_row_finally_kept():
    near = replace_word(LONG, 14, "saplings")
    rows = rows_of(LONG, LONG.lower(), near, scores=[0.5, 0.1, 0.8])
    kept, dropped = dedup(rows, score_field)
    assert outcome(kept, dropped) == (["r002"], [("r000", "duplicate_near", "r002"),
                                                 ("r001", "duplicate_exact", "r002")])


def test_same_result_whatever_the_input_order():
    base = [LONG, LONG.lower(), replace_word(LONG, 14, "saplings"), LONG.replace("12", "15"), "What is 3+5?",
            "What is 3 + 5", "What is 4+7?", replace_word(LONG, 3, "cherry")]
    rows = rows_of(*base, scores=[0.5, 0.5, 0.5, 0.1, 0.2, 0.2, 0.3, 0.5])  # ties everywhere
    expected = outcome(*dedup(rows, score_field))
    rng = random.Random(7)
    for _ in range(10):
        shuffled = rows[:]
        rng.shuffle(shuffled)
        assert outcome(*dedup(shuffled, score_field)) == expected
    assert expected[0] == ["r000", "r003", "r004", "r006"]


def test_edge_cases():
    assert dedup([], score_field) == ([], [])
    rows = [{"id": "b", "question": "", "score": 0}, {"id": "a", "score": 0}, {"id": "c", "question": "x", "score": 0}]
    kept, dropped = dedup(rows, score_field)
    assert outcome(kept, dropped) == (["a", "c"], [("b", "duplicate_exact", "a")])
    with pytest.raises(ValueError, match="unique"):
        dedup(rows_of("q1", "q2") + rows_of("q3"), score_field)
    assert [r["id"] for r in dedup(rows_of("one", "two"), score_field, key="missing")[0]] == ["r000"]


def test_five_word_shingles_would_miss_one_changed_word():
    """Why SHINGLE is 2: with 5-word shingles one changed word in the middle of a 30-word
    question leaves a Jaccard of 0.68, under the 0.7 threshold."""
    rows = rows_of(LONG, replace_word(LONG, 14, "saplings"))
    assert len(dedup(rows, score_field)[0]) == 1
    assert len(dedup(rows, score_field, params=NearDup(shingle=5, bands=16, rows=8))[0]) == 2


@pytest.fixture(scope="module")
def real_questions() -> list[str]:
    with gzip.open(BENCHMARKS / "gsm8k" / "GSM8K_test.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line)["query"] for line in f]


def test_planted_duplicates_among_real_questions(real_questions):
    """GSM8K test questions are all distinct; copies planted among them are all found."""
    rng = random.Random(3)
    rows = [{"id": f"q{i:05d}", "question": q, "score": rng.random()} for i, q in enumerate(real_questions)]
    planted: dict[str, tuple[str, str]] = {}  # copy id -> (original id, expected reason)
    for n, i in enumerate(rng.sample(range(len(rows)), 400)):
        words = rows[i]["question"].split()
        if n % 2:
            question = "  ".join(words).lower().replace(", ", " ,  ")
            reason = "duplicate_exact"
        else:
            # One non-number word near the middle, in questions of 30 words or more.
            if len(words) < 30:
                continue
            j = next(k for k in range(len(words) // 2, len(words)) if not any(c.isdigit() for c in words[k]))
            words[j] = "zebra"
            question, reason = " ".join(words), "duplicate_near"
        copy = f"p{n:05d}"
        planted[copy] = (rows[i]["id"], reason)
        rows.append({"id": copy, "question": question, "score": rng.random()})
    t0 = time.perf_counter()
    kept, dropped = dedup(rows, score_field)
    elapsed = time.perf_counter() - t0
    by_id = {r["id"]: r for r in rows}
    expected = []
    for copy, (original, reason) in planted.items():
        a, b = by_id[original], by_id[copy]
        winner, loser = (a, b) if (-a["score"], a["id"]) <= (-b["score"], b["id"]) else (b, a)
        expected.append((loser["id"], reason, winner["id"]))
    assert outcome(kept, dropped)[1] == sorted(expected)
    assert len(kept) == len(real_questions) and sum(r == "duplicate_near" for _, r in planted.values()) > 50
    assert elapsed < 10


# --- the Beam steps (pipeline/refine/beam_dedup.py) against the in-memory reference ---------------

def load_bench_generator():
    """bench/dedup_scale.py (a script) as a module: its synthetic refine rows."""
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("dedup_scale", ROOT / "bench" / "dedup_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def beam_dedup(rows: list[dict], score, partitions: int, tmp_path, number: bool = True,
               runner: str = "local") -> tuple[list[dict], list[dict], dict]:
    """Run Dedup (+ Number) as a Beam pipeline: (kept rows, dropped reports, merged stats)."""
    import apache_beam as beam

    from webinstruct.core.stats import merge
    from webinstruct.pipeline.refine.beam_dedup import Dedup, Number
    from webinstruct.pipeline.runners import beam_runner

    path = tmp_path / f"beam-dedup-{partitions}.jsonl"

    def sink(kv):
        with open(path, "w") as fh:
            for item in kv[1]:
                fh.write(json.dumps(item) + "\n")

    with beam_runner(runner) as (r, options):
        p = beam.Pipeline(runner=r, options=options)
        items = (p | beam.Create([("record", row) for row in rows] + [("stats", {"in": len(rows)})])
                 | Dedup(score, partitions=partitions, report=True))
        if number:
            items = items | Number()
        items | beam.Map(lambda item: (0, item)) | beam.GroupByKey() | beam.Map(sink)
        result = p.run()
        result.wait_until_finish()
    items = [json.loads(line) for line in path.read_text().splitlines()]
    kept = sorted((x for k, x in items if k == "record"), key=lambda r: r["id"])
    dropped = sorted((x for k, x in items if k == "dropped"), key=lambda d: d["id"])
    sizes = [d.committed for d in result.metrics().query()["distributions"]
             if d.key.metric.name == "refine.dedup_group_rows" and d.committed is not None]
    stats = merge(x for k, x in items if k == "stats")
    if sizes:
        stats["largest_group_rows"] = max(s.max for s in sizes)
    return kept, dropped, stats


@pytest.fixture(scope="module")
def planted_rows() -> list[dict]:
    """3000 synthetic refine rows: ~10% exact copies, ~5% near copies, A~B~C chains, template
    families that differ only in numbers, and a family of ~150 one-word variants of one question
    (its band buckets hold far more than MAX_BUCKET members)."""
    gen = load_bench_generator()
    rates = {"exact": 0.10, "near": 0.05, "chain": 0.03, "template": 0.08, "giant": 0.05}
    rows = gen.synthetic_rows(3000, seed=11, rates=rates)
    for row in rows:
        row["score"] = row["doc_score"]  # 11 values: ties everywhere, the smallest id must win them
    return rows


def test_beam_dedup_matches_the_reference(planted_rows, tmp_path):
    import numpy as np

    from webinstruct.pipeline.refine import dedup as D

    ref_kept, ref_dropped = dedup([dict(r) for r in planted_rows], score_field)
    reasons = {d["reason"] for d in ref_dropped}
    assert reasons == {"duplicate_exact", "duplicate_near"}
    # The planted structure is there: a band bucket above MAX_BUCKET, and a chain A~B~C whose ends
    # are not near copies of each other but end in one cluster.
    first_word = load_bench_generator().base_question(10 ** 9 + 99, 11)[0]
    giant = [r for r in planted_rows if r["question"].split()[0] == first_word]
    assert len(giant) > D.MAX_BUCKET
    toks = [D.tokens(r["question"]) for r in giant]
    h, off = D.shingle_hashes(toks)
    sig = D.signatures(h, off)
    keys = D.band_key(sig, D.number_keys([D.numbers_of(" ".join(t)) for t in toks]), 0)
    assert np.unique(keys, return_counts=True)[1].max() > D.MAX_BUCKET
    chained = [d for d in ref_dropped if d["reason"] == "duplicate_near"]
    by_id = {r["id"]: r for r in planted_rows}

    def jaccard(a: str, b: str) -> float:
        x, y = (set(zip(t, t[1:])) for t in (D.tokens(a), D.tokens(b)))
        return len(x & y) / len(x | y)
    assert any(jaccard(d["row"]["question"], by_id[d["kept_id"]]["question"]) < D.JACCARD for d in chained)

    expected = ([r["id"] for r in ref_kept], [(d["row"]["id"], d["reason"], d["kept_id"]) for d in ref_dropped])
    for partitions in (1, 7, 64):
        kept, dropped, stats = beam_dedup([dict(r) for r in planted_rows], score_field, partitions, tmp_path)
        assert ([r["id"] for r in kept], [(d["id"], d["reason"], d["kept_id"]) for d in dropped]) == expected
        assert [r["index"] for r in kept] == list(range(len(kept)))
        # No group holds every row: with P partitions the largest holds about 3000/P.
        largest = stats.pop("largest_group_rows")
        assert largest == 3000 if partitions == 1 else largest < 3000 // partitions * 3, (partitions, largest)
        assert stats == {"in": 3000, "rows_out": len(ref_kept),
                         "dropped_duplicate_exact": sum(d["reason"] == "duplicate_exact" for d in ref_dropped),
                         "dropped_duplicate_near": sum(d["reason"] == "duplicate_near" for d in ref_dropped)}


def test_beam_dedup_small_cases_match_the_reference(tmp_path):
    """The hand-made cases above, through the Beam steps: ties, exact copies pointing to the
    row finally kept, numbers, empty and missing questions, ids that are not hex."""
    near = replace_word(LONG, 14, "saplings")
    cases = [
        rows_of(LONG, LONG.upper(), "  ".join(LONG.split()), f"**{LONG}**", "What is 3+5?", "what is 3 + 5 ?",
                "What is 4+7?", scores=[0.1, 0.9, 0.3, 0.5, 0.2, 0.2, 0.0]),
        rows_of(LONG, LONG.lower(), near, LONG.replace("12", "15"), replace_word(LONG, 3, "cherry"),
                scores=[0.5, 0.5, 0.8, 0.1, 0.5]),
        [{"id": "b", "question": "", "score": 0}, {"id": "a", "score": 0}, {"id": "c", "question": "x", "score": 0}],
    ]
    for rows in cases:
        ref_kept, ref_dropped = dedup([dict(r) for r in rows], score_field)
        kept, dropped, _ = beam_dedup(rows, score_field, 3, tmp_path)
        assert [r["id"] for r in kept] == [r["id"] for r in ref_kept]
        assert [(d["id"], d["reason"], d["kept_id"]) for d in dropped] == \
            [(d["row"]["id"], d["reason"], d["kept_id"]) for d in ref_dropped]
    assert beam_dedup([], score_field, 3, tmp_path)[:2] == ([], [])


def test_number_gives_id_order_across_ranges():
    from webinstruct.pipeline.refine.beam_dedup import range_key

    ids = ["", "a", "a\x00", "ab", "abc", "abd", "b", "é", "zz", "\U0001f600", "0f3", "0f30"]
    assert sorted(ids, key=lambda i: (range_key(i), i)) == sorted(ids)
