"""Question deduplication: exact copies, then near copies, keeping the best-scored row of each.

The same problem reaches the refine stage many times: mirrored forum threads, homework sites
that copy each other, one page crawled under several URLs. `dedup` keeps one row per problem,
the one the stage's `score` ranks highest (ties: the smallest id), and names the reason and
the kept row for every other one.

1. Exact: questions equal after `normalize` (NFKC, lowercase, punctuation, spacing and TeX
   delimiters dropped; letters, numbers and math symbols kept as tokens, so "What is 3+5?" and
   "what is 3 + 5" are one question while "3.5" and "35", "x<3" and "x>3" stay apart).
2. Near, among the exact survivors: MinHash LSH over word shingles, then every candidate pair is
   verified and the verified pairs are merged (union-find; a cluster can chain A~B~C).

A candidate pair is a near duplicate when both hold:
- the Jaccard similarity of their shingle sets is at least JACCARD;
- their numbers, in order, are the same. A math question that differs only in its numbers is a
  different problem with a different answer ("What is 3+5?" / "What is 4+7?"; a word problem
  with new quantities), so it is kept. The numbers are also part of every LSH bucket key, so
  template families (thousands of questions that differ only in numbers) never fill one bucket.

The price: a one-word change that makes a new problem ("maximum" for "minimum", "odd" for
"even", another word whose letters are to be arranged) looks like a near copy and is merged. On
MATH's test set (5000 distinct problems) that merges 40 questions into others; 5-word shingles
would merge 27 and miss most real near copies (below).

Parameters (module constants, overridable through `NearDup`):
- SHINGLE = 2 words. Questions are short (median about 30 words), and one changed word alters
  SHINGLE consecutive shingles: in a 30-word question 5-word shingles give Jaccard 0.68 for one
  changed word and 0.44 for two, below any useful threshold, while 2-word shingles give 0.87 and
  0.76. A question shorter than SHINGLE words is one shingle.
- NUM_PERM = 128 min-hashes per question (universal hashing ((a*x + b) mod 2**64) >> 32 with
  odd a, fixed seeds), cut into BANDS = 32 bands of ROWS = 4. Two questions become candidates when
  all ROWS values of some band agree: probability 1 - (1 - J**ROWS)**BANDS, an S-curve centred
  near (1/BANDS)**(1/ROWS) = 0.42. That sits below JACCARD on purpose: a pair at J = 0.7 is a
  candidate with probability 0.9998 (0.61 with 16 bands of 8, whose centre is 0.71), and the
  extra candidates cost only their verification.
- JACCARD = 0.7: the verified similarity to merge.
- MAX_BUCKET = 64: a bucket with more members is verified along a star and a chain (first
  member against each, each against the next) rather than all pairs, bounding the work.

`dedup` holds every row in memory; the refine stage runs the same algorithm as partitioned Beam
shuffles (beam_dedup.py, built from `number_keys`, `band_key`, `shingle_hashes`, `signatures`),
and `dedup` is the reference it is tested against (same kept rows, reasons and kept ids).
"""
from __future__ import annotations

import contextlib
import gc
import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from webinstruct.pipeline.refine.decontam import ngram_hashes, token_hashes

SHINGLE = 2
NUM_PERM = 128
BANDS = 32
ROWS = 4
JACCARD = 0.7
MAX_BUCKET = 64
SEED = 20240501
# Shingles per signature step: 4096 x NUM_PERM uint64 values (4 MiB) stay in cache, measured
# about 3x faster than steps of 65536.
_CHUNK_SHINGLES = 4096
_BASE = np.uint64(0x9E3779B97F4A7C15)
# Pads questions shorter than SHINGLE; no token of `normalize` can equal it.
_PAD = "\x00pad"


@dataclass(frozen=True)
class NearDup:
    """The near-duplicate parameters (see the module docstring)."""

    shingle: int = SHINGLE
    num_perm: int = NUM_PERM
    bands: int = BANDS
    rows: int = ROWS
    jaccard: float = JACCARD
    max_bucket: int = MAX_BUCKET
    seed: int = SEED


# Characters Unicode calls math symbols (+ < = > | ~ ± × ÷ ≤ ∑ ∫ ...), found once at import.
_MATH_SYMBOLS = "".join(chr(c) for c in range(0x2000, 0x2c00) if unicodedata.category(chr(c)) == "Sm")
_DASHES = re.compile(r"[\u2010-\u2015\u2212]")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_EMPHASIS = re.compile(r"\*{2,}|_{2,}|~{2,}")  # markdown **bold**, __bold__, ~~strike~~
_TOKEN = re.compile(
    r"\\[a-z]+"  # TeX command
    r"|\d+(?:\.\d+)*"  # number, decimals whole: 3.5 is not 35
    r"|[^\W\d_]+"  # letters
    r"|(?<=\b[a-z])'+"  # prime after a one-letter name: f'(x), y''
    r"|(?<=[\d)])!"  # factorial
    r"|[-+*/^=<>|~()\[\]%±×÷·¬" + re.escape(_MATH_SYMBOLS) + "]")
