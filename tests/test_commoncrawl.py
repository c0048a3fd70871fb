"""Common Crawl by crawl name over HTTP: the crawl's warc.paths.gz, a FILES slice, WARCs streamed by the
resumable reader (core/http_range.py) from a loopback server that drops connections mid-file.

Everything is served by `tests/range_server.py` on 127.0.0.1 from copies of the bundled sample WARCs
laid out like the Common Crawl bucket; nothing leaves the machine. The drops are deterministic (the
first response crossing each chosen byte offset is cut there), so each test knows how many range
resumptions must happen and where.
"""
from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from webinstruct.core import shards
from webinstruct.core.http_range import RemoteReadError, fetch, open_url
from webinstruct.core.schema import RecalledDocument
from webinstruct.pipeline.recall import commoncrawl, job
from webinstruct.pipeline.recall.config import RecallConfig
from webinstruct.pipeline.recall.warc import read_pages

from conftest import ROOT, SAMPLE_WARC
from range_server import RangeServer
from test_errors import one_error_line, run_cli

CRAWL = "CC-MAIN-2099-01"
# The listing's order (not sorted): FILES=1:4 selects the middle three.
NAMES = ["clueweb22_quirk.resiliparse.warc.gz", "pages.warc.gz", "cc-main-2020-34_excerpt.resiliparse.warc.gz",
         "dolma_sample-0000.warc.gz", "clipped.resiliparse.warc.gz"]
FAST = {"retries": 3, "backoff_s": 0.01, "timeout_s": 10.0}


def rel(i: int, name: str) -> str:
    return f"crawl-data/{CRAWL}/segments/1700000000000.{i}/warc/{name}"


@pytest.fixture
def bucket(tmp_path) -> Path:
    """A Common Crawl-like tree: crawl-data/CRAWL/warc.paths.gz and the WARCs it lists."""
    root = tmp_path / "bucket"
    for i, name in enumerate(NAMES):
        dst = root / rel(i, name)
        dst.parent.mkdir(parents=True)
        shutil.copy(SAMPLE_WARC / name, dst)
    listing = "".join(rel(i, n) + "\n" for i, n in enumerate(NAMES))
    (root / "crawl-data" / CRAWL / "warc.paths.gz").write_bytes(gzip.compress(listing.encode()))
    return root


@pytest.fixture
def server(bucket):
    with RangeServer(bucket) as srv:
        yield srv


# ---- FILES selection ----------------------------------------------------------------------------

def test_select_files_is_a_python_slice():
    lines = [f"f{i}" for i in range(10)]
    assert commoncrawl.select_files(lines, "") == lines
    assert commoncrawl.select_files(lines, "7") == ["f7"]
    assert commoncrawl.select_files(lines, "-1") == ["f9"]
    assert commoncrawl.select_files(lines, "0:3") == ["f0", "f1", "f2"]
    assert commoncrawl.select_files(lines, "8:") == ["f8", "f9"]
    assert commoncrawl.select_files(lines, ":2") == ["f0", "f1"]
    assert commoncrawl.select_files(lines, "0:10:4") == ["f0", "f4", "f8"]
    assert commoncrawl.select_files(lines, "5:100") == lines[5:]
    with pytest.raises(ValueError, match="file index 10 is out of range: the list has 10 files"):
        commoncrawl.select_files(lines, "10")
    with pytest.raises(ValueError, match="step cannot be 0"):
        commoncrawl.select_files(lines, "0:5:0")


def test_resolve_reads_the_listing_over_http(server):
    server.cut_at[f"crawl-data/{CRAWL}/warc.paths.gz"] = [40]
    urls = commoncrawl.resolve(CRAWL, "1:4", server.url, FAST)
    assert urls == [server.url + rel(i, NAMES[i]) for i in (1, 2, 3)]
    assert server.ranged(f"crawl-data/{CRAWL}/warc.paths.gz") == ["bytes=40-"]  # resumed where it was cut
    assert commoncrawl.resolve(CRAWL, "-1", server.url, FAST) == [server.url + rel(4, NAMES[4])]
    with pytest.raises(ValueError, match="selects none of the 5 WARC files"):
        commoncrawl.resolve(CRAWL, "7:9", server.url, FAST)
    with pytest.raises(RemoteReadError, match=r"CC-MAIN-1999-99/warc.paths.gz: HTTP 404"):
        commoncrawl.resolve("CC-MAIN-1999-99", "0", server.url, FAST)


def test_resolve_local_base(bucket):
    """A base that is not HTTP goes through core/io (here a local folder; s3://commoncrawl/ with s3fs)."""
    urls = commoncrawl.resolve(CRAWL, "0:2", str(bucket) + "/", FAST)
    assert urls == [str(bucket / rel(i, NAMES[i])) for i in (0, 1)]


# ---- the resumable reader -----------------------------------------------------------------------

