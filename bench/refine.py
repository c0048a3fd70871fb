"""Refine-stage throughput against the LLM server's ceiling, and the filters at 10^4 and 10^5 pairs.

    python bench/refine.py [--pairs 48] [--llm-url URL] [--concurrency 8] [--skip-filters] [--out bench/RESULTS.md]

1. LLM part, as bench/llm.py does for extract: real question-answer pairs (GSM8K training
   problems from the bundled seeds, split into question and solution) go through
   - the ceiling: the exact refine requests fired by a plain asyncio loop with the same
     concurrency (no Beam, no cache, no checks), best of two runs around the stage;
   - the stage: `webinstruct refine` as a Beam job on the same pairs with an empty cache;
   - the rerun of the stage, which must send 0 requests.
   Without --llm-url the local server is started once for all of them (greedy decoding).
2. Filters: bench/refine_filters.py (decontamination and dedup pairs/s at 10^4 and 10^5
   synthetic pairs built from the bundled benchmark files, and how the time grows).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NOTES = """
Reading the numbers: the stage streams pairs through the shared LLM client as extract does, so
the server has `concurrency` requests in flight until the tail; the difference to the ceiling is
Beam's start-up, loading the n-gram index and the tail. The rerun line is the cache at work.
"""


def seed_pairs(n: int) -> list[dict]:
    """GSM8K training problems from data/seeds as extracted pairs (question / solution)."""
    from bench.seed_pairs import gsm8k_seed_pairs
    from webinstruct.pipeline.extract.transforms import pair_id

    out = []
    for i, p in enumerate(gsm8k_seed_pairs(n)):
        doc = f"gsm8k-train-{i}"
        out.append({"id": pair_id(doc, p["question"]), "doc_id": doc, "url": f"https://seed.example/{doc}",
                    "domain": "seed.example", "question": p["question"], "answer": p["answer"],
                    "extractor": "bench", "chunk": 0, "raw": "", "doc_score": 1.0})
    return sorted(out, key=lambda p: p["id"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=48)
    ap.add_argument("--llm-url", default="", help="OpenAI-compatible server (default: start the local one)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=384)
    ap.add_argument("--skip-filters", action="store_true", help="only the LLM part")
    ap.add_argument("--out", default=str(ROOT / "bench/RESULTS.md"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("httpx", "openai", "apache_beam"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    from bench.llm import ceiling
    from webinstruct.core import shards
    from webinstruct.pipeline.llm.config import LLMConfig
    from webinstruct.pipeline.llm.endpoint import llm_endpoint
    from webinstruct.pipeline.refine import job
    from webinstruct.pipeline.refine.config import RefineConfig
    from webinstruct.pipeline.refine.transforms import request
    from webinstruct.core.schema import QAPair

    pairs = seed_pairs(args.pairs)
    llm = LLMConfig(url=[args.llm_url] if args.llm_url else [], max_concurrency=args.concurrency,
                    max_tokens=args.max_tokens, max_tokens_cap=args.max_tokens, semantic_retries=0, timeout_s=600)
    print(f"{len(pairs)} GSM8K training pairs; concurrency {args.concurrency}")
    with llm_endpoint(llm) as live, tempfile.TemporaryDirectory() as tmp:
        refiner = {"name": "refiner", "llm": dataclasses.asdict(live)}
        requests = [request(p, refiner) for p in pairs]
        ceiling(requests[: args.concurrency], live, live.model, args.concurrency)  # warm-up, not counted
        first = ceiling(requests, live, live.model, args.concurrency)
        run = Path(tmp) / "run"
        shards.write_shard(str(run / "extract" / "part-00000-of-00002.jsonl.gz"), pairs[::2], QAPair)
        shards.write_shard(str(run / "extract" / "part-00001-of-00002.jsonl.gz"), pairs[1::2], QAPair)
        shards.publish_stage(str(run / "extract"), "extract")
        cfg = RefineConfig(run=str(run), num_shards=2)
        t0 = time.perf_counter()
        stats = job.run(cfg, live)
        wall = time.perf_counter() - t0
        rerun = job.run(cfg, live)
        second = ceiling(requests, live, live.model, args.concurrency)
    base = max(first, second, key=lambda b: b["completion_tokens"] / b["wall"])
    ours_tps = stats["completion_tokens"] / wall
    base_tps = base["completion_tokens"] / base["wall"]
    lines = [
        "| run | requests | completion tokens | wall s | completion tokens/s | pairs/s |",
        "|---|---:|---:|---:|---:|---:|",
        f"| ceiling: plain concurrent load, same prompts (best of 2) | {base['requests']} | {base['completion_tokens']} | "
        f"{base['wall']:.1f} | {base_tps:.1f} | {len(pairs) / base['wall']:.2f} |",
        f"| refine stage (Beam job, cache, checks, decontamination, dedup, exports, card, report) | "
        f"{stats['requests_sent']} | {stats['completion_tokens']} | {wall:.1f} | {ours_tps:.1f} | {len(pairs) / wall:.2f} |",
        f"| refine rerun | {rerun['requests_sent']} | {rerun['completion_tokens']} | {rerun['wall_seconds']:.1f} | - | - |",
        "",
        f"**refine / ceiling (completion tokens/s): {ours_tps / base_tps:.2f}**; rows out {stats['rows_out']} of "
        f"{stats['pairs_in']} pairs (SmolLM2's revisions mostly fail the checks); rerun sent "
        f"{rerun['requests_sent']} requests.",
    ]
    report = "\n".join(lines)
    print(report)
    filters = ""
    if not args.skip_filters:
        from bench.refine_filters import run as run_filters

        filters = run_filters()
        print(filters)
    if args.out:
        from bench.recall import replace_section

        body = (f"`python bench/refine.py` on {time.strftime('%Y-%m-%d')}: SmolLM2-135M on vLLM's CPU build, 2 cores; "
                f"the stage's wall time includes Beam's start-up and the run report.\n\n" + report + "\n" + NOTES)
        if filters:
            body += "\n### Decontamination and dedup at scale (bench/refine_filters.py)\n\n" + filters + "\n"
        replace_section(Path(args.out), "bench/refine.py", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