# Spellings of one thing made one; layout-only TeX commands dropped. Applied to the text with
# one regex each, so the (rare) matches cost and the common tokens do not.
_ALIASES = {"\\times": "*", "\\cdot": "*", "×": "*", "·": "*", "÷": "/", "\\div": "/", "⁄": "/",
            "\\dfrac": "\\frac", "\\tfrac": "\\frac", "\\le": "\\leq", "≤": "\\leq", "\\ge": "\\geq",
            "≥": "\\geq", "\\ne": "\\neq", "≠": "\\neq"}
_ALIAS = re.compile("|".join(
    re.escape(k) + ("(?![a-z])" if k.startswith("\\") else "") for k in sorted(_ALIASES, key=len, reverse=True)))
_LAYOUT = re.compile(r"\\(?:left|right|displaystyle|textstyle|text|mathrm|mathbf|mbox|quad|qquad|big|bigg|bigl|bigr)"
                     r"(?![a-z])")


def tokens(text: str) -> list[str]:
    """The tokens of a question that decide whether it duplicates another."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    # Each rewrite only where its trigger occurs: a substring test is far cheaper than a scan.
    if "," in text:
        text = _THOUSANDS.sub("", text)
    if "**" in text or "__" in text or "~~" in text:
        text = _EMPHASIS.sub(" ", text)
    if not text.isascii():
        text = _DASHES.sub("-", text)
    if "\\" in text or not text.isascii():
        text = _ALIAS.sub(lambda m: f" {_ALIASES[m.group()]} ", _LAYOUT.sub(" ", text))
    return _TOKEN.findall(text)


def normalize(text: str) -> str:
    """The exact-duplicate key: `tokens` joined by single spaces."""
    return " ".join(tokens(text))


_NUMBERS = re.compile(r"(?:^| )(\d[^ ]*)")


def numbers_of(key: str) -> str:
    """The numbers of a normalised question, in order, space-separated (near duplicates must share them)."""
    return " ".join(_NUMBERS.findall(key))


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: building millions of token strings would trigger it
    over and over (it doubles the time of tokenising 10^5 questions) and they hold no cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


def _permutations(p: NearDup) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(p.seed)
    a = rng.integers(0, 1 << 63, p.num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 1 << 63, p.num_perm, dtype=np.uint64)
    return a[:, None], b[:, None]


def shingle_hashes(token_lists: list[list[str]], w: int = SHINGLE) -> tuple[np.ndarray, np.ndarray]:
    """Shingle hashes of all questions back to back, and where each question's run starts
    (offsets has one more entry than there are questions)."""
    padded = [t if len(t) >= w else t + [_PAD] * (w - len(t)) for t in token_lists]
    lengths = np.array([len(t) for t in padded], np.int64)
    h, _ = ngram_hashes(token_hashes([x for t in padded for x in t]), lengths, w)
    return h, np.concatenate(([0], np.cumsum(lengths - w + 1)))


def signatures(h: np.ndarray, offsets: np.ndarray, p: NearDup = NearDup()) -> np.ndarray:
    """MinHash signatures, num_perm x questions (uint32), of the shingle runs h[offsets[i]:offsets[i+1]]."""
    n = len(offsets) - 1
    a, b = _permutations(p)
    sig = np.empty((p.num_perm, n), np.uint32)
    first = 0
    while first < n:
        # Questions first..last-1: about _CHUNK_SHINGLES shingles, at least one question.
        last = int(np.searchsorted(offsets, offsets[first] + _CHUNK_SHINGLES, side="right")) - 1
        last = min(max(last, first + 1), n)
        lo, hi = offsets[first], offsets[last]
        values = a * h[lo:hi]
        values += b
        values >>= np.uint64(32)
        sig[:, first:last] = np.minimum.reduceat(values, offsets[first:last] - lo, axis=1)
        first = last
    return sig


def number_keys(numbers: list[str]) -> np.ndarray:
    """A uint64 hash of each question's `numbers_of` string (part of every LSH bucket key)."""
    return np.frombuffer(b"".join(hashlib.blake2b(x.encode(), digest_size=8).digest() for x in numbers), np.uint64)