def test_reader_resumes_from_the_byte_reached(server, bucket):
    name = rel(1, NAMES[1])
    data = (bucket / name).read_bytes()
    cuts = [1, 65_536, 200_000, len(data) - 1]
    server.cut_at[name] = list(cuts)
    with open_url(server.url + name, **FAST) as fh:
        assert fh.read() == data
        assert fh.raw.resumes == len(cuts) and fh.raw.failures == len(cuts)
    assert server.ranged(name) == [f"bytes={c}-" for c in cuts]


def test_reader_bounded_slice_and_seek(server, bucket):
    name = rel(1, NAMES[1])
    data = (bucket / name).read_bytes()
    server.cut_at[name] = [1500]
    got, reader = fetch(server.url + name, 1000, 5000, **FAST)
    assert got == data[1000:5000] and reader.resumes == 1
    assert server.ranged(name) == ["bytes=1000-4999", "bytes=1500-4999"]
    with open_url(server.url + name, **FAST) as fh:
        fh.seek(-10, 2)
        assert fh.read() == data[-10:]
        fh.seek(100)
        assert fh.read(50) == data[100:150] and fh.tell() == 150


def test_reader_skips_to_its_byte_when_the_server_ignores_ranges(server, bucket):
    name = rel(1, NAMES[1])
    data = (bucket / name).read_bytes()
    server.ignore_range.add(name)
    server.cut_at[name] = [70_000, 300_000]
    with open_url(server.url + name, **FAST) as fh:
        assert fh.read() == data
        assert fh.raw.resumes == 2 and fh.raw.skipped_bytes == 70_000 + 300_000
    assert [s for n, _, s in server.requests if n == name] == [200, 200, 200]


def test_reader_gives_up_with_the_url(server):
    name = rel(1, NAMES[1])
    server.always_cut[name] = 0  # headers, then the connection closes: no progress ever
    with pytest.raises(RemoteReadError, match=rf"{name}: gave up after 3 retries at byte 0 of \d+"):
        fetch(server.url + name, **FAST)
    assert len([r for r in server.requests if r[0] == name]) == 4
    server.always_cut[name] = 100  # some progress each time: bounded in all
    with pytest.raises(RemoteReadError, match="gave up after 30 retries in all at byte 3100 of"):
        fetch(server.url + name, **FAST)
    with pytest.raises(RemoteReadError, match=r"nothing\.warc\.gz: HTTP 404"):
        fetch(server.url + "nothing.warc.gz", **FAST)
    assert [r for r in server.requests if r[0] == "nothing.warc.gz"] == [("nothing.warc.gz", None, 404)]


# ---- read_pages over HTTP = read_pages on the local file ------------------------------------------

def _pages(path, http=None):
    counts: dict[str, int] = {}

    def count(name, n=1):
        counts[name] = counts.get(name, 0) + n

    pages = [(p["url"], p["record_id"], p["offset"], p["html"]) for p in read_pages(path, count=count, http=http)]
    return pages, counts


