"""WARC files to HTML pages, counting every record that is not one by a named reason.

Real crawls contain truncated downloads, corrupt gzip members, malformed headers, non-HTML
payloads and pages of many megabytes. None of these may stop a job or cost the good records
around them: when the reader fails inside a file it counts the failure, scans forward to the
next record boundary (next gzip member or `WARC/1.x` header line) and carries on from there.

A file that does not start with a WARC record (a text or HTML file named .warc.gz, an empty file)
is not read at all: it counts `not_a_warc` with one warning naming it, rather than being parsed
line by line as damaged records.
"""
from __future__ import annotations

import logging
import time
import zlib
from typing import Callable, Iterator

from warcio.archiveiterator import ArchiveIterator

from webinstruct.core import io as fio

from webinstruct.pipeline.text.html_text import decode_html

log = logging.getLogger(__name__)

HTML_TYPES = ("text/html", "application/xhtml+xml")
GZIP_MAGIC = b"\x1f\x8b\x08"
WARC_MAGIC = (b"WARC/1.0\r\n", b"WARC/1.1\r\n", b"WARC/0.")
SCAN_CHUNK = 1 << 20

Count = Callable[[str, int], None]


def _no_count(name: str, n: int = 1) -> None:
    pass


def _clean_uri(uri: str | None) -> str:
    # WARC/1.0 writers sometimes wrap the target URI in angle brackets (the dolma sample does).
    uri = (uri or "").strip()
    if uri.startswith("<") and uri.endswith(">"):
        uri = uri[1:-1]
    return uri


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset":
            return value.strip().strip("\"'")
    return ""


def _find_next_boundary(path: str, start: int, gzipped: bool) -> int | None:
    """Offset of the next record boundary at or after `start`, or None at end of file."""
    markers = (GZIP_MAGIC,) if gzipped else WARC_MAGIC
    with fio.open(path, "rb", compression=None) as fh:
        fh.seek(start)
        pos = start
        tail = b""
        while True:
            chunk = fh.read(SCAN_CHUNK)
            if not chunk:
                return None
            data = tail + chunk
            hits = [data.find(m) for m in markers]
            hits = [h for h in hits if h >= 0]
            if hits:
                return pos - len(tail) + min(hits)
            tail = data[-16:]
            pos += len(chunk)


def _opening(path: str, size: int = 64) -> tuple[bool, bytes | None]:
    """Whether the file is gzipped, and the first `size` bytes of its content (of its first gzip
    member when gzipped; None when they cannot be decompressed: a damaged first member, which the
    resync logic handles). One read of the file's start."""
    with fio.open(path, "rb", compression=None) as fh:
        raw = fh.read(1 << 16)
    if raw[:3] != GZIP_MAGIC:
        return False, raw[:size]
    try:
        return True, zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw, size)
    except zlib.error:
        return True, None


def _page_from_record(record, path: str, offset: int, max_page_bytes: int, count: Count) -> dict | None:
    """The page in one WARC record, or None with the reason counted."""
    rtype = record.rec_type
    if rtype not in ("response", "resource"):
        count(f"skipped_record_{rtype or 'unknown'}", 1)
        return None
    count("records_response", 1)
    headers = record.rec_headers
    if rtype == "response":
        http = record.http_headers
        if http is None:
            count("dropped_no_http_headers", 1)
            return None
        status = http.get_statuscode() or ""
        if not status.startswith("2"):
            count("dropped_http_status", 1)
            return None
        ctype = (http.get_header("Content-Type") or "").lower()
    else:
        ctype = (headers.get_header("Content-Type") or "").lower()
    if not ctype.startswith(HTML_TYPES):
        count("dropped_content_type", 1)
        return None
    declared = int(headers.get_header("Content-Length") or 0)
    if declared > max_page_bytes * 4:
        # The WARC block (HTTP headers + maybe compressed body) is far too big: don't even read it.
        count("dropped_oversized", 1)
        return None
    stream = record.content_stream()
    body = stream.read(max_page_bytes + 1)
    if len(body) > max_page_bytes:
        count("dropped_oversized", 1)
        return None
    if not body.strip():
        count("dropped_empty", 1)
        return None
    # A clipped download: the block ended before the length its WARC header declares.
    if len(body) < max_page_bytes and getattr(record.raw_stream, "limit", 0) > 0:
        count("dropped_truncated_record", 1)
        return None
    count("pages_html", 1)
    html, problem = decode_html(body, _charset(ctype))
    if problem == "lossy":  # a few damaged bytes replaced by U+FFFD: the page is still worth reading
        count("pages_decoded_lossy", 1)
    elif problem:
        count(f"dropped_{problem}", 1)
        return None
    count("pages_decoded", 1)
    return {
        "url": _clean_uri(headers.get_header("WARC-Target-URI")),
        "html": html,
        "warc_file": path,
        "record_id": (headers.get_header("WARC-Record-ID") or "").strip("<>"),
        "offset": offset,
        "fetch_date": headers.get_header("WARC-Date") or "",
        "charset": _charset(ctype),
    }


def read_pages(
    path: str,
    max_page_bytes: int = 2_000_000,
    count: Count = _no_count,
    progress_every_s: float = 10.0,
) -> Iterator[dict]:
    """Yield a Page record (see `webinstruct.core.schema.Page`) for every HTML response in one WARC file."""
    try:
        gzipped, head = _opening(path)
    except OSError as err:
        count("warc_unreadable", 1)
        log.error("cannot open %s: %s", path, err)
        return
    count("warc_files", 1)
    if head is not None and not head.lstrip().startswith(b"WARC/"):
        count("not_a_warc", 1)
        start = f"it starts with {head[:24]!r}" if head.strip() else "it is empty"
        log.warning("%s: not a WARC file (%s, not a 'WARC/1.x' record header); skipped", path, start)
        return
    base = 0
    last_log = time.monotonic()
    n_records = 0
    while True:
        failed_at = None
        with fio.open(path, "rb", compression=None) as fh:
            fh.seek(base)
            it = ArchiveIterator(fh, check_digests=False)
            offset = base
            try:
                for record in it:
                    # `it.offset` is the record's start; get_record_offset() would consume the record.
                    offset = base + it.offset
                    n_records += 1
                    count("records_read", 1)
                    try:
                        page = _page_from_record(record, path, offset, max_page_bytes, count)
                    except Exception as err:  # a malformed payload inside an intact record
                        count("dropped_malformed_record", 1)
                        log.warning("%s@%d: malformed record: %s", path, offset, err)
                        page = None
                    if page is not None:
                        yield page
                    if time.monotonic() - last_log > progress_every_s:
                        last_log = time.monotonic()
                        log.info("recall: %s: %d records read", path, n_records)
            except Exception as err:  # truncated gzip, bad headers, garbage between records
                kind = "warc_truncated" if isinstance(err, EOFError) or "end of" in str(err).lower() else "warc_corrupt"
                count(kind, 1)
                # Scan from just past where the iterator stopped (the failing record's start, or
                # the last good record's when it failed before moving on).
                failed_at = max(offset, base + it.offset) + 1
                log.warning("%s: %s near offset %d (%s: %.120r): resyncing", path, kind, failed_at - 1,
                            type(err).__name__, str(err))
        if failed_at is None:
            return
        nxt = _find_next_boundary(path, failed_at, gzipped)
        if nxt is None:
            return
        count("warc_resyncs", 1)
        base = nxt
