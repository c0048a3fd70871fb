"""Benchmark decontamination: planted copies are caught with the right benchmark, near misses are
not, benchmark files of every shape are read, and the index cache is reused until a file changes."""
from __future__ import annotations

import functools
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from webinstruct.pipeline.refine import decontam
from webinstruct.pipeline.refine.decontam import NGramIndex, benchmark_texts, tokenize

from conftest import BENCHMARKS, ROOT  # data/benchmarks: shared/benchmarks, gzipped

# benchmark -> (file, question field) of the real records the planted tests copy.
PLANTED = {
    "gsm8k": ("GSM8K_test.jsonl", "query"),
    "math": ("MATH_test.jsonl", "problem"),
    "theoremqa": ("theoremqa_test.json", "Question"),
    "mmlu_stem": ("stem.json", "question"),
    "arc_challenge": ("challenge.json", "question"),
    "gpqa": ("gpqa_diamond.jsonl", "Question"),
    "aqua": ("AQuA.json", "question"),
    "svamp": ("SVAMP.json", "Body"),
    "bbh": ("bbh.json", "question"),
}
BEFORE = "Yesterday my cousin sent me this one from her homework sheet and I was stuck on it:"
AFTER = "Could somebody walk me through the steps? I tried twice and keep getting a different result."


@functools.lru_cache(maxsize=None)
def _records(path: Path) -> list[dict]:
    """The records of a benchmark file, read from `path` or its gzipped copy `path`.gz."""
    if not path.exists():
        path = path.with_name(path.name + ".gz")
    out: list[dict] = []
    for value in decontam.read_json(path):
        out.extend(value if isinstance(value, list) else [value])
    return out


def _questions(name: str, count: int = 3, min_words: int = 20) -> list[str]:
    """A few real questions of a benchmark, long enough for the near-miss edits."""
    file, field = PLANTED[name]
    found = [r[field] for r in _records(BENCHMARKS / name / file) if len(tokenize(r[field])) >= min_words]
    return found[5:5 + count]


@pytest.fixture(scope="module")
def index() -> NGramIndex:
    t0 = time.perf_counter()
    built = NGramIndex.build([BENCHMARKS])
    built.build_seconds = time.perf_counter() - t0
    return built


def test_whole_benchmark_index(index):
    summary = index.summary()
    assert set(PLANTED) <= set(summary["benchmarks"])
    assert summary["n"] == 10 and summary["ngrams"] == len(index) > 500_000
    assert all(summary["ngrams_per_benchmark"][name] > 1000 for name in PLANTED)
    assert np.all(index.hashes[1:] > index.hashes[:-1])  # sorted, one entry per n-gram
    # The bit prefilter never hides an indexed n-gram.
    hit, at = index._lookup(index.hashes[::97])
    assert hit.all() and np.array_equal(at, np.arange(0, len(index), 97))
    assert index.build_seconds < 30, f"index build took {index.build_seconds:.1f}s"
    assert index.match(BEFORE + " " + AFTER) is None  # the made-up wrapper is clean


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_planted_questions_are_caught(index, name):
    for question in _questions(name):
        hit = index.match(f"{BEFORE}\n\n{question}\n\n{AFTER}")
        assert hit is not None, question
        bench, ngram = hit
        assert bench == name
        assert len(ngram.split()) == 10 and ngram in " ".join(tokenize(question))


def test_case_spacing_and_markup_do_not_hide_a_copy(index):
    question = _questions("gsm8k", 1)[0]
    shouted = "  ".join(question.upper().split()).replace(".", " !! ")
    assert index.match(f"<p>{shouted}</p>")[0] == "gsm8k"


def test_answers_and_explanations_count(index):
    record = _records(BENCHMARKS / "math" / "MATH_test.jsonl")[7]
    assert index.match(f"Solution: {record['solution']}")[0] == "math"
    # GSM8K solutions are indexed with and without their <<calculator>> annotations.
    answer = _records(BENCHMARKS / "gsm8k" / "GSM8K_test.jsonl")[3]["response"]
    assert "<<" in answer
    assert index.match(decontam._CALCULATOR.sub("", answer))[0] == "gsm8k"


