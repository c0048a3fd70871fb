"""Prompts and decoding settings: how each paper asked its questions.

- ``mammoth2``: MAmmoTH2's harness. A one-line header, then the benchmark's exemplars as
  ``Problem:`` / ``Solution:`` blocks, then the question (form ``short``); form ``short:step``
  adds "Let's think step by step." after every ``Solution:``. Few-shot counts: TheoremQA 5,
  MATH 4, GSM8K 4, GPQA 5, MMLU-STEM 5, BBH 3 (per sub-task), ARC-C 8. Its stop strings ("####"
  among them). Up to 2,048 new tokens.
- ``metamath``: MetaMath's zero-shot Alpaca prompt followed by " Let's think step by step." (the
  same prompt its models were trained on, `webinstruct.core.formatting`); its stop strings; 512 new
  tokens for GSM8K (and GSM8K-Backward), 2,048 for the rest.
- ``chat``: the model's chat template, with the same exemplars as earlier user/assistant turns.

Decoding is greedy everywhere. A `Request` holds the finished prompt text, so every backend sends
the same string.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

from webinstruct.evaluation.benchmarks import REGISTRY
from webinstruct.evaluation.items import Item
from webinstruct.core.shards import open_text
from webinstruct.core.formatting import alpaca_prompt
from webinstruct.core.resources import data_path

PROTOCOLS = ("mammoth2", "metamath", "chat")
FORMS = ("short", "short:step")
EXEMPLAR_SETS = ("repaired", "original")
FEWSHOT = data_path("fewshot")

MAMMOTH2_HEADER = "You are supposed to provide a solution to a given problem.\n\n"
STEP = "Let's think step by step."
# MAmmoTH2's run_open.py and run_choice.py at the commit the benchmarks come from (9c67cb1): the
# same list for both ("####" included: a GSM8K-style "#### 18" ends the generation before the 18).
# Earlier revisions also had "<start_of_turn>" and "[INST]" and only the multiple-choice runner
# stopped at "####".
MAMMOTH2_STOP = ("USER:", "ASSISTANT:", "### Instruction:", "Response:",
                 "\n\nProblem", "\nProblem", "Problem:", "<|eot_id|>", "####")
# MetaMath's eval_gsm8k.py and eval_math.py.
METAMATH_STOP = ("Question:", "Question", "USER:", "USER", "ASSISTANT:", "ASSISTANT", "Instruction:",
                 "Instruction", "Response:", "Response")
MAMMOTH2_TOKENS = 2048


def stop_strings(protocol: str) -> tuple[str, ...]:
    """The strings generation stops at under `protocol` (chat: none; its template ends the turn)."""
    return {"mammoth2": MAMMOTH2_STOP, "metamath": METAMATH_STOP}.get(protocol, ())


def scorer_stops(protocol: str) -> tuple[str, ...]:
    """The stop strings of the harness that scores `protocol`: MetaMath's for ``metamath``,
    MAmmoTH2's for ``mammoth2`` and ``chat`` (the seed grader scores chat the MAmmoTH2 way)."""
    return METAMATH_STOP if protocol == "metamath" else MAMMOTH2_STOP


@dataclass(frozen=True)
class Request:
    prompt: str  # the text the model continues
    stop: tuple[str, ...]
    max_tokens: int
    messages: list[dict] = field(default_factory=list)  # chat protocol: the turns behind `prompt`


@lru_cache(maxsize=2)
def exemplars(which: str = "repaired") -> dict[str, list[tuple[str, str]]]:
    """MAmmoTH2's exemplars by key: "repaired" has LaTeX backslashes where the harness's Python
    escapes had left control characters (\\f in "\\frac"); "original" is byte for byte the harness's."""
    if which not in EXEMPLAR_SETS:
        raise ValueError(f"unknown exemplar set {which!r}; choose from {', '.join(EXEMPLAR_SETS)}")
    name = "mammoth2_exemplars.latex_repaired.json.gz" if which == "repaired" else "mammoth2_exemplars.json.gz"
    with open_text(FEWSHOT / name) as f:
        data = json.load(f)
    return {k: [(e["question"], e["answer"]) for e in v] for k, v in data.items()}


