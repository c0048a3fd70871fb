"""The robust grader: read the answer however the model phrased it, then compare it the way the
question's kind needs.

Reading (`extract_answer`): the last \\boxed{}, else the last answer phrase that says something
("The answer is: X", "The correct answer is X", "Final answer: X", "Answer: X", "#### X"); for
multiple choice, an option's whole text when the phrase is followed by it. Without either, a multiple
choice question takes an option letter the text names ("option C is correct"), a numeric question
its last number (note "last number"), anything else has no answer.

Comparing (by `Item.kind`):
- number: numerically, relative tolerance 1e-4, units and "$" dropped; "50%" matches 50 and 0.5.
- math: equal after `normalize`, or equal plain numbers, else symbolically (math-verify, sympy;
  see `symbolic`). Option-letter golds ("\\text{(C)}"), word golds ("\\text{odd}") and base-b
  numerals ("40_9") compare as letters, words and digits, never symbolically ("Nevely" is not
  "Evelyn" reordered).
- theoremqa: by answer type: numbers within 4% (the paper's tolerance), lists sorted and
  element-wise, booleans from whole words (true/yes, false/no), options by letter.
- choice: by letter, or by the option's text.
- bbh: option letter or text, True/False, valid/invalid, yes/no, numbers, and whitespace-normalised
  strings for word sorting and Dyck languages.

Most answers are decided by plain string and number checks (`_judge(..., symbolic=False)`); only
the rest need sympy, which `grade_robust_many` runs in worker processes with a hard time limit.
"""
from __future__ import annotations

import re
import string

from webinstruct.core.answers import _braced, normalize, to_number
from webinstruct.evaluation.grading import Verdict
from webinstruct.evaluation.items import Item

THEOREMQA_TOLERANCE = 0.04  # relative, as MAmmoTH2's TheoremQA scorer
NUMBER_TOLERANCE = 1e-4

# ----------------------------------------------------------------------------------------------
# Reading the answer

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_PHRASE = re.compile(
    r"\banswer\s*\**\s*(?:is|would\s+be|should\s+be|will\s+be)\b\s*\**\s*[:：]?"  # the (correct) answer is
    r"|\banswers?\s*\**\s*[:：]"  # Answer: / Final answer: / **Answer:**
    r"|^[ \t]*####(?!#)",  # GSM8K
    re.I | re.M)
_DOLLAR = re.compile(r"(?<!\\)\$")
_EDGE = "*`\"'“”‘’ \t"
_NUMBER = re.compile(r"[-+]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)")


def _last_boxed(text: str) -> str:
    for m in reversed(list(_BOXED.finditer(text))):
        inner = _braced(text, m.end())
        if inner and inner.strip():
            return inner
    return ""


def _after_phrase(text: str, end: int) -> str:
    """The answer that follows a phrase ending at `end`: the rest of its line up to a sentence
    end, or the next non-empty line when the phrase ends its line ("The answer is:\\n$$5$$")."""
    line, _, more = text[end:].partition("\n")
    if not line.strip(_EDGE + ":$."):
        line = next((x for x in more.split("\n") if x.strip(_EDGE + "$")), "")
    # A sentence ends at a period followed by a space (not the one in "3.5").
    return re.split(r"\.\s", line + " ", maxsplit=1)[0]


def _clean(answer: str) -> str:
    """Drop the decoration around an answer: markdown emphasis, quotes, $ and \\( \\) delimiters,
    a trailing period."""
    a = answer.strip().strip(_EDGE)
    a = _DOLLAR.sub("", a).strip()
    a = re.sub(r"^(?:\\\[|\\\()\s*|\s*(?:\\\]|\\\))$", "", a)
    return a.strip().rstrip(".。").strip(_EDGE).rstrip(".").strip()


def _choice_letters(item: Item) -> str:
    """The option letters an item accepts, or "" when it is not multiple choice."""
    if item.kind == "choice":
        return "".join(sorted(item.choices)) or "ABCD"
    if item.kind == "bbh" and re.fullmatch(r"\([A-Z]\)", item.gold.strip()):
        return "".join(sorted(item.choices)) or string.ascii_uppercase
    if item.kind == "theoremqa" and item.meta.get("answer_type") == "option":
        return "ABCDE"
    return ""


