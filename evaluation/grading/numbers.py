"""Reading numbers the way a person reads them in an answer.

"$1,200", "1 200", "22,\\!333,\\!444", "twelve", "two hundred and five", "negative 5", "-\\dfrac{3}{7}",
"\\frac15", "4.5 \\times 10^{-3}", "1.2e5", "50%" (0.5, or 50 without its sign). Commas are thousands
separators only inside one number written that way; "(3,250)" stays a pair.
"""
from __future__ import annotations

import re

from webinstruct.core.answers import to_number

NUMBER = re.compile(r"[-+]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)")
TEXT_CMD = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
SCI = re.compile(r"([-+]?(?:\d+\.?\d*|\.\d+))\s*(?:[eE]|(?:\\times|\\cdot|\*|x|×)\s*10\s*\^)"
                 r"\s*\{?\(?\s*([-+]?\d+)\s*\)?\}?")
_UNIT = r"[a-zA-Z]+(?:\^\{?-?\d+\}?)?"  # m, s^2, cm^{3}
UNITS = re.compile(rf"(?<=[\d%])\s+{_UNIT}(?:\s*(?:/|\s)\s*{_UNIT})*$")  # " dollars per day", "m/s^2", 

_ONES = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10 ** 6, "billion": 10 ** 9}
_WORD = "|".join(sorted([*_ONES, *_TENS, *_SCALES, "dozen", "half"], key=len, reverse=True))
NUMBER_WORDS = re.compile(rf"\b(?:(?:a|an|one)\s+)?(?:{_WORD})(?:(?:\s+and\s+|\s*-\s*|\s+)(?:{_WORD}))*\b", re.I)


def words_value(text: str) -> float | None:
    """The value of a number written in words ("twelve", "twenty-five", "a dozen",
    "two hundred and five", "one and a half"), else None."""
    tokens = re.findall(r"[a-z]+", text.lower())
    total, current, seen = 0.0, 0.0, False
    for t in tokens:
        if t in ("and", "a", "an"):
            continue
        if t in _ONES:
            current += _ONES[t]
        elif t in _TENS:
            current += _TENS[t]
        elif t == "dozen":
            current = (current or 1) * 12
        elif t == "half":
            current += 0.5
        elif t in _SCALES:
            current = (current or 1) * _SCALES[t]
            if _SCALES[t] >= 1000:
                total, current = total + current, 0.0
        else:
            return None
        seen = True
    return total + current if seen else None


def _latex_fraction(a: str) -> str:
    """"\\frac15" and "\\dfrac{3}7" written with braces, so the fraction reads as one value."""
    a = re.sub(r"\\[dt]?frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", a)
    a = re.sub(r"\\[dt]?frac\s*\{([^{}]+)\}\s*(\d)", r"\\frac{\1}{\2}", a)
    return re.sub(r"\\[dt]?frac\s*(\d)\s*\{([^{}]+)\}", r"\\frac{\1}{\2}", a)


def plain(answer: str) -> str:
    """A numeric answer without money signs, \\text{} wrappers, thin spaces, degree marks,
    thousands separators and unicode minus; "percent" written as %; "negative 5" as -5."""
    a = TEXT_CMD.sub(r" \1", answer).replace("\\$", "").replace("$", "").replace("π", "\\pi ")
    a = re.sub(r"(?<=\d)(?:,\s*\\!|\{,\})\s*(?=\d{3})", ",", a)  # "32, \\!348", "5{,}000": thousands
    a = re.sub(r"(?<!\\)\\[,;:! ]|\\left|\\right|\\displaystyle", "", a).replace("−", "-").replace("–", "-")
    a = re.sub(r"\s*(?:\^\{?\\circ\}?|°)\s*(?:[CFK]\b)?", "", a)  # 72°F, 45^\\circ
    a = re.sub(r"(?:USD|US\$|€|£|¥|Rs\.?)\s*", "", a)
    if not re.match(r"\s*(?:\\\{|[\[(])", a):  # a tuple or interval keeps its commas
        a = re.sub(r"(?<![\d.])(\d{1,3})((?:,\d{3})+)(?![\d,])", lambda m: m.group(1) + m.group(2).replace(",", ""), a)
    a = re.sub(r"\s*(?:\\%|percent\b|per\s*cent\b)", "%", a)
    a = re.sub(r"^\s*(?:negative|minus)\s+", "-", a, flags=re.I)
    return _latex_fraction(a.strip().rstrip(".").strip())


def read_number(answer: str) -> list[float]:
    """The values a numeric answer may mean ("50%" is 0.5 or 50), read from the whole answer
    (units allowed after it), or [] when it is not plainly a number."""
    a = plain(answer)
    for candidate in (a, UNITS.sub("", a).strip()):
        value = to_number(candidate)
        if value is None:
            m = SCI.fullmatch(candidate)
            if m:
                try:
                    value = float(m.group(1)) * 10.0 ** int(m.group(2))
                except OverflowError:
                    return []
        if value is None and re.fullmatch(r"[-+]?\s*[A-Za-z -]+%?", candidate):
            sign = -1 if candidate.lstrip().startswith("-") else 1
            w = words_value(candidate.lstrip("-+ ").rstrip("%"))
            value = None if w is None else sign * w
        if value is not None:
            return [value, value * 100] if candidate.endswith("%") else [value]
    return []


# A number token in running text: a LaTeX fraction, a/b, a decimal or integer (thousands allowed),
# optionally signed; used for "the last number" of a solution.
NUMBER_TOKEN = re.compile(
    r"[-+]?\s*\\[dt]?frac\s*(?:\{[^{}]+\}|\d)\s*(?:\{[^{}]+\}|\d)"
    r"|(?<![\w.])[-+]?\d+(?:\.\d+)?[eE][-+]?\d+(?!\w|\.\d)"
    r"|(?<![\w.])[-+]?\d+\s*/\s*\d+(?!\w|\.\d)"
    rf"|{NUMBER.pattern}")


def last_number(text: str) -> str:
    """The last number a text writes ("\\frac15" whole, not its 5), or ""."""
    tokens = NUMBER_TOKEN.findall(text)
    return tokens[-1].strip() if tokens else ""
