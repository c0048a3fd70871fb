"""Write `metamath.json`: MetaMath's few-shot generation prompts as data.

The ten prompt files in `../shared/fewshot/metamath` (byte-identical copies of
`meta-math/MetaMath:code_for_generating_data/configs/*.txt`, Apache-2.0) are plain text: an
optional header, then blocks "Question: ...\\n<label> ..." separated by blank lines. This script
splits them into {instruction, answer_label, examples: [{question, answer}]} per task and domain,
keeping every text verbatim (upstream reads the files with `.strip()`, so do we).

    python data/fewshot/build_metamath.py [--shared ../shared] [--check]

`--check` rebuilds in memory and fails when the committed JSON differs (for CI or a review).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "metamath.json"
DEFAULT_SHARED = HERE.parents[2] / "shared"

SOURCE = ("meta-math/MetaMath:code_for_generating_data/configs/<file>"
          "@fe667b14f9a4c51bde9809adafb82b6b5d255800")
LICENSE = "Apache-2.0 (meta-math/MetaMath)"

# task -> (file stem, the label that opens each exemplar's answer)
TASKS = {
    "ansaug": ("ansaug_cot", "A:"),
    "rephrase": ("rephrase_cot", "Rephrase the above question:"),
    "sv_rewrite": ("sv_rewrite_question_prompt", "Result:"),
    "sv": ("sv_cot", "A:"),
    "fobar": ("fobar_cot", "A:"),
}
DOMAINS = ("gsm8k", "math")


def parse(text: str, label: str) -> dict:
    """One prompt file -> {instruction, answer_label, examples}."""
    text = text.strip()
    head, sep, body = text.partition("Question: ")
    if not sep:
        raise ValueError("no 'Question: ' block")
    instruction = head.strip()
    examples = []
    for block in ("Question: " + body).split("\n\nQuestion: "):
        block = block.removeprefix("Question: ")
        marker = "\n" + label
        q, sep, a = block.partition(marker)
        if not sep:
            raise ValueError(f"exemplar without {label!r}: {block[:80]!r}")
        examples.append({"question": q, "answer": a.removeprefix(" ")})
    return {"instruction": instruction, "answer_label": label, "examples": examples}


def build(shared: Path) -> dict:
    folder = shared / "fewshot" / "metamath"
    tasks: dict = {}
    for task, (stem, label) in TASKS.items():
        for domain in DOMAINS:
            name = f"{stem}_{domain}.txt"
            entry = parse((folder / name).read_text(encoding="utf-8"), label)
            entry["file"] = name
            tasks.setdefault(task, {})[domain] = entry
    return {
        "source": SOURCE,
        "license": LICENSE,
        "note": "Exemplar and header texts verbatim from the files named in `file`; "
                "see data/fewshot/README.md and pipeline/augment/prompts.py for how they are rendered.",
        "tasks": tasks,
    }


def dumps(data: dict) -> str:
    return json.dumps(data, ensure_ascii=False, indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    ap.add_argument("--check", action="store_true", help="fail if metamath.json is not up to date")
    args = ap.parse_args(argv)
    text = dumps(build(args.shared))
    if args.check:
        same = OUT.exists() and OUT.read_text(encoding="utf-8") == text
        print("metamath.json is up to date" if same else "metamath.json differs from a rebuild")
        return 0 if same else 1
    OUT.write_text(text, encoding="utf-8")
    counts = {t: {d: len(v["examples"]) for d, v in doms.items()} for t, doms in json.loads(text)["tasks"].items()}
    print(f"wrote {OUT} {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