def _is_numeric(item: Item) -> bool:
    """Questions whose answer is a number: there the last number is a fair fallback reading."""
    if item.kind == "number":
        return True
    if item.kind == "theoremqa":
        return item.meta.get("answer_type") in ("integer", "float")
    if item.kind in ("math", "bbh"):
        return to_number(item.gold) is not None and not _choice_letters(item)
    return False


def _says_no_number(item: Item, answer: str) -> bool:
    """A number question's answer phrase followed by words only ("the answer is not obvious
    yet"): no answer was given there, so the fallback reading applies."""
    return item.kind != "math" and _is_numeric(item) and not re.search(r"[\d\\]", answer)


_LETTER_IN_TEXT = re.compile(
    r"(?i:\b(?:answer|option|choice)\s*(?:is\s*)?[:：]?)\s*\**\s*(?:\(([A-Za-z1-9])\)|([A-Z1-9])(?![\w]))")


def _letter_in_text(text: str, letters: str) -> str:
    """An option letter named in free text: "option C is correct", "choice (B)", or a last line
    that is just a letter."""
    for m in reversed(list(_LETTER_IN_TEXT.finditer(text))):
        letter = (m.group(1) or m.group(2)).upper()
        if letter in letters:
            return letter
    lines = [x for x in text.strip().split("\n") if x.strip()]
    if lines:
        m = re.fullmatch(r"\W*\(?([A-Z1-9])\)?[.:)]?\W*", lines[-1])
        if m and m.group(1) in letters:
            return m.group(1)
    return ""


def extract_answer(item: Item, output: str) -> tuple[str, str]:
    """(the answer the output states, a note on how it was found: "" for a boxed answer or an
    answer phrase, "letter in text", "last number", or "no answer")."""
    text = output or ""
    boxed = _last_boxed(text)
    if boxed:
        return _clean(boxed), ""
    letters = _choice_letters(item)
    # The last phrase that says something ("The answer is 16\nThe answer is " ends empty).
    for phrase in reversed(list(_PHRASE.finditer(text))):
        option = _option_said(text[phrase.end():], item.choices) if letters else ""
        answer = option or _clean(_after_phrase(text, phrase.end()))
        if answer and not _says_no_number(item, answer):
            return answer, ""
    if letters:
        letter = _letter_in_text(text, letters)
        if letter:
            return letter, "letter in text"
    if _is_numeric(item):
        numbers = _NUMBER.findall(text)
        if numbers:
            return numbers[-1], "last number"
    return "", "no answer"


# ----------------------------------------------------------------------------------------------
# Reading values out of an answer

_TEXT_CMD = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_SCI = re.compile(r"([-+]?(?:\d+\.?\d*|\.\d+))\s*(?:[eE]|(?:\\times|\\cdot|\*|x|×)\s*10\s*\^)"
                  r"\s*\{?\(?\s*([-+]?\d+)\s*\)?\}?")
_UNIT = r"[a-zA-Z]+(?:\^\{?-?\d+\}?)?"  # m, s^2, cm^{3}
_UNITS = re.compile(rf"(?<=[\d%])\s+{_UNIT}(?:\s*(?:/|\s)\s*{_UNIT})*$")  # " dollars per day", " m/s^2"
_LEADING_NUMBER = re.compile(rf"({_NUMBER.pattern}\s*%?)\s+(?=\(|(?!pi\b|sqrt\b)[A-Za-z])")
_MATHY = re.compile(r"\\|\^|\*|\+|sqrt|pi|\(|\)|(?<=\d)\s*-")


def _plain(answer: str) -> str:
    """A numeric answer without money signs, \\text{} wrappers, thin spaces, degree marks,
    thousands commas and unicode minus; "percent" written as %."""
    a = _TEXT_CMD.sub(r" \1", answer).replace("\\$", "").replace("$", "")
    a = re.sub(r"(?<!\\)\\[,;:! ]|\\left|\\right", "", a).replace("−", "-")
    a = a.replace("^\\circ", "").replace("^{\\circ}", "").replace("°", "")
    a = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", a)
    a = re.sub(r"\s*(?:\\%|percent\b)", "%", a)
    return a.strip().rstrip(".").strip()


