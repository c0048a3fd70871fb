"""Domain rounds: select domains from a recall run, retrain the classifier, recall again, compare.

Round N+1 (MAmmoTH2's second round): positives are the seed positives plus the documents recalled
from selected domains; negatives are the seed negatives plus the documents recalled from the other
domains (the previous classifier's likely false positives). The new classifier recalls the same
WARCs again, and the overlap with the previous round says whether another round is worth it
(DeepSeekMath stopped when ~98% of a round's data had already been found).

The round recalls the WARC files the previous recall read (its config.json `inputs`, so a run
recalled from s3:// or by crawl name is read again from there; `--warc` overrides), plus the
records `domains fetch` fetched for the round from Common Crawl's index (pipeline/recall/domain_fetch.py).

Layout: RUN/domains/selected.json, RUN/domains/round-N/{classifier.bin,classifier.json,recall/,overlap.json},
RUN/domains/round-N/fetched/ (`domains fetch`: part-NNNNN.warc.gz, fetched.json).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from webinstruct.core import shards
from webinstruct.core.config import NonNegativeInt, PositiveInt, Share, option
from webinstruct.pipeline.llm.config import LLMConfig
from webinstruct.pipeline.recall import domains as dom
from webinstruct.core.schema import DomainRow, RecalledDocument

log = logging.getLogger(__name__)

SEED_POSITIVES = ["data/seeds/positive.jsonl.gz"]
SEED_NEGATIVES = ["data/seeds/negative.jsonl.xz"]


@dataclass
class SeedsConfig:
    """Recipe section `seeds`: the seed text the default recall classifier is trained on."""
    positives: list[str] = option(SEED_POSITIVES, "seed positive JSON-lines files (field `text`)")
    negatives: list[str] = option(SEED_NEGATIVES, "seed negative JSON-lines files (field `text`)")


@dataclass
class DomainsConfig:
    run: str = option("runs/sample", "run directory holding RUN/recall from the previous round")
    previous: str = option("", "recall directory of the previous round (default RUN/recall)")
    min_recalled: NonNegativeInt = option(1000, "select domains with at least this many recalled pages (MAmmoTH2: 1,000)")
    min_share: Share = option(0.1, "and at least this share of their seen pages recalled (DeepSeekMath: 10%)")
    labeler: str = option("", "final verdict on the domains that pass the rules: `llm` (an LLM labels each "
                               "educational or not, MAmmoTH2's way; endpoint from LLM_URL / --llm-url or the "
                               "local server) or module:function taking a domain row")
    round: PositiveInt = option(2, "number of the round to run")
    warc: list[str] = option([], "WARC paths or globs the round recalls (default: the previous recall's inputs, "
                                 "recorded in its config.json; plus what `domains fetch` fetched for the round)")
    positives: list[str] = option(SEED_POSITIVES, "seed positive JSON-lines files (field `text`)")
    negatives: list[str] = option(SEED_NEGATIVES, "seed negative JSON-lines files (field `text`)")

    def domains_dir(self) -> str:
        return f"{self.run.rstrip('/')}/domains"

    def previous_dir(self) -> str:
        return self.previous or f"{self.run.rstrip('/')}/recall"

    def round_dir(self) -> str:
        return f"{self.domains_dir()}/round-{self.round}"


def read_table(recall_dir: str) -> list[dict[str, Any]]:
    # The marker lists domains.jsonl.gz: a complete recall folder has it, a killed one is refused.
    shards.complete_shards(recall_dir, "webinstruct recall")
    return list(shards.iter_shard(shards.join(recall_dir, "domains.jsonl.gz"), DomainRow))


def select(cfg: DomainsConfig, llm: LLMConfig | None = None) -> dict[str, Any]:
    """Mark domains by rule (and labeler); write RUN/domains/selected.json."""
    rows = read_table(cfg.previous_dir())
    labels: dict[str, dict[str, Any]] = {}
    accounting: dict[str, int] = {}
    if cfg.labeler == "llm":
        from webinstruct.pipeline.recall import domain_labels

        candidates, _ = dom.select_domains(rows, cfg.min_recalled, cfg.min_share)
        by_name = {r["domain"]: r for r in rows}
        docs = shards.read_shards(cfg.previous_dir(), RecalledDocument, produced_by="recall")
        labels, accounting = domain_labels.label_domains(
            [by_name[d] for d in candidates], docs, llm or LLMConfig(),
            (llm.cache if llm and llm.cache else f"{cfg.run.rstrip('/')}/cache/llm.sqlite"))
        labeler = lambda row: labels.get(row["domain"], {}).get("educational", False)  # noqa: E731
    else:
        labeler = dom.load_labeler(cfg.labeler)
    selected, verdicts = dom.select_domains(rows, cfg.min_recalled, cfg.min_share, labeler)
    for domain, label in labels.items():
        if "error" in label:
            verdicts[domain] = "labeler_failed"
    counts: dict[str, int] = {}
    for v in verdicts.values():
        counts[v] = counts.get(v, 0) + 1
    report = {
        "source": cfg.previous_dir(),
        "rules": {"min_recalled": cfg.min_recalled, "min_share": cfg.min_share, "labeler": cfg.labeler},
        "selected": selected,
        "verdict_counts": counts,
        "verdicts": verdicts,
    }
    if cfg.labeler == "llm":
        from webinstruct.pipeline.recall.domain_labels import PROMPT_VERSION

        report.update(labels=labels, labeler_accounting=accounting, labeler_prompt=PROMPT_VERSION,
                      labeler_model=(llm.model if llm else "") or "local default")
    shards.write_json(shards.join(cfg.domains_dir(), "selected.json"), report)
    return report


def round_training_texts(cfg: DomainsConfig, selected: list[str]) -> tuple[list[str], list[str], dict[str, int]]:
    from webinstruct.pipeline.recall.classifier import load_texts

    chosen = set(selected)
    pos_web, neg_web = [], []
    for doc in shards.read_shards(cfg.previous_dir(), RecalledDocument, "recall"):
        (pos_web if doc["domain"] in chosen else neg_web).append(doc["text"])
    positives = load_texts(cfg.positives) + pos_web
    negatives = load_texts(cfg.negatives) + neg_web
    sizes = {"positives_from_selected_domains": len(pos_web), "negatives_from_other_domains": len(neg_web),
             "positives": len(positives), "negatives": len(negatives)}
    return positives, negatives, sizes


def recalled_urls(recall_dir: str) -> list[str]:
    return [d["url"] for d in shards.read_shards(recall_dir, RecalledDocument, "recall")]


def previous_inputs(recall_dir: str) -> list[str]:
    """The WARC files a recall folder was made from (its config.json `inputs`), [] when unrecorded."""
    try:
        return list(shards.read_json(shards.join(recall_dir, "config.json")).get("inputs") or [])
    except FileNotFoundError:
        return []


def selection(cfg: DomainsConfig, llm: LLMConfig | None = None) -> dict[str, Any]:
    """RUN/domains/selected.json (made by `select` when absent); an error when it selects nothing."""
    sel_path = shards.join(cfg.domains_dir(), "selected.json")
    report = shards.read_json(sel_path) if shards.exists(sel_path) else select(cfg, llm)
    if not report["selected"]:
        raise ValueError(
            f"no domain passed the rules {report['rules']} ({report['verdict_counts']}): lower "
            "--min-recalled/--min-share or recall more data before another round")
    return report


def round_inputs(cfg: DomainsConfig, default: list[str]) -> tuple[list[str], list[str]]:
    """What the round recalls: --warc, else the previous recall's recorded inputs (else `default`,
    the recipe's recall.warc); and the WARC files `domains fetch` wrote for this round."""
    from webinstruct.pipeline.recall.domain_fetch import fetched_warcs

    base = list(cfg.warc) or previous_inputs(cfg.previous_dir()) or list(default)
    return base, [w for w in fetched_warcs(cfg.round_dir()) if w not in base]


