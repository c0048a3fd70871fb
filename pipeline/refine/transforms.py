"""The refine stage's steps: extracted pairs -> refined, checked, decontaminated, deduplicated rows.

`RefinePairs` takes a group of extract shards (as extract takes recall shards) and streams each
pair through its refiners: a pair that shares a benchmark n-gram is dropped before any LLM call;
the others go to every refiner (or, with the `alternate` policy, to one), each revision is checked
(pipeline/refine/checks.py) and decontaminated again, and the merge policy picks the rows.
The rows are then deduplicated and numbered by the partitioned Beam steps of
pipeline/refine/beam_dedup.py (no key holds every row); `write_contaminated` writes the list of
contaminated pages in the one global group, which holds no rows.
"""
from __future__ import annotations

import hashlib
import logging
from typing import Any, Iterator

import apache_beam as beam

from webinstruct.core import shards
from webinstruct.pipeline.llm.client import stop_on_server_faults, stream_many
from webinstruct.pipeline.refine import prompt
from webinstruct.pipeline.refine.checks import check
from webinstruct.core.schema import QAPair
from webinstruct.pipeline.stage import bucket
from webinstruct.core.stats import Progress, StageCounter

log = logging.getLogger(__name__)
STAGE = "refine"
CONTAMINATED_FILE = "contaminated.jsonl.gz"
CHECK_RANK = {"consistent": 0, "unchecked": 1, "changed": 2}


def row_id(pair_id: str, refiner: str) -> str:
    return hashlib.sha1(f"{pair_id}\n{refiner}".encode("utf-8")).hexdigest()[:20]


def refiners_for(pair_id: str, refiners: list[dict], merge: str) -> list[dict]:
    """The refiners a pair goes to: all of them, or one chosen by the pair id (`alternate`)."""
    if merge == "alternate" and len(refiners) > 1:
        return [refiners[bucket(pair_id, len(refiners))]]
    return refiners


def request(pair: dict, refiner: dict) -> dict:
    req = {"id": f"{pair['id']}:{refiner['name']}", "messages": prompt.messages(pair["question"], pair["answer"]),
           "schema": prompt.SCHEMA, "schema_name": "refined_pair"}
    if refiner.get("temperature") is not None:
        req["temperature"] = refiner["temperature"]
    return req


def contamination(index, *texts: str):
    for text in texts:
        hit = index.match(text)
        if hit:
            return hit
    return None


