"""Extract-stage throughput against the LLM server's ceiling, measured side by side in one run.

    python bench/llm.py [--run runs/sample] [--llm-url URL] [--concurrency 8] [--out bench/RESULTS.md]

1. ceiling: the exact chunk requests the extract stage would send for RUN/recall, fired at the
   server by a plain asyncio loop with the same concurrency (no Beam, no cache, no parsing);
2. extract: the real stage (`webinstruct extract` as a Beam job) on the same documents with an
   empty cache;
3. rerun: the same stage again, which must send 0 requests;
4. the plain load again: the ceiling is the better of the two plain loads (after a warm-up).

Printed: completion tokens/s and requests/s of each, the ratio extract/ceiling, and the rerun's
requests. Without --llm-url the local server is started once for all three (greedy decoding, so
both sides generate the same replies).
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


NOTES = """
Reading the numbers: the stage streams documents through the LLM client (`LLMClient.stream`):
a document's chunk requests are submitted as soon as a slot frees, across documents and recall
shards, so the server has `concurrency` requests in flight until the last ones, as under the
plain load. What remains of the gap is Beam's start-up and the tail. The previous design sent
documents in batches of 64 per shard, one shard after another, and each batch waited for its
slowest reply (a reply cut at max_tokens): it measured 0.62 on the same data. The rerun line is
the cache at work: 0 requests sent.
"""


def ceiling(requests, llm, model: str, concurrency: int) -> dict:
    import openai

    from webinstruct.pipeline.llm.client import render

    async def go():
        client = openai.AsyncOpenAI(base_url=llm.url[0], api_key=llm.api_key, timeout=llm.timeout_s)
        sem = asyncio.Semaphore(concurrency)
        tokens = 0

        async def one(req):
            nonlocal tokens
            async with sem:
                resp = await client.chat.completions.create(**render(req, llm, model))
                tokens += resp.usage.completion_tokens if resp.usage else 0

        t0 = time.perf_counter()
        await asyncio.gather(*(one(r) for r in requests), return_exceptions=True)
        wall = time.perf_counter() - t0
        await client.close()
        return tokens, wall

    tokens, wall = asyncio.run(go())
    return {"requests": len(requests), "completion_tokens": tokens, "wall": wall}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=str(ROOT / "runs/sample"), help="run with RUN/recall (made by `make recall`)")
    ap.add_argument("--llm-url", default="", help="OpenAI-compatible server (default: start the local one)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=384)
    ap.add_argument("--chunk-chars", type=int, default=1500, help="chunk size (smaller: more requests per document)")
    ap.add_argument("--max-chunks", type=int, default=4, help="chunks per document at most")
    ap.add_argument("--out", default=str(ROOT / "bench/RESULTS.md"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("httpx", "httpx2", "openai", "apache_beam"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    from webinstruct.core import shards
    from webinstruct.pipeline.extract import job
    from webinstruct.pipeline.extract.config import ExtractConfig
    from webinstruct.pipeline.extract.transforms import chunk_requests
    from webinstruct.pipeline.llm.config import LLMConfig
    from webinstruct.pipeline.llm.endpoint import llm_endpoint

    recall_dir = Path(args.run) / "recall"
    docs = [d for d in shards.read_shards(str(recall_dir), produced_by="make recall") if not d.get("structured")]
    cfg = ExtractConfig(chunk_chars=args.chunk_chars, overlap_chars=200, max_chunks_per_doc=args.max_chunks,
                        num_shards=2)
    c = dataclasses.asdict(cfg)
    requests = [r for d in docs for r in chunk_requests(d, c)]
    llm = LLMConfig(url=[args.llm_url] if args.llm_url else [], max_concurrency=args.concurrency,
                    max_tokens=args.max_tokens, max_tokens_cap=args.max_tokens, semantic_retries=0, timeout_s=600)
    print(f"{len(docs)} documents needing the LLM -> {len(requests)} chunk requests; concurrency {args.concurrency}")

    with llm_endpoint(llm) as live, tempfile.TemporaryDirectory() as tmp:
        ceiling(requests[: args.concurrency], live, live.model, args.concurrency)  # warm-up, not counted
        first = ceiling(requests, live, live.model, args.concurrency)
        run = Path(tmp) / "run"
        (run / "recall").mkdir(parents=True)
        for p in shards.list_shards(str(recall_dir)):
            (run / "recall" / Path(p).name).write_bytes(Path(p).read_bytes())
        ecfg = dataclasses.replace(cfg, run=str(run))
        t0 = time.perf_counter()
        stats = job.run(ecfg, live)
        wall = time.perf_counter() - t0
        rerun = job.run(ecfg, live)
        second = ceiling(requests, live, live.model, args.concurrency)
    # The ceiling is the better of two plain loads, one before and one after the stage.
    base = max(first, second, key=lambda b: b["completion_tokens"] / b["wall"])
    ours_tps = stats["completion_tokens"] / wall
    base_tps = base["completion_tokens"] / base["wall"]
    lines = [
        "| run | requests | completion tokens | wall s | completion tokens/s | requests/s |",
        "|---|---:|---:|---:|---:|---:|",
        f"| ceiling: plain concurrent load, same prompts (best of 2) | {base['requests']} | {base['completion_tokens']} | "
        f"{base['wall']:.1f} | {base_tps:.1f} | {base['requests'] / base['wall']:.2f} |",
        f"| extract stage (Beam job, cache, parsing; {len(docs)} docs) | {stats['requests_sent']} | "
        f"{stats['completion_tokens']} | {wall:.1f} | {ours_tps:.1f} | {stats['requests_sent'] / wall:.2f} |",
        f"| extract rerun | {rerun['requests_sent']} | {rerun['completion_tokens']} | {rerun['wall_seconds']:.1f} | - | - |",
        "",
        f"**extract / ceiling (completion tokens/s): {ours_tps / base_tps:.2f}**; documents/s: "
        f"{len(docs) / wall:.2f}; rerun sent {rerun['requests_sent']} requests "
        f"({rerun['cache_hits']} cache hits, {rerun['cache_hits_failed']} recorded failures).",
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        from bench.recall import replace_section

        replace_section(Path(args.out), "bench/llm.py",
                        f"`python bench/llm.py` on {time.strftime('%Y-%m-%d')}: SmolLM2-135M on vLLM's CPU "
                        f"build, 2 cores; the stage's wall time includes Beam's start-up.\n\n" + report + "\n" + NOTES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
