"""The recall stage as a Beam pipeline: WARC files -> deduplicated math/science documents.

    WARC paths -> RecallFile (read, cheap score, math-aware extraction, score)
               -> shuffle by URL bucket   -> dedup_urls (one doc per URL; domain table rows)
               -> shuffle by shard bucket -> write_outputs (content dedup, shards, domain table)
               -> shuffle to one key      -> finish (stats.json)

Outputs in RUN/recall/: part-NNNNN-of-MMMMM.jsonl.gz (RecalledDocument), domains.jsonl.gz
(DomainRow), stats.json (flat counters), config.json (the settings used), and last _SUCCESS, the
completion marker listing them (core/publish.py): without it the next stage refuses the folder.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any

import apache_beam as beam

from webinstruct.pipeline.runners import run_pipeline
from webinstruct.core import io as fio
from webinstruct.core import shards
from webinstruct.core.http_range import is_http
from webinstruct.core.resources import bundled
from webinstruct.pipeline.recall import transforms as T
from webinstruct.pipeline.recall.config import RecallConfig
from webinstruct.pipeline.stage import finish
from webinstruct.core.stats import beam_counters, format_stats

log = logging.getLogger(__name__)


def expand_inputs(patterns: list[str]) -> list[str]:
    """Every file matching the WARC globs, sorted; a clear error when nothing matches.
    http(s):// URLs are taken as they are (HTTP has no listing to glob)."""
    paths: set[str] = set()
    for pattern in patterns:
        if is_http(pattern):
            paths.add(pattern)
            continue
        paths.update(fio.glob(bundled(pattern)))
    if not paths:
        raise shards.MissingInput(f"no WARC files match {' '.join(patterns)}")
    return sorted(paths)


def inputs(cfg: RecallConfig) -> list[str]:
    """The WARC files to read: the crawl's selected files (`--crawl/--files/--cc-base`), else `--warc`."""
    if cfg.crawl:
        from webinstruct.pipeline.recall import commoncrawl

        paths = commoncrawl.resolve(cfg.crawl, cfg.files, cfg.cc_base, cfg.http())
        log.info("recall: %s files %s: %d WARC files from %s", cfg.crawl, cfg.files or "(all)", len(paths),
                 commoncrawl.paths_url(cfg.crawl, cfg.cc_base))
        return paths
    return expand_inputs(cfg.warc)


def listing(cfg: RecallConfig) -> str:
    """The crawl's WARC listing the inputs came from ("" when they came from --warc)."""
    from webinstruct.pipeline.recall.commoncrawl import paths_url

    return paths_url(cfg.crawl, cfg.cc_base) if cfg.crawl else ""


def build(p: beam.Pipeline, paths: list[str], cfg: RecallConfig, classifier_path: str) -> beam.PCollection:
    out = cfg.out_dir()
    dofn_cfg = {
        "classifier_path": classifier_path,
        "threshold": cfg.threshold,
        **cfg.page_settings(),
        "round": cfg.round,
        "http": cfg.http(),
        # WARC paths stay as written (documents record them); a worker in another working
        # directory opens a relative one under the launcher's.
        "base_dir": os.getcwd(),
    }
    files = p | "WarcPaths" >> beam.Create(paths)
    if cfg.runner != "local":  # one process has nothing to spread the files over
        files = files | "SpreadFiles" >> beam.Reshuffle()
    return (
        files
        | "RecallFile" >> beam.ParDo(T.RecallFile(dofn_cfg))
        | "KeyByUrl" >> beam.Map(T.key_by_url, cfg.dedup_buckets)
        | "GroupByUrl" >> beam.GroupByKey()
        | "DedupUrls" >> beam.FlatMap(T.dedup_urls)
        | "KeyByShard" >> beam.Map(T.key_by_shard, cfg.num_shards)
        | "GroupByShard" >> beam.GroupByKey()
        | "WriteShards" >> beam.FlatMap(T.write_outputs, out, cfg.num_shards)
        | "KeyAll" >> beam.Map(lambda item: (0, item))
        | "GroupAll" >> beam.GroupByKey()
        | "Finish" >> beam.Map(finish, out, cfg.num_shards, ("domains.jsonl.gz",))
    )


def execute(cfg: RecallConfig, classifier_path: str) -> tuple[dict[str, Any], dict[str, int] | None, float]:
    """Run the pipeline; return (stats.json counters, the runner's Beam metrics or None, wall seconds)."""
    if not fio.exists(classifier_path):
        raise shards.MissingInput(
            f"no classifier at {classifier_path}: run `webinstruct classifier train` (or `make classifier`) first")
    if cfg.languages:  # the language-ID model, checked here rather than in every worker
        from webinstruct.pipeline.recall.language import model_path

        model_path()
    paths = inputs(cfg)
    out = cfg.out_dir()
    # Locked, marker removed first; the marker, written last, makes the folder readable again.
    with shards.stage_output(out, T.STAGE) as output:
        log.info("recall: %d WARC files -> %s (runner %s)", len(paths), out, cfg.runner)
        t0 = time.monotonic()
        result = run_pipeline(cfg, lambda p: build(p, paths, cfg, classifier_path))
        wall = time.monotonic() - t0
        stats = shards.read_json(shards.join(out, "stats.json"))
        if paths and stats.get("warc_unreadable", 0) >= len(paths):
            # Not one file could be opened (a path the workers cannot see, say): an empty result
            # published as complete would pass silently to the next stage.
            raise shards.MissingInput(
                f"none of the {len(paths)} WARC files could be opened by the workers (warc_unreadable "
                f"{stats['warc_unreadable']}; the log names each): check the paths are readable where the workers run")
        shards.write_json(shards.join(out, "stats.json"), timed(stats, wall))
        shards.write_json(shards.join(out, "config.json"),
                          {**dataclasses.asdict(cfg), "classifier": classifier_path, "inputs": paths,
                           "listing": listing(cfg)})
        output.publish(["domains.jsonl.gz"])
    return stats, beam_counters(result, T.STAGE), wall


def timed(stats: dict[str, Any], wall: float) -> dict[str, Any]:
    """The counters plus the run's wall time and page rate, as stats.json records them."""
    return {**stats, "wall_seconds": round(wall, 2),
            "pages_per_second": round(stats.get("pages_decoded", 0) / wall, 2) if wall > 0 else 0.0}


def run(cfg: RecallConfig, classifier_path: str | None = None) -> dict[str, Any]:
    """Run recall; return the stats written to RUN/recall/stats.json (counters plus timing)."""
    stats, metrics, wall = execute(cfg, classifier_path or cfg.classifier_path())
    if metrics is not None and metrics != stats:
        # Should not happen: both come from the same StageCounter calls. Say so loudly if it does.
        log.warning("Beam metrics and stats.json disagree: %s vs %s", metrics, stats)
    return timed(stats, wall)  # what execute wrote to stats.json before publishing the folder


def summary(stats: dict[str, Any], out_dir: str) -> str:
    return format_stats(stats, f"recall -> {out_dir}")
