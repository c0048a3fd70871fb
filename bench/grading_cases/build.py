"""Build the grading case set: model-style outputs for real benchmark items, each with the verdict a
careful human grader gives it and (with --oracle) the verdict of the papers' original scorers.

    .venv/bin/python bench/grading_cases/build.py [--oracle-python P --oracle SCRIPT] [--out FILE]

Every case starts from an intended answer, chosen before the output is written: the item's gold in
some equivalent surface form, or a specific wrong answer (a near miss, another option, a changed
expression). The output is then written around that answer in one style (a frame: "The answer is
X", a box, a Minerva line, a markdown reply, a program, a run-on into an invented next problem ...),
so the human verdict follows from the construction and the human-verdict rules in README.md. Styles
that commit to nothing (empty, truncated, refusing, hedging) are wrong by rule 4 / rule 3.

Everything is fixed by SEED: the items, the styles, the forms. The oracle (the original scorer code,
run outside this repository) is optional; without it the cases carry no oracle fields.
"""
from __future__ import annotations

import argparse
import gzip
import importlib.util
import io
import json
import math
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from webinstruct.core.shards import open_text
from webinstruct.evaluation.benchmarks import DATA, REGISTRY, load
from webinstruct.evaluation.items import Item

HERE = Path(__file__).resolve().parent
CASES = HERE.parents[1] / "data" / "grading_cases" / "cases.jsonl.gz"
SEED = 17
BENCHMARKS = ("gsm8k", "math", "theoremqa", "gpqa", "mmlu_stem", "bbh", "arc", "gsm8k_backward")
PROTOCOLS = ("mammoth2", "metamath", "chat")
# Cases per protocol for each benchmark (x3 protocols).
PER_PROTOCOL = {"gsm8k": 100, "gsm8k_backward": 70, "math": 160, "theoremqa": 130, "gpqa": 75,
                "mmlu_stem": 90, "arc": 80, "bbh": 125}
# The stop strings, as data: MAmmoTH2's run_open.py and run_choice.py (the same list, "####" included)
# at 9c67cb1, MetaMath's eval_gsm8k.py and eval_math.py at fe667b1. An output may contain none of its
# protocol's unless it is a run-on (or the one stop-cut case) on purpose. The chat protocol has none of
# its own; its outputs avoid MAmmoTH2's, so reading them with or without that list gives the same text.
# "<start_of_turn>" and "[INST]" (older MAmmoTH2 lists) are avoided too.
MAMMOTH2_STOPS = ("USER:", "ASSISTANT:", "### Instruction:", "Response:", "\n\nProblem", "\nProblem", "Problem:",
                  "<|eot_id|>", "####", "<start_of_turn>", "[INST]")
METAMATH_STOPS = ("Question:", "Question", "USER:", "USER", "ASSISTANT:", "ASSISTANT", "Instruction:", "Instruction",
                  "Response:", "Response")
STOPS = {"mammoth2": MAMMOTH2_STOPS, "metamath": METAMATH_STOPS, "chat": MAMMOTH2_STOPS}


def first_stop(text: str, protocol: str) -> int:
    found = [i for i in (text.find(s) for s in STOPS[protocol]) if i != -1]
    return min(found) if found else -1


# ---------------------------------------------------------------------------------------------
# Numbers

ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen").split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def words(n: int) -> str:
    if n < 0:
        return "negative " + words(-n)
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else "-" + ONES[n % 10])
    if n < 1000:
        return ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + words(n % 100))
    return words(n // 1000) + " thousand" + ("" if n % 1000 == 0 else " " + words(n % 1000))


def plain(x: Fraction) -> str:
    """A rational as plain text: "18", "-2.5", or "a/b" when it has no short decimal."""
    if x.denominator == 1:
        return str(x.numerator)
    d = x.denominator
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    if d == 1:
        s = f"{float(x):.10f}".rstrip("0").rstrip(".")
        if Fraction(s) == x:
            return s
    return f"{x.numerator}/{x.denominator}"


def sep(n: int, mark: str = ",") -> str:
    s = f"{abs(n):,}".replace(",", mark)
    return ("-" if n < 0 else "") + s


def sig(x: float, digits: int = 4) -> str:
    """x with `digits` significant digits, without an exponent for everyday sizes."""
    if x == 0:
        return "0"
    s = f"{x:.{digits}g}"
    if "e" in s:
        mant, exp = s.split("e")
        e = int(exp)
        if -4 <= e < 7:
            s = f"{x:.{max(digits - 1 - e, 0)}f}"
        else:
            return s
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def sci_latex(x: float, digits: int = 3) -> str | None:
    if x == 0:
        return None
    e = math.floor(math.log10(abs(x)))
    m = x / 10 ** e
    ms = f"{m:.{digits}g}"
    if float(ms) * 10 ** e == 0 or abs(float(ms) * 10 ** e - x) > 1e-9 * abs(x):
        return None
    return f"{ms} \\times 10^{{{e}}}"


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


# ---------------------------------------------------------------------------------------------
# Forms: one intended answer, as written in the output


@dataclass
class Form:
    text: str  # how it is written in the output
    answer: str  # human_answer: what a careful reader takes from it
    correct: bool
    tag: str = "plain"  # style suffix ("dfrac", "near-miss", ...); "plain" adds none
    math: bool = True  # may sit inside $...$ / \boxed{}
    block: bool = False  # multi-line (matrices): displayed, not inline


def F(text, answer, correct, tag="plain", math_=True, block=False):
    return Form(text, answer, correct, tag, math_, block)


QUESTION_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])")


def question_numbers(item: Item) -> list[Fraction]:
    out = []
    for m in QUESTION_NUMBER.findall(item.question.replace(",", "")):
        try:
            out.append(Fraction(m))
        except ValueError:
            pass
    return out


def last_sentence(q: str) -> str:
    parts = re.split(r"(?<=[.?!])\s+", q.strip())
    return parts[-1] if parts else q


def number_forms(item: Item, gold: Fraction, rng: random.Random, exact_int: bool = True) -> list[Form]:
    """Numeric answers (GSM8K, GSM8K-Backward, BBH counts and arithmetic)."""
    g = plain(gold)
    out = [F(g, g, True)]
    ask = last_sentence(item.question)
    if gold.denominator == 1:
        n = gold.numerator
        if abs(n) >= 1000:
            out += [F(sep(n), g, True, "thousands"), F(sep(n, "{,}"), g, True, "thousands-latex"),
                    F(sep(n, ",\\!"), g, True, "thousands-latex")]
        out.append(F(f"{g}.00", g, True, "trailing-zeros"))
        if 0 <= abs(n) <= 9999 and (n >= 0 or rng.random() < 0.5):
            out.append(F(words(n), g, True, "number-words", math_=False))
        if n < 0:
            out += [F(f"negative {-n}", g, True, "signed-words", math_=False),
                    F(f"minus {-n}", g, True, "signed-words", math_=False),
                    F(f"\u2212{-n}", g, True, "unicode-minus", math_=False)]
            if re.search(r"profit|gain|earn|change", ask, re.I):
                out.append(F(f"a loss of {-n}", g, True, "signed-words", math_=False))
        if abs(n) >= 1000 and n % 100 == 0:
            s = sci_latex(float(n))
            if s:
                out.append(F(s, g, True, "sci"))
                out.append(F(f"{float(n):.3g}".replace("e+0", "e").replace("e+", "e"), g, True, "sci", math_=False))
    if "$" in item.question or "dollar" in item.question.lower():
        out += [F(f"${g}", g, True, "currency", math_=False), F(f"\\${g}", g, True, "currency"),
                F(f"{g} dollars", g, True, "currency", math_=False)]
        if gold.denominator == 1 and gold.numerator >= 1000:
            out.append(F(f"${sep(gold.numerator)}", g, True, "currency", math_=False))
    if re.search(r"percent|%", ask, re.I):
        out += [F(f"{g}%", g, True, "percent", math_=False), F(f"{g}\\%", g, True, "percent"),
                F(f"{g} percent", g, True, "percent", math_=False)]
    m = re.search(r"\bhow many ((?:[a-z]+ ){0,2}?[a-z]+) (?:do|does|did|are|were|is|was|will|would|can|could|have|has|"
                  r"had|should|must|in|of|on|at|per|for|did)\b", ask, re.I)
    if m and not re.search(r"\b(more|times|total|fewer|less|other|different|of|these|those|the|this|that|his|her|their|"
                           r"its|each|every|altogether)\b", m.group(1), re.I):
        out.append(F(f"{g} {m.group(1).lower()}", g, True, "units", math_=False))
    return out


def wrong_numbers(item: Item, gold: Fraction, rng: random.Random) -> list[Form]:
    cands: list[tuple[Fraction, str]] = []
    if gold.denominator == 1:
        cands += [(gold + 1, "near-miss"), (gold - 1, "near-miss"), (gold * 10, "wrong-scale")]
        if gold != 0:
            cands.append((-gold, "sign-flip"))
        if gold.numerator % 2 == 0 and gold != 0:
            cands.append((gold / 2, "wrong"))
    else:
        cands += [(Fraction(math.floor(gold)), "rounded"), (gold + Fraction(1, 10), "near-miss"), (gold * 10, "wrong-scale")]
    for q in question_numbers(item):
        if q != gold and q != 0:
            cands.append((q, "distractor"))
            break
    out = []
    for v, tag in cands:
        if v == gold:
            continue
        s = plain(v)
        out.append(F(s, s, False, tag))
        if tag == "near-miss" and v.denominator == 1 and abs(v) >= 1000:
            out.append(F(sep(v.numerator), s, False, "near-miss"))
        if tag == "sign-flip" and v < 0:
            out.append(F(f"negative {-v.numerator}" if v.denominator == 1 else f"negative {plain(-v)}", s, False,
                         "sign-flip", math_=False))
    if gold.denominator == 1 and 0 <= gold.numerator < 999:
        out.append(F(words(gold.numerator + 1), plain(gold + 1), False, "number-words", math_=False))
    return out


# MATH ----------------------------------------------------------------------------------------

FRAC = [re.compile(r"(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}"), re.compile(r"(-?)\\[dt]?frac(\d)(\d)"),
        re.compile(r"(-?)\\[dt]?frac\{(\d+)\}(\d)"), re.compile(r"(-?)\\[dt]?frac(\d)\{(\d+)\}"),
        re.compile(r"(-?)(\d+)/(\d+)"), re.compile(r"(-?)\\[dt]?frac\s(\d)(\d)")]


def parse_frac(s: str) -> Fraction | None:
    s = s.strip()
    for p in FRAC:
        m = p.fullmatch(s)
        if m and int(m.group(3)) != 0:
            v = Fraction(int(m.group(2)), int(m.group(3)))
            return -v if m.group(1) else v
    return None


