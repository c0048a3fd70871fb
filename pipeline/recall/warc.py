"""WARC files to HTML pages, counting every record that is not one by a named reason.

Real crawls contain truncated downloads, corrupt gzip members, malformed headers, non-HTML
payloads and pages of many megabytes. None of these may stop a job or cost the good records
around them: when the reader fails inside a file it counts the failure, scans forward to the
next record boundary (next gzip member or `WARC/1.x` header line) and carries on from there.

A file that does not start with a WARC record (a text or HTML file named .warc.gz, an empty file)
is not read at all: it counts `not_a_warc` with one warning naming it, rather than being parsed
line by line as damaged records.

Records are read with FastWARC (resiliparse's Rust reader, about twice as fast here) when it is
installed (`USE_FASTWARC`); warcio stays the reference. FastWARC gives the framing, the WARC
headers and the decompressed block; the HTTP headers, the payload decoding and every decision
about a record are warcio's code (`_page_from_record` sees a warcio record either way), so both
give the same pages and counts. FastWARC raises on damage warcio reads past (a record not followed
by its blank lines) and reads files warcio rejects (one gzip member around many records): wherever
it raises, or finds a record that is not the first of its gzip member, warcio reads on from the
start of that record (`warc_fastwarc_fallbacks`), over the same open file, and its resync logic
applies from there. A record's page and counts are committed only once FastWARC has parsed the
next record's header (so the record was whole), and the last record of a file is warcio's too:
how a file ends (a clipped record, a truncated member, trailing bytes) is judged by warcio alone.

warcio itself used to read a gzip member that fails midway (a flipped bit) as the end of the file,
losing every later record uncounted; `_StrictGzipReader` makes that a counted failure and a resync.

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
from warcio.bufferedreaders import DecompressingBufferedReader
from warcio.limitreader import LimitReader
from warcio.recordloader import ArcWarcRecord, ArcWarcRecordLoader

from webinstruct.core import io as fio
from webinstruct.core.http_range import RemoteReadError, is_http, open_url

from webinstruct.pipeline.text.html_text import decode_html

log = logging.getLogger(__name__)

try:
    from fastwarc.stream_io import GzipReader as _FastGzip
    from fastwarc.warc import ArchiveIterator as _FastIterator
except Exception as _err:  # not installed, or a build that does not load here: warcio reads everything
    _FastGzip = _FastIterator = None
    log.debug("fastwarc not importable (%s): WARCs are read with warcio", _err)

# Read with FastWARC first (warcio takes over wherever it stops); False: warcio only.
USE_FASTWARC = _FastIterator is not None

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


class _StrictGzipReader(DecompressingBufferedReader):
    """warcio's file reader, except that a gzip member whose data turns out corrupt after it began
    to decompress raises (the pass fails: counted, resynced). warcio prints the zlib error and
    returns nothing, which reads as the end of the file: the records after the damage were lost
    without a count, or not, depending on where its 16 KiB reads happened to fall."""

    def _decompress(self, data):
        if self.decompressor is not None and data and self.num_block_read:
            return self.decompressor.decompress(data)
        return super()._decompress(data)


class _Progress:
    """Records read in one file, logged every `every_s` seconds."""

    def __init__(self, path: str, every_s: float):
        self.path, self.every_s = path, every_s
        self.records = 0
        self.last_log = time.monotonic()

    def record(self) -> None:
        self.records += 1
        if time.monotonic() - self.last_log > self.every_s:
            self.last_log = time.monotonic()
            log.info("recall: %s: %d records read", self.path, self.records)


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
    progress = _Progress(path, progress_every_s)
    start = 0
    if USE_FASTWARC and _FastIterator is not None:
        with source.open() as fh:
            tap = _Tap(fh)
            start = yield from _read_fast(tap, path, gzipped, max_page_bytes, count, progress)
            rest = tap.rest_from(start)
            if rest is not None:  # warcio goes on over the same open file: no second request
                failed_at = yield from _warcio_pass(rest, path, start, max_page_bytes, count, progress)
        if rest is not None:
            if failed_at is None:
                return
            start = _resync(source, failed_at, gzipped, count)
    yield from _read_warcio(source, gzipped, start, max_page_bytes, count, progress)


def _read_warcio(source: _Source, gzipped: bool, base: int | None, max_page_bytes: int, count: Count,
                 progress: _Progress) -> Iterator[dict]:
    """The records from byte `base` on (a record boundary; None: none left), read with warcio,
    resyncing after damage."""
    while base is not None:
        with source.open() as fh:
            fh.seek(base)
            failed_at = yield from _warcio_pass(fh, source.path, base, max_page_bytes, count, progress)
        if failed_at is None:
            return
        base = _resync(source, failed_at, gzipped, count)


def _resync(source: _Source, failed_at: int, gzipped: bool, count: Count) -> int | None:
    nxt = _find_next_boundary(source, failed_at, gzipped)
    if nxt is not None:
        count("warc_resyncs", 1)
    return nxt


def _warcio_pass(fh, path: str, base: int, max_page_bytes: int, count: Count, progress: _Progress):
    """Yield the pages of one warcio pass over `fh`, positioned at byte `base`; return None at the
    end of the file, else the byte to scan from for the next record boundary."""
    it = ArchiveIterator(fh, check_digests=False)
    it.reader = _StrictGzipReader(it.fh)  # before anything is read: see _StrictGzipReader
    offset = base
    try:
        for record in it:
            # `it.offset` is the record's start in the file (warcio starts it at fh.tell(), which
            # is `base`); get_record_offset() would consume the record.
            offset = it.offset
            count("records_read", 1)
            try:
                page = _page_from_record(record, path, offset, max_page_bytes, count)
            except RemoteReadError:  # the file, not the record: it stops the job
                raise
            except Exception as err:  # a malformed payload inside an intact record
                count("dropped_malformed_record", 1)
                log.warning("%s@%d: malformed record: %s", path, offset, err)
                page = None
            if page is not None:
                yield page
            progress.record()
    except RemoteReadError:
        raise
    except Exception as err:  # truncated gzip, bad headers, garbage between records
        kind = "warc_truncated" if isinstance(err, EOFError) or "end of" in str(err).lower() else "warc_corrupt"
        count(kind, 1)
        # Scan from just past where the iterator stopped (the failing record's start, or the last
        # good record's when it failed before moving on; warcio's offset after a gzip member that
        # holds several records is meaningless, negative even: never before `base`).
        failed_at = max(offset, it.offset, base) + 1
        log.warning("%s: %s near offset %d (%s: %.120r): resyncing", path, kind, failed_at - 1,
                    type(err).__name__, str(err))
        return failed_at
    return None


# --- FastWARC ---------------------------------------------------------------------------------

_LOADER = ArcWarcRecordLoader(verify_http=False, arc2warc=False)  # what warcio's ArchiveIterator parses with
_HTTP_SCHEMES = ("http:", "https:")
KEEP_LIMIT = 64 << 20  # bytes the tap keeps for warcio at most (the record in hand and FastWARC's read-ahead)


class _FastStop(Exception):
    """FastWARC cannot go on at this record: warcio reads the file from the record's start."""


