"""Which option a multiple-choice answer picks, in any phrasing a person would accept.

A pick is an option letter ("C", "(c)", "[C]", "option C", "C.", "C: 19/400", "(D) is correct,
since ...", "B, I think."), an option's number when the options are letters ("option 2" is B), or
the option's own text ("72° F"). A hedge between options ("either (B) or (D)", "B/D", "A and C")
picks nothing, and neither does a negated option ("not A").
"""
from __future__ import annotations

import re
import string

from webinstruct.core.answers import normalize
from webinstruct.evaluation.grading.numbers import TEXT_CMD, read_number
from webinstruct.evaluation.items import Item

EDGE = "*`\"'“”‘’ \t"
_DOLLAR = re.compile(r"(?<!\\)\$")
HEDGE = "hedge"


def choice_letters(item: Item) -> str:
    """The option keys an item accepts, or "" when it is not multiple choice."""
    if item.kind == "choice":
        return "".join(sorted(item.choices)) or "ABCD"
    if item.kind == "bbh" and re.fullmatch(r"\([A-Z]\)", item.gold.strip()):
        return "".join(sorted(item.choices)) or string.ascii_uppercase
    if item.kind == "theoremqa" and item.meta.get("answer_type") == "option":
        return "ABCDE"
    return ""


def _light(s: str) -> str:
    """Text with its spacing collapsed and the decoration around it dropped, case kept."""
    s = s.replace("−", "-").replace("–", "-")
    return " ".join(TEXT_CMD.sub(r"\1", _DOLLAR.sub("", s)).split()).strip(EDGE + ".,;:!")


def _text(s: str) -> str:
    """Option text for comparison: normalised LaTeX, lower case, no spaces or end punctuation."""
    return normalize(_light(s)).strip(".,;:!")


def option_key(raw: str, letters: str) -> str:
    """An option key as written ("c", "3") -> the item's key; digits name the n-th option when
    the options are letters."""
    k = raw.upper()
    if k in letters:
        return k
    if k.isdigit() and letters.isalpha() and 1 <= int(k) <= len(letters):
        return letters[int(k) - 1]
    return ""


# One option reference: "(C)", "[c]", "C)", "option C", "choice 3", a bare capital "C".
_REF = r"(?:(?i:option|choice|answer)\s*[(\[]?\s*([A-Za-z1-9])\s*[)\]]?(?![\w])|[(\[]\s*([A-Za-z1-9])\s*[)\]]|\b([A-Z])\)|\b([A-Z])(?![\w'’-]))"
REF = re.compile(_REF)
_HEDGE = re.compile(rf"(?:{_REF})\s*(?:,|/|&|\bor\b|\band\b|\bnor\b)\s*(?:(?i:either|maybe|possibly|perhaps)\s+)?(?:{_REF})")
_HEDGE_WORDS = re.compile(r"\b(?:either|both)\b", re.I)
_NEGATED = re.compile(rf"(?i:\bnot|\bisn[’']t|\bexcept)\s+(?:{_REF})")


def _ref_key(m: re.Match, letters: str) -> str:
    raw = next(g for g in m.groups() if g)
    return option_key(raw, letters)


def hedged(answer: str, letters: str) -> bool:
    """Whether an answer names two or more options as alternatives ("(B) or (D)", "B/D")."""
    for m in _HEDGE.finditer(answer):
        keys = {k for k in (option_key(g, letters) for g in m.groups() if g) if k}
        if len(keys) >= 2:
            return True
    if _HEDGE_WORDS.search(answer):
        keys = {_ref_key(m, letters) for m in REF.finditer(answer)} - {""}
        return len(keys) >= 2
    return False


_BARE = re.compile(r"(?i:option|choice|answer)?\s*[(\[]?\s*([A-Za-z1-9])\s*[)\]]?\s*[.:]?")
_LEADING = re.compile(  # "(C) text", "C) text", "C. text", "C: text", "C because", "B, I think", "option A because"
    r"(?i:option|choice)\s*[(\[]?\s*([A-Za-z1-9])\b|[(\[]\s*([A-Za-z1-9])\s*[)\]]|([A-Z1-9])(?=[.:)\],]\s)|([B-HJ-Z])(?=\s|,)")
_AT_END = re.compile(r"(?:\(([A-Z1-9])\)|(?i:option|choice)\s+([A-Z1-9]))$")  # not "f (d)"


_ORDINALS = {w: i for i, w in enumerate(("first", "second", "third", "fourth", "fifth", "sixth", "seventh",
                                         "eighth", "ninth", "tenth"), 1)}
_ORDINAL = re.compile(r"^(?:the\s+)?(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth)\s+(?:option|choice|one)\b",
                      re.I)


