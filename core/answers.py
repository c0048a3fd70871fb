"""Final answers: find the one a solution states, and decide whether two are the same.

Shared by the refine stage (did the refiner change the answer?), the augment stage (does a sampled
solution reach the gold answer?) and the evaluator's graders. Only explicit statements count as a
final answer: `\\boxed{...}` (the last one), GSM8K's `#### 42`, "The answer is: 42" (MetaMath),
"Final answer: 42". A solution without any of them has no final answer (""), rather than a guess
from its last number: a refine check that guessed would reject good rewrites.
"""
from __future__ import annotations

import math
import re
from fractions import Fraction

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_HASHES = re.compile(r"^\s*####\s*(.+?)\s*$", re.M)
_STATED = re.compile(r"(?:the\s+(?:final\s+)?answer\s+is|final\s+answer\s*(?:is)?)\s*[:：]?\s*(.+)", re.I)


def _braced(text: str, start: int) -> str | None:
    """The content of the brace group opening at text[start - 1] == '{', or None if unbalanced."""
    depth = 1
    for i in range(start, len(text)):
        ch = text[i]
        if ch == "\\":
            continue
        if ch == "{" and text[i - 1] != "\\":
            depth += 1
        elif ch == "}" and text[i - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return None


def final_answer(text: str) -> str:
    """The final answer a solution states, or "" when it states none."""
    text = text or ""
    boxed = list(_BOXED.finditer(text))
    if boxed:
        inner = _braced(text, boxed[-1].end())
        if inner is not None and inner.strip():
            return inner.strip()
    hashes = _HASHES.findall(text)
    if hashes:
        return hashes[-1].strip()
    stated = list(_STATED.finditer(text))
    if stated:
        tail = stated[-1].group(1).strip().split("\n", 1)[0]
        # The answer ends at a sentence end: a period followed by a space or the end (not "3.5").
        tail = re.split(r"(?<!\d)\.(?:\s|$)|\.\s", tail + " ", maxsplit=1)[0]
        return tail.strip().rstrip(".").strip()
    return ""


_TEXT_CMD = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}")
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]+)\}\s*\{([^{}]+)\}")


def normalize(answer: str) -> str:
    """A canonical string for comparing answers: no $, spacing, \\left/\\right, \\text{} wrappers,
    thousands separators, "x =" prefixes, trailing period or degree/percent decoration."""
    a = (answer or "").strip()
    a = a.replace("$", "").replace("\\!", "").replace("\\,", "").replace("\\;", "").replace("\\ ", "")
    a = re.sub(r"\\left|\\right", "", a)
    a = _TEXT_CMD.sub(r"\1", a)
    a = re.sub(r"\\dfrac|\\tfrac", r"\\frac", a)
    a = re.sub(r"^\s*[a-zA-Z]\s*=\s*", "", a)  # "x = 5" -> "5"
    if not re.match(r"\s*(?:\\\{|[\[(])", a):  # 1,000 -> 1000, but (3,250) is a pair
        a = re.sub(r"(?<=\d),(?=\d{3}\b)", "", a)
    a = a.replace("^\\circ", "").replace("^{\\circ}", "").replace("°", "")
    a = re.sub(r"\s+", "", a).rstrip(".").lower()
    return a


def to_number(answer: str) -> float | None:
    """The value of a numeric answer (integers, decimals, a/b, \\frac{a}{b}, percentages), else None."""
    a = normalize(answer)
    percent = a.endswith("\\%") or a.endswith("%")
    a = a.removesuffix("\\%").removesuffix("%")
    frac = _FRAC.fullmatch(a)
    try:
        if frac:
            value = float(Fraction(frac.group(1)) / Fraction(frac.group(2)))
        elif re.fullmatch(r"[-+]?\d+/\d+", a):
            value = float(Fraction(a))
        elif re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?", a):
            value = float(a)
        else:
            return None
    except (ValueError, ZeroDivisionError):
        return None
    return value / 100 if percent else value


def same_answer(a: str, b: str, rel_tol: float = 1e-6) -> bool:
    """True when two stated answers agree: equal after `normalize`, or equal as numbers (a
    percentage also matches its fraction: 50% == 0.5)."""
    na, nb = normalize(a), normalize(b)
    if not na or not nb:
        return False
    if na == nb:
        return True
    return any(math.isclose(x, y, rel_tol=rel_tol, abs_tol=1e-9) for x in _values(a) for y in _values(b))


def _values(answer: str) -> list[float]:
    """The numbers an answer may mean: "50%" is 0.5 or, written without its unit, 50."""
    value = to_number(answer)
    if value is None:
        return []
    return [value, value * 100] if "%" in answer else [value]