class RefinePairs(beam.DoFn):
    """A group of extract shard paths -> ("record", row)..., ("contaminated", page), ("stats", counts)."""

    def __init__(self, cfg: dict[str, Any], refiners: list[dict], index_path: str):
        self.cfg = cfg
        self.refiners = refiners  # [{name, llm: LLMConfig dict, temperature}]
        self.index_path = index_path

    def setup(self):
        from webinstruct.pipeline.refine.decontam import NGramIndex

        self.index = NGramIndex.load(self.index_path)

    def process(self, shard_paths: list[str]) -> Iterator[tuple[str, Any]]:
        from webinstruct.pipeline.llm.cache import open_cache
        from webinstruct.pipeline.llm.client import LLMClient
        from webinstruct.pipeline.llm.config import LLMConfig

        count = StageCounter(STAGE)
        cache = open_cache(self.cfg["cache"])
        clients = {r["name"]: LLMClient(LLMConfig(**r["llm"]), cache, count) for r in self.refiners}
        progress = Progress(f"refine {len(shard_paths)} extract shard(s)")
        done = 0
        out: list[tuple[str, Any]] = []
        try:
            for pair, results in stream_many(self._requests(shard_paths, clients, count, out),
                                             max_pending=self.cfg["docs_in_flight"]):
                yield from out  # contaminated pages found while reading ahead
                out.clear()
                yield from self._rows(pair, results, count)
                done += 1
                progress.maybe(pairs_done=done, pairs_read=count.get("pairs_in"), rows=count.get("rows_refined"))
            yield from out
        finally:
            for client in clients.values():
                client.close()
        yield ("stats", count.drain())

    def _requests(self, shard_paths: list[str], clients: dict, count, out: list) -> Iterator[tuple[Any, list]]:
        for path in shard_paths:
            for pair in shards.iter_shard(path, QAPair):
                count("pairs_in", 1)
                hit = contamination(self.index, pair["question"], pair["answer"])
                if hit:
                    count(f"decontaminated_{hit[0]}", 1)
                    out.append(("contaminated", {"url": pair["url"], "pair_id": pair["id"], "benchmark": hit[0],
                                                 "ngram": hit[1], "where": "original"}))
                    continue
                chosen = refiners_for(pair["id"], self.refiners, self.cfg["merge"])
                yield (pair, chosen), [(clients[r["name"]], [request(pair, r)]) for r in chosen]

    def _rows(self, owner: tuple[dict, list[dict]], results: list, count) -> Iterator[tuple[str, Any]]:
        pair, chosen = owner
        stop_on_server_faults([r for part in results for r in part], f"of pair {pair['id']}")
        candidates = []
        for refiner, [res] in zip(chosen, results):
            if not res.ok:
                count(f"dropped_refine_{(res.error or 'unknown').split(':', 1)[0]}", 1)
                continue
            q, a = res.data["question"].strip(), res.data["answer"].strip()
            reason, info = check(pair["question"], pair["answer"], q, a, self.cfg)
            if info["answer_check"] != "unchecked" or reason is None:
                count(f"answers_{info['answer_check']}", 1)
            if reason:
                count(f"dropped_{reason}", 1)
                continue
            hit = contamination(self.index, q, a)
            if hit:
                count(f"decontaminated_{hit[0]}", 1)
                yield ("contaminated", {"url": pair["url"], "pair_id": pair["id"], "benchmark": hit[0],
                                        "ngram": hit[1], "where": f"revision by {refiner['name']}"})
                continue
            candidates.append(self._row(pair, refiner, q, a, info))
        if not candidates and self.cfg["keep_original"]:
            original = self._original(pair, count)
            if original is not None:
                count("rows_original_kept", 1)
                candidates = [original]
        if not candidates:
            count("pairs_without_revision", 1)
            return
        if self.cfg["merge"] == "best" and len(candidates) > 1:
            order = {r["name"]: i for i, r in enumerate(self.refiners)}
            candidates = [min(candidates, key=lambda row: (CHECK_RANK[row["answer_check"]], order[row["refiner"]]))]
        for row in candidates:
            if row["refiner"] != "original":
                count("rows_refined", 1)
            yield ("record", row)

    def _original(self, pair: dict, count) -> dict | None:
        """The pair as extracted, when it passes the same checks (its answer is its own reference)."""
        q, a = pair["question"].strip(), pair["answer"].strip()
        reason, info = check(q, a, q, a, self.cfg)
        if reason:
            count(f"original_failed_{reason}", 1)
            return None
        return self._row(pair, {"name": "original", "llm": {"model": ""}}, q, a, info)

    def _row(self, pair: dict, refiner: dict, q: str, a: str, info: dict) -> dict:
        return {"orig_question": pair["question"], "orig_answer": pair["answer"], "question": q, "answer": a,
                "source": pair.get("domain", ""), "index": -1, "id": row_id(pair["id"], refiner["name"]),
                "pair_id": pair["id"], "doc_id": pair["doc_id"], "url": pair["url"], "refiner": refiner["name"],
                "model": refiner["llm"]["model"], "extractor": pair["extractor"],
                "doc_score": pair.get("doc_score", 0.0), "final_answer": info["final_answer"],
                "answer_check": info["answer_check"]}


def score(row: dict) -> float:
    """Which member of a duplicate cluster to keep: a checked-consistent answer first, then the
    page's classifier score, then a longer (more complete) answer."""
    return (2 - CHECK_RANK[row["answer_check"]]) + row.get("doc_score", 0.0) + min(len(row["answer"]), 4000) / 1e5


def write_contaminated(out_dir: str, items: list[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    """In the stage's one global group (after dedup): write the contaminated-pages file from the
    ("contaminated", page) items and pass the other items on."""
    count = StageCounter(STAGE)
    contaminated = []
    for kind, payload in items:
        if kind == "contaminated":
            contaminated.append(payload)
        else:
            yield (kind, payload)
    contaminated.sort(key=lambda c: (c["url"], c["pair_id"], c["where"]))
    count("contaminated_pages", len({c["url"] for c in contaminated}))
    shards.write_shard(shards.join(out_dir, CONTAMINATED_FILE), contaminated)
    yield ("file", CONTAMINATED_FILE)
    yield ("stats", count.drain())
