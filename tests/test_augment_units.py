"""Unit tests for the augment stage's building blocks: number masking, backward questions, answer
matching, MetaMathQA formatting, reply parsers, input formats and the few-shot prompts."""
from __future__ import annotations

import json
import subprocess
import sys
from itertools import islice

import pytest

from conftest import ROOT
from webinstruct.pipeline.augment import accept, inputs, masking, prompts
from webinstruct.core.schema import WebInstructRow, to_record
from webinstruct.core.shards import open_text

BENCH = ROOT / "data" / "benchmarks"


def _rows(path, n):
    with open_text(path) as f:
        return [json.loads(line) for line in islice(f, n)]


# --- number masking -------------------------------------------------------------------------

def test_masks_each_eligible_number_once_in_order():
    q = "Tom has 3 apples and 12 pears. He eats 3 of them. How many are left?"
    masked = masking.mask_numbers(q)
    assert [m.value for m in masked] == ["3", "12", "3"]
    assert masked[0].question == "Tom has x apples and 12 pears. He eats 3 of them. How many are left?"
    assert masked[2].question == "Tom has 3 apples and 12 pears. He eats x of them. How many are left?"
    assert all(m.question.count("x") == 1 for m in masked)


def test_commas_decimals_money_percent():
    q = "A car costs $12,500. Tax is 8.25% and fees are $1,000.50, paid over 2.5 years."
    got = {m.token: (m.value, m.question) for m in masking.mask_numbers(q)}
    assert got["$12,500."][0] == "12500"
    assert got["$12,500."][1].startswith("A car costs $x. Tax")
    assert got["8.25%"] == ("8.25", q.replace("8.25%", "x%"))
    assert got["$1,000.50,"] == ("1000.5", q.replace("$1,000.50,", "$x,"))
    assert got["2.5"][0] == "2.5"
    assert len(got) == 4


def test_numbers_inside_words_and_excluded_tokens_are_not_masked():
    q = "Use x2 and 3rd and 10-minute and (5) and 3:2 and -4 and 2^5 and 5,8 and H2O and 7."
    assert [m.token for m in masking.mask_numbers(q)] == ["7."]


def test_masked_value_recovers_the_question():
    q = "Janet’s ducks lay 16 eggs per day. She sells them for $2 each, 1,000 eggs a year, 20% off."
    for m in masking.mask_numbers(q):
        prefix = m.token[: len(m.token) - len(m.token.lstrip("$"))]
        suffix = m.token[len(m.token.rstrip(",.%")):]
        restored = m.question.replace(f"{prefix}x{suffix}", m.token, 1)
        assert restored == q
        assert float(m.value) == float(m.token.strip("$,.%").replace(",", ""))


def test_number_words_follow_upstream_but_not_one_or_half():
    masked = masking.mask_numbers("She eats three eggs, one of them raw, for half an hour.")
    assert [(m.token, m.value) for m in masked] == [("three", "3")]
    assert masking.mask_numbers("She eats three eggs.", domain="math") == []


def test_math_uses_capital_x_and_keeps_math_mode():
    masked = masking.mask_numbers("If $ab = 39$, and the sum is $12$, find $a$.", domain="math")
    assert [m.question for m in masked] == ["If $ab = X$, and the sum is $12$, find $a$.",
                                            "If $ab = 39$, and the sum is $X$, find $a$."]
    assert [m.value for m in masked] == ["39", "12"]


def test_fraction_and_leading_dot():
    values = [m.value for m in masking.mask_numbers("He ate 3/4 of a pie and .5 of a cake.")]
    assert values == ["3/4", "0.5"]


def test_real_gsm8k_question_matches_gsm8k_backward_masking():
    # GSM8K_Backward's first row masks "$80,000" of this GSM8K test question as "$x".
    gsm = _rows(BENCH / "gsm8k" / "GSM8K_test.jsonl.gz", 3)[2]["query"]
    back = _rows(BENCH / "gsm8k_backward" / "GSM8K_Backward.jsonl.gz", 1)[0]
    assert gsm == back["original_question"]
    ours = {m.value: m.question for m in masking.mask_numbers(gsm)}
    assert ours[back["answer"]] == back["question"].split("\nIf we know")[0]


def test_fobar_and_sv_wording():
    fobar = masking.fobar_question("Joy reads x pages. How many hours?", "5")
    assert fobar == ("Joy reads x pages. How many hours?\nIf we know the answer to the above question "
                     "is 5, what is the value of unknown variable x?")
    assert masking.fobar_question("q?", "2", var="X").endswith("unknown variable X?")
    assert masking.sv_question("Joy reads x pages in 5 hours.") == (
        "Joy reads x pages in 5 hours. What is the value of unknown variable x?")


def test_split_question_at_last_sentence_not_inside_numbers():
    body, last = masking.split_question("A pen costs $1.50. Tom buys x pens. How much is $1.50 times x?")
    assert body == "A pen costs $1.50. Tom buys x pens."
    assert last == "How much is $1.50 times x?"
    assert masking.split_question("How many?") == ("", "How many?")
    assert masking.sv_statement(body, "He pays 6.") == "A pen costs $1.50. Tom buys x pens. He pays 6."


