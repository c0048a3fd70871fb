"""`webinstruct domains fetch`: a Common Crawl columnar index (Parquet) built here from the real sample
WARCs, the records of the selected domains fetched by HTTP range requests from a loopback server that
drops connections, written as WARC files of the round and recalled by it.

Every record of the sample's per-record-gzip WARC files is one gzip member, as in Common Crawl, so
the index rows are exact: (warc_filename, warc_record_offset, warc_record_length) of each response
record, with its URL, host, registered domain, HTTP status and MIME type. Nothing leaves 127.0.0.1.
"""
from __future__ import annotations

import gzip
import io
import json
import shutil
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from warcio.archiveiterator import ArchiveIterator

from webinstruct.core import shards
from webinstruct.pipeline.recall import domain_fetch as F
from webinstruct.pipeline.recall import job
from webinstruct.pipeline.recall.config import RecallConfig
from webinstruct.pipeline.recall.domains import registered_domain
from webinstruct.pipeline.recall.rounds import DomainsConfig, select
from webinstruct.pipeline.recall.warc import read_pages

from conftest import SAMPLE_WARC, SEEDS
from range_server import RangeServer
from test_errors import problem_lines, run_cli

CRAWL = "CC-MAIN-2099-01"
NAMES = ["cc-main-2020-34_excerpt.resiliparse.warc.gz", "dolma_sample-0000.warc.gz", "pages.warc.gz"]
# maria-antoniak.github.io: a domain under a private suffix (its index row says github.io, like
# tomhoper.github.io's, which is not selected); stackexchange.com: several hosts; pages.warc.gz is
# what the previous round read.
SELECTED = ["live-radsport.ch", "maria-antoniak.github.io", "stackexchange.com", "soldaini.net"]
FAST = ["--http-retries", "3", "--http-backoff-s", "0.01"]


def rel(name: str) -> str:
    return f"crawl-data/{CRAWL}/segments/1.{NAMES.index(name)}/warc/{name}"


def members(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each gzip member of a multi-member file."""
    out, pos = [], 0
    while pos < len(data):
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        d.decompress(data[pos:])
        assert d.eof, "a truncated member"
        length = len(data) - pos - len(d.unused_data)
        out.append((pos, length))
        pos += length
    return out


def public_registered(host: str) -> str:
    """What Common Crawl's url_host_registered_domain holds: ICANN suffixes only (github.io -> github.io)."""
    import tldextract

    ext = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, include_psl_private_domains=False)(host)
    return f"{ext.domain}.{ext.suffix}"


def index_rows(bucket: Path) -> list[dict]:
    rows = []
    for name in NAMES:
        data = (bucket / rel(name)).read_bytes()
        for off, length in members(data):
            rec = next(iter(ArchiveIterator(io.BytesIO(data[off:off + length]))))
            if rec.rec_type != "response":
                continue
            url = rec.rec_headers.get_header("WARC-Target-URI").strip("<>")
            host = url.split("/")[2].split(":")[0].lower()
            rows.append({"url": url, "url_host_name": host, "url_host_registered_domain": public_registered(host),
                         "warc_filename": rel(name), "warc_record_offset": off, "warc_record_length": length,
                         "fetch_status": int(rec.http_headers.get_statuscode()),
                         "content_mime_type": (rec.http_headers.get_header("Content-Type") or "").split(";")[0]})
    return rows


@pytest.fixture
def bucket(tmp_path) -> Path:
    root = tmp_path / "bucket"
    for name in NAMES:
        (root / rel(name)).parent.mkdir(parents=True)
        shutil.copy(SAMPLE_WARC / name, root / rel(name))
    return root


def build_index(tmp_path: Path, rows: list[dict], host_only: bool = False) -> str:
    """Two Parquet files (a glob), with or without url_host_registered_domain."""
    folder = tmp_path / "index"
    folder.mkdir(exist_ok=True)
    cols = [c for c in rows[0] if not (host_only and c == "url_host_registered_domain")]
    half = len(rows) // 2
    for i, part in enumerate((rows[:half], rows[half:])):
        table = pa.table({c: [r[c] for r in part] for c in cols})
        pq.write_table(table, folder / f"part-{i}.parquet", row_group_size=7)
    return str(folder / "*.parquet")