def shots_for(item: Item, which: str = "repaired", shots: int | None = None) -> list[tuple[str, str]]:
    """The exemplars MAmmoTH2 put before this question: its benchmark's key (BBH: the sub-task's),
    the first `shots` of them (default: the paper's count)."""
    bench = REGISTRY[item.benchmark]
    key = bench.exemplars or item.task
    table = exemplars(which)
    if key not in table:
        raise KeyError(f"no MAmmoTH2 exemplars for {key!r} (benchmark {item.benchmark})")
    return table[key][: bench.shots if shots is None else shots]


def mammoth2_prompt(question: str, shots: list[tuple[str, str]], form: str = "short") -> str:
    """The harness's `short` / `short:step` prompt: header, exemplar blocks, the question's block."""
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; choose from {', '.join(FORMS)}")
    after = f"Solution: {STEP}\n" if form == "short:step" else "Solution:\n"
    text = MAMMOTH2_HEADER
    for q, a in shots:
        text += f"\nProblem:\n{q}\n{after}{a}\n"
    return text + f"\nProblem:\n{question}\n{after}"


def chat_messages(question: str, shots: list[tuple[str, str]]) -> list[dict]:
    messages = []
    for q, a in shots:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return messages + [{"role": "user", "content": question}]


class Protocol:
    """Renders items into `Request`s for one protocol.

    `chat_template(messages) -> str` renders chat turns with the model's template (generation
    prompt included); the chat protocol needs it. `max_new_tokens` overrides the paper's budget
    (a smaller one makes CPU runs short; results.json records it)."""

    def __init__(self, name: str = "mammoth2", form: str = "short", exemplar_set: str = "repaired",
                 max_new_tokens: int | None = None, shots: int | None = None,
                 chat_template: Callable[[list[dict]], str] | None = None):
        if name not in PROTOCOLS:
            raise ValueError(f"unknown protocol {name!r}; choose from {', '.join(PROTOCOLS)}")
        if form not in FORMS:
            raise ValueError(f"unknown form {form!r}; choose from {', '.join(FORMS)}")
        self.name, self.form, self.exemplar_set = name, form, exemplar_set
        self.max_new_tokens, self.shots, self.chat_template = max_new_tokens, shots, chat_template

    def budget(self, item: Item) -> int:
        paper = REGISTRY[item.benchmark].metamath_tokens if self.name == "metamath" else MAMMOTH2_TOKENS
        return min(paper, self.max_new_tokens) if self.max_new_tokens else paper

    def render(self, item: Item) -> Request:
        if self.name == "metamath":
            return Request(alpaca_prompt(item.question, eval_suffix=True), stop_strings("metamath"), self.budget(item))
        shots = shots_for(item, self.exemplar_set, self.shots)
        if self.name == "chat":
            if self.chat_template is None:
                raise ValueError("the chat protocol needs the model's chat template (a tokenizer)")
            messages = chat_messages(item.question, shots)
            return Request(self.chat_template(messages), stop_strings("chat"), self.budget(item), messages)
        return Request(mammoth2_prompt(item.question, shots, self.form), stop_strings("mammoth2"), self.budget(item))

    def settings(self) -> dict:
        return {"protocol": self.name, "form": self.form if self.name == "mammoth2" else "",
                "exemplars": self.exemplar_set if self.name != "metamath" else "",
                "max_new_tokens": self.max_new_tokens, "shots": self.shots}


def server_stops(stop: tuple[str, ...] | list[str], prompt: str = "", limit: int = 4) -> list[str]:
    """At most `limit` stop strings, for APIs that take no more (OpenAI's, vLLM's server). Those
    that contain another stop string go first (the shorter one stops earlier anyway); of the
    rest, those the prompt uses most are kept: a few-shot continuation runs into the prompt's own
    markers ("Problem:", "### Instruction"). The output is still cut at all of them
    (`cut_at_stop`): a stop string left out only costs tokens."""
    kept = [s for s in stop if not any(t != s and t in s for t in stop)]
    kept.sort(key=lambda s: -prompt.count(s))
    return kept[:limit]


def cut_at_stop(text: str, stop: tuple[str, ...] | list[str]) -> str:
    """The output up to the first stop string (vLLM's rule: the stop string itself is dropped).
    Backends that cannot stop on strings generate on and are cut here, so all agree."""
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]
