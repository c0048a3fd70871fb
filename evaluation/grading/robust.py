"""The robust grader: read the answer however the model phrased it, then compare it the way the
question's kind needs.

Reading (`extract_answer`), on the output cut at the protocol's stop strings (a run-on into an
invented next problem is not part of the answer): the last explicit statement wins, whether a
\\boxed{} or an answer phrase ("The answer is: X", "The correct answer is X", "Final answer: X",
Minerva's "The final answer is $X$. I hope it is correct.", "Answer: X", "#### X"); a phrase
counts only when what follows it looks like an answer to this question (a number for a number
question, an option for multiple choice, ...). Several boxes together answer a question whose
gold has several values. Without either: multiple choice takes an affirmed option ("(D) is
correct", "I'd go with B", a last line that is an option), true/false questions the truth value
the last sentence states, MATH the final expression ("... = -\\dfrac{3}{7}."), number questions
their last number (note "last number").

Comparing (by `Item.kind`):
- number: exactly (integers) or to 1e-9 (decimals), units, "$", separators and number words read;
  "50%" matches 50 and 0.5.
- math: equal after `normalize`, or equal plain numbers, else symbolically (math-verify, sympy;
  see `symbolic`). Option-letter golds ("\\text{(C)}"), word golds ("\\text{odd}") and base-b
  numerals ("40_9") compare as letters, words and digits, never symbolically ("Nevely" is not
  "Evelyn" reordered).
- theoremqa: by answer type: floats within 4% (the benchmark's tolerance), integers exactly,
  lists element-wise, booleans from whole words (true/yes, false/no), options by letter.
- choice: by key, option number or option text (`options`); a hedge is wrong.
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
from webinstruct.evaluation.grading.numbers import (NUMBER, NUMBER_TOKEN, NUMBER_WORDS, TEXT_CMD as _TEXT_CMD, last_number,
                                                    plain as _plain, read_number as _read_number)
from webinstruct.evaluation.grading.options import EDGE as _EDGE, HEDGE, choice_letters as _choice_letters
from webinstruct.evaluation.grading.options import hedged, option_said, pick, pick_in_text
from webinstruct.evaluation.grading.options import option_key
from webinstruct.evaluation.grading.program_text import looks_like_program, printed_value
from webinstruct.evaluation.items import Item

THEOREMQA_TOLERANCE = 0.04  # relative: TheoremQA's own rule for float answers
NUMBER_TOLERANCE = 1e-9  # exact, up to float rounding

# ----------------------------------------------------------------------------------------------
# Reading the answer

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_PHRASE = re.compile(
    r"\banswer\s*\**\s*(?:is|would\s+be|should\s+be|will\s+be|must\s+be|equals)\b\s*\**\s*[:：]?"  # the (correct) answer is
    r"|\banswers?\s*\**\s*[:：]"  # Answer: / Final answer: / **Answer:**
    r"|\b(?:correct|right|best|final)\s+(?:option|choice)\s*\**\s*(?:is|would\s+be|[:：])\s*\**\s*[:：]?"  # The correct option is:
    r"|^[ \t]*#+[ \t]*(?:final[ \t]+)?(?:answer|result)s?[ \t]*[:：]?[ \t]*$"  # ### Final Answer
    r"|^[ \t]*####(?!#)",  # GSM8K
    re.I | re.M)
_DOLLAR = re.compile(r"(?<!\\)\$")
_MATH_SPAN = re.compile(r"(?<!\\)\$\$(.+?)(?<!\\)\$\$|(?<!\\)\$(.+?)(?<!\\)\$|\\\[(.+?)\\\]|\\\((.+?)\\\)", re.S)


def _boxes(text: str) -> list[tuple[int, str]]:
    """(position, content) of every non-empty \\boxed{} / \\fbox{}."""
    found = []
    for m in _BOXED.finditer(text):
        inner = _braced(text, m.end())
        if inner and inner.strip():
            found.append((m.start(), inner))
    return found


def _after_phrase(text: str, end: int) -> str:
    """The answer that follows a phrase ending at `end`: the rest of its line up to a sentence
    end, or the next non-empty line when the phrase ends its line ("The answer is:\\n$$5$$")."""
    line, _, more = text[end:].partition("\n")
    if not line.strip(_EDGE + ":$."):
        line = next((x for x in more.split("\n") if x.strip(_EDGE + "$")), "")
    # A sentence ends at a period followed by a space (not the one in "3.5"), or at "I hope".
    line = re.split(r"\s+I hope it is correct", line, maxsplit=1)[0]
    m = _MATH_SPAN.match(line.lstrip(_EDGE))
    if m:  # "$x = 2. 5$ because ...": the math span is the answer, whole
        return m.group(0)
    return re.split(r"\.\s", line + " ", maxsplit=1)[0]


def _clean(answer: str) -> str:
    """Drop the decoration around an answer: markdown emphasis, quotes, $ and \\( \\) delimiters,
    a \\boxed{} around it, a trailing period."""
    a = answer.strip().strip(_EDGE)
    a = _DOLLAR.sub("", a).strip()
    a = re.sub(r"^(?:\\\[|\\\()\s*|\s*(?:\\\]|\\\))$", "", a)
    m = _BOXED.match(a)
    if m:
        inner = _braced(a, m.end())
        if inner and a[m.end() + len(inner) + 1:].strip(" .") == "":
            a = inner
    return a.strip().rstrip(".。").strip(_EDGE).rstrip(".").strip()


_TQA_OPTION = re.compile(r"\(([a-e])\)\s*(.+?)\s*(?=\([a-e]\)\s|Which option|$)", re.S)


def _options(item: Item) -> dict[str, str]:
    """The item's options; for TheoremQA's option questions, read from the question ("(a) ... (b) ...")."""
    if item.choices or not (item.kind == "theoremqa" and item.meta.get("answer_type") == "option"):
        return item.choices
    return {k.upper(): v.strip().rstrip(".") for k, v in _TQA_OPTION.findall(item.question)}


def _is_numeric(item: Item) -> bool:
    """Questions whose answer is a number: there the last number is a fair fallback reading."""
    if item.kind == "number":
        return True
    if item.kind == "theoremqa":
        return item.meta.get("answer_type") in ("integer", "float")
    if item.kind in ("math", "bbh"):
        return to_number(item.gold) is not None and not _choice_letters(item)
    return False


def _is_bool(item: Item) -> bool:
    if item.kind == "theoremqa":
        return item.meta.get("answer_type") == "bool"
    return item.kind == "bbh" and item.gold.strip().lower() in ("true", "false", "yes", "no", "valid", "invalid")


def _multi_valued(item: Item) -> bool:
    """A gold of several values (a list or a set of solutions), which several boxes may give."""
    if item.kind == "theoremqa":
        return item.meta.get("answer_type", "").startswith("list")
    if item.kind == "math":
        g = re.sub(r"\\!|\{,\}", "", item.gold.strip())
        if re.fullmatch(r"\\?\$?\d{1,3}(?:,\d{3})+(?:\.\d+)?", g):  # one number: 15,600
            return False
        several = "," in g or re.search(r"\\text\{\s*(?:and|or)\s*\}|\band\b", g)
        return bool(several) and not re.match(r"\\\{|\\left|\\begin|[\[(]", g)
    return False


def _answer_like(item: Item, answer: str, letters: str) -> bool:
    """Whether the words after an answer phrase answer this question at all ("the answer is
    not obvious yet", "to check that the answer is reasonable" do not)."""
    if not answer:
        return False
    if letters:
        return bool(pick(answer, letters, _options(item))) or bool(option_said(answer, _options(item)))
    if _is_bool(item):
        return _bool_of(answer) is not None or _lead_word(answer) in ("valid", "invalid")
    if _is_numeric(item) and item.kind != "bbh":
        return bool(re.search(r"[\d\\]", answer)) or bool(NUMBER_WORDS.search(answer))
    if item.kind == "math" and not _is_words(item.gold):
        return bool(re.search(r"[\d\\^=(\[{<>+\-*/|]", answer)) or len(answer.split()) <= 3
    return True


def _stated(item: Item, text: str, letters: str) -> tuple[int, str]:
    """(position, answer) of the last answer phrase that says something answer-like, else (-1, "")."""
    for phrase in reversed(list(_PHRASE.finditer(text))):
        rest = text[phrase.end():]
        option = option_said(rest, _options(item)) if letters else ""
        answer = option or _clean(_after_phrase(text, phrase.end()))
        if _answer_like(item, answer, letters):
            return phrase.start(), answer
    return -1, ""


_RELATION = re.compile(r"(?<![<>!\\])=(?!=)|\\approx|≈")
_LAYOUT = re.compile(r"^\s*(?:\\begin\{[^}]*\}|\\end\{[^}]*\}|\\\[|\\\]|\$\$|```\w*)\s*$")


def _content_lines(text: str) -> list[str]:
    """The lines that carry something: no blank lines, no bare \\begin/\\end, \\[ \\], $$ or fences."""
    return [x for x in text.strip().split("\n") if x.strip(_EDGE + "$.") and not _LAYOUT.match(x)]


def _final_expression(text: str) -> str:
    """A MATH solution's final expression when it states no answer: the last math span of the
    last line ("$(2,5]$", "$y \\leq 3$ is the solution"), or the right side of its last "="."""
    lines = _content_lines(text)
    if not lines:
        return ""
    line = lines[-1].strip()
    spans = [next(g for g in m.groups() if g is not None) for m in _MATH_SPAN.finditer(line)]
    expr = spans[-1] if spans else line
    if not spans and len(line.split()) > 6 and "=" not in line:
        return ""  # a sentence of words, not an expression
    if "\\begin" not in expr:  # a row of an align environment: "\\text{result} &= 3 \\\\"
        expr = re.sub(r"\\\\\s*$", "", expr).replace("&", "")
    parts = _RELATION.split(expr)
    if len(parts) > 1:
        expr = parts[-1]
    return _clean(expr)


_LABEL = re.compile(r"^\s*(?:#+\s*)?(?:\*\*)?(?:final\s+answer|answer|result|solution|hence|therefore|thus|so)"
                    r"(?:\*\*)?\s*[:：,]?\s*(?:\*\*)?\s*$", re.I)


def _labelled_last_line(text: str) -> str:
    """The last line when the line before it announces it ("Result:", "Hence:", "## Answer")."""
    lines = _content_lines(text)
    if len(lines) >= 2 and _LABEL.match(lines[-2]):
        return _clean(lines[-1])
    return ""


_TRUTH = re.compile(r"\b(?:(not|n[o’']t)\s+(?:\w+\s+)?)?(true|false|valid|invalid|yes|no|correct|incorrect|"
                    r"plausible|implausible|tells\s+the\s+truth|lies|holds?)\b", re.I)
_TRUE_WORDS = ("true", "yes", "correct", "plausible", "tells the truth", "holds", "hold")


def _truth_in_text(text: str) -> str:
    """The truth value the last sentence that states one gives ("So the statement is true.",
    "this is not valid", "the sentence is implausible", "So Shaunda tells the truth"), as
    "True"/"False"/"valid"/"invalid"; "" when none."""
    sentences = [x for x in re.split(r"(?<=[.!?])\s+|\n+", text.strip()) if x.strip()]
    for sentence in reversed(sentences[-3:]):
        hits = list(_TRUTH.finditer(sentence))
        if not hits and "starting point" not in sentence:
            continue
        if re.search(r"\b(?:back\s+(?:at|to)|returns?\s+to|end\s+up\s+at)\s+the\s+starting\s+point", sentence, re.I):
            return "False" if re.search(r"\b(?:not|never)\b|n[’']t\b", sentence, re.I) else "True"
        m = hits[-1]
        word, negated = " ".join(m.group(2).lower().split()), bool(m.group(1))
        if word in ("valid", "invalid"):
            return "valid" if (word == "valid") != negated else "invalid"
        return "True" if (word in _TRUE_WORDS) != negated else "False"
    return ""


_HEDGE_WORDS = re.compile(r"\b(?:either\b.*\bor|or\s+(?:maybe|possibly|perhaps)|not\s+sure|unsure|can(?:not|'t)\s+(?:decide|tell))\b",
                          re.I | re.S)
_OR = re.compile(r"\s(?:or|and/or)\s")


def _hedged(item: Item, answer: str) -> bool:
    """An answer that offers alternatives ("either 25 or -25", "6 or maybe 7", "Yes or No")."""
    if _HEDGE_WORDS.search(answer):
        return True
    if item.kind == "bbh" and item.task in ("word_sorting", "dyck_languages"):
        return False
    sides = _OR.split(answer)
    return len(sides) == 2 and all(_answer_like(item, x.strip(_EDGE + ".,;"), "") for x in sides) \
        and len(answer.split()) <= 12


def _strip_lhs(answer: str) -> str:
    """The value a bold statement gives: "x = 1" -> "1", "P(rain) ≈ 0.5" -> "0.5", "There are
    25,972,650 ways" -> "25,972,650" (a sentence with one number); else the statement."""
    a = _clean(answer)
    parts = _RELATION.split(a)
    if len(parts) > 1:
        return _clean(parts[-1])
    if len(a.split()) > 3:
        numbers = NUMBER_TOKEN.findall(a)
        if len(numbers) == 1:
            return numbers[0].strip()
    return a


def _last_sentence(text: str) -> str:
    lines = _content_lines(text)
    if not lines:
        return ""
    parts = [x for x in re.split(r"(?<=[.!?;])\s+", lines[-1].strip()) if x.strip()]
    return parts[-1] if parts else ""


def _last_number(text: str) -> str:
    """The last number of a solution; a number in words or a signed phrase when the last
    sentence has no digits ("So the value we want is ten.", "the result is negative 3")."""
    text = re.sub(r"\{,\}|,\\!", ",", text)
    sentence = _last_sentence(text)
    plain_sentence = sentence.replace("−", "-")
    signed = re.search(r"\b(?:negative|minus)\s+(\d[\d,]*(?:\.\d+)?|[a-z]+(?:[\s-][a-z]+)*)", plain_sentence, re.I)
    if signed and _read_number(signed.group(1)):
        return "-" + signed.group(1)
    below = re.search(r"(\d+(?:\.\d+)?)\s*(?:degrees?\s+)?below\s+zero", plain_sentence, re.I)
    if below:
        return "-" + below.group(1)
    words = [m for m in NUMBER_WORDS.finditer(sentence) if m.group(0).lower() not in ("one", "a", "an")]
    digits = list(re.finditer(r"\d", sentence))
    if words and (not digits or words[-1].start() > digits[-1].start()):  # "..., which is seventy-two thousand"
        return words[-1].group(0)
    return last_number(text.replace("−", "-"))


_CHECK = re.compile(r"\n\s*(?:\*\*|#+\s*)?(?:check|checking|verification|verify|let[’']s\s+(?:check|verify)|"
                    r"double[- ]check|sanity\s+check)\b[^\n]*(?:\n(?!\s*\n)[^\n]*)*\s*$", re.I)
_BOLD = re.compile(r"\*\*([^*\n]+?)\*\*")


def _without_check(text: str) -> str:
    """The output without a closing check of the answer ("Check: with x = 1 ... ✓")."""
    m = _CHECK.search(text)
    return text[:m.start()] if m and text[:m.start()].strip() else text


def _bold_statement(text: str, after: int = -1) -> tuple[int, str]:
    """(position, content) of a bold value in the last line ("... is actually **5**.",
    "**x = 1**"), not a bold label ("**Step 3:**"); (-1, "") when none."""
    lines = _content_lines(text)
    if not lines:
        return -1, ""
    start = text.rfind(lines[-1])
    for m in reversed(list(_BOLD.finditer(lines[-1]))):
        inner = m.group(1).strip()
        if inner.endswith((":", "：")) or re.match(r"(?i)(?:step|part|case|note)\b", inner):
            continue
        if start + m.start() > after:
            return start + m.start(), inner
    return -1, ""


def _without_cut_repeat(text: str) -> str:
    """The output without a last line that the token limit cut while the model repeated itself
    ("So x = 15.\nSo x = 15.\nSo x = 1")."""
    lines = text.rstrip().split("\n")
    if len(lines) >= 2 and lines[-1].strip() and lines[-1] != lines[-2] and lines[-2].startswith(lines[-1]):
        return "\n".join(lines[:-1])
    return text


def extract_answer(item: Item, output: str, protocol: str = "") -> tuple[str, str]:
    """(the answer the output states, a note on how it was found: "" for a boxed answer or an
    answer phrase, "hedge", "letter in text", "truth in text", "program", "labelled line",
    "final expression", "last number", or "no answer"). `protocol` names the stop strings to cut
    the output at first."""
    from webinstruct.evaluation.protocols import cut_at_stop, stop_strings
    text = _without_cut_repeat(cut_at_stop(output or "", stop_strings(protocol)))
    if looks_like_program(text):  # a program-of-thought output: read what it prints
        printed = printed_value(text)
        if printed is not None:
            answer, how = extract_answer(item, printed)
            return answer, "program" + (f"; {how}" if how else "")
    letters = _choice_letters(item)
    boxes = _boxes(text)
    at, stated = _stated(item, text, letters)
    if boxes and boxes[-1][0] > at:
        bold_at, bold = _bold_statement(_without_check(text), boxes[-1][0] + 1)
        if bold and not letters and _answer_like(item, _strip_lhs(bold), letters):  # "\boxed{9} ... actually **5**"
            return _strip_lhs(bold), "bold"
        if _multi_valued(item) and len(boxes) > 1:
            para = text.rfind("\n\n", 0, boxes[-1][0])
            inners = [b for p, b in boxes if p >= para]
            if len(inners) > 1:
                return ", ".join(_clean(b) for b in inners), ""
        return _clean(boxes[-1][1]), ""
    if stated and not letters and re.match(r"(?i)not\b", stated):  # "not 1120; it is 1200"
        m = re.search(r"(?i)[;,]\s*(?:it\s+is|it[’']s|but|rather)\s+(.+)", stated)
        stated = _clean(m.group(1)) if m else ""
        if not stated:
            return "", "no answer"
    if stated:
        if not letters and _hedged(item, stated):
            return "", "hedge"
        return stated, ""
    text = _without_check(text)
    if letters:
        letter = pick_in_text(text, letters, _options(item))
        if letter:
            return letter, "letter in text"
        _, bold = _bold_statement(text)
        said = pick(bold, letters, _options(item)) if bold else ""
        if bold and not said:  # "**color (a)** is brighter": one bracketed key in the bold words
            keys = {k for k in (option_key(m.group(1), letters) for m in re.finditer(r"[(\[]([A-Za-z1-9])[)\]]", bold)) if k}
            said = keys.pop() if len(keys) == 1 else ""
        if said and (said == HEDGE or hedged(_last_sentence(text).replace("**", ""), letters)):
            return "", "hedge"
        if said:
            return said, "bold"
        return "", "no answer"
    if looks_like_program(text):
        return "", "no answer"
    _, bold = _bold_statement(text)
    if bold and _answer_like(item, _strip_lhs(bold), letters):
        return ("", "hedge") if _hedged(item, bold) else (_strip_lhs(bold), "bold")
    labelled = _labelled_last_line(text)
    if labelled and _answer_like(item, labelled, letters):
        return ("", "hedge") if _hedged(item, labelled) else (labelled, "labelled line")
    if _hedged(item, _last_sentence(text)):
        return "", "hedge"
    if _is_bool(item):
        truth = _truth_in_text(text)
        if truth:
            return truth, "truth in text"
        last = _last_sentence(text)
        if item.kind == "theoremqa" and re.match(r"(?i)(?:therefore|thus|hence|so)\b", last):
            # "Therefore, W is not a subspace of R^2.": the question's claim, denied or affirmed
            return ("False" if re.search(r"(?i)\b(?:not|never|no)\b|n[’']t\b", last) else "True"), "truth in text"
    if item.kind == "bbh" and item.task in ("dyck_languages", "word_sorting"):
        lines = _content_lines(text)
        return (_clean(lines[-1]), "last line") if lines else ("", "no answer")
    if item.kind == "math":
        expr = _final_expression(text)
        if expr and _answer_like(item, expr, letters):
            return expr, "final expression"
    if _is_numeric(item):
        expr = _final_expression(text)
        if expr and _read_number(expr) and re.search(r"\\times|\^|[eE][-+]?\d", expr):  # "$1.75 \times 10^{5}$"
            return expr, "final expression"
        number = _last_number(text)
        if number:
            return number, "last number"
    return "", "no answer"


# ----------------------------------------------------------------------------------------------
# Reading values out of an answer

_LEADING_NUMBER = re.compile(rf"({NUMBER.pattern}\s*%?)(?:[,;]?\s+(?=\(|(?!pi\b|sqrt\b)[A-Za-z])|[,;]\s|\s+-+\s)")
_MATHY = re.compile(r"\\|\^|\*|\+|sqrt|pi|\(|\)|(?<=\d)\s*-")


def _number_values(answer: str) -> list[float] | None:
    """`read_number`, else the first number of the text after the last "=" when the answer is
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
    m = NUMBER.search(tail)
    if m:
        return _read_number(m.group(0))
    words = NUMBER_WORDS.search(tail)
    return _read_number(words.group(0)) if words else []


def _close(value: float, gold: float, rel: float) -> bool:
    """Within `rel` of the gold value (relative to the gold)."""
    return abs(value - gold) <= rel * abs(gold) + 1e-12


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
    """The elements of a list answer: "[1, 2]", "(1, 2)", "\\{1, 2\\}", "1, 2", "1 and 6" (top-level
    commas or semicolons only, so "\\frac{1}{2}, 3" has two)."""
    a = re.sub(r"\\left|\\right", "", _plain(answer)).strip()
    if not re.search(r"[,;]", a):
        a = re.sub(r"\s+and\s+", ", ", a)
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


_LE, _LT = r"(?:\\leq?|\\leqslant|<=|≤)", r"(?:<)"
_GE, _GT = r"(?:\\geq?|\\geqslant|>=|≥)", r"(?:>)"
_BOUND = r"\s*(-?\s*[^<>=≤≥\s][^<>=≤≥]*?)\s*"


def _as_interval(answer: str) -> str:
    """An inequality in one variable written as an interval ("y \\leq 3" -> "(-\\infty,3]",
    "2 < x \\le 5" -> "(2,5]"), else the answer unchanged."""
    a = answer.strip()
    var = r"\s*[a-zA-Z]\s*"
    m = re.fullmatch(rf"{_BOUND}({_LE}|{_LT}){var}({_LE}|{_LT}){_BOUND}", a)
    if m:
        lo, op1, op2, hi = m.groups()
        return ("[" if re.fullmatch(_LE, op1) else "(") + f"{lo},{hi}" + ("]" if re.fullmatch(_LE, op2) else ")")
    m = re.fullmatch(rf"{var}({_LE}|{_LT}|{_GE}|{_GT}){_BOUND}", a)
    if m:
        op, c = m.groups()
        if re.fullmatch(_LE, op) or re.fullmatch(_LT, op):
            return f"(-\\infty,{c}" + ("]" if re.fullmatch(_LE, op) else ")")
        return ("[" if re.fullmatch(_GE, op) else "(") + f"{c},\\infty)"
    return answer


def _column(gold: str, answer: str) -> str:
    """A tuple answer "(-3, 11, 7)" written as the column vector a pmatrix gold is, else the answer."""
    m = re.fullmatch(r"\s*\\begin\{[pb]matrix\}(.*)\\end\{[pb]matrix\}\s*", gold, re.S)
    if not m or "&" in m.group(1) or not re.match(r"\s*(?:\\left)?\s*[(\[]", answer):
        return answer
    rows = [r for r in re.split(r"\\\\", m.group(1)) if r.strip()]
    parts = _split_list(answer)
    if len(parts) != len(rows) or len(parts) < 2:
        return answer
    return "\\begin{pmatrix} " + " \\\\ ".join(parts) + " \\end{pmatrix}"


_WORD_UNITS = re.compile(r"(?<=[\d})a-zA-Z])\s+(?:square\s+|cubic\s+)?[a-zA-Z]{2,}(?:\s+[a-zA-Z]{2,})*\.?$")


def _judge_math(gold: str, answer: str, symbolic: bool) -> Decision | None:
    answer = _column(gold, answer)
    if not re.search(r"(?<!\\)\b[a-zA-Z]{2,}", re.sub(r"\\[a-zA-Z]+", "", gold)):  # a gold without words:
        answer = _WORD_UNITS.sub("", answer)  # "648/\pi square centimeters" -> "648/\pi"
    if re.match(r"\s*(?:\\left)?\s*[\[(]", gold) and re.search(r"\\infty|,", gold):
        answer = _as_interval(answer)
    ng, na = normalize(gold), normalize(answer)
    if ng == na:
        return True, ""
    base = _BASE_N.fullmatch(ng)
    if base:  # a number in base b: the same digits, with or without the subscript
        said = _BASE_N.fullmatch(na)
        return (said.groups() == base.groups()) if said else na == base.group(1), ""
    letter = _gold_letter(gold)
    if letter:
        return pick(answer, string.ascii_uppercase, {}) == letter, ""
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
        return pick(answer, "ABCDE", _options(item)) == _gold_letter(item.gold), ""
    gold = _theoremqa_gold_numbers(item)
    if not gold:
        return normalize(item.gold) == normalize(answer), "gold not a number"
    rel = THEOREMQA_TOLERANCE if "float" in kind else NUMBER_TOLERANCE
    if not kind.startswith("list"):
        return _numbers_match(gold[0], answer, rel, symbolic)
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
    ok = all(_close(a, b, rel) for a, b in zip(values, gold))  # a TheoremQA list is ordered
    return ok, ""


def _judge_bbh(item: Item, answer: str, symbolic: bool) -> Decision | None:
    gold = item.gold.strip()
    letters = _choice_letters(item)
    if letters:
        return pick(answer, letters, item.choices) == gold.strip("()"), ""
    if item.task == "dyck_languages":
        return re.sub(r"\s+", "", answer) == re.sub(r"\s+", "", gold), ""
    if item.task == "word_sorting":
        return re.findall(r"[^\s,]+", answer.lower()) == gold.lower().split(), ""
    if _is_bool(item):
        same = {"yes": "true", "no": "false"}
        said = _lead_word(answer) or (_truth_in_text(answer) or "").lower()
        return same.get(said, said) == same.get(gold.lower(), gold.lower()), ""
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
        return pick(answer, _choice_letters(item), item.choices) == item.gold.strip().strip("()"), ""
    if item.kind == "bbh":
        return _judge_bbh(item, answer, symbolic)
    raise ValueError(f"unknown item kind {item.kind!r}")


def _verdict(answer: str, how: str, decision: Decision) -> Verdict:
    correct, why = decision
    return Verdict(answer, correct, "; ".join(x for x in (how, why) if x))


def grade_robust(item: Item, output: str, timeout: float | None = 5.0, protocol: str = "") -> Verdict:
    """One verdict, in this process. The symbolic step is limited to `timeout` seconds only in
    the main thread (a signal) and cannot interrupt C code; for many answers, or from threads,
    use `grade_robust_many`. `protocol`: whose stop strings cut the output first."""
    answer, how = extract_answer(item, output, protocol)
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
                      pool=None, protocol: str = "") -> list[Verdict]:
    """Verdicts for (item, output) pairs, in order. Answers that plain string and number checks
    decide are graded here; the rest go to `workers` processes, each answer limited to `timeout`
    seconds (then correct=False, note "timeout"), or to `pool` (a `symbolic_pool`, whose own
    workers and timeout apply). Never raises for a bad answer."""
    from webinstruct.evaluation.grading.pool import run_isolated

    verdicts: list[Verdict | None] = [None] * len(pairs)
    hard: list[tuple[int, str, str]] = []
    for i, (item, output) in enumerate(pairs):
        try:
            answer, how = extract_answer(item, output, protocol)
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
