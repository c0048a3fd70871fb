"""The augment stage's prompts: MetaMath's few-shot prompts as chat messages.

The exemplars are `data/fewshot/metamath.json` (MetaMath's generation prompts written down as
data, `data/fewshot/build_metamath.py`). Every request of a task and domain starts with the same
turns, a system message with the instruction and then the exemplars as user/assistant pairs, and
the variable question comes last, so a server's prefix cache reuses everything before it.

Rendering changes the exemplars only where our output format differs from MetaMath's prompts:
solutions drop the "Let's think step by step." opener (MetaMathQA responses have none) and end
with "The answer is: X" (the files end "The answer is X", or "The value of x is X." for SV and
FOBAR, after which the line is added, as in MetaMathQA); MATH FOBAR and SV questions lose the
"### " marker and the "$X$" of the closing sentence, which the released rows do not have. The
instruction headers are MetaMath's (ansaug has none upstream; ours is in `INSTRUCTIONS`), plus
one line of ours saying what the reply must contain.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from webinstruct.core.resources import data_path

FEWSHOT = data_path("fewshot", "metamath.json")
PROMPT_VERSION = 1
TASKS = ("ansaug", "rephrase", "sv_rewrite", "sv", "fobar")
DOMAINS = ("gsm8k", "math")
SOLVE_TASKS = ("ansaug", "sv", "fobar")

# Ours: the header of tasks that have none upstream, and the reply-format line added to each.
INSTRUCTIONS = {"ansaug": "You are an AI assistant that solves math problems step by step.\n"
                          "Follow the given examples and answer the question."}
FORMAT_LINES = {
    "ansaug": 'Finish with a last line of the form "The answer is: <final answer>".',
    "sv": 'Finish with a last line of the form "The answer is: <value of the unknown>".',
    "fobar": 'Finish with a last line of the form "The answer is: <value of the unknown>".',
    "rephrase": "Reply with the rephrased question only.",
    "sv_rewrite": "Reply with the statement only.",
}
REPHRASE_LABEL = "Rephrase the above question:"
ECHO_LABELS = ("Rephrase the above question:", "Rephrased question:", "Rephrased:", "Result:",
               "Statement:", "Declarative statement:", "Question:", "Answer:", "A:")
_OPENER = re.compile(r"^\s*Let's think step by step\.?\s*", re.I)
_STATED = re.compile(r"^The answer is:?\s*(.+)$")
_VALUE = re.compile(r"value of \$?[xX]\$? is\s*(.+)$", re.I)


@lru_cache(maxsize=1)
def fewshot_data() -> dict:
    return json.loads(FEWSHOT.read_text(encoding="utf-8"))


def fewshot(task: str, domain: str) -> dict:
    """The raw entry {instruction, answer_label, examples, file} of one task and domain."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; choose from {', '.join(DOMAINS)}")
    return fewshot_data()["tasks"][task][domain]


def _clean_answer(answer: str) -> str:
    """An exemplar's final answer: no trailing period or "$", no unbalanced closing brace
    ("\\frac{211}{243}}" in MetaMath's MATH exemplars)."""
    a = answer.strip().rstrip(".").strip().replace("$", "")
    while a.endswith("}") and a.count("}") > a.count("{"):
        a = a[:-1]
    return a


def render_solution(answer: str) -> str:
    """An exemplar solution as the assistant turn: no opener, last line "The answer is: X"."""
    lines = _OPENER.sub("", answer.strip(), count=1).split("\n")
    stated = _STATED.match(lines[-1])
    if stated:
        lines[-1] = f"The answer is: {_clean_answer(stated.group(1))}"
    else:
        value = _VALUE.search(lines[-1])
        if not value:
            raise ValueError(f"exemplar without a final answer: {lines[-1]!r}")
        lines.append(f"The answer is: {_clean_answer(value.group(1))}")
    return "\n".join(lines)


def _render_question(question: str) -> str:
    return question.replace("\n### ", "\n").replace("unknown variable $X$?", "unknown variable X?")


