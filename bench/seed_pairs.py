"""Real question-answer pairs for the LLM and training benchmarks: the GSM8K training problems in
the bundled seed text, split into question and solution at the first blank line."""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def gsm8k_seed_pairs(n: int) -> list[dict[str, str]]:
    """The first `n` GSM8K training pairs of data/seeds/positive.jsonl.gz, as {question, answer}."""
    from webinstruct.core.shards import open_text

    out = []
    with open_text(ROOT / "data/seeds/positive.jsonl.gz") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec.get("source", "").startswith("openai/grade-school-math") and "\n\n" in rec["text"]:
                question, answer = rec["text"].split("\n\n", 1)
                out.append({"question": question, "answer": answer})
                if len(out) == n:
                    break
    return out
