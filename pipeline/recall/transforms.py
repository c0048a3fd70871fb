"""The recall stage's steps as Beam DoFns and functions.

The graph is deliberately a single chain (read+score -> shuffle by URL -> shuffle by content/shard
-> shuffle to one summary) whose elements are `(kind, payload)` pairs: the Dask runner computes only
the last transform of a pipeline and drops tagged outputs and `finish_bundle` output, so branches
and side outputs would silently vanish there. Shuffle keys are stable integers (sha1 buckets),
never strings, so grouping agrees across worker processes with different hash seeds.

Deduplication shuffles small tuples, not documents: each recalled document travels with a claim
(url, score, warc_file, offset, id, content_hash). The URL buckets decide the winner of each URL
from the claims while the documents, keyed by their id, stream through; the winners' claims then
go to the shard of their content hash, where the documents also go, so each shard decides the
content duplicates from claims and keeps the winning documents by id.
"""
from __future__ import annotations

import hashlib
import logging
import time
from typing import Any, Iterable, Iterator

import apache_beam as beam

from webinstruct.core import shards
from webinstruct.pipeline.extract.structured import structured_qa
from webinstruct.pipeline.recall import domains as dom
from webinstruct.pipeline.recall.warc import read_pages
from webinstruct.core.schema import DomainRow, RecalledDocument
from webinstruct.pipeline.stage import bucket
from webinstruct.pipeline.text.html_text import cheap_text, html_to_text
from webinstruct.pipeline.text.normalize import content_hash
from webinstruct.pipeline.text.script import latin_share
from webinstruct.core.stats import Progress, StageCounter, merge

log = logging.getLogger(__name__)
SCORE_BINS = 20
STAGE = "recall"


def doc_id(url: str, record_id: str) -> str:
    return hashlib.sha1(f"{url}\n{record_id}".encode("utf-8")).hexdigest()[:20]


class ScorePages:
    """Page -> recalled document or None, counting why pages are dropped.

    Two passes, the cheap one on every page, the costly one only where it may pay:
    1. cheap text (tag-stripped, TeX scripts and LaTeX image alts kept: `cheap_text`) ->
       language (fastText lid.176; pages outside `languages` are dropped as
       `dropped_language_<code>`) -> optional latin-script gate -> fastText on the cheap text,
       dropped below the recall-safe `prefilter_threshold` (`dropped_prefilter`);
    2. math-aware extraction -> length check -> fastText on the extracted text -> kept at or
       above the threshold.
    With `prefilter` off every page that passes the language gate gets the full extraction.
    """

    def __init__(self, classifier_path: str, threshold: float, prefilter: bool,
                 prefilter_threshold: float, min_chars: int, round_: int, min_latin_share: float = 0.0,
                 languages: list[str] | tuple[str, ...] = ()):
        from webinstruct.pipeline.recall.classifier import Classifier

        self.clf = Classifier.load(classifier_path)
        self.threshold = threshold if threshold >= 0 else self.clf.threshold
        self.prefilter = prefilter
        self.prefilter_threshold = prefilter_threshold
        self.min_chars = min_chars
        self.round = round_
        self.min_latin_share = min_latin_share
        self.languages = frozenset(languages or ())
        self.lid = None
        if self.languages:
            from webinstruct.pipeline.recall.language import LanguageID

            self.lid = LanguageID()

    @classmethod
    def from_settings(cls, classifier_path: str, threshold: float, settings: dict[str, Any],
                      round_: int = 1) -> "ScorePages":
        """From RecallConfig.page_settings() (extra keys ignored)."""
        s = settings
        return cls(classifier_path, threshold, s["prefilter"], s["prefilter_threshold"], s["min_chars"], round_,
                   s["min_latin_share"], s["languages"])

    def __call__(self, page: dict[str, Any], count, tallies: dict[str, dict]) -> dict | None:
        """The recalled document for `page`, or None; every page is added to its domain's tally."""
        url = page["url"]
        domain = dom.registered_domain(url)
        doc, score = self._decide(page, domain, count)
        dom.add_page(tallies.setdefault(domain, dom.new_tally()), url, score, doc is not None)
        return doc

    def _decide(self, page: dict[str, Any], domain: str, count) -> tuple[dict | None, float]:
        url = page["url"]
        prescore = -1.0
        language = ""
        if self.lid is not None or self.prefilter or self.min_latin_share > 0:
            cheap = cheap_text(page["html"])
            if self.lid is not None:
                language, _ = self.lid.identify(cheap)
                if language not in self.languages:
                    count(f"dropped_language_{language or 'none'}", 1)
                    return None, 0.0
            if self.min_latin_share > 0 and latin_share(cheap) < self.min_latin_share:
                count("dropped_non_latin_script", 1)
                return None, 0.0
            if self.prefilter:
                prescore = self.clf.score(cheap)
                if prescore < self.prefilter_threshold:
                    count("dropped_prefilter", 1)
                    return None, prescore
        try:
            text = html_to_text(page["html"], url)
        except Exception as err:  # the extractor promises not to raise; never lose the job if it does
            count("dropped_extract_error", 1)
            log.warning("extraction failed for %s: %s", url, err)
            return None, 0.0
        count("pages_extracted", 1)
        if len(text) < self.min_chars:
            count("dropped_too_short", 1)
            return None, 0.0
        score = self.clf.score(text)
        count("pages_scored", 1)
        # A 20-bin histogram of scores as counters, for the run report (bin i: [i/20, (i+1)/20)).
        count(f"score_bin_{min(int(score * SCORE_BINS), SCORE_BINS - 1):02d}", 1)
        if score < self.threshold:
            count("dropped_below_threshold", 1)
            return None, score
        count("pages_recalled", 1)
        structured, source = structured_qa(page["html"])
        if structured:
            count(f"pages_structured_{source}", 1)
        return {
            "id": doc_id(url, page["record_id"]),
            "url": url,
            "domain": domain,
            "text": text,
            "score": round(float(score), 6),
            "warc_file": page["warc_file"],
            "record_id": page["record_id"],
            "offset": page["offset"],
            "content_hash": content_hash(text),
            "fetch_date": page.get("fetch_date", ""),
            "prescore": round(float(prescore), 6),
            "language": language,
            "round": self.round,
            "structured": structured,
            "structured_source": source,
        }, score


