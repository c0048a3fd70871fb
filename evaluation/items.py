"""One benchmark question as every part of the evaluator sees it.

The benchmark loaders (`webinstruct.evaluation.benchmarks`) make them, the protocols render them into prompts,
the graders compare a model's output with `gold`. `kind` tells the graders which comparison a
question needs:

- ``number``: a numeric answer (GSM8K, GSM8K-Backward); `gold` is the number as text ("18").
- ``math``: a MATH answer string, LaTeX allowed (`gold` = the last \\boxed{} of the solution).
- ``theoremqa``: `gold` = str(Answer); `gold_value` = the raw Answer (int, float, list, bool or
  str) and `meta["answer_type"]` = the dataset's Answer_type (integer, float, list of integer,
  list of float, bool, option).
- ``choice``: multiple choice; `gold` is the letter ("C"), `choices` maps letters to option text.
- ``bbh``: BIG-Bench Hard: `gold` as the dataset writes it ("(B)", "True", "valid", "24",
  "] ]"); `choices` maps letters to option text when the question lists "(A) ..." options.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KINDS = ("number", "math", "theoremqa", "choice", "bbh")


@dataclass(frozen=True)
class Item:
    benchmark: str  # registry name: gsm8k, math, theoremqa, gpqa, mmlu_stem, bbh, arc, gsm8k_backward
    id: str  # stable within the benchmark (the record's position or its own id)
    question: str  # the text put in the prompt, options included as the papers' loaders wrote them
    gold: str
    kind: str
    task: str = ""  # which few-shot exemplars it takes (the BBH sub-task; else the benchmark's key)
    choices: dict[str, str] = field(default_factory=dict)
    gold_value: Any = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"benchmark": self.benchmark, "id": self.id, "question": self.question, "gold": self.gold,
                "kind": self.kind, "task": self.task, "choices": dict(self.choices),
                "gold_value": self.gold_value, "meta": dict(self.meta)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Item":
        return cls(benchmark=d["benchmark"], id=str(d["id"]), question=d["question"], gold=d["gold"],
                   kind=d["kind"], task=d.get("task", ""), choices=dict(d.get("choices") or {}),
                   gold_value=d.get("gold_value"), meta=dict(d.get("meta") or {}))
