"""Benchmarks load as the papers' harnesses did; prompts are rendered in their exact formats."""
from __future__ import annotations

import json

import pytest

from webinstruct.evaluation import benchmarks as B
from webinstruct.evaluation.items import Item
from webinstruct.evaluation.protocols import (METAMATH_STOP, Protocol, chat_messages, cut_at_stop, exemplars,
                                  mammoth2_prompt, shots_for)

FULL_SIZES = {"theoremqa": 800, "math": 5000, "gsm8k": 1319, "gpqa": 198, "mmlu_stem": 3134, "bbh": 6511,
              "arc": 1172, "gsm8k_backward": 1270}


@pytest.mark.parametrize("name", list(B.REGISTRY))
def test_every_benchmark_loads_with_the_paper_sizes(name):
    items = B.load(name)
    assert len(items) == FULL_SIZES[name]
    assert len({it.id for it in items}) == len(items), "ids must be unique (they are the resume keys)"
    assert all(it.question and it.gold for it in items)


def test_names_parse_and_reject_unknown():
    assert B.names("all") == list(B.REGISTRY)
    assert B.names("gsm8k, math,gsm8k") == ["gsm8k", "math"]
    with pytest.raises(ValueError, match="unknown benchmark.*gsm9k.*known"):
        B.names("gsm8k,gsm9k")


def test_gold_answers_follow_the_harnesses():
    gsm = B.load("gsm8k")
    assert gsm[0].gold == "18" and gsm[0].kind == "number"
    assert all("," not in it.gold for it in gsm)
    thm = {it.id: it for it in B.load("theoremqa")}["jianyu_xu/Lah_number_6.json"]
    assert (thm.gold, thm.gold_value, thm.meta["answer_type"]) == ("11760", 11760, "integer")
    mmlu = B.load("mmlu_stem")[0]
    assert mmlu.question == ("Let p = (1, 2, 5, 4)(2, 3) in S_5 . Find the index of <p> in S_5.\n"
                             "Answer Choices: (A) 8 (B) 2 (C) 24 (D) 120")
    assert mmlu.gold == "C" and mmlu.choices["C"] == "24"
    arc = B.load("arc")
    assert all(it.gold in it.choices for it in arc), "every ARC gold names one of its parsed options"
    digit = [it for it in arc if it.gold.isdigit()]
    assert len(digit) == 22 and all(set(it.choices) <= set("123456789") for it in digit)
    bbh = [it for it in B.load("bbh") if it.choices and it.gold.startswith("(")]
    assert all(it.gold.strip("()") in it.choices for it in bbh)


def test_gpqa_options_are_seeded_recorded_and_stable():
    a, b = B.load("gpqa"), B.load("gpqa")
    assert [(it.question, it.gold) for it in a] == [(it.question, it.gold) for it in b]
    other = B.load("gpqa", seed=1)
    assert [it.gold for it in a] != [it.gold for it in other], "another seed shuffles differently"
    raw = {}
    from webinstruct.core.shards import open_text
    with open_text(B.DATA / "gpqa/gpqa_diamond.jsonl.gz") as f:
        for line in f:
            row = json.loads(line)
            raw[row["Record ID"]] = row
    for it in a:
        order = it.meta["option_order"]
        assert sorted(order) == [1, 2, 3, 4]
        assert it.choices[it.gold] == raw[it.id]["Correct Answer"].strip()
        assert it.question.startswith(raw[it.id]["Question"])
        assert "Answer Choices: (A) " in it.question
    letters = [it.gold for it in a]
    assert len(set(letters)) == 4, "the correct answer is spread over the four letters"


def test_limit_is_a_fixed_sample_in_file_order():
    full = B.load("bbh")
    s1, s2 = B.load("bbh", limit=20), B.load("bbh", limit=20)
    assert [it.id for it in s1] == [it.id for it in s2]
    positions = [full.index(it) for it in s1]
    assert positions == sorted(positions)
    assert len({it.task for it in s1}) > 5, "a sample, not the first sub-task only"
    assert len(B.load("gsm8k", limit=5000)) == 1319


def test_mammoth2_short_prompt_is_the_harness_format():
    shots = [("What is 1+1?", "1+1=2. The answer is 2"), ("What is 2*3?", "2*3=6. The answer is 6")]
    expected = ("You are supposed to provide a solution to a given problem.\n\n"
                "\nProblem:\nWhat is 1+1?\nSolution:\n1+1=2. The answer is 2\n"
                "\nProblem:\nWhat is 2*3?\nSolution:\n2*3=6. The answer is 6\n"
                "\nProblem:\nWhat is {x}?\nSolution:\n")
    assert mammoth2_prompt("What is {x}?", shots, "short") == expected
    step = ("You are supposed to provide a solution to a given problem.\n\n"
            "\nProblem:\nWhat is 1+1?\nSolution: Let's think step by step.\n1+1=2. The answer is 2\n"
            "\nProblem:\nQ\nSolution: Let's think step by step.\n")
    assert mammoth2_prompt("Q", shots[:1], "short:step") == step


