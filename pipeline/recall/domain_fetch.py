"""`webinstruct domains fetch`: the selected domains' pages from Common Crawl's columnar index.

A recall round reads a sample of WARC files, so a selected domain is seen through the few of its
pages that sample holds. Common Crawl's columnar index (Parquet, one row per captured URL: `url`,
`url_host_name`, `url_host_registered_domain`, `warc_filename`, `warc_record_offset`,
`warc_record_length`, `fetch_status`, `content_mime_type`, ...) says where every page of a domain
sits in the crawl, and since each record of a Common Crawl WARC is its own gzip member, the bytes
`offset .. offset+length-1` of its WARC file are a valid one-record `.warc.gz`. So:

1. rows: the index is scanned for the selected domains (only the needed columns; the domain test
   pushed down to the Parquet reader on `url_host_registered_domain`, else a regex over
   `url_host_name`), then checked with the domain table's own key (`domains.registered_domain`:
   `a.blogspot.com` stays itself) so the rows are exactly the selected domains' pages. Rows that
   are not an HTML 200 capture, that the previous round already recalled (by URL) or whose WARC
   the previous round read whole are skipped, each counted by reason.
2. fetch: each record by an HTTP range request (`core/http_range.py`: resumed after a dropped
   connection, retried with backoff), or a seek-and-read through core/io for s3:// and local
   bases, in parallel threads, in (warc_filename, offset) order. A record that cannot be had is
   counted by reason (`failed_http_404`, `failed_connection`, `failed_short_read`,
   `failed_not_gzip`, `failed_not_a_warc_record`) and the others go on.
3. write: RUN/domains/round-N/fetched/part-NNNNN.warc.gz (each written atomically, records
   concatenated as fetched) and fetched.json (the counts and settings), then the `_SUCCESS`
   marker listing them. `domains round` recalls these files with the previous round's inputs.
"""
from __future__ import annotations

import concurrent.futures
import logging
import re
import zlib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from webinstruct.core import io as fio
from webinstruct.core import publish, shards
from webinstruct.core.config import NonNegativeInt, PositiveInt, option
from webinstruct.core.http_range import HTTPSettings, RemoteReadError, fetch, is_http
from webinstruct.pipeline.recall import domains as dom
from webinstruct.pipeline.recall.config import CC_BASE

log = logging.getLogger(__name__)

STAGE = "fetch"
PART = "part-{:05d}.warc.gz"
PART_GLOB = "part-*.warc.gz"
REQUIRED = ("url", "warc_filename", "warc_record_offset", "warc_record_length")
DOMAIN_COLUMNS = ("url_host_registered_domain", "url_host_name")
HTML_TYPES = ("text/html", "application/xhtml+xml")
GZIP_MAGIC = b"\x1f\x8b\x08"


@dataclass
class FetchConfig(HTTPSettings):
    """Recipe section `fetch`: `webinstruct domains fetch`."""
    index: list[str] = option([], "Common Crawl columnar index: Parquet files, globs or URIs (s3://commoncrawl/cc-index/"
                                  "table/cc-main/warc/crawl=CC-MAIN-2024-10/subset=warc/*.parquet, or local copies)")
    cc_base: str = option(CC_BASE, "where the index's warc_filename paths are: https://data.commoncrawl.org/, "
                                   "s3://commoncrawl/ or a mirror")
    limit: NonNegativeInt = option(0, "fetch at most this many records, the first in (warc_filename, offset) order (0: all)")
    threads: PositiveInt = option(8, "records fetched at the same time")
    records_per_file: PositiveInt = option(2000, "records per fetched WARC file")


# ---- the index ------------------------------------------------------------------------------------

def _index_files(patterns: Iterable[str]) -> list[str]:
    files: set[str] = set()
    for pattern in patterns:
        found = fio.glob(pattern)
        files.update(found)
        if not found:
            raise FileNotFoundError(f"no index files match {pattern}")
    if not files:
        raise ValueError("no index given: --index PATH_OR_GLOB (Parquet files of Common Crawl's columnar index)")
    return sorted(files)


