"""Cut a document into overlapping chunks that fit the extraction model's context.

Cuts fall on paragraph boundaries (blank lines), else line ends, else spaces, and never inside a
formula: a `$...$` or `$$...$$` span is kept whole, so the model never sees half an equation.
Consecutive chunks overlap by `overlap_chars` so a question at the end of one chunk and its
answer at the start of the next are seen together at least once; pairs found twice in the
overlap are merged later by `merge_pairs`.
"""
from __future__ import annotations

import hashlib
import re

_MATH = re.compile(r"\$\$.+?\$\$|\$[^$\n]+?\$", re.S)


def _math_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _MATH.finditer(text)]


def _inside(pos: int, spans: list[tuple[int, int]]) -> tuple[int, int] | None:
    for a, b in spans:
        if a < pos < b:
            return a, b
        if a >= pos:
            break
    return None


def _cut_point(text: str, start: int, limit: int, spans) -> int:
    """The best place to end a chunk that starts at `start` and may reach `limit`."""
    if limit >= len(text):
        return len(text)
    window = text[start:limit]
    for sep in ("\n\n", "\n", " "):
        k = window.rfind(sep)
        if k > (limit - start) // 2:
            cut = start + k + len(sep)
            span = _inside(cut, spans)
            if span is None:
                return cut
            if span[0] > start + (limit - start) // 2:
                return span[0]
    span = _inside(limit, spans)
    if span is not None and span[0] > start:
        return span[0]
    return limit


def chunk_text(text: str, max_chars: int = 6000, overlap_chars: int = 600) -> list[str]:
    """Chunks of at most `max_chars` (a formula longer than that is cut where it must be)."""
    text = text.strip()
    if len(text) <= max_chars:
        return [text] if text else []
    spans = _math_spans(text)
    chunks = []
    start = 0
    while start < len(text):
        end = _cut_point(text, start, start + max_chars, spans)
        if end <= start:
            end = min(len(text), start + max_chars)
        chunks.append(text[start:end].strip())
        if end >= len(text):
            break
        nxt = max(end - overlap_chars, start + 1)
        # Begin the next chunk at a line or word start, and not inside a formula.
        nl = text.find("\n", nxt, end)
        nxt = nl + 1 if nl >= 0 else nxt
        span = _inside(nxt, spans)
        if span is not None:
            nxt = span[0] if span[0] > start else span[1]
        start = nxt
    return [c for c in chunks if c]


def _key(text: str) -> str:
    norm = re.sub(r"\W+", " ", text.lower()).strip()
    return hashlib.sha1(norm.encode("utf-8")).hexdigest()


def merge_pairs(pairs: list[dict]) -> tuple[list[dict], int]:
    """Drop pairs whose question repeats (overlapping chunks), keeping the longest answer."""
    best: dict[str, dict] = {}
    order: list[str] = []
    for p in pairs:
        k = _key(p["question"])
        if k not in best:
            best[k] = p
            order.append(k)
        elif len(p["answer"]) > len(best[k]["answer"]):
            best[k] = p
    return [best[k] for k in order], len(pairs) - len(order)