def previous_round(tmp_path: Path, server: RangeServer, clf: str) -> tuple[str, set[str]]:
    """Round 1: recall pages.warc.gz over HTTP (so the index's rows in it were read already); the
    selection written by `select` and then set to SELECTED. Returns the run and the recalled URLs."""
    run = tmp_path / "run"
    job.run(RecallConfig(warc=[server.url + rel("pages.warc.gz")], run=str(run), num_shards=1, http_backoff_s=0.01),
            clf)
    cfg = DomainsConfig(run=str(run), min_recalled=1, min_share=0.0)
    report = select(cfg)
    report["selected"] = SELECTED
    shards.write_json(str(run / "domains" / "selected.json"), report)
    return str(run), {d["url"] for d in shards.read_shards(str(run / "recall"))}


def extra_rows(rows: list[dict], recalled: set[str]) -> list[dict]:
    """Rows a real index has too: a 404 capture, a PDF, a duplicate row, a capture of a page the
    previous round recalled (in another file), a record in a WARC the server does not have."""
    soldaini = next(r for r in rows if registered_domain(r["url"]) == "soldaini.net")
    radsport = next(r for r in rows if registered_domain(r["url"]) == "live-radsport.ch")
    other = next(r for r in rows if r["warc_filename"] == rel(NAMES[1]))
    again = sorted(u for u in recalled if registered_domain(u) in SELECTED)[0]
    return [{**soldaini, "url": soldaini["url"] + "?missing", "fetch_status": 404},
            {**soldaini, "url": soldaini["url"] + "paper.pdf", "content_mime_type": "application/pdf"},
            dict(radsport),
            {**other, "url": again, "url_host_name": again.split("/")[2],
             "url_host_registered_domain": public_registered(again.split("/")[2])},
            {**radsport, "url": radsport["url"] + "?lost", "warc_filename": f"crawl-data/{CRAWL}/segments/9/warc/gone.warc.gz"}]


def expected_rows(rows: list[dict], recalled: set[str]) -> set[tuple[str, int]]:
    return {(r["warc_filename"], r["warc_record_offset"]) for r in rows
            if registered_domain(r["url"]) in SELECTED and r["fetch_status"] == 200
            and r["content_mime_type"] == "text/html" and r["url"] not in recalled
            and r["warc_filename"] != rel("pages.warc.gz") and "gone" not in r["warc_filename"]}


def fetched_records(folder: Path) -> list[bytes]:
    """The gzip members of every fetched part, in order."""
    out = []
    for part in sorted(folder.glob("part-*.warc.gz")):
        data = part.read_bytes()
        out += [data[o:o + n] for o, n in members(data)]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("host_only", [False, True], ids=["registered-domain-column", "host-column"])
