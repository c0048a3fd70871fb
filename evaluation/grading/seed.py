"""The seed grader: score an output the way the paper whose protocol produced it scored it.

Our seed numbers are only comparable with the published ones when they come from the same
scorer, so this module reproduces the two harnesses behaviour for behaviour, flaws included (the
robust grader is where they are fixed):

Every output is first cut at the harness's stop strings (vLLM stopped there; outputs from elsewhere
are cut the same way): MAmmoTH2's list, "####" included, for ``mammoth2`` and ``chat``, MetaMath's
("Question", "Response", ... as bare words) for ``metamath``.

- ``mammoth2`` and ``chat``: MAmmoTH2's math_eval. run_open.py (TheoremQA, MATH, GSM8K, BBH) cuts
  the answer with the triggers "The answer is:", "The answer is", "the answer is" (+ "####" for
  GSM8K); run_choice.py (GPQA, MMLU-STEM, ARC) with "####" and "The answer is", then counts any
  answer that is not a letter as "A". utils.py's answer_clean / compare_answer_with_groundtruth
  do the rest: MATH is an exact match after the MATH string normaliser, TheoremQA compares
  numbers with a 4% tolerance (integers rounded, lists sorted) and reads True/False from any
  "yes"/"true"/"no"/"false" substring, BBH compares strings (an option "(a)".."(f)" only has to
  appear somewhere in the answer).
- ``metamath``: MetaMath's eval_gsm8k.py (first number after the last "The answer is: ", rounded,
  compared as a number) and eval_math.py (the text after it through the Hendrycks MATH `is_equiv`).
  An output without that exact phrase is wrong. MetaMath never scored TheoremQA, multiple choice
  or BBH; for those we take the text after the last "The answer is: " (wrong when absent) and
  compare it the MAmmoTH2 way for that kind.

Flaws kept on purpose: "no" inside "not", "know", "nodes" turns a TheoremQA answer into False; a
multiple-choice answer that is not a letter is "A"; MAmmoTH2's MATH match is exact ("0.5" is not
"\\frac{1}{2}", "\\sqrt{2}/2" is not "\\frac{\\sqrt{2}}{2}"); MetaMath's GSM8K rounds ("2.5" -> 2)
and reads "1,450,000" as 1450; a BBH answer listing several options matches any of them.

Where we could not run upstream code as is:
- TheoremQA: upstream parses answers with latex2sympy (package latex2sympy2) and runs the result
  through a bare `eval`. We use latex2sympy2_extended (installed with math-verify) or, when it is
  absent, a plain float parse. Where the two parsers differ on lists (latex2sympy2 returns a list
  for "1, 2" or "[1, 1]", the extended one a set, tuple or interval) we split the list as
  latex2sympy2 would; other edge cases may still differ. Both read a lowercase "e" as Euler's
  number, so "4e-05" becomes 4*E - 5 = 5.872 with upstream's E = 2.718 (9 of the 800 golds are
  written that way and fail when answered verbatim). Instead of `eval` an arithmetic-only
  evaluator (numbers, tuples, lists, sets; sqrt, sin, cos, log, exp, factorial, pi, e, E);
  powers and factorials too large to compute raise instead of hanging.
- Program outputs (``mammoth2`` only, as the paper): an output containing "print(" is run whole
  as a program (`programs.run_program`, sandboxed) and "The answer is " + what it printed is scored.
- Checked against the original code (MAmmoTH2 math_eval at 9c67cb1, MetaMath at fe667b1) run
  unchanged outside the repo on the 2,658 cases of data/grading_cases: the same verdict on every
  case (bench/grading.py). utils.py's `_strip_string` strips "$" at the ends, has no
  "0.5" -> "\\frac{1}{2}" rule and does not crash on a bare "\\frac"/"\\sqrt"; `delete_extra_zero`
  falls back to evaluating "a/b"; comparison drops "\\text{" first.
- MAmmoTH2's MATH gold comes from dataset/math/MATH.json (not available); its data_loader builds
  such answers with `_strip_string` on the last \\boxed{}, so we normalise `item.gold` the same way.
"""
from __future__ import annotations

import ast
import math
import operator
import re
import unicodedata
from fractions import Fraction
from functools import lru_cache

from webinstruct.evaluation.grading import Verdict
from webinstruct.evaluation.items import Item

