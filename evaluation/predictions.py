"""Prediction files: one JSON line per answered question, appended as answers come.

`RUN/eval/predictions/<benchmark>.jsonl` is the resume point of an evaluation: a rerun skips the
ids already there. Lines are appended and flushed batch by batch (fsync'd), so a killed run
loses at most the batch in flight; a torn last line is cut off before appending again and
skipped by readers. Rewrites (rescoring) go through a temporary file and `os.replace`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from webinstruct.evaluation.items import Item


def read_counted(path: Path | str) -> tuple[list[dict[str, Any]], int]:
    """The complete records of a prediction file, and how many lines were skipped: a torn last
    line (a killed write), a garbled line, a line that is not a JSON object."""
    path = Path(path)
    if not path.is_file():
        return [], 0
    records, skipped = [], 0
    with open(path, encoding="utf-8", errors="replace") as f:
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


def read(path: Path | str) -> list[dict[str, Any]]:
    """The complete records of a prediction file (see `read_counted`)."""
    return read_counted(path)[0]


def repair(path: Path | str) -> int:
    """Cut a torn last line (no newline) off; returns the bytes removed."""
    path = Path(path)
    if not path.is_file():
        return 0
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep < len(data):
        with open(path, "r+b") as f:
            f.truncate(keep)
    return len(data) - keep


def append(path: Path | str, records: Iterable[dict[str, Any]]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def rewrite(path: Path | str, records: Iterable[dict[str, Any]]) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def item_of(record: dict[str, Any]) -> Item:
    """The question a prediction record answers (records carry the item's fields)."""
    return Item.from_dict(record)


def record(item: Item, prompt: str, output: str, finish: str, tokens: int, verdicts: dict) -> dict[str, Any]:
    return {**item.to_dict(), "prompt": prompt, "output": output, "finish": finish, "tokens": tokens,
            "verdicts": {k: v.to_dict() for k, v in verdicts.items()}}
