"""The augment stage as a Beam pipeline: questions with final answers -> MetaMathQA shards.

    groups of input files -> AugmentFiles (AnsAug, Rephrasing, SV, FOBAR through the LLM, answer
                             checks) -> rows by type -> cap each type at its target
                          -> shuffle by row id -> write shards -> one key -> stats.json

Inputs are GSM8K-style, MATH-style or WebInstruct rows (RUN/refine by default). As in the other
LLM stages, with no endpoint configured the stage starts the local server for its run, and the
request cache (RUN/cache/llm.sqlite) makes a rerun send only what never finished.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import apache_beam as beam

from webinstruct.pipeline.llm.cache import compact as compact_cache
from webinstruct.pipeline.runners import run_pipeline
from webinstruct.core import io as fio
from webinstruct.core import shards
from webinstruct.pipeline.augment import prompts
from webinstruct.pipeline.augment import transforms as T
from webinstruct.pipeline.augment.config import AugmentConfig
from webinstruct.pipeline.llm.config import LLMConfig
from webinstruct.pipeline.llm.endpoint import llm_endpoint
from webinstruct.core.schema import MetaMathRow
from webinstruct.pipeline.stage import close_stats, finish, key_by_shard, llm_settings, task_groups, write_records
from webinstruct.core.stats import format_stats

log = logging.getLogger(__name__)


def build(p: beam.Pipeline, files: list[str], cfg: AugmentConfig, llm: LLMConfig) -> None:
    out = cfg.out_dir()
    dofn_cfg = {**dataclasses.asdict(cfg), "cache": llm.cache or cfg.cache_path()}
    rows = (
        p
        # Absolute: a worker in another working directory must open the launcher's files.
        | "InputFiles" >> beam.Create(task_groups([fio.absolute(f) for f in files], cfg.task_count(len(files))))
        | "SpreadFiles" >> beam.Reshuffle()
        | "Augment" >> beam.ParDo(T.AugmentFiles(dofn_cfg, dataclasses.asdict(llm)))
        # Rows by type so each type can be capped at its target; stats pass under their own key.
        # Integer keys (the type's place in TYPES), as in every stage: string keys mis-group on Dask.
        | "KeyByType" >> beam.Map(T.key_by_type)
        | "GroupByType" >> beam.GroupByKey()
        | "CapTypes" >> beam.FlatMap(T.cap_group, cfg.targets)
    )
    (
        rows
        | "KeyByShard" >> beam.Map(key_by_shard, cfg.num_shards)
        | "GroupByShard" >> beam.GroupByKey()
        | "WriteShards" >> beam.FlatMap(write_records, T.STAGE, out, cfg.num_shards, MetaMathRow)
        | "KeyAll" >> beam.Map(lambda item: (0, item))
        | "GroupAll" >> beam.GroupByKey()
        | "Finish" >> beam.Map(finish, out, cfg.num_shards)
    )


def acceptance(stats: dict[str, Any]) -> dict[str, float]:
    """Accepted share of sampled solutions per kind (ansaug, rephrase, sv, fobar)."""
    return {k: round(stats.get(f"{k}_accepted", 0) / stats[f"{k}_samples"], 4)
            for k in T.KINDS if stats.get(f"{k}_samples")}


def run(cfg: AugmentConfig, llm: LLMConfig, recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    files = T.input_files(cfg.input_paths())
    missing = [f for f in files if not fio.exists(f)]
    if not files or missing:
        raise shards.MissingInput(f"no augment input at {', '.join(missing or cfg.input_paths())}: give --input "
                                  "GSM8K/MATH-style JSON lines, or run `make refine` first")
    out = cfg.out_dir()
    with shards.stage_output(out, T.STAGE) as output:
        cache = llm.cache or cfg.cache_path()
        shards.makedirs(cache.rsplit("/", 1)[0])
        t0 = time.monotonic()
        # MetaMath's prompts carry 8 worked examples (~2-3k tokens) before the question.
        with llm_endpoint(llm, max_model_len=8192, workers_elsewhere=cfg.workers_elsewhere()) as llm:
            log.info("augment: %d input file(s) -> %s with %s at %s", len(files), out, llm.model, llm.url)
            run_pipeline(cfg, lambda p: build(p, files, cfg, llm))
            compact_cache(cache)  # a remote cache: its workers' segments merged into one
        accounting = ("seeds_in", "rows_out", "requests_sent", "cache_hits", "prompt_tokens", "completion_tokens",
                      *(f"{k}_{w}" for k in T.KINDS for w in ("samples", "accepted")))
        stats = close_stats(out, t0, accounting, lambda s: {
            "acceptance": acceptance(s),
            "targets": {t: {"target": n, "rows": s.get(f"kept_{t}", 0)} for t, n in cfg.targets.items()}},
            max_failure_share=llm.max_failure_share)
        shards.write_json(shards.join(out, "config.json"),
                          {**dataclasses.asdict(cfg), "llm": llm_settings(llm),
                           "prompt_version": prompts.PROMPT_VERSION, "inputs": files})
        output.publish()
    return stats


def summary(stats: dict[str, Any], out_dir: str) -> str:
    return format_stats(stats, f"augment -> {out_dir}")
