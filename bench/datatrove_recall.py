"""datatrove's side of bench/recall.py: its own pipeline, run by its own executor.

    build/bench-datatrove/bin/python bench/datatrove_recall.py --data DIR --glob '*.warc.gz' \
        --model classifier.bin --threshold 0.29 --workers 2 --work TMPDIR --result result.json

Runs inside the virtual environment that bench/recall.py makes (datatrove and its extras only;
nothing of webinstruct is imported here). The pipeline is the one datatrove's examples build for
a recall-style pass over WARC files, with every block at its defaults:

    WarcReader(data folder, glob) -> Trafilatura() -> FastTextClassifierFilter(model,
    keep_labels=[("pos", threshold)]) -> JsonlWriter

on a LocalPipelineExecutor with tasks = workers = N and its logs under --work.

The fastText model is copied into datatrove's asset cache (its "download" step) before the clock
starts; the heavy libraries are imported before it too, so `pipeline_wall_s` is the executor's
run: reading, extraction, scoring and writing, plus the model load and the task processes'
start-up, as a user would wait for it. CPU seconds are user + system of this process and of its
reaped children (the executor's pool, its manager and the extractor sandboxes).

--result gets one JSON object: pages_read, pages_extracted, extraction_timeouts, pages_kept,
kept_urls, pipeline_wall_s, pipeline_cpu_s, process_wall_s (from the first line of this script,
so without the interpreter's own start), blocks (each block's seconds and counters from the
executor's stats.json), versions.
"""
from __future__ import annotations

import time

T_PROCESS = time.perf_counter()

import argparse  # noqa: E402
import glob  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _magic_or_stand_in() -> None:
    """datatrove's WARC reader imports `magic` (libmagic) for every record, but asks it something
    only when a record lacks WARC-Identified-Payload-Type (the mix always has it). Where libmagic
    is not installed, a stand-in that refuses to guess lets the reader run on such files."""
    try:
        import magic  # noqa: F401
    except ImportError:
        stand_in = types.ModuleType("magic")

        def from_buffer(buf, mime=False):
            return "application/octet-stream"

        stand_in.from_buffer = from_buffer
        sys.modules["magic"] = stand_in


def versions() -> dict:
    from importlib import metadata

    out = {}
    for name in ("datatrove", "trafilatura", "warcio", "fasttext-numpy2-wheel", "lxml", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    out["python"] = sys.version.split()[0]
    return out


def block_stats(stats_file: str) -> list[dict]:
    """Per block of the executor's merged stats (logs/stats.json): its name, seconds and counters
    (totals only). Informative; their form is datatrove's and may change, so nothing here fails."""
    try:
        with open(stats_file, encoding="utf-8") as fh:
            blocks = json.load(fh)
    except (OSError, ValueError):
        return []
    out = []
    for block in blocks if isinstance(blocks, list) else []:
        counters = {}
        for key, value in (block.get("stats") or {}).items():
            total = value.get("total") if isinstance(value, dict) else value
            if isinstance(total, (int, float)):
                counters[key] = total
        out.append({"name": str(block.get("name", "")),
                    "seconds": round(float((block.get("time_stats") or {}).get("total", 0.0)), 3),
                    "counters": counters})
    return out


def counter(blocks: list[dict], name_part: str, key: str) -> int | None:
    for block in blocks:
        if name_part.lower() in block["name"].lower() and key in block["counters"]:
            return int(block["counters"][key])
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder of WARC files")
    ap.add_argument("--glob", default="*.warc.gz", help="file pattern inside --data")
    ap.add_argument("--model", required=True, help="fastText model (labels __label__pos / __label__neg)")
    ap.add_argument("--threshold", type=float, required=True, help="keep pages with P(pos) >= this")
    ap.add_argument("--workers", type=int, default=1, help="tasks = workers = this")
    ap.add_argument("--work", required=True, help="empty folder for logs and output")
    ap.add_argument("--result", required=True, help="JSON file to write")
    args = ap.parse_args()

    _magic_or_stand_in()
    # The asset cache of the model copy lives with this run's work, not in the user's home.
    os.environ.setdefault("HF_ASSETS_CACHE", os.path.join(args.work, "assets"))
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.io import cached_asset_path_or_download
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import FastTextClassifierFilter
    from datatrove.pipeline.readers import WarcReader
    from datatrove.pipeline.writers import JsonlWriter

    import fasttext  # noqa: F401  (imported before the clock, as ours has its imports done)
    import trafilatura  # noqa: F401

    model = os.path.abspath(args.model)
    cached_asset_path_or_download(model, progress=False, namespace="filters", subfolder="fasttext",
                                  desc="fast-text model")
    out_dir = os.path.join(args.work, "out")
    executor = LocalPipelineExecutor(
        pipeline=[
            WarcReader(os.path.abspath(args.data), glob_pattern=args.glob),
            Trafilatura(),
            FastTextClassifierFilter(model, keep_labels=[("pos", args.threshold)]),
            JsonlWriter(out_dir),
        ],
        tasks=args.workers,
        workers=args.workers,
        logging_dir=os.path.join(args.work, "logs"),
    )
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    executor.run()
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0

    kept = []
    for path in sorted(glob.glob(os.path.join(out_dir, "*.jsonl*"))):
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    kept.append(json.loads(line).get("metadata", {}).get("url", ""))
    blocks = block_stats(os.path.join(args.work, "logs", "stats.json"))
    result = {
        "pages_read": counter(blocks, "warc", "documents"),
        "pages_extracted": counter(blocks, "trafilatura", "forwarded"),
        "extraction_timeouts": counter(blocks, "trafilatura", "timeout") or 0,
        "pages_kept": len(kept),
        "kept_urls": kept,
        "pipeline_wall_s": round(wall, 3),
        "pipeline_cpu_s": round(cpu, 3),
        "process_wall_s": round(time.perf_counter() - T_PROCESS, 3),
        "blocks": blocks,
        "versions": versions(),
    }
    with open(args.result, "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