PROTOCOLS = ("mammoth2", "chat", "metamath")
OPEN_TRIGGERS = ("The answer is:", "The answer is", "the answer is")  # run_open.py
CHOICE_TRIGGERS = ("####", "The answer is")  # run_choice.py
METAMATH_PHRASE = "The answer is: "
CHOICE_LETTERS = tuple("ABCDEFGHIJ")  # what run_choice.py accepts as a letter
OPTION_GOLDS = ("(a)", "(b)", "(c)", "(d)", "(e)", "(f)")  # golds matched by containment


def grade_seed(item: Item, output: str, protocol: str, programs: bool = True) -> Verdict:
    """The verdict of the paper's own scorer for this protocol (see the module docstring).

    `programs` (default True): under the ``mammoth2`` protocol an output containing "print(" is
    run as a program, as MAmmoTH2's run_open.py and run_choice.py did, in a sandboxed process
    (`webinstruct.evaluation.grading.programs`), and the answer is read from what it printed; the
    verdict's note then starts with "program" (see `_mammoth2_program`). False reads such outputs
    as text. ``chat`` and ``metamath`` never run programs (their papers did not)."""
    from webinstruct.evaluation.protocols import cut_at_stop, scorer_stops
    # Generation stopped at the harness's stop strings; outputs from elsewhere are cut the same way.
    output = cut_at_stop(output or "", scorer_stops(protocol))
    if protocol in ("mammoth2", "chat"):
        return _mammoth2(item, output, programs=programs and protocol == "mammoth2")
    if protocol == "metamath":
        return _metamath(item, output)
    raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")


# ---------------------------------------------------------------- MAmmoTH2 (math_eval)

def _mammoth2(item: Item, output: str, programs: bool = False) -> Verdict:
    if item.kind == "choice":
        triggers = CHOICE_TRIGGERS
    elif item.kind == "number":
        triggers = OPEN_TRIGGERS + ("####",)
    else:
        triggers = OPEN_TRIGGERS
    notes = []
    if programs and "print(" in output:
        output, note = _mammoth2_program(output)
        notes.append(note)
    text = output.strip("\n")
    # Several answer phrases are read as the model continuing with new few-shot problems:
    # only the first paragraph counts.
    if any(text.count(t) > 1 for t in triggers):
        text = text.split("\n\n")[0]
        notes.append("repeated answer phrase: first paragraph only")
    parts = re.split("|".join(map(re.escape, triggers)), text)
    found = len(parts) > 1
    if not found:
        notes.append("no answer phrase")
    return _mammoth2_score(item, parts[-1], found, notes)


def _mammoth2_program(output: str) -> tuple[str, str]:
    """run_open.py / run_choice.py on an output containing "print(": everything before
    "### Instruction" is run whole as a program (prose or ``` fences around code make it a syntax
    error), and "The answer is " + what it printed (newlines stripped; "" after any error, exit or
    the 5 s timeout) is scored instead of the output. Returns that text and the note: "program",
    "program: no output", or "program error: <kind>" (`programs.ProgramResult.error`)."""
    from webinstruct.evaluation.grading.programs import run_program
    result = run_program(output.split("### Instruction")[0])
    printed = result.upstream_result
    if result.error:
        note = f"program error: {result.error}"
    else:
        note = "program" if printed else "program: no output"
    return "The answer is" + " " + printed, note