def _is_fastwarc_error(err: BaseException) -> bool:
    # FastWARC raises OSError / ValueError on damage, and a pyo3 PanicException (a BaseException)
    # where its Rust code gives up; an interrupt or a closing generator is no FastWARC error.
    return isinstance(err, Exception) or type(err).__name__ == "PanicException"


class _Tap:
    """The file object FastWARC reads through.

    It keeps the bytes read since the start of the record in hand (`mark`), so that warcio can go on
    from that record over the same open file (`rest_from`): for an http(s) file, no second request.
    It also keeps a `RemoteReadError` of the http(s) reader, which FastWARC would turn into an
    error of its own, or into an early end of file."""

    def __init__(self, fh):
        self.fh = fh
        self.pos = fh.tell()  # of the next byte read
        self.kept: list[bytes] = []
        self.kept_from: int | None = self.pos  # None: bytes were dropped, warcio must reopen
        self.kept_size = 0
        self.error: RemoteReadError | None = None

    def read(self, size: int = -1) -> bytes:
        try:
            data = self.fh.read(size)
        except RemoteReadError as err:
            self.error = err
            raise
        if data:
            self.pos += len(data)
            if self.kept_from is not None:
                self.kept.append(data)
                self.kept_size += len(data)
                if self.kept_size > KEEP_LIMIT:
                    self.kept, self.kept_size, self.kept_from = [], 0, None
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        pos = self.fh.seek(offset, whence)
        if pos != self.pos:
            self.pos, self.kept, self.kept_size, self.kept_from = pos, [], 0, None
        return pos

    def tell(self) -> int:
        return self.pos

    def close(self) -> None:  # the _Source closes the file
        pass

    def mark(self, offset: int) -> None:
        """The record in hand starts at `offset`: the bytes before it are not needed any more."""
        while self.kept_from is not None and self.kept and self.kept_from + len(self.kept[0]) <= offset:
            first = self.kept.pop(0)
            self.kept_from += len(first)
            self.kept_size -= len(first)

    def rest_from(self, offset: int):
        """The file from `offset` on over the open file (the bytes kept, then the rest), or None when
        those bytes were not kept."""
        if self.kept_from is None or not self.kept_from <= offset <= self.pos:
            return None
        head = b"".join(self.kept)[offset - self.kept_from:]
        self.kept, self.kept_size, self.kept_from = [], 0, None
        return _Resumed(head, offset, self.fh)