def user_content(task: str, question: str, answer: str | None = None) -> str:
    """The user turn: "Question: ..." as in MetaMath's files (sv_rewrite adds the answer)."""
    if task == "rephrase":
        return f"Question: {question}\n{REPHRASE_LABEL}"
    if task == "sv_rewrite":
        if answer is None:
            raise ValueError("sv_rewrite needs the answer")
        return f"Question: {question} The answer is {answer}."
    return f"Question: {question}"


@lru_cache(maxsize=None)
def fixed_messages(task: str, domain: str) -> tuple[dict, ...]:
    """The instruction and the exemplars: identical for every question of a task and domain."""
    entry = fewshot(task, domain)
    instruction = entry["instruction"] or INSTRUCTIONS[task]
    msgs = [{"role": "system", "content": f"{instruction}\n{FORMAT_LINES[task]}"}]
    for ex in entry["examples"]:
        if task in SOLVE_TASKS:
            user, reply = user_content(task, _render_question(ex["question"])), render_solution(ex["answer"])
        elif task == "rephrase":
            user, reply = user_content(task, ex["question"]), ex["answer"].strip()
        else:  # sv_rewrite: the file's question already ends "The answer is A."
            user, reply = f"Question: {ex['question']}", ex["answer"].strip()
        msgs.append({"role": "user", "content": user})
        msgs.append({"role": "assistant", "content": reply})
    return tuple(msgs)


def messages(task: str, domain: str, question: str, answer: str | None = None) -> list[dict]:
    """Chat messages for one request; `answer` only for sv_rewrite (the original's gold answer)."""
    return [*fixed_messages(task, domain), {"role": "user", "content": user_content(task, question, answer)}]


def ansaug_messages(question: str, domain: str) -> list[dict]:
    return messages("ansaug", domain, question)


def rephrase_messages(question: str, domain: str) -> list[dict]:
    return messages("rephrase", domain, question)


def sv_rewrite_messages(last_sentence: str, answer: str, domain: str) -> list[dict]:
    return messages("sv_rewrite", domain, last_sentence, answer)


def sv_messages(sv_question: str, domain: str) -> list[dict]:
    return messages("sv", domain, sv_question)


def fobar_messages(fobar_question: str, domain: str) -> list[dict]:
    return messages("fobar", domain, fobar_question)


def _strip_echo(text: str) -> str:
    """The reply without leading labels the model echoed, and without a continuation of the
    few-shot pattern (a later line opening with a label)."""
    t = (text or "").strip()
    changed = True
    while changed:
        changed = False
        t = re.sub(r"^\*\*(.+?)\*\*", r"\1", t).strip()  # "**Rephrased question:**"
        for label in ECHO_LABELS:
            if t.lower().startswith(label.lower()):
                t, changed = t[len(label):].strip(), True
    lines = t.split("\n")
    for i, line in enumerate(lines[1:], 1):
        if any(line.strip().lower().startswith(label.lower()) for label in ECHO_LABELS):
            lines = lines[:i]
            break
    t = "\n".join(lines).strip()
    if len(t) >= 2 and t[0] + t[-1] in ('""', "“”", "''"):
        t = t[1:-1].strip()
    return t


def parse_rephrased(text: str) -> str:
    """The rephrased question from a reply ("" when nothing is left)."""
    t = text or ""
    # The model sometimes repeats the whole exemplar form: "Question: ...\nRephrase the above question: ..."
    head, sep, tail = t.partition(REPHRASE_LABEL)
    if sep and head.strip().lower().startswith("question:"):
        t = tail
    return _strip_echo(t)


def parse_rewrite(text: str) -> str:
    """The declarative statement from a sv_rewrite reply: its first line ("" when none)."""
    t = text or ""
    head, sep, tail = t.partition("Result:")
    if sep and head.strip().lower().startswith("question:"):
        t = tail
    t = _strip_echo(t)
    return t.split("\n", 1)[0].strip()
