"""Question dedup and row numbering as Beam steps: no key ever holds all the rows.

`Dedup` gives the result of `dedup.dedup` (the in-memory reference: the same kept rows, the same
drop reasons and kept ids) with every shuffle keyed by an integer that spreads the rows:

    rows -> (1) key by hash(normalised question) % P
         -> (2) exact dedup per normalised question (best score, then smallest id, is kept);
                MinHash signature and the BANDS bucket keys of each survivor (vectorised over the
                group); band entries (band, bucket key, id) batched by hash(band, key) % P;
                the survivor row, its numbers and shingles keyed by hash(id) % P
         -> (3) per band bucket: candidate pairs (all pairs; star + chain above MAX_BUCKET
                members, members in id order as in the reference), keyed by hash(first id) % P
         -> (4) first half of the join: a pair gets its first member's numbers and shingles,
                and moves to hash(second id) % P
         -> (5) verification (same numbers, Jaccard >= JACCARD) against the second member:
                the verified edges go to one key
         -> (6) clusters: union-find over the EDGES, the keeper of each cluster (best score,
                then smallest id); the dropped ids go back to hash(id) % P
         -> (7) rows whose id was dropped are removed.

Why a global step over edges rather than an iterative one (hash-min label propagation): verified
edges only exist between near copies, a few per duplicate and far fewer than rows (and each is
two ids and two ranks), so one union-find over all of them costs one shuffle and no iteration,
while hash-min needs O(diameter) rounds, each a shuffle of every row. If the edges ever outgrow
one worker, hash-min over the edge list is the drop-in replacement for step 6.

The groups of steps 2-7 are partitions (P = `partitions`) rather than single keys so that the
band fan-out (BANDS entries per question) travels as a few arrays per partition instead of
BANDS elements per row: a group holds about rows/P rows (and BANDS * rows/P band entries), so P
should grow with the input (the default suits up to a few million rows). Inside a group the exact
keys (normalised question, (band, bucket key), id) are compared, so a hash collision between
partitions costs nothing but balance. A hot question (thousands of exact copies) lands in one
group, bounded by its copies, and a huge band bucket is verified along star + chain only.

`Number` then numbers the kept rows 0..n-1 in id order (the `index` of the WebInstruct rows)
without gathering them: rows are keyed by the first bytes of their id (order-preserving, as
UTF-8 byte order is code point order), each range counts its rows, one key turns the counts into
offsets, and each range numbers its own rows. The row ids of the stage are sha1 hex digests,
so 3 bytes give 4096 even ranges.

Items follow the stage convention: (kind, payload) pairs in a single chain (the Dask runner drops
branches and side outputs; see recall/transforms.py). Items of other kinds ("stats",
"contaminated", ...) pass through under the key OTHER.
"""
from __future__ import annotations

import functools
import hashlib
from collections import defaultdict
from typing import Any, Callable, Iterable, Iterator

import apache_beam as beam
import numpy as np

from webinstruct.core.stats import StageCounter
from webinstruct.pipeline.refine import dedup as D

OTHER = -1
PARTITIONS = 256
# Beam distributions of the rows (and band entries) each group of Dedup holds: the scaling
# claim ("no key holds all rows") made measurable; bench/dedup_scale.py reports their maxima.
GROUP_ROWS = beam.metrics.Metrics.distribution("webinstruct", "refine.dedup_group_rows")
GROUP_BAND_ENTRIES = beam.metrics.Metrics.distribution("webinstruct", "refine.dedup_group_band_entries")
RANGE_BYTES = 3
_MIX1 = np.uint64(0x9E3779B97F4A7C15)
_MIX2 = np.uint64(0xBF58476D1CE4E5B9)