@pytest.mark.parametrize("name", NAMES + ["example-trunc.warcio.warc", "damaged"])
def test_read_pages_over_http_equals_local(tmp_path, name):
    """Every sample WARC (a clipped record, a truncated uncompressed file, a member with garbage
    in the middle so the reader resyncs by scanning the file over HTTP) gives the same pages and
    counts over a dropping connection as from the disk."""
    root = tmp_path / "www"
    root.mkdir()
    if name == "damaged":
        data = bytearray((SAMPLE_WARC / "pages.warc.gz").read_bytes())
        third = _pages(str(SAMPLE_WARC / "pages.warc.gz"))[0][2][2]  # the third record's offset
        data[third + 100:third + 400] = b"\x00" * 300  # its gzip member is corrupt
        (root / "damaged.warc.gz").write_bytes(bytes(data))
        name = "damaged.warc.gz"
    else:
        shutil.copy(SAMPLE_WARC / name, root / name)
    size = (root / name).stat().st_size
    local_pages, local_counts = _pages(str(root / name))
    with RangeServer(root) as srv:
        srv.cut_at[name] = [size // 3, 2 * size // 3, size // 3 + 10]
        pages, counts = _pages(srv.url + name, FAST)
    # A cut is spent by the first response that would cross it, even one the reader stops early
    # (the 64 KiB opening sniff): at least one is crossed while reading.
    assert counts.pop("warc_http_resumes") >= 1
    assert pages == local_pages and counts == local_counts
    if name == "damaged.warc.gz":
        assert counts["warc_resyncs"] == 1 and counts["warc_corrupt"] == 1


# ---- the recall job with --crawl / --files --------------------------------------------------------

def _shard_text(directory: Path, old: str = "", new: str = "") -> dict[str, str]:
    return {p.name: gzip.decompress(p.read_bytes()).decode().replace(old, new)
            for p in sorted(directory.glob("part-*.jsonl.gz"))}


@pytest.mark.slow
def test_recall_by_crawl_name_equals_local_recall(tmp_path, bucket, server, small_classifier):
    chosen = [1, 2, 3]
    for i in chosen:
        name = rel(i, NAMES[i])
        server.cut_at[name] = _cuts((bucket / name).stat().st_size)
    http_cfg = RecallConfig(crawl=CRAWL, files="1:4", cc_base=server.url, run=str(tmp_path / "http"),
                            num_shards=2, http_backoff_s=0.01)
    http_stats = job.run(http_cfg, small_classifier)
    local_cfg = RecallConfig(warc=[str(bucket / rel(i, NAMES[i])) for i in chosen], run=str(tmp_path / "local"),
                             num_shards=2)
    local_stats = job.run(local_cfg, small_classifier)

    # Each resumption is a Range request from the byte where the connection was cut (no file here
    # needs a resync, so no other ranged request is made); files 0 and 4 are never asked for.
    ranged = []
    for i in chosen:
        name = rel(i, NAMES[i])
        cuts = {f"bytes={c}-" for c in _cuts((bucket / name).stat().st_size)}
        assert set(server.ranged(name)) <= cuts
        ranged += server.ranged(name)
    assert http_stats["warc_http_resumes"] == len(ranged) >= len(chosen)
    asked = {n for n, _, _ in server.requests}
    assert rel(0, NAMES[0]) not in asked and rel(4, NAMES[4]) not in asked

    # Every record of every file read once: the same counts, documents, domain table.
    timing = ("wall_seconds", "pages_per_second", "warc_http_resumes")
    assert {k: v for k, v in http_stats.items() if k not in timing} == \
           {k: v for k, v in local_stats.items() if k not in timing}
    assert http_stats["records_read"] == 50 + 18 + 48
    http_dir, local_dir = tmp_path / "http" / "recall", tmp_path / "local" / "recall"
    assert _shard_text(http_dir, server.url, str(bucket) + "/") == _shard_text(local_dir)
    assert (http_dir / "domains.jsonl.gz").read_bytes() == (local_dir / "domains.jsonl.gz").read_bytes()
    docs = list(shards.read_shards(str(http_dir), RecalledDocument))
    assert docs and all(d["warc_file"].startswith(server.url + f"crawl-data/{CRAWL}/") for d in docs)

    config = json.loads((http_dir / "config.json").read_text())
    assert config["crawl"] == CRAWL and config["files"] == "1:4" and config["cc_base"] == server.url
    assert config["inputs"] == [server.url + rel(i, NAMES[i]) for i in chosen]
    assert config["listing"] == server.url + f"crawl-data/{CRAWL}/warc.paths.gz"


def _cuts(size: int) -> list[int]:
    return [size // 4, size // 2, 3 * size // 4]


@pytest.mark.slow
def test_cli_file_that_keeps_failing_is_one_line(tmp_path, server, small_classifier):
    name = rel(2, NAMES[2])
    server.always_cut[name] = 0
    proc = run_cli("recall", "--crawl", CRAWL, "--files", "2", "--cc-base", server.url, "--run", str(tmp_path / "run"),
                   "--classifier", small_classifier, "--http-retries", "2", "--http-backoff-s", "0.01")
    line = one_error_line(proc, "recall")
    assert f"{server.url}{name}: gave up after 2 retries at byte 0" in line
    assert not (tmp_path / "run" / "recall" / "_SUCCESS").exists()


def test_cli_crawl_settings_are_checked(tmp_path):
    from webinstruct.infra import cli

    for argv, words in ((["--crawl", CRAWL, "--warc", "x.warc.gz"], "--warc and --crawl both given"),
                        (["--crawl", CRAWL, "--files", "a:b"], "--files (recall.files): expected a file index or a slice"),
                        (["--crawl", "../etc", "--files", "0"], "--crawl (recall.crawl): expected a crawl name")):
        with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
            cli.main(["recall", "--run", str(tmp_path), *argv, "--debug"])
    args = cli.parse_args(["recall", "--crawl", CRAWL, "--files", "0:100", "--cc-base", "http://127.0.0.1:1/"])
    assert (vars(args)["recall.crawl"], vars(args)["recall.files"]) == (CRAWL, "0:100")


def test_make_passes_crawl_files_and_base():
    out = subprocess.run(["make", "-n", "-o", ".venv/.installed", "recall", f"CRAWL={CRAWL}", "FILES=0:2",
                          "CC_BASE=http://127.0.0.1:9/"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    line = [ln for ln in out.splitlines() if " recall " in ln][-1]
    assert f"--crawl {CRAWL} --files 0:2 --cc-base http://127.0.0.1:9/" in " ".join(line.split())
    out = subprocess.run(["make", "-n", "-o", ".venv/.installed", "recall"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert "--crawl" not in out and "--files" not in out