# --- answer matching and MetaMathQA format --------------------------------------------------

@pytest.mark.parametrize("response,gold", [
    ("So it is half.\nThe answer is: 1/2", "0.5"),
    ("The answer is: 0.5", "1/2"),
    ("The answer is 1,000", "1000"),
    ("The answer is $18.", "18"),
    ("The answer is: 50%", "50"),
    ("The answer is: 18 dollars", "18"),
    ("... so $\\boxed{\\frac{1}{2}}$.", "0.5"),
    ("Janet sells 9 eggs.\n#### 18", "18"),
    ("Solving, x = 75.\nThe value of x is $75.", "75"),
])
def test_accepts_equal_answers(response, gold):
    assert accept.accepts(response, gold)


@pytest.mark.parametrize("response,gold", [
    ("The answer is: 19", "18"),
    ("She has 18 eggs.", "18"),  # no stated final answer
    ("The answer is: 1/3", "0.33"),
    ("", "5"),
])
def test_rejects_other_answers(response, gold):
    assert not accept.accepts(response, gold)


def test_final_of():
    assert accept.final_of("Work.\nThe answer is: 42") == "42"
    assert accept.final_of("The value of X is 12.") == "12"
    assert accept.final_of("nothing stated 7") == ""


def test_finish_ends_with_metamathqa_answer_line():
    out = accept.finish("Let's think step by step.\nShe has 3 + 4 = 7.\nThe answer is 7.\n\nQuestion: next", "7")
    assert out == "She has 3 + 4 = 7.\nThe answer is: 7"
    out = accept.finish("She has 7 apples. The answer is 7", "7", hashes=True)
    assert out == "She has 7 apples.\n#### 7\nThe answer is: 7"
    out = accept.finish("So x = 5.\nThe value of x is 5.\n#### 5\nFinal answer: 5", "5")
    assert out == "So x = 5.\nThe value of x is 5.\nThe answer is: 5"
    assert out.endswith("\nThe answer is: 5") and out.count("The answer is") == 1


def test_metamathqa_row_and_types():
    assert accept.row_type("fobar", "gsm8k") == "GSM_FOBAR"
    assert accept.row_type("rephrase", "math") == "MATH_Rephrased"
    assert {accept.row_type(t, d) for t in ("ansaug", "rephrase", "sv", "fobar")
            for d in ("gsm8k", "math")} == set(accept.TYPES)
    row = accept.metamathqa_row("GSM_SV", "q x", "q 5", "r\nThe answer is: 5")
    assert list(row) == list(accept.FIELDS)
    with pytest.raises(ValueError):
        accept.metamathqa_row("GSM_Backward", "q", "q", "r")


# --- reply parsers ---------------------------------------------------------------------------

def test_parse_rephrased():
    assert prompts.parse_rephrased(" Rephrase the above question: What is 2 + 2? ") == "What is 2 + 2?"
    assert prompts.parse_rephrased("**Rephrased question:** \"What is 2 + 2?\"") == "What is 2 + 2?"
    assert prompts.parse_rephrased("Question: What's 2+2?\nRephrase the above question: What is 2 + 2?") \
        == "What is 2 + 2?"
    assert prompts.parse_rephrased("What is 2 + 2?\n\nQuestion: Another one\nRephrase the above question: x") \
        == "What is 2 + 2?"
    assert prompts.parse_rephrased("Rephrase the above question:") == ""


def test_parse_rewrite():
    assert prompts.parse_rewrite("Result: There are 5 cars in the lot.") == "There are 5 cars in the lot."
    assert prompts.parse_rewrite(" She has 8 dollars left.\n\nQuestion: more") == "She has 8 dollars left."
    assert prompts.parse_rewrite("Question: How many? The answer is 5.\nResult: There are 5.") == "There are 5."


# --- input formats ---------------------------------------------------------------------------

def test_gsm8k_rows_query_response_and_question_answer():
    row = _rows(BENCH / "gsm8k" / "GSM8K_test.jsonl.gz", 1)[0]
    seed, why = inputs.read_seed(row)
    assert why is None
    assert seed["answer"] == "18" and seed["domain"] == "gsm8k"
    assert seed["question"] == row["query"] and seed["solution"] == row["response"]
    same, _ = inputs.read_seed({"question": row["query"], "answer": row["response"]})
    assert same == seed  # id from the question text: stable across formats and reruns
    assert inputs.read_seed({"question": "q?", "answer": "Some text.\n#### 1,000"})[0]["answer"] == "1000"


def test_math_rows():
    for row in _rows(BENCH / "math" / "MATH_test.jsonl.gz", 20):
        seed, why = inputs.read_seed({k: row[k] for k in ("id", "problem", "solution")})
        assert why is None
        assert seed["domain"] == "math" and seed["id"] == row["id"]
        assert seed["answer"] == row["boxed_answer_raw"]


