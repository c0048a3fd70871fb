"""The benchmarks, read from the files bundled under data/benchmarks, as lists of `Item`.

Each loader turns its file into questions the way the paper's harness did (same fields, same
option layout, same gold answer), so prompts and seed scores match theirs. One change: GPQA's
options are shuffled with a seeded generator keyed by the record, where MAmmoTH2 used an unseeded
`random.sample`, so two runs ask the same questions in the same order. Add a benchmark by writing
a loader and a `Benchmark` entry in `REGISTRY`.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from webinstruct.evaluation.items import Item
from webinstruct.core.shards import open_text
from webinstruct.core.resources import data_path

DATA = data_path("benchmarks")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Benchmark:
    name: str  # the name on the command line
    title: str  # the column header in the papers' tables
    path: str  # under data/benchmarks
    kind: str
    exemplars: str  # the MAmmoTH2 exemplar key ("" = per item: BBH's sub-task)
    shots: int  # MAmmoTH2's few-shot count
    load: Callable[[Path], list[Item]]
    metamath_tokens: int = 2048  # MetaMath's max new tokens (512 for its GSM8K)


def _lines(path: Path) -> list[dict]:
    with open_text(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _json(path: Path):
    with open_text(path) as f:
        return json.load(f)


def strip_zeros(number: str) -> str:
    """A number without trailing decimal zeros ("18.00" -> "18", "2.50" -> "2.5"), as the
    harnesses write gold answers; other text unchanged."""
    s = number.strip()
    if re.fullmatch(r"-?\d+\.\d*", s):
        s = s.rstrip("0").rstrip(".")
    return s


def _gsm8k(path: Path) -> list[Item]:
    items = []
    for i, row in enumerate(_lines(path)):
        gold = strip_zeros(row["response"].split("#### ")[-1].replace(",", ""))
        items.append(Item("gsm8k", f"{i:04d}", row["query"].strip(), gold, "number", task="gsm8k"))
    return items


def _gsm8k_backward(path: Path) -> list[Item]:
    return [Item("gsm8k_backward", f"{i:04d}", row["question"].strip(), strip_zeros(str(row["answer"])), "number",
                 task="gsm8k", meta={"style": "fobar" if "If we know the answer" in row["question"] else "sv"})
            for i, row in enumerate(_lines(path))]


def _math(path: Path) -> list[Item]:
    from webinstruct.evaluation.grading.seed import find_box
    items = []
    for row in _lines(path):
        meta = {"level": row.get("level", ""), "type": row.get("type", "")}
        # MAmmoTH2's loader read the gold as the text after the solution's last "boxed" substring;
        # where prose says "boxed" after the last \boxed{} (one problem) the seed grader needs that.
        harness = find_box(row["solution"])
        if harness.strip() != row["boxed_answer_raw"].strip():
            meta["mammoth2_gold"] = harness
        items.append(Item("math", row["id"], row["problem"], row["boxed_answer_raw"], "math", task="math", meta=meta))
    return items


def _theoremqa(path: Path) -> list[Item]:
    items = []
    for row in _json(path):
        answer = row["Answer"]
        items.append(Item("theoremqa", row["id"], row["Question"], str(answer), "theoremqa", task="theoremqa",
                          gold_value=answer, meta={"answer_type": row["Answer_type"],
                                                   "has_picture": bool(row.get("Picture"))}))
    return items


def _option_line(choices: dict[str, str]) -> str:
    return " ".join(f"({k}) {v}" for k, v in choices.items())


def gpqa_order(record_id: str, seed: int) -> list[int]:
    """The option order of one GPQA record: a permutation of [1, 2, 3, 4] (4 = the correct answer,
    1-3 the incorrect ones, as MAmmoTH2 numbered them), fixed by the seed and the record's id."""
    return random.Random(f"gpqa:{seed}:{record_id}").sample([1, 2, 3, 4], 4)


def _gpqa(path: Path, seed: int = 0) -> list[Item]:
    items = []
    for row in _lines(path):
        rid = row["Record ID"]
        order = gpqa_order(rid, seed)
        texts = [row["Correct Answer"] if k == 4 else row[f"Incorrect Answer {k}"] for k in order]
        choices = {LETTERS[i]: t.strip() for i, t in enumerate(texts)}  # the prompt keeps them as written
        question = row["Question"]
        sep = "Answer Choices: " if question.endswith("\n") else "\nAnswer Choices: "
        items.append(Item("gpqa", rid, question + sep + " ".join(f"({LETTERS[i]}) {t}" for i, t in enumerate(texts)),
                          LETTERS[order.index(4)], "choice",
                          task="gpqa_diamond", choices=choices, meta={"option_order": order, "seed": seed,
                                                                       "domain": row.get("High-level domain", "")}))
    return items


