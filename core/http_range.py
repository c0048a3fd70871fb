"""A resumable HTTP(S) reader: a seekable raw stream over one URL that survives dropped connections.

Common Crawl serves WARC files of about 1 GB over HTTPS; a connection that is reset, times out or
ends before the body's declared length must not cost the file, nor make a record appear twice. So
`RangeReader` keeps the byte position it has reached and, when a read fails, reconnects and asks
for `Range: bytes=POS-` (or `POS-END` for a bounded slice). It accepts the answer only when it
continues exactly there: a `206` whose `Content-Range` starts at POS, or a `200` with the whole
file, of which it skips the first POS bytes (a server that ignores ranges). Each failure without
progress waits longer (`backoff_s`, doubling, at most 30 s); after `retries` failures in a row it
raises `RemoteReadError`, one line naming the URL, the byte reached and the last cause. Progress
resets that count, so a long file over a flaky link completes as long as each attempt gets
further; but a stream that fails `retries * 10` times in all is given up too (a server that drops
every connection after a few bytes would otherwise be read a few bytes at a time, for ever).

HTTP 4xx answers other than 408/429 are not retried (the file is not there, or not ours to read).
Redirects are followed (up to 5). Standard library only (`http.client`): no proxies.
"""
from __future__ import annotations

import dataclasses
import http.client
import io
import logging
import re
import time
from typing import Any
from urllib.parse import urljoin, urlsplit

from webinstruct.core.config import NonNegativeFloat, NonNegativeInt, PositiveFloat, option

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
MAX_REDIRECTS = 5
TOTAL_FACTOR = 10  # a file may fail at most retries * TOTAL_FACTOR times in all, progress or not
USER_AGENT = "webinstruct/1 (resumable range reader)"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
RETRYABLE_STATUS = (408, 425, 429, 500, 502, 503, 504)


@dataclasses.dataclass
class HTTPSettings:
    """The reader's settings, as fields of the configs that read over HTTP (recall, domains fetch)."""

    http_retries: NonNegativeInt = option(6, "http(s) reads: reconnections in a row without progress before the "
                                             "read is given up")
    http_backoff_s: NonNegativeFloat = option(1.0, "http(s) reads: first wait before a reconnection (doubles each "
                                                   "time, at most 30 s)")
    http_timeout_s: PositiveFloat = option(60.0, "http(s) reads: socket timeout of one connection")

    def http(self) -> dict[str, Any]:
        """Keyword arguments of `open_url` / `fetch`."""
        return {"retries": self.http_retries, "backoff_s": self.http_backoff_s, "timeout_s": self.http_timeout_s}


def is_http(path: str) -> bool:
    return str(path).lower().startswith(("http://", "https://"))