@pytest.mark.parametrize("name,count", [("theoremqa", 5), ("math", 4), ("gsm8k", 4), ("gpqa", 5),
                                        ("mmlu_stem", 5), ("bbh", 3), ("arc", 8), ("gsm8k_backward", 4)])
def test_mammoth2_shot_counts_and_exemplar_keys(name, count):
    item = B.load(name, limit=1)[0]
    shots = shots_for(item)
    assert len(shots) == count
    key = item.task if name == "bbh" else {"gpqa": "gpqa_diamond", "gsm8k_backward": "gsm8k"}.get(name, name)
    assert shots == exemplars()[key][:count]
    request = Protocol("mammoth2").render(item)
    assert request.prompt.count("\nProblem:\n") == count + 1
    assert request.prompt.endswith(f"\nProblem:\n{item.question}\nSolution:\n")
    assert request.max_tokens == 2048
    assert "####" in request.stop  # run_open.py and run_choice.py both stop there
    assert "Problem:" in request.stop and "\nProblem" in request.stop


def test_bbh_takes_the_exemplars_of_its_own_subtask():
    items = {it.task: it for it in B.load("bbh")}
    sports = Protocol("mammoth2").render(items["sports_understanding"]).prompt
    dates = Protocol("mammoth2").render(items["date_understanding"]).prompt
    assert exemplars()["sports_understanding"][0][0] in sports and exemplars()["sports_understanding"][0][0] not in dates


def test_original_exemplars_keep_the_harness_control_characters():
    # MAmmoTH2's Python source wrote "\frac" in non-raw strings: form feeds reached the model in
    # the MMLU-STEM prompt (14 of them in its 5 exemplars) and TheoremQA's (2).
    for name, count in (("mmlu_stem", 14), ("theoremqa", 2)):
        item = B.load(name, limit=1)[0]
        original = Protocol("mammoth2", exemplar_set="original").render(item).prompt
        repaired = Protocol("mammoth2").render(item).prompt
        assert original.count("\x0c") == count and "\x0c" not in repaired
        restored = original.replace("\x0c", "\\f").replace("\r", "\\r").replace("\x08", "\\b")
        assert restored == repaired


def test_metamath_prompt_is_its_eval_script_format():
    item = B.load("gsm8k", limit=1)[0]
    r = Protocol("metamath").render(item)
    assert r.prompt == ("Below is an instruction that describes a task. Write a response that appropriately "
                        f"completes the request.\n\n### Instruction:\n{item.question}\n\n### Response: "
                        "Let's think step by step.")
    assert r.stop == METAMATH_STOP and r.max_tokens == 512
    assert Protocol("metamath").render(B.load("math", limit=1)[0]).max_tokens == 2048
    assert Protocol("metamath", max_new_tokens=100).render(item).max_tokens == 100


def test_chat_protocol_puts_exemplars_in_turns():
    item = Item("gsm8k", "1", "How many?", "3", "number", task="gsm8k")
    seen = []

    def template(messages):
        seen.append(messages)
        return "|".join(f"{m['role']}:{m['content']}" for m in messages) + "|assistant:"

    r = Protocol("chat", chat_template=template, shots=2).render(item)
    assert seen[0] == chat_messages("How many?", exemplars()["gsm8k"][:2])
    assert [m["role"] for m in seen[0]] == ["user", "assistant", "user", "assistant", "user"]
    assert r.prompt.endswith("user:How many?|assistant:") and r.messages == seen[0]
    with pytest.raises(ValueError, match="chat template"):
        Protocol("chat").render(item)


def test_unknown_protocol_and_form_are_refused():
    with pytest.raises(ValueError, match="protocol"):
        Protocol("lm-eval")
    with pytest.raises(ValueError, match="form"):
        Protocol("mammoth2", form="alpaca")


def test_server_stops_keep_four_the_prompt_uses():
    from webinstruct.evaluation.protocols import MAMMOTH2_STOP, server_stops
    metamath = Protocol("metamath").render(B.load("gsm8k", limit=1)[0])
    assert server_stops(metamath.stop, metamath.prompt) == ["Instruction", "Response", "Question", "USER"]
    mammoth2 = Protocol("mammoth2").render(B.load("gsm8k", limit=1)[0])
    assert server_stops(mammoth2.stop, mammoth2.prompt)[:2] == ["\nProblem", "Problem:"]
    assert "\n\nProblem" not in server_stops(MAMMOTH2_STOP, limit=20)


def test_cut_at_stop_keeps_text_before_the_first_stop():
    assert cut_at_stop("x = 2. The answer is 2\n\nProblem:\nnext", ("Problem:", "\n\nProblem")) == "x = 2. The answer is 2"
    assert cut_at_stop("no stop here", ("####",)) == "no stop here"
