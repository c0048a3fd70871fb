"""Benchmark decontamination: a pair is dropped when it shares a word 10-gram with a benchmark.

DeepSeekMath and MAmmoTH2 remove every training example that shares any 10-gram with any question
or answer of a benchmark they evaluate on. `NGramIndex` holds the hashes of every word 10-gram of
every string in the benchmark files (questions, answers, options, explanations: a copied solution
is as much a leak as a copied question) and answers, for a text, the first 10-gram it shares
with one of them.

Words are `\\w+` runs of the NFKC-normalised, lowercased text, so case, punctuation, TeX
delimiters and spacing do not hide a copy. Each distinct word gets a 64-bit blake2b value (never
Python's `hash()`, which changes between processes) and a 10-gram is a polynomial of its words'
values in wrap-around uint64 arithmetic, computed for all positions at once in numpy. A chance
collision between two different 10-grams has odds of about (index size) / 2**64 per 10-gram.

10-grams that occur `TEMPLATE_COUNT` times or more in the benchmark files are template text
(instructions repeated in every record) and are left out of the index.

The 10-gram rule has known blind spots: a benchmark string shorter than 10 words can never be
matched (many MMLU questions and all multiple-choice options are that short), and a paraphrase
or reformatted formula that breaks every 10-word run passes.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import unicodedata
import zipfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from webinstruct.core import io as fio
from webinstruct.core.shards import open_text

N = 10
# Part of every cache file's name: bump it when tokenisation, hashing or the npz layout change.
FORMAT_VERSION = 2
# A 10-gram found this many times or more across the benchmark files is a template, not a leak:
# gsm8k_backward's "if we know the answer to the above question is ..." (867 records), BBH's task
# instructions, GPQA's repeated metadata. Indexing them would flag every MetaMath-style FOBAR
# question and every text quoting a common instruction. Measured on data/benchmarks.
TEMPLATE_COUNT = 50

_WORD = re.compile(r"\w+")
# Odd multiplier of the rolling hash (2**64 / golden ratio): odd keeps it invertible mod 2**64.
_BASE = np.uint64(0x9E3779B97F4A7C15)
# GSM8K solutions carry calculator annotations ("16 - 3 = <<16-3=13>>13"); copies on the web
# usually drop them, so the annotation-free variant of such a string is indexed too.
_CALCULATOR = re.compile(r"<<[^<>]*>>")

# Bits of the prefilter's address: 2**25 bits (4 MiB) are 4% set by 1.5M n-grams.
_FILTER_BITS = 25

_JSON_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
# Benchmarks shipped both as one file and as one file per problem: when the consolidated file
# is there, the per-problem files in sub-directories are skipped (same records, 5000 fewer opens).
_CONSOLIDATED = {"math": "MATH_test.jsonl"}

# Word -> 64-bit value, memoised because words repeat (Zipf). Bounded: a long-running worker
# sees an open-ended web vocabulary, so the memo is dropped and regrown past this size.
_word_values: dict[str, int] = {}
_WORD_MEMO_MAX = 2_000_000


def tokenize(text: str) -> list[str]:
    """The words the 10-gram rule counts: `\\w+` runs of the NFKC-normalised, lowercased text."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).lower())


def _word_value(word: str) -> int:
    digest = hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def token_hashes(tokens: list[str]) -> np.ndarray:
    """uint64 value of each token, the same in every process and on every machine."""
    memo = _word_values
    try:
        return np.fromiter(map(memo.__getitem__, tokens), np.uint64, len(tokens))
    except KeyError:
        if len(memo) > _WORD_MEMO_MAX:
            memo.clear()
        for word in tokens:
            if word not in memo:
                memo[word] = _word_value(word)
        return np.fromiter(map(memo.__getitem__, tokens), np.uint64, len(tokens))