def _mammoth2_score(item: Item, pred: str, found: bool, notes: list[str]) -> Verdict:
    """answer_clean after the trigger split, then the comparison. `found`: a trigger was seen
    (the first candidate counts), else the last candidate of the whole output does."""
    pred = pred.strip("\n").rstrip(".").rstrip("/").strip(" ")
    kind = item.kind
    if kind == "math":
        candidates = [_math_answer(pred, found)]
    elif kind == "number":
        candidates = [_delete_extra_zero(n) for n in re.findall(r"-?\d+/?\.?\d*", pred.replace(",", ""))]
    elif kind == "choice":
        pattern = r"\b(A|B|C|D)\b" if "gpqa" in item.benchmark else r"\b(A|B|C|D|E|F|G|H|I|J)\b"
        candidates = re.findall(pattern, pred.upper()) or [pred.strip().strip(".")]
    elif kind == "theoremqa":
        answer, word = _theoremqa_answer(pred, found)
        candidates = [answer]
        if word:
            notes.append(f"contains {word!r} -> {answer}")
    elif kind == "bbh":
        candidates = [pred]
    else:
        raise ValueError(f"no MAmmoTH2 scorer for kind {kind!r}")
    answer = (candidates[0] if found else candidates[-1]) if candidates else ""
    answer = answer.rstrip(".").rstrip("/")

    if kind == "choice":
        if answer not in CHOICE_LETTERS:
            answer = "A"
            notes.append("not a letter -> A")
        return Verdict(answer, answer == item.gold, "; ".join(notes))
    if kind == "math":
        # The harness took its gold from the solution with the same find_box; where that differs
        # from the last \\boxed{} (prealgebra/177) the loader keeps the harness's reading.
        gold, gold_num = strip_math_answer(item.meta.get("mammoth2_gold", item.gold)), None
    elif kind == "number":
        gold, gold_num = _delete_extra_zero(item.gold.replace(",", "")), None
    elif kind == "theoremqa":
        gold, gold_num = item.gold, _theoremqa_gold_value(item)
    else:
        gold, gold_num = item.gold, None
    return Verdict(answer, _compare(answer, gold, gold_num), "; ".join(notes))


def _compare(answer: str, gold: str, gold_num=None) -> bool:
    """compare_answer_with_groundtruth: \\text{ dropped, options by containment, strings by
    case-insensitive equality, then numbers (4%) or number lists (sorted) when the gold has them."""
    if "\\text{" in answer:
        answer = answer.replace("\\text{", "").rstrip("}")
    if "\\text{" in gold:
        gold = gold.replace("\\text{", "").rstrip("}")
    if gold.lower() in OPTION_GOLDS:
        return gold.lower() in answer.lower()
    if answer.lower() == gold.lower():
        return True
    if gold_num is None:
        return False
    if isinstance(gold_num, (int, float)):
        return _close(_number_it(answer), gold_num)
    try:
        values = [_number_it(v) for v in list(_evaluate(answer))]
    except Exception:
        return False
    return _close_lists(values, gold_num)


def _delete_extra_zero(n: str) -> str:
    """A number without trailing decimal zeros ("18.00" -> "18", "0.50" -> "0.5"), through
    float like upstream (so "1e+20" becomes "100.0"); "a/b" is evaluated; other text unchanged."""
    try:
        value = float(n)
    except ValueError:
        try:
            value = _evaluate(n)
        except Exception:
            return n
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, float):
        return n
    s = str(value).rstrip("0")
    return str(int(s.rstrip("."))) if s.endswith(".") else str(float(s))


# MATH ----------------------------------------------------------------

def find_box(text: str) -> str:
    """The content of the last "boxed": brace-matched, or up to the next "$" for "\\boxed 5$"."""
    tail = text.split("boxed")[-1]
    if not tail:
        return ""
    if tail[0] != "{":
        return tail.split("$")[0].strip()
    depth, out = 1, []
    for ch in tail[1:]:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                break
        out.append(ch)
    return "".join(out)


def _math_answer(pred: str, found: bool) -> str:
    """MAmmoTH2's MATH answer: the last \\boxed{}, else what follows the last "=" (a number
    followed by a word keeps the number), else (no trigger) the last number; then normalised."""
    if "boxed" in pred:
        answer = find_box(pred)
    elif found:
        answer = pred.split("=")[-1].strip()
        if re.match(r"[\d\.]+\s\D+$", answer):
            answer = answer.split(" ")[0]
    else:
        numbers = re.findall(r"-?\d*\.?\d+", pred)
        answer = numbers[-1] if numbers else ""
    return strip_math_answer(answer)