def h63(text: str) -> int:
    """A stable non-negative 63-bit hash of a string (the same in every process)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big") >> 1


def part_of(row_id: str, partitions: int) -> int:
    return h63(row_id) % partitions


def _band_parts(bands: np.ndarray, keys: np.ndarray, partitions: int) -> np.ndarray:
    """The partition of each (band, bucket key): a mix of both, mod P (equal pairs agree)."""
    x = keys ^ (bands.astype(np.uint64) * _MIX1)
    x ^= x >> np.uint64(31)
    x *= _MIX2
    x ^= x >> np.uint64(29)
    return (x % np.uint64(partitions)).astype(np.int64)


def range_key(row_id: str) -> int:
    """Order-preserving integer of an id's first RANGE_BYTES UTF-8 bytes."""
    return int.from_bytes(row_id.encode("utf-8", "surrogatepass")[:RANGE_BYTES].ljust(RANGE_BYTES, b"\0"), "big")


def _others_pass(keyed: bool):
    """A step over the row partitions: the OTHER group (stats, contaminated pages, exact drops,
    edges) passes through untouched, keyed OTHER again (`keyed`) or unkeyed (a last step)."""
    def wrap(step: Callable) -> Callable:
        @functools.wraps(step)
        def run(kv: tuple[int, Iterable[tuple[str, Any]]], *args: Any) -> Iterator:
            if kv[0] != OTHER:
                return step(kv, *args)
            return ((OTHER, item) for item in kv[1]) if keyed else iter(kv[1])
        return run
    return wrap


def _rank(score: float, row_id: str) -> tuple[float, str]:
    return (-float(score), row_id)


# --- step 1 -------------------------------------------------------------------------------------

def key_exact(item: tuple[str, Any], field: str, partitions: int) -> tuple[int, tuple[str, Any]]:
    kind, payload = item
    if kind != "record":
        return OTHER, item
    norm = D.normalize(payload.get(field) or "")
    return h63(norm) % partitions, ("dd_row", (payload, norm))


# --- step 2 -------------------------------------------------------------------------------------

@_others_pass(keyed=True)
def exact_and_bands(kv: tuple[int, Iterable[tuple[str, Any]]], partitions: int, params: D.NearDup,
                    score: Callable[[dict], float], stage: str, report: bool) -> Iterator[tuple[int, tuple[str, Any]]]:
    key, items = kv
    count = StageCounter(stage)
    groups: dict[str, list[tuple[tuple[float, str], dict]]] = defaultdict(list)
    for kind, payload in items:
        if kind != "dd_row":
            yield key, (kind, payload)
            continue
        row, norm = payload
        rid = str(row["id"])
        groups[norm].append((_rank(score(row), rid), row))
    GROUP_ROWS.update(sum(len(m) for m in groups.values()))
    survivors: list[tuple[tuple[float, str], dict, str]] = []
    for norm, members in groups.items():
        members.sort(key=lambda m: m[0])
        best_rank, best = members[0]
        survivors.append((best_rank, best, norm))
        for rank, _ in members[1:]:
            if rank[1] == best_rank[1]:
                raise ValueError(f"dedup: row id {rank[1]!r} is not unique")
            count("dropped_duplicate_exact", 1)
            if report:
                yield OTHER, ("dd_exact_drop", (rank[1], best_rank[1]))
    if not survivors:
        stats = count.drain()
        if stats:
            yield OTHER, ("stats", stats)
        return
    survivors.sort(key=lambda s: s[0][1])
    norms = [s[2] for s in survivors]
    token_lists = [n.split(" ") if n else [] for n in norms]
    h, offsets = D.shingle_hashes(token_lists, params.shingle)
    sig = D.signatures(h, offsets, params)
    numbers = [D.numbers_of(n) for n in norms]
    nkeys = D.number_keys(numbers)
    ids = [s[0][1] for s in survivors]
    for i, (rank, row, _) in enumerate(survivors):
        shingles = h[offsets[i]:offsets[i + 1]].tobytes()
        yield part_of(ids[i], partitions), ("dd_survivor", (row, rank, numbers[i], shingles))
    n = len(survivors)
    bands = np.repeat(np.arange(params.bands, dtype=np.uint8), n)
    keys = np.concatenate([D.band_key(sig, nkeys, b, params) for b in range(params.bands)])
    who = np.tile(np.arange(n, dtype=np.int64), params.bands)
    parts = _band_parts(bands, keys, partitions)
    order = np.argsort(parts, kind="stable")
    parts = parts[order]
    cut = np.flatnonzero(np.diff(parts)) + 1
    for s, e in zip(np.concatenate(([0], cut)).tolist(), np.concatenate((cut, [len(parts)])).tolist()):
        sel = order[s:e]
        yield int(parts[s]), ("dd_bands", (bands[sel].tobytes(), keys[sel].tobytes(), [ids[j] for j in who[sel].tolist()]))
    stats = count.drain()
    if stats:
        yield OTHER, ("stats", stats)


