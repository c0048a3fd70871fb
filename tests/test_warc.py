"""WARC reading on real files, the broken ones included: every record is accounted for."""
from __future__ import annotations

import collections
import gzip
import io

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from webinstruct.pipeline.recall import warc as W
from webinstruct.pipeline.recall.warc import read_pages

from conftest import SAMPLE_WARC


def compares_readers(test):
    """A test that reads with both readers itself (it is not run once per reader)."""
    test.compares_readers = True
    return test


def pytest_generate_tests(metafunc):
    if not getattr(metafunc.function, "compares_readers", False):
        metafunc.parametrize("reader", ["fastwarc", "warcio"], indirect=True)


@pytest.fixture(autouse=True)
def reader(request, monkeypatch):
    """Every test runs on both readers, FastWARC (warcio where it stops) and warcio alone, but
    those that compare the two."""
    param = getattr(request, "param", None)
    if param is not None:
        monkeypatch.setattr(W, "USE_FASTWARC", param == "fastwarc")
    return param


def read(path, **kw):
    counts = collections.Counter()
    pages = list(read_pages(str(path), count=lambda n, k=1: counts.update({n: k}), **kw))
    return pages, counts


def accounted(counts) -> int:
    """Records that became pages or were skipped/dropped by a named reason."""
    return counts["pages_decoded"] + sum(v for k, v in counts.items()
                                         if k.startswith(("skipped_record_", "dropped_")))


