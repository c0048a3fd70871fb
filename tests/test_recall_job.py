"""The recall Beam job end to end on the bundled sample, on every runner we can run here."""
from __future__ import annotations

import dataclasses
import subprocess

import pytest

from webinstruct.core import shards
from webinstruct.pipeline.recall import job
from webinstruct.pipeline.recall.config import RecallConfig
from webinstruct.core.schema import DomainRow, RecalledDocument

from conftest import ROOT, SAMPLE_WARC

pytestmark = pytest.mark.slow
WARCS = [str(SAMPLE_WARC / "*.warc*")]


def _run(tmp_path, clf, name="recall", **kw):
    cfg = RecallConfig(warc=WARCS, run=str(tmp_path), out=str(tmp_path / name), num_shards=2,
                       classifier=clf, **kw)
    stats, metrics, _ = job.execute(cfg, clf)
    docs = list(shards.read_shards(cfg.out_dir(), RecalledDocument))
    return cfg, stats, metrics, docs


def assert_page_accounting(stats):
    """Every decoded page ends in exactly one place, with the prefilter on or off."""
    early = stats.get("dropped_prefilter", 0) + stats.get("dropped_extract_error", 0)
    gate = stats.get("dropped_non_latin_script", 0) + sum(v for k, v in stats.items() if k.startswith("dropped_language_"))
    later = stats.get("dropped_too_short", 0) + stats.get("dropped_below_threshold", 0) + stats["pages_recalled"]
    if stats.get("pages_extracted", 0) + early + gate == stats["pages_decoded"]:  # gate before extraction
        assert stats["pages_extracted"] == later
    else:  # gate on the extracted text
        assert stats["pages_decoded"] == early + stats["pages_extracted"]
        assert stats["pages_extracted"] == gate + later


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, small_classifier):
    return _run(tmp_path_factory.mktemp("local"), small_classifier)


def test_outputs_and_accounting(local_run):
    cfg, stats, metrics, docs = local_run
    out = cfg.out_dir()
    assert [p.rsplit("/", 1)[1] for p in shards.list_shards(out)] == [
        "part-00000-of-00002.jsonl.gz", "part-00001-of-00002.jsonl.gz"]
    assert stats["warc_files"] == 6
    # Every record, page and document is accounted for by a counter.
    records = stats["records_read"]
    assert records == stats["records_response"] + sum(v for k, v in stats.items() if k.startswith("skipped_record_"))
    assert stats["records_response"] == stats["pages_decoded"] + sum(
        stats.get(k, 0) for k in ("dropped_content_type", "dropped_truncated_record", "dropped_empty",
                                  "dropped_http_status", "dropped_oversized", "dropped_undecodable",
                                  "dropped_no_http_headers", "dropped_malformed_record"))
    assert_page_accounting(stats)
    assert stats["pages_recalled"] == stats["docs_written"] + stats["dropped_duplicate_url"] + stats[
        "dropped_duplicate_content"]
    assert stats["docs_written"] == len(docs)
    # The sample holds one re-fetched URL and one page under a second URL, both math pages.
    assert stats["dropped_duplicate_url"] == 1 and stats["dropped_duplicate_content"] == 1
    assert stats["dropped_truncated_record"] == 1  # the clipped download
    # Beam's own metrics (the in-process runner reports them) agree with stats.json.
    assert metrics == stats


def test_documents(local_run):
    cfg, stats, _, docs = local_run
    urls = {d["url"] for d in docs}
    assert len(urls) == len(docs)
    assert len({d["content_hash"] for d in docs}) == len(docs)
    math_pages = [u for u in urls if "stackexchange.com/questions" in u or "mathhelpforum" in u
                  or "uniteasy" in u or "wikipedia.org/wiki/Variance" in u]
    assert len(math_pages) >= 4
    for d in docs:
        assert d["score"] >= 0 and d["text"] and d["domain"] and d["record_id"]
    wiki = next(d for d in docs if d["url"].endswith("/wiki/Variance"))
    assert "\\sigma" in wiki["text"] and "$" in wiki["text"]
    rows = list(shards.iter_shard(shards.join(cfg.out_dir(), "domains.jsonl.gz"), DomainRow))
    # Every decoded page is seen by its domain, whatever stopped it.
    assert sum(r["pages_seen"] for r in rows) == stats["pages_decoded"]
    # The Japanese shop pages and Chinese CC pages, by language identification.
    assert stats["dropped_language_ja"] >= 20 and stats["dropped_language_zh"] >= 5
    assert sum(r["pages_recalled"] for r in rows) == stats["pages_recalled"]
    se = next(r for r in rows if r["domain"] == "stackexchange.com")
    assert se["pages_recalled"] >= 2 and se["top_paths"][0][0] == "/questions"


