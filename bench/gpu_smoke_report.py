"""The numbers of bench/gpu_smoke.sh: training tokens/s per GPU and model FLOPs utilisation per run,
evaluation questions/s, as JSON and as a Markdown table for bench/RESULTS.md.

    python bench/gpu_smoke_report.py --eval RUN/eval --out RUN RUN/train-1/train/smoke RUN/train-2/train/smoke

Tokens are the real (unpadded) tokens the trainer logs per optimizer step; the first steps (a fifth,
at least one) are left out as warm-up and the median of the rest is reported. FLOPs per token follow
the PaLM paper's accounting (Chowdhery et al. 2022, appendix B): 6 N for the matrix multiplies of
the forward and backward passes, N the parameters that multiply (all but the input embedding; a
tied output layer counts), plus 12 L h s for attention, s the mean sequence length (packed
sequences attend only within themselves). MFU is that over the GPU's dense bf16 peak.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
from pathlib import Path

from webinstruct.core.registry import get_spec
from webinstruct.training.plan import parameter_count

# Dense bf16 tensor-core peaks from the vendors' data sheets (TFLOP/s, without sparsity).
PEAK_TFLOPS = {"H200": 989.0, "H100 80GB HBM3": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0,
               "L40S": 362.0, "A10G": 70.0}


def gpu_name() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.splitlines()[0].strip() if out.returncode == 0 and out.stdout.strip() else ""


def peak_flops(name: str) -> float | None:
    if os.environ.get("PEAK_TFLOPS"):
        return float(os.environ["PEAK_TFLOPS"]) * 1e12
    for key, tflops in PEAK_TFLOPS.items():  # longest names first in the table where they overlap
        if key in name:
            return tflops * 1e12
    return None


def flops_per_token(model_dir: str, mean_seq: float) -> float:
    spec = get_spec(model_dir)
    parts = parameter_count(spec)
    multiplying = parts["total"] - parts["embedding"] + (parts["embedding"] if spec.tie_embeddings else 0)
    return 6 * multiplying + 12 * spec.num_layers * spec.hidden_size * mean_seq


def train_numbers(out: Path, peak: float | None) -> dict:
    stats = json.loads((out / "stats.json").read_text())
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
    skip = max(1, len(log) // 5)
    steady = log[skip:] or log
    world = stats["world_size"]
    tokens_s = statistics.median(r["tokens_per_s"] for r in steady)
    mean_seq = stats["tokens"] / stats["kept"] if stats.get("kept") else stats.get("max_len", 2048)
    per_gpu = tokens_s / world
    flops = flops_per_token(str(out / "final"), mean_seq)
    return {"run": str(out), "world": world, "steps": len(log), "tokens_per_s": round(tokens_s, 1),
            "tokens_per_s_per_gpu": round(per_gpu, 1), "mean_sequence_tokens": round(mean_seq, 1),
            "flops_per_token": flops, "mfu": round(per_gpu * flops / peak, 4) if peak else None,
            "final_loss": stats.get("final_loss"), "attention": stats.get("attn_implementation")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", help="training output folders (RUN/train/<name>)")
    ap.add_argument("--eval", default="", help="the evaluation folder (RUN/eval)")
    ap.add_argument("--out", default=".", help="where gpu_smoke.json and gpu_smoke.md go")
    args = ap.parse_args()
    name = gpu_name()
    peak = peak_flops(name) if name else None
    result = {"gpu": name or "none (CPU)", "peak_flops": peak, "train": [train_numbers(Path(r), peak) for r in args.runs]}
    if args.eval:
        results = json.loads((Path(args.eval) / "results.json").read_text())
        gen = results["settings"]["generation"]
        result["eval"] = {"questions": gen["generated"], "seconds": gen["seconds"],
                          "questions_per_s": gen["questions_per_s"],
                          "output_tokens_per_s": round(gen["completion_tokens"] / gen["seconds"], 1),
                          "placement": gen.get("placement"), "benchmarks": len(results["benchmarks"])}
    lines = [f"GPU: {result['gpu']}" + (f", dense bf16 peak {peak / 1e12:.0f} TFLOP/s" if peak else ""), "",
             "| processes | steps | tokens/s | tokens/s per GPU | MFU | final loss |", "|---:|---:|---:|---:|---:|---:|"]
    for t in result["train"]:
        mfu = f"{100 * t['mfu']:.1f}%" if t["mfu"] is not None else "n/a"
        lines.append(f"| {t['world']} | {t['steps']} | {t['tokens_per_s']:,.0f} | {t['tokens_per_s_per_gpu']:,.0f} | {mfu} "
                     f"| {t['final_loss']} |")
    if "eval" in result:
        e = result["eval"]
        where = e["placement"] or {}
        lines += ["", f"vLLM eval: {e['questions']} questions of {e['benchmarks']} benchmarks in {e['seconds']} s = "
                      f"{e['questions_per_s']} questions/s, {e['output_tokens_per_s']} output tokens/s "
                      f"(tp {where.get('tp')} x dp {where.get('dp')})"]
    text = "\n".join(lines)
    print(text)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "gpu_smoke.json").write_text(json.dumps(result, indent=1))
    (Path(args.out) / "gpu_smoke.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