def _read_number(answer: str) -> list[float]:
    """The values a numeric answer may mean ("50%" is 0.5 or 50), read from the whole answer
    (units allowed after it), or [] when it is not plainly a number."""
    a = _plain(answer)
    for candidate in (a, _UNITS.sub("", a).strip()):
        value = to_number(candidate)
        if value is None:
            m = _SCI.fullmatch(candidate)
            if m:
                try:
                    value = float(m.group(1)) * 10.0 ** int(m.group(2))
                except OverflowError:
                    return []
        if value is not None:
            return [value, value * 100] if candidate.endswith("%") else [value]
    return []


def _number_values(answer: str) -> list[float] | None:
    """`_read_number`, else the first number of the text after the last "=" when the answer is
    words around a number ("18 dollars a day"); [] for a bracketed list ("[1, 2]" is not 1);
    None when only sympy can tell (LaTeX, operators)."""
    values = _read_number(answer)
    if values:
        return values
    tail = _plain(answer).rsplit("=", 1)[-1].strip()
    if re.match(r"(?:\\\{|[\[(])[^,]*,", tail):
        return []
    lead = _LEADING_NUMBER.match(tail)  # "18 (9 eggs at $2)", "5 approximately"
    if lead:
        return _read_number(lead.group(1))
    if _MATHY.search(tail):
        return None
    m = _NUMBER.search(tail)
    return _read_number(m.group(0)) if m else []


def _close(value: float, gold: float, rel: float) -> bool:
    """Within `rel` of the gold value (relative to the gold, as MAmmoTH2's TheoremQA check)."""
    return abs(value - gold) <= rel * abs(gold) + 1e-12


# ----------------------------------------------------------------------------------------------
# Letters, options and words

_KEY = r"[A-Za-z]|[1-9]"  # option keys: letters, or digits (some ARC questions)
_BARE_LETTER = re.compile(rf"(?i:option|choice)?\s*[(\[]?\s*({_KEY})\s*[)\]]?\s*[.:]?")
_LETTER_PREFIX = re.compile(  # "(C) text", "C) text", "C. text", "C: text", "C because"
    rf"(?i:option|choice)?\s*(?:[(\[]\s*({_KEY})\s*[)\]]|({_KEY})(?=[.:)\]]\s)|([B-HJ-Z])(?=\s))")
_LETTER_AT_END = re.compile(r"(?:\(([A-Z1-9])\)|(?i:option|choice)\s+([A-Z1-9]))$")  # not "f (d)"


def _light(s: str) -> str:
    """Text with its spacing collapsed and the decoration around it dropped, case kept."""
    return " ".join(_TEXT_CMD.sub(r"\1", s).split()).strip(_EDGE + ".,;:!")


def _text(s: str) -> str:
    """Option text for comparison: normalised LaTeX, lower case, no spaces or end punctuation."""
    return normalize(_light(s)).strip(".,;:!")


def _key(m: re.Match | None, letters: str) -> str:
    if m:
        key = next(g for g in m.groups() if g).upper()
        if key in letters:
            return key
    return ""


def _choice(answer: str, letters: str, choices: dict[str, str]) -> str:
    """The option an answer picks; "" when none. In order: the option's exact text (an option
    may read "c" or "A neutral atom ..."), a bare letter ("C", "(c)", "option C"), the text up
    to case and LaTeX spacing, a leading letter ("(C) 19/400", "C: ...", "C because"), the same
    number as one option, a trailing "(C)"."""
    a = _light(answer)
    hits = [k for k, v in choices.items() if a and _light(v) == a]
    if len(hits) == 1:
        return hits[0]
    key = _key(_BARE_LETTER.fullmatch(a), letters)
    if key:
        return key
    target = _text(a)
    hits = [k for k, v in choices.items() if target and _text(v) == target]
    if len(hits) == 1:
        return hits[0]
    key = _key(_LETTER_PREFIX.match(a), letters)
    if key:
        return key
    values = _read_number(a)
    if values:
        hits = [k for k, v in choices.items() if any(_close(x, y, 1e-6) for y in _read_number(v) for x in values)]
        if len(hits) == 1:
            return hits[0]
    return _key(_LETTER_AT_END.search(a), letters)