def pick(answer: str, letters: str, choices: dict[str, str]) -> str:
    """The option an answer picks; "" when none, HEDGE when it names several as alternatives.
    In order: the option's exact text, a bare key, the text up to case and LaTeX spacing, an
    ordinal ("the second option"), a leading key, the same number as one option, a trailing "(C)".
    A negated key ("not (B)") picks nothing."""
    a = _light(answer)
    if not a or re.match(r"(?i)(?:not|isn[’']t|never)\b", a):
        return ""
    hits = [k for k, v in choices.items() if _light(v) == a]
    if len(hits) == 1:
        return hits[0]
    m = _BARE.fullmatch(a)
    if m and option_key(m.group(1), letters):
        return option_key(m.group(1), letters)
    target = _text(a)
    hits = [k for k, v in choices.items() if target and _text(v) == target]
    if len(hits) == 1:
        return hits[0]
    if hedged(a, letters):
        return HEDGE
    m = _ORDINAL.match(a)
    if m and _ORDINALS[m.group(1).lower()] <= len(letters):
        return letters[_ORDINALS[m.group(1).lower()] - 1]
    m = _LEADING.match(a)
    if m and option_key(next(g for g in m.groups() if g), letters):
        return option_key(next(g for g in m.groups() if g), letters)
    listed = _text(re.sub(r"\s+and\s+", ", ", a))  # "2 and 3" for the option "2,3"
    hits = [k for k, v in choices.items() if listed and _text(v) == listed]
    if len(hits) == 1:
        return hits[0]
    lead = re.match(r"[-+]?\d[\d,]*(?:\.\d+)?(?=\s+[A-Za-z$\\])", a)  # "22 in Z_26"
    values = read_number(a) or (read_number(lead.group(0)) if lead else [])
    if values:
        hits = [k for k, v in choices.items() if any(abs(x - y) <= 1e-6 * max(1.0, abs(y))
                                                     for y in read_number(v) for x in values)]
        if len(hits) == 1:
            return hits[0]
    m = _AT_END.search(a)
    if m and option_key(next(g for g in m.groups() if g), letters):
        return option_key(next(g for g in m.groups() if g), letters)
    return _similar(a, choices)


