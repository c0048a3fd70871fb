"""Refine's quality checks and the shared final-answer helpers, on pairs with known verdicts."""
from __future__ import annotations

import pytest

from webinstruct.core.answers import final_answer, normalize, same_answer, to_number
from webinstruct.pipeline.refine.checks import answer_check, broken_latex, check
from webinstruct.pipeline.refine.config import RefineConfig

CFG = {"min_question_chars": 15, "min_answer_chars": 2, "max_chars": 12000, "min_latin_share": 0.6,
       "drop_changed_answers": True}
assert set(CFG) <= set(vars(RefineConfig()))


@pytest.mark.parametrize("text, expected", [
    ("so $x = \\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
    ("first \\boxed{1} then \\boxed{x^{2}}", "x^{2}"),
    ("Natalia sold 72 clips.\n#### 72", "72"),
    ("Adding them up. The answer is: 1,234", "1,234"),
    ("Thus the final answer is $3.5$. Done.", "$3.5$"),
    ("Final answer: (B)", "(B)"),
    ("It is 42 apples.", ""),
])
def test_final_answer(text, expected):
    assert final_answer(text) == expected


@pytest.mark.parametrize("a, b, same", [
    ("\\frac{1}{2}", "0.5", True), ("\\dfrac{3}{4}", "3/4", True), ("50\\%", "0.5", True), ("50%", "50", True),
    ("1,234", "1234", True), ("x = 5", "5", True), ("$5$.", "5", True), ("\\text{(B)}", "(b)", True),
    ("90^\\circ", "90", True), ("3", "4", False), ("\\sqrt{2}", "1.414", False), ("", "", False),
])
def test_same_answer(a, b, same):
    assert same_answer(a, b) is same and same_answer(b, a) is same


def test_numbers_and_normal_forms():
    assert to_number("\\frac{1}{4}") == 0.25 and to_number("abc") is None and to_number("2/0") is None
    assert normalize("\\left( 1, 2 \\right)") == "(1,2)"


@pytest.mark.parametrize("text, broken", [
    ("$x^2$ and $$\\int_0^1 f$$", False),
    ("It costs $5 and the tax is $x$", False),
    ("$\\frac{1}{2$", True),
    ("$x + 1", True),
    ("\\(a\\) and \\[b", True),
    ("\\begin{align} a \\end{aligned}", True),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", False),
    ("a set \\{1, 2\\}", False),
    ("} x {", True),
])
def test_broken_latex(text, broken):
    assert (broken_latex(text) is not None) is broken


GOOD_Q = "Solve the equation $2x + 3 = 11$ for $x$."
GOOD_A = "Subtract 3: $2x = 8$, so $x = 4$.\nThe answer is: 4"


@pytest.mark.parametrize("q, a, reason", [
    (GOOD_Q, GOOD_A, None),
    ("", GOOD_A, "empty"),
    ("Solve it?", GOOD_A, "too_short"),
    (GOOD_Q, "x" * 13000, "too_long"),
    (GOOD_Q, "I'm sorry, but I cannot help with that.", "refusal"),
    (GOOD_Q, "Here is the revised answer: x = 4", "meta_comment"),
    ("Thanks a lot everyone for the help with my homework.", GOOD_A, "no_question"),
    (GOOD_Q, "So $x = \\frac{8}{2$ and done.", "broken_latex"),
    ("Найдите значение выражения $2+2$ пожалуйста?", "Ответ: четыре, это очевидно.", "language"),
    (GOOD_Q, "Subtract 3 and divide.\nThe answer is: 5", "answer_changed"),
])
def test_check_reasons(q, a, reason):
    got, info = check("solve 2x+3=11", "so x is 4\n#### 4", q, a, CFG)
    assert got == reason
    if reason is None:
        assert info["answer_check"] == "consistent" and info["final_answer"] == "4"


def test_answer_check_states():
    assert answer_check("no stated result here", "The answer is: 3") == ("unchecked", "3")
    assert answer_check("#### 3", "so it is 3") == ("changed", "")
    assert answer_check("\\boxed{0.5}", "The answer is: \\frac{1}{2}") == ("consistent", "\\frac{1}{2}")
    keep = dict(CFG, drop_changed_answers=False)
    assert check("q", "#### 3", GOOD_Q, GOOD_A, keep)[0] is None
