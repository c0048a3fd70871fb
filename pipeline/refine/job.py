"""The refine stage as a Beam pipeline: extracted pairs -> WebInstruct shards.

    groups of extract shards -> RefinePairs (decontaminate; refiners through the LLM client;
                                checks; merge policy)
                             -> Dedup (exact + MinHash dedup as partitioned shuffles, beam_dedup.py)
                             -> Number (index in id order by id ranges; contaminated pages on the
                                one global key, which holds no rows)
                             -> shuffle by row id -> write shards -> one key -> stats.json

Then, outside Beam: exports (`RUN/refine/export/webinstruct.{parquet,jsonl}`), the dataset card
(`RUN/refine/README.md`) and the run report (`RUN/report.md`). The benchmark n-gram index is built
once per set of benchmark files and reused (~/.cache/webinstruct/decontam/, or `index_cache`);
workers that may be elsewhere read the run's copy in RUN/cache/decontam/ (`worker_index`).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
from pathlib import Path
from typing import Any

import apache_beam as beam

from webinstruct.pipeline.llm.cache import compact as compact_cache
from webinstruct.pipeline.runners import run_pipeline
from webinstruct.core import io as fio
from webinstruct.core import shards
from webinstruct.pipeline.llm.config import LLMConfig
from webinstruct.pipeline.llm.endpoint import llm_endpoint, with_model
from webinstruct.pipeline.refine import prompt
from webinstruct.pipeline.refine.beam_dedup import Dedup, Number
from webinstruct.pipeline.refine import transforms as T
from webinstruct.pipeline.refine.config import MERGE_POLICIES, RefineConfig
from webinstruct.core.schema import WebInstructRow, field_names
from webinstruct.pipeline.stage import close_stats, finish, key_by_shard, task_groups, write_records
from webinstruct.core.stats import format_stats
from webinstruct.core.resources import bundled

log = logging.getLogger(__name__)
ACCOUNTING = ("pairs_in", "rows_refined", "rows_original_kept", "rows_out", "records_written", "pairs_without_revision", "requests_sent", "cache_hits",
              "cache_hits_failed", "prompt_tokens", "completion_tokens", "answers_consistent", "answers_changed",
              "answers_unchecked", "contaminated_pages", "dropped_duplicate_exact", "dropped_duplicate_near")
PUBLIC_FIELDS = ["orig_question", "orig_answer", "question", "answer", "source", "index"]


def benchmark_roots(cfg: RefineConfig) -> list[str]:
    """The benchmark directories; a relative one is looked up in the working directory, then in
    the installed package (so the bundled data/benchmarks is found from anywhere)."""
    roots = []
    for b in cfg.benchmarks:
        path = Path(bundled(b))
        if not path.is_dir():
            raise FileNotFoundError(f"benchmark directory {b!r} does not exist (refine.benchmarks); the repository "
                                    "bundles data/benchmarks")
        roots.append(str(path))
    return roots


def resolve_refiners(cfg: RefineConfig, default: LLMConfig) -> list[dict]:
    """Refiner entries with a full LLM config each; a missing url/model uses the default endpoint."""
    entries = cfg.refiners or [{"name": "refiner"}]
    out, names = [], set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"refine.refiners[{i}] must be a mapping with name, url, model, temperature")
        name = str(entry.get("name") or f"refiner{i + 1}")
        if name in names:
            raise ValueError(f"refine.refiners: the name {name!r} is used twice")
        names.add(name)
        llm = default
        if entry.get("url"):
            llm = dataclasses.replace(default, url=[entry["url"]] if isinstance(entry["url"], str) else list(entry["url"]),
                                      model=entry.get("model", ""))
            llm = with_model(llm)
        elif entry.get("model"):
            llm = dataclasses.replace(default, model=entry["model"])
        out.append({"name": name, "temperature": entry.get("temperature"), "llm": dataclasses.asdict(llm)})
    return out


def build(p: beam.Pipeline, inputs: list[str], cfg: RefineConfig, refiners: list[dict], index_path: str,
          cache: str) -> None:
    out = cfg.out_dir()
    dofn_cfg = {**dataclasses.asdict(cfg), "cache": cache}
    (
        p
        | "ExtractShards" >> beam.Create(task_groups(inputs, cfg.task_count(len(inputs))))
        | "SpreadShards" >> beam.Reshuffle()
        | "RefinePairs" >> beam.ParDo(T.RefinePairs(dofn_cfg, refiners, index_path))
        | "Dedup" >> (Dedup(T.score, stage=T.STAGE) if cfg.dedup else beam.Map(lambda item: item))
        | "Number" >> Number(T.STAGE, on_global=functools.partial(T.write_contaminated, out))
        | "KeyByShard" >> beam.Map(key_by_shard, cfg.num_shards)
        | "GroupByShard" >> beam.GroupByKey()
        | "WriteShards" >> beam.FlatMap(write_records, T.STAGE, out, cfg.num_shards, WebInstructRow)
        | "KeyAll" >> beam.Map(lambda item: (0, item))
        | "GroupAll" >> beam.GroupByKey()
        | "Finish" >> beam.Map(finish, out, cfg.num_shards, (T.CONTAMINATED_FILE,))
    )


def export(out: str, rows: list[dict]) -> dict[str, str]:
    """The final rows as one Parquet file and one JSON-lines file (public fields first)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    export_dir = fio.join(out, "export")
    names = PUBLIC_FIELDS + [f for f in field_names(WebInstructRow) if f not in PUBLIC_FIELDS]
    ordered = [{k: r[k] for k in names} for r in sorted(rows, key=lambda r: r["index"])]
    paths = {"parquet": fio.join(export_dir, "webinstruct.parquet"), "jsonl": fio.join(export_dir, "webinstruct.jsonl")}
    table = pa.Table.from_pylist(ordered, schema=pa.schema(
        [(k, pa.int64() if k == "index" else pa.float64() if k == "doc_score" else pa.string()) for k in names]))
    fio.write_atomic_with(paths["parquet"], lambda tmp: pq.write_table(table, tmp))
    with fio.atomic_writer(paths["jsonl"], "w") as fh:
        for row in ordered:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return paths


