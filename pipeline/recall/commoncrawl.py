"""Common Crawl by crawl name: `--crawl CC-MAIN-2024-10 --files 0:100` -> the WARC URLs to recall.

Each crawl publishes `crawl-data/<CRAWL>/warc.paths.gz`, a gzipped text file with one WARC path
per line, relative to the bucket (`crawl-data/CC-MAIN-2024-10/segments/.../warc/CC-MAIN-...warc.gz`).
The base is `https://data.commoncrawl.org/` (HTTPS, streamed and resumed by core/http_range.py),
`s3://commoncrawl/` (through core/io, with s3fs installed) or any mirror with the same layout.
`--files` picks lines the way a Python slice does (`0:100`, `7`, `100:`, `0:1000:10`), so a
job's inputs are reproducible from three settings, all recorded in RUN/recall/config.json.
"""
from __future__ import annotations

import gzip

from webinstruct.core import io as fio
from webinstruct.core.http_range import fetch, is_http


def paths_url(crawl: str, base: str) -> str:
    return fio.join(base, f"crawl-data/{crawl}/warc.paths.gz")


def select_files(lines: list[str], spec: str) -> list[str]:
    """The lines `spec` names: "" all, "7" one (negative counts from the end), "a:b[:c]" a slice.
    An index past the end is a ValueError naming the list's length."""
    spec = spec.strip()
    if not spec:
        return list(lines)
    if ":" not in spec:
        i = int(spec)
        if not -len(lines) <= i < len(lines):
            raise ValueError(f"file index {i} is out of range: the list has {len(lines)} files (0..{len(lines) - 1})")
        return [lines[i]]
    parts = [int(p) if p.strip() else None for p in spec.split(":")]
    if len(parts) == 3 and parts[2] == 0:
        raise ValueError(f"file range {spec}: the step cannot be 0")
    return lines[slice(*parts)]


def read_listing(url: str, http: dict | None = None) -> list[str]:
    """The non-empty lines of a (gzipped) path listing, local, fsspec URI or http(s)."""
    if is_http(url):
        data, _ = fetch(url, **(http or {}))
    else:
        try:
            data = fio.read_bytes(url)
        except FileNotFoundError:
            raise FileNotFoundError(f"no WARC listing at {url}: is the crawl name right?") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise ValueError(f"{url}: not a readable gzip file ({err})") from None
    return [line.strip() for line in data.decode("utf-8").splitlines() if line.strip()]


def resolve(crawl: str, files: str, base: str, http: dict | None = None) -> list[str]:
    """The full URLs of the crawl's WARCs that `files` selects, in the listing's order."""
    url = paths_url(crawl, base)
    lines = read_listing(url, http)
    chosen = select_files(lines, files)
    if not chosen:
        raise ValueError(f"--files {files} selects none of the {len(lines)} WARC files of {crawl} ({url})")
    return [fio.join(base, line.lstrip("/")) for line in chosen]
