"""The extract stage's main step: recalled documents -> question-answer pairs.

One element per task: a group of recall shards (one group per worker on a local runner, one
shard per task on a cluster). Its documents stream through the LLM client: structured pages
give their pairs directly; the others are chunked, and each document's chunk requests are
submitted as soon as fewer than `docs_in_flight` documents are pending, so the client always
has `max_concurrency` requests in flight and the server never waits for a batch's slowest
reply. Finished replies come from the persistent cache.
"""
from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Iterator

import apache_beam as beam

from webinstruct.core import shards
from webinstruct.pipeline.extract import prompt
from webinstruct.pipeline.extract.chunking import chunk_text, merge_pairs
from webinstruct.pipeline.llm.client import stop_on_server_faults
from webinstruct.core.schema import RecalledDocument
from webinstruct.pipeline.text.cleanup import remove_chrome
from webinstruct.core.stats import Progress, StageCounter

log = logging.getLogger(__name__)
STAGE = "extract"


def pair_id(doc_id: str, question: str) -> str:
    return hashlib.sha1(f"{doc_id}\n{question}".encode("utf-8")).hexdigest()[:20]


def _record(doc: dict, question: str, answer: str, extractor: str, chunk: int, raw: str) -> dict:
    return {"id": pair_id(doc["id"], question), "doc_id": doc["id"], "url": doc["url"],
            "domain": doc.get("domain", ""), "question": question, "answer": answer,
            "extractor": extractor, "chunk": chunk, "raw": raw, "doc_score": doc.get("score", 0.0)}


def structured_pairs(doc: dict, answers_per_question: int) -> list[dict]:
    out = []
    for item in doc.get("structured") or []:
        for ans in item["answers"][:answers_per_question]:
            out.append(_record(doc, item["question"], ans["text"], f"structured:{doc['structured_source']}",
                               -1, json.dumps({"accepted": ans["accepted"], "score": ans["score"]})))
    return out


def chunk_requests(doc: dict, c: dict[str, Any], count=lambda name, n=1: None) -> list[dict]:
    """The LLM requests for one document: one per chunk, at most `max_chunks_per_doc`."""
    text = doc["text"]
    if c.get("remove_chrome", True):
        text, removed = remove_chrome(text)
        count("chrome_lines_removed", removed["chrome_lines"])
        count("chrome_chars_removed", removed["chrome_chars"])
    chunks = chunk_text(text, c["chunk_chars"], c["overlap_chars"])
    count("chunks", len(chunks))
    if len(chunks) > c["max_chunks_per_doc"]:
        count("dropped_chunks_over_limit", len(chunks) - c["max_chunks_per_doc"])
        chunks = chunks[: c["max_chunks_per_doc"]]
    return [{"id": f"{doc['id']}:{i}", "messages": prompt.messages(chunk), "schema": prompt.SCHEMA}
            for i, chunk in enumerate(chunks)]


class ExtractShard(beam.DoFn):
    """A group of recall shard paths -> ("record", QAPair dict)..., ("stats", counts)."""

    def __init__(self, cfg: dict[str, Any], llm: dict[str, Any]):
        self.cfg = cfg
        self.llm = llm

    def setup(self):
        from webinstruct.pipeline.llm.cache import open_cache
        from webinstruct.pipeline.llm.client import LLMClient
        from webinstruct.pipeline.llm.config import LLMConfig

        self._make_client = lambda count: LLMClient(LLMConfig(**self.llm), open_cache(self.cfg["cache"]), count)

    def process(self, shard_paths: list[str]) -> Iterator[tuple[str, Any]]:
        count = StageCounter(STAGE)
        client = self._make_client(count)
        progress = Progress(f"extract {len(shard_paths)} recall shard(s)")
        done = 0
        try:
            groups = self._requests(shard_paths, count)
            for doc, results in client.stream(groups, max_pending=self.cfg["docs_in_flight"]):
                yield from self._pairs(doc, results, count)
                done += 1
                progress.maybe(docs_done=done, docs_read=count.get("docs_in"), pairs=count.get("pairs_out"))
        finally:
            client.close()
        yield ("stats", count.drain())

    def _requests(self, shard_paths: list[str], count) -> Iterator[tuple[dict, list[dict]]]:
        """(document, its chunk requests) for every document; none for a structured page."""
        c = self.cfg
        for path in shard_paths:
            for doc in shards.iter_shard(path, RecalledDocument):
                count("docs_in", 1)
                if c["use_structured"] and doc.get("structured"):
                    yield doc, []
                    continue
                reqs = chunk_requests(doc, c, count)
                count("llm_requests", len(reqs))
                yield doc, reqs

    def _pairs(self, doc: dict, results: list, count) -> Iterator[tuple[str, Any]]:
        c = self.cfg
        if c["use_structured"] and doc.get("structured"):
            pairs = structured_pairs(doc, c["structured_answers"])
            count("docs_structured", 1)
            count("pairs_structured", len(pairs))
            count("pairs_out", len(pairs))
            for p in pairs:
                yield ("record", p)
            return
        if c["stop_on_server_failure"]:
            stop_on_server_faults(results, f"of document {doc['url']}")
        model = self.llm.get("model") or "llm"
        found: list[dict] = []
        failed = False
        for i, res in enumerate(results):
            if not res.ok:
                # `error` is "<cause>: detail"; the counter carries the cause only.
                count(f"dropped_chunk_{(res.error or 'unknown').split(':', 1)[0]}", 1)
                failed = True
                continue
            pairs = prompt.parse_pairs(res.data)
            if not pairs:
                count("chunks_void", 1)
            found += [_record(doc, p["question"], p["answer"], f"llm:{model}", i, res.text) for p in pairs]
        merged, dups = merge_pairs(found)
        count("dropped_pair_duplicate_in_overlap", dups)
        if not merged:
            count("docs_failed" if failed else "docs_void", 1)
            return
        count("docs_with_pairs", 1)
        count("pairs_llm", len(merged))
        count("pairs_out", len(merged))
        for p in merged:
            yield ("record", p)
