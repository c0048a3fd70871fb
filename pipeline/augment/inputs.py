"""Augment inputs: any Q-A record with a checkable final answer, read into one seed form.

    {"id", "question", "answer" (the gold final answer), "solution" (reference text or ""),
     "domain": "gsm8k" | "math"}

Accepted records: GSM8K-style ({question, answer ending "#### N"}, or {query, response}),
MATH-style ({problem, solution with \\boxed{}}), and WebInstruct rows (`webinstruct.core.schema.
WebInstructRow`: the refine stage's `final_answer`, else the one its answer states). MATH is
domain "math"; the others are "gsm8k" when the final answer is a plain number, else "math"
(the domain picks the few-shot prompts and the MetaMathQA type prefix). Anything else is skipped
with a named reason, which the stage counts.
"""
from __future__ import annotations

import hashlib
import re
from typing import Any

from webinstruct.core.answers import final_answer, normalize

SKIP_REASONS = ("unknown_format", "empty_question", "no_final_answer", "long_final_answer")
MAX_ANSWER_CHARS = 80  # a longer "final answer" is prose, not something to check a sample against
_WEBINSTRUCT_KEYS = ("orig_question", "pair_id", "refiner", "answer_check", "final_answer")
_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def is_plain_number(answer: str) -> bool:
    """"18", "$1,000", "-2.5": a GSM8K-style answer (no fraction, percent, unit or LaTeX)."""
    return bool(_PLAIN_NUMBER.fullmatch(normalize(answer)))


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _id(record: dict, question: str) -> str:
    rid = record.get("id")
    if isinstance(rid, (str, int)) and str(rid):
        return str(rid)
    return hashlib.sha1(question.encode("utf-8")).hexdigest()[:16]


def read_seed(record: dict, max_answer_chars: int = MAX_ANSWER_CHARS) -> tuple[dict | None, str | None]:
    """(seed, None), or (None, reason) with reason one of SKIP_REASONS."""
    if not isinstance(record, dict):
        return None, "unknown_format"
    if "problem" in record and "solution" in record:
        kind, question, solution = "math", _text(record["problem"]), _text(record["solution"])
        gold = final_answer(solution)
    elif "question" in record and "answer" in record:
        kind, question, solution = "text", _text(record["question"]), _text(record["answer"])
        webinstruct = any(k in record for k in _WEBINSTRUCT_KEYS)
        gold = (_text(record.get("final_answer")) if webinstruct else "") or final_answer(solution)
    elif "query" in record and "response" in record:
        kind, question, solution = "text", _text(record["query"]), _text(record["response"])
        gold = final_answer(solution)
    else:
        return None, "unknown_format"
    if not question:
        return None, "empty_question"
    gold = gold.strip()
    if not gold:
        return None, "no_final_answer"
    if len(gold) > max_answer_chars:
        return None, "long_final_answer"
    if kind == "text" and is_plain_number(gold):
        domain, gold = "gsm8k", normalize(gold)  # "$1,000" -> "1000"
    else:
        domain = "math"
    return {"id": _id(record, question), "question": question, "answer": gold, "solution": solution,
            "domain": domain}, None
