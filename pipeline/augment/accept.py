"""Accepting sampled solutions and writing them as MetaMathQA rows.

A sample is kept when its final answer equals the gold one (for SV and FOBAR: the masked
number). The comparison is the evaluator's (`webinstruct.core.answers`): the same normaliser and
numeric equality, so "1/2" == "0.5", "1,000" == "1000", "$18" == "18", "50%" == "50". Kept
responses end with "The answer is: {gold}", as every MetaMathQA response does.
"""
from __future__ import annotations

import re

from webinstruct.core.answers import final_answer, same_answer, to_number

# MetaMathQA's `type` values (meta-math/MetaMathQA, MetaMathQA-395K.json).
TYPES = ("GSM_AnsAug", "GSM_Rephrased", "GSM_SV", "GSM_FOBAR",
         "MATH_AnsAug", "MATH_Rephrased", "MATH_SV", "MATH_FOBAR")
FIELDS = ("type", "query", "original_question", "response")
_TASK_TYPE = {"ansaug": "AnsAug", "rephrase": "Rephrased", "sv": "SV", "fobar": "FOBAR"}

# "The value of x is 5." ends SV and FOBAR solutions (MetaMath's split string for them).
_VALUE_OF = re.compile(r"value of (?:the )?(?:unknown )?(?:variable )?\$?[xX]\$? is:?\s*([^\n]+)", re.I)
_NUMBER_WITH_UNIT = re.compile(r"[$€£]?\s*(-?[\d,]*\.?\d+(?:/\d+)?)\s*%?\s*(?:[a-zA-Z][a-zA-Z ]*)?")
_OPENER = re.compile(r"^\s*(?:A:\s*)?Let's think step by step\.?[ \t]*\n?", re.I)
_ANSWER_LINE = re.compile(r"####|the\s+(?:final\s+)?answer\s+is|final\s+answer\s*:", re.I)


def final_of(response: str) -> str:
    """The final answer a sampled solution states ("" for none): \\boxed{}, "####", "The answer
    is: X", else the "The value of x is X" that SV and FOBAR solutions end with."""
    stated = final_answer(response)
    if stated:
        return stated
    values = _VALUE_OF.findall(response or "")
    return values[-1].strip().rstrip(".").strip() if values else ""


def _leading_number(answer: str) -> str | None:
    """"18 dollars" -> "18": a number followed only by unit words (GSM8K-style answers)."""
    m = _NUMBER_WITH_UNIT.fullmatch(answer.strip().rstrip(".").strip())
    return m.group(1) if m else None


def accepts(response: str, gold: str) -> bool:
    """True when the response's final answer is the gold one."""
    final = final_of(response)
    if not final:
        return False
    if same_answer(final, gold):
        return True
    # A numeric gold also matches "18 dollars" / "$18.00 per week": MetaMath compared numbers.
    number = _leading_number(final) if to_number(gold) is not None else None
    return number is not None and same_answer(number, gold)


def finish(response: str, gold: str, hashes: bool = False) -> str:
    """The response in MetaMathQA form: no "Let's think step by step." opener, no continuation
    of the few-shot pattern, its final-answer lines replaced by "The answer is: {gold}".

    `hashes` also writes "#### {gold}" before it, as MetaMathQA's GSM rows do."""
    text = _OPENER.sub("", (response or "").strip(), count=1)
    text = re.split(r"\n\s*Question:", text, maxsplit=1)[0]
    lines = text.rstrip().split("\n")
    while lines:
        last = lines[-1]
        found = list(_ANSWER_LINE.finditer(last))
        if not last.strip():
            lines.pop()
        elif found:
            kept = last[: found[-1].start()].rstrip()
            if kept:
                lines[-1] = kept
                break
            lines.pop()
        else:
            break
    ending = (f"#### {gold}\n" if hashes else "") + f"The answer is: {gold}"
    body = "\n".join(lines).rstrip()
    return f"{body}\n{ending}" if body else ending


def row_type(task: str, domain: str) -> str:
    """MetaMathQA's type name: ("fobar", "gsm8k") -> "GSM_FOBAR"."""
    if task not in _TASK_TYPE or domain not in ("gsm8k", "math"):
        raise ValueError(f"no MetaMathQA type for task {task!r}, domain {domain!r}")
    return f"{'GSM' if domain == 'gsm8k' else 'MATH'}_{_TASK_TYPE[task]}"


def metamathqa_row(type: str, query: str, original_question: str, response: str) -> dict:
    """One output row, with MetaMathQA's four fields."""
    if type not in TYPES:
        raise ValueError(f"unknown MetaMathQA type {type!r}; choose from {', '.join(TYPES)}")
    return {"type": type, "query": query, "original_question": original_question, "response": response}