@pytest.mark.parametrize("name", ["gsm8k", "math", "theoremqa", "mmlu_stem", "arc_challenge", "gpqa"])
def test_every_fifth_word_changed_does_not_match(index, name):
    for question in _questions(name):
        words = tokenize(question)
        edited = [f"zq{i}x" if i % 5 == 4 else w for i, w in enumerate(words)]
        assert index.match(f"{BEFORE} {' '.join(words)} {AFTER}") is not None
        assert index.match(f"{BEFORE} {' '.join(edited)} {AFTER}") is None


@pytest.mark.parametrize("name", ["gsm8k", "math", "gpqa"])
def test_nine_shared_words_do_not_match_ten_do(index, name):
    for question in _questions(name):
        words = tokenize(question)
        for start in (0, 5):
            nine, ten = " ".join(words[start:start + 9]), " ".join(words[start:start + 10])
            assert index.match(f"qqalpha qqbeta {nine} qqgamma qqdelta") is None
            assert index.match(f"qqalpha qqbeta {ten} qqgamma qqdelta") == (name, ten)


def test_short_texts_never_match(index):
    words = tokenize(_questions("gsm8k", 1)[0])
    assert index.match(" ".join(words[:9])) is None
    assert index.match("") is None
    assert index.match(" ".join(words[:10]))[0] == "gsm8k"


def test_match_many_agrees_with_match(index):
    texts = [f"{BEFORE} {q} {AFTER}" for name in PLANTED for q in _questions(name, 2)]
    texts += [BEFORE, "", "short", AFTER * 3, " ".join(tokenize(texts[0])[::2])]
    assert index.match_many(texts) == [index.match(t) for t in texts]


def test_save_load_round_trip(index, tmp_path):
    path = tmp_path / "sub" / "index.npz"
    index.save(path)
    assert index.path == str(path)
    assert [p.name for p in path.parent.iterdir()] == ["index.npz"]  # no temp file left behind
    loaded = NGramIndex.load(path)
    assert loaded.names == index.names and loaded.n == index.n and loaded.path == str(path)
    assert np.array_equal(loaded.hashes, index.hashes) and np.array_equal(loaded.benchmarks, index.benchmarks)
    assert loaded.summary() == index.summary()
    question = _questions("theoremqa", 1)[0]
    assert loaded.match(question) == index.match(question)


# --- a tiny benchmark directory for file formats and the cache -----------------------------------

FILLER = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike"


def _tiny_benchmarks(root: Path) -> Path:
    (root / "plain").mkdir(parents=True)
    (root / "plain" / "list.json").write_text(json.dumps(
        [{"question": f"plain list question {FILLER}", "answer": 42, "flag": True,
          "nested": {"why": [f"nested why {FILLER}"]}}]))
    (root / "plain" / "lines.jsonl").write_text(json.dumps({"q": f"plain lines question {FILLER}"}) + "\n\n")
    (root / "plain" / "lines_named_json.json").write_text(  # JSON lines under a .json name (AQuA.json)
        json.dumps({"q": f"lines under json name {FILLER}"}) + "\n" + json.dumps({"q": "second"}) + "\n")
    (root / "packed").mkdir()
    with gzip.open(root / "packed" / "tasks.json.gz", "wt") as f:
        json.dump({"task_a": [[f"gzip dict question {FILLER}", "its answer"]]}, f)
    with gzip.open(root / "packed" / "rows.jsonl.gz", "wt") as f:
        f.write(json.dumps({"q": f"gzip lines question {FILLER}", "line sep": "a\u2028b"}) + "\n")
    (root / "packed" / "notes.txt").write_text(f"not json {FILLER}")
    (root / "MANIFEST.md").write_text(f"# manifest {FILLER}")
    (root / "math" / "algebra").mkdir(parents=True)
    (root / "math" / "algebra" / "1.json").write_text(json.dumps({"problem": f"per problem file {FILLER}"}))
    return root