def split_top(s: str, sep_: str = ",") -> list[str]:
    """Split at `sep_` outside braces, brackets and parentheses."""
    parts, depth, cur = [], 0, ""
    i = 0
    while i < len(s):
        ch = s[i]
        if ch in "{([":
            depth += 1
        elif ch in "})]":
            depth -= 1
        if depth == 0 and s.startswith(sep_, i) and not s.startswith(",\\!", i):
            parts.append(cur)
            cur = ""
            i += len(sep_)
            continue
        cur += ch
        i += 1
    parts.append(cur)
    return parts


def strip_left_right(s: str) -> str:
    return re.sub(r"\\(left|right)\s*", "", s)


def math_shape(item: Item) -> str:
    s = item.gold.strip()
    q = item.question.lower()
    if re.fullmatch(r"-?\d+", s):
        return "int"
    if re.fullmatch(r"\d{1,3}(,(\\!)?\d{3})+", s):
        # "15,600" is one number, unless the question asks for several values
        return "other" if re.search(r"separated by commas|all possible|list", q) else "int-sep"
    if re.fullmatch(r"-?\d*\.\d+", s):
        return "decimal"
    if parse_frac(s) is not None:
        return "frac"
    if re.fullmatch(r"\d+(\.\d+)?\\%", s):
        return "percent"
    if re.fullmatch(r"\d+(\.\d+)?\^\{?\\circ\}?", s):
        return "degree"
    if re.fullmatch(r"\d+(\.\d+)?\s*\\(text|mbox)\{\s*[a-z]+\.?\s*\}", s):
        return "unit"
    if re.fullmatch(r"\\begin\{pmatrix\}.*\\end\{pmatrix\}", s):
        return "matrix"
    if re.fullmatch(r"\d+_\{?\d+\}?", s):
        return "base"
    if re.fullmatch(r"\\text\{\s*\(?[A-H]\)?\s*\}|\(?[A-H]\)?", s):
        return "letter"
    if re.fullmatch(r"\\text\{\s*[A-Za-z][A-Za-z ]*\}", s):
        return "word"
    if "=" in s or "\\le" in s or "\\ge" in s or "<" in s or ">" in s or "\\pm" in s or "\\text" in s:
        if re.fullmatch(r"-?\d+\s*\\text\{\s*and\s*\}\s*-?\d+", s):
            return "list-and"
        return "other"
    bare = strip_left_right(s)
    if re.fullmatch(r"[\(\[].*[\)\]]", bare) and len(split_top(bare[1:-1])) >= 2:
        if "\\infty" in bare or "\\cup" in bare or "interval" in q:
            return "interval"
        if bare[0] == "(" and bare[-1] == ")" and "\\cup" not in bare:
            return "tuple"
        return "other"
    if "\\cup" in s:
        return "other"
    if len(split_top(s)) >= 2:
        if all(re.fullmatch(r"\s*-?\d+\s*|\s*-?\\[dt]?frac\{\d+\}\{\d+\}\s*", p) for p in split_top(s)):
            return "list"
        return "other"
    if re.search(r"\d", s) and len(s) <= 40:
        return "expr"
    return "other"


def vary_space(s: str, rng: random.Random) -> str:
    """The same LaTeX with different spacing."""
    if rng.random() < 0.5:
        if "\\text" in s or "matrix" in s:
            return s
        # drop spaces, except between two letters ("\\cot x" must keep its space)
        return re.sub(r"\s+(?=[^A-Za-z])|(?<=[^A-Za-z])\s+", "", s)
    return re.sub(r"\s*([,+=])\s*", r"\1 ", s).replace("( ", "(").strip()


def bump_first_int(s: str, skip_zero: bool = True) -> str | None:
    """The first integer that is not a subscript, exponent of 1, or inside a \\begin{...} name, plus one."""
    for m in re.finditer(r"(?<![_\\a-zA-Z{])\d+", s):
        if m.group() == "0" and skip_zero:
            continue
        return s[:m.start()] + str(int(m.group()) + 1) + s[m.end():]
    return None


def math_value_of(s: str) -> Fraction | None:
    s = s.strip()
    if re.fullmatch(r"-?\d+", s):
        return Fraction(int(s))
    if re.fullmatch(r"-?\d*\.\d+", s):
        return Fraction(s)
    return parse_frac(s)


def rational_forms(v: Fraction, rng: random.Random, as_decimal: bool = False) -> list[Form]:
    """Equivalent ways to write a rational MATH answer, and wrong ones."""
    out = []
    neg = "-" if v < 0 else ""
    a = abs(v)
    if v.denominator == 1:
        n = v.numerator
        g = str(n)
        out.append(F(g, g, True))
        if abs(n) >= 1000:
            out += [F(sep(n), g, True, "thousands"), F(sep(n, ",\\!"), g, True, "thousands-latex"),
                    F(sep(n, "{,}"), g, True, "thousands-latex")]
        if 0 <= n <= 20:
            out.append(F(words(n), g, True, "number-words", math_=False))
        if n < 0:
            out.append(F(f"negative {-n}", g, True, "signed-words", math_=False))
        out.append(F(f"{n}.0", g, True, "trailing-zeros"))
        for w, tag in ((n + 1, "near-miss"), (n - 1, "near-miss"), (-n, "sign-flip"), (n * 10, "wrong-scale")):
            if w != n:
                out.append(F(str(w), str(w), False, tag))
                if abs(w) >= 1000 and tag == "near-miss":
                    out.append(F(sep(w, ",\\!"), str(w), False, "near-miss"))
        return out
    p, q = a.numerator, a.denominator
    canon = f"{neg}\\frac{{{p}}}{{{q}}}"
    out += [F(canon, canon, True), F(f"{neg}\\dfrac{{{p}}}{{{q}}}", canon, True, "dfrac"),
            F(f"{neg}\\tfrac{{{p}}}{{{q}}}", canon, True, "tfrac"), F(f"{neg}{p}/{q}", f"{neg}{p}/{q}", True, "slash")]
    if p < 10 and q < 10:
        out.append(F(f"{neg}\\frac{p}{q}", canon, True, "frac-short"))
    if neg:
        out.append(F(f"\\frac{{-{p}}}{{{q}}}", canon, True, "neg-numerator"))
    d = plain(v)
    if "/" not in d:
        out.append(F(d, d, True, "decimal"))
    else:
        approx = f"{float(v):.2f}"
        if Fraction(approx) != v:
            out.append(F(approx, approx, False, "rounded-decimal"))
    wrongs = [(Fraction(p + 1, q), "near-miss"), (-v, "sign-flip")]
    if p != q and p != 0:
        wrongs.append((Fraction(q, p) * (1 if v > 0 else -1), "reciprocal"))
    for w, tag in wrongs:
        if w == v:
            continue
        wn = "-" if w < 0 else ""
        wa = abs(w)
        text = f"{wn}\\frac{{{wa.numerator}}}{{{wa.denominator}}}" if wa.denominator != 1 else f"{wn}{wa.numerator}"
        if as_decimal and "/" not in plain(w):
            text = plain(w)
        out.append(F(text, text, False, tag))
    return out


def matrix_entries(s: str) -> list[list[str]] | None:
    m = re.fullmatch(r"\\begin\{pmatrix\}(.*)\\end\{pmatrix\}", s.strip(), re.S)
    if not m:
        return None
    rows = [r for r in m.group(1).split("\\\\")]
    table = [[c.strip() for c in r.split("&")] for r in rows if r.strip()]
    if not table or any(not c for r in table for c in r):
        return None
    return table


def matrix_text(table, env="pmatrix", spaced=True) -> str:
    j = " & " if spaced else "&"
    r = " \\\\ " if spaced else "\\\\"
    return f"\\begin{{{env}}} " + r.join(j.join(row) for row in table) + f" \\end{{{env}}}"


