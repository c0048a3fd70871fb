"""Backward questions: mask one number of a question as the unknown, as MetaMath did.

MetaMath (`code_for_generating_data/code/main_create_backward_questions.py`) splits a question
on single spaces and masks each token that holds a digit, no ASCII letter and none of
``\\n : ( ) * " + – -``, one variant per token, with every other token left as it was. GSM8K
also masked some number words; MATH used ``X`` instead of ``x``. We keep that token rule and
tighten it where upstream produced broken questions:

- the token's digits must form one number (``5``, ``1,000``, ``2.5``, ``.5``, ``3/4``), so
  ``$5,8$`` (a list), ``2^5`` and ``3,\\!000`` stay unmasked (upstream masked them whole);
- what surrounds the number must be a currency or math-mode sign before it (``$``, ``\\$``,
  ``€ £ ¥ ₹``, opening quotes) and percent, ``$``, degree, closing quotes or punctuation after
  it; both are kept around the unknown, so ``$5,`` becomes ``$x,`` (upstream wrote ``x,``,
  dropping the dollar sign whenever punctuation followed) and ``$39$`` in MATH becomes ``$X$``
  (as in MetaMath's own MATH exemplars);
- number words (GSM8K only): two to twelve and sixteen as upstream, but not "one" ("one of them",
  "no one"), "fifth" (upstream's value 5 is wrong for "a fifth") or "half" (upstream's "x%"
  breaks "half an hour").

Numbers in the final question sentence are masked too, as upstream did (MetaMathQA has "How many
hours will it take her to read x pages?"). Negative numbers are not masked (the "-" rule).

The masked value is the number normalised for answer checking: commas and the unit dropped,
trailing decimal zeros removed ("$1,000.50" -> "1000.5", "20%" -> "20", "3/4" stays "3/4").

FOBAR and SV wording follow the released MetaMathQA rows: "\\nIf we know the answer to the above
question is {a}, what is the value of unknown variable x?" (GSM8K-Backward, the evaluation set,
says "answer of the above question"; MetaMath's generation script also put "### " before it and
wrote "$x$", which its released data does not have).
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import NamedTuple

# Upstream's GSM8K word list, less "one", "fifth" and "half" (see the module docstring).
WORD_NUMBERS = {"two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
                "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "sixteen": "16"}

_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+|\d+/\d+")
_PREFIX = re.compile(r"(?:\\?\$|[€£¥₹'‘“])*")
_SUFFIX = re.compile(r"(?:\\?%|\\?\$|[.,;!?'’”°…])*")
_TOKEN = re.compile(r"[^ ]+")
# A sentence ends at . ! or ? (and a closing quote) followed by white space: "1.5" does not end one.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"”’)]?\s+(?=\S)")


class Masked(NamedTuple):
    """One backward question: the question with one number replaced by the unknown."""

    question: str  # the masked question
    value: str  # the number that was masked, normalised ("1000", "2.5", "3/4")
    token: str  # the token as it was ("$1,000,")


def unknown_var(domain: str) -> str:
    """MetaMath's unknown: "x" for GSM8K-style questions, "X" for MATH."""
    return "X" if domain == "math" else "x"


def normalise_number(number: str) -> str:
    """A number as an answer: no commas, no trailing decimal zeros, fractions kept ("3/4")."""
    n = number.replace(",", "")
    if "/" in n:
        return n
    try:
        return format(Decimal(n).normalize(), "f")
    except InvalidOperation:
        return n


def _split_token(token: str) -> tuple[str, str, str] | None:
    """(prefix, number, suffix) when the token is one eligible number, else None."""
    if re.search(r"[a-zA-Z]", token):
        return None
    digits = [i for i, ch in enumerate(token) if ch.isdigit()]
    if not digits:
        return None
    start, end = digits[0], digits[-1] + 1
    if start > 0 and token[start - 1] == "." and (start < 2 or not token[start - 2].isdigit()):
        start -= 1  # ".5"
    prefix, core, suffix = token[:start], token[start:end], token[end:]
    if _NUMBER.fullmatch(core) and _PREFIX.fullmatch(prefix) and _SUFFIX.fullmatch(suffix):
        return prefix, core, suffix
    return None


def mask_numbers(question: str, domain: str = "gsm8k", words: bool | None = None) -> list[Masked]:
    """One `Masked` per eligible number occurrence, in the order they appear.

    `words` masks number words ("three"); by default only for GSM8K-style questions, as upstream."""
    var = unknown_var(domain)
    words = domain != "math" if words is None else words
    out = []
    for m in _TOKEN.finditer(question):
        token = m.group()
        parts = _split_token(token)
        if parts is not None:
            prefix, core, suffix = parts
            masked, value = prefix + var + suffix, normalise_number(core if core[0] != "." else "0" + core)
        elif words and token in WORD_NUMBERS:
            masked, value = var, WORD_NUMBERS[token]
        else:
            continue
        out.append(Masked(question[: m.start()] + masked + question[m.end():], value, token))
    return out


def fobar_question(masked_question: str, answer: str, var: str = "x") -> str:
    """FOBAR: the masked question, then the original answer given and x asked for."""
    return (f"{masked_question.rstrip()}\nIf we know the answer to the above question is {answer}, "
            f"what is the value of unknown variable {var}?")


def split_question(question: str) -> tuple[str, str]:
    """(body, last sentence): the part SV asks the model to rewrite is the last sentence only.

    MetaMath split after the last "." with commas counted as periods (so "If they ate 35, how
    many..." lost its condition and "$1.50?" split inside the number); we split at the last
    sentence end, and the rewrite prompt's exemplars show conditions kept in the statement."""
    text = question.strip()
    ends = list(_SENTENCE_END.finditer(text))
    if not ends:
        return "", text
    cut = ends[-1]
    return text[: cut.start()].rstrip() + text[cut.start(): cut.end()].strip(), text[cut.end():].strip()


def sv_statement(body: str, rewritten: str) -> str:
    """The masked question with its last sentence replaced by the rewritten statement."""
    return f"{body} {rewritten.strip()}".strip()


def sv_question(statement: str, var: str = "x") -> str:
    """Self-Verification: the declarative form, then x asked for."""
    return f"{statement.rstrip()} What is the value of unknown variable {var}?"