def strip_math_answer(text: str, dialect: str = "mammoth2") -> str:
    """The MATH answer normaliser (Hendrycks et al.'s `_strip_string`) as each harness has it.

    ``mammoth2``: also strips "$" at the ends, never raises, no "0.5" rule. ``hendrycks`` (MetaMath's
    util.py): raises ValueError where the original crashes (a bare "\\frac" or "\\sqrt" at the end,
    more than one "\\text{ "), and rewrites exactly "0.5" as "\\frac{1}{2}".
    """
    lenient = dialect == "mammoth2"
    s = text.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    if lenient:
        s = s.strip("$")
    s = s.replace("\\$", "")
    if "\\text{ " in s:  # "\text{ " only ever introduces units in MATH
        pieces = s.split("\\text{ ")
        if not lenient and len(pieces) != 2:
            raise ValueError("more than one unit")
        s = pieces[0]
    s = s.replace("\\%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:  # "k = 5" -> "5"
        s = sides[1]
    s = _fix_sqrt(s, lenient)
    s = s.replace(" ", "")
    s = _fix_fracs(s, lenient)
    if not lenient and s == "0.5":
        s = "\\frac{1}{2}"
    return _fix_a_slash_b(s)


def _fix_sqrt(s: str, lenient: bool) -> str:
    """\\sqrt3 -> \\sqrt{3}."""
    if "\\sqrt" not in s:
        return s
    first, *rest = s.split("\\sqrt")
    out = [first]
    for piece in rest:
        if not piece and not lenient:
            raise ValueError("bare \\sqrt")
        out.append("\\sqrt{" + piece[0] + "}" + piece[1:] if piece and piece[0] != "{" else "\\sqrt" + piece)
    return "".join(out)


def _fix_fracs(s: str, lenient: bool) -> str:
    """\\frac12 -> \\frac{1}{2}, \\frac1{72} -> \\frac{1}{72}; a one-character tail leaves the
    whole string as it was."""
    first, *rest = s.split("\\frac")
    out = [first]
    for piece in rest:
        out.append("\\frac")
        if not piece:
            if lenient:
                continue
            raise ValueError("bare \\frac")
        if piece[0] == "{":
            out.append(piece)
            continue
        if len(piece) < 2:
            return s
        a, b, tail = piece[0], piece[1], piece[2:]
        out.append("{" + a + "}{" + b + "}" + tail if b != "{" else "{" + a + "}" + b + tail)
    return "".join(out)


def _fix_a_slash_b(s: str) -> str:
    """"3/4" -> "\\frac{3}{4}" for plain integers only."""
    parts = s.split("/")
    if len(parts) != 2:
        return s
    try:
        a, b = int(parts[0]), int(parts[1])
    except ValueError:
        return s
    return f"\\frac{{{a}}}{{{b}}}" if s == f"{a}/{b}" else s


# TheoremQA ------------------------------------------------------------

def _theoremqa_answer(pred: str, found: bool) -> tuple[str, str]:
    """extract_theoremqa_answer: (answer, the yes/no word that decided it or "")."""
    low = pred.lower()
    for words, value in ((("yes", "true"), "True"), (("no", "false"), "False")):
        hit = next((w for w in words if w in low), "")
        if hit:
            return value, hit
    if any(option in low for option in OPTION_GOLDS):
        return pred, ""
    if "boxed" in pred:  # models used to boxed answers from pre-training
        pred = find_box(pred)
    if not found:
        numbers = re.findall(r"-?\d*\.?\d+", pred)
        return (numbers[-1] if numbers else ""), ""
    pred = _clean_units(pred.split("=")[-1].strip())
    try:
        return str(_evaluate(_latex_text(pred))), ""
    except Exception:
        if re.match(r"-?[\d\.]+\s\D+$", pred) or re.match(r"-?[\d\.]+\s[^\s]+$", pred):
            pred = pred.split(" ")[0]  # "2.5 m/s" -> "2.5"
        return pred, ""


def _theoremqa_gold_value(item: Item):
    """The number (or list) upstream compares against; None for bool and option answers."""
    value = item.gold_value
    if value is None and item.meta.get("answer_type", "") in ("integer", "float", "list of integer", "list of float"):
        try:
            value = ast.literal_eval(item.gold)
        except (ValueError, SyntaxError):
            return None
    if isinstance(value, bool) or not isinstance(value, (list, int, float)):
        return None
    return value


def _clean_units(s: str) -> str:
    """π as 3.14, % as /100, currency and degree signs and " C" dropped."""
    s = s.replace("\\pi", "π")
    s = re.sub(r"(?<![\d}])\\?π", "3.14", s)
    s = re.sub(r"(\d)(\\?π)", r"\1*3.14", s)
    s = re.sub(r"\{(\\?π)\}", "3.14", s)
    s = re.sub(r"\*(\\?π)", "*3.14", s)
    for old, new in (("%", "/100"), ("$", ""), ("¥", ""), ("°C", ""), (" C", ""), ("°", "")):
        s = s.replace(old, new)
    return s


def _number_it(value):
    """A number from an answer: as is, via latex2sympy, or evaluated (first element of a list)."""
    if isinstance(value, (int, float)):
        return value
    try:
        text = _clean_units(value)
    except Exception:
        return None
    try:
        text = _latex_text(text)
    except Exception:
        pass
    number = _floatify(text)
    if number is not None:
        return number
    try:
        result = _evaluate(text)
        if isinstance(result, (list, tuple)):
            result = result[0]
    except Exception:
        return None
    return _floatify(result)


def _floatify(value):
    try:
        number = float(value)
    except Exception:
        return None
    return round(number) if number.is_integer() else number


def _close(pred, gold) -> bool:
    """An integer gold needs the rounded prediction; a float gold 4% relative tolerance."""
    try:
        if math.isnan(pred):
            return False
        if isinstance(gold, int):
            return round(pred) == gold
        return gold - abs(gold) * 0.04 <= pred <= gold + abs(gold) * 0.04
    except Exception:
        return False


def _close_lists(pred, gold) -> bool:
    """Same length, all numbers, element by element after sorting both (order is ignored)."""
    if not isinstance(pred, list) or len(pred) != len(gold):
        return False
    if any(not isinstance(x, (int, float)) for x in pred):
        return False
    return all(_close(p, g) for p, g in zip(sorted(pred), sorted(gold)))


try:  # latex2sympy2_extended ships with math-verify; upstream used latex2sympy2
    import sympy
    from latex2sympy2_extended import latex2sympy as _latex2sympy
except ImportError:  # pragma: no cover - depends on the environment
    _latex2sympy = None

_LIST_WRAPPERS = (("\\left[", "\\right]"), ("[", "]"), ("\\{", "\\}"), ("{", "}"))


@lru_cache(maxsize=4096)
def _latex_text(text: str) -> str:
    """str(latex2sympy(text)) as latex2sympy2 gives it; raises when it cannot parse.

    latex2sympy2 turns a comma list ("1, 2", "[1, 2]", "\\{1, 2\\}") into a Python list and
    fails on anything else that is not one expression; latex2sympy2_extended reads the same
    text as a tuple, a set or an interval ("[1, 1]" becomes {1}), so we split such lists
    ourselves and refuse the other collections. Without the package: a plain float parse.
    """
    if _latex2sympy is None:
        return str(float(text))
    items = _comma_list(text.strip())
    if items is not None:
        return "[" + ", ".join(_latex_expression(item) for item in items) + "]"
    return _latex_expression(text)


def _latex_expression(text: str) -> str:
    expr = _latex2sympy(text)
    if isinstance(expr, (sympy.Set, sympy.Tuple, list, tuple)):
        raise ValueError(f"not one expression: {text[:40]}")
    return str(expr)


def _comma_list(text: str) -> list[str] | None:
    """The elements of a top-level comma (or semicolon) list, brackets or braces around it
    allowed; None when the text is not such a list. A comma between a digit and three more
    digits is a thousands separator ("11,760"), as in latex2sympy2's number token."""
    for left, right in _LIST_WRAPPERS:
        if text.startswith(left) and text.endswith(right) and _balanced(text[len(left):-len(right)]):
            text = text[len(left):-len(right)]
            break
    for sep in (",", ";"):
        parts, depth, start = [], 0, 0
        for i, ch in enumerate(text):
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
            elif ch == sep and depth == 0 and not (
                    sep == "," and i > 0 and text[i - 1].isdigit() and re.match(r"\d{3}(?!\d)", text[i + 1:])):
                parts.append(text[start:i])
                start = i + 1
        if parts:
            return parts + [text[start:]]
    return None


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += (ch in "([{") - (ch in ")]}")
        if depth < 0:
            return False
    return depth == 0


# Arithmetic instead of eval -------------------------------------------

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_CONSTANTS = {"pi": math.pi, "e": math.e, "E": 2.718}  # upstream sets E = 2.718


def _power(base, exponent):
    if (isinstance(base, int) and isinstance(exponent, int) and abs(base) > 1
            and exponent * abs(base).bit_length() > 1_000_000):
        raise OverflowError("power too large to compute")
    return base ** exponent


def _factorial(n):
    if n > 5000:
        raise OverflowError("factorial too large to compute")
    return math.factorial(n)


_FUNCTIONS = {"sqrt": math.sqrt, "sin": math.sin, "cos": math.cos, "tan": math.tan, "log": math.log,
              "exp": math.exp, "factorial": _factorial, "abs": abs, "round": round, "pow": _power,
              "min": min, "max": max, "int": int, "float": float}


def _evaluate(text: str):
    """What upstream's `eval(text)` gives for arithmetic (numbers, + - * / // % **, the math
    names above, tuples, lists, sets); anything else raises, as eval's NameError would."""
    return _eval_node(ast.parse(text.lstrip(" \t"), mode="eval").body)


def _eval_node(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, complex)):
        return node.value
    if isinstance(node, ast.BinOp):
        left, right = _eval_node(node.left), _eval_node(node.right)
        if not all(isinstance(x, (int, float, complex)) for x in (left, right)):
            raise TypeError("arithmetic on numbers only")  # no "[0] * 10**9"
        if isinstance(node.op, ast.Pow):
            return _power(left, right)
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval_node(node.operand))
    if isinstance(node, ast.Tuple):
        return tuple(_eval_node(e) for e in node.elts)
    if isinstance(node, ast.List):
        return [_eval_node(e) for e in node.elts]
    if isinstance(node, ast.Set):
        return {_eval_node(e) for e in node.elts}
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.Call) and not node.keywords:
        func = node.func
        name = func.attr if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                             and func.value.id == "math") else getattr(func, "id", None)
        if name in _FUNCTIONS:
            return _FUNCTIONS[name](*[_eval_node(a) for a in node.args])
    raise ValueError(f"not arithmetic: {ast.dump(node)[:60]}")