def math_forms(item: Item, rng: random.Random) -> list[Form]:
    s = item.gold.strip()
    shape = math_shape(item)
    out: list[Form] = []
    if shape in ("int", "decimal", "frac"):
        v = math_value_of(s)
        out = rational_forms(v, rng, as_decimal=shape == "decimal")
        if shape == "frac" and not s.startswith(("\\frac{", "-\\frac{")):
            out.append(F(s, s, True))  # the gold's own spelling (\frac15, 3/4 ...)
        if shape == "decimal":
            out.append(F(s, s, True))
            nb = bump_last_digit(s)
            out.append(F(nb, nb, False, "near-miss"))
    elif shape == "int-sep":
        n = int(s.replace(",\\!", "").replace(",", ""))
        g = str(n)
        out = [F(s, g, True), F(g, g, True, "no-separators"), F(sep(n), g, True, "thousands"),
               F(sep(n, "{,}"), g, True, "thousands-latex"),
               F(sep(n + 1, ",\\!"), str(n + 1), False, "near-miss"), F(str(n - 1), str(n - 1), False, "near-miss"),
               F(sep(n * 10), str(n * 10), False, "wrong-scale")]
    elif shape == "percent":
        num = s[:-2]
        w = str(int(num) + 1) if num.isdigit() else bump_last_digit(num)
        out = [F(s, s, True), F(f"{num}%", s, True, "percent", math_=False), F(f"{num} percent", s, True, "percent", math_=False),
               F(f"{w}\\%", f"{w}\\%", False, "near-miss"), F(f"{w}%", f"{w}\\%", False, "near-miss", math_=False)]
    elif shape == "degree":
        num = re.match(r"[\d.]+", s).group()
        w = str(int(num) + 1) if num.isdigit() else bump_last_digit(num)
        out = [F(s, s, True), F(f"{num}^{{\\circ}}", s, True, "degrees"), F(f"{num}\u00b0", s, True, "degrees", math_=False),
               F(f"{num} degrees", s, True, "degrees", math_=False), F(num, s, True, "units-dropped"),
               F(f"{w}^\\circ", f"{w}^\\circ", False, "near-miss"), F(f"{w} degrees", f"{w}^\\circ", False, "near-miss", math_=False)]
        if num.isdigit() and int(num) < 180 and int(num) != 90:
            o = str(180 - int(num))
            out.append(F(f"{o}^\\circ", f"{o}^\\circ", False, "supplement"))
    elif shape == "unit":
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*\\(?:text|mbox)\{\s*([a-z]+)\.?\s*\}", s)
        num, unit = m.group(1), m.group(2)
        w = str(int(num) + 1) if num.isdigit() else bump_last_digit(num)
        out = [F(s, s, True), F(f"{num} {unit}", s, True, "units", math_=False), F(num, s, True, "units-dropped"),
               F(f"{w} {unit}", f"{w}\\text{{ {unit}}}", False, "near-miss", math_=False),
               F(f"{w}\\text{{ {unit}}}", f"{w}\\text{{ {unit}}}", False, "near-miss")]
    elif shape == "matrix":
        table = matrix_entries(s)
        if table:
            canon = matrix_text(table)
            out = [F(canon, s, True, "matrix", block=True), F(matrix_text(table, "bmatrix"), s, True, "bmatrix", block=True),
                   F(matrix_text(table, spaced=False), s, True, "matrix", block=True)]
            for r_, row in enumerate(table):
                for c_, cell in enumerate(row):
                    b = bump_first_int(cell.replace(" ", ""), skip_zero=False)
                    if b:
                        t2 = [list(x) for x in table]
                        t2[r_][c_] = b
                        out.append(F(matrix_text(t2), matrix_text(t2), False, "matrix-entry", block=True))
                        break
                else:
                    continue
                break
    elif shape == "base":
        m = re.fullmatch(r"(\d+)_\{?(\d+)\}?", s)
        digits, base = m.group(1), int(m.group(2))
        last = int(digits[-1])
        nd = (last + 1) % base
        wrong = digits[:-1] + str(nd)
        out = [F(s, s, True), F(f"{digits}_{{{base}}}" if "{" not in s else f"{digits}_{base}", s, True, "base-subscript"),
               F(f"{wrong}_{{{base}}}", f"{wrong}_{{{base}}}", False, "near-miss")]
    elif shape == "letter":
        letter = re.search(r"[A-H]", s).group()
        opts = sorted(set(re.findall(r"\(([A-H])\)", item.question))) or list("ABCDE")
        others = [o for o in opts if o != letter]
        out = [F(f"\\text{{({letter})}}", f"({letter})", True, "mc-letter"), F(f"({letter})", f"({letter})", True, "mc-letter"),
               F(letter, f"({letter})", True, "mc-letter"), F(f"({letter.lower()})", f"({letter})", True, "mc-lower", math_=False)]
        for o in others[:2]:
            out.append(F(f"({o})", f"({o})", False, "mc-letter"))
    elif shape == "word":
        w = re.fullmatch(r"\\text\{\s*(.*?)\s*\}", s).group(1)
        out = [F(s, w, True), F(w, w, True, "text-word", math_=False), F(f"\\textbf{{{w}}}", w, True, "text-word")]
        opp = {"odd": "even", "even": "odd", "neither": "odd", "yes": "no", "no": "yes"}.get(w.lower())
        if opp:
            out.append(F(f"\\text{{{opp}}}", opp, False, "text-word"))
    elif shape == "list-and":
        a, b = [x.strip() for x in re.split(r"\\text\{\s*and\s*\}", s)]
        out = [F(s, f"{a}, {b}", True), F(f"{a} \\text{{ and }} {b}", f"{a}, {b}", True, "list"),
               F(f"{a}, {b}", f"{a}, {b}", True, "list"), F(f"{a} and {b}", f"{a}, {b}", True, "list", math_=False),
               F(f"{a}, {int(b) + 1}", f"{a}, {int(b) + 1}", False, "list-element"), F(a, a, False, "list-partial")]
    elif shape == "list":
        parts = [p.strip() for p in split_top(s)]
        joined = ", ".join(parts)
        out = [F(s, joined, True), F(joined, joined, True, "list")]
        if re.search(r"\ball\b", item.question) and len(set(parts)) == len(parts) and not re.search(
                r"order|least|greatest|increasing|decreasing|ascending|descending|smallest|largest", item.question, re.I):
            rev = ", ".join(reversed(parts))
            out.append(F(rev, rev, True, "list-reordered"))
        out.append(F(", ".join(parts[:-1]), ", ".join(parts[:-1]), False, "list-partial"))
        b = bump_first_int(parts[-1])
        if b:
            t = ", ".join(parts[:-1] + [b])
            out.append(F(t, t, False, "list-element"))
    elif shape == "interval":
        bare = strip_left_right(s)
        out = [F(s, s, True), F(vary_space(bare, rng), s, True, "interval")]
        if "\\left" not in s and "\\cup" not in s:
            out.append(F(f"\\left{bare[0]} {bare[1:-1]} \\right{bare[-1]}", s, True, "interval"))
        # open <-> closed at a finite end
        inner = bare[1:-1]
        if "\\cup" not in bare:
            lo, hi = [p.strip() for p in split_top(inner)]
            if "infty" not in lo:
                flip = ("[" if bare[0] == "(" else "(") + inner + bare[-1]
                out.append(F(flip, flip, False, "interval-bracket"))
            if "infty" not in hi:
                flip = bare[0] + inner + ("]" if bare[-1] == ")" else ")")
                out.append(F(flip, flip, False, "interval-bracket"))
        b = bump_first_int(bare)
        if b:
            out.append(F(b, b, False, "interval-endpoint"))
    elif shape == "tuple":
        bare = strip_left_right(s)
        parts = [p.strip() for p in split_top(bare[1:-1])]
        tight = "(" + ",".join(parts) + ")"
        spaced = "(" + ", ".join(parts) + ")"
        out = [F(s, s, True), F(tight, s, True, "tuple"), F(spaced, s, True, "tuple"),
               F(f"\\left( {', '.join(parts)} \\right)", s, True, "tuple")]
        if len(parts) >= 2 and parts[0] != parts[1]:
            sw = "(" + ", ".join([parts[1], parts[0]] + parts[2:]) + ")"
            out.append(F(sw, sw, False, "tuple-swapped"))
        for i, p in enumerate(parts):
            b = bump_first_int(p)
            if b:
                t = "(" + ", ".join(parts[:i] + [b] + parts[i + 1:]) + ")"
                out.append(F(t, t, False, "tuple-element"))
                break
    elif shape == "expr":
        out = [F(s, s, True)]
        v = vary_space(s, rng)
        if v != s:
            out.append(F(v, s, True, "spacing"))
        if "\\frac" in s:
            out.append(F(s.replace("\\frac", "\\dfrac"), s, True, "dfrac"))
        if re.search(r"\\sqrt\{\d\}", s):
            out.append(F(re.sub(r"\\sqrt\{(\d)\}", r"\\sqrt\1", s), s, True, "sqrt-short"))
        b = bump_first_int(s)
        if b and b != s:
            out.append(F(b, b, False, "expr-changed"))
    return out


def bump_last_digit(s: str) -> str:
    m = list(re.finditer(r"\d", s))[-1]
    d = int(m.group())
    return s[:m.start()] + str((d + 1) % 10 if d != 9 else 8) + s[m.end():]


# TheoremQA -----------------------------------------------------------------------------------

def theoremqa_forms(item: Item, rng: random.Random) -> list[Form]:
    t = item.meta["answer_type"]
    gv = item.gold_value
    out: list[Form] = []
    if t == "integer":
        n = int(gv)
        g = str(n)
        out = [F(g, g, True), F(f"{n}.0", g, True, "trailing-zeros")]
        if abs(n) >= 1000:
            out.append(F(sep(n), g, True, "thousands"))
            if n % 100 == 0:
                s = sci_latex(float(n))
                if s:
                    out.append(F(s, g, True, "sci"))
        if 0 <= n <= 20:
            out.append(F(words(n), g, True, "number-words", math_=False))
        if n < 0:
            out.append(F(f"negative {-n}", g, True, "signed-words", math_=False))
        out += [F(str(n + 1), str(n + 1), False, "near-miss"), F(str(n - 1), str(n - 1), False, "near-miss")]
        if abs(n) >= 1000:
            out.append(F(sep(n + 1), str(n + 1), False, "near-miss"))
        if n != 0:
            out.append(F(str(-n), str(-n), False, "sign-flip"))
            out.append(F(str(n * 10), str(n * 10), False, "wrong-scale"))
    elif t == "float":
        v = float(gv)
        g = sig(v, 6)
        out = [F(g, g, True)]
        if v != 0:
            for f in (1.004, 0.992, 1.015, 0.985):
                w = sig(v * f, 4)
                if rel(float(w), v) < 0.025 and w != g:
                    out.append(F(w, w, True, "within-tol"))
                    break
            for f in (1.12, 0.85, 1.3, 0.5):
                w = sig(v * f, 4)
                if rel(float(w), v) > 0.08:
                    out.append(F(w, w, False, "off-tol"))
                    break
            if abs(v) < 1e-3 or abs(v) >= 1e5:
                s = sci_latex(v)
                if s:
                    out.append(F(s, g, True, "sci"))
                    out.append(F(f"{v:.3e}", g, True, "sci", math_=False))
                    w = sci_latex(v * 10)
                    if w:
                        out.append(F(w, sig(v * 10, 6), False, "sci-exponent"))
            if v < 0:
                out.append(F(f"negative {sig(-v, 6)}", g, True, "signed-words", math_=False))
                out.append(F(sig(-v, 6), sig(-v, 6), False, "sign-flip"))
            if v == int(v) and abs(v) < 1e6:
                out.append(F(str(int(v)), g, True, "integer-form"))
    elif t in ("list of integer", "list of float"):
        vals = list(gv)
        isint = t == "list of integer"
        txt = [str(int(x)) if isint else sig(float(x), 6) for x in vals]
        g = "[" + ", ".join(txt) + "]"
        out = [F(g, g, True), F("[" + ",".join(txt) + "]", g, True, "list"), F(", ".join(txt), g, True, "list-bare"),
               F("(" + ", ".join(txt) + ")", g, True, "list-parens")]
        if not isint and all(float(x) != 0 for x in vals):
            near = [sig(float(x) * 1.01, 4) for x in vals]
            if all(rel(float(a), float(b)) < 0.025 for a, b in zip(near, vals)) and near != txt:
                out.append(F("[" + ", ".join(near) + "]", "[" + ", ".join(near) + "]", True, "within-tol"))
        rev = list(reversed(vals))
        # reversed is wrong only when some entry moves by more than the tolerance (far more, to be sure)
        if any(float(a) != float(b) if isint or float(b) == 0 else rel(float(a), float(b)) > 0.08
               for a, b in zip(rev, vals)):
            r = "[" + ", ".join(reversed(txt)) + "]"
            out.append(F(r, r, False, "list-order"))
        i = len(txt) - 1
        if isint:
            w = list(txt)
            w[i] = str(int(vals[i]) + 1)
        else:
            w = list(txt)
            w[i] = sig(float(vals[i]) * 1.25 + (1 if float(vals[i]) == 0 else 0), 4)
        wt = "[" + ", ".join(w) + "]"
        out.append(F(wt, wt, False, "list-element"))
        if len(txt) > 1:
            p = "[" + ", ".join(txt[:-1]) + "]"
            out.append(F(p, p, False, "list-partial"))
    elif t == "bool":
        b = bool(gv)
        g, o = ("True", "False") if b else ("False", "True")
        out = [F(g, g, True), F(g.lower(), g, True, "bool-lower", math_=False),
               F("Yes" if b else "No", g, True, "bool-yesno", math_=False),
               F(o, o, False), F(o.lower(), o, False, "bool-lower", math_=False)]
    elif t == "option":
        letter = item.gold.strip("()").lower()
        opts = sorted(set(re.findall(r"\(([a-e])\)", item.question))) or list("abcd")
        out = [F(f"({letter})", f"({letter})", True, "mc-letter", math_=False),
               F(f"({letter.upper()})", f"({letter})", True, "mc-upper", math_=False),
               F(f"option ({letter})", f"({letter})", True, "mc-option", math_=False),
               F(f"Option {letter.upper()}", f"({letter})", True, "mc-option", math_=False)]
        for o in opts:
            if o != letter:
                out.append(F(f"({o})", f"({o})", False, "mc-letter", math_=False))
    return out