def _mmlu_stem(path: Path) -> list[Item]:
    items = []
    for i, row in enumerate(_json(path)):
        choices = {LETTERS[j]: c for j, c in enumerate(row["choices"])}
        question = row["question"] + "\nAnswer Choices: " + _option_line(choices)
        items.append(Item("mmlu_stem", f"{i:04d}", question, LETTERS[row["answer"]], "choice", task="mmlu_stem",
                          choices=choices))
    return items


# 22 ARC questions number their options "(1):" .. "(4):" and give the gold as a digit.
_ARC_OPTION = re.compile(r"^\(([A-Z]|[1-9])\):\s?(.*)$", re.M)
_BBH_OPTION = re.compile(r"^\(([A-Z])\)\s?(.*)$", re.M)


def _arc(path: Path) -> list[Item]:
    return [Item("arc", f"{i:04d}", row["question"], row["answer"].strip(), "choice", task="arc",
                 choices={k: v.strip() for k, v in _ARC_OPTION.findall(row["question"])})
            for i, row in enumerate(_json(path))]


def _bbh(path: Path) -> list[Item]:
    items, seen = [], {}
    for row in _json(path):
        task = row["task"]
        n = seen[task] = seen.get(task, -1) + 1
        options = row["question"].split("Options:", 1)[1] if "Options:" in row["question"] else ""
        items.append(Item("bbh", f"{task}/{n:03d}", row["question"], row["answer"], "bbh", task=task,
                          choices={k: v.strip() for k, v in _BBH_OPTION.findall(options)}))
    return items


REGISTRY: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("theoremqa", "TheoremQA", "theoremqa/theoremqa_test.json.gz", "theoremqa", "theoremqa", 5, _theoremqa),
    Benchmark("math", "MATH", "math/MATH_test.jsonl.gz", "math", "math", 4, _math),
    Benchmark("gsm8k", "GSM8K", "gsm8k/GSM8K_test.jsonl.gz", "number", "gsm8k", 4, _gsm8k, metamath_tokens=512),
    Benchmark("gpqa", "GPQA", "gpqa/gpqa_diamond.jsonl.gz", "choice", "gpqa_diamond", 5, _gpqa),
    Benchmark("mmlu_stem", "MMLU-ST", "mmlu_stem/stem.json.gz", "choice", "mmlu_stem", 5, _mmlu_stem),
    Benchmark("bbh", "BBH", "bbh/bbh.json.gz", "bbh", "", 3, _bbh),
    Benchmark("arc", "ARC-C", "arc_challenge/challenge.json.gz", "choice", "arc", 8, _arc),
    # MetaMath's backward questions; MAmmoTH2 has no exemplars for it, so it borrows GSM8K's.
    Benchmark("gsm8k_backward", "GSM8K-Backward", "gsm8k_backward/GSM8K_Backward.jsonl.gz", "number", "gsm8k", 4,
              _gsm8k_backward, metamath_tokens=512),
)}
MAMMOTH2_SEVEN = ("theoremqa", "math", "gsm8k", "gpqa", "mmlu_stem", "bbh", "arc")


def names(spec: str | list[str] | None) -> list[str]:
    """Benchmark names from "all", a comma list or a list; unknown names raise a ValueError that
    lists the known ones."""
    if spec is None or spec == "all" or spec == ["all"] or spec == "":
        return list(REGISTRY)
    wanted = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    unknown = [w for w in wanted if w not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(REGISTRY)}, or all")
    return list(dict.fromkeys(wanted))


def load(name: str, limit: int | None = None, seed: int = 0, root: Path | str | None = None) -> list[Item]:
    """The questions of one benchmark. `limit` keeps a fixed random sample of that many (the same
    for every model and run with this seed, kept in file order); `seed` also fixes GPQA's option order."""
    bench = REGISTRY[name]
    path = Path(root or DATA) / bench.path
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file {path} is missing (the repository bundles data/benchmarks)")
    items = _gpqa(path, seed) if name == "gpqa" else bench.load(path)
    if limit is not None and 0 <= limit < len(items):
        keep = sorted(random.Random(f"sample:{seed}:{name}").sample(range(len(items)), limit))
        items = [items[i] for i in keep]
    return items