def run_round(cfg: DomainsConfig, recall_cfg, classifier_cfg, llm: LLMConfig | None = None) -> dict[str, Any]:
    """Select (when not done), retrain, recall again into RUN/domains/round-N/recall, report overlap."""
    from webinstruct.pipeline.recall import job
    from webinstruct.pipeline.recall.classifier import train_classifier

    report = selection(cfg, llm)
    base, fetched = round_inputs(cfg, recall_cfg.warc)
    positives, negatives, sizes = round_training_texts(cfg, report["selected"])
    model_path = shards.join(cfg.round_dir(), "classifier.bin")
    meta = train_classifier(positives, negatives, model_path, classifier_cfg)
    recall_cfg = dataclasses.replace(recall_cfg, run=cfg.run, out=shards.join(cfg.round_dir(), "recall"),
                                     classifier=model_path, round=cfg.round, warc=base + fetched, crawl="")
    stats = job.run(recall_cfg)
    ov = dom.overlap(recalled_urls(cfg.previous_dir()), recalled_urls(recall_cfg.out_dir()))
    result = {"round": cfg.round, "selected_domains": report["selected"], "training": sizes,
              "classifier": {k: meta.get(k) for k in ("threshold", "metrics")},
              "recall": {k: stats.get(k) for k in ("pages_decoded", "pages_recalled", "docs_written")},
              "inputs": {"previous": len(base), "fetched": len(fetched)},
              "overlap": ov}
    shards.write_json(shards.join(cfg.round_dir(), "overlap.json"), result)
    return result
