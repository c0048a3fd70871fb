"""Training data: examples from shards and files, weighted mixes, packing and padding statistics.

An example is `{"question", "answer", "source"}`. Readers accept WebInstruct shards (the refine
stage's `part-*.jsonl.gz`, fields `question`/`answer`), MetaMathQA (`query`/`response`/`type`),
GSM8K (`question`/`answer`) and any JSON or JSON-lines file (optionally gzipped) with one of the
field pairs in `FIELD_PAIRS`. Malformed rows are skipped and counted by reason in a `Counter`.
"""
from __future__ import annotations

import bisect
import heapq
import itertools
import json
import os
import random
from array import array
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from webinstruct.core.publish import was_started
from webinstruct.core.shards import SHARD_GLOB, list_shards, open_text, read_shards
from webinstruct.core.formatting import IGNORE_INDEX

# (question field, answer field), tried in order.
FIELD_PAIRS = (("question", "answer"), ("query", "response"), ("instruction", "output"), ("problem", "solution"))


def to_example(row: Any, source: str, counts: Counter) -> dict[str, str] | None:
    """One row as an example, or None (counted under `skipped_<reason>`)."""
    if not isinstance(row, dict):
        counts["skipped_not_object"] += 1
        return None
    pair = next(((q, a) for q, a in FIELD_PAIRS if q in row and a in row), None)
    if pair is None:
        counts["skipped_missing_field"] += 1
        return None
    question, answer = row[pair[0]], row[pair[1]]
    if not isinstance(question, str) or not isinstance(answer, str):
        counts["skipped_not_string"] += 1
        return None
    if not question.strip() or not answer.strip():
        counts["skipped_empty_field"] += 1
        return None
    # MetaMathQA's `type` (GSM_Rephrased, MATH_FOBAR, ...) says which augmentation made the row.
    kind = row.get("type") if pair == ("query", "response") else None
    counts["read"] += 1
    return {"question": question, "answer": answer, "source": f"{source}/{kind}" if isinstance(kind, str) else source}



def _rows_of_file(path: str, counts: Counter) -> Iterator[Any]:
    """The rows of one file: a JSON document (a list of rows, an object holding one, or a single
    row), else JSON lines, read line by line so a file of millions of rows is never held whole."""
    with open_text(path) as fh:
        head: list[str] = []  # the lines up to the first one that is not blank
        for line in fh:
            head.append(line)
            if line.strip():
                break
        stripped = "".join(head).lstrip()
        if stripped.startswith("[") or (stripped.startswith("{") and not path.endswith((".jsonl", ".jsonl.gz"))):
            text = "".join(head) + fh.read()
            if stripped.startswith("["):  # one JSON document: a list of rows
                try:
                    doc = json.loads(text)
                except json.JSONDecodeError:
                    counts["skipped_bad_json"] += 1
                    return
                yield from doc
                return
            try:  # a JSON object holding the rows ({"data": [...]}) or a single row
                doc = json.loads(text)
                rows = next((v for v in doc.values() if isinstance(v, list)), None) if isinstance(doc, dict) else None
                yield from rows if rows is not None else [doc]
                return
            except json.JSONDecodeError:
                lines: Iterable[str] = text.splitlines()  # JSON lines after all
        else:
            lines = itertools.chain(head, fh)
        for line in lines:
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                counts["skipped_bad_json"] += 1


def read_examples(path: str, source: str = "", counts: Counter | None = None) -> Iterator[dict[str, str]]:
    """Examples of a shard directory (WebInstruct), a directory of JSON/JSON-lines files, or one file."""
    counts = counts if counts is not None else Counter()
    source = source or Path(path.rstrip("/")).name.split(".")[0]
    if os.path.isdir(path):
        if list_shards(path) or was_started(path):  # a stage folder (RUN/refine): refused unless complete
            rows: Iterable[Any] = read_shards(path)
        else:
            files = sorted(str(p) for p in Path(path).iterdir()
                           if p.name.endswith((".json", ".jsonl", ".json.gz", ".jsonl.gz")))
            if not files:
                raise FileNotFoundError(f"no shards ({SHARD_GLOB}) and no JSON/JSON-lines files in {path}")
            rows = (row for f in files for row in _rows_of_file(f, counts))
    elif os.path.isfile(path):
        rows = _rows_of_file(path, counts)
    else:
        raise FileNotFoundError(f"training data {path} does not exist")
    for row in rows:
        ex = to_example(row, source, counts)
        if ex is not None:
            yield ex


def mix_samples(sizes: Sequence[int], weights: Sequence[float], rng: random.Random) -> list[list[int]]:
    """The seeded part of a mix: for each source, which of its examples the fractional part of its
    weight takes (indices into the source, in draw order). Draws only for sources with a
    fractional weight, in source order, so the examples themselves are never needed."""
    samples = []
    for size, weight in zip(sizes, weights):
        if weight < 0:
            raise ValueError(f"mix weights must be >= 0, got {weight}")
        frac = weight - int(weight)
        samples.append(rng.sample(range(size), round(frac * size)))
    return samples


def mix_order(sizes: Sequence[int], weights: Sequence[float], samples: Sequence[Sequence[int]],
              rng: random.Random) -> array:
    """The mix as positions in the sources laid end to end (source s starts at sum(sizes[:s])):
    floor(w) copies of each source, then its sample, all shuffled with `rng` (after `mix_samples`
    drew from it). A compact int64 array: 8 bytes per mixed example, for tens of millions."""
    order = array("q")
    start = 0
    for size, weight, sample in zip(sizes, weights, samples):
        for _ in range(int(weight)):
            order.extend(range(start, start + size))
        order.extend(start + i for i in sample)
        start += size
    rng.shuffle(order)  # the same swaps as on a list of examples of that length
    return order