class RecallFile(beam.DoFn):
    """One WARC file -> ("doc", document) and its ("url_claim", claim(document))...,
    ("domain_tally", (domain, tally))..., ("stats", counts).

    The file is the unit of parallel work (a Common Crawl WARC holds ~40k pages), so the counts of
    a file are emitted once, from `process`, which every runner keeps.
    """

    def __init__(self, cfg_dict: dict[str, Any]):
        self.cfg = cfg_dict
        self.scorer: ScorePages | None = None

    def setup(self):
        self.scorer = ScorePages.from_settings(self.cfg["classifier_path"], self.cfg["threshold"], self.cfg,
                                               self.cfg["round"])

    def process(self, path: str) -> Iterator[tuple[str, Any]]:
        count = StageCounter(STAGE)
        tallies: dict[str, dict] = {}
        progress = Progress(f"recall {path}")
        n_pages = 0
        t0 = time.monotonic()
        for page in read_pages(path, self.cfg["max_page_bytes"], count, http=self.cfg.get("http"),
                               base_dir=self.cfg.get("base_dir")):
            n_pages += 1
            doc = self.scorer(page, count, tallies)
            if doc is not None:
                yield ("doc", doc)
                yield ("url_claim", claim(doc))
            progress.maybe(pages=n_pages, recalled=count.get("pages_recalled"))
        log.info("recall: %s done: %d pages, %d recalled in %.1fs", path, n_pages,
                 count.get("pages_recalled"), time.monotonic() - t0)
        for domain, tally in tallies.items():
            yield ("domain_tally", (domain, tally))
        yield ("stats", count.drain())


def claim(doc: dict) -> tuple:
    """What deduplication needs of a document, without its text:
    (url, score, warc_file, offset, id, content_hash)."""
    return (doc["url"], doc["score"], doc["warc_file"], doc["offset"], doc["id"], doc["content_hash"])


def _rank(c: tuple) -> tuple:
    """The order of duplicates: higher score, then earliest in the crawl (file, offset), then id."""
    return (-c[1], c[2], c[3], c[4])