class _Resumed:
    """A file read from `offset` on: `head` (bytes already read from `fh`), then the rest of `fh`.
    Reads return what they ask for up to the end, as a read of the file itself would."""

    def __init__(self, head: bytes, offset: int, fh):
        self.head, self.i, self.offset, self.fh = head, 0, offset, fh

    def read(self, size: int | None = -1) -> bytes:
        if self.i >= len(self.head):
            return self.fh.read(size)
        if size is None or size < 0:
            out = self.head[self.i:] + self.fh.read()
        else:
            out = self.head[self.i:self.i + size]
            if len(out) < size:
                out += self.fh.read(size - len(out))
        self.i = min(len(self.head), self.i + len(out))
        return out

    def tell(self) -> int:
        return self.offset + self.i if self.i < len(self.head) else self.fh.tell()

    def close(self) -> None:
        pass


class _FastBlock:
    """A FastWARC record's block as warcio's readers expect a stream: reads return all they are
    asked for up to the end, and FastWARC's errors (a corrupt member mid-record) stop FastWARC
    rather than passing for a malformed payload."""

    __slots__ = ("reader",)

    def __init__(self, reader):
        self.reader = reader

    def read(self, size: int | None = -1) -> bytes:
        try:
            if size is None or size < 0:
                return self.reader.read()
            parts = []
            while size > 0:
                chunk = self.reader.read(size)
                if not chunk:
                    break
                parts.append(chunk)
                size -= len(chunk)
            return b"".join(parts)
        except BaseException as err:
            if _is_fastwarc_error(err):
                raise _FastStop(f"reading the block: {type(err).__name__}: {err}") from err
            raise

    def readline(self, size: int | None = -1) -> bytes:
        try:
            return self.reader.readline(size) if size is not None and size >= 0 else self.reader.readline()
        except BaseException as err:
            if _is_fastwarc_error(err):
                raise _FastStop(f"reading the block: {type(err).__name__}: {err}") from err
            raise

    def close(self) -> None:
        pass


class _FastHeaders:
    """A FastWARC record's WARC headers as warcio's `StatusAndHeaders` answers `get_header`: the first
    field of that name, any case, its value decoded as warcio decodes header lines (UTF-8, else
    Latin-1) and stripped; `fixed` holds the values warcio rewrites (the target URI)."""

    __slots__ = ("headers", "fixed")

    def __init__(self, headers):
        self.headers = headers
        self.fixed: dict[str, str] = {}

    def get_header(self, name: str, default_value=None):
        key = name.lower()
        if key in self.fixed:
            return self.fixed[key]
        raw = self.headers.get_bytes(key.encode("ascii"))
        if raw is None:
            return default_value
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            value = raw.decode("iso-8859-1")
        return value.strip()


