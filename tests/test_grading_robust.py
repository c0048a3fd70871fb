"""The robust grader: answer reading, comparison by kind, and the worker pool's timeouts."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from webinstruct.evaluation.grading import Verdict
from webinstruct.evaluation.grading.pool import Outcome, run_isolated
from webinstruct.evaluation.grading.robust import extract_answer, grade_robust, grade_robust_many
from webinstruct.evaluation.items import Item

ROOT = Path(__file__).resolve().parents[1]


def number(gold):
    return Item("gsm8k", "0", "q", gold, "number", task="gsm8k")


def math_(gold):
    return Item("math", "0", "q", gold, "math", task="math")


def tqa(gold, answer_type):
    text = str(gold)
    return Item("theoremqa", "0", "q", text, "theoremqa", task="theoremqa", gold_value=gold,
                meta={"answer_type": answer_type})


CHOICES = {"A": "1/20", "B": "19/400", "C": "3/8", "D": "mitochondria"}


def choice(gold):
    return Item("gpqa", "0", "q", gold, "choice", task="gpqa", choices=dict(CHOICES))


def options(gold, **choices):
    return Item("mmlu_stem", "0", "q", gold, "choice", task="mmlu_stem", choices=choices)


def bbh(gold, task, choices=None):
    return Item("bbh", "0", "q", gold, "bbh", task=task, choices=choices or {})


# (item, model output, expected verdict). Known-hard negatives are marked in comments.
CASES = [
    # number (GSM8K): units, money, separators, percentages
    (number("18"), "She sells 9 eggs at $2.\nThe answer is: 18", True),
    (number("18"), "The answer is $18.", True),
    (number("18"), "The answer is 18 dollars per day.", True),
    (number("18"), "#### 18.00", True),
    (number("18"), "The answer is 18.001", False),  # integers are exact
    (number("1200"), "The answer is 1201.", False),
    (number("1200"), "The answer is 1200.0", True),
    (number("18"), "The answer is 18.1", False),
    (number("1000"), "The answer is 1,000.", True),
    (number("1000"), "The answer is \\$1,000", True),
    (number("50"), "The answer is 50%", True),  # gold 50 (a percentage question), answer with its sign
    (number("0.5"), "The answer is 50%.", True),
    (number("50"), "The answer is 0.5", False),
    (number("8"), "The answer is 5 + 3 = 8.", True),
    (number("-5"), "The answer is 5", False),
    (number("18"), "So she makes 9 * 2 = 18 dollars every day.", True),  # last number
    (number("18"), "She makes 9 * 2 = 18 dollars, or 126 a week.", False),  # last number is 126
    (number("18"), "The answer is 18 (9 eggs at $2 each).", True),
    (number("18"), "The answer is not obvious yet. 9 eggs at $2 make 18.", True),  # phrase without a number
    (number("3"), "The answer is \\frac{9}{3}", True),
    (number("8"), "The answer is $2^3$", True),  # needs sympy
    # math: fractions, LaTeX variants
    (math_("\\frac{1}{2}"), "The answer is $0.5$.", True),
    (math_("\\frac{1}{2}"), "$\\boxed{\\dfrac12}$", True),
    (math_("\\frac{1}{2}"), "\\boxed{1/2}", True),
    (math_("\\frac{1}{3}"), "\\boxed{0.33}", False),
    (math_("\\frac{9}{4}"), "\\boxed{2.25}", True),
    (math_("-\\frac{1}{3}"), "\\boxed{\\frac{-1}{3}}", True),
    (math_("\\frac{\\sqrt{3}}{3}"), "\\boxed{\\frac{1}{\\sqrt{3}}}", True),
    (math_("2\\sqrt{2}"), "\\boxed{\\sqrt{8}}", True),
    (math_("12\\sqrt{2}"), "\\boxed{\\sqrt{288}}", True),
    (math_("2\\sqrt{2}"), "\\boxed{\\sqrt{6}}", False),
    (math_("2\\pi"), "\\boxed{\\pi \\cdot 2}", True),
    (math_("\\pi"), "\\boxed{3.14}", False),
    (math_("30^\\circ"), "The answer is $30$.", True),
    (math_("30"), "\\boxed{30^{\\circ}}", True),
    (math_("10\\%"), "\\boxed{10}", True),
    (math_("10\\%"), "\\boxed{0.1}", True),
    (math_("\\text{(C)}"), "The answer is (C)", True),
    (math_("\\text{(C)}"), "\\boxed{\\text{C}}", True),
    (math_("\\text{(C)}"), "The answer is (D)", False),
    (math_("\\text{Evelyn}"), "The answer is Evelyn.", True),
    (math_("\\text{Evelyn}"), "\\boxed{\\text{Nevely}}", False),  # same letters: a product to sympy
    (math_("\\text{odd}"), "\\boxed{\\text{even}}", False),
    (math_("(3, -\\frac{\\pi}{2})"), "\\boxed{\\left( 3, -\\frac{\\pi}{2} \\right)}", True),
    (math_("(1,2)"), "\\boxed{(2,1)}", False),  # points: order matters
    (math_("1,2"), "\\boxed{2, 1}", True),  # a list of solutions: it does not
    (math_("\\{-2, 3\\}"), "\\boxed{3, -2}", True),
    (math_("[2,5)"), "\\boxed{[2, 5)}", True),
    (math_("[2,5)"), "\\boxed{(2, 5]}", False),
    (math_("(-\\infty, -2) \\cup (3, \\infty)"), "\\boxed{(-\\infty,-2)\\cup(3,\\infty)}", True),
    (math_("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"), "\\boxed{\\begin{pmatrix}1\\\\2\\end{pmatrix}}", True),
    (math_("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}"),
     "\\boxed{\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}}", True),
    (math_("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"), "\\boxed{\\begin{pmatrix}2\\\\1\\end{pmatrix}}", False),
    (math_("5"), "\\boxed{x = 5}", True),
    (math_("x^2+2x+1"), "\\boxed{(x+1)^2}", True),
    (math_("y = 2x + 3"), "\\boxed{y=3+2x}", True),
    (math_("3x-y+13=0"), "\\boxed{3x+4y+14=0}", False),  # older math-verify judged these equal
    (math_("\\frac{1}{2004!}"), "\\boxed{\\frac{1}{2006!}}", False),  # math-verify says equal; our veto
    (math_("1000"), "\\boxed{1,000}", True),
    (math_("\\$18.90"), "\\boxed{18.90}", True),
    (math_("5"), "\\boxed{5\\text{ cm}}", True),
    (math_("\\frac{7}{2}"), "\\boxed{3.5}", True),
    (math_("1+2i"), "\\boxed{2i+1}", True),
    (math_("40_9"), "\\boxed{40_{9}}", True),  # base-9 numerals: same digits
    (math_("40_9"), "\\boxed{36}", False),
    (math_("\\frac{12}{5,\\!525}"), "\\boxed{\\frac{12}{5525}}", True),
    (math_("y = 2x"), "\\boxed{2}", False),
    (math_("8"), "\\boxed{8x - 1}", False),
    # theoremqa
    (tqa(11760, "integer"), "The answer is 11760.", True),
    (tqa(100, "integer"), "The answer is 103", False),  # integers are exact
    (tqa(100.0, "float"), "The answer is 103", True),  # floats within 4%
    (tqa(100, "integer"), "The answer is 105", False),
    (tqa(0.0012, "float"), "The answer is 1.2e-3", True),
    (tqa(0.0012, "float"), "The answer is $1.2 \\times 10^{-3}$", True),
    (tqa(0.0012, "float"), "The answer is 1.2 \\cdot 10^{-2}", False),
    (tqa(0.333, "float"), "The answer is \\frac{1}{3}", True),
    (tqa(0.866, "float"), "The answer is $\\frac{\\sqrt{3}}{2}$", True),  # needs sympy
    (tqa(5.333, "float"), "The answer is 16/3 m/s", True),
    (tqa(0.5, "float"), "The answer is 50%", True),
    (tqa(True, "bool"), "The answer is True.", True),
    (tqa(True, "bool"), "The answer is yes", True),
    (tqa(False, "bool"), "The answer is no, it does not converge.", True),
    (tqa(False, "bool"), "The answer is: I do not know", False),  # "not"/"know" are not "no"
    (tqa(False, "bool"), "The answer is nothing", False),
    (tqa(False, "bool"), "The answer is False", True),
    (tqa([1, 2], "list of integer"), "The answer is [2, 1]", False),  # a TheoremQA list is ordered
    (tqa([1, 2], "list of integer"), "The answer is [1, 2]", True),
    (tqa([1, 2], "list of integer"), "The answer is [1, 2, 3]", False),
    (tqa([0.333, 0.25], "list of float"), "The answer is [\\frac{1}{3}, 0.25]", True),
    (tqa([0.333, 0.25], "list of float"), "The answer is (0.33, 0.5)", False),
    (tqa("(c)", "option"), "The answer is (c)", True),
    (tqa("(c)", "option"), "The answer is (C).", True),
    (tqa("(c)", "option"), "The answer is (a)", False),
    # multiple choice: many phrasings, or the option's text
    (choice("B"), "The answer is (B).", True),
    (choice("B"), "The answer is B) 19/400", True),
    (choice("B"), "The answer is B.", True),
    (choice("B"), "The correct answer is B: 19/400.", True),
    (choice("B"), "**Answer:** b", True),
    (choice("B"), "Answer: **B**", True),
    (choice("B"), "The answer is option B", True),
    (choice("B"), "The answer is \\boxed{B}", True),
    (choice("B"), "I think option B is correct.", True),
    (choice("B"), "The answer is 19/400", True),
    (choice("B"), "The answer is 0.0475", True),
    (choice("D"), "The answer is Mitochondria.", True),
    (choice("B"), "answer: c", False),
    (choice("B"), "The answer is (A) 1/20.", False),
    (choice("B"), "The answer is a fraction", False),  # "a" in prose is not option A; nor B
    (choice("B"), "I am not sure.", False),
    # ARC numbers some options "(1)".."(4)"
    (options("2", **{"1": "wet palms", "2": "dry palms"}), "The answer is (2).", True),
    (options("2", **{"1": "wet palms", "2": "dry palms"}), "The answer is dry palms", True),
    (options("2", **{"1": "wet palms", "2": "dry palms"}), "The answer is (1).", False),
    # an option that reads like a letter, or starts with one, is taken by its text (GPQA, MMLU have such)
    (options("B", A="2c", B="c", C="c/2"), "The answer is c", True),
    (options("C", A="A proton", B="An atom", C="A neutral atom has no charge"),
     "The answer is A neutral atom has no charge.", True),
    (options("C", A="BB BB", B="Bb bb", C="Bb Bb"), "The answer is Bb Bb", True),
    (options("D", A="x", B="y", C="nsp10 binds nsp14", D="nsp10 binds nsp14. It forms a complex."),
     "The answer is nsp10 binds nsp14. It forms a complex.", True),  # a sentence end inside the option
    # BBH
    (bbh("(B)", "date_understanding", {"A": "05/01/2021", "B": "02/23/2021"}), "So the answer is (B).", True),
    (bbh("(B)", "date_understanding", {"A": "05/01/2021", "B": "02/23/2021"}), "So the answer is 02/23/2021.", True),
    (bbh("(B)", "date_understanding", {"A": "05/01/2021", "B": "02/23/2021"}), "So the answer is (A).", False),
    (bbh("True", "boolean_expressions"), "So the answer is True.", True),
    (bbh("False", "boolean_expressions"), "So the answer is True.", False),
    (bbh("valid", "formal_fallacies"), "So the answer is valid.", True),
    (bbh("invalid", "formal_fallacies"), "So the answer is valid.", False),
    (bbh("valid", "formal_fallacies"), "So the answer is invalid.", False),
    (bbh("Yes", "navigate"), "So the answer is yes.", True),
    (bbh("no", "sports_understanding"), "So the answer is No, it is implausible.", True),
    (bbh("No", "navigate"), "So the answer is not clear.", False),
    (bbh("24", "multistep_arithmetic_two"), "So the answer is 24.", True),
    (bbh("-24", "multistep_arithmetic_two"), "So the answer is 24.", False),
    (bbh("] ]", "dyck_languages"), "So the answer is ]].", True),
    (bbh("] ]", "dyck_languages"), "So the answer is ] ) ]", False),
    (bbh("syndrome therefrom", "word_sorting"), "So the answer is syndrome  therefrom.", True),
    (bbh("syndrome therefrom", "word_sorting"), "So the answer is therefrom syndrome.", False),
]


@pytest.mark.parametrize("item,output,correct", CASES, ids=[f"{c[0].kind}-{i}" for i, c in enumerate(CASES)])
def test_grade_robust(item, output, correct):
    verdict = grade_robust(item, output)
    assert verdict.correct is correct, verdict
    assert verdict.note != "timeout"


def test_pool_agrees_with_in_process_grading():
    pairs = [(item, output) for item, output, _ in CASES]
    verdicts = grade_robust_many(pairs, workers=2, timeout=20.0)
    assert [v.correct for v in verdicts] == [c for _, _, c in CASES]
    assert verdicts == [grade_robust(item, output) for item, output in pairs]


@pytest.mark.parametrize("output,answer,note", [
    ("First \\boxed{3}, then \\boxed{\\frac{1}{2}}. The answer is 7", "7", ""),  # the last statement wins
    ("The answer is 7. Check: \\boxed{\\frac{1}{2}}", "\\frac{1}{2}", ""),
    ("The answer is: 18", "18", ""),
    ("The final answer is:\n\n$$\\frac{3}{4}$$", "\\frac{3}{4}", ""),
    ("Final Answer: The final answer is $42$. I hope it is correct.", "42", ""),
    ("Work.\n#### 1,234", "1,234", ""),
    ("Answer: 3.5.", "3.5", ""),
    ("3. He has 16 cars left.\n4. The answer is 16\nThe answer is ", "16", ""),  # the last phrase is empty
    ("It costs 3 + 4 = 7 dollars.", "7", "last number"),
    ("no idea", "", "no answer"),
])
def test_extract_answer(output, answer, note):
    assert extract_answer(number("1"), output) == (answer, note)


def test_multiple_choice_without_a_number_fallback():
    # A choice question never falls back to "the last number": 19 would not be an option.
    assert extract_answer(choice("B"), "The ratio is 19 to 400") == ("", "no answer")
    assert extract_answer(choice("B"), "Options listed.\n(C)") == ("C", "letter in text")


def test_bool_reads_whole_words_of_the_answer_only():
    # "no" inside another word or in the reasoning before the answer phrase does not count.
    item = tqa(True, "bool")
    assert grade_robust(item, "There is no doubt.\nThe answer is True").correct
    assert grade_robust(item, "The answer is: nonetheless true").correct


POWER_TOWER = "\\boxed{9^{9^{9^{9}}}}"


def test_pathological_answer_times_out_and_the_pool_keeps_working():
    pairs = [(math_("\\frac{1}{2}"), "\\boxed{\\frac{2}{4}}"),
             (math_("1"), POWER_TOWER),
             (math_("2\\sqrt{2}"), "\\boxed{\\sqrt{8}}"),
             (math_("1"), POWER_TOWER),
             (math_("x^2+2x+1"), "\\boxed{(x+1)^2}"),
             (number("18"), "The answer is 18")]
    start = time.monotonic()
    verdicts = grade_robust_many(pairs, workers=2, timeout=2.0)
    elapsed = time.monotonic() - start
    assert [v.correct for v in verdicts] == [True, False, True, False, True, True]
    assert verdicts[1] == Verdict("9^{9^{9^{9}}}", False, "timeout")
    assert verdicts[3].note == "timeout"
    assert verdicts[2].note == "symbolic" and verdicts[4].note == "symbolic"
    # Two timeouts of 2 s plus worker starts (sympy import) and replacements; far below a hang.
    assert elapsed < 60, elapsed


def test_in_process_grading_has_a_deadline_in_the_main_thread():
    start = time.monotonic()
    assert grade_robust(math_("1"), POWER_TOWER, timeout=1.0) == Verdict("9^{9^{9^{9}}}", False, "timeout")
    assert time.monotonic() - start < 30


def test_pool_from_a_thread_and_results_in_order():
    # The caller may hold threads or be one: workers are fresh interpreters, not forks.
    pairs = [(math_(f"{k}\\sqrt{{2}}"), f"\\boxed{{\\sqrt{{{2 * k * k}}}}}" if k % 3 else "\\boxed{\\sqrt{7}}")
             for k in range(1, 13)]
    out: list = []
    t = threading.Thread(target=lambda: out.append(grade_robust_many(pairs, workers=3, timeout=20.0)))
    t.start()
    t.join(120)
    assert not t.is_alive()
    verdicts = out[0]
    assert [v.correct for v in verdicts] == [bool(k % 3) for k in range(1, 13)]
    assert all(v.note == "symbolic" for v in verdicts)
    assert [v.answer for v in verdicts] == [extract_answer(item, o)[0] for item, o in pairs]


def test_pool_works_from_a_script_without_a_main_guard(tmp_path):
    # multiprocessing's "spawn" would re-run such a script in every worker and fail.
    script = tmp_path / "grade_it.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from webinstruct.evaluation.items import Item\n"
        "from webinstruct.evaluation.grading.robust import grade_robust_many\n"
        "item = Item('math', '0', 'q', '2\\\\sqrt{2}', 'math')\n"
        "print(grade_robust_many([(item, '\\\\boxed{\\\\sqrt{8}}')])[0].note)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "symbolic"


def test_easy_answers_are_decided_without_workers(monkeypatch):
    import webinstruct.evaluation.grading.pool as pool

    def refuse(*args, **kwargs):
        raise AssertionError("the pool was started for answers plain checks decide")

    monkeypatch.setattr(pool, "run_isolated", refuse)
    pairs = []
    for k in range(500):
        gold = str(k * 7)
        pairs += [(number(gold), f"The answer is {gold}" if k % 2 else f"The answer is ${k * 7 + 1}")]
    pairs += [(choice("B"), "The answer is (B)."), (math_("\\frac{1}{2}"), "\\boxed{0.5}"),
              (bbh("valid", "formal_fallacies"), "So the answer is valid."), (tqa(True, "bool"), "The answer is yes")]
    verdicts = grade_robust_many(pairs)
    assert len(verdicts) == len(pairs)
    assert [v.correct for v in verdicts[:500]] == [bool(k % 2) for k in range(500)]
    assert all(v.correct for v in verdicts[500:])


def test_many_symbolic_answers_complete():
    pairs = [(math_(f"\\frac{{{k}}}{{2}}\\sqrt{{2}}"), f"\\boxed{{\\frac{{{k}\\sqrt{{2}}}}{{2}}}}")
             for k in range(1, 41)]
    verdicts = grade_robust_many(pairs, workers=2, timeout=20.0)
    assert all(v.correct and v.note == "symbolic" for v in verdicts), verdicts


# The pool itself, on plain functions (module level so that workers can import them).

def _square(x):
    return x * x


def _sleep_then(x):
    time.sleep(x)
    return x


def _crash(x):
    import os
    os._exit(3)


def _fail(x):
    raise ValueError(f"bad {x}")


def test_pool_outcomes():
    assert run_isolated(_square, [(k,) for k in range(7)], workers=3, timeout=10) == \
        [Outcome("ok", k * k) for k in range(7)]
    outcomes = run_isolated(_sleep_then, [(0,), (30,), (0,)], workers=1, timeout=1.0)
    assert [o.status for o in outcomes] == ["ok", "timeout", "ok"]
    assert [o.status for o in run_isolated(_crash, [(1,), (2,)], workers=1, timeout=10)] == ["crashed", "crashed"]
    failed = run_isolated(_fail, [(1,)], workers=1, timeout=10)
    assert failed == [Outcome("error", None, "ValueError: bad 1")]
    assert run_isolated(_square, [], workers=2) == []


def test_pool_reports_workers_that_cannot_start():
    outcomes = run_isolated(_square, [(1,), (2,)], workers=1, timeout=10, preload=("no_such_module_here",))
    assert [o.status for o in outcomes] == ["error", "error"]
    assert "workers failed to start" in outcomes[0].detail


# The kinds of reading issue 17 named, each as it reaches the grader (protocol, output, verdict).
TEMPS = {"A": "65° F", "B": "72° F", "C": "80° F", "D": "90° F"}


def temps(gold):
    return Item("arc", "0", "q", gold, "choice", task="arc", choices=dict(TEMPS))


KINDS = [
    (number("7"), "mammoth2", "3+4=7. The answer is 7\n\nProblem: Tom has 21. The answer is 21", True),  # run-on
    (number("7"), "metamath", "3+4=7. The answer is: 7\n\nQuestion: Tom has 21. The answer is: 21", True),
    (number("21"), "mammoth2", "3+4=7. The answer is 7\n\nProblem: Tom has 21. The answer is 21", False),
    (temps("B"), "chat", "72° F", True),  # the option's text alone
    (temps("B"), "chat", "The answer is (b)", True),
    (temps("B"), "chat", "B, I think.", True),
    (temps("D"), "chat", "(D) is correct, since the others are too cold.", True),
    (temps("A"), "chat", "The answer is option A because it is coldest.", True),
    (temps("B"), "chat", "The answer is option 2", True),  # the second option
    (temps("B"), "chat", "The answer is either (B) or (D).", False),  # a hedge
    (temps("B"), "chat", "It is either (B) or (D).", False),
    (temps("B"), "chat", "It is not (A). I'd go with (B).", True),
    (number("1200"), "chat", "The answer is 1201", False),
    (tqa(5280, "integer"), "chat", "The answer is 5281", False),
    (number("12"), "chat", "The answer is twelve.", True),
    (number("205"), "chat", "The answer is two hundred and five.", True),
    (number("-5"), "chat", "The answer is negative 5.", True),
    (number("22333444"), "chat", "The answer is $22,\\!333,\\!444$.", True),
    (math_("(3,250)"), "chat", "The answer is $(3,250)$", True),
    (math_("(3,250)"), "chat", "The answer is $(3250)$", False),  # a pair is not a number
    (math_("-\\frac{3}{7}"), "chat", "Simplifying, x = -\\dfrac{3}{7}.", True),  # a bare final expression
    (math_("(2,5]"), "chat", "So the solution set is\n$(2,5]$", True),
    (math_("(-\\infty,3]"), "chat", "$y \\leq 3$ is the solution", True),
    (number("5"), "chat", "The value is \\frac15", False),  # not the denominator
    (math_("2, 3"), "chat", "The roots are $\\boxed{2}$ and $\\boxed{3}$.", True),  # several boxes
    (math_("\\frac{1}{2}"), "chat", "Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.", True),
    (number("7"), "chat", "\\boxed{5}. Wait, I made an error. The answer is 7.", True),  # a later statement wins
    (tqa(True, "bool"), "chat", "We check each condition. So the statement is true.", True),
    (tqa(False, "bool"), "chat", "Hence the claim is not true.", True),
    (math_("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}"), "chat",
     "So the matrix is $\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}$.", True),
]


@pytest.mark.parametrize("item,protocol,output,correct", KINDS, ids=[f"{c[0].kind}-{i}" for i, c in enumerate(KINDS)])
def test_reading_kinds(item, protocol, output, correct):
    verdict = grade_robust_many([(item, output)], workers=1, timeout=20.0, protocol=protocol)[0]
    assert verdict.correct is correct, verdict


@pytest.mark.parametrize("output,printed", [
    ("x = 55\ny = x - 5\nprint(y)", "50"),
    ("Let's write a program.\n```python\nimport math\nvalue = 7.791\nprint(round(value, 6))\n```", "7.791"),
    ("from fractions import Fraction\nbest = max(Fraction(x + y, x - y) for x in range(-5, -2) "
     "for y in range(2, 5))\nprint(best)", "3/7"),
    ("eggs = 16 - 3 - 4\nprint('The answer is', eggs * 2)", "The answer is 18"),
    ("def solution():\n    print(5)\n", None),  # defined, never called: prints nothing
    ("total = 120\ncount = 0\nprint(total / count)", None),  # an error: no reading
    ("answer = math.sqrt(16)\nprint(answer)", None),  # math not imported
    ("import os\nprint(os.getcwd())", None),  # other modules are not read
    ("for i in range(3):\n    print(i)", None),  # loops are not read
    ("print(sum(i for i in range(10**9)))", None),  # too long to read
])
def test_program_reading(output, printed):
    from webinstruct.evaluation.grading.program_text import printed_value
    assert printed_value(output) == printed


def test_a_program_output_is_graded_by_what_it_prints_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    program = f"open({str(marker)!r}, 'w').write('x')\nprint(18)"
    assert not grade_robust(number("18"), program).correct  # not read: a call it does not know
    assert not marker.exists()
    assert grade_robust(number("18"), "a = 9\nb = 2\nprint(a * b)").correct


PAIRS = {"A": "True, True", "B": "False, False", "C": "True, False", "D": "False, True"}
MAXWELL = {"A": "The one related to the divergence of the magnetic field.",
           "B": "The one related to the circulation of the magnetic field and the flux of the electric field.",
           "C": "The ones related to the divergence and the curl of the magnetic field.",
           "D": "The ones related to the circulation of the electric field and the divergence of the magnetic field."}

MORE_KINDS = [  # kinds found by the third held-out set
    (options("B", **PAIRS), "chat", "**Statement 1:** False.\n**Statement 2:** False.\n\nBoth statements are false.", True),
    (options("C", **PAIRS), "chat", "Statement 1 is true. Statement 2 is false, since normality is not transitive.", True),
    (options("D", **MAXWELL), "mammoth2",
     "The answer is the ones related to the divergence of the magnetic field and the circulation of the electric field.", True),
    (options("C", A="1", B="2", C="2,3", D="3"), "chat", "Checking each value.\n\nThe zeros are 2 and 3.", True),
    (options("D", A="0", B="1", C="2", D="22"), "chat", "So $-160 + 182 = 22$.\n\nThe product is 22 in $\\mathbb{Z}_{26}$.", True),
    (options("C", A="(x + 1)(x − 1)", B="(x + 1)(x − 2)", C="(x + 1)(x − 4)(x − 2)", D="(x − 1)^3"), "mammoth2",
     "The answer is (x + 1)(x - 4)(x - 2).", True),  # an ASCII minus for the option's U+2212
    (tqa([1, 6], "list of integer"), "mammoth2", "So the eigenvalues are 1 and 6.\nTherefore, the answer is 1 and 6.", True),
    (tqa(True, "bool"), "chat", "So the sequence is periodic with period N.\n\nThe statement holds.", True),
    (tqa(True, "bool"), "chat", "So the sequence is not periodic.\n\nThe statement does not hold.", False),
    (math_("y = -\\frac{1}{4}"), "mammoth2", "The directrix is $4y + 1 = 0$.\nThe answer is $4y+1=0$", True),  # the same line
    (math_("y = -\\frac{1}{4}"), "mammoth2", "The answer is $4y-1=0$", False),
    (math_("\\frac{648}{\\pi}"), "mammoth2", "The answer is 648/\\pi square centimeters", True),
    (number("72000"), "mammoth2", "So 5 * 14,400 jellyfish, which is seventy-two thousand jellyfish.", True),
]


@pytest.mark.parametrize("item,protocol,output,correct", MORE_KINDS, ids=[f"{c[0].kind}-{i}" for i, c in enumerate(MORE_KINDS)])
def test_reading_more_kinds(item, protocol, output, correct):
    verdict = grade_robust_many([(item, output)], workers=1, timeout=20.0, protocol=protocol)[0]
    assert verdict.correct is correct, verdict


def test_theoremqa_option_text_is_read_from_the_question():
    item = Item("theoremqa", "0", "Which is true? (a) f is increasing on [0,1]. (b) f is constant. Which option is correct?",
                "(a)", "theoremqa", task="theoremqa", meta={"answer_type": "option"})
    assert grade_robust(item, "That means f never decreases.\nThe answer is: f is increasing on [0,1]").correct
    assert not grade_robust(item, "The answer is: f is constant").correct