def id_key(doc_id: str, buckets: int) -> int:
    """The integer key of a document's id (sha1 bucket): where the document itself travels."""
    return bucket(doc_id, buckets)


def key_by_url(item: tuple[str, Any], buckets: int) -> tuple[int, tuple[str, Any]]:
    """URL claims to their URL's bucket; documents spread by their id (a URL crawled a thousand
    times puts a thousand small claims in one bucket, not a thousand documents)."""
    kind, payload = item
    if kind == "url_claim":
        return bucket(payload[0], buckets), item
    if kind == "doc":
        return id_key(payload["id"], buckets), item
    if kind == "domain_tally":
        return bucket(payload[0], buckets), item
    return 0, item


def dedup_urls(kv: tuple[int, Iterable[tuple[str, Any]]]) -> Iterator[tuple[str, Any]]:
    """Decide one document per URL from the claims (best score, then earliest in the crawl) and
    emit the winners' claims; documents stream through untouched (the winners are joined back to
    them by id in `write_outputs`). Merge the per-file domain tallies of each domain."""
    _, items = kv
    count = StageCounter(STAGE)
    by_url: dict[str, tuple] = {}
    tallies: dict[str, list] = {}
    stats = []
    n_claims = 0
    for kind, payload in items:
        if kind == "doc":
            yield (kind, payload)
        elif kind == "url_claim":
            n_claims += 1
            prev = by_url.get(payload[0])
            if prev is None or _rank(payload) < _rank(prev):
                by_url[payload[0]] = payload
        elif kind == "domain_tally":
            tallies.setdefault(payload[0], []).append(payload[1])
        else:
            stats.append(payload)
    count("dropped_duplicate_url", n_claims - len(by_url))
    for c in by_url.values():
        yield ("url_winner", c)
    for domain, parts in tallies.items():
        yield ("domain", dom.tally_to_row(domain, dom.merge_tallies(parts)))
    stats.append(count.drain())
    yield ("stats", merge(stats))


def key_by_shard(item: tuple[str, Any], num_shards: int) -> tuple[int, tuple[str, Any]]:
    kind, payload = item
    if kind == "doc":
        return bucket(payload["content_hash"], num_shards), item
    if kind == "url_winner":  # to the shard of its document: the content decision is made there
        return bucket(payload[5], num_shards), item
    if kind == "domain":
        return num_shards, item
    return num_shards + 1, item


def write_outputs(kv: tuple[int, Iterable[tuple[str, Any]]], out_dir: str, num_shards: int) -> Iterator[tuple[str, Any]]:
    """Per shard: drop exact content duplicates, write the shard; the domain table; pass stats on.

    A shard's group holds its documents and the claims of the URL winners among them (a document
    and its claim share the shard of its content hash). The content winners are decided from the
    claims (first pass, small tuples), then only their documents are kept (second pass), joined
    by id; a document read twice (the same WARC listed twice) is written once."""
    key, items = kv
    count = StageCounter(STAGE)
    if key < num_shards:
        if iter(items) is items:  # a one-shot iterator: the two passes need a list
            items = list(items)
        by_hash: dict[str, tuple] = {}
        n_winners = 0
        for kind, payload in items:
            if kind == "url_winner":
                n_winners += 1
                prev = by_hash.get(payload[5])
                if prev is None or _rank(payload) < _rank(prev):
                    by_hash[payload[5]] = payload
        count("dropped_duplicate_content", n_winners - len(by_hash))
        keep = {c[4] for c in by_hash.values()}
        kept: dict[str, dict] = {}
        for kind, doc in items:
            if kind == "doc" and doc["id"] in keep and doc["id"] not in kept:
                kept[doc["id"]] = doc
        docs = sorted(kept.values(), key=lambda d: d["id"])
        path = shards.join(out_dir, shards.shard_name(key, num_shards))
        count("docs_written", shards.write_shard(path, docs, RecalledDocument))
        yield ("shard", path)
    elif key == num_shards:
        rows = dom.sort_rows(payload for _, payload in items)
        shards.write_shard(shards.join(out_dir, "domains.jsonl.gz"), rows, DomainRow)
        count("domains", len(rows))
        yield ("file", "domains.jsonl.gz")
    else:
        for _, payload in items:
            yield ("stats", payload)
    yield ("stats", count.drain())
