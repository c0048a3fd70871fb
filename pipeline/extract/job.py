"""The extract stage as a Beam pipeline: recalled documents -> question-answer pairs.

    groups of recall shards -> ExtractShard (structured pairs; chunks streamed to the LLM -> pairs;
                               per-document merge of pairs found twice in overlapping chunks)
                       -> shuffle by pair id -> write shards -> shuffle to one key -> stats.json

With no LLM endpoint configured the stage starts the local server (pipeline/llm/server.py) for its
run and stops it afterwards. Finished LLM replies live in RUN/cache/llm.sqlite, so a rerun after a
crash (or of a finished stage) sends only the requests that never completed.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import apache_beam as beam

from webinstruct.pipeline.llm.cache import compact as compact_cache
from webinstruct.pipeline.runners import run_pipeline
from webinstruct.core import shards
from webinstruct.pipeline.extract import prompt
from webinstruct.pipeline.extract import transforms as T
from webinstruct.pipeline.extract.config import ExtractConfig
from webinstruct.pipeline.llm.config import LLMConfig
from webinstruct.pipeline.llm.endpoint import llm_endpoint
from webinstruct.core.schema import QAPair
from webinstruct.pipeline.stage import close_stats, finish, key_by_shard, llm_settings, task_groups, write_records
from webinstruct.core.stats import format_stats

log = logging.getLogger(__name__)
ACCOUNTING = ("docs_in", "docs_structured", "docs_with_pairs", "docs_void", "docs_failed", "chunks",
              "llm_requests", "requests_sent", "cache_hits", "cache_hits_failed", "prompt_tokens",
              "completion_tokens", "pairs_structured", "pairs_llm", "pairs_out")


def build(p: beam.Pipeline, inputs: list[str], cfg: ExtractConfig, llm: LLMConfig) -> None:
    out = cfg.out_dir()
    dofn_cfg = {**dataclasses.asdict(cfg), "cache": llm.cache or cfg.cache_path()}
    (
        p
        | "RecallShards" >> beam.Create(task_groups(inputs, cfg.task_count(len(inputs))))
        | "SpreadShards" >> beam.Reshuffle()
        | "ExtractShard" >> beam.ParDo(T.ExtractShard(dofn_cfg, dataclasses.asdict(llm)))
        | "KeyByShard" >> beam.Map(key_by_shard, cfg.num_shards)
        | "GroupByShard" >> beam.GroupByKey()
        | "WriteShards" >> beam.FlatMap(write_records, T.STAGE, out, cfg.num_shards, QAPair)
        | "KeyAll" >> beam.Map(lambda item: (0, item))
        | "GroupAll" >> beam.GroupByKey()
        | "Finish" >> beam.Map(finish, out, cfg.num_shards)
    )


def run(cfg: ExtractConfig, llm: LLMConfig, recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the stage; `recipe` (the whole recipe, unused here) keeps the LLM stages' signatures alike."""
    # Before any server starts: a folder the stage never wrote is missing input, one it did not
    # finish (no completion marker) is refused; each with the command to run.
    inputs = shards.complete_shards(cfg.input_dir(), "recall")
    out = cfg.out_dir()
    with shards.stage_output(out, T.STAGE) as output:
        cache = llm.cache or cfg.cache_path()
        shards.makedirs(cache.rsplit("/", 1)[0])
        t0 = time.monotonic()
        # SmolLM2 reads 8k tokens; 4k leaves room for the prompt's fixed part, a chunk and the reply.
        with llm_endpoint(llm, max_model_len=4096, workers_elsewhere=cfg.workers_elsewhere()) as llm:
            log.info("extract: %d recall shards -> %s with %s at %s", len(inputs), out, llm.model, llm.url)
            run_pipeline(cfg, lambda p: build(p, inputs, cfg, llm))
            compact_cache(cache)  # a remote cache: its workers' segments merged into one
        # Counters shown even when zero: "requests_sent: 0" is what a rerun should say.
        stats = close_stats(out, t0, ACCOUNTING, max_failure_share=llm.max_failure_share)
        shards.write_json(shards.join(out, "config.json"),
                          {**dataclasses.asdict(cfg), "llm": llm_settings(llm),
                           "prompt_version": prompt.PROMPT_VERSION, "inputs": inputs})
        output.publish()
    return stats


def summary(stats: dict[str, Any], out_dir: str) -> str:
    return format_stats(stats, f"extract -> {out_dir}")