def _option_said(rest: str, choices: dict[str, str]) -> str:
    """The longest option text that the words after an answer phrase begin with, so that an
    option containing ". " or a line break is read whole ("nsp10 ... dsRNA." is not cut)."""
    said = _DOLLAR.sub("", " ".join(rest.split()).strip(_EDGE))
    for text in sorted(choices.values(), key=len, reverse=True):
        t = _DOLLAR.sub("", " ".join(text.split()))  # case kept: options "Bb Bb" and "BB BB" differ
        if len(t) >= 2 and said.startswith(t):
            after = said[len(t):]
            if not after or not (after[0].isalnum() or re.match(r"[.,]\d", after)):
                return text
    return ""


def _gold_letter(gold: str) -> str:
    """The letter of an option-letter gold ("C", "(C)", "\\text{(C)}", "(\\text{E})"), else ""."""
    g = _TEXT_CMD.sub(r"\1", gold).replace(" ", "")
    m = re.fullmatch(r"\(?([A-Za-z])\)?", g)
    if m and (g != m.group(1) or g.isupper() or "\\text" in gold):
        return m.group(1).upper()
    return ""


def _is_words(gold: str) -> bool:
    """A gold that is a word or name ("\\text{odd}", "\\text{Evelyn}"), not a formula."""
    g = _TEXT_CMD.sub(r"\1", gold).strip()
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z ]+", g)) and ("\\text" in gold or len(g) > 2)


def _words(answer: str) -> list[str]:
    return re.findall(r"[a-z]+", _TEXT_CMD.sub(r"\1", answer).lower())


def _lead_word(answer: str) -> str:
    """The whole answer as one word ("Yes", "**valid**."), or its first word when a comma, colon
    or semicolon follows it ("No, because ..."); else ""."""
    a = _TEXT_CMD.sub(r"\1", answer).strip().strip(_EDGE + "().!").lower()
    m = re.fullmatch(r"([a-z]+)(?:\s*[,;:].*)?", a, re.S)
    return m.group(1) if m else ""


_TRUE, _FALSE = {"true", "yes"}, {"false", "no"}


def _bool_of(answer: str) -> bool | None:
    """The first true/yes or false/no whole word of an answer ("not" and "know" are not "no")."""
    for word in _words(answer):
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    return None


def _split_list(answer: str) -> list[str]:
    """The elements of a list answer: "[1, 2]", "(1, 2)", "\\{1, 2\\}", "1, 2" (top-level commas
    or semicolons only, so "\\frac{1}{2}, 3" has two)."""
    a = re.sub(r"\\left|\\right", "", _plain(answer)).strip()
    a = re.sub(r"^(?:\\\{|\[|\()(.*)(?:\\\}|\]|\))$", r"\1", a, flags=re.S).strip()
    parts, depth, cur = [], 0, ""
    for ch in a:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch in ",;" and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


# ----------------------------------------------------------------------------------------------
# Judging one answer

Decision = tuple[bool, str]  # (correct, note)


def _numbers_match(gold: float, answer: str, rel: float, symbolic: bool) -> Decision | None:
    values = _number_values(answer)
    if values is None:
        if not symbolic:
            return None
        from webinstruct.evaluation.grading.symbolic import latex_value
        value = latex_value(answer)
        if value is None:
            return False, "not a number"
        return _close(value, gold, rel), "symbolic"
    if not values:
        return False, "not a number"
    return any(_close(v, gold, rel) for v in values), ""


def _judge_number(item: Item, answer: str, symbolic: bool) -> Decision | None:
    gold = to_number(item.gold)
    if gold is None:
        return normalize(item.gold) == normalize(answer), "gold not a number"
    return _numbers_match(gold, answer, NUMBER_TOLERANCE, symbolic)


_BASE_N = re.compile(r"([0-9a-z]+)_\{?(\d+)\}?")  # "40_9", "1011_{2}" after normalize


