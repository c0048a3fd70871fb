"""Text normalisation shared by the recall classifier and exact deduplication.

`normalize_for_classifier` is the ONE function that turns a document into a fastText line: the
classifier is trained and scored on its output, so changing it invalidates trained models (bump
NORMALIZE_VERSION). `normalization_spec` states its steps as data (saved in classifier.json, so
that another tool can score a model the same way). `content_hash` is a stable key for exact
content deduplication.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import re
import unicodedata

# Classifiers record the version they were trained with; loading warns on a mismatch.
NORMALIZE_VERSION = 1

# Control characters (fastText splits lines on some, e.g. NUL) and lone surrogates (cannot be
# written as UTF-8) become spaces; invisible format characters (soft hyphen, zero-width space,
# BOM, bidi marks) are deleted so they do not split words.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_FORMAT = re.compile(r"[\xad\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]")
# Typographic variants that copies of the same text disagree on, and that differ by source (web
# pages use curly quotes, datasets straight ones): unified so the classifier cannot learn the seed
# sources' typography. Regex subs, because str.translate with a dict is several times slower.
_TYPO = [(re.compile(r"[\u2018\u2019\u201a\u201b\u2032]"), "'"),
         (re.compile(r"[\u201c\u201d\u201e\u201f\u2033]"), '"'),
         (re.compile(r"[\u2010-\u2015\u2212]"), "-")]

# Digit runs keep their shape but not their value: "2019" -> "0000", "12" -> "00". Exact numbers
# rarely repeat often enough to pass fastText's min_count, while the shape carries signal (small
# quantities in word problems vs. years, prices and IDs on web pages). Runs are capped at 6 digits
# and repeated symbols at 3 ("-----------" is the same rule line as "---") to bound the vocabulary.
_DIGIT = re.compile(r"\d")
_LONG_NUMBER = re.compile(r"0{7,}")
_LONG_SYMBOL = re.compile(r"([-.=*#~$!?'+/:<>|_])\1{3,}")
# Tokens, most frequent first: letter runs; digit runs (digits are "0" by now); TeX commands
# (`\frac`, `\{`, `\\`) so math markup stays one token; runs of operator-like symbols ("...", "$$",
# "<=", "->", ":=") as one token; any other symbol (brackets, commas) alone. One findall with a
# single alternation runs at C speed; "_" is never part of a word, so "__label__" cannot survive.
_TOKEN = re.compile(r"[^\W\d_]+|0+|\\(?:[a-z]+|[^\sa-z\d])|[-.=*#~$!?'+/:<>|_]+|[^\w\s]")


def _clean(text: str) -> str:
    """NFKC, unified quotes and dashes, no control or format characters (case kept)."""
    text = unicodedata.normalize("NFKC", text)
    for pattern, repl in _TYPO:
        text = pattern.sub(repl, text)
    return _FORMAT.sub("", _CONTROL.sub(" ", text))


def normalize_for_classifier(text: str, max_chars: int = 20000) -> str:
    """Lowercased, NFKC, space-separated tokens on one line, at most `max_chars` characters.

    Idempotent; the output holds no newline (fastText's end of example) and no fastText label.
    """
    if not text:
        return ""
    # Bound the work on huge pages; tokenising adds spaces, so 2x input covers max_chars output.
    # Most long pages fill max_chars from their first max_chars characters already: tried first,
    # and kept when the token the prefix may have cut lies wholly past the cut (every step is
    # local to a few characters, so the output is then the same as from the 2x input).
    if len(text) > max_chars:
        out = _tokens(text[:max_chars])
        if out.rfind(" ") > max_chars + 1:
            return _cut(out, max_chars)
    return _cut(_tokens(text[: 2 * max_chars]), max_chars)


def _tokens(text: str) -> str:
    text = _clean(text).lower()
    text = _LONG_NUMBER.sub("000000", _DIGIT.sub("0", text))
    text = _LONG_SYMBOL.sub(r"\1\1\1", text)
    return " ".join(_TOKEN.findall(text))


def _cut(out: str, max_chars: int) -> str:
    if len(out) > max_chars:
        cut = out.rfind(" ", 0, max_chars + 1)  # never leave half a token at the end
        out = out[: cut if cut > 0 else max_chars]
    return out


# Markdown decoration: line-start headings, quotes and bullets, and emphasis runs (** __ ~~).
_MD_LINE = re.compile(r"(?m)^[ \t]*(?:#{1,6}|>+|[-*+\u2022])[ \t]+")
_MD_EMPH = re.compile(r"\*{2,}|_{2,}|~{2,}")
# Quotes and backticks are formatting, not content; math operators and brackets are kept so that
# "2+3=5" and "2-3=5" stay different.
_QUOTES = re.compile(r"['\"`]")
_HASH_TOKEN = re.compile(r"\w+|[^\w\s]")


def content_hash(text: str) -> str:
    """SHA-1 hex of a canonical form: case, whitespace, quote/dash style and markdown decoration
    do not matter; words, numbers and math symbols do."""
    text = _MD_EMPH.sub(" ", _MD_LINE.sub("", _clean(text or "")))
    text = _QUOTES.sub("", text.lower())
    # Tokenise so "2 + 3" == "2+3" while "a b" != "ab".
    canon = " ".join(_HASH_TOKEN.findall(text))
    return hashlib.sha1(canon.encode("utf-8")).hexdigest()


# ---- the normalisation as data ------------------------------------------------------------------

_BLOCK = 4096  # code points per scanned block: at most 16 KB of string


def _code_point_ranges(patterns: list[re.Pattern]) -> list[list[str]]:
    """For each one-character class, the code points it matches as "U+XXXX" / "U+XXXX-U+YYYY".

    Found by running the live patterns over every code point, so a listing cannot disagree with
    the regex it describes. The scan goes in small blocks, not one 4 MB string of all 1.1M code
    points: after a buffer that large was freed, a fastText training that followed in the same
    process was seen to stop with "Encountered NaN" (its outcome depends on the memory it gets)."""
    hits: list[list[int]] = [[] for _ in patterns]
    for base in range(0, 0x110000, _BLOCK):
        block = "".join(map(chr, range(base, base + _BLOCK)))
        for found, pattern in zip(hits, patterns):
            found += [base + m.start() for m in pattern.finditer(block)]
    return [_ranges(found) for found in hits]


def _ranges(code_points: list[int]) -> list[str]:
    out: list[str] = []
    start = prev = -2
    for cp in code_points + [-2]:
        if cp != prev + 1 or cp < 0:
            if start >= 0:
                out.append(f"U+{start:04X}" if start == prev else f"U+{start:04X}-U+{prev:04X}")
            start = cp
        prev = cp
    return out


def normalization_spec() -> dict:
    """What `normalize_for_classifier` does, step by step, as JSON-ready data (a fresh copy of
    `_spec()`, which scans the code points once per process).
    """
    return copy.deepcopy(_spec())


@functools.lru_cache(maxsize=1)
def _spec() -> dict:
    """What `normalize_for_classifier` does, step by step, as JSON-ready data.

    Written into classifier.json ("normalization") so that a model can be scored outside this
    project: another tool must feed fastText the text these steps produce, not raw text. Regexes
    are the live patterns of this module (Python `re` syntax on str, Unicode matching); lengths
    and cuts count Unicode code points. tests/test_classifier_score.py re-implements the steps
    from this data alone and checks the result against `normalize_for_classifier`.
    """
    typo_names = ("single quotes and primes", "double quotes and double primes", "hyphens, dashes and minus")
    *typo_points, control_points, format_points = _code_point_ranges([p for p, _ in _TYPO] + [_CONTROL, _FORMAT])
    steps: list[dict] = [
        {"op": "empty", "note": "an empty input gives an empty output (and scores 0.0)"},
        {"op": "truncate_input", "max_chars_multiple": 2,
         "note": "keep the first 2 * max_chars code points of the input (bounds the work; the output "
                 "is cut at max_chars by the last step)"},
        {"op": "unicode_normalize", "form": "NFKC"},
    ]
    for (pattern, repl), name, points in zip(_TYPO, typo_names, typo_points):
        steps.append({"op": "regex_sub", "name": f"typography: {name}", "pattern": pattern.pattern,
                      "replacement": repl, "code_points": points})
    steps += [
        {"op": "regex_sub", "name": "control characters and lone surrogates become a space",
         "pattern": _CONTROL.pattern, "replacement": " ", "code_points": control_points},
        {"op": "regex_sub", "name": "invisible format characters are deleted",
         "pattern": _FORMAT.pattern, "replacement": "", "code_points": format_points},
        {"op": "lowercase", "note": "Unicode full lowercase mapping (Python str.lower, not casefold)"},
        {"op": "regex_sub", "name": "every decimal digit (Unicode category Nd) becomes 0",
         "pattern": _DIGIT.pattern, "replacement": "0"},
        {"op": "regex_sub", "name": "a run of 7 or more zeros becomes 6 zeros",
         "pattern": _LONG_NUMBER.pattern, "replacement": "000000"},
        {"op": "regex_sub", "name": "a run of 4 or more of the same symbol becomes 3 of it",
         "pattern": _LONG_SYMBOL.pattern, "replacement": r"\1\1\1",
         "replacement_syntax": "Python re.sub: \\1 is the repeated symbol"},
        {"op": "regex_findall", "name": "tokens",
         "pattern": _TOKEN.pattern,
         "note": "every non-overlapping match, left to right; the alternatives are letter runs, "
                 "zero runs, TeX commands (backslash + lowercase letters, or backslash + one other "
                 "non-space character), runs of operator-like symbols, any other single symbol; "
                 "whitespace and anything unmatched is dropped"},
        {"op": "join", "separator": " "},
        {"op": "truncate_output",
         "note": "if longer than max_chars code points: cut at the last space at index <= max_chars "
                 "(so no token is split); if there is none (or it is at index 0), cut at max_chars"},
    ]
    return {
        "function": "webinstruct.pipeline.text.normalize.normalize_for_classifier",
        "version": NORMALIZE_VERSION,
        "regex_dialect": "Python 3 `re` on str (Unicode): \\w is a character for which str.isalnum() "
                         "is true, or '_'; \\d is Unicode category Nd; \\s is Unicode whitespace",
        "max_chars": {"default": normalize_for_classifier.__defaults__[0], "from": "config.max_chars of classifier.json"},
        "steps": steps,
        "output": "one line: no newline, no '__label__', no leading, trailing or double spaces",
        "fasttext": {
            "labels": ["__label__pos", "__label__neg"],
            "score": "P(__label__pos) from model.predict(normalised_text, k=2), 0.0 when __label__pos "
                     "is not among the two, clamped to [0, 1]; an empty normalised text scores 0.0 "
                     "without calling fastText",
            "keep": "score >= threshold (\"threshold\" in classifier.json)",
        },
    }
