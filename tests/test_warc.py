"""WARC reading on real files, the broken ones included: every record is accounted for."""
from __future__ import annotations

import collections
import gzip
import io

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from webinstruct.pipeline.recall.warc import read_pages

from conftest import SAMPLE_WARC


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
