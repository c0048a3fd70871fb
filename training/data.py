"""Training data: examples from shards and files, weighted mixes, packing and padding statistics.

An example is `{"question", "answer", "source"}`. Readers accept WebInstruct shards (the refine
stage's `part-*.jsonl.gz`, fields `question`/`answer`), MetaMathQA (`query`/`response`/`type`),
GSM8K (`question`/`answer`) and any JSON or JSON-lines file (optionally gzipped) with one of the
field pairs in `FIELD_PAIRS`. Malformed rows are skipped and counted by reason in a `Counter`.
"""
from __future__ import annotations

import bisect

import json
import os
import random
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

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
    with open_text(path) as fh:
        text = fh.read()
    stripped = text.lstrip()
    if stripped.startswith("["):  # one JSON document: a list of rows
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            counts["skipped_bad_json"] += 1
            return
        yield from doc
        return
    if stripped.startswith("{") and not path.endswith((".jsonl", ".jsonl.gz")):
        try:  # a JSON object holding the rows ({"data": [...]}) or a single row
            doc = json.loads(text)
            rows = next((v for v in doc.values() if isinstance(v, list)), None) if isinstance(doc, dict) else None
            yield from rows if rows is not None else [doc]
            return
        except json.JSONDecodeError:
            pass  # JSON lines after all
    for line in text.splitlines():
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


def mix(sources: Sequence[tuple[Sequence[dict[str, Any]], float]], seed: int = 0) -> list[dict[str, Any]]:
    """A weighted mix of example lists, shuffled deterministically.

    Weight w takes floor(w) full copies of a source plus a seeded sample of frac(w) of it: 0.5 is
    half the source, 2 is every example twice (upsampling)."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for examples, weight in sources:
        if weight < 0:
            raise ValueError(f"mix weights must be >= 0, got {weight}")
        whole, frac = int(weight), weight - int(weight)
        out.extend(ex for _ in range(whole) for ex in examples)
        out.extend(rng.sample(list(examples), round(frac * len(examples))))
    rng.shuffle(out)
    return out


def pack(encoded: Sequence[dict[str, Any]], max_len: int) -> list[dict[str, list[int]]]:
    """Pack encoded examples into rows of at most max_len tokens: best fit, longest first.

    Examples are taken longest first (ties in input order) and each goes to the open row with the
    least room that still fits it (a sorted list of rooms and bisect: n log n, for millions of
    examples). Longest-first best fit fills rows far better than first fit in input order
    (measured in bench/train.py). The row order is deterministic; training shuffles rows anyway.

    Each row holds concatenated input_ids and labels, `position_ids` restarting at 0 for each
    sequence (what keeps packed sequences apart in attention, with use_cache=False, see the stack
    notes) and `lengths`. The first token of each sequence keeps its own label: labels are shifted
    inside the model, so no target crosses a boundary as long as each label list starts at -100
    or the loss is computed per sequence."""
    rows: list[dict[str, list[int]]] = []
    rooms: list[tuple[int, int]] = []  # (room left, row index), sorted
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]["input_ids"]))
    for i in order:
        ex = encoded[i]
        n = len(ex["input_ids"])
        if n > max_len:
            raise ValueError(f"an encoded example of {n} tokens exceeds max_len {max_len}: encode with the same max_len")
        at = bisect.bisect_left(rooms, (n, -1))
        if at < len(rooms):
            room, slot = rooms.pop(at)
        else:
            rows.append({"input_ids": [], "labels": [], "position_ids": [], "lengths": []})
            room, slot = max_len, len(rows) - 1
        row = rows[slot]
        row["input_ids"] += ex["input_ids"]
        # The first label of a packed sequence would be predicted from the previous sequence's last token.
        row["labels"] += [IGNORE_INDEX] + list(ex["labels"][1:]) if row["lengths"] else list(ex["labels"])
        row["position_ids"] += list(range(n))
        row["lengths"].append(n)
        if room - n > 0:
            bisect.insort(rooms, (room - n, slot))
    return rows


def padding_share(lengths: Sequence[int], batch_size: int) -> float:
    """Share of pad tokens when consecutive batches are padded to their longest sequence."""
    real = padded = 0
    for i in range(0, len(lengths), batch_size):
        batch = lengths[i:i + batch_size]
        real += sum(batch)
        padded += max(batch) * len(batch)
    return (padded - real) / padded if padded else 0.0


def packing_stats(encoded: Sequence[dict[str, Any]], packed: Sequence[dict[str, Any]], batch_size: int) -> dict[str, Any]:
    """Pad-token share with and without packing, for micro batches of `batch_size` rows."""
    return {
        "sequences": len(encoded), "packed_rows": len(packed),
        "tokens": sum(len(e["input_ids"]) for e in encoded),
        "padding_share_unpacked": padding_share([len(e["input_ids"]) for e in encoded], batch_size),
        "padding_share_packed": padding_share([len(r["input_ids"]) for r in packed], batch_size),
    }

