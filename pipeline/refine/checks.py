"""Quality checks on a refined pair; each failure is a named drop reason in the stage's stats.

`check(...)` returns the first failing reason (or None) and what it learned about the answer.
Reasons, in the order they are tried:
  empty          the revision lost its question or its answer
  too_short      shorter than the recipe's minimums
  too_long       question + answer longer than the recipe's maximum
  refusal        the refiner declined ("I'm sorry, I cannot ...")
  meta_comment   the refiner talked about its edit instead of giving the pair ("Here is the revised ...")
  no_question    the question asks nothing: no question mark and no instruction word (find, prove ...)
  broken_latex   unbalanced $ / $$ / \\( \\) / \\[ \\] delimiters, braces or \\begin/\\end environments
  language       too few Latin-script letters (the dataset is English)
  answer_changed the original stated a final answer and the revision states another (or none)
"""
from __future__ import annotations

import re
from typing import Any

from webinstruct.core.answers import final_answer, same_answer
from webinstruct.pipeline.text.script import latin_share

REASONS = ("empty", "too_short", "too_long", "refusal", "meta_comment", "no_question", "broken_latex",
           "language", "answer_changed")

_REFUSAL = re.compile(r"^\W*(i'?m sorry|i am sorry|sorry,|i cannot|i can'?t|i'?m unable|i am unable|"
                      r"as an ai\b|i do not have enough|i don'?t have enough|unfortunately, i)", re.I)
_META = re.compile(r"^\W*(here is|here's|sure[,!.]|certainly[,!.]|the revised|revised (question|answer)|"
                   r"i have (revised|rewritten|edited)|note:)|\b(the original (question|answer|pair)|"
                   r"revised version|my (edit|revision)s?)\b", re.I)
_ASKS = re.compile(r"\?|\b(find|compute|calculate|evaluate|solve|prove|show|determine|simplify|explain|derive|"
                   r"express|factor|factorise|factorize|graph|convert|estimate|describe|identify|verify|state|"
                   r"sketch|expand|differentiate|integrate|check|classify|choose|select|give|write|list|"
                   r"how|what|why|which|name|compare|predict|balance|draw|construct|justify)\b", re.I)
_ENV = re.compile(r"\\(begin|end)\s*\{([^{}]*)\}")


def broken_latex(text: str) -> str | None:
    """What is unbalanced in `text`, or None. Currency ("costs $5") is not a math delimiter."""
    t = text.replace("\\$", "")
    displays = t.count("$$")
    if displays % 2:
        return "odd number of $$"
    singles = t.replace("$$", "").count("$")
    if singles % 2:
        currency = len(re.findall(r"\$(?=\s?\d)", t.replace("$$", "")))
        if (singles - currency) % 2 and singles > currency:
            return "odd number of $"
    for open_, close in (("\\(", "\\)"), ("\\[", "\\]")):
        if t.count(open_) != t.count(close):
            return f"{open_} and {close} do not pair"
    depth = 0
    for i, ch in enumerate(t):
        if ch in "{}" and i and t[i - 1] == "\\":
            continue
        depth += 1 if ch == "{" else -1 if ch == "}" else 0
        if depth < 0:
            return "a } closes nothing"
    if depth:
        return f"{depth} unclosed {{"
    stack: list[str] = []
    for kind, name in _ENV.findall(t):
        if kind == "begin":
            stack.append(name)
        elif not stack or stack.pop() != name:
            return f"\\end{{{name}}} does not match"
    if stack:
        return f"\\begin{{{stack[-1]}}} is not closed"
    return None


def answer_check(orig_answer: str, answer: str) -> tuple[str, str]:
    """("consistent" | "changed" | "unchecked", the revision's final answer)."""
    revised = final_answer(answer)
    original = final_answer(orig_answer)
    if not original:
        return "unchecked", revised
    return ("consistent" if revised and same_answer(original, revised) else "changed"), revised


def check(orig_question: str, orig_answer: str, question: str, answer: str, cfg: dict[str, Any]) -> tuple[str | None, dict]:
    """(first failing reason or None, {"final_answer", "answer_check", "detail"})."""
    q, a = (question or "").strip(), (answer or "").strip()
    info: dict[str, Any] = {"final_answer": "", "answer_check": "unchecked", "detail": ""}
    if not q or not a:
        return "empty", info
    if len(q) < cfg["min_question_chars"] or len(a) < cfg["min_answer_chars"]:
        return "too_short", info
    if len(q) + len(a) > cfg["max_chars"]:
        return "too_long", info
    if _REFUSAL.search(a) or _REFUSAL.search(q):
        return "refusal", info
    if _META.search(q) or _META.search(a[:300]):
        return "meta_comment", info
    if not _ASKS.search(q):
        return "no_question", info
    broken = broken_latex(q) or broken_latex(a)
    if broken:
        info["detail"] = broken
        return "broken_latex", info
    if latin_share(q + "\n" + a) < cfg["min_latin_share"]:
        return "language", info
    info["answer_check"], info["final_answer"] = answer_check(orig_answer, a)
    if info["answer_check"] == "changed" and cfg["drop_changed_answers"]:
        return "answer_changed", info
    return None, info