class RemoteReadError(ConnectionError):
    """A URL that could not be read, after the retries when the fault looked transient.
    `status`: the HTTP status when the server refused (404, 403, ...), else None."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class _Retry(Exception):
    """One failed attempt that may succeed when repeated."""


class RangeReader(io.RawIOBase):
    """Bytes [start, end) of `url` (end None: to the end of the file) as a seekable raw stream.

    `resumes` counts reconnections that continued a read from a byte > 0 after a failure,
    `failures` every failed attempt, `skipped_bytes` what a server ignoring ranges made us discard."""

    def __init__(self, url: str, start: int = 0, end: int | None = None, *, retries: int = 6,
                 backoff_s: float = 0.5, timeout_s: float = 60.0):
        if not is_http(url):
            raise ValueError(f"not an http(s) URL: {url!r}")
        super().__init__()
        self.url = url
        self.start = start
        self.end = end
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.size: int | None = None  # the whole file's, once a response has told it
        self.resumes = 0
        self.failures = 0
        self.skipped_bytes = 0
        self._pos = start
        self._conn: http.client.HTTPConnection | None = None
        self._resp: http.client.HTTPResponse | None = None
        self._resp_end: int | None = None  # the byte this response's body should end at
        self._after_failure = False  # the next connection continues a read that failed

    # ---- io.RawIOBase -------------------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            limit = self._limit()
            if limit is None:  # the size is not known before a response has told it
                self._retrying(self._open)
                limit = self._limit()
            target = (limit or 0) + offset
        else:
            raise ValueError(f"bad whence {whence}")
        if target < 0:
            raise ValueError(f"negative seek position {target}")
        if target != self._pos:
            self._drop()
            self._pos = target
        return self._pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        want = len(view)
        limit = self._limit()
        if limit is not None:
            want = min(want, max(0, limit - self._pos))
        if want == 0:
            return 0
        return self._retrying(lambda: self._read_once(view[:want]))

    def _read_once(self, view: memoryview) -> int:
        if self._resp is None and not self._open():
            return 0  # at the end of the file
        n = self._resp.readinto(view)
        if n == 0:
            if self._resp_end is not None and self._pos < self._resp_end:
                raise _Retry(f"connection closed at byte {self._pos} of {self._resp_end}")
            self._drop()
            return 0
        self._pos += n
        return n

    def _retrying(self, attempt):
        """`attempt()`, again after each transient failure (a new connection from the byte
        reached), waiting longer each time; RemoteReadError after `retries` failures in a row, or
        `retries * TOTAL_FACTOR` over the reader's life."""
        failures = 0
        while True:
            try:
                return attempt()
            except RemoteReadError:
                self._drop()
                raise
            except (_Retry, OSError, http.client.HTTPException) as err:
                self._drop()
                self._after_failure = True
                failures += 1
                self.failures += 1
                last = f"{type(err).__name__}: {err}" if not isinstance(err, _Retry) else str(err)
                if failures > self.retries or self.failures > self.retries * TOTAL_FACTOR:
                    why = (f"{self.retries} retries" if failures > self.retries else
                           f"{self.retries * TOTAL_FACTOR} retries in all")
                    raise RemoteReadError(f"{self.url}: gave up after {why} at byte {self._pos}"
                                          f"{'' if self.size is None else f' of {self.size}'} ({last})") from None
                wait = min(MAX_BACKOFF_S, self.backoff_s * 2 ** (failures - 1))
                log.info("%s: read failed at byte %d (%s); retry %d/%d in %.1fs", self.url, self._pos, last,
                         failures, self.retries, wait)
                time.sleep(wait)

    def close(self) -> None:
        self._drop()
        super().close()

    # ---- connections --------------------------------------------------------------------------

    def _limit(self) -> int | None:
        if self.end is not None:
            return self.end if self.size is None else min(self.end, self.size)
        return self.size

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
        self._conn = self._resp = None
        self._resp_end = None

    def _open(self) -> bool:
        """Connect and position a response body at `_pos`; False when `_pos` is the end of the file.
        Raises _Retry (or a socket error) for a fault worth retrying, RemoteReadError otherwise."""
        pos = self._pos
        want_range = pos > 0 or self.end is not None
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            cls = http.client.HTTPSConnection if parts.scheme.lower() == "https" else http.client.HTTPConnection
            conn = cls(parts.hostname, parts.port, timeout=self.timeout_s)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
            if want_range:
                headers["Range"] = f"bytes={pos}-" + ("" if self.end is None else str(self.end - 1))
            self._conn = conn
            conn.request("GET", target, headers=headers)
            resp = conn.getresponse()
            if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                url = urljoin(url, resp.getheader("Location"))
                self._drop()
                continue
            break
        else:
            raise RemoteReadError(f"{self.url}: more than {MAX_REDIRECTS} redirects")
        if resp.status == 206:
            m = _CONTENT_RANGE.match(resp.getheader("Content-Range") or "")
            if not m:
                raise _Retry(f"206 without a usable Content-Range ({resp.getheader('Content-Range')!r})")
            first, last, total = int(m.group(1)), int(m.group(2)), m.group(3)
            if total != "*":
                self.size = int(total)
            if first != pos:
                raise _Retry(f"asked for bytes from {pos}, the server answered from {first}")
            self._resp_end = last + 1
        elif resp.status == 200:
            length = resp.getheader("Content-Length")
            if length is not None and length.isdigit():
                self.size = int(length)
            self._resp_end = self.size
            if pos > 0:  # the server ignored the range: read up to where we are
                self._resp = resp
                self._skip(pos)
        elif resp.status == 416:
            m = re.match(r"bytes\s+\*/(\d+)", resp.getheader("Content-Range") or "")
            if m:
                self.size = int(m.group(1))
            if self.size is not None and pos >= self.size:
                self._drop()
                return False
            raise _Retry(f"HTTP 416 for bytes from {pos}")
        elif resp.status in RETRYABLE_STATUS:
            raise _Retry(f"HTTP {resp.status} {resp.reason}")
        else:
            raise RemoteReadError(f"{self.url}: HTTP {resp.status} {resp.reason}", resp.status)
        if self._after_failure and pos > self.start:
            self.resumes += 1
        self._after_failure = False
        self._resp = resp
        return True

    def _skip(self, n: int) -> None:
        left = n
        buf = bytearray(1 << 16)
        while left:
            got = self._resp.readinto(memoryview(buf)[:min(left, len(buf))])
            if got == 0:
                raise _Retry(f"connection closed while skipping to byte {n} (server ignores ranges)")
            left -= got
        self.skipped_bytes += n


def open_url(url: str, start: int = 0, end: int | None = None, *, retries: int = 6, backoff_s: float = 0.5,
             timeout_s: float = 60.0, buffer_size: int = 1 << 16) -> io.BufferedReader:
    """A buffered, seekable binary file object over `url` (bytes [start, end)), resuming dropped reads.
    Its `.raw` is the `RangeReader` (for the `resumes` count)."""
    raw = RangeReader(url, start, end, retries=retries, backoff_s=backoff_s, timeout_s=timeout_s)
    return io.BufferedReader(raw, buffer_size)


def fetch(url: str, start: int = 0, end: int | None = None, **kw) -> tuple[bytes, RangeReader]:
    """Bytes [start, end) of `url` in one piece (resumed as needed), with the reader (its counts)."""
    with open_url(url, start, end, **kw) as fh:
        data = fh.read()
        return data, fh.raw
