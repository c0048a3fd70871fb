"""Scoring any text with a trained recall classifier, the way a recall run scores pages.

`webinstruct classifier score` is built on these functions. Every score goes through
`Classifier.load(...).score_many`, the code path of the recall stage, so text is normalised by
`normalize_for_classifier` (with the model's `max_chars`) before fastText sees it. The model was
trained on normalised text: fed raw text (as a generic fastText filter would), it scores
something it never saw. `normalized_lines` gives the exact fastText input instead, for another
tool to score.
"""
from __future__ import annotations

import io
import json
import sys
from typing import IO, Any, Iterable, Iterator

from webinstruct.core import io as fio
from webinstruct.core.shards import open_text
from webinstruct.pipeline.recall.classifier import Classifier
from webinstruct.pipeline.text.normalize import normalize_for_classifier

STDIN = "-"
# Fields of a JSON-lines input copied to its output line, so scores can be joined back.
PASSTHROUGH = ("id", "url")
BATCH = 1024

Document = tuple[str, dict[str, Any]]  # (text, fields copied to the output)


def score_texts(model_path: str, texts: Iterable[str]) -> list[float]:
    """P(educational) of each text under the model at `model_path` (a file, or a folder holding
    classifier.bin), scored exactly as the recall stage scores extracted page text."""
    return Classifier.load(model_path).score_many(list(texts))


def check_inputs(sources: list[str]) -> None:
    """Fail before any work when an input file is missing."""
    for src in sources:
        if src != STDIN and not fio.exists(src):
            raise FileNotFoundError(f"input {src} does not exist")


def _stdin_text(stdin: IO | None) -> tuple[IO, bool]:
    """The standard input as UTF-8 text whatever the locale: (stream, whether it wraps stdin)."""
    stdin = sys.stdin if stdin is None else stdin
    raw = getattr(stdin, "buffer", None)
    if raw is None:  # already a text stream (a test's StringIO)
        return stdin, False
    return io.TextIOWrapper(raw, encoding="utf-8"), True


def _opened(src: str, stdin: IO | None) -> tuple[str, IO, bool]:
    if src == STDIN:
        stream, wrapped = _stdin_text(stdin)
        return "<stdin>", stream, wrapped
    return src, open_text(src), False


def _close(stream: IO, wrapped: bool) -> None:
    if wrapped:
        stream.detach()  # leave sys.stdin's own buffer open
    elif stream is not sys.stdin:
        stream.close()


def read_documents(sources: list[str], plain: bool = False, stdin: IO | None = None) -> Iterator[Document]:
    """The documents of `sources` (paths, `-` for standard input), in order.

    JSON lines (default): one document per non-blank line, an object with a string field `text`;
    its `id` and `url` are kept. A line that is not such an object stops the reading with its file
    and line number (scores are matched to inputs by order, so nothing is skipped silently).
    Plain (`plain=True`): each file, or standard input, is one document; its name is kept as
    `file`. Paths may be local, remote (s3://, https://) or compressed (.gz, .xz).
    """
    for src in sources:
        name, stream, wrapped = _opened(src, stdin)
        try:
            if plain:
                yield stream.read(), {"file": src}
                continue
            for number, line in enumerate(stream, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    row = None
                if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                    raise ValueError(f"{name}, line {number}: expected a JSON object with a string field "
                                     f"`text` (for plain text files give --plain)")
                yield row["text"], {k: row[k] for k in PASSTHROUGH if k in row}
        finally:
            _close(stream, wrapped)


def _batches(docs: Iterable[Document], size: int) -> Iterator[list[Document]]:
    batch: list[Document] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def score_records(clf: Classifier, docs: Iterable[Document], threshold: float | None = None,
                  batch_size: int = BATCH) -> Iterator[dict[str, Any]]:
    """One record per document, in order: {"score", "keep", then the document's kept fields}.

    `keep` is score >= `threshold` (default: the classifier's saved threshold), the recall rule."""
    t = clf.threshold if threshold is None else threshold
    for batch in _batches(docs, batch_size):
        scores = clf.score_many([text for text, _ in batch], batch_size)
        for (_, fields), score in zip(batch, scores):
            yield {"score": score, "keep": score >= t, **fields}


def normalized_lines(clf: Classifier, docs: Iterable[Document]) -> Iterator[str]:
    """The fastText input line of each document: the text `score_records` hands to fastText."""
    for text, _ in docs:
        yield normalize_for_classifier(text or "", clf.max_chars)


def write_lines(lines: Iterable[str], out: IO | None = None) -> int:
    """Each line plus a newline, UTF-8 whatever the locale; returns the count."""
    out = sys.stdout if out is None else out
    raw = getattr(out, "buffer", None)
    n = 0
    if raw is not None:
        out.flush()
        for line in lines:
            raw.write(line.encode("utf-8") + b"\n")
            n += 1
        raw.flush()
        return n
    for line in lines:
        out.write(line + "\n")
        n += 1
    out.flush()
    return n


def json_lines(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    for record in records:
        yield json.dumps(record)