def ngram_hashes(hashes: np.ndarray, lengths: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of the n-grams of several texts whose token values lie back to back in `hashes`.

    `lengths` are the texts' token counts. Returns the n-gram hashes and each one's start index
    in `hashes`; no n-gram spans two texts, and a text shorter than n has none.
    """
    m = len(hashes) - n + 1
    if m <= 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    h = hashes[:m].copy()
    for j in range(1, n):
        h *= _BASE
        h += hashes[j:j + m]
    if len(lengths) == 1:
        return h, np.arange(m)
    text_of = np.repeat(np.arange(len(lengths)), lengths)
    start = np.flatnonzero(text_of[:m] == text_of[n - 1:])
    return h[start], start


def benchmark_files(root: str | Path) -> list[tuple[str, Path]]:
    """(benchmark name, path) of every JSON file under `root`, in a fixed order.

    Each first-level sub-directory of `root` is a benchmark; files at the top level (such as
    MANIFEST.md) and files that are not JSON are skipped.
    """
    root = Path(root)
    found = []
    for bench in sorted(p for p in root.iterdir() if p.is_dir()):
        whole = _CONSOLIDATED.get(bench.name)
        top_only = whole is not None and any((bench / name).is_file() for name in (whole, whole + ".gz"))
        for path in sorted(bench.rglob("*")):
            if not path.is_file() or not path.name.endswith(_JSON_SUFFIXES):
                continue
            if top_only and path.parent != bench:
                continue
            found.append((bench.name, path))
    return found


def read_json(path: Path) -> Iterator[Any]:
    """The file's JSON value, or one value per line for JSON lines (also under a .json name)."""
    with open_text(path) as f:
        text = f.read()
    if path.name.removesuffix(".gz").endswith(".json"):
        try:
            yield json.loads(text)
            return
        except json.JSONDecodeError:
            pass  # AQuA.json, for one, is JSON lines
    # Split on "\n" only: str.splitlines also breaks at U+2028 and U+0085 inside strings (GPQA has them).
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {number}: {e}") from e


def _leaves(value: Any) -> Iterator[str]:
    """Every string of a JSON value, numbers included as text; dict keys are field names."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield str(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)


def benchmark_texts(root: str | Path) -> Iterator[tuple[str, str]]:
    """(benchmark name, text) for every string leaf of every record under `root`."""
    for name, path in benchmark_files(root):
        for value in read_json(path):
            for text in _leaves(value):
                yield name, text


def _indexed_variants(text: str) -> Iterator[str]:
    yield text
    if "<<" in text:
        stripped = _CALCULATOR.sub("", text)
        if stripped != text:
            yield stripped


def source_digest(roots: Iterable[str | Path], n: int = N) -> str:
    """sha256 over n, the format version and every source file's path, size and content."""
    digest = hashlib.sha256(f"webinstruct-decontam v{FORMAT_VERSION} n={n}\n".encode())
    for i, root in enumerate(roots):
        for _, path in benchmark_files(root):
            content = hashlib.sha256(path.read_bytes()).hexdigest()
            rel = path.relative_to(root).as_posix()
            digest.update(f"{i}\t{rel}\t{path.stat().st_size}\t{content}\n".encode())
    return digest.hexdigest()


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "webinstruct" / "decontam"


class NGramIndex:
    """Sorted uint64 hashes of benchmark n-grams, each with the benchmark it came from."""

    # Token values are hashed in batches of about this many tokens during a build.
    _BATCH_TOKENS = 1 << 20

    def __init__(self, hashes: np.ndarray, benchmarks: np.ndarray, names: list[str], n: int = N):
        if len(hashes) != len(benchmarks):
            raise ValueError("hashes and benchmarks differ in length")
        self.hashes = np.asarray(hashes, np.uint64)
        self.benchmarks = np.asarray(benchmarks, np.uint16)
        self.names = list(names)
        self.n = n
        self.path: str | None = None  # the file it was loaded from or saved to: workers load that
        # One bit per value of a hash's top _FILTER_BITS bits: most n-grams of a clean text are
        # ruled out by one bit test, and only the rest pay for a binary search of the whole
        # index, whose cache misses cost more than anything else in `match`.
        present = np.zeros(1 << _FILTER_BITS, bool)
        present[self.hashes >> np.uint64(64 - _FILTER_BITS)] = True
        self._filter = np.packbits(present, bitorder="little")

    def __len__(self) -> int:
        return len(self.hashes)

    @classmethod
    def build(cls, roots: list[str | Path], n: int = N) -> NGramIndex:
        """Index every n-gram of every string of the benchmark files under `roots`."""
        files = [(name, root) for root in roots for name, _ in benchmark_files(root)]
        names = sorted({name for name, _ in files})
        if len(names) >= 1 << 16:
            raise ValueError("more benchmarks than a uint16 id can name")
        ids = {name: i for i, name in enumerate(names)}
        parts_h, parts_b = [], []
        tokens: list[str] = []
        lengths: list[int] = []
        owners: list[int] = []

        def flush() -> None:
            h, start = ngram_hashes(token_hashes(tokens), np.array(lengths), n)
            parts_h.append(h)
            parts_b.append(np.repeat(np.array(owners, np.uint16), lengths)[start])
            tokens.clear()
            lengths.clear()
            owners.clear()

        for root in roots:
            for name, text in benchmark_texts(root):
                for variant in _indexed_variants(text):
                    words = tokenize(variant)
                    if len(words) >= n:
                        tokens.extend(words)
                        lengths.append(len(words))
                        owners.append(ids[name])
                if len(tokens) >= cls._BATCH_TOKENS:
                    flush()
        flush()
        hashes, benchmarks = np.concatenate(parts_h), np.concatenate(parts_b)
        # Sorted by hash, then benchmark id; an n-gram found in several benchmarks keeps the
        # first one's name (alphabetical), so builds are reproducible.
        order = np.lexsort((benchmarks, hashes))
        hashes, benchmarks = hashes[order], benchmarks[order]
        first = np.ones(len(hashes), bool)
        first[1:] = hashes[1:] != hashes[:-1]
        starts = np.flatnonzero(first)
        counts = np.diff(np.append(starts, len(hashes)))
        keep = starts[counts < TEMPLATE_COUNT]
        return cls(hashes[keep], benchmarks[keep], names, n)

    def save(self, path: str | Path) -> None:
        """Write an .npz atomically (local path or URL): readers see the old file or the whole new one."""
        with fio.atomic_writer(path, "wb") as f:
            np.savez(f, hashes=self.hashes, benchmarks=self.benchmarks,
                     names=np.array(self.names, dtype=str), n=np.int64(self.n),
                     version=np.int64(FORMAT_VERSION))
        self.path = str(path)

    @classmethod
    def load(cls, path: str | Path) -> NGramIndex:
        # A remote index (a worker reading the run's copy) is staged to a local temporary file first:
        # np.load seeks around the zip, which over HTTP would be many small range requests.
        with fio.local_copy(path) as local, np.load(local, allow_pickle=False) as z:
            if int(z["version"]) != FORMAT_VERSION:
                raise ValueError(f"{path}: format version {int(z['version'])}, expected {FORMAT_VERSION}")
            index = cls(z["hashes"], z["benchmarks"], [str(s) for s in z["names"]], int(z["n"]))
        index.path = str(path)
        return index

    @classmethod
    def cached(cls, roots: list[str | Path], n: int = N, cache_dir: str | Path | None = None) -> NGramIndex:
        """The index of `roots`, built once and then loaded from `cache_dir`.

        The file name is `source_digest`, so editing, adding or removing a benchmark file (or
        changing n or FORMAT_VERSION) leads to a new build; stale files are left in place.
        """
        cache_dir = str(cache_dir) if cache_dir is not None else str(_default_cache_dir())
        path = fio.join(cache_dir, f"ngrams-{source_digest(roots, n)}.npz")
        if fio.exists(path):
            with contextlib.suppress(OSError, ValueError, KeyError, zipfile.BadZipFile):
                return cls.load(path)
        index = cls.build(roots, n)
        index.save(path)
        return index

    def _lookup(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which of the hashes `h` are in the index, and where (-1 where not)."""
        top = h >> np.uint64(64 - _FILTER_BITS)
        maybe = np.flatnonzero((self._filter[top >> np.uint64(3)] >> (top & np.uint64(7)).astype(np.uint8)) & 1)
        at = np.full(len(h), -1, np.int64)
        if len(maybe):
            found = np.minimum(np.searchsorted(self.hashes, h[maybe]), len(self.hashes) - 1)
            hit = self.hashes[found] == h[maybe]
            at[maybe[hit]] = found[hit]
        return at >= 0, at

    def match(self, text: str) -> tuple[str, str] | None:
        """(benchmark, the n-gram as space-joined words) of the first shared n-gram, else None."""
        words = tokenize(text)
        if len(words) < self.n:
            return None
        h, start = ngram_hashes(token_hashes(words), np.array([len(words)]), self.n)
        hit, at = self._lookup(h)
        found = np.flatnonzero(hit)
        if not len(found):
            return None
        k, s = found[0], start[found[0]]
        return self.names[self.benchmarks[at[k]]], " ".join(words[s:s + self.n])

    def match_many(self, texts: list[str]) -> list[tuple[str, str] | None]:
        """`match` of each text, with one numpy pass over all of them (faster for batches)."""
        word_lists = [tokenize(t) for t in texts]
        lengths = np.array([len(w) for w in word_lists], np.int64)
        flat = [w for words in word_lists for w in words]
        h, start = ngram_hashes(token_hashes(flat), lengths, self.n)
        hit, at = self._lookup(h)
        found = np.flatnonzero(hit)
        out: list[tuple[str, str] | None] = [None] * len(texts)
        if not len(found):
            return out
        offsets = np.cumsum(lengths) - lengths
        text_of = np.searchsorted(offsets, start[found], side="right") - 1
        texts_hit, first = np.unique(text_of, return_index=True)  # first hit of each text
        for t, k in zip(texts_hit.tolist(), found[first].tolist()):
            s = int(start[k] - offsets[t])
            out[t] = (self.names[self.benchmarks[at[k]]], " ".join(word_lists[t][s:s + self.n]))
        return out

    def summary(self) -> dict[str, Any]:
        counts = np.bincount(self.benchmarks, minlength=len(self.names))
        return {"benchmarks": list(self.names), "n": self.n, "ngrams": len(self),
                "ngrams_per_benchmark": {name: int(c) for name, c in zip(self.names, counts)}}
