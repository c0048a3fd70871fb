"""Text normalisation shared by the recall classifier and exact deduplication.

`normalize_for_classifier` is the ONE function that turns a document into a fastText line: the
classifier is trained and scored on its output, so changing it invalidates trained models (bump
NORMALIZE_VERSION). `content_hash` is a stable key for exact content deduplication.
"""
from __future__ import annotations

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
    text = _clean(text[: 2 * max_chars]).lower()
    text = _LONG_NUMBER.sub("000000", _DIGIT.sub("0", text))
    text = _LONG_SYMBOL.sub(r"\1\1\1", text)
    out = " ".join(_TOKEN.findall(text))
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