# --- step 3 -------------------------------------------------------------------------------------

@_others_pass(keyed=True)
def candidates(kv: tuple[int, Iterable[tuple[str, Any]]], partitions: int,
               params: D.NearDup) -> Iterator[tuple[int, tuple[str, Any]]]:
    key, items = kv
    band_parts, key_parts, id_parts = [], [], []
    for kind, payload in items:
        if kind == "dd_bands":
            b, k, ids = payload
            band_parts.append(np.frombuffer(b, np.uint8))
            key_parts.append(np.frombuffer(k, np.uint64))
            id_parts.extend(ids)
        else:
            yield key, (kind, payload)
    if not id_parts:
        return
    bands, keys = np.concatenate(band_parts), np.concatenate(key_parts)
    GROUP_BAND_ENTRIES.update(len(id_parts))
    order = np.lexsort((keys, bands))
    b_sorted, k_sorted = bands[order], keys[order]
    cut = np.flatnonzero((np.diff(b_sorted) != 0) | (np.diff(k_sorted) != 0)) + 1
    starts, ends = np.concatenate(([0], cut)), np.concatenate((cut, [len(order)]))
    shared = ends - starts > 1
    pairs: set[tuple[str, str]] = set()
    for s, e in zip(starts[shared].tolist(), ends[shared].tolist()):
        members = sorted(id_parts[j] for j in order[s:e].tolist())  # id order, as the reference
        if len(members) <= params.max_bucket:
            for x in range(len(members)):
                for y in range(x + 1, len(members)):
                    pairs.add((members[x], members[y]))
        else:
            for x in range(1, len(members)):
                pairs.add((members[0], members[x]))
                pairs.add((members[x - 1], members[x]))
    by_part: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for a, b in sorted(pairs):
        by_part[part_of(a, partitions)].append((a, b))
    for p, batch in by_part.items():
        yield p, ("dd_pairs", batch)


# --- step 4 -------------------------------------------------------------------------------------

@_others_pass(keyed=True)
def half_join(kv: tuple[int, Iterable[tuple[str, Any]]], partitions: int) -> Iterator[tuple[int, tuple[str, Any]]]:
    key, items = kv
    info: dict[str, tuple] = {}
    pairs: list[tuple[str, str]] = []
    for kind, payload in items:
        if kind == "dd_pairs":
            pairs.extend(payload)
            continue
        if kind == "dd_survivor":
            _, rank, numbers, shingles = payload
            info[rank[1]] = (rank, numbers, shingles)
        yield key, (kind, payload)
    by_part: dict[int, list[tuple]] = defaultdict(list)
    for a, b in pairs:
        rank, numbers, shingles = info[a]
        by_part[part_of(b, partitions)].append((b, rank, numbers, shingles))
    for p, batch in by_part.items():
        yield p, ("dd_halves", batch)


# --- step 5 -------------------------------------------------------------------------------------