def test_prefilter_keeps_the_math_pages(tmp_path, small_classifier):
    """The two-pass default (cheap text first) recalls every page the one-pass path keeps with a
    high score, and extracts far fewer pages."""
    # This small classifier scores few pages under the default cheap threshold: a higher one here.
    _, stats, _, docs = _run(tmp_path, small_classifier, "two", prefilter_threshold=0.1)
    _, stats_one, _, docs_one = _run(tmp_path, small_classifier, "one", prefilter=False)
    assert stats["dropped_prefilter"] > 0 and "dropped_prefilter" not in stats_one
    assert stats["pages_extracted"] < stats_one["pages_extracted"]
    assert_page_accounting(stats_one)
    math = {d["url"] for d in docs_one if d["score"] > 0.9}
    assert math and math <= {d["url"] for d in docs}


def test_deterministic_and_rerun_replaces(tmp_path, local_run, small_classifier):
    cfg, _, _, _ = local_run
    cfg2, _, _, _ = _run(tmp_path, small_classifier)
    for a, b in zip(shards.list_shards(cfg.out_dir()), shards.list_shards(cfg2.out_dir())):
        with open(a, "rb") as fa, open(b, "rb") as fb:
            assert fa.read() == fb.read()
    # A rerun with another shard count replaces the shards instead of mixing two runs.
    cfg3 = dataclasses.replace(cfg2, num_shards=3)
    job.execute(cfg3, small_classifier)
    assert len(shards.list_shards(cfg3.out_dir())) == 3


def test_multiprocess_runner_same_result(tmp_path, local_run, small_classifier):
    _, stats, _, docs = local_run
    _, stats_mp, _, docs_mp = _run(tmp_path, small_classifier, runner="multiprocess", workers=2)
    assert sorted(d["id"] for d in docs_mp) == sorted(d["id"] for d in docs)
    assert stats_mp == stats


def test_dask_runner_same_result(tmp_path, local_run, small_classifier):
    _, stats, _, docs = local_run
    _, stats_dask, metrics, docs_dask = _run(tmp_path, small_classifier, runner="dask", workers=2)
    assert metrics is None  # the Dask runner has no metrics: stats.json is built from data instead
    assert sorted(d["id"] for d in docs_dask) == sorted(d["id"] for d in docs)
    assert stats_dask == stats


def test_missing_inputs_are_clear(tmp_path, small_classifier):
    with pytest.raises(shards.MissingInput, match="no WARC files match"):
        job.execute(RecallConfig(warc=[str(tmp_path / "*.warc.gz")], run=str(tmp_path)), small_classifier)
    with pytest.raises(shards.MissingInput, match="webinstruct classifier train"):
        job.execute(RecallConfig(warc=WARCS, run=str(tmp_path)), str(tmp_path / "none.bin"))