def test_fetch_gets_exactly_the_selected_domains_rows(tmp_path, bucket, small_classifier, host_only):
    with RangeServer(bucket) as server:
        run, recalled = previous_round(tmp_path, server, small_classifier)
        real = index_rows(bucket)
        rows = real + extra_rows(real, recalled)
        want = expected_rows(rows, recalled)
        assert len(want) >= 8 and {registered_domain(u) for u in recalled} & set(SELECTED)
        # Cut the connection in the middle of every third record to fetch.
        for name, off in sorted(want)[::3]:
            length = next(r["warc_record_length"] for r in real if (r["warc_filename"], r["warc_record_offset"]) == (name, off))
            server.cut_at.setdefault(name, []).append(off + length // 2)
        cfg = DomainsConfig(run=run)
        fetch_cfg = F.FetchConfig(index=[build_index(tmp_path, rows, host_only)], cc_base=server.url,
                                  records_per_file=5, threads=3, http_retries=3, http_backoff_s=0.01)
        report = F.run_fetch(cfg, fetch_cfg, SELECTED)

    st = report["stats"]
    # Exactly the selected domains' rows, each record once, byte for byte as in its WARC file.
    got = fetched_records(Path(run) / "domains" / "round-2" / "fetched")
    by_key = {(r["warc_filename"], r["warc_record_offset"]): r for r in real}
    source = {k: (bucket / k[0]).read_bytes()[k[1]:k[1] + by_key[k]["warc_record_length"]] for k in sorted(want)}
    assert got == list(source.values())
    assert st["records_fetched"] == len(want) and st["bytes_fetched"] == sum(map(len, got))
    assert st["http_resumes"] >= 1 and "skipped_over_limit" not in st
    assert st["skipped_status"] == 1 and st["skipped_not_html"] == 1 and st["skipped_duplicate_row"] == 1
    assert st["skipped_already_recalled"] == 1 + sum(1 for r in real if r["url"] in recalled
                                                     and registered_domain(r["url"]) in SELECTED)
    assert st["skipped_already_read"] == sum(1 for r in real if r["warc_filename"] == rel("pages.warc.gz")
                                             and registered_domain(r["url"]) in SELECTED and r["url"] not in recalled)
    assert st["failed_http_404"] == 1
    assert st["rows_matched"] == sum(1 for r in rows if registered_domain(r["url"]) in SELECTED)
    assert report["files"] == [f"part-{i:05d}.warc.gz" for i in range((len(want) + 4) // 5)]
    # The parts are WARC files the recall reader reads: every fetched record, no damage counted.
    counts: dict[str, int] = {}
    for warc in F.fetched_warcs(str(Path(run) / "domains" / "round-2")):
        list(read_pages(warc, count=lambda k, n=1: counts.__setitem__(k, counts.get(k, 0) + n)))
    assert counts["records_read"] == len(want) and not any(k.startswith("warc_") and k != "warc_files" for k in counts)


@pytest.mark.slow
def test_domains_fetch_then_round_from_the_cli(tmp_path, bucket, small_classifier):
    """The command end to end: fetch over a dropping connection, then the round recalls the previous
    round's WARC (read over HTTP, from its config.json, not the recipe's recall.warc) plus the fetched ones."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "classifier": {"dim": 64, "bucket": 20000, "threads": 1, "epoch": 2},
        "recall": {"warc": ["data/sample/warc/clipped.resiliparse.warc.gz"], "num_shards": 1},
        "domains": {"positives": [str(SEEDS / "positive.jsonl.gz")], "negatives": [str(SEEDS / "negative.jsonl.xz")]}}))
    with RangeServer(bucket) as server:
        run, recalled = previous_round(tmp_path, server, small_classifier)
        rows = index_rows(bucket)
        want = expected_rows(rows, recalled)
        for name, off in sorted(want)[::2]:
            server.cut_at.setdefault(name, []).append(off + 100)
        proc = run_cli("domains", "fetch", "--config", str(recipe), "--run", run, "--index", build_index(tmp_path, rows),
                       "--cc-base", server.url, *FAST, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert not problem_lines(proc.stderr), proc.stderr[-3000:]
        assert f"{len(want)} records fetched" in proc.stdout and "recalled 1 WARC files of the previous round + 1 fetched" \
            in proc.stdout, proc.stdout

    round_dir = Path(run) / "domains" / "round-2"
    fetched = json.loads((round_dir / "fetched" / "fetched.json").read_text())
    assert fetched["stats"]["records_fetched"] == len(want) and fetched["stats"]["http_resumes"] >= 1
    config = json.loads((round_dir / "recall" / "config.json").read_text())
    assert sorted(config["inputs"]) == sorted([server.url + rel("pages.warc.gz"),
                                               str(round_dir / "fetched" / "part-00000.warc.gz")])
    stats = json.loads((round_dir / "recall" / "stats.json").read_text())
    assert stats["records_read"] == 18 + len(want)  # pages.warc.gz again, and every fetched record once
    overlap = json.loads((round_dir / "overlap.json").read_text())
    assert overlap["inputs"] == {"previous": 1, "fetched": 1}
    # Documents the round recalled from fetched records carry the fetched file and a selected domain.
    from_fetched = [d for d in shards.read_shards(str(round_dir / "recall")) if "fetched" in d["warc_file"]]
    assert all(d["domain"] in SELECTED for d in from_fetched)


def test_index_without_the_columns_is_a_clear_error(tmp_path):
    pq.write_table(pa.table({"url": ["http://a.example/"], "warc_filename": ["x"]}), tmp_path / "i.parquet")
    with pytest.raises(ValueError, match="the index lacks the columns warc_record_offset, warc_record_length, "
                                         "url_host_registered_domain or url_host_name"):
        list(F.index_rows([str(tmp_path / "i.parquet")], ["a.example"], lambda *a: None))
    with pytest.raises(FileNotFoundError, match="no index files match"):
        list(F.index_rows([str(tmp_path / "none-*.parquet")], ["a.example"], lambda *a: None))


def test_fetch_record_reasons(tmp_path):
    """Each way a record can fail is named: not gzip, not a WARC record, short, missing, HTTP 404."""
    root = tmp_path / "www"
    root.mkdir()
    good = (SAMPLE_WARC / "pages.warc.gz").read_bytes()
    off, length = members(good)[1]
    (root / "a.warc.gz").write_bytes(good)
    (root / "text.gz").write_bytes(gzip.compress(b"hello, not a WARC record\n" * 10))
    http = {"retries": 1, "backoff_s": 0.01, "timeout_s": 10.0}
    with RangeServer(root) as srv:
        row = {"warc_filename": "a.warc.gz", "offset": off, "length": length}
        data, problem, _ = F.fetch_record(row, srv.url, http)
        assert problem == "" and data == good[off:off + length]
        assert F.fetch_record({**row, "offset": off + 1}, srv.url, http)[1] == "not_gzip"
        assert F.fetch_record({**row, "length": len(good) - off + 50}, srv.url, http)[1] == "short_read"
        assert F.fetch_record({"warc_filename": "text.gz", "offset": 0, "length": 30}, srv.url, http)[1] == "not_a_warc_record"
        assert F.fetch_record({**row, "warc_filename": "gone.warc.gz"}, srv.url, http)[1] == "http_404"
    # A local (or s3://) base reads the slice through core/io.
    data, problem, _ = F.fetch_record(row, str(root) + "/", http)
    assert problem == "" and data == good[off:off + length]
    assert F.fetch_record({**row, "warc_filename": "gone.warc.gz"}, str(root) + "/", http)[1] == "missing_file"


def test_round_inputs_default_to_the_previous_recall(tmp_path):
    """A round recalls what the previous recall read (its config.json), not the recipe's recall.warc;
    --warc overrides; fetched WARCs are added; an unfinished fetch is refused."""
    import dataclasses

    from webinstruct.core.publish import StageIncomplete
    from webinstruct.pipeline.recall.rounds import round_inputs

    cfg = DomainsConfig(run=str(tmp_path))
    assert round_inputs(cfg, ["recipe.warc.gz"]) == (["recipe.warc.gz"], [])  # nothing recorded: the recipe's
    shards.write_json(str(tmp_path / "recall" / "config.json"), {"inputs": ["s3://bucket/a.warc.gz", "b.warc.gz"]})
    assert round_inputs(cfg, ["recipe.warc.gz"]) == (["s3://bucket/a.warc.gz", "b.warc.gz"], [])
    assert round_inputs(dataclasses.replace(cfg, warc=["c.warc.gz"]), ["recipe.warc.gz"]) == (["c.warc.gz"], [])
    fetched = tmp_path / "domains" / "round-2" / "fetched"
    fetched.mkdir(parents=True)
    (fetched / ".lock").write_text("1\n")  # a fetch started and killed
    with pytest.raises(StageIncomplete, match="rerun `webinstruct domains fetch`"):
        round_inputs(cfg, [])
    (fetched / "part-00000.warc.gz").write_bytes((SAMPLE_WARC / "pages.warc.gz").read_bytes())
    shards.publish_stage(str(fetched), "fetch", ["part-00000.warc.gz"])
    assert round_inputs(cfg, []) == (["s3://bucket/a.warc.gz", "b.warc.gz"], [str(fetched / "part-00000.warc.gz")])


def test_make_domain_fetch_passes_index_and_base():
    import subprocess

    from conftest import ROOT

    out = subprocess.run(["make", "-n", "-o", ".venv/.installed", "domain-fetch", "INDEX=cc-index/*.parquet",
                          "CC_BASE=http://127.0.0.1:9/", "RUN=runs/cc"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    line = " ".join([ln for ln in out.splitlines() if " domains fetch " in ln][-1].split())
    assert "--run runs/cc" in line and line.endswith("--index cc-index/*.parquet --cc-base http://127.0.0.1:9/")