# Multiple choice ----------------------------------------------------------------------------

BAD_TEXT = re.compile(r"\n|\(\w\)|USER|ASSISTANT|Instruction|Response|Question|Problem|####|\$")


def option_text_ok(item: Item, key: str) -> bool:
    """Whether an option's text alone names it without doubt: unique, no option inside another,
    not a bare letter or a small number that could be read as an option number."""
    t = item.choices.get(key, "").strip()
    if len(t) < 2 or len(t) > 90 or BAD_TEXT.search(t):
        return False
    low = t.lower().rstrip(".")
    for k, other in item.choices.items():
        if k == key:
            continue
        o = other.strip().lower().rstrip(".")
        if not o or o == low or o in low or low in o:
            return False
    if re.fullmatch(r"\d+", low) and 1 <= int(low) <= len(item.choices):
        return False
    if re.search(r"(?<![A-Za-z])[A-J](?![A-Za-z])", t):
        return False
    if re.search(r"\b(not|none|neither|no)\b", low):
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Bodies: the reasoning before the answer


def load_solutions():
    sols = {}
    with open_text(DATA / REGISTRY["gsm8k"].path) as f:
        for i, line in enumerate(x for x in f if x.strip()):
            sols[("gsm8k", f"{i:04d}")] = json.loads(line)["response"]
    with open_text(DATA / REGISTRY["gsm8k_backward"].path) as f:
        for i, line in enumerate(x for x in f if x.strip()):
            row = json.loads(line)
            if str(row.get("pred_inv_answer_cleaned", "")).strip() == str(row["answer"]).strip():
                sols[("gsm8k_backward", f"{i:04d}")] = row["inv_question_pred_answer"]
    with open_text(DATA / REGISTRY["math"].path) as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                sols[("math", row["id"])] = row["solution"]
    with open_text(DATA / REGISTRY["theoremqa"].path) as f:
        for row in json.load(f):
            sols[("theoremqa", row["id"])] = row.get("theorem", "")
    return sols


SOLUTIONS: dict = {}


def gsm8k_lines(item: Item) -> list[str]:
    text = SOLUTIONS.get((item.benchmark, item.id), "")
    text = re.sub(r"<<[^>]*>>", "", text)
    lines = [x.strip() for x in text.split("\n") if x.strip() and not x.startswith("####")]
    if item.benchmark == "gsm8k_backward":
        if lines and lines[0].startswith("Let's think step by step"):
            lines = lines[1:]
    return lines


def numeric_body(item: Item, intended: Fraction | None) -> list[str] | None:
    """GSM8K-style reasoning lines. The last line, when it ends on the gold, is rewritten to end
    on the intended value (None: dropped)."""
    lines = gsm8k_lines(item)
    if len(lines) < 2:
        return None
    last = lines[-1]
    nums = list(re.finditer(r"-?\$?\d[\d,]*(?:\.\d+)?", last))
    gold = Fraction(item.gold)
    if item.benchmark == "gsm8k_backward":
        # stop before the line that first solves for the unknown
        gold_s = plain(gold)
        keep = lines[:-1]
        while keep and re.search(rf"(?<![\d.]){re.escape(gold_s)}(?![\d])", keep[-1].replace(",", "")):
            keep = keep[:-1]
        return keep if len(keep) >= 2 else None
    if not nums:
        return lines[:-1]
    m = nums[-1]
    try:
        v = Fraction(m.group().replace("$", "").replace(",", ""))
    except ValueError:
        return lines[:-1]
    if v != gold or intended is None or (intended < 0) != (gold < 0):
        return lines[:-1]
    dollar = "$" if m.group().startswith("$") else ""
    if dollar:
        new = last[:m.start()] + "$" + plain(intended) + last[m.end():]
    else:
        new = last[:m.start()] + plain(intended) + last[m.end():]
    return lines[:-1] + [new]


BOXED = re.compile(r"\\boxed\s*\{")
ANSWERISH = re.compile(r"answer|####", re.I)


def braced(text: str, start: int) -> int:
    depth = 1
    i = start
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def math_body(item: Item) -> tuple[str, str | None]:
    """MATH reasoning: (the solution up to the sentence with its first box, the solution with
    that box's content left as a {ANSWER} slot when the box ends the solution, else None)."""
    sol = SOLUTIONS.get(("math", item.id), "")
    m = BOXED.search(sol)
    if not m:
        return sol.strip(), None
    end = braced(sol, m.end())
    # back to the end of the last whole sentence before the box, outside math
    head = ""
    for e in reversed([x.end() for x in re.finditer(r"[.!?](?:\$|\\\])?(?=\s)", sol[:m.start()])]):
        cand = sol[:e].strip()
        if balanced_math(cand):
            head = cand
            break
    slot = None
    tail = sol[end + 1:]
    if end != -1 and len(BOXED.findall(sol)) == 1 and len(tail) < 80 and not re.search(r"\d|\\\[|\$\$|=", tail) \
            and sol[m.end():end].strip() == item.gold.strip():
        slot = sol[:m.start()] + "{ANSWER}" + tail
    return head, slot


def balanced_math(text: str) -> bool:
    """No open $...$, $$...$$, \\[...\\] or environment at the end of `text`."""
    t = text.replace("\\$", "")
    if t.count("$") % 2 or t.count("\\[") != t.count("\\]") or t.count("\\(") != t.count("\\)"):
        return False
    return len(re.findall(r"\\begin\{", t)) == len(re.findall(r"\\end\{", t)) and t.count("{") == t.count("}")


THEOREMQA_STEPS = [
    "We start from the definitions involved and write down what is given.",
    "Substituting the given values into the relevant formula, we simplify step by step.",
    "Carrying out the computation carefully gives the value below.",
]


def generic_body(item: Item, rng: random.Random) -> list[str]:
    if item.kind == "theoremqa":
        theorem = SOLUTIONS.get(("theoremqa", item.id), "")
        first = f"This question can be solved with the {theorem}." if theorem else "Let's set up the problem."
        return [first] + THEOREMQA_STEPS[: rng.randint(1, 3)]
    if item.kind == "choice" or item.choices:
        return rng.choice([
            ["Let's look at each option in turn and check it against the facts in the statement.",
             "Only one of the options is consistent with all of them."],
            ["We recall the relevant principle and apply it to the situation described.",
             "Comparing the result with the options given narrows it down to one."],
            ["First, identify what is being asked.", "Then eliminate the options that contradict the given information."],
        ])
    return rng.choice([
        ["Let's work through this step by step.", "We keep track of the intermediate results as we go."],
        ["We go through the statements in order.", "Putting the pieces together gives the result."],
        ["Let's think about it carefully.", "Following each step in turn leads to the conclusion."],
    ])


def chat_format(lines: list[str], rng: random.Random) -> str:
    style = rng.randrange(3)
    if style == 0:
        return "Let's solve this step by step.\n\n" + "\n\n".join(f"**Step {i + 1}:** {x}" for i, x in enumerate(lines))
    if style == 1:
        return "## Solution\n\n" + "\n".join(f"{i + 1}. {x}" for i, x in enumerate(lines))
    return "Sure! Here's how to work it out.\n\n" + "\n".join(f"- {x}" for x in lines)


# ---------------------------------------------------------------------------------------------
# Frames: how the output commits to the answer


def dollars(form: Form) -> str:
    return f"${form.text}$" if form.math else form.text


def inline(form: Form, rng: random.Random) -> str:
    """The answer in running text: LaTeX (a backslash or brace) in $...$, plain text mostly bare."""
    if form.math and (re.search(r"[\\{}^_]", form.text) or rng.random() < 0.3):
        return f"${form.text}$"
    return form.text


def display(form: Form) -> str:
    return f"$$\n{form.text}\n$$" if form.block else dollars(form)


def phrase(protocol: str, form: Form, rng: random.Random, kind: str) -> str:
    if form.block:
        a = form.text
    elif protocol == "metamath" and rng.random() < 0.75 and not form.text.startswith("\\$"):
        a = form.text  # MetaMath writes its answers bare
    else:
        a = inline(form, rng)
    if protocol == "mammoth2":
        return f"The answer is {a}" + ("." if kind in ("choice", "bbh") and rng.random() < 0.7 else "")
    if protocol == "metamath":
        return f"The answer is: {a}"
    return rng.choice([f"The answer is {a}.", f"So, the answer is **{a}**.", f"Therefore, the answer is {a}."])


def boxed(form: Form, rng: random.Random) -> str:
    return rng.choice([f"Therefore, the final answer is $\\boxed{{{form.text}}}$.",
                       f"So the answer is\n$$\\boxed{{{form.text}}}$$",
                       f"\\[\n\\boxed{{{form.text}}}\n\\]",
                       f"The final answer is: $\\boxed{{{form.text}}}$"])


def minerva(form: Form) -> str:
    return f"Final Answer: The final answer is ${form.text}$. I hope it is correct." if form.math else \
        f"Final Answer: The final answer is {form.text}. I hope it is correct."


def bold(form: Form, rng: random.Random) -> str:
    a = display(form) if form.block else dollars(form)
    return rng.choice([f"**Final answer:** {a}", f"**Answer:** {a}", f"**Final Answer:** {a}", f"Answer: {a}"])


def heading(form: Form, rng: random.Random) -> str:
    a = display(form)
    return rng.choice([f"### Final Answer\n\n{a}", f"## Answer\n{a}"])


# ---------------------------------------------------------------------------------------------
# Case construction


@dataclass
class Ctx:
    bench: str
    protocol: str
    rng: random.Random
    items: list  # the benchmark's pool, interleaved by gold shape
    others: list  # all items of the benchmark (for run-on continuations)
    cursor: dict