def test_benchmark_texts_reads_every_shape(tmp_path):
    root = _tiny_benchmarks(tmp_path / "b")
    texts = list(benchmark_texts(root))
    assert (("plain", "42") in texts) and ("plain", f"nested why {FILLER}") in texts
    assert ("plain", "True") not in texts  # booleans are not text
    assert ("plain", f"lines under json name {FILLER}") in texts and ("plain", "second") in texts
    assert ("packed", f"gzip dict question {FILLER}") in texts and ("packed", "its answer") in texts
    assert ("packed", f"gzip lines question {FILLER}") in texts and ("packed", "a\u2028b") in texts
    assert not any("not json" in t or "manifest" in t for _, t in texts)
    # Per-problem MATH files count until a consolidated MATH_test.jsonl stands beside them.
    assert ("math", f"per problem file {FILLER}") in texts
    with gzip.open(root / "math" / "MATH_test.jsonl.gz", "wt") as f:  # gzipped counts too
        f.write(json.dumps({"problem": f"consolidated {FILLER}"}) + "\n")
    names = [t for b, t in benchmark_texts(root) if b == "math"]
    assert names == [f"consolidated {FILLER}"]


def test_build_on_tiny_benchmarks(tmp_path):
    root = _tiny_benchmarks(tmp_path / "b")
    index = NGramIndex.build([root])
    assert index.names == ["math", "packed", "plain"]
    hit = index.match(f"Someone posted: gzip dict question {FILLER}!")
    assert hit == ("packed", "gzip dict question alpha bravo charlie delta echo foxtrot golf")
    # FILLER alone is in several benchmarks: one name is reported, the same one every build.
    assert index.match(FILLER) == NGramIndex.build([root]).match(FILLER)


def test_cached_builds_once_and_rebuilds_when_a_file_changes(tmp_path, monkeypatch):
    root = _tiny_benchmarks(tmp_path / "b")
    cache = tmp_path / "cache"
    builds = []
    real_build = NGramIndex.build.__func__

    def counting_build(cls, roots, n=decontam.N):
        builds.append(1)
        return real_build(cls, roots, n)

    monkeypatch.setattr(NGramIndex, "build", classmethod(counting_build))
    first = NGramIndex.cached([root], 10, cache)
    files = list(cache.iterdir())
    assert len(builds) == 1 and len(files) == 1 and first.path == str(files[0])
    mtime = files[0].stat().st_mtime_ns
    again = NGramIndex.cached([root], 10, cache)
    assert len(builds) == 1 and files[0].stat().st_mtime_ns == mtime
    assert np.array_equal(again.hashes, first.hashes) and again.path == first.path
    # A different n is a different index.
    NGramIndex.cached([root], 8, cache)
    assert len(builds) == 2
    # Editing a source file (same size even) changes the digest: a rebuild that sees the edit.
    path = root / "plain" / "lines.jsonl"
    text = path.read_text()
    path.write_text(text.replace("plain lines question", "plain lines QUESTXON"))
    assert index_texts_differ(first, NGramIndex.cached([root], 10, cache))
    assert len(builds) == 3 and len(list(cache.glob("*.npz"))) == 3
    assert NGramIndex.cached([root], 10, cache).match(f"plain lines questxon {FILLER}")[0] == "plain"
    assert len(builds) == 3
    # An unreadable cache file is rebuilt rather than trusted.
    current = Path(NGramIndex.cached([root], 10, cache).path)
    current.write_bytes(b"not an npz")
    assert NGramIndex.cached([root], 10, cache).match(f"plain lines questxon {FILLER}")[0] == "plain"
    assert len(builds) == 4


def index_texts_differ(a: NGramIndex, b: NGramIndex) -> bool:
    return a.path != b.path and not np.array_equal(a.hashes, b.hashes)


def test_hashes_are_the_same_in_another_process(tmp_path):
    text = "Janet's ducks lay 16 eggs per day; she eats three for breakfast every morning, x^2 + y^2 = z^2."
    words = tokenize(text)
    here, _ = decontam.ngram_hashes(decontam.token_hashes(words), np.array([len(words)]), 10)
    root = _tiny_benchmarks(tmp_path / "b")
    code = ("import sys; from webinstruct.pipeline.refine import decontam as d; import numpy as np; w = d.tokenize(sys.argv[1]); "
            "print(' '.join(map(str, d.ngram_hashes(d.token_hashes(w), np.array([len(w)]), 10)[0].tolist()))); "
            "print(d.source_digest([sys.argv[2]]))")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code, text, str(root)], env=env, capture_output=True, text=True,
                         check=True)
    hashes, digest = out.stdout.splitlines()
    assert hashes.split() == [str(h) for h in here.tolist()]
    assert digest == decontam.source_digest([root])
