"""The seed grader reproduces MAmmoTH2's and MetaMath's scorers, their mistakes included.

Cases marked KNOWN WRONG assert the verdict the paper's scorer gives even though a reader would
judge otherwise: they pin the quirks our seed numbers must share with the published ones.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from webinstruct.evaluation.grading import Verdict
from webinstruct.evaluation.grading.seed import grade_seed, is_equiv, strip_math_answer
from webinstruct.evaluation.items import Item

DATA = Path(__file__).resolve().parents[1] / "data" / "benchmarks"


def math_item(gold: str) -> Item:
    return Item("math", "m", "q", gold, "math", task="math")


def number_item(gold: str) -> Item:
    return Item("gsm8k", "g", "q", gold, "number", task="gsm8k")


def tqa_item(value, answer_type: str) -> Item:
    return Item("theoremqa", "t", "q", str(value), "theoremqa", task="theoremqa", gold_value=value,
                meta={"answer_type": answer_type})


def choice_item(gold: str, benchmark: str = "mmlu_stem") -> Item:
    return Item(benchmark, "c", "q", gold, "choice", task=benchmark,
                choices={"A": "one", "B": "two", "C": "three", "D": "four"})


def bbh_item(gold: str, task: str = "date_understanding") -> Item:
    return Item("bbh", f"{task}/000", "q", gold, "bbh", task=task)


def test_unknown_protocol_is_refused():
    with pytest.raises(ValueError, match="unknown protocol"):
        grade_seed(math_item("5"), "The answer is 5", "zero-shot")


@pytest.mark.parametrize("output", ["The answer is (C).", "Solution: ... the answer is (B)\nThe answer is 42"])
def test_chat_uses_the_mammoth2_scorer(output):
    item = choice_item("C")
    assert grade_seed(item, output, "chat") == grade_seed(item, output, "mammoth2")


# ---------------------------------------------------------------- MAmmoTH2: MATH

@pytest.mark.parametrize("output, gold, answer, correct", [
    ("So the ratio is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}", "\\frac{1}{2}", True),
    # _strip_string rewrites \frac12 as \frac{1}{2}, \dfrac as \frac, 1/2 as \frac{1}{2}.
    ("Hence $\\boxed{\\frac12}$.", "\\frac{1}{2}", "\\frac{1}{2}", True),
    ("The answer is $\\dfrac{1}{2}$.", "\\frac{1}{2}", "\\frac{1}{2}", True),
    ("The answer is 1/2", "\\frac{1}{2}", "\\frac{1}{2}", True),
    ("The answer is x = 5.", "5", "5", True),  # text after the last "="
    ("The answer is 5 apples.", "5", "5", True),  # a number then words keeps the number
    ("The answer is $30^\\circ$", "30^\\circ", "30", True),
    ("The answer is $5$", "5", "5", True),  # this utils.py variant strips "$" at the ends
    # KNOWN WRONG: exact match after normalising; 0.5 is not \frac{1}{2} in MAmmoTH2's variant.
    ("The answer is 0.5", "\\frac{1}{2}", "0.5", False),
    # KNOWN WRONG: no symbolic equivalence.
    ("The answer is $\\sqrt{2}/2$", "\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2", False),
    # KNOWN WRONG: a number followed by a word loses the word, here \pi.
    ("The answer is 14 \\pi", "14 \\pi", "14", False),
    # No answer phrase and no \boxed: the last number of the whole output.
    ("We get 12 apples and 13 pears.", "13", "13", True),
    ("The total is 13, which we checked 3 times", "13", "3", False),  # KNOWN WRONG
    # An option gold ("(C)" once \text{ is dropped) only has to appear in the answer.
    ("The answer is (A) or (C)", "\\text{(C)}", "(A)or(C)", True),  # KNOWN WRONG
])
def test_mammoth2_math(output, gold, answer, correct):
    verdict = grade_seed(math_item(gold), output, "mammoth2")
    assert (verdict.answer, verdict.correct) == (answer, correct)


def test_mammoth2_math_repeated_phrase_keeps_the_first_paragraph():
    # Two "The answer is" read as the model writing a new few-shot problem: paragraph one counts.
    output = "Adding gives 5. The answer is 5.\n\nCheck: next one.\nThe answer is 7."
    verdict = grade_seed(math_item("5"), output, "mammoth2")
    assert verdict == Verdict("5", True, "repeated answer phrase: first paragraph only")
    # A run-on into "Problem:" never reaches the scorer: generation stopped there.
    output = "Adding gives 5. The answer is 5.\n\nProblem: next one.\nThe answer is 7."
    assert grade_seed(math_item("5"), output, "mammoth2") == Verdict("5", True, "")


def test_mammoth2_math_last_boxed_wins():
    output = "First try $\\boxed{4}$, but that was wrong; it is $\\boxed{\\frac{3}{4}}$."
    assert grade_seed(math_item("\\frac34"), output, "mammoth2").correct


def test_strip_math_answer_dialects():
    assert strip_math_answer("\\left( 3, \\dfrac{1}{2} \\right)") == "(3,\\frac{1}{2})"
    assert strip_math_answer("k = 7") == "7"
    assert strip_math_answer(".5") == "0.5"
    assert strip_math_answer("10\\%") == "10"
    assert strip_math_answer("5\\text{ cm}") == "5"
    assert strip_math_answer("2\\sqrt3") == "2\\sqrt{3}"
    assert strip_math_answer("0.5") == "0.5"
    assert strip_math_answer("0.5", "hendrycks") == "\\frac{1}{2}"
    assert strip_math_answer("1+\\frac") == "1+\\frac"
    with pytest.raises(ValueError):  # where Hendrycks' original crashes
        strip_math_answer("1+\\frac", "hendrycks")
    with pytest.raises(ValueError):
        strip_math_answer("2\\sqrt", "hendrycks")


# ---------------------------------------------------------------- MAmmoTH2: GSM8K

@pytest.mark.parametrize("output, gold, answer, correct", [
    ("She sells 9 eggs for $2 each.\nThe answer is 18.", "18", "18", True),
    ("Total 1,080 dollars.\nThe answer is $1,080.", "1080", "1080", True),
    ("9 * 2 = 18\n#### 18", "18", "18", True),  # "####" is a GSM8K trigger
    ("The answer is 18.00", "18", "18", True),  # delete_extra_zero
    ("The answer is 3/4", "0.75", "0.75", True),  # "a/b" evaluated
    ("The answer is 18 dollars, not 20.", "18", "18", True),  # first number after the phrase
    ("She makes 9 * 2 = 18 dollars", "18", "18", True),  # no phrase: last number
    # KNOWN WRONG: without the phrase the last number wins, even a check's.
    ("She makes 18 dollars. Check: 20 - 2", "18", "2", False),
    ("The answer is eighteen", "18", "", False),
])
def test_mammoth2_gsm8k(output, gold, answer, correct):
    verdict = grade_seed(number_item(gold), output, "mammoth2")
    assert (verdict.answer, verdict.correct) == (answer, correct)


# ---------------------------------------------------------------- MAmmoTH2: TheoremQA

@pytest.mark.parametrize("output, value, answer_type, correct", [
    ("The answer is 11760", 11760, "integer", True),
    ("The answer is 11760.4", 11760, "integer", True),  # integers are compared rounded
    ("The answer is 11,760", 11760, "integer", True),
    ("The answer is 1.176 \\times 10^4", 11760, "integer", True),
    ("The answer is 11761", 11760, "integer", False),
    ("The answer is 1.46", 1.42, "float", True),  # 4% relative tolerance
    ("The answer is 1.48", 1.42, "float", False),
    ("The answer is 2.5 m/s", 2.5, "float", True),  # units dropped
    ("The answer is \\frac{1}{3}", 0.333, "float", True),
    ("The answer is $\\boxed{0.157}$", 0.157, "float", True),
    ("Multiplying through gives 42.", 42, "integer", True),  # no phrase: last number
    ("The answer is [2, 1]", [1, 2], "list of integer", True),  # lists compared sorted
    ("The answer is [0.25, 0.34]", [0.333, 0.25], "list of float", True),
    ("The answer is [1, 2, 3]", [1, 2], "list of integer", False),
    ("The answer is [1, 1]", [1, 1], "list of integer", True),  # a list, not the interval {1}
    ("The answer is 1, 2", [1, 2], "list of integer", True),
    ("The answer is $\\left[\\frac{1}{3}, \\frac{1}{4}\\right]$", [0.333, 0.25], "list of float", True),
    # KNOWN WRONG: latex2sympy reads "e" as Euler's number: 4e-05 -> 4*E - 5 with E = 2.718.
    ("The answer is 4e-05", 4e-05, "float", False),
    ("The answer is 4 \\times 10^{-5}", 4e-05, "float", True),
    ("The answer is [3]", [3], "list of integer", False),  # KNOWN WRONG: "[3]" parses as 3
    ("The answer is True", True, "bool", True),
    ("The answer is: yes, it is planar.", True, "bool", True),
    ("The answer is False", True, "bool", False),
    ("The answer is (c)", "(c)", "option", True),
    ("The answer is (C).", "(c)", "option", True),
    ("The answer is (b) or (c)", "(c)", "option", True),  # KNOWN WRONG: options by containment
    # KNOWN WRONG: any "no" makes the answer False: "nodes", "know", "not", "None".
    ("The answer is 5 nodes", 5, "integer", False),
    ("The answer is 3 (we know this from Euler)", 3, "integer", False),
    ("The answer is: the sequence does not diverge", True, "bool", False),
    ("The answer is that it is not continuous", False, "bool", True),
    ("The answer is (c) None of the above", "(c)", "option", False),
    # "yes"/"true" are looked for first, so "true" wins over "not".
    ("The answer is True, since it is not bounded", True, "bool", True),
])
def test_mammoth2_theoremqa(output, value, answer_type, correct):
    assert grade_seed(tqa_item(value, answer_type), output, "mammoth2").correct is correct


def test_theoremqa_word_rule_is_noted():
    verdict = grade_seed(tqa_item(5, "integer"), "The answer is 5 nodes", "mammoth2")
    assert verdict == Verdict("False", False, "contains 'no' -> False")


def test_theoremqa_gold_value_recovered_from_answer_type():
    item = Item("theoremqa", "t", "q", "[1, 2]", "theoremqa", meta={"answer_type": "list of integer"})
    assert grade_seed(item, "The answer is (2, 1)", "mammoth2").correct


def test_theoremqa_without_latex2sympy_falls_back_to_float(monkeypatch):
    from webinstruct.evaluation.grading import seed
    seed._latex_text.cache_clear()
    monkeypatch.setattr(seed, "_latex2sympy", None)
    try:
        assert grade_seed(tqa_item(1.42, "float"), "The answer is 1.45", "mammoth2").correct
        assert grade_seed(tqa_item([1, 2], "list of integer"), "The answer is [2, 1]", "mammoth2").correct
        # LaTeX needs the parser: without it \frac{1}{3} is no number.
        assert not grade_seed(tqa_item(0.333, "float"), "The answer is \\frac{1}{3}", "mammoth2").correct
    finally:
        seed._latex_text.cache_clear()


def test_theoremqa_huge_powers_do_not_hang():
    verdict = grade_seed(tqa_item(9, "integer"), "The answer is 9^{9^{9}}", "mammoth2")
    assert verdict.correct is False


# ---------------------------------------------------------------- MAmmoTH2: multiple choice

@pytest.mark.parametrize("output, gold, benchmark, answer, correct, note", [
    ("So (C) fits.\nThe answer is (C).", "C", "mmlu_stem", "C", True, ""),
    ("The answer is: C", "C", "arc", "C", True, ""),
    ("The answer is (B) and not (C).", "B", "arc", "B", True, ""),  # first letter after the phrase
    # KNOWN WRONG: anything that is not a letter counts as "A".
    ("The answer is 42", "A", "mmlu_stem", "A", True, "not a letter -> A"),
    ("The answer is 42", "B", "mmlu_stem", "A", False, "not a letter -> A"),
    ("The answer is (E)", "A", "gpqa", "A", True, "not a letter -> A"),  # GPQA reads A-D only
    ("The answer is (E)", "E", "mmlu_stem", "E", True, ""),
    # KNOWN WRONG: "the answer is" is no trigger here; the last capital-free letter of the
    # whole output wins ("a" counts).
    ("so the answer is (B), a classic result", "B", "arc", "A", False, "no answer phrase"),
])
def test_mammoth2_choice(output, gold, benchmark, answer, correct, note):
    verdict = grade_seed(choice_item(gold, benchmark), output, "mammoth2")
    assert verdict == Verdict(answer, correct, note)


# ---------------------------------------------------------------- MAmmoTH2: BBH

@pytest.mark.parametrize("output, gold, correct", [
    ("The answer is (B).", "(B)", True),
    ("The answer is (A) or (B).", "(B)", True),  # KNOWN WRONG: options by containment
    ("Option (B) looks off, so (A) it is.", "(B)", True),  # KNOWN WRONG: no phrase, whole text
    ("The answer is (K).", "(K)", True),
    ("The answer is (K) Tuesday.", "(K)", False),  # containment only for (a)-(f)
    ("The answer is valid.", "valid", True),
    ("The answer is: valid", "valid", True),
    ("The answer is invalid.", "valid", False),
    ("The answer is yes", "Yes", True),
    ("The answer is ] ].", "] ]", True),
    ("The answer is 24.", "24", True),
    ("The answer is 24 apples.", "24", False),
])
def test_mammoth2_bbh(output, gold, correct):
    assert grade_seed(bbh_item(gold), output, "mammoth2").correct is correct


# ---------------------------------------------------------------- MetaMath

@pytest.mark.parametrize("output, gold, answer, correct, note", [
    ("9 * 2 = 18\nThe answer is: 18", "18", "18", True, ""),
    ("The answer is: $1,080.", "1080", "1080", True, ""),
    ("The answer is: -5", "-5", "-5", True, ""),
    ("The answer is: 7 and then 8", "7", "7", True, ""),
    # KNOWN WRONG: without the exact phrase "The answer is: " the output is wrong.
    ("She makes 18 dollars.\nThe answer is 18", "18", "", False, "no answer phrase"),
    ("#### 18", "18", "", False, "no answer phrase"),
    # KNOWN WRONG: values are rounded (banker's rounding) before the comparison.
    ("The answer is: 2.5", "2", "2", True, ""),
    ("The answer is: 18.7", "19", "19", True, ""),
    ("The answer is: 3/4", "1", "1", True, ""),
    # KNOWN WRONG: one thousands separator only, "1,450,000" reads as 1450.
    ("The answer is: 1,450,000", "1450000", "1450", False, ""),
    ("The answer is: eighteen", "18", "", False, "no number after answer phrase"),
])
def test_metamath_gsm8k(output, gold, answer, correct, note):
    assert grade_seed(number_item(gold), output, "metamath") == Verdict(answer, correct, note)


@pytest.mark.parametrize("output, gold, answer, correct", [
    ("The answer is: \\frac{1}{2}", "\\frac{1}{2}", "\\frac{1}{2}", True),
    ("The answer is: \\frac12", "\\frac{1}{2}", "\\frac12", True),
    ("The answer is: 0.5", "\\frac{1}{2}", "0.5", True),  # Hendrycks' one "0.5" rule
    ("The answer is: 0.50", "\\frac{1}{2}", "0.50", False),  # KNOWN WRONG
    ("The answer is: 5.\nDone.", "5", "5", True),
    ("The answer is: 5\\text{ cm}", "5", "5\\text{ cm}", True),
    ("The answer is: $\\boxed{5}$", "5", "$\\boxed{5}$", False),  # KNOWN WRONG: no unboxing
    ("So $\\boxed{5}$.\nThe answer is 5", "5", "", False),  # KNOWN WRONG: no colon
    # KNOWN WRONG: when the normaliser crashes, raw strings are compared.
    ("The answer is: 1 + \\frac", "1+\\frac", "1 + \\frac", False),
])
def test_metamath_math(output, gold, answer, correct):
    verdict = grade_seed(math_item(gold), output, "metamath")
    assert (verdict.answer, verdict.correct) == (answer, correct)


def test_is_equiv_none_handling():
    assert is_equiv(None, None) and not is_equiv("5", None) and not is_equiv(None, "5")


@pytest.mark.parametrize("item, output, correct", [
    (tqa_item(11760, "integer"), "The answer is: 11760", True),
    (tqa_item(11760, "integer"), "The answer is 11760", False),  # MetaMath's phrase is required
    (tqa_item(5, "integer"), "The answer is: 5 nodes", False),  # and MAmmoTH2's "no" rule applies
    (choice_item("C"), "The answer is: (C)", True),
    (choice_item("C"), "The answer is (C)", False),
    (choice_item("A"), "The answer is: 42", True),  # non-letter -> A
    (bbh_item("valid"), "The answer is: valid.", True),
    (bbh_item("(B)"), "The answer is (B)", False),
])
def test_metamath_other_kinds_use_the_phrase_then_mammoth2(item, output, correct):
    assert grade_seed(item, output, "metamath").correct is correct


# ---------------------------------------------------------------- real data

def _jsonl(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_every_gsm8k_gold_solution_grades_correct():
    rows = _jsonl(DATA / "gsm8k" / "GSM8K_test.jsonl.gz")
    assert len(rows) == 1319
    wrong = []
    for i, row in enumerate(rows):
        body, raw = row["response"].split("#### ")
        gold = raw.strip().replace(",", "")
        item = number_item(gold)
        metamath_style = body.rstrip() + "\nThe answer is: " + gold
        if not grade_seed(item, metamath_style, "metamath").correct:
            wrong.append((i, "metamath"))
        # "####" is one of MAmmoTH2's stop strings: its models answer "The answer is X".
        if not grade_seed(item, body.rstrip() + "\nThe answer is " + gold, "mammoth2").correct:
            wrong.append((i, "mammoth2"))
    # Solution 138 writes "Questions Mark completed ...": MetaMath's stop string "Question" ends it
    # there, as vLLM would have, before the appended answer.
    assert wrong == [(138, "metamath")]


def test_mammoth2_gsm8k_hashes_are_a_stop_string():
    # "#### 18" ends the generation before the 18 (run_open.py stops at "####"): the last number
    # before it is read, as upstream.
    assert grade_seed(number_item("18"), "9 * 2 = 18\n#### 18", "mammoth2").correct
    assert not grade_seed(number_item("18"), "9 * 2 = 18 dollars, 4 hours\n#### 18", "mammoth2").correct


def test_math_gold_solutions_grade_correct_where_upstream_would():
    """All 5,000 MATH test solutions (fast enough to take them all rather than a sample).

    MAmmoTH2 reads the solution as written: 2 of 5,000 (0.04%) fail, as they would upstream:
    intermediate_algebra/1289 boxes "\\frac{7}{5} + \\frac{1}{5} i." and the scorer strips the
    answer's final "." but not the gold's; prealgebra/177 writes "the answer is" in its prose
    after the \\boxed{}, so the text after that phrase (which has no number or box) is read.
    MetaMath reads the solution with "The answer is: <gold>" appended: 2 of 5,000 fail, the same
    intermediate_algebra/1289 (its "." is cut from the answer, not from the gold), and
    prealgebra/1465, whose solution says "Question 1:": "Question" is one of MetaMath's stop
    strings, so the appended answer is never reached.
    """
    rows = _jsonl(DATA / "math" / "MATH_test.jsonl.gz")
    assert len(rows) == 5000
    wrong = {"mammoth2": set(), "metamath": set()}
    for row in rows:
        item = Item("math", row["id"], row["problem"], row["boxed_answer_raw"], "math", task="math")
        if not grade_seed(item, row["solution"], "mammoth2").correct:
            wrong["mammoth2"].add(row["id"])
        appended = row["solution"] + "\nThe answer is: " + row["boxed_answer_raw"]
        if not grade_seed(item, appended, "metamath").correct:
            wrong["metamath"].add(row["id"])
    assert wrong == {"mammoth2": {"intermediate_algebra/1289.json", "prealgebra/177.json"},
                     "metamath": {"intermediate_algebra/1289.json", "prealgebra/1465.json"}}


def test_math_metamath_style_solution_under_mammoth2_loses_words():
    # MetaMath-style text ("The answer is: 14 \pi") scored by MAmmoTH2 keeps only "14": 32 of the
    # 5,000 appended solutions fail that way or through a repeated phrase. KNOWN WRONG.
    rows = {r["id"]: r for r in _jsonl(DATA / "math" / "MATH_test.jsonl.gz")}
    row = rows["algebra/2796.json"]
    item = Item("math", row["id"], row["problem"], row["boxed_answer_raw"], "math")
    verdict = grade_seed(item, row["solution"] + "\nThe answer is: " + row["boxed_answer_raw"], "mammoth2")
    assert (row["boxed_answer_raw"], verdict.answer, verdict.correct) == ("14 \\pi", "14", False)


def test_theoremqa_golds_answered_verbatim():
    """Each of the 800 golds written after "The answer is" grades correct except 10 (1.25%), as
    upstream's parser would have it: 9 floats written in Python's e-notation ("4e-05" reads as
    4*e - 5) and the one-element list "[3]" (parsed as the number 3, which no list equals)."""
    with gzip.open(DATA / "theoremqa" / "theoremqa_test.json.gz", "rt", encoding="utf-8") as f:
        rows = json.load(f)
    wrong = []
    for row in rows:
        item = Item("theoremqa", row["id"], row["Question"], str(row["Answer"]), "theoremqa",
                    gold_value=row["Answer"], meta={"answer_type": row["Answer_type"]})
        if not grade_seed(item, f"The answer is {row['Answer']}.", "mammoth2").correct:
            wrong.append(str(row["Answer"]))
    assert len(rows) == 800
    assert sorted(wrong) == sorted(["4e-05", "3e-36", "-6e+25", "3.5e-08", "4.7e-34", "1e-24", "3.54e-07",
                                    "1.28e-06", "4.1e-08", "[3]"])


def test_mammoth2_takes_the_harness_gold_where_it_differs():
    # prealgebra/177 says "not boxed the correct answer" in prose after its last \boxed{12}: MAmmoTH2's
    # loader cut its gold there, so no answer matches it; MetaMath's last-box rule gives 12.
    from webinstruct.evaluation.benchmarks import load
    differ = [item for item in load("math") if "mammoth2_gold" in item.meta]
    assert [item.id for item in differ] == ["prealgebra/177.json"]
    item = differ[0]
    assert not grade_seed(item, "The answer is 12", "mammoth2").correct
    assert grade_seed(item, "The answer is: 12", "metamath").correct
