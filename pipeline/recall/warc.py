"""WARC files to HTML pages, counting every record that is not one by a named reason.

Real crawls contain truncated downloads, corrupt gzip members, malformed headers, non-HTML
payloads and pages of many megabytes. None of these may stop a job or cost the good records
around them: when the reader fails inside a file it counts the failure, scans forward to the
next record boundary (next gzip member or `WARC/1.x` header line) and carries on from there.

A file that does not start with a WARC record (a text or HTML file named .warc.gz, an empty file)
is not read at all: it counts `not_a_warc` with one warning naming it, rather than being parsed
line by line as damaged records.

http(s):// paths (Common Crawl's `https://data.commoncrawl.org/crawl-data/...`) are streamed by
`core/http_range.py`, which resumes a dropped connection with a Range request from the byte it had
reached (counted as `warc_http_resumes`); a file it cannot read after its retries stops the job
with one line naming the URL (`RemoteReadError`), rather than being counted and skipped. Local,
s3:// and gs:// paths go through `core/io.py`.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
import zlib
from typing import Callable, Iterator

from warcio.archiveiterator import ArchiveIterator

from webinstruct.core import io as fio
from webinstruct.core.http_range import RemoteReadError, is_http, open_url

from webinstruct.pipeline.text.html_text import decode_html

log = logging.getLogger(__name__)

HTML_TYPES = ("text/html", "application/xhtml+xml")
GZIP_MAGIC = b"\x1f\x8b\x08"
WARC_MAGIC = (b"WARC/1.0\r\n", b"WARC/1.1\r\n", b"WARC/0.")
SCAN_CHUNK = 1 << 20

Count = Callable[[str, int], None]


def _no_count(name: str, n: int = 1) -> None:
    pass


class _Source:
    """Opens one WARC file's raw bytes, again at each resync; sums the HTTP resumptions of every
    opening (`http`: RangeReader settings, retries / backoff_s / timeout_s)."""

    def __init__(self, path: str, http: dict | None = None, base_dir: str | None = None):
        self.path = path
        self.http = http or {}
        self.resumes = 0
        # A relative local path is the launcher's: opened under its working directory `base_dir`.
        relative = base_dir and not fio.is_remote(path) and not os.path.isabs(path)  # http(s) is remote too
        self.location = os.path.join(base_dir, fio.local_path(path)) if relative else path

    @contextlib.contextmanager
    def open(self):
        if not is_http(self.path):
            with fio.open(self.location, "rb", compression=None) as fh:
                yield fh
            return
        fh = open_url(self.path, **self.http)
        try:
            yield fh
        finally:
            self.resumes += fh.raw.resumes
            fh.close()


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


def _find_next_boundary(source: _Source, start: int, gzipped: bool) -> int | None:
    """Offset of the next record boundary at or after `start`, or None at end of file."""
    markers = (GZIP_MAGIC,) if gzipped else WARC_MAGIC
    with source.open() as fh:
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


def _opening(source: _Source, size: int = 64) -> tuple[bool, bytes | None]:
    """Whether the file is gzipped, and the first `size` bytes of its content (of its first gzip
    member when gzipped; None when they cannot be decompressed: a damaged first member, which the
    resync logic handles). One read of the file's start."""
    with source.open() as fh:
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
    http: dict | None = None,
    base_dir: str | None = None,
) -> Iterator[dict]:
    """Yield a Page record (see `webinstruct.core.schema.Page`) for every HTML response in one WARC file.

    `http`: settings of the resumable reader for http(s) paths (retries, backoff_s, timeout_s).
    `base_dir`: the directory a relative `path` is under (a worker's own may differ); pages record
    `path` as given."""
    source = _Source(path, http, base_dir)
    try:
        yield from _read_pages(source, max_page_bytes, count, progress_every_s)
    finally:
        if source.resumes:
            count("warc_http_resumes", source.resumes)


def _read_pages(source: _Source, max_page_bytes: int, count: Count, progress_every_s: float) -> Iterator[dict]:
    path = source.path
    try:
        gzipped, head = _opening(source)
    except RemoteReadError:
        raise
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
        with source.open() as fh:
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
            except RemoteReadError:
                raise
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
        nxt = _find_next_boundary(source, failed_at, gzipped)
        if nxt is None:
            return
        count("warc_resyncs", 1)
        base = nxt