def _judge_math(gold: str, answer: str, symbolic: bool) -> Decision | None:
    ng, na = normalize(gold), normalize(answer)
    if ng == na:
        return True, ""
    base = _BASE_N.fullmatch(ng)
    if base:  # a number in base b: the same digits, with or without the subscript
        said = _BASE_N.fullmatch(na)
        return (said.groups() == base.groups()) if said else na == base.group(1), ""
    letter = _gold_letter(gold)
    if letter:
        return _choice(answer, string.ascii_uppercase, {}) == letter, ""
    if _is_words(gold):
        return _words(gold) == _words(answer), ""
    gv, av = _read_number(gold), _read_number(answer)
    if gv and av:
        if any(_close(x, y, 1e-9) for x in gv for y in av):
            return True, ""
        if not any(_close(x, y, 1e-3) for x in gv for y in av):
            return False, ""
    if not symbolic:
        return None
    from webinstruct.evaluation.grading.symbolic import math_equivalent
    return math_equivalent(gold, answer), "symbolic"


def _theoremqa_gold_numbers(item: Item) -> list[float] | None:
    value = item.gold_value
    if value is None:
        value = item.gold
        if item.meta.get("answer_type", "").startswith("list"):
            return [x for p in _split_list(value) for x in _read_number(p)[:1]]
        return _read_number(value)[:1] or None
    if isinstance(value, (list, tuple)):
        return [float(x) for x in value]
    return [float(value)]


def _judge_theoremqa(item: Item, answer: str, symbolic: bool) -> Decision | None:
    kind = item.meta.get("answer_type", "")
    if kind == "bool":
        gold = item.gold_value if isinstance(item.gold_value, bool) else _bool_of(item.gold)
        said = _bool_of(answer)
        return (said == gold, "") if said is not None else (False, "no true/false word")
    if kind == "option":
        return _choice(answer, "ABCDE", {}) == _gold_letter(item.gold), ""
    gold = _theoremqa_gold_numbers(item)
    if not gold:
        return normalize(item.gold) == normalize(answer), "gold not a number"
    if not kind.startswith("list"):
        return _numbers_match(gold[0], answer, THEOREMQA_TOLERANCE, symbolic)
    parts = _split_list(answer)
    if len(parts) != len(gold):
        return False, f"{len(parts)} elements for {len(gold)}"
    values = []
    for part in parts:
        read = _number_values(part)
        if read is None:
            if not symbolic:
                return None
            from webinstruct.evaluation.grading.symbolic import latex_value
            value = latex_value(part)
            read = [] if value is None else [value]
        if not read:
            return False, "not a list of numbers"
        values.append(read[0])
    ok = all(_close(a, b, THEOREMQA_TOLERANCE) for a, b in zip(sorted(values), sorted(gold)))
    return ok, ""


def _judge_bbh(item: Item, answer: str, symbolic: bool) -> Decision | None:
    gold = item.gold.strip()
    letters = _choice_letters(item)
    if letters:
        return _choice(answer, letters, item.choices) == gold.strip("()"), ""
    if item.task == "dyck_languages":
        return re.sub(r"\s+", "", answer) == re.sub(r"\s+", "", gold), ""
    if item.task == "word_sorting":
        return re.findall(r"[^\s,]+", answer.lower()) == gold.lower().split(), ""
    if gold.lower() in ("true", "false", "valid", "invalid", "yes", "no"):
        return _lead_word(answer) == gold.lower(), ""
    number = to_number(gold)
    if number is not None:
        return _numbers_match(number, answer, 1e-9, symbolic)
    return " ".join(answer.lower().split()).strip(".") == " ".join(gold.lower().split()), ""


def _judge(item: Item, answer: str, symbolic: bool) -> Decision | None:
    """(correct, note) for a read answer; None when it takes sympy and `symbolic` is False."""
    if item.kind == "number":
        return _judge_number(item, answer, symbolic)
    if item.kind == "math":
        return _judge_math(item.gold, answer, symbolic)
    if item.kind == "theoremqa":
        return _judge_theoremqa(item, answer, symbolic)
    if item.kind == "choice":
        return _choice(answer, _choice_letters(item), item.choices) == item.gold.strip().strip("()"), ""
    if item.kind == "bbh":
        return _judge_bbh(item, answer, symbolic)
    raise ValueError(f"unknown item kind {item.kind!r}")