def test_make_recall_on_any_warcs(tmp_path, web):
    """`make recall WARC=... RUN=...` with the default classifier trained from the bundled seeds,
    on the six gzipped WARCs of shared/web/warc (bundled)."""
    warcs = f"{web}/warc/*.warc.gz"
    out = subprocess.run(["make", "-s", "recall", f"WARC={warcs}", f"RUN={tmp_path}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "recall -> " in out.stdout and "records_read" in out.stdout
    stats = shards.read_json(str(tmp_path / "recall" / "stats.json"))
    assert stats["warc_files"] == 6 and stats["records_read"] == 138
    assert (tmp_path / "classifier" / "classifier.json").exists()
    assert shards.list_shards(str(tmp_path / "recall"))


def test_make_recall_on_the_dask_runner(tmp_path, small_classifier):
    out = subprocess.run(["make", "-s", "recall", "RUNNER=dask", "WORKERS=2", f"RUN={tmp_path}",
                          f"CLASSIFIER={small_classifier}"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    stats = shards.read_json(str(tmp_path / "recall" / "stats.json"))
    assert stats["warc_files"] == 6 and stats["docs_written"] > 5
    assert shards.read_json(str(tmp_path / "recall" / "config.json"))["runner"] == "dask"


def test_dedup_shuffles_claims_and_keeps_what_whole_documents_kept(tmp_path):
    """URL and content dedup decided from small claims, documents joined back by id: the shards
    hold exactly what keeping whole documents per URL, then per content hash, kept (higher score,
    then earliest in the crawl), on documents with many URL and content duplicates and ties; no
    URL bucket holds a document of another id's bucket, only claims."""
    import gzip
    import json
    import random
    from collections import defaultdict

    from webinstruct.pipeline.recall import transforms as T

    rng = random.Random(5)
    docs = []
    for i in range(400):
        url = f"https://site{rng.randrange(5)}.example/page{rng.randrange(120)}"
        warc, offset = f"file-{rng.randrange(3)}.warc.gz", rng.randrange(50) * 1000 + i
        docs.append({"id": T.doc_id(url, f"<urn:{i}>"), "url": url, "domain": url.split("/")[2], "text": f"text {i}",
                     "score": rng.choice([0.5, 0.7, 0.9]), "warc_file": warc, "record_id": f"<urn:{i}>",
                     "offset": offset, "content_hash": f"h{rng.randrange(150)}", "fetch_date": "", "prescore": -1.0,
                     "round": 1, "structured": [], "structured_source": ""})
    items = [x for d in docs for x in (("doc", d), ("url_claim", T.claim(d)))] + [("stats", {"pages": 400})]
    buckets, num_shards = 7, 3

    def group(keyed):
        groups = defaultdict(list)
        for k, v in keyed:
            groups[k].append(v)
        return sorted(groups.items())

    url_groups = group(T.key_by_url(x, buckets) for x in items)
    for key, values in url_groups:  # documents travel by id, not by URL
        assert all(T.id_key(v["id"], buckets) == key for kind, v in values if kind == "doc")
    after_url = [y for kv in url_groups for y in T.dedup_urls(kv)]
    out = [y for kv in group(T.key_by_shard(x, num_shards) for x in after_url)
           for y in T.write_outputs(kv, str(tmp_path), num_shards)]
    written = {}
    for kind, path in out:
        if kind == "shard":
            with gzip.open(path, "rt") as fh:
                written[path] = [json.loads(line)["id"] for line in fh]

    def best(a, b):
        return a if (-a["score"], a["warc_file"], a["offset"]) <= (-b["score"], b["warc_file"], b["offset"]) else b
    by_url = {}
    for d in docs:
        by_url[d["url"]] = best(by_url[d["url"]], d) if d["url"] in by_url else d
    by_hash = {}
    for d in by_url.values():
        by_hash[d["content_hash"]] = best(by_hash[d["content_hash"]], d) if d["content_hash"] in by_hash else d
    expected = defaultdict(list)
    for d in by_hash.values():
        expected[str(tmp_path / f"part-{T.bucket(d['content_hash'], num_shards):05d}-of-{num_shards:05d}.jsonl.gz")].append(d["id"])
    assert {p: ids for p, ids in written.items() if ids} == {p: sorted(ids) for p, ids in expected.items()}
    stats = [p for k, p in out if k == "stats"]  # write_outputs passes the URL step's stats on
    total = defaultdict(int)
    for s in stats:
        for k, v in s.items():
            total[k] += v
    assert total["dropped_duplicate_url"] == 400 - len(by_url) > 100
    assert total["dropped_duplicate_content"] == len(by_url) - len(by_hash) > 10
    assert total["docs_written"] == len(by_hash)