# file -> (pages, records read) measured on the real files of shared/web/warc (all bundled: five in
# data/sample/warc, three in tests/fixtures/web/warc; the `web` fixture gathers them)
EXPECTED = {
    "cc-main-2020-34_excerpt.resiliparse.warc.gz": (16, 50),
    "clueweb22_quirk.resiliparse.warc.gz": (29, 30),
    "dolma_sample-0000.warc.gz": (22, 48),
    "example.warcio.warc.gz": (1, 6),
    "example-iana.org-chunked.warcio.warc": (1, 3),
    "example-resource.warcio.warc.gz": (1, 3),
    "example-trunc.warcio.warc": (1, 4),
    "clipped.resiliparse.warc.gz": (0, 1),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_warcs(web, name):
    pages, counts = read(web / "warc" / name)
    n_pages, n_records = EXPECTED[name]
    assert len(pages) == n_pages
    assert counts["records_read"] == n_records
    assert accounted(counts) == n_records
    for p in pages:
        assert p["url"].startswith("http") and not p["url"].startswith("<")
        assert p["record_id"].startswith("urn:")
        assert isinstance(p["html"], str) and p["html"]


def test_named_reasons(web):
    _, counts = read(web / "warc" / "clipped.resiliparse.warc.gz")
    assert counts["dropped_truncated_record"] == 1
    _, counts = read(web / "warc" / "dolma_sample-0000.warc.gz")
    assert counts["dropped_content_type"] == 2 and counts["skipped_record_request"] == 22
    _, counts = read(web / "warc" / "example.warcio.warc.gz")
    assert counts["skipped_record_revisit"] == 1
    pages, _ = read(web / "warc" / "example-iana.org-chunked.warcio.warc")
    assert "Internet Assigned Numbers Authority" in pages[0]["html"]  # de-chunked


def test_offsets_point_at_records():
    path = SAMPLE_WARC / "pages.warc.gz"
    pages, _ = read(path)
    from warcio.archiveiterator import ArchiveIterator

    raw = path.read_bytes()
    for p in pages[:3]:
        rec = next(iter(ArchiveIterator(io.BytesIO(raw[p["offset"]:]))))
        assert rec.rec_headers.get_header("WARC-Target-URI") == p["url"]


def test_corrupt_member_in_the_middle_loses_only_that_record(tmp_path):
    good = (SAMPLE_WARC / "pages.warc.gz").read_bytes()
    pages, _ = read(SAMPLE_WARC / "pages.warc.gz")
    third = pages[2]["offset"]
    bad = bytearray(good)
    bad[third + 100: third + 400] = b"\x00" * 300
    (tmp_path / "bad.warc.gz").write_bytes(bytes(bad))
    got, counts = read(tmp_path / "bad.warc.gz")
    assert counts["warc_corrupt"] == 1 and counts["warc_resyncs"] == 1
    assert [p["url"] for p in got] == [p["url"] for i, p in enumerate(pages) if i != 2]


def test_truncated_file_keeps_what_came_before(tmp_path):
    good = (SAMPLE_WARC / "pages.warc.gz").read_bytes()
    pages, _ = read(SAMPLE_WARC / "pages.warc.gz")
    cut = pages[5]["offset"] + 5000  # inside the sixth record
    (tmp_path / "cut.warc.gz").write_bytes(good[:cut])
    got, counts = read(tmp_path / "cut.warc.gz")
    assert [p["url"] for p in got] == [p["url"] for p in pages[:5]]
    assert counts["dropped_truncated_record"] + counts["warc_truncated"] + counts["warc_corrupt"] >= 1


def test_garbage_between_uncompressed_records(tmp_path):
    raw = gzip.decompress((SAMPLE_WARC / "pages.warc.gz").read_bytes())
    pages, _ = read(SAMPLE_WARC / "pages.warc.gz")
    i = raw.find(b"WARC/1.0", 200_000)
    (tmp_path / "g.warc").write_bytes(raw[:i] + b"\r\n#### garbage ####\r\n" * 20 + raw[i:])
    got, counts = read(tmp_path / "g.warc")
    assert len(got) == len(pages)
    assert counts["warc_corrupt"] + counts["warc_resyncs"] >= 1


def _warc(tmp_path, bodies):
    path = tmp_path / "made.warc.gz"
    with open(path, "wb") as fh:
        w = WARCWriter(fh, gzip=True)
        for i, (ctype, body) in enumerate(bodies):
            http = StatusAndHeaders("200 OK", [("Content-Type", ctype)], protocol="HTTP/1.1")
            w.write_record(w.create_warc_record(f"http://example.org/{i}", "response",
                                                payload=io.BytesIO(body), http_headers=http))
    return path


def test_oversized_binary_and_undecodable(tmp_path):
    html = b"<html><body><p>" + b"x " * 100 + b"</p></body></html>"
    path = _warc(tmp_path, [
        ("text/html", html),
        ("text/html", b"<html>" + b"a" * 5000 + b"</html>"),     # over the limit below
        ("application/pdf", b"%PDF-1.4 ..."),
        ("text/html", bytes(range(256)) * 10),                  # binary posing as HTML
        ("text/html; charset=utf-8", "<p>caf\u00e9 ok</p>".encode("utf-8")),
        ("text/html", b""),
    ])
    pages, counts = read(path, max_page_bytes=4000)
    assert len(pages) == 2
    assert counts["dropped_oversized"] == 1
    assert counts["dropped_content_type"] == 1
    assert counts["dropped_undecodable"] == 1
    assert counts["dropped_empty"] == 1
    assert "café" in pages[1]["html"]
    assert accounted(counts) == counts["records_read"] == 6


def test_unreadable_path(tmp_path):
    pages, counts = read(tmp_path / "nope.warc.gz")
    assert pages == [] and counts["warc_unreadable"] == 1


# ---- FastWARC and warcio: the same pages and counts --------------------------------------------

def both(path, monkeypatch, **kw):
    """(pages, counts) read with FastWARC and with warcio alone; FastWARC's fallbacks apart."""
    monkeypatch.setattr(W, "USE_FASTWARC", True)
    fast, fast_counts = read(path, **kw)
    monkeypatch.setattr(W, "USE_FASTWARC", False)
    slow, slow_counts = read(path, **kw)
    fallbacks = fast_counts.pop("warc_fastwarc_fallbacks", 0)
    assert "warc_fastwarc_fallbacks" not in slow_counts
    return (fast, fast_counts), (slow, slow_counts), fallbacks


def _all_sample_warcs():
    return sorted(p.name for p in SAMPLE_WARC.glob("*.warc*"))


@compares_readers
@pytest.mark.parametrize("name", sorted(set(_all_sample_warcs()) | set(EXPECTED)))
def test_fastwarc_reads_what_warcio_reads(web, monkeypatch, name):
    path = SAMPLE_WARC / name if (SAMPLE_WARC / name).exists() else web / "warc" / name
    fast, slow, fallbacks = both(path, monkeypatch)
    assert fast == slow  # every field of every page, and every count
    # FastWARC rejects one file, whose second record is not followed by its blank lines; warcio
    # (which warns and reads on) takes it from there.
    assert fallbacks == (1 if name == "example-trunc.warcio.warc" else 0)


@compares_readers
def test_fastwarc_reads_past_its_size_limits_like_warcio(monkeypatch):
    fast, slow, fallbacks = both(SAMPLE_WARC / "pages.warc.gz", monkeypatch, max_page_bytes=60_000)
    assert fast == slow and fallbacks == 0
    assert fast[1]["dropped_oversized"] > 0


def _flip(tmp_path, record: int, at: int) -> tuple:
    """pages.warc.gz with one bit flipped `at` bytes into the gzip member of record `record`."""
    good = (SAMPLE_WARC / "pages.warc.gz").read_bytes()
    pages, _ = read(SAMPLE_WARC / "pages.warc.gz")
    bad = bytearray(good)
    bad[pages[record]["offset"] + at] ^= 0x10
    (tmp_path / "flipped.warc.gz").write_bytes(bytes(bad))
    return tmp_path / "flipped.warc.gz", pages


def test_a_flipped_bit_costs_one_record(tmp_path):
    """warcio used to print the zlib error of a member that fails midway and read on as if the file
    had ended there: one flipped bit lost every later record, uncounted."""
    path, pages = _flip(tmp_path, 1, 10_000)
    got, counts = read(path)
    assert [p["url"] for p in got] == [p["url"] for i, p in enumerate(pages) if i != 1]
    assert counts["warc_corrupt"] == 1 and counts["warc_resyncs"] == 1


@compares_readers
def test_fastwarc_falls_back_to_warcio_mid_file(tmp_path, monkeypatch):
    path, pages = _flip(tmp_path, 4, 2_000)
    fast, slow, fallbacks = both(path, monkeypatch)
    assert fallbacks == 1
    assert fast == slow
    ids = [p["record_id"] for p in fast[0]]
    assert len(ids) == len(set(ids)) == len(pages) - 1  # nothing twice, nothing lost but the damage


@compares_readers
def test_one_gzip_member_for_many_records_is_warcios_to_judge(tmp_path, monkeypatch):
    """A WARC gzipped whole (not member by member): FastWARC would read every record, but no
    record has an offset of its own; warcio reads the first and stops with an error."""
    raw = gzip.decompress((SAMPLE_WARC / "pages.warc.gz").read_bytes())
    (tmp_path / "whole.warc.gz").write_bytes(gzip.compress(raw))
    fast, slow, fallbacks = both(tmp_path / "whole.warc.gz", monkeypatch)
    assert fast == slow and fallbacks == 1
    assert fast[1]["warc_corrupt"] == 1 and [p["offset"] for p in fast[0]] == [0]


def test_without_fastwarc_warcio_reads_everything(monkeypatch, reader):
    monkeypatch.setattr(W, "_FastIterator", None)
    pages, counts = read(SAMPLE_WARC / "pages.warc.gz")
    assert len(pages) == 18 and "warc_fastwarc_fallbacks" not in counts


def test_a_remote_read_error_stops_the_fastwarc_pass(monkeypatch, reader):
    """An http(s) file that cannot be read stops the job with its own error, whichever reader was
    reading (FastWARC hides errors of the file object it reads from behind its own)."""
    from webinstruct.core.http_range import RemoteReadError

    real_open = W.fio.open
    opened = []

    class Failing:
        """Fails once past 100 kB, then reads as at the end of the file: the error must not be lost."""

        def __init__(self, fh):
            self.fh, self.failed = fh, False

        def read(self, size=-1):
            if self.failed:
                return b""
            if self.fh.tell() > 100_000:
                self.failed = True
                raise RemoteReadError("http://h/pages.warc.gz: gave up after 2 retries at byte 100000")
            return self.fh.read(size)

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def failing_open(path, mode="r", **kw):
        opened.append(path)
        fh = real_open(path, mode, **kw)
        return fh if len(opened) == 1 else Failing(fh)  # the opening sniff reads fine

    monkeypatch.setattr(W.fio, "open", failing_open)
    with pytest.raises(RemoteReadError, match="gave up after 2 retries"):
        read(SAMPLE_WARC / "pages.warc.gz")
