"""Domains: registered-domain keys, the per-domain tally of a recall run, and domain selection.

MAmmoTH2 grouped round-1 documents by root domain, kept domains with many recalled documents and
had an LLM label them educational; DeepSeekMath called a domain math when over 10% of its pages
were recalled. `select_domains` applies both rules (thresholds are settings) and can hand the
candidates to a labelling hook (an LLM in the extract issue's client) for the final word.
"""
from __future__ import annotations

import collections
import functools
import importlib
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

from webinstruct.core.schema import DomainRow

TOP_PATHS = 5


@functools.lru_cache(maxsize=1)
def _extractor():
    import tldextract

    # suffix_list_urls=() uses the public-suffix snapshot bundled with tldextract: no network.
    # Private suffixes count (blogspot.com, github.io): each blog is its own site,
    # which is the grain at which a domain round should judge it.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True)


@functools.lru_cache(maxsize=65536)
def registered_domain(url: str) -> str:
    """eTLD+1 of a URL (`math.stackexchange.com` -> `stackexchange.com`,
    `a.blogspot.com` stays itself); the host when unknown."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    if not host:
        return ""
    ext = _extractor()(host)
    if ext.domain and ext.suffix:
        return f"{ext.domain}.{ext.suffix}"
    return host


def path_prefix(url: str) -> str:
    """First path segment of a URL (`/questions`), the grain at which people mark math paths."""
    try:
        path = urlsplit(url).path or "/"
    except ValueError:
        return "/"
    seg = path.strip("/").split("/", 1)[0]
    return "/" + seg if seg else "/"


def new_tally() -> dict[str, Any]:
    return {"seen": 0, "recalled": 0, "score_sum": 0.0, "paths": collections.Counter()}


def add_page(tally: dict[str, Any], url: str, score: float, recalled: bool) -> None:
    tally["seen"] += 1
    tally["score_sum"] += score
    if recalled:
        tally["recalled"] += 1
        tally["paths"][path_prefix(url)] += 1


def merge_tallies(parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    total = new_tally()
    for p in parts:
        total["seen"] += p["seen"]
        total["recalled"] += p["recalled"]
        total["score_sum"] += p["score_sum"]
        total["paths"].update(p["paths"])
    return total


def tally_to_row(domain: str, tally: dict[str, Any]) -> dict[str, Any]:
    seen = tally["seen"]
    top = sorted(tally["paths"].items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_PATHS]
    return {
        "domain": domain,
        "pages_seen": seen,
        "pages_recalled": tally["recalled"],
        "recalled_share": round(tally["recalled"] / seen, 4) if seen else 0.0,
        "mean_score": round(tally["score_sum"] / seen, 4) if seen else 0.0,
        "top_paths": [[p, n] for p, n in top],
    }


def sort_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (-r["pages_recalled"], -r["recalled_share"], r["domain"]))


Labeler = Callable[[dict[str, Any]], bool]


def load_labeler(spec: str | None) -> Labeler | None:
    """`module:function` taking a domain row and returning True for an educational domain."""
    if not spec:
        return None
    module, _, name = spec.partition(":")
    if not name:
        raise ValueError(f"labeler {spec!r}: expected module:function")
    return getattr(importlib.import_module(module), name)


def select_domains(
    rows: Iterable[dict[str, Any]],
    min_recalled: int,
    min_share: float,
    labeler: Labeler | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Domains passing both rules (and the labeler when given); with the verdict for every domain."""
    selected: list[str] = []
    verdicts: dict[str, str] = {}
    for row in sort_rows(rows):
        DomainRow(**row)  # schema check
        if row["pages_recalled"] < min_recalled:
            verdicts[row["domain"]] = "too_few_recalled"
        elif row["recalled_share"] < min_share:
            verdicts[row["domain"]] = "low_share"
        elif labeler is not None and not labeler(row):
            verdicts[row["domain"]] = "labeler_rejected"
        else:
            verdicts[row["domain"]] = "selected"
            selected.append(row["domain"])
    return selected, verdicts


def overlap(previous: Iterable[str], current: Iterable[str]) -> dict[str, Any]:
    """How much of a round's recall the previous round had already found (DeepSeekMath stops at ~98%)."""
    prev, cur = set(previous), set(current)
    both = prev & cur
    return {
        "previous": len(prev),
        "current": len(cur),
        "both": len(both),
        "only_previous": len(prev - cur),
        "only_current": len(cur - prev),
        "share_of_current_already_found": round(len(both) / len(cur), 4) if cur else 0.0,
        "jaccard": round(len(both) / len(prev | cur), 4) if prev | cur else 0.0,
    }
