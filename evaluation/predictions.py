"""Prediction files: one JSON line per answered question, appended as answers come.

`RUN/eval/predictions/<benchmark>.jsonl` is the resume point of an evaluation: a rerun skips the
ids already there. Lines are appended and flushed batch by batch (fsync'd), so a killed run
loses at most the batch in flight; a torn last line is cut off before appending again (resume of
generation only) and skipped by readers. A garbled line elsewhere is never removed: readers skip and
count it, and rescoring (`scan` + `rewrite_lines`) keeps it verbatim. Rewrites are atomic. All file access goes through
`webinstruct.core.io` (on an object store an append rewrites the object in one put).
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterable

from webinstruct.core import io as fio
from webinstruct.evaluation.items import Item


def read_counted(path: str | os.PathLike) -> tuple[list[dict[str, Any]], int]:
    """The complete records of a prediction file, and how many lines were skipped: a torn last
    line (a killed write), a garbled line, a line that is not a JSON object."""
    if not fio.isfile(path):
        return [], 0
    records, skipped = [], 0
    with fio.open(path, "r", compression=None, errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            if not line.endswith("\n"):
                skipped += 1  # torn by a kill: never complete
                break
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                skipped += 1
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                skipped += 1
    return records, skipped


def is_prediction(record: Any) -> bool:
    """A record rescoring can grade: a JSON object with the model's `output` text."""
    return isinstance(record, dict) and isinstance(record.get("output"), str)


def scan(path: str | os.PathLike) -> list[tuple[int, bytes, dict[str, Any] | None]]:
    """Every line of a prediction file as (line number, raw bytes, record or None), None for a line
    that is not a prediction (garbled, not a JSON object, no `output`, a torn last line). Blank
    lines are left out. For rewriting a file without losing what could not be read."""
    if not fio.isfile(path):
        return []
    out: list[tuple[int, bytes, dict[str, Any] | None]] = []
    with fio.open(path, "rb", compression=None) as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8")) if raw.endswith(b"\n") else None
            except (UnicodeDecodeError, json.JSONDecodeError):
                record = None
            out.append((lineno, raw, record if is_prediction(record) else None))
    return out


def rewrite_lines(path: str | os.PathLike, lines: Iterable[bytes | dict[str, Any]]) -> None:
    """Replace the file, atomically, with these lines: a dict is written as a JSON line, bytes
    verbatim (a line that could not be read, kept exactly as it was)."""
    with fio.atomic_writer(path, "wb") as f:
        for item in lines:
            f.write(item if isinstance(item, bytes) else (json.dumps(item, ensure_ascii=False) + "\n").encode("utf-8"))


def read(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The complete records of a prediction file (see `read_counted`)."""
    return read_counted(path)[0]


def repair(path: str | os.PathLike) -> int:
    """Cut a torn last line (no newline) off; returns the bytes removed."""
    return fio.trim_partial_line(path)


def append(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> None:
    """Append records as JSON lines, fsync'd before returning."""
    fio.append_lines(path, [json.dumps(r, ensure_ascii=False) + "\n" for r in records])


def rewrite(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> None:
    """Replace the file with these records, atomically."""
    with fio.atomic_writer(path, "w") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def item_of(record: dict[str, Any]) -> Item:
    """The question a prediction record answers (records carry the item's fields)."""
    return Item.from_dict(record)


def record(item: Item, prompt: str, output: str, finish: str, tokens: int, verdicts: dict) -> dict[str, Any]:
    return {**item.to_dict(), "prompt": prompt, "output": output, "finish": finish, "tokens": tokens,
            "verdicts": {k: v.to_dict() for k, v in verdicts.items()}}