# ---------------------------------------------------------------- MetaMath

def _metamath(item: Item, output: str) -> Verdict:
    parts = output.split(METAMATH_PHRASE)
    if len(parts) < 2:
        return Verdict("", False, "no answer phrase")
    tail = parts[-1]
    if item.kind == "number":
        return _metamath_gsm8k(item, tail)
    if item.kind == "math":
        answer = tail.split(".\n")[0].strip()
        answer = (answer[:-1] if answer.endswith(".") else answer).strip()
        return Verdict(answer, is_equiv(answer, item.gold))
    return _mammoth2_score(item, tail, True, [])  # MetaMath never scored these kinds


def _metamath_gsm8k(item: Item, tail: str) -> Verdict:
    """eval_gsm8k.py: the first number after the phrase ("1,000" and "3/4" included, one
    separator only), rounded to an integer, equal to the gold as floats."""
    match = re.search(r"[\-+]?\d*[\.,/]?\d+", tail.strip())
    if not match:
        return Verdict("", False, "no number after answer phrase")
    token = match.group()
    value = _metamath_number(token)
    if value is None:
        return Verdict("", False, f"not a number: {token}")
    return Verdict(str(value), float(value) == float(item.gold.replace(",", "")))


def _metamath_number(token: str) -> int | None:
    """The rounded value of the matched token; None where upstream gives up (or would crash)."""
    try:
        if "/" not in token:
            number = float(token.replace(",", ""))
            return None if number == float("inf") else round(number)
        numerator, denominator = token.split("/")[0], token.split("/")[1]
        if not (_is_number(numerator) and _is_number(denominator)):
            return None
        if denominator == "0":
            return round(float(numerator.replace(",", "")))
        frac = Fraction(token.replace(",", ""))
        return round(float(frac.numerator / frac.denominator))
    except (ValueError, OverflowError, ZeroDivisionError):
        return None


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        pass
    try:
        unicodedata.numeric(s)
        return True
    except (TypeError, ValueError):
        return False


def is_equiv(answer: str | None, gold: str | None) -> bool:
    """MetaMath's (Hendrycks') MATH equivalence: equal after the normaliser; when the
    normaliser crashes, equal as raw strings."""
    if answer is None or gold is None:
        return answer is None and gold is None
    try:
        return strip_math_answer(answer, "hendrycks") == strip_math_answer(gold, "hendrycks")
    except Exception:
        return answer == gold