def pick(ctx: Ctx, key: str, pred) -> Item | None:
    n = len(ctx.items)
    start = ctx.cursor.get(key, ctx.rng.randrange(min(n, 400)))
    for k in range(n):
        it = ctx.items[(start + k) % n]
        if pred(it):
            ctx.cursor[key] = (start + k + 1) % n
            return it
    return None


def join(protocol: str, body: list[str] | str, final: str, rng: random.Random) -> str:
    if isinstance(body, str):
        text = body
    elif protocol == "chat":
        text = chat_format(body, rng) if body else ""
    else:
        text = "\n".join(body)
    if not text:
        return final
    return text + ("\n\n" if protocol == "chat" or "\n" in final[:2] else "\n") + final


def forms_for(item: Item, rng: random.Random) -> list[Form]:
    if item.kind == "number":
        g = Fraction(item.gold)
        return number_forms(item, g, rng) + wrong_numbers(item, g, rng)
    if item.kind == "math":
        return math_forms(item, rng)
    if item.kind == "theoremqa":
        return theoremqa_forms(item, rng)
    if item.kind == "bbh":
        return bbh_forms(item, rng)
    return []


def bbh_kind(item: Item) -> str:
    g = item.gold
    if item.choices and re.fullmatch(r"\([A-Z]\)", g):
        return "option"
    if g in ("True", "False"):
        return "bool"
    if g in ("valid", "invalid"):
        return "validity"
    if g.lower() in ("yes", "no"):
        return "yesno"
    if re.fullmatch(r"-?\d+", g):
        return "number"
    if item.task == "dyck_languages":
        return "dyck"
    if item.task == "word_sorting":
        return "words"
    return "other"


def bbh_forms(item: Item, rng: random.Random) -> list[Form]:
    k = bbh_kind(item)
    g = item.gold
    if k == "number":
        gv = Fraction(int(g))
        out = [f for f in number_forms(item, gv, rng) if f.tag in ("plain", "number-words", "signed-words", "unicode-minus",
                                                                  "trailing-zeros", "units")]
        out = [Form(f.text, g, True, f.tag, f.math) for f in out]
        for f in wrong_numbers(item, gv, rng):
            if f.tag in ("near-miss", "sign-flip", "distractor", "number-words"):
                out.append(f)
        return out
    if k == "bool":
        o = "False" if g == "True" else "True"
        return [F(g, g, True), F(g.lower(), g, True, "bool-lower", math_=False),
                F(o, o, False), F(o.lower(), o, False, "bool-lower", math_=False)]
    if k == "validity":
        o = "invalid" if g == "valid" else "valid"
        return [F(g, g, True), F(g.capitalize(), g, True, "capitalized", math_=False),
                F(o, o, False), F(o.capitalize(), o, False, "capitalized", math_=False)]
    if k == "yesno":
        yes = g.lower() == "yes"
        o = ("No" if yes else "Yes") if g[0].isupper() else ("no" if yes else "yes")
        alt = g.lower() if g[0].isupper() else g.capitalize()
        return [F(g, g, True), F(alt, g, True, "case", math_=False), F(o, o, False)]
    if k == "words":
        ws = g.split()
        out = [F(g, g, True, math_=False), F(", ".join(ws), g, True, "comma-list", math_=False)]
        if len(ws) >= 2:
            i = rng.randrange(len(ws) - 1)
            if ws[i] != ws[i + 1]:
                sw = ws[:i] + [ws[i + 1], ws[i]] + ws[i + 2:]
                out.append(F(" ".join(sw), " ".join(sw), False, "order", math_=False))
            out.append(F(" ".join(ws[:-1]), " ".join(ws[:-1]), False, "partial", math_=False))
        return out
    if k == "dyck":
        sy = g.split()
        out = [F(g, g, True, math_=False)]
        if len(sy) > 1:
            out.append(F("".join(sy), g, True, "no-spaces", math_=False))
            out.append(F(" ".join(sy[:-1]), " ".join(sy[:-1]), False, "partial", math_=False))
            if sy != sy[::-1]:
                out.append(F(" ".join(sy[::-1]), " ".join(sy[::-1]), False, "order", math_=False))
        else:
            other = {"]": ")", ")": "]", "}": ">", ">": "}"}.get(sy[0], ")")
            out.append(F(other, other, False, "wrong-symbol", math_=False))
        return out
    return []


def mc_keys(item: Item) -> tuple[str, list[str]]:
    """(gold key, all keys) for a multiple-choice item (BBH options: gold "(B)" -> "B")."""
    gold = item.gold.strip("()") if item.kind == "bbh" else item.gold
    return gold, list(item.choices)


def mc_label(item: Item, key: str) -> str:
    return f"({key})" if item.kind == "bbh" else key


def mc_final(ctx: Ctx, item: Item, style: str, correct: bool):
    """One multiple-choice final statement: (style, text, human, human_answer) or None."""
    rng = ctx.rng
    gold, keys = mc_keys(item)
    wrong = [k for k in keys if k != gold]
    if not wrong:
        return None
    if style in ("mc-text", "mc-text-bare") and not correct:
        wrong = [k for k in wrong if option_text_ok(item, k)] or wrong
    key = gold if correct else rng.choice(wrong)
    digit = key.isdigit()
    pos = keys.index(key) + 1
    label = mc_label(item, key)
    P = ctx.protocol
    text = item.choices.get(key, "")

    def phrase_(a):
        if P == "mammoth2":
            return f"The answer is {a}" + ("." if rng.random() < 0.6 else "")
        if P == "metamath":
            return f"The answer is: {a}"
        return rng.choice([f"The answer is {a}.", f"The correct answer is **{a}**.", f"So the answer is {a}."])

    if style == "mc-phrase":
        return style, phrase_(f"({key})" if rng.random() < 0.7 else key), correct, label
    if style == "mc-lower":
        if digit:
            return None
        a = rng.choice([f"({key.lower()})", key.lower()])
        return style, rng.choice([phrase_(a), f"answer: {a}", f"so i'd go with {a}."]), correct, label
    if style == "mc-boxed":
        return style, rng.choice([f"$\\boxed{{{key}}}$", f"Therefore, the answer is $\\boxed{{({key})}}$.",
                                  f"\\[\\boxed{{\\text{{{key}}}}}\\]"]), correct, label
    if style == "mc-minerva":
        return style, f"Final Answer: The final answer is ${key}$. I hope it is correct." if rng.random() < 0.5 else \
            f"Final Answer: The final answer is ({key}). I hope it is correct.", correct, label
    if style == "mc-bold":
        return style, rng.choice([f"**Answer: ({key})**", f"**Final answer:** ({key}) {text}".rstrip(),
                                  f"### Answer\n**({key})**"]), correct, label
    if style in ("mc-text", "mc-text-bare"):
        if not option_text_ok(item, key):
            return None
        t = text.rstrip(".")
        if style == "mc-text":
            return style, phrase_(t) if rng.random() < 0.6 else f"The correct option is: {t}.", correct, label
        return style, rng.choice([f"So the answer is the following.\n{t}", f"{t}", f"**{t}**"]), correct, label
    if style == "mc-letter-text":
        return style, rng.choice([f"({key}) {text}", f"{key}) {text}", f"The correct choice is ({key}) {text}"]), correct, label
    if style == "mc-tentative":
        return style, rng.choice([f"{key}, I think.", f"I'd say ({key}).", f"Probably {key}."]), correct, label
    if style == "mc-justified":
        return style, rng.choice([f"({key}) is correct, since it is the only option consistent with the statement.",
                                  f"Option ({key}) is the right one, because the others contradict the given facts."]), correct, label
    if style == "mc-because":
        return style, f"The answer is option {key} because it agrees with every condition in the statement.", correct, label
    if style == "mc-number":
        # "option 2" could also name an option whose text is the number 2
        if digit or any(re.fullmatch(r"\s*\d+\s*", t) for t in item.choices.values()):
            return None
        ordinal = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth"]
        if pos > len(ordinal):
            return None
        return style, rng.choice([f"The correct choice is option {pos}.", f"The answer is the {ordinal[pos - 1]} option."]), \
            correct, label
    if style == "mc-hedge":
        other = rng.choice(wrong)
        a, b = sorted([gold, other]) if rng.random() < 0.5 else sorted([gold, other], reverse=True)
        return style, rng.choice([f"The answer is either ({a}) or ({b}).", f"It is ({a}) or ({b}); I cannot decide between them.",
                                  f"The answer could be {a} or {b}."]), False, ""
    if style == "mc-negation":
        neg = rng.choice(keys)
        if rng.random() < 0.5:
            return style, rng.choice([f"The answer is not ({neg}).", f"It is certainly not {neg}."]), False, ""
        if neg == key:
            neg = rng.choice([k for k in keys if k != key])
        return style, f"It is not ({neg}). " + phrase_(f"({key})"), correct, label
    if style == "box-then-phrase":
        first = rng.choice([k for k in keys if k != key])
        return style, f"My first guess is $\\boxed{{{first}}}$, but let me check again.\nOn reflection, that does not fit.\n" + \
            phrase_(f"({key})"), correct, label
    return None


ALWAYS_WRONG = {"hedge", "mc-hedge", "empty", "truncated", "refusal"}

REFUSALS = ["I'm sorry, but I can't help with that.",
            "I cannot answer this question without more information.",
            "As an AI language model, I am not able to solve this problem.",
            "I'm not sure how to solve this one."]


def schedule(kind: str, protocol: str) -> list[tuple[str, float]]:
    """Frame weights for one benchmark kind and protocol."""
    P = protocol
    if kind == "choice":
        w = {"mc-phrase": 4, "mc-lower": 1.5, "mc-boxed": 1.5 if P != "mammoth2" else 1, "mc-minerva": 1,
             "mc-bold": 2 if P == "chat" else 1, "mc-text": 2, "mc-text-bare": 1.5, "mc-letter-text": 1.5,
             "mc-tentative": 1.2, "mc-justified": 1.2, "mc-because": 1.2, "mc-number": 1.2, "mc-hedge": 1.2,
             "mc-negation": 1.5, "box-then-phrase": 1, "run-on": 2 if P != "chat" else 0, "empty": 0.5,
             "truncated": 0.6, "refusal": 0.5 if P == "chat" else 0.3}
        return [(k, v) for k, v in w.items() if v > 0]
    w = {"phrase": 5 if P != "chat" else 2.5, "boxed": 2 if P != "chat" else 3.5, "minerva": 1.2,
         "bold": 2.5 if P == "chat" else 0.8, "heading": 1.5 if P == "chat" else 0, "no-phrase": 2,
         "bare-line": 1, "latex-env": 1 if kind in ("math", "theoremqa") else 0.5, "box-then-phrase": 1.2,
         "two-boxes": 1, "run-on": 2.2 if P != "chat" else 0, "hedge": 0.8, "empty": 0.4, "truncated": 0.6,
         "refusal": 0.5 if P == "chat" else 0.25, "program": 3.5 if P == "mammoth2" else 0,
         "multi-boxed": 1.5 if kind in ("math", "theoremqa") else 0,
         "hash": 1.5 if P == "metamath" and kind == "number" else 0, "bool-prose": 1.5 if kind in ("theoremqa", "bbh") else 0}
    return [(k, v) for k, v in w.items() if v > 0]