def _verdict(answer: str, how: str, decision: Decision) -> Verdict:
    correct, why = decision
    return Verdict(answer, correct, "; ".join(x for x in (how, why) if x))


def grade_robust(item: Item, output: str, timeout: float | None = 5.0) -> Verdict:
    """One verdict, in this process. The symbolic step is limited to `timeout` seconds only in
    the main thread (a signal) and cannot interrupt C code; for many answers, or from threads,
    use `grade_robust_many`."""
    answer, how = extract_answer(item, output)
    if not answer:
        return Verdict("", False, how)
    try:
        decision = _judge(item, answer, symbolic=False)
        if decision is None:
            from webinstruct.evaluation.grading.symbolic import GradingTimeout, deadline
            try:
                with deadline(timeout):
                    decision = _judge(item, answer, symbolic=True)
            except GradingTimeout:
                return Verdict(answer, False, "timeout")
    except Exception as e:  # a grader bug must cost one answer, not the evaluation
        return Verdict(answer, False, f"error: {type(e).__name__}: {e}")
    return _verdict(answer, how, decision)


def _judge_symbolic(item: Item, answer: str) -> Decision:
    """The worker-process side of `grade_robust_many` (the parent bounds its time)."""
    return _judge(item, answer, symbolic=True)


def symbolic_pool(workers: int = 2, timeout: float = 5.0):
    """A persistent `IsolatedPool` for `grade_robust_many(..., pool=)`: its workers start once, with
    the first answer plain checks cannot decide (sympy imported then), and serve every later call;
    `timeout` seconds per answer."""
    from webinstruct.evaluation.grading.pool import IsolatedPool
    return IsolatedPool(_judge_symbolic, workers=workers, timeout=timeout,
                        preload=("webinstruct.evaluation.grading.symbolic",), lazy=True)


def grade_robust_many(pairs: list[tuple[Item, str]], workers: int = 2, timeout: float = 5.0,
                      pool=None) -> list[Verdict]:
    """Verdicts for (item, output) pairs, in order. Answers that plain string and number checks
    decide are graded here; the rest go to `workers` processes, each answer limited to `timeout`
    seconds (then correct=False, note "timeout"), or to `pool` (a `symbolic_pool`, whose own
    workers and timeout apply). Never raises for a bad answer."""
    from webinstruct.evaluation.grading.pool import run_isolated

    verdicts: list[Verdict | None] = [None] * len(pairs)
    hard: list[tuple[int, str, str]] = []
    for i, (item, output) in enumerate(pairs):
        try:
            answer, how = extract_answer(item, output)
            decision = _judge(item, answer, symbolic=False) if answer else (False, "")
        except Exception as e:
            verdicts[i] = Verdict("", False, f"error: {type(e).__name__}: {e}")
            continue
        if decision is None:
            hard.append((i, answer, how))
        else:
            verdicts[i] = _verdict(answer, how, decision)
    if hard:
        inputs = [(pairs[i][0], answer) for i, answer, _ in hard]
        try:
            if pool is not None:
                outcomes = pool.submit(inputs).result()
            else:
                outcomes = run_isolated(_judge_symbolic, inputs, workers=workers, timeout=timeout,
                                        preload=("webinstruct.evaluation.grading.symbolic",))
        except Exception as e:  # the pool itself failed (no processes, no pipes)
            from webinstruct.evaluation.grading.pool import Outcome
            outcomes = [Outcome("error", detail=f"pool: {type(e).__name__}: {e}")] * len(hard)
        for (i, answer, how), out in zip(hard, outcomes):
            if out.status == "ok":
                verdicts[i] = _verdict(answer, how, out.value)
            elif out.status == "timeout":
                verdicts[i] = Verdict(answer, False, "timeout")
            else:
                verdicts[i] = Verdict(answer, False, f"{out.status}: {out.detail}")
    return verdicts  # type: ignore[return-value]