def _warcio_record(record) -> ArcWarcRecord:
    """The warcio record of a FastWARC one, as warcio's loader would have parsed it; raises where
    warcio's iteration would fail or might differ (no usable Content-Length, an HTTP record without
    a target URI, ...)."""
    headers = _FastHeaders(record.headers)
    rec_type = headers.get_header("WARC-Type")
    # warcio's clean-up of the target URI: Wget's <...> wrapping, spaces percent-encoded
    uri = headers.get_header("WARC-Target-URI")
    if uri is not None and uri.startswith("<") and uri.endswith(">"):
        uri = headers.fixed["warc-target-uri"] = uri[1:-1]
    if uri is not None and " " in uri:
        uri = headers.fixed["warc-target-uri"] = uri.replace(" ", "%20")
    declared = headers.get_header("Content-Length")
    try:
        length = int(declared)
    except (TypeError, ValueError):
        raise _FastStop(f"Content-Length {declared!r}") from None
    if length < 0 or length != record.content_length:
        raise _FastStop(f"Content-Length {declared!r} read as {record.content_length}")
    stream = LimitReader(_FastBlock(record.reader), length)
    http = None
    if length and rec_type in _LOADER.HTTP_RECORDS:
        if uri is None:
            raise _FastStop(f"a {rec_type} record without WARC-Target-URI")
        # Only a response's HTTP headers are read: `_page_from_record` skips requests and revisits.
        if rec_type == "response" and uri.startswith(_HTTP_SCHEMES):
            http = _LOADER.load_http_headers(rec_type, uri, stream, length)
    return ArcWarcRecord("warc", rec_type, headers, stream, http, None, length)


def _read_fast(tap: _Tap, path: str, gzipped: bool, max_page_bytes: int, count: Count, progress: _Progress):
    """Yield the pages FastWARC reads from the file open in `tap`; return the offset from which
    warcio reads on: the start of the record FastWARC was on when it stopped (0 if none).

    A record is read when FastWARC returns it, its page and counts held back, and committed (counts
    applied, page yielded) once FastWARC has returned the next one, which it does only after the
    record's block, its end and the next header parsed. So on any stop, at the end of the file or
    on an error, the record in hand has given nothing yet, and warcio reads it afresh: how a file
    ends (a clipped record, a truncated member, trailing bytes) is judged by warcio alone."""
    held = None  # (offset, counts, page, warning) of the record in hand
    failure = None
    try:
        gz = _FastGzip(tap) if gzipped else None
        records = iter(_FastIterator(gz if gzipped else tap, parse_http=False, stream_detect=False))
    except BaseException as err:
        if not _is_fastwarc_error(err):
            raise
        records, failure = iter(()), err
    while failure is None:
        try:
            record = next(records, None)
            if record is None:
                break
            # A gzipped record's offset is its member's start. warcio reads one record per member
            # (a member holding several is an error to it), so each must start a new one here too.
            offset = gz.frame_start_position() if gzipped else record.stream_pos
            if offset is None or (held is not None and offset <= held[0]):
                raise _FastStop(f"a record at {offset} after one at {held and held[0]}: not a member of its own")
        except BaseException as err:
            if not _is_fastwarc_error(err):
                raise
            failure = err
            break
        if held is not None:  # the record before this one was whole: commit it
            yield from _commit(held, count, progress)
        tap.mark(offset)
        try:
            held = _read_fast_record(record, path, offset, max_page_bytes)
        except BaseException as err:
            if not _is_fastwarc_error(err):
                raise
            held, failure = (offset, None, None, None), err
    if tap.error is not None:
        raise tap.error
    resume = held[0] if held is not None else 0
    if failure is not None:
        count("warc_fastwarc_fallbacks", 1)
        log.info("%s: FastWARC stopped at the record at offset %d (%s: %.120s); warcio reads on from there",
                 path, resume, type(failure).__name__, str(failure))
    return resume


def _read_fast_record(record, path: str, offset: int, max_page_bytes: int):
    """(offset, counts, page or None, warning or None) of one FastWARC record; raises `_FastStop`
    (or FastWARC's own error) where warcio must read it instead."""
    counts: list[tuple[str, int]] = [("records_read", 1)]

    def note(name: str, n: int = 1) -> None:
        counts.append((name, n))

    wrec = _warcio_record(record)
    warning = None
    try:
        page = _page_from_record(wrec, path, offset, max_page_bytes, note)
    except _FastStop:
        raise
    except Exception as err:  # a malformed payload inside an intact record, as on the warcio path
        note("dropped_malformed_record", 1)
        warning = f"{path}@{offset}: malformed record: {err}"
        page = None
    return offset, counts, page, warning


def _commit(held, count: Count, progress: _Progress) -> Iterator[dict]:
    _, counts, page, warning = held
    for name, n in counts:
        count(name, n)
    if warning:
        log.warning("%s", warning)
    if page is not None:
        yield page
    progress.record()