def interleave(groups: dict[str, list], rng: random.Random, weights: dict[str, float] | None = None,
               size: int = 3000) -> list:
    """One list drawing from each group in turn (shuffled within groups), so every gold shape and
    task comes up early; `weights` repeats a group's turn."""
    pools = {k: list(v) for k, v in groups.items() if v}
    for v in pools.values():
        rng.shuffle(v)
    order = sorted(pools)
    out = []
    idx = {k: 0 for k in order}
    credit = {k: 0.0 for k in order}
    while len(out) < size:  # small groups come round again rather than run out
        for k in order:
            credit[k] += (weights or {}).get(k, 1.0)
            while credit[k] >= 1:
                out.append(pools[k][idx[k] % len(pools[k])])
                idx[k] += 1
                credit[k] -= 1
    return out


def pool_for(bench: str, rng: random.Random) -> list[Item]:
    items = load(bench)
    if bench == "math":
        groups: dict[str, list] = {}
        for it in items:
            groups.setdefault(math_shape(it), []).append(it)
        groups.pop("other", None)
        return interleave(groups, rng, {"int": 3, "frac": 2, "expr": 2, "list-and": 0.1, "percent": 0.4, "word": 0.5,
                                        "letter": 0.6, "base": 0.5, "unit": 0.7, "int-sep": 0.7})
    if bench == "theoremqa":
        groups = {}
        for it in items:
            groups.setdefault(it.meta["answer_type"], []).append(it)
        return interleave(groups, rng, {"float": 2.5, "integer": 2, "bool": 1.5})
    if bench == "bbh":
        groups = {}
        for it in items:
            groups.setdefault(it.task, []).append(it)
        return interleave(groups, rng)
    if bench == "arc":
        groups = {"digit": [i for i in items if i.gold.isdigit()], "letter": [i for i in items if not i.gold.isdigit()]}
        return interleave(groups, rng, {"digit": 0.15, "letter": 1})
    if bench in ("gsm8k", "gsm8k_backward"):
        items = [i for i in items if (i.benchmark, i.id) in SOLUTIONS]
        groups = {"neg-or-dec": [i for i in items if not re.fullmatch(r"\d+", i.gold)],
                  "big": [i for i in items if re.fullmatch(r"\d{4,}", i.gold)],
                  "money": [i for i in items if "$" in i.question and re.fullmatch(r"\d{1,3}", i.gold)],
                  "percent": [i for i in items if re.search(r"percent|%", last_sentence(i.question), re.I)],
                  "small": [i for i in items if re.fullmatch(r"\d{1,3}", i.gold) and "$" not in i.question]}
        return interleave(groups, rng, {"neg-or-dec": 0.3, "big": 1, "money": 1, "percent": 0.6, "small": 1.5})
    rng.shuffle(items)
    return items


# Open-ended frames ---------------------------------------------------------------------------


def choose_form(ctx: Ctx, item: Item, correct: bool, ok=lambda f: True) -> Form | None:
    forms = [f for f in forms_for(item, ctx.rng) if f.correct == correct and ok(f)]
    if not forms:
        return None
    # a tag first (so that a tag with many spellings does not crowd out the rest), then a spelling
    tags = sorted({f.tag for f in forms})
    if "plain" in tags and (len(tags) == 1 or ctx.rng.random() < 0.3):
        tag = "plain"
    else:
        tag = ctx.rng.choice([t for t in tags if t != "plain"])
        if tag == "trailing-zeros" and ctx.rng.random() < 0.6:
            tag = ctx.rng.choice(tags)
    return ctx.rng.choice([f for f in forms if f.tag == tag])


def body_for(ctx: Ctx, item: Item, form: Form | None) -> list[str] | str | None:
    rng = ctx.rng
    if item.kind == "number":
        intended = None
        if form is not None:
            try:
                intended = Fraction(form.answer)
            except (ValueError, ZeroDivisionError):
                intended = None
        lines = numeric_body(item, intended)
        if lines and ANSWERISH.search("\n".join(lines)):
            return None
        return lines
    if item.kind == "math":
        head, _ = math_body(item)
        if not head or len(head) > 1800 or ANSWERISH.search(head):
            return None
        return head if ctx.protocol != "chat" else "Let's work through this.\n\n" + head
    return generic_body(item, rng)


def program_for(item: Item, form: Form, rng: random.Random, variant: str) -> tuple[str, str] | None:
    """A MAmmoTH2-style program that prints the intended answer: (code, what it prints)."""
    ans = form.answer
    if item.kind == "theoremqa" and item.meta["answer_type"] not in ("integer", "float"):
        return None
    if item.kind == "math" and math_shape(item) not in ("int", "frac", "decimal", "int-sep"):
        return None
    if item.kind == "bbh" and bbh_kind(item) != "number":
        return None
    try:
        v = Fraction(ans.replace("\\frac{", "").replace("}{", "/").replace("}", "")) if "\\frac" in ans else Fraction(ans)
    except (ValueError, ZeroDivisionError):
        return None
    if ans.startswith("-\\frac"):
        v = -abs(v)
    if variant == "error":
        code = rng.choice(["total = 120\ncount = 0\nanswer = total / count\nprint(answer)",
                           "values = [3, 5, 8]\nanswer = sum(values) + valuez[0]\nprint(answer)",
                           "import math\nanswer = math.sqrt(-4)\nprint(answer)"])
        return code, ""
    if variant == "silent":
        code = f"def solution():\n    answer = {plain(v) if v.denominator == 1 else repr(float(v))}\n    print(answer)\n"
        return code, ""
    k = rng.randint(2, 9)
    if v.denominator == 1:
        n = v.numerator
        code = rng.choice([f"a = {n - k}\nb = {k}\nresult = a + b\nprint(result)",
                           f"total = {n * k}\nparts = {k}\nanswer = total // parts\nprint(answer)",
                           f"x = {n + k}\ny = x - {k}\nprint(y)"])
        return code, str(n)
    if item.kind == "theoremqa":
        code = f"import math\nvalue = {float(v)!r}\nprint(value)"
        printed = str(float(v))
        return code, printed
    # a fraction: printed exactly
    code = f"from fractions import Fraction\nnum = {v.numerator}\nden = {v.denominator}\nprint(Fraction(num, den))"
    return code, f"{v.numerator}/{v.denominator}"


def run_on_tail(ctx: Ctx, item: Item, answer: str) -> str:
    """An invented next problem after the answer, in the protocol's own prompt format."""
    rng = ctx.rng
    other = rng.choice(ctx.others)
    q = other.question.strip()
    if len(q) > 600:
        q = q[:600].rsplit(" ", 1)[0] + " ..."
    if ctx.protocol == "mammoth2":
        return rng.choice([f"\n\nProblem:\n{q}\nSolution:\nWe proceed as before. The answer is {answer}",
                           f"\nProblem:\n{q}\nSolution:\nThe answer is {answer}"])
    return rng.choice([f"\n\nQuestion: {q}\nAnswer: Let's think step by step.\nWe proceed as before.\nThe answer is: {answer}",
                       f"\n\n### Instruction:\n{q}\n\n### Response: Let's think step by step.\nThe answer is: {answer}"])


def another_answer(ctx: Ctx, item: Item, form: Form) -> Form | None:
    """A different answer for the same item (for run-ons, second boxes, hedges)."""
    if form.correct:
        return choose_form(ctx, item, False)
    return choose_form(ctx, item, True)


def bool_prose(item: Item, value: bool, rng: random.Random) -> str | None:
    if item.kind == "theoremqa":
        if value:
            return rng.choice(["So the statement is true.", "Hence the claim is true.", "Therefore, the statement is correct."])
        return rng.choice(["So the statement is false.", "Hence the claim is false.", "Therefore, the statement is not true.",
                           "Therefore, the statement is incorrect."])
    k = bbh_kind(item)
    if item.task == "boolean_expressions":
        return f"So the expression evaluates to {value}."
    if item.task == "formal_fallacies":
        return "So the argument is deductively valid." if value else "So the argument is invalid."
    if item.task == "sports_understanding":
        return "So the sentence is plausible." if value else "So the sentence is implausible."
    if item.task == "web_of_lies":
        m = re.search(r"Does (\w+) tell the truth\?", item.question)
        if not m:
            return None
        return f"So {m.group(1)} tells the truth." if value else f"So {m.group(1)} lies."
    if item.task == "navigate":
        return "So we end up back at the starting point." if value else "So we do not end up back at the starting point."
    if k == "yesno":
        return "So the answer to the question is yes." if value else "So the answer to the question is no."
    return None


def bool_value(item: Item) -> bool | None:
    if item.kind == "theoremqa" and item.meta["answer_type"] == "bool":
        return bool(item.gold_value)
    if item.kind == "bbh":
        g = item.gold.lower()
        return {"true": True, "false": False, "valid": True, "invalid": False, "yes": True, "no": False}.get(g)
    return None


def bool_answer(item: Item, value: bool) -> str:
    if item.kind == "theoremqa":
        return "True" if value else "False"
    g = item.gold
    if g in ("True", "False"):
        return str(value)
    if g in ("valid", "invalid"):
        return "valid" if value else "invalid"
    yes, no = ("Yes", "No") if g[0].isupper() else ("yes", "no")
    return yes if value else no


