"""How faithfully an extractor kept a page's words and TeX, measured against a reference text.

Used by tests/test_html_text.py and by benchmarks: multiset recall of TeX control words
(`\\frac`, `\\sigma` ...) and of lowercased alphabetic words.  Recall, not precision: the
reference extractions are curated main-content text, and the question here is what we lost.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

_TEX_COMMAND = re.compile(r"\\[A-Za-z]+")
_WORD = re.compile(r"[^\W\d_]+")


def tex_commands(text: str) -> Counter:
    """Counter of TeX control words (backslash + letters) in `text`."""
    return Counter(_TEX_COMMAND.findall(text or ""))


def words(text: str) -> Counter:
    """Counter of lowercased alphabetic words in `text`."""
    return Counter(w.lower() for w in _WORD.findall(text or ""))


def recall(reference: Counter, candidate: Counter) -> float:
    """Multiset recall: sum over items of min(count) / total reference count (1.0 if empty)."""
    total = sum(reference.values())
    if total == 0:
        return 1.0
    hit = sum(min(n, candidate.get(k, 0)) for k, n in reference.items())
    return hit / total


def score_page(reference_text: str, candidate_text: str) -> dict:
    """{"tex_recall": ..., "word_recall": ...} of `candidate_text` against `reference_text`."""
    return {
        "tex_recall": recall(tex_commands(reference_text), tex_commands(candidate_text)),
        "word_recall": recall(words(reference_text), words(candidate_text)),
    }


def load_reference_pairs(shared_web_dir) -> list[tuple[str, Path, str]]:
    """[(name, html_path, expected_content)] for every `html_math/<name>.html` that has an
    `expected/<name>.llmwebkit.jsonl` (its one JSON line's `content`).

    `shared_web_dir` is the `web` folder of the shared data (the shared root also works).
    """
    base = Path(shared_web_dir)
    if not (base / "html_math").is_dir() and (base / "web" / "html_math").is_dir():
        base = base / "web"
    pairs = []
    for html_path in sorted((base / "html_math").glob("*.html")):
        name = html_path.stem
        ref = base / "expected" / f"{name}.llmwebkit.jsonl"
        if not ref.is_file():
            continue
        with ref.open(encoding="utf-8") as f:
            line = f.readline()
        pairs.append((name, html_path, json.loads(line)["content"]))
    return pairs