def _dataset(files: list[str]):
    import pyarrow.dataset as ds

    remote = {fio.is_remote(f) for f in files}
    if remote == {False}:
        return ds.dataset([fio.local_path(f) for f in files], format="parquet")
    if remote == {True}:
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        fs, paths = fio.fsspec_paths(files)
        return ds.dataset(paths, format="parquet", filesystem=PyFileSystem(FSSpecHandler(fs)))
    raise ValueError("--index: give local files or URIs, not both")


def _public_suffix_domain(domain: str) -> str:
    """`a.blogspot.com` -> `blogspot.com`: the registered domain by the ICANN suffixes only, which
    is what an index built without the private suffixes may hold in url_host_registered_domain."""
    import tldextract

    ext = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, include_psl_private_domains=False)(domain)
    return f"{ext.domain}.{ext.suffix}" if ext.domain and ext.suffix else domain


def index_rows(patterns: list[str], selected: Iterable[str], count) -> Iterator[dict[str, Any]]:
    """Rows of the selected domains (by `domains.registered_domain` of their URL), with the columns
    fetch needs; reads only those columns and filters the domain in Arrow first."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    chosen = set(selected)
    dataset = _dataset(_index_files(patterns))
    names = set(dataset.schema.names)
    missing = [c for c in REQUIRED if c not in names]
    domain_col = next((c for c in DOMAIN_COLUMNS if c in names), None)
    if missing or domain_col is None:
        need = [*missing] + ([] if domain_col else [" or ".join(DOMAIN_COLUMNS)])
        raise ValueError(f"the index lacks the columns {', '.join(need)} (has {', '.join(sorted(names))})")
    columns = [*REQUIRED, domain_col] + [c for c in ("fetch_status", "content_mime_type") if c in names]
    if domain_col == "url_host_registered_domain":
        keys = sorted(chosen | {_public_suffix_domain(d) for d in chosen})
        scanner = dataset.scanner(columns=columns, filter=ds.field(domain_col).isin(keys))
        regex = None
    else:  # url_host_name: the host is a selected domain or under one
        scanner = dataset.scanner(columns=columns)
        regex = r"(^|\.)(" + "|".join(re.escape(d) for d in sorted(chosen)) + r")$"
    for batch in scanner.to_batches():
        if regex is not None and batch.num_rows:
            batch = batch.filter(pc.match_substring_regex(pc.utf8_lower(batch.column(domain_col)), regex))
        for row in batch.to_pylist():
            count("index_rows_prefiltered", 1)
            if dom.registered_domain(row["url"]) in chosen:
                yield row


def select_rows(rows: Iterable[dict[str, Any]], recalled: set[str], read_files: set[str], cc_base: str,
                count) -> list[dict[str, Any]]:
    """The rows worth fetching, in (warc_filename, offset) order, one per record; skips counted."""
    keep: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:
        count("rows_matched", 1)
        status = row.get("fetch_status")
        mime = (row.get("content_mime_type") or "text/html").lower()
        if status is not None and int(status) != 200:
            count("skipped_status", 1)
        elif not mime.startswith(HTML_TYPES):
            count("skipped_not_html", 1)
        elif row["url"] in recalled:
            count("skipped_already_recalled", 1)
        elif fio.join(cc_base, row["warc_filename"]) in read_files:
            count("skipped_already_read", 1)
        else:
            key = (row["warc_filename"], int(row["warc_record_offset"]))
            if key in keep:
                count("skipped_duplicate_row", 1)
            keep[key] = {"url": row["url"], "warc_filename": key[0], "offset": key[1],
                         "length": int(row["warc_record_length"])}
    return [keep[k] for k in sorted(keep)]


# ---- fetching -------------------------------------------------------------------------------------

def fetch_record(row: dict[str, Any], cc_base: str, http: dict[str, Any]) -> tuple[bytes | None, str, int]:
    """(the record's gzip member, "" or the failure reason, range resumptions)."""
    url = fio.join(cc_base, row["warc_filename"])
    start, length = row["offset"], row["length"]
    resumes = 0
    try:
        if is_http(url):
            data, reader = fetch(url, start, start + length, **http)
            resumes = reader.resumes
        else:
            with fio.open(url, "rb", compression=None) as fh:
                fh.seek(start)
                data = fh.read(length)
    except RemoteReadError as err:
        log.warning("domains fetch: %s", err)
        return None, f"http_{err.status}" if err.status else "connection", resumes
    except FileNotFoundError:
        return None, "missing_file", resumes
    if len(data) != length:
        return None, "short_read", resumes
    if not data.startswith(GZIP_MAGIC):
        return None, "not_gzip", resumes
    try:
        head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, 16)
    except zlib.error:
        return None, "not_gzip", resumes
    if not head.startswith(b"WARC/"):
        return None, "not_a_warc_record", resumes
    return data, "", resumes