def test_webinstruct_rows():
    base = dict(orig_question="oq", orig_answer="oa", source="example.org", index=0, id="w1",
                pair_id="p1", doc_id="d1", url="https://example.org/q", refiner="r", model="m",
                extractor="llm:m")
    numeric = to_record(WebInstructRow(question="What is 3 * 6?", answer="3 * 6 = 18.\nThe answer is 18.",
                                       final_answer="18", **base))
    seed, why = inputs.read_seed(numeric)
    assert why is None and seed == {"id": "w1", "question": "What is 3 * 6?", "answer": "18",
                                    "solution": numeric["answer"], "domain": "gsm8k"}
    latex = to_record(WebInstructRow(question="Simplify 2/4.", answer="It is $\\boxed{\\frac{1}{2}}$.",
                                     **base))  # final_answer left "": read from the answer
    seed, _ = inputs.read_seed(latex)
    assert seed["answer"] == "\\frac{1}{2}" and seed["domain"] == "math"
    prose = to_record(WebInstructRow(question="Why is the sky blue?", answer="Rayleigh scattering.", **base))
    assert inputs.read_seed(prose) == (None, "no_final_answer")


def test_skip_reasons():
    assert inputs.read_seed({"text": "hi"}) == (None, "unknown_format")
    assert inputs.read_seed({"problem": " ", "solution": "\\boxed{1}"}) == (None, "empty_question")
    assert inputs.read_seed({"question": "q", "answer": "The answer is " + "y" * 200}) == (None, "long_final_answer")
    assert all(r in inputs.SKIP_REASONS for r in ("unknown_format", "empty_question", "no_final_answer"))


# --- few-shot data and prompt messages -------------------------------------------------------

def test_fewshot_json_is_reproducible(testdata):
    """data/fewshot/metamath.json rebuilds from MetaMath's prompt files (bundled in tests/fixtures)."""
    script = ROOT / "data" / "fewshot" / "build_metamath.py"
    done = subprocess.run([sys.executable, str(script), "--shared", str(testdata), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("task", prompts.TASKS)
@pytest.mark.parametrize("domain", prompts.DOMAINS)
def test_prompt_prefix_is_shared_and_question_last(task, domain):
    a = prompts.messages(task, domain, "Tom has 3 apples. How many?", answer="3")
    b = prompts.messages(task, domain, "Ann has 7 pears. How many?", answer="7")
    assert a[:-1] == b[:-1]  # everything before the question is byte-identical: prefix cache hits
    assert a[-1]["role"] == "user" and "Tom has 3 apples" in a[-1]["content"]
    assert a[0]["role"] == "system" and a[0]["content"].strip()
    shots = a[1:-1]
    assert len(shots) == 2 * 8  # 8 exemplars as user/assistant pairs
    assert [m["role"] for m in shots] == ["user", "assistant"] * 8
    assert all("Tom" not in m["content"] for m in a[:-1])


@pytest.mark.parametrize("task", prompts.SOLVE_TASKS)
@pytest.mark.parametrize("domain", prompts.DOMAINS)
def test_solution_exemplars_end_in_metamathqa_format(task, domain):
    for m in prompts.fixed_messages(task, domain)[2::2]:
        last = m["content"].rsplit("\n", 1)[-1]
        answer = last.removeprefix("The answer is: ")
        assert last.startswith("The answer is: ") and answer.count("{") == answer.count("}")
        assert not m["content"].startswith("Let's think step by step")
        assert accept.final_of(m["content"]) == answer


def test_exemplar_rendering_details():
    math_fobar = prompts.fixed_messages("fobar", "math")
    assert "###" not in math_fobar[1]["content"]
    assert math_fobar[1]["content"].endswith("unknown variable X?")
    assert "The answer is: \\frac{211}{243}" in prompts.fixed_messages("ansaug", "math")[2]["content"]
    gsm_sv = prompts.fixed_messages("sv", "gsm8k")
    assert any(m["content"].endswith("The value of x is $7.\nThe answer is: 7") for m in gsm_sv)
    rewrite = prompts.messages("sv_rewrite", "gsm8k", "How many toys does he have?", answer="9")
    assert rewrite[-1]["content"] == "Question: How many toys does he have? The answer is 9."
    assert rewrite[2] == {"role": "assistant", "content": "There are 5 cars in the parking lot."}
    reph = prompts.messages("rephrase", "gsm8k", "What is 2+2?")
    assert reph[-1]["content"] == "Question: What is 2+2?\nRephrase the above question:"
    with pytest.raises(ValueError):
        prompts.messages("sv_rewrite", "gsm8k", "How many?")


def test_fewshot_data_is_verbatim(testdata):
    data = prompts.fewshot("fobar", "gsm8k")
    text = (testdata / "fewshot" / "metamath" / data["file"]).read_text(encoding="utf-8")
    assert text.startswith(data["instruction"])
    for ex in data["examples"]:
        assert f"Question: {ex['question']}\nA: {ex['answer']}" in text