def open_case(ctx: Ctx, frame: str, correct: bool):
    """One open-ended (non-choice) case: (item, style, output, human, human_answer) or None."""
    rng, P = ctx.rng, ctx.protocol
    kind = REGISTRY[ctx.bench].kind

    def any_item(it):
        return True

    if frame == "bool-prose":
        item = pick(ctx, frame, lambda it: bool_value(it) is not None and bool_prose(it, True, rng) is not None)
        if item is None:
            return None
        gv = bool_value(item)
        value = gv if correct else not gv
        text = bool_prose(item, value, rng)
        body = generic_body(item, rng)
        return item, "bool-prose", join(P, body, text, rng), correct, bool_answer(item, value)

    if frame in ("empty", "truncated", "refusal"):
        item = pick(ctx, frame, any_item)
        if frame == "empty":
            return item, "empty", rng.choice(["", " ", "\n", "\n\n"]), False, ""
        if frame == "refusal":
            return item, "refusal", rng.choice(REFUSALS), False, ""
        body = body_for(ctx, item, None)
        if not body:
            return None
        text = body if isinstance(body, str) else "\n".join(body)
        if len(text) < 60:
            text = text + " " + " ".join(generic_body(item, rng))
        cut = rng.randint(int(len(text) * 0.35), int(len(text) * 0.7))
        text = text[:cut].rsplit(" ", 1)[0].rstrip(".,;:")
        if re.search(r"answer|boxed", text, re.I):
            return None
        # Cut right after the last step ("-30/3 = -10 degrees")? Then a reader may take the gold as
        # reached: ambiguous, so no case.
        last = text.strip().split("\n")[-1]
        if re.search(rf"(?<![\d.]){re.escape(item.gold.strip())}(?![\d])", last):
            return None
        return item, "truncated", text, False, ""

    if frame == "multi-boxed":
        if kind == "math":
            item = pick(ctx, frame, lambda it: math_shape(it) in ("list", "list-and"))
        elif kind == "theoremqa":
            item = pick(ctx, frame, lambda it: it.meta["answer_type"].startswith("list"))
        else:
            return None
        if item is None:
            return None
        if kind == "math":
            parts = [p.strip() for p in (split_top(item.gold) if math_shape(item) == "list"
                                         else re.split(r"\\text\{\s*and\s*\}", item.gold))]
        else:
            parts = [str(int(x)) if item.meta["answer_type"] == "list of integer" else sig(float(x), 6) for x in item.gold_value]
        ans = ", ".join(parts)
        human = ans if kind == "math" else "[" + ans + "]"
        if not correct:
            b = bump_first_int(parts[-1]) if kind == "math" else (str(int(item.gold_value[-1]) + 1)
                                                                   if item.meta["answer_type"] == "list of integer"
                                                                   else sig(float(item.gold_value[-1]) * 1.25 + 1, 4))
            if not b or len(parts) < 2:
                return None
            parts = parts[:-1] + [b] if rng.random() < 0.6 else parts[:-1]
            human = ", ".join(parts) if kind == "math" else "[" + ", ".join(parts) + "]"
        joiner = rng.choice([", ", " and ", ", and "])
        boxes = joiner.join(f"$\\boxed{{{p}}}$" for p in parts)
        final = rng.choice([f"So the solutions are {boxes}.", f"The values are {boxes}.", boxes])
        body = body_for(ctx, item, None)
        if body is None:
            return None
        return item, "multi-boxed", join(P, body, final, rng), correct, human

    if frame == "program":
        variant = "ok" if correct else rng.choice(["ok", "ok", "error", "silent"])
        fenced = rng.random() < 0.3
        item = pick(ctx, frame, lambda it: it.kind in ("number", "math", "theoremqa") or bbh_kind(it) == "number")
        if item is None:
            return None
        form = choose_form(ctx, item, correct, lambda f: f.tag in ("plain", "near-miss", "off-tol", "within-tol", "sign-flip",
                                                                  "wrong-scale", "distractor", "reciprocal", "wrong"))
        if form is None:
            return None
        prog = program_for(item, form, rng, variant)
        if prog is None:
            return None
        code, printed = prog
        if fenced:
            out = rng.choice(["", "Let's write a program.\n"]) + f"```python\n{code}\n```"
        else:
            out = code
        human = correct if variant == "ok" else False
        style = "program" + ("-fenced" if fenced else "") + ("" if variant == "ok" else f"-{variant}")
        return item, style, out, human, printed

    # frames built around one intended answer
    def kind_ok(f: Form) -> bool:
        if frame in ("boxed", "two-boxes", "box-then-phrase", "minerva", "latex-env") and not f.math:
            return False
        if f.block and frame in ("phrase", "no-phrase", "hedge", "run-on"):
            return False
        return True

    item = pick(ctx, frame, lambda it: bool(forms_for(it, rng)) and (kind != "number" or numeric_body(it, None)))
    if item is None:
        return None
    if frame == "hedge":
        f1 = choose_form(ctx, item, True, lambda f: f.tag == "plain")
        f2 = choose_form(ctx, item, False, lambda f: not f.block)
        if f1 is None or f2 is None:
            return None
        a, b = (f1, f2) if rng.random() < 0.5 else (f2, f1)
        body = body_for(ctx, item, None)
        if body is None:
            return None
        fin = rng.choice([f"The answer is either {a.text} or {b.text}.", f"So the answer is {a.text} or maybe {b.text}.",
                          f"It could be {a.text} or {b.text}; I am not sure which."])
        return item, "hedge", join(P, body, fin, rng), False, ""

    listy = (item.kind == "math" and math_shape(item) in ("list", "list-and")) or \
        (item.kind == "theoremqa" and item.meta["answer_type"].startswith("list"))
    if frame == "two-boxes" and listy:
        return None  # several boxes would be read as a set
    if frame == "latex-env" and not (item.kind in ("math", "number") or (item.kind == "theoremqa" and item.meta["answer_type"]
                                                                         in ("integer", "float")) or bbh_kind(item) == "number"):
        return None
    form = choose_form(ctx, item, correct, kind_ok)
    if form is None:
        return None
    style = frame if form.tag == "plain" else f"{frame}+{form.tag}"
    body = body_for(ctx, item, form)
    if body is None:
        return None

    if frame == "phrase":
        final = phrase(P, form, rng, kind)
    elif frame == "boxed":
        final = boxed(form, rng)
    elif frame == "minerva":
        final = minerva(form)
    elif frame == "hash":
        if form.block:
            return None
        final = f"#### {form.text}"
    elif frame == "bold":
        final = bold(form, rng)
    elif frame == "heading":
        final = heading(form, rng)
    elif frame == "bare-line":
        final = rng.choice(["Hence:\n", "Result:\n", ""]) + (display(form) if form.block else inline(form, rng))
    elif frame == "latex-env":
        if form.block:
            final = f"Therefore the result is\n\\[\n{form.text}\n\\]"
        else:
            final = rng.choice([f"Collecting the steps:\n\\begin{{align*}}\n\\text{{result}} &= {form.text}\n\\end{{align*}}",
                                f"\\begin{{equation*}}\n\\boxed{{{form.text}}}\n\\end{{equation*}}",
                                f"Therefore,\n\\[\n{form.text}\n\\]"])
    elif frame == "no-phrase":
        if item.kind == "number":
            lines = numeric_body(item, Fraction(form.answer)) if form.tag in ("plain", "near-miss", "sign-flip", "wrong-scale",
                                                                             "distractor", "rounded", "wrong") else None
            if not lines or item.benchmark == "gsm8k_backward" or len(lines) != len(gsm8k_lines(item)):
                a = inline(form, rng)
                final = rng.choice([f"So the result is {a}.", f"In total, that makes {a}.", f"Therefore, it comes to {a}."])
            else:
                return item, f"no-phrase" + ("" if form.tag == "plain" else f"+{form.tag}"), \
                    (chat_format(lines, rng) if P == "chat" else "\n".join(lines)), correct, form.answer
        elif item.kind == "math":
            head, slot = math_body(item)
            if slot and form.math and not form.block and rng.random() < 0.7:
                text = slot.replace("{ANSWER}", form.text)
                if P == "chat":
                    text = "Let's work through this.\n\n" + text
                return item, style, text, correct, form.answer
            if form.block:
                return None
            final = rng.choice([f"Simplifying, we get\n\\[\n= {form.text}.\n\\]", f"So the value we want is ${form.text}$.",
                                f"Hence ${form.text}$ is the solution."]) if form.math else f"So the value we want is {form.text}."
        elif item.kind == "theoremqa":
            if item.meta["answer_type"] not in ("integer", "float"):
                return None
            a = inline(form, rng)
            final = rng.choice([f"Therefore, the value is approximately {a}.", f"So we obtain {a}.", f"Hence the result is {a}."])
        else:
            if bbh_kind(item) != "number":
                return None
            final = rng.choice([f"So the result is {form.text}.", f"Therefore we get {form.text}."])
    elif frame == "box-then-phrase":
        other = another_answer(ctx, item, form)
        if other is None or not other.math or other.block or form.block:
            return None
        final = f"This gives $\\boxed{{{other.text}}}$.\nWait, let me double-check that step. I made an arithmetic slip above.\n" \
                f"Redoing it carefully:\n" + phrase(P, form, rng, kind)
    elif frame == "two-boxes":
        other = another_answer(ctx, item, form)
        if other is None or not other.math or other.block or form.block:
            return None
        final = f"So we get $\\boxed{{{other.text}}}$.\n" + rng.choice(["Hmm, the sign of one term was wrong; correcting it gives",
                                                                      "Wait, I made a mistake above. The corrected result is",
                                                                      "Checking again, one step was off, so it is actually"]) + "\n" \
                f"$\\boxed{{{form.text}}}$"
    elif frame == "run-on":
        if P == "chat":
            return None
        other = another_answer(ctx, item, form)
        if other is None or other.block:
            return None
        final = phrase(P, form, rng, kind) + run_on_tail(ctx, item, other.text)
    else:
        return None
    return item, style, join(P, body, final, rng), correct, form.answer


def choice_case(ctx: Ctx, frame: str, correct: bool):
    rng, P = ctx.rng, ctx.protocol
    if frame in ("empty", "refusal", "truncated"):
        item = pick(ctx, frame, lambda it: True)
        if frame == "empty":
            return item, "empty", rng.choice(["", "\n", "  "]), False, ""
        if frame == "refusal":
            return item, "refusal", rng.choice(REFUSALS), False, ""
        text = " ".join(generic_body(item, rng))
        cut = rng.randint(int(len(text) * 0.4), int(len(text) * 0.8))
        return item, "truncated", text[:cut].rsplit(" ", 1)[0].rstrip(".,;:"), False, ""
    need_text = frame in ("mc-text", "mc-text-bare")
    item = pick(ctx, frame + str(correct), lambda it: len(it.choices) >= 2 and (
        not need_text or (option_text_ok(it, mc_keys(it)[0]) if correct else
                          any(option_text_ok(it, k) for k in it.choices if k != mc_keys(it)[0]))))
    if item is None:
        return None
    body = generic_body(item, rng)
    if frame == "run-on":
        r = mc_final(ctx, item, "mc-phrase", correct)
        if r is None:
            return None
        _, fin, human, ans = r
        gold, keys = mc_keys(item)
        other = rng.choice([k for k in keys if k != (ans.strip("()"))])
        tail = run_on_tail(ctx, item, f"({other})")
        return item, "run-on", join(P, body, fin + tail, rng), human, ans
    r = mc_final(ctx, item, frame, correct)
    if r is None:
        return None
    style, fin, human, ans = r
    return item, style, join(P, body, fin, rng), human, ans