def fetch_rows(rows: list[dict[str, Any]], out_dir: str, cfg: FetchConfig, count) -> list[str]:
    """Fetch `rows` into out_dir/part-NNNNN.warc.gz; the names written."""
    written: list[str] = []
    http = cfg.http()
    with concurrent.futures.ThreadPoolExecutor(cfg.threads) as pool:
        for first in range(0, len(rows), cfg.records_per_file):
            chunk = rows[first:first + cfg.records_per_file]
            name = PART.format(len(written))
            n = 0
            with fio.atomic_writer(fio.join(out_dir, name), "wb") as fh:
                for row, (data, problem, resumes) in zip(chunk, pool.map(lambda r: fetch_record(r, cfg.cc_base, http),
                                                                         chunk)):
                    if resumes:
                        count("http_resumes", resumes)
                    if problem:
                        count(f"failed_{problem}", 1)
                        continue
                    fh.write(data)
                    n += 1
                    count("records_fetched", 1)
                    count("bytes_fetched", len(data))
            if n:
                written.append(name)
            else:
                fio.remove(fio.join(out_dir, name))
            log.info("domains fetch: %d/%d records fetched into %s", first + len(chunk), len(rows), name)
    return written


# ---- the step -------------------------------------------------------------------------------------

def fetched_dir(round_dir: str) -> str:
    return fio.join(round_dir, "fetched")


def fetched_warcs(round_dir: str) -> list[str]:
    """The WARC files `domains fetch` wrote for this round ([] when it was not run); an unfinished
    fetch is refused with the command that redoes it."""
    directory = fetched_dir(round_dir)
    if not fio.exists(directory):
        return []
    marker = publish.complete_marker(directory, "webinstruct domains fetch")  # its files as listed
    return [fio.join(directory, name) for name in sorted(marker["files"]) if name.endswith(".warc.gz")]


def run_fetch(cfg, fetch_cfg: FetchConfig, selected: list[str]) -> dict[str, Any]:
    """Rows of `selected` domains from the index -> RUN/domains/round-N/fetched/; returns fetched.json."""
    from webinstruct.pipeline.recall.rounds import previous_inputs, recalled_urls

    counts: dict[str, int] = {}

    def count(name: str, n: int = 1) -> None:
        counts[name] = counts.get(name, 0) + n

    previous = cfg.previous_dir()
    recalled = set(recalled_urls(previous))
    read_files = set(previous_inputs(previous))
    rows = select_rows(index_rows(fetch_cfg.index, selected, count), recalled, read_files, fetch_cfg.cc_base, count)
    if fetch_cfg.limit and len(rows) > fetch_cfg.limit:
        count("skipped_over_limit", len(rows) - fetch_cfg.limit)
        rows = rows[:fetch_cfg.limit]
    count("rows_to_fetch", len(rows))
    out = fetched_dir(cfg.round_dir())
    with publish.stage_output(out, STAGE) as output:
        log.info("domains fetch: %d records of %d selected domains -> %s", len(rows), len(selected), out)
        written = fetch_rows(rows, out, fetch_cfg, count)
        stale = [p for p in fio.glob(fio.join(out, PART_GLOB)) if fio.basename(p) not in written]
        fio.remove(stale)
        report = {"round": cfg.round, "index": fetch_cfg.index, "cc_base": fetch_cfg.cc_base,
                  "selected_domains": len(selected), "files": written,
                  "stats": {k: counts[k] for k in sorted(counts)}}
        shards.write_json(fio.join(out, "fetched.json"), report)
        output.publish([*written, "fetched.json"])
    return report