def _word_set(s: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", _light(s).lower()))


def _similar(answer: str, choices: dict[str, str]) -> str:
    """The option whose words the answer repeats, in any order or with a word more or less
    ("the divergence of B and the circulation of E" for "the circulation of E and the divergence
    of B"): at least 3/4 of the words shared and a clear lead over the next option, else ""."""
    words = _word_set(answer)
    if len(words) < 3:
        return ""
    scored = sorted(((len(words & o) / len(words | o), k) for k, v in choices.items() if (o := _word_set(v))),
                    reverse=True)
    if scored and scored[0][0] >= 0.75 and (len(scored) == 1 or scored[0][0] - scored[1][0] >= 0.25):
        return scored[0][1]
    return ""


_PAIR = re.compile(r"(true|false)\s*,\s*(true|false)", re.I)


def statement_pair(text: str, choices: dict[str, str]) -> str:
    """For MMLU's two-statement questions (options "True, True", "False, False", ...): the option a
    text's verdicts on the statements give ("Both statements are false.", "Statement 1: True ...
    Statement 2: False"), else ""."""
    pairs = {k: tuple(x.lower() for x in m.groups()) for k, v in choices.items()
             if (m := _PAIR.fullmatch(v.strip().rstrip(".")))}
    if not pairs or len(pairs) != len(choices):
        return ""
    t = text.lower().replace("*", "")
    both = list(re.finditer(r"\bboth\s+(?:statements\s+)?(?:are\s+)?(true|false)\b", t))
    said = None
    if both:
        said = (both[-1].group(1),) * 2
    else:
        first = re.findall(r"statement\s*(?:1|i|one)\b\W*(?:is\s+)?(true|false)\b", t)
        second = re.findall(r"statement\s*(?:2|ii|two)\b\W*(?:is\s+)?(true|false)\b", t)
        if first and second:
            said = (first[-1], second[-1])
    hits = [k for k, v in pairs.items() if v == said]
    return hits[0] if len(hits) == 1 else ""


def option_said(rest: str, choices: dict[str, str]) -> str:
    """The longest option text that the words after an answer phrase begin with, so that an
    option containing ". " or a line break is read whole ("nsp10 ... dsRNA." is not cut)."""
    said = _DOLLAR.sub("", " ".join(rest.split()).strip(EDGE))
    for text in sorted(choices.values(), key=len, reverse=True):
        t = _DOLLAR.sub("", " ".join(text.split()))  # case kept: options "Bb Bb" and "BB BB" differ
        if len(t) >= 2 and said.startswith(t):
            after = said[len(t):]
            if not after or not (after[0].isalnum() or re.match(r"[.,]\d", after)):
                return text
    return ""


# Free-text picks, without an answer phrase: "option C is correct", "I'd go with (B)",
# "(D) is correct, since ...", "D is the best answer".
_AFFIRM_BEFORE = re.compile(
    rf"(?i:\b(?:answer|option|choice)\s*(?:is\s*)?[:：]|\b(?:go\s+with|going\s+with|choose|chose|pick|picked|select|"
    rf"selected|say|it[’']?s|it\s+is|which\s+is|that\s+is|i\.e\.|would\s+be|must\s+be|should\s+be|probably|likely|perhaps|maybe)\b)\s*\**\s*"
    rf"(?:{_REF}|([a-j])\b(?![’'-]))")
_AFFIRM_AFTER = re.compile(
    rf"(?:{_REF})\s*\**\s*(?i:is\s+(?:the\s+)?(?:correct|right|best|true|most\s+(?:likely|plausible|accurate|appropriate))"
    rf"|is\s+the\s+(?:\w+\s+)?answer)")


def pick_in_text(text: str, letters: str, choices: dict[str, str]) -> str:
    """The option a whole output picks without an answer phrase: the last affirmed reference,
    else a last line that is (or starts with) a key, or is an option's text; "" when none."""
    found: list[tuple[int, str]] = []
    for pattern in (_AFFIRM_BEFORE, _AFFIRM_AFTER):
        for m in pattern.finditer(text):
            span = text[max(0, m.start() - 12):m.end()]
            if _NEGATED.search(span):
                continue
            key = _ref_key(m, letters)
            if key:
                found.append((m.start(), key))
    for m in re.finditer(r"(?im)^\W*(?:probably|likely|perhaps|maybe)?\s*([A-J])\W*$", text):
        key = option_key(m.group(1), letters)
        if key:
            found.append((m.start(), key))
    if found:
        last = max(found)[0]
        sentence = text[last:].split("\n", 1)[0]
        return HEDGE if hedged(sentence, letters) else max(found)[1]
    lines = [x for x in text.strip().split("\n") if x.strip(EDGE + "#")]
    if not lines:
        return ""
    pair = statement_pair("\n".join(lines[-8:]), choices)
    if pair:
        return pair
    # "Compound E is **3,4-dimethyl...** (option B).": one explicit key in the closing sentence
    closing = re.split(r"(?<=[.!?])\s+", lines[-1].strip())[-1]
    keys = {option_key(m.group(1), letters) for m in re.finditer(r"(?i:\b(?:option|choice))\s*[(\[]?\s*([A-Za-z1-9])\s*[)\]]?(?!\w)", closing)}
    keys.discard("")
    if len(keys) == 1 and not _NEGATED.search(closing):
        return keys.pop()
    line = lines[-1].strip(EDGE + "#").strip()
    if len(line) <= 200:
        m = re.fullmatch(r"\W*\(?([A-Za-z1-9])\)?[.:)]?\W*", line)
        if m and option_key(m.group(1), letters) and (m.group(1).isupper() or "(" in line):
            return option_key(m.group(1), letters)
        m = re.match(r"[(\[]\s*([A-Za-z1-9])\s*[)\]]\s*(.*)", _light(line))
        if m and option_key(m.group(1), letters):  # "(C) The college could gather ...": a key and its option
            key = option_key(m.group(1), letters)
            rest = _text(m.group(2))
            if not rest or rest == _text(choices.get(key, "")) or _text(choices.get(key, "")).startswith(rest):
                return key
        said = pick(line, letters, choices) if len(line) <= 80 or any(_light(v) == _light(line) for v in choices.values()) else ""
        if said and said != HEDGE and (_LEADING.match(_light(line)) or _text(line) in {_text(v) for v in choices.values()}):
            return said
    # "The zeros are 2 and 3.", "The product is 22 in Z_26.": what the closing sentence says it is
    tail = re.search(r"\b(?:is|are|equals|=)\s+(.+?)\s*$", closing.replace("*", ""))
    said = pick(tail.group(1), letters, choices) if tail else ""
    if said and said != HEDGE:
        return said
    # "The angle is 45°.": the last sentence ends with exactly one option's text
    sentence = re.split(r"(?<=[.!?])\s+", lines[-1].strip())[-1]
    def spaced(x: str) -> str:
        return " " + " ".join(_light(x).replace("°", "").lower().split()).strip(".,;:!")

    end = spaced(sentence)
    hits = [k for k, v in choices.items() if len(spaced(v)) >= 3 and end.endswith(spaced(v))]
    return hits[0] if len(hits) == 1 else ""
