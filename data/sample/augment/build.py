"""Build the augment stage's sample input from the bundled seed text (data/seeds/positive.jsonl.gz).

    python data/sample/augment/build.py

GSM8K training rows come back in GSM8K's own format ({question, answer} with the final line
"#### N"; the seed text wrote it "Answer: N" and dropped the <<...>> calculator notes), MATH
training rows as {problem, solution}. The shortest questions first, so the demo stays quick on
a CPU; sources are kept per row. Training splits only: no test question is used as a seed.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from webinstruct.core.shards import open_text  # noqa: E402

GSM8K_ROWS, MATH_ROWS = 24, 8


def main() -> int:
    gsm, math = [], []
    with open_text(ROOT / "data/seeds/positive.jsonl.gz") as f:
        for line in f:
            row = json.loads(line)
            question, _, answer = row["text"].partition("\n\n")
            if "grade-school-math" in row["source"]:
                m = re.search(r"\nAnswer: (.+)$", answer)
                if m:
                    gsm.append({"question": question, "answer": answer[: m.start()] + f"\n#### {m.group(1)}",
                                "source": row["source"]})
            elif "/math/train/" in row["source"] and "\\boxed" in answer and "[asy]" not in row["text"]:
                math.append({"problem": question, "solution": answer, "source": row["source"]})
    out = Path(__file__).parent
    for name, rows, n in (("gsm8k_train.jsonl", gsm, GSM8K_ROWS), ("math_train.jsonl", math, MATH_ROWS)):
        rows = sorted(rows, key=lambda r: (len(r.get("question") or r["problem"]), r["source"]))[:n]
        (out / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        print(f"{out / name}: {len(rows)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