def weighted_cycle(weights: list[tuple[str, float]], n: int, rng: random.Random) -> list[str]:
    """n frame names in proportion to their weights, in a shuffled but fixed order."""
    total = sum(w for _, w in weights)
    counts = [(k, w * n / total) for k, w in weights]
    out = []
    for k, c in counts:
        out += [k] * max(1, int(round(c)))
    rng.shuffle(out)
    return out


def build(bench: str, protocol: str, n: int) -> list[dict]:
    rng = random.Random(f"{SEED}:{bench}:{protocol}")
    pool = pool_for(bench, random.Random(f"{SEED}:pool:{bench}"))
    kind = REGISTRY[bench].kind
    ctx = Ctx(bench, protocol, rng, pool, pool, {})
    cases = []
    if bench == "bbh":
        # option tasks and open tasks in proportion (15 of 27 tasks list options)
        plan = [("mc", f) for f in weighted_cycle(schedule("choice", protocol), n * 5 // 11, rng)] + \
               [("open", f) for f in weighted_cycle(schedule("bbh", protocol), n - n * 5 // 11, rng)]
        rng.shuffle(plan)
    elif kind == "choice":
        plan = [("mc", f) for f in weighted_cycle(schedule("choice", protocol), n, rng)]
    else:
        plan = [("open", f) for f in weighted_cycle(schedule(kind, protocol), n, rng)]
    if kind == "theoremqa":
        # option-type TheoremQA items take the multiple-choice frames now and then
        plan += [("tqa-mc", f) for f in ("mc-phrase", "mc-hedge", "mc-lower", "mc-negation", "mc-phrase", "mc-tentative")]
    k = 0  # one alternation over all frames that can go either way: 5 correct in 9
    seen = set()
    for mode, frame in plan:
        made = None
        for attempt in range(40):
            correct = frame not in ALWAYS_WRONG and (k % 9) in (0, 2, 4, 6, 8)
            if mode == "mc":
                saved = ctx.items
                if bench == "bbh":
                    ctx.items = [it for it in pool if bbh_kind(it) == "option"]
                made = choice_case(ctx, frame, correct)
                ctx.items = saved
            elif mode == "tqa-mc":
                saved = ctx.items
                ctx.items = [it for it in pool if it.meta["answer_type"] == "option"]
                made = tqa_option_case(ctx, frame, correct)
                ctx.items = saved
            else:
                saved = ctx.items
                if bench == "bbh":
                    ctx.items = [it for it in pool if bbh_kind(it) != "option"]
                made = open_case(ctx, frame, correct)
                ctx.items = saved
            if made is None:
                if attempt % 7 == 6:
                    k += 1  # this frame and verdict find no item: try the other verdict
                continue
            item, style, output, human, answer = made
            # guard: no stop string unless this is a run-on, and then only after the answer
            stop = first_stop(output, protocol)
            if style == "run-on" or style.startswith("run-on+"):
                if stop == -1 or ("The answer is" not in output[:stop]):
                    made = None
                    continue
            elif stop != -1:
                made = None
                continue
            key = (item.id, output)
            if key in seen:
                made = None
                continue
            seen.add(key)
            if frame not in ALWAYS_WRONG:
                k += 1
            break
        if made is None:
            continue
        item, style, output, human, answer = made
        cases.append({"benchmark": bench, "protocol": protocol, "style": style, "item": item.to_dict(),
                      "output": output, "human": bool(human), "human_answer": answer})
    return cases


def tqa_option_case(ctx: Ctx, frame: str, correct: bool):
    rng, P = ctx.rng, ctx.protocol
    item = pick(ctx, "tqa-mc", lambda it: True)
    if item is None:
        return None
    letter = item.gold.strip("()")
    opts = sorted(set(re.findall(r"\(([a-e])\)", item.question))) or list("abcd")
    wrong = [o for o in opts if o != letter]
    key = letter if correct else rng.choice(wrong)
    body = generic_body(item, rng)
    ph = (lambda a: f"The answer is {a}") if P == "mammoth2" else (lambda a: f"The answer is: {a}") if P == "metamath" \
        else (lambda a: f"The correct option is {a}.")
    if frame == "mc-phrase":
        return item, "mc-phrase", join(P, body, ph(f"({key})"), rng), correct, f"({key})"
    if frame == "mc-lower":
        return item, "mc-upper", join(P, body, ph(f"({key.upper()})"), rng), correct, f"({key})"
    if frame == "mc-tentative":
        return item, "mc-tentative", join(P, body, f"({key}), I think.", rng), correct, f"({key})"
    if frame == "mc-hedge":
        other = rng.choice(wrong)
        return item, "mc-hedge", join(P, body, f"The answer is either ({letter}) or ({other}).", rng), False, ""
    if frame == "mc-negation":
        neg = rng.choice([o for o in opts if o != key])
        return item, "mc-negation", join(P, body, f"It is not ({neg}). " + ph(f"({key})"), rng), correct, f"({key})"
    return None


# ---------------------------------------------------------------------------------------------
# Handwritten cases, the oracle, writing


def handwritten() -> list[dict]:
    spec = importlib.util.spec_from_file_location("grading_handwritten", HERE / "handwritten.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    items = {}
    out = []
    for c in mod.CASES:
        b = c["benchmark"]
        stop = first_stop(c["output"], c["protocol"])
        assert (stop != -1) == (c["style"] in ("run-on", "stop-cut")), (c["style"], c["output"][:80])
        if b not in items:
            items[b] = {it.id: it for it in load(b)}
        item = items[b][c["item"]]
        out.append({"benchmark": b, "protocol": c["protocol"], "style": c["style"], "item": item.to_dict(),
                    "output": c["output"], "human": bool(c["human"]), "human_answer": c["human_answer"]})
    return out


def run_oracle(cases: list[dict], python: str, script: str) -> tuple[dict, float]:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "cases.jsonl", Path(tmp) / "verdicts.jsonl"
        with open(src, "w") as f:
            for c in cases:
                f.write(json.dumps({k: v for k, v in c.items() if k not in ("oracle", "oracle_answer")}) + "\n")
        t0 = time.time()
        subprocess.run([python, script, "--in", str(src), "--out", str(dst)], check=True)
        took = time.time() - t0
        verdicts = {}
        with open(dst) as f:
            for line in f:
                if line.strip():
                    v = json.loads(line)
                    verdicts[v["id"]] = v
    return verdicts, took


def write_cases(cases: list[dict], path: Path) -> None:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        for c in cases:
            gz.write((json.dumps(c, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"))
    path.write_bytes(buf.getvalue())


def read_cases(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def summary(cases: list[dict]) -> str:
    """The README's tables: cases per benchmark and protocol with both verdicts, and agreement."""
    rows = ["| benchmark | protocol | cases | human right / wrong | oracle right / wrong | agree |",
            "|---|---|---:|---:|---:|---:|"]
    for b in BENCHMARKS:
        for p in PROTOCOLS:
            cs = [c for c in cases if c["benchmark"] == b and c["protocol"] == p]
            h = sum(c["human"] for c in cs)
            o = sum(bool(c.get("oracle")) for c in cs)
            a = sum(c["human"] == c.get("oracle") for c in cs)
            rows.append(f"| {b} | {p} | {len(cs)} | {h} / {len(cs) - h} | {o} / {len(cs) - o} | {a / len(cs):.0%} |")
    h = sum(c["human"] for c in cases)
    o = sum(bool(c.get("oracle")) for c in cases)
    a = sum(c["human"] == c.get("oracle") for c in cases)
    rows.append(f"| all | | {len(cases)} | {h} / {len(cases) - h} | {o} / {len(cases) - o} | {a / len(cases):.0%} |")
    rows += ["", "| benchmark | both right | human only | oracle only | both wrong | agree |", "|---|---:|---:|---:|---:|---:|"]
    for b in BENCHMARKS + ("all",):
        cs = [c for c in cases if b == "all" or c["benchmark"] == b]
        n = [sum(1 for c in cs if c["human"] == hh and bool(c.get("oracle")) == oo)
             for hh, oo in ((True, True), (True, False), (False, True), (False, False))]
        rows.append(f"| {b} | {n[0]} | {n[1]} | {n[2]} | {n[3]} | {(n[0] + n[3]) / len(cs):.1%} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--oracle-python", default=None, help="the Python that runs the oracle (its own venv)")
    ap.add_argument("--oracle", default=None, help="the oracle script (oracle.py --in CASES --out VERDICTS)")
    ap.add_argument("--out", default=str(CASES))
    ap.add_argument("--summary", action="store_true", help="print the README's count tables for --out and stop")
    args = ap.parse_args(argv)
    if args.summary:
        print(summary(read_cases(Path(args.out))))
        return 0
    SOLUTIONS.update(load_solutions())
    cases = []
    for bench in BENCHMARKS:
        for protocol in PROTOCOLS:
            made = build(bench, protocol, PER_PROTOCOL[bench])
            for i, c in enumerate(made):
                c["id"] = f"{bench}/{protocol}/{i:04d}"
            cases += made
    for i, c in enumerate(handwritten()):
        c["id"] = f"{c['benchmark']}/{c['protocol']}/h{i:03d}"
        cases.append(c)
    for path in sorted(HERE.glob("holdout*.jsonl")):  # hand-judged by someone who had not seen the graders
        tag = "x" + path.stem.removeprefix("holdout")  # holdout1.jsonl -> ids .../x1-NNN
        for line in path.read_text(encoding="utf-8").split("\n"):
            if line.strip():
                c = json.loads(line)
                number = c["id"].rsplit("/", 1)[-1]
                c = {k: c[k] for k in ("benchmark", "protocol", "style", "item", "output", "human", "human_answer")}
                cases.append({"id": f"{c['benchmark']}/{c['protocol']}/{tag}-{number}", **c})
    ids = [c["id"] for c in cases]
    assert len(ids) == len(set(ids))
    if args.oracle:
        verdicts, took = run_oracle(cases, args.oracle_python or sys.executable, args.oracle)
        missing = [c["id"] for c in cases if c["id"] not in verdicts]
        if missing:
            raise SystemExit(f"the oracle gave no verdict for {len(missing)} cases, e.g. {missing[:3]}")
        for c in cases:
            v = verdicts[c["id"]]
            c["oracle"] = bool(v["oracle"])
            c["oracle_answer"] = "" if v.get("oracle_answer") is None else str(v["oracle_answer"])
        print(f"oracle: {len(cases)} cases in {took:.1f} s", file=sys.stderr)
    write_cases(cases, Path(args.out))
    print(f"wrote {len(cases)} cases to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