def worker_index(path: str, cfg: RefineConfig) -> str:
    """Where the workers read the decontamination index: the launcher's cached file when they run
    beside it, else (RUN on object storage, or workers started elsewhere) a copy in
    RUN/cache/decontam/ (made once per index version), the one place they all reach."""
    if fio.is_remote(path) or (cfg.workers_share_cwd() and not fio.is_remote(cfg.run)):
        return path
    shared = fio.join(cfg.run, "cache", "decontam", fio.basename(path))
    try:
        present = fio.size(shared) == fio.size(path)
    except FileNotFoundError:
        present = False
    if not present:
        fio.copy(path, shared)
    return shared


def run(cfg: RefineConfig, llm: LLMConfig, recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    from webinstruct.pipeline.refine.decontam import NGramIndex

    if cfg.merge not in MERGE_POLICIES:
        raise ValueError(f"refine.merge {cfg.merge!r}: choose one of {', '.join(MERGE_POLICIES)}")
    # Before any server starts: a folder the stage never wrote is missing input, one it did not
    # finish (no completion marker) is refused; each with the command to run.
    inputs = shards.complete_shards(cfg.input_dir(), "extract")
    out = cfg.out_dir()
    from webinstruct.pipeline.report.dataset_card import write_card
    from webinstruct.pipeline.report.run_report import write_report

    with shards.stage_output(out, T.STAGE) as output:
        cache = llm.cache or cfg.cache_path()
        shards.makedirs(cache.rsplit("/", 1)[0])
        t0 = time.monotonic()
        index = NGramIndex.cached(benchmark_roots(cfg), cfg.ngram, cfg.index_cache or None)
        log.info("refine: decontaminating against %d benchmarks (%s word %d-grams)", len(index.names),
                 f"{len(index):,}", cfg.ngram)
        with llm_endpoint(llm, max_model_len=4096, workers_elsewhere=cfg.workers_elsewhere()) as live:
            refiners = resolve_refiners(cfg, live)
            log.info("refine: %d extract shards -> %s with %s (merge: %s)", len(inputs), out,
                     ", ".join(f"{r['name']}={r['llm']['model']}" for r in refiners), cfg.merge)
            run_pipeline(cfg, lambda p: build(p, inputs, cfg, refiners, worker_index(index.path, cfg), cache))
            compact_cache(cache)  # a remote cache: its workers' segments merged into one
        stats = close_stats(out, t0, ACCOUNTING, max_failure_share=llm.max_failure_share)
        used = {**dataclasses.asdict(cfg), "refiners": [{**r, "llm": {**r["llm"], "api_key": "***"}} for r in refiners],
                "prompt_version": prompt.PROMPT_VERSION, "inputs": inputs, "decontamination": index.summary()}
        shards.write_json(shards.join(out, "config.json"), used)
        # Read back what was just written (not yet published, so not through read_shards).
        rows = [row for path in shards.list_shards(out) for row in shards.iter_shard(path, WebInstructRow)]
        exports = export(out, rows)
        write_card(out, rows, stats, {**(recipe or {}), "refine": used})
        output.publish([T.CONTAMINATED_FILE, "README.md",
                        *(fio.basename(fio.dirname(p)) + "/" + fio.basename(p) for p in exports.values())])
    write_report(cfg.run)  # RUN/report.md reads the published folders
    return stats


def summary(stats: dict[str, Any], out_dir: str) -> str:
    return format_stats(stats, f"refine -> {out_dir}")