def band_key(sig: np.ndarray, nkeys: np.ndarray, band: int, p: NearDup = NearDup()) -> np.ndarray:
    """The LSH bucket key of each question in one band: its numbers' key and the band's ROWS
    min-hashes folded into one uint64. Questions share a bucket when their keys are equal."""
    key = nkeys.copy()
    for row in sig[band * p.rows:(band + 1) * p.rows]:
        key *= _BASE
        key += row
    return key


def near_clusters(token_lists: list[list[str]], p: NearDup = NearDup(),
                  keys: list[str] | None = None) -> list[int]:
    """A cluster label (its smallest member) for each question; near duplicates share one.

    `keys` are the questions' `normalize` forms when the caller has them already.
    """
    n = len(token_lists)
    if n < 2:
        return list(range(n))
    h, offsets = shingle_hashes(token_lists, p.shingle)
    sig = signatures(h, offsets, p)
    numbers = [numbers_of(k) for k in (keys if keys is not None else (" ".join(t) for t in token_lists))]
    nkeys = number_keys(numbers)
    sets: dict[int, frozenset] = {}

    def shingle_set(i: int) -> frozenset:
        if i not in sets:
            sets[i] = frozenset(h[offsets[i]:offsets[i + 1]].tolist())
        return sets[i]

    uf = _UnionFind(n)

    def verify(i: int, j: int) -> None:
        if numbers[i] != numbers[j] or uf.find(i) == uf.find(j):
            return
        x, y = shingle_set(i), shingle_set(j)
        inter = len(x & y)
        if inter >= p.jaccard * (len(x) + len(y) - inter):
            uf.union(i, j)

    for band in range(p.bands):
        key = band_key(sig, nkeys, band, p)
        order = np.argsort(key, kind="stable")  # a bucket's members in question order
        cut = np.flatnonzero(np.diff(key[order])) + 1
        starts, ends = np.concatenate(([0], cut)), np.concatenate((cut, [n]))
        shared = ends - starts > 1
        for s, e in zip(starts[shared].tolist(), ends[shared].tolist()):
            members = order[s:e].tolist()
            if len(members) <= p.max_bucket:
                for x in range(len(members)):
                    for y in range(x + 1, len(members)):
                        verify(members[x], members[y])
            else:
                for x in range(1, len(members)):
                    verify(members[0], members[x])
                    verify(members[x - 1], members[x])
    return [uf.find(i) for i in range(n)]


def _exact(groups: dict[str, list[int]], rank: list, n: int) -> tuple[list[int], list[int]]:
    """The exact-duplicate winner of each row, and the winners in row order."""
    winner_of = list(range(n))
    survivors = []
    for members in groups.values():
        best = min(members, key=rank.__getitem__)
        survivors.append(best)
        for i in members:
            winner_of[i] = best
    return winner_of, sorted(survivors)


def dedup(rows: list[dict], score: Callable[[dict], float], key: str = "question",
          params: NearDup = NearDup()) -> tuple[list[dict], list[dict]]:
    """(kept rows, dropped) where dropped items are {"row", "reason", "kept_id"}.

    `reason` is "duplicate_exact" or "duplicate_near"; `kept_id` is the id of the row kept for
    the dropped one's cluster. Both lists are sorted by id, so the result does not depend on the
    order of `rows`. Ids must be unique.
    """
    ids = [str(r["id"]) for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError("dedup: row ids are not unique")
    order = sorted(range(len(rows)), key=ids.__getitem__)
    rows = [rows[i] for i in order]
    ids = [ids[i] for i in order]
    rank = [(-float(score(r)), i) for i, r in enumerate(rows)]  # i follows id order: ties -> smallest id
    with _gc_paused():
        token_lists = [tokens(r.get(key) or "") for r in rows]
        keys = [" ".join(t) for t in token_lists]
        exact: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            exact.setdefault(k, []).append(i)
        winner_of, survivors = _exact(exact, rank, len(rows))
        labels = near_clusters([token_lists[i] for i in survivors], params, [keys[i] for i in survivors])
        del token_lists, keys, exact
        best_of: dict[int, int] = {}
        for label, i in zip(labels, survivors):
            if label not in best_of or rank[i] < rank[best_of[label]]:
                best_of[label] = i
        final = {i: best_of[label] for label, i in zip(labels, survivors)}
        kept, dropped = [], []
        for i, row in enumerate(rows):
            keeper = final[winner_of[i]]
            if keeper == i:
                kept.append(row)
            else:
                reason = "duplicate_exact" if winner_of[i] != i else "duplicate_near"
                dropped.append({"row": row, "reason": reason, "kept_id": ids[keeper]})
    return kept, dropped

