"""Symbolic comparison of math answers: math-verify first, sympy when it cannot parse, and a
numeric check that vetoes the equalities math-verify's rounding invents.

math-verify (0.9) parses LaTeX into sympy and compares numbers, expressions, equations, intervals,
sets, tuples and matrices. Two things it does that we work around:

- It rounds numbers to 6 decimals before comparing, so tiny distinct values are "equal"
  (1/2004! vs 1/2006!, 1e-7 vs 2e-7). `_veto` re-checks numeric pairs at a relative tolerance.
- Its timeouts use `signal.alarm`, which only works in the main thread and cannot interrupt a
  long C-level computation (a power tower). We switch them off and bound time from outside:
  `deadline` here (main thread only) and the worker pool of `webinstruct.evaluation.grading.pool`.

Nothing in this module is cheap (importing it loads sympy); the robust grader decides easy
answers without it.
"""
from __future__ import annotations

import logging
import re
import signal
import threading
from contextlib import contextmanager

import sympy
from latex2sympy2_extended import latex2sympy
from math_verify import parse, verify

RELATIVE_VETO = 1e-5  # numeric values further apart than this are different whatever math-verify says


class GradingTimeout(BaseException):
    """Raised by `deadline`. A BaseException so that sympy's and math-verify's broad
    `except Exception` handlers do not swallow it."""


class _QuietNoTimeout(logging.Filter):
    """math-verify warns once that its timeout is disabled; here that is on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_QuietNoTimeout())


@contextmanager
def deadline(seconds: float | None):
    """Raise `GradingTimeout` in the block after `seconds` (main thread only; elsewhere, or with
    None, the block runs unbounded and the caller must bound it, e.g. with a process)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _expire(signum, frame):
        raise GradingTimeout(f"over {seconds:g}s")

    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


_SCI = re.compile(r"(?<![\w.])([-+]?\d+(?:\.\d+)?)\s*[eE]\s*([-+]?\d+)(?![\w.])")
_DOLLAR = re.compile(r"(?<!\\)\$")


def _latex(answer: str) -> str:
    """The answer as bare LaTeX: no math delimiters, thin spaces, thousands commas ("5,\\!525"
    inside a fraction does not parse) or end period; "1.2e-3" written as a power of ten
    (math-verify reads the e as Euler's number)."""
    a = _DOLLAR.sub("", answer or "").replace("π", "\\pi ").strip()
    a = re.sub(r"^\\\[|\\\]$|^\\\(|\\\)$", "", a).strip()
    # thin spaces "\\," and "\\!", but not a matrix row break "\\\\" followed by a space
    a = re.sub(r"(?<!\\)\\[,;: ]", " ", re.sub(r"(?<!\\)\\!", "", a)).replace("−", "-")
    if not re.match(r"(?:\\\{|\\left|[\[(])", a):  # "(3,250)" is a pair, not 3250
        a = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", a)
    a = a.strip().rstrip(".").strip()
    return _SCI.sub(r"\1\\times 10^{\2}", a)


def _parsed(answer: str) -> list:
    """math-verify's readings of an answer: sympy objects first, then the raw string.
    The answer must be wrapped in $...$: bare LaTeX parses to nothing."""
    latex = _latex(answer)
    if not latex:
        return []
    return parse(f"${latex}$", parsing_timeout=None)


def _number(expr) -> sympy.Expr | None:
    """A constant sympy expression evaluated to 30 digits (sympy floats keep their exponent:
    1/2004! stays distinct from 1/2006!), or None for anything with symbols, sets, etc."""
    if not isinstance(expr, sympy.Expr) or expr.free_symbols or not expr.is_number:
        return None
    try:
        value = sympy.N(expr, 30)
    except Exception:
        return None
    return value if value.is_finite else None


def _close(a: sympy.Expr, b: sympy.Expr, rel: float) -> bool:
    try:
        return bool(abs(a - b) <= rel * sympy.Max(abs(a), abs(b)))
    except TypeError:  # undecidable comparison
        return True


def _veto(gold, pred, gold_text: str, pred_text: str) -> bool:
    """True when math-verify called two constants equal that differ beyond `RELATIVE_VETO`.
    Percentages are left alone: math-verify relates "50\\%" to both 0.5 and 50 on purpose."""
    if "%" in gold_text or "%" in pred_text:
        return False
    a, b = _number(gold), _number(pred)
    return a is not None and b is not None and not _close(a, b, RELATIVE_VETO)


def _sympy_fallback(gold: str, pred: str) -> bool:
    """Direct latex2sympy comparison for answers math-verify could not parse: equal constants
    (relative 1e-9) or a difference that simplifies to zero."""
    try:
        g = latex2sympy(_latex(gold))
        p = latex2sympy(_latex(pred))
    except Exception:
        return False
    a, b = _number(g), _number(p)
    if a is not None and b is not None:
        return _close(a, b, 1e-9)
    try:
        return isinstance(g, sympy.Expr) and isinstance(p, sympy.Expr) and sympy.simplify(g - p) == 0
    except Exception:
        return False


def _same_equation(g, p) -> bool:
    """Two equations with the same solutions up to a factor ("y = -\\frac{1}{4}" and "4y + 1 = 0"):
    (lhs - rhs) of one is a non-zero constant times the other's."""
    if not (isinstance(g, sympy.Eq) and isinstance(p, sympy.Eq)):
        return False
    try:
        a, b = sympy.expand(g.lhs - g.rhs), sympy.expand(p.lhs - p.rhs)
        if a == 0 or b == 0 or not a.free_symbols:
            return False
        ratio = sympy.simplify(a / b)
        return not ratio.free_symbols and ratio != 0
    except Exception:
        return False


def math_equivalent(gold: str, pred: str) -> bool:
    """Whether `pred` states the same mathematical answer as `gold` (both LaTeX or plain text).
    Order matters as in math-verify: gold first (an equation gold "x=5" accepts "5"). Two
    equations also match when one is the other times a constant."""
    g, p = _parsed(gold), _parsed(pred)
    g_sym = [x for x in g if not isinstance(x, str)]
    p_sym = [x for x in p if not isinstance(x, str)]
    if g_sym and p_sym:
        if not verify(g, p, timeout_seconds=None):
            return _same_equation(g_sym[0], p_sym[0])
        return not _veto(g_sym[0], p_sym[0], gold, pred)
    if g and p and verify(g, p, timeout_seconds=None):  # unparsed: math-verify compares the strings
        return True
    return _sympy_fallback(gold, pred)


def latex_value(answer: str) -> float | None:
    """The real value of a numeric answer written in LaTeX ("\\frac{\\sqrt{3}}{2}",
    "1.2 \\times 10^{-3}", "2\\pi"), or None when it is not a real constant."""
    for x in _parsed(answer):
        if isinstance(x, str):
            continue
        value = _number(x)
        if value is None:
            return None
        re_part, im_part = value.as_real_imag()
        try:
            if abs(float(im_part)) <= 1e-12 * max(1.0, abs(float(re_part))):
                return float(re_part)
        except (TypeError, ValueError, OverflowError):
            pass
        return None
    return None
