"""The LLM request cache on object storage: what a worker pays to open it, what the driver pays to
merge it, against moto's S3 server on loopback (a real S3 API over HTTP; a real bucket adds network
latency and bandwidth, which the per-entry numbers let you scale).

    python bench/llm_cache.py --entries 10000 100000

For each size: N entries of extract-like replies (about 1.2 kB of JSON each) are written by 8
"workers" as segments of FLUSH_EVERY entries (what a run leaves before compaction), then
- open (segments): a fresh process-level store lists and downloads every segment and fills its
  local SQLite copy (what each worker process pays once per stage before compaction),
- compact: the driver merges them into one segment,
- open (compacted): the same as the first, from the one merged segment (what the next run pays),
- lookups: get_many of every key in batches of 64 (what the stage's client does), per second."""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from s3_server import s3_server  # noqa: E402

WORDS = ("the of a to is in that for it as with was on be by this are or an which from can if then "
         "solve equation find value function integral derivative prime number triangle angle "
         "probability matrix vector limit series sum area volume radius").split()


def reply(rng: random.Random, i: int) -> dict:
    text = " ".join(rng.choice(WORDS) for _ in range(170))
    return {"text": text, "data": {"pairs": [{"question": text[:300], "answer": text[300:]}]},
            "finish_reason": "stop", "prompt_tokens": 1100 + i % 50, "completion_tokens": 240}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, nargs="+", default=[10_000, 100_000])
    args = ap.parse_args()
    with s3_server("/tmp/webinstruct-bench-moto.log") as env:
        os.environ.update(env)
        import s3fs

        from webinstruct.pipeline.llm import cache as C

        s3fs.S3FileSystem().mkdir("bench")
        print("| entries | segments | bytes in bucket | open (segments) s | compact s | open (compacted) s | lookups/s |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for n in args.entries:
            path = f"s3://bench/run-{n}/cache/llm.sqlite"
            rng = random.Random(n)
            keys = [f"{i:064x}" for i in range(n)]
            for w in range(8):  # 8 worker processes' stores, flushing every FLUSH_EVERY entries
                store = C._Store(C.segments_dir(path))
                for i in range(w, n, 8):
                    store.put(keys[i], reply(rng, i))
                store.flush()
                C._STORES.clear()
            folder = C.segments_dir(path)
            fs = s3fs.S3FileSystem()
            segments = len(fs.ls(folder.split("://", 1)[1]))
            size = sum(fs.du(folder.split("://", 1)[1], total=False).values())
            t = time.perf_counter()
            C._Store(folder)
            open_segments = time.perf_counter() - t
            t = time.perf_counter()
            C.compact(path)
            compact = time.perf_counter() - t
            t = time.perf_counter()
            store = C._Store(folder)
            open_compacted = time.perf_counter() - t
            t = time.perf_counter()
            found = 0
            for i in range(0, n, 64):
                found += len(store.local.get_many(keys[i:i + 64]))
            lookups = n / (time.perf_counter() - t)
            assert found == n, (found, n)
            print(f"| {n:,} | {segments} | {size / 1e6:.1f} MB | {open_segments:.1f} | {compact:.1f} | "
                  f"{open_compacted:.1f} | {lookups:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