def mix(sources: Sequence[tuple[Sequence[dict[str, Any]], float]], seed: int = 0) -> list[dict[str, Any]]:
    """A weighted mix of example lists, shuffled deterministically.

    Weight w takes floor(w) full copies of a source plus a seeded sample of frac(w) of it: 0.5 is
    half the source, 2 is every example twice (upsampling). Computed on indices (`mix_samples`,
    `mix_order`), which is what lets training/prepared.py mix sources it does not hold in memory."""
    rng = random.Random(seed)
    sizes, weights = [len(examples) for examples, _ in sources], [weight for _, weight in sources]
    order = mix_order(sizes, weights, mix_samples(sizes, weights, rng), rng)
    flat = [ex for examples, _ in sources for ex in examples]
    return [flat[i] for i in order]


def best_fit(lengths: Sequence[int], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Where packing puts each sequence: best fit, longest first.

    Sequences are taken longest first (ties in input order) and each goes to the open row with the
    least room that still fits it (ties: the row opened first), or opens a new row. Returns
    (order, row): the sequence indices in the order they are placed and the row each one goes to
    (rows numbered as they are opened); a row holds its sequences in placement order.

    Rooms are integers up to max_len, so the open rows are kept in buckets by room left (a heap of
    row numbers each) with a sorted list of the rooms that have a bucket: a few microseconds per
    sequence however many rows are open, and two int64 arrays of output, for millions of sequences."""
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if len(lengths) and int(lengths.max()) > max_len:
        raise ValueError(f"an encoded example of {int(lengths.max())} tokens exceeds max_len {max_len}: "
                         "encode with the same max_len")
    order = np.argsort(-lengths, kind="stable")
    row_of = np.empty(len(order), dtype=np.int64)
    buckets: dict[int, list[int]] = {}  # room left -> heap of the rows with that room
    rooms: list[int] = []  # sorted rooms that have a bucket
    opened = 0
    step = 1 << 16
    for begin in range(0, len(order), step):
        chunk = order[begin:begin + step]
        for k, n in enumerate(lengths[chunk].tolist(), begin):
            at = bisect.bisect_left(rooms, n)
            if at < len(rooms):
                room = rooms[at]
                bucket = buckets[room]
                slot = heapq.heappop(bucket)
                if not bucket:
                    del buckets[room]
                    rooms.pop(at)
            else:
                room, slot = max_len, opened
                opened += 1
            row_of[k] = slot
            left = room - n
            if left > 0:
                if left in buckets:
                    heapq.heappush(buckets[left], slot)
                else:
                    buckets[left] = [slot]
                    bisect.insort(rooms, left)
    return order, row_of


def pack(encoded: Sequence[dict[str, Any]], max_len: int) -> list[dict[str, list[int]]]:
    """Pack encoded examples into rows of at most max_len tokens: best fit, longest first (`best_fit`).

    Longest-first best fit fills rows far better than first fit in input order (measured in
    bench/train.py). The row order is deterministic; training shuffles rows anyway.

    Each row holds concatenated input_ids and labels, `position_ids` restarting at 0 for each
    sequence (what keeps packed sequences apart in attention, with use_cache=False, see the stack
    notes) and `lengths`. The first token of each sequence keeps its own label: labels are shifted
    inside the model, so no target crosses a boundary as long as each label list starts at -100
    or the loss is computed per sequence."""
    order, row_of = best_fit([len(ex["input_ids"]) for ex in encoded], max_len)
    rows: list[dict[str, list[int]]] = [{"input_ids": [], "labels": [], "position_ids": [], "lengths": []}
                                        for _ in range(int(row_of.max()) + 1 if len(row_of) else 0)]
    for i, slot in zip(order.tolist(), row_of.tolist()):
        ex, row = encoded[i], rows[slot]
        n = len(ex["input_ids"])
        row["input_ids"] += ex["input_ids"]
        # The first label of a packed sequence would be predicted from the previous sequence's last token.
        row["labels"] += [IGNORE_INDEX] + list(ex["labels"][1:]) if row["lengths"] else list(ex["labels"])
        row["position_ids"] += list(range(n))
        row["lengths"].append(n)
    return rows


def padding_share(lengths: Sequence[int], batch_size: int) -> float:
    """Share of pad tokens when consecutive batches are padded to their longest sequence."""
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if not len(lengths):
        return 0.0
    starts = np.arange(0, len(lengths), batch_size)
    widths = np.maximum.reduceat(lengths, starts)
    sizes = np.diff(np.append(starts, len(lengths)))
    real, padded = int(lengths.sum()), int((widths * sizes).sum())
    return (padded - real) / padded if padded else 0.0


def packing_stats(encoded: Sequence[dict[str, Any]], packed: Sequence[dict[str, Any]], batch_size: int) -> dict[str, Any]:
    """Pad-token share with and without packing, for micro batches of `batch_size` rows."""
    return {
        "sequences": len(encoded), "packed_rows": len(packed),
        "tokens": sum(len(e["input_ids"]) for e in encoded),
        "padding_share_unpacked": padding_share([len(e["input_ids"]) for e in encoded], batch_size),
        "padding_share_packed": padding_share([len(r["input_ids"]) for r in packed], batch_size),
    }