@_others_pass(keyed=True)
def verify(kv: tuple[int, Iterable[tuple[str, Any]]], params: D.NearDup) -> Iterator[tuple[int, tuple[str, Any]]]:
    key, items = kv
    info: dict[str, tuple] = {}
    halves: list[tuple] = []
    for kind, payload in items:
        if kind == "dd_halves":
            halves.extend(payload)
        elif kind == "dd_survivor":
            row, rank, numbers, shingles = payload
            info[rank[1]] = (rank, numbers, shingles)
            yield key, ("dd_pending", row)  # the shingles are no longer needed
        else:
            yield key, (kind, payload)
    edges = []
    for b, rank_a, numbers_a, shingles_a in halves:
        rank_b, numbers_b, shingles_b = info[b]
        if numbers_a != numbers_b:
            continue
        x = set(np.frombuffer(shingles_a, np.uint64).tolist())
        y = set(np.frombuffer(shingles_b, np.uint64).tolist())
        inter = len(x & y)
        if inter >= params.jaccard * (len(x) + len(y) - inter):
            edges.append((rank_a, rank_b))
    if edges:
        yield OTHER, ("dd_edges", edges)


# --- step 6 -------------------------------------------------------------------------------------

def clusters(kv: tuple[int, Iterable[tuple[str, Any]]], partitions: int, stage: str,
             report: bool) -> Iterator[tuple[int, tuple[str, Any]]]:
    key, items = kv
    if key != OTHER:
        for item in items:
            yield key, item
        return
    count = StageCounter(stage)
    parent: dict[str, str] = {}
    ranks: dict[str, tuple[float, str]] = {}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    exact_drops = []
    for kind, payload in items:
        if kind == "dd_edges":
            for ra, rb in payload:
                for r in (ra, rb):
                    if r[1] not in parent:
                        parent[r[1]] = r[1]
                        ranks[r[1]] = r
                a, b = find(ra[1]), find(rb[1])
                if a != b:
                    parent[max(a, b)] = min(a, b)
        elif kind == "dd_exact_drop":
            exact_drops.append(payload)
        else:
            yield OTHER, (kind, payload)
    members: dict[str, list[str]] = defaultdict(list)
    for x in parent:
        members[find(x)].append(x)
    keeper_of: dict[str, str] = {}
    dropped: dict[int, list[str]] = defaultdict(list)
    for group in members.values():
        keeper = min(group, key=ranks.__getitem__)
        for x in group:
            keeper_of[x] = keeper
            if x != keeper:
                count("dropped_duplicate_near", 1)
                dropped[part_of(x, partitions)].append(x)
                if report:
                    yield OTHER, ("dropped", {"id": x, "reason": "duplicate_near", "kept_id": keeper})
    if report:
        for loser, winner in exact_drops:
            yield OTHER, ("dropped", {"id": loser, "reason": "duplicate_exact", "kept_id": keeper_of.get(winner, winner)})
    for p, ids in dropped.items():
        yield p, ("dd_near_drops", ids)
    stats = count.drain()
    if stats:
        yield OTHER, ("stats", stats)


# --- step 7 -------------------------------------------------------------------------------------

@_others_pass(keyed=False)
def apply_drops(kv: tuple[int, Iterable[tuple[str, Any]]]) -> Iterator[tuple[str, Any]]:
    key, items = kv
    drops: set[str] = set()
    rows = []
    for kind, payload in items:
        if kind == "dd_near_drops":
            drops.update(payload)
        elif kind == "dd_pending":
            rows.append(payload)
        else:
            yield kind, payload
    GROUP_ROWS.update(len(rows))
    for row in rows:
        if str(row["id"]) not in drops:
            yield "record", row


