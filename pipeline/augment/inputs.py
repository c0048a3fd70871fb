"""Augment inputs: any Q-A record with a checkable final answer, read into one seed form.

    {"id", "question", "answer" (the gold final answer), "solution" (reference text or ""),
     "domain": "gsm8k" | "math"}

Accepted records: GSM8K-style ({question, answer ending "#### N"}, or {query, response}),
MATH-style ({problem, solution with \\boxed{}}), and WebInstruct rows (`webinstruct.core.schema.
WebInstructRow`: the refine stage's `final_answer`, else the one its answer states). MATH is
domain "math"; the others are "gsm8k" when the final answer is a plain number, else "math"
(the domain picks the few-shot prompts and the MetaMathQA type prefix). Anything else is skipped
with a named reason, which the stage counts.

JSON-lines input (`iter_json_lines`) skips a line that is not JSON and counts it (`skipped_bad_json`)
with one warning naming file:line; a file where more than `MAX_BAD_JSON_SHARE` of the lines (or all
of them) are not JSON is not a JSON-lines file, and stops the stage with one error naming file:line.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any, Callable, Iterable, Iterator

from webinstruct.core.answers import final_answer, normalize

log = logging.getLogger(__name__)
MAX_BAD_JSON_SHARE = 0.10  # more bad lines than this: the file is not JSON lines (or not this format)
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


class BadInputFile(ValueError):
    """An input file whose lines are mostly not JSON: the message names file:line."""


def _no_count(name: str, n: int = 1) -> None:
    pass


def iter_json_lines(path: str, lines: Iterable[str],
                    count: Callable[[str, int], None] = _no_count) -> Iterator[Any]:
    """The JSON values of `lines` (the text lines of input file `path`), blank lines left out.

    A line that is not JSON is skipped and counted (`skipped_bad_json`); at the end of the file one
    warning names file:line of the first few. When more than MAX_BAD_JSON_SHARE of the lines, or
    all of them, are bad, `BadInputFile` names file:line of the first instead (raised at the end of
    the file: the good lines before it have been read)."""
    bad: list[tuple[int, str]] = []
    n = 0
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        n += 1
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            bad.append((lineno, f"{err.msg} at column {err.colno}"))
            count("skipped_bad_json", 1)
            continue
        yield value
    if not bad:
        return
    first_line, first_err = bad[0]
    if len(bad) == n or len(bad) > MAX_BAD_JSON_SHARE * n:
        raise BadInputFile(f"{path}:{first_line}: {len(bad)} of {n} lines are not JSON (first: {first_err}); "
                           f"is it a JSON-lines file? (up to {MAX_BAD_JSON_SHARE:.0%} bad lines are skipped)")
    where = ", ".join(str(ln) for ln, _ in bad[:5]) + (" ..." if len(bad) > 5 else "")
    log.warning("%s:%d: skipped %d of %d lines that are not JSON (lines %s; first: %s)", path, first_line,
                len(bad), n, where, first_err)