class Dedup(beam.PTransform):
    """(kind, payload) items -> the same items with the "record" rows deduplicated as
    `dedup.dedup(rows, score, field, params)` would; counters as ("stats", ...) items
    (dropped_duplicate_exact, dropped_duplicate_near). With `report`, also one ("dropped",
    {"id", "reason", "kept_id"}) item per dropped row."""

    def __init__(self, score: Callable[[dict], float], field: str = "question", params: D.NearDup = D.NearDup(),
                 partitions: int = PARTITIONS, stage: str = "refine", report: bool = False):
        super().__init__()
        if params.bands > 256:
            raise ValueError("Dedup: at most 256 bands (band indexes travel as uint8)")
        self.score, self.field, self.params = score, field, params
        self.partitions, self.stage, self.report = partitions, stage, report

    def expand(self, items):
        P = self.partitions
        return (
            items
            | "KeyExact" >> beam.Map(key_exact, self.field, P)
            | "GroupExact" >> beam.GroupByKey()
            | "ExactAndBands" >> beam.FlatMap(exact_and_bands, P, self.params, self.score, self.stage, self.report)
            | "GroupBands" >> beam.GroupByKey()
            | "Candidates" >> beam.FlatMap(candidates, P, self.params)
            | "GroupPairs" >> beam.GroupByKey()
            | "HalfJoin" >> beam.FlatMap(half_join, P)
            | "GroupHalves" >> beam.GroupByKey()
            | "Verify" >> beam.FlatMap(verify, self.params)
            | "GroupEdges" >> beam.GroupByKey()
            | "Clusters" >> beam.FlatMap(clusters, P, self.stage, self.report)
            | "GroupDrops" >> beam.GroupByKey()
            | "ApplyDrops" >> beam.FlatMap(apply_drops)
        )


# --- numbering -----------------------------------------------------------------------------------

def key_range(item: tuple[str, Any]) -> tuple[int, tuple[str, Any]]:
    kind, payload = item
    if kind == "record":
        return range_key(str(payload["id"])), item
    return OTHER, item


@_others_pass(keyed=True)
def count_ranges(kv: tuple[int, Iterable[tuple[str, Any]]]) -> Iterator[tuple[int, tuple[str, Any]]]:
    key, items = kv
    n = 0
    for item in items:
        n += item[0] == "record"
        yield key, item
    yield OTHER, ("nb_count", (key, n))


def offsets(kv: tuple[int, Iterable[tuple[str, Any]]],
            on_global: Callable[[list], Iterator] | None) -> Iterator[tuple[int, tuple[str, Any]]]:
    key, items = kv
    if key != OTHER:
        for item in items:
            yield key, item
        return
    counts, rest = [], []
    for kind, payload in items:
        if kind == "nb_count":
            counts.append(payload)
        else:
            rest.append((kind, payload))
    total = 0
    for r, n in sorted(counts):
        yield r, ("nb_offset", total)
        total += n
    if on_global is not None:
        rest = list(on_global(rest))
    for item in rest:
        yield OTHER, item


@_others_pass(keyed=False)
def number(kv: tuple[int, Iterable[tuple[str, Any]]], stage: str) -> Iterator[tuple[str, Any]]:
    key, items = kv
    first, rows = 0, []
    for kind, payload in items:
        if kind == "nb_offset":
            first = payload
        elif kind == "record":
            rows.append(payload)
        else:
            yield kind, payload
    count = StageCounter(stage)
    for i, row in enumerate(sorted(rows, key=lambda r: str(r["id"]))):
        row["index"] = first + i
        yield "record", row
    count("rows_out", len(rows))
    yield "stats", count.drain()


class Number(beam.PTransform):
    """Number the "record" rows 0..n-1 in id order (field `index`) and count rows_out.

    `on_global(items)`, when given, runs once on the other items in the one global group (the
    stage writes its contaminated-pages file there) and returns the items to pass on."""

    def __init__(self, stage: str = "refine", on_global: Callable[[list], Iterator] | None = None):
        super().__init__()
        self.stage, self.on_global = stage, on_global

    def expand(self, items):
        return (
            items
            | "KeyRange" >> beam.Map(key_range)
            | "GroupRange" >> beam.GroupByKey()
            | "CountRanges" >> beam.FlatMap(count_ranges)
            | "GroupCounts" >> beam.GroupByKey()
            | "Offsets" >> beam.FlatMap(offsets, self.on_global)
            | "GroupOffsets" >> beam.GroupByKey()
            | "Number" >> beam.FlatMap(number, self.stage)
        )
