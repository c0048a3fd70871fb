"""Training rows prepared once: the recipe's mix tokenised into memory-mapped arrays.

    webinstruct train --prepare [--recipe R] [--model M] [--run RUN]
    python -m webinstruct.training.trainer --config R --prepare

Without `--prepare`, training does the same on rank 0 when the folder is missing, while the
other ranks wait for it; every rank then maps the same files (`np.load(mmap_mode="r")`), so a
rank holds only the pages of the rows it reads, and a restart (or another run with the same
data, tokenizer and settings) reuses the folder without tokenising again.

Folder: RUN/train/<model>/data/<key>/

    tokens.npy        int32, the input ids of every row, concatenated
    labels.npy        int32, the labels, aligned with tokens (-100 where no loss is taken)
    row_offsets.npy   int64, n_rows + 1: row i is tokens[row_offsets[i]:row_offsets[i + 1]]
    seq_lengths.npy   (packed) int32, the length of each sequence inside the rows, row by row
    seq_offsets.npy   (packed) int64, n_rows + 1: row i holds seq_lengths[seq_offsets[i]:seq_offsets[i + 1]];
                      position ids restart at 0 at each sequence
    mix_lengths.npy   (packed) int32, the sequences' lengths in mix order, for the unpacked padding share
    meta.json         the key's inputs, the counts (what `load_rows` returned before: read, skipped_*,
                      examples, kept, truncated, dropped_prompt_too_long, tokens, label_tokens), the
                      number of rows, sequences and tokens, the time taken
    COMPLETE          written last: the key and the size of every file above

The folder is written as `.tmp-<key>-<host>-<pid>/` beside it and renamed when complete, so a kill
leaves a temporary folder (removed by the next preparer on that host once its process is gone),
never a half-written `<key>/`; a `<key>/` without a valid marker (files missing or of another size)
is deleted and prepared again. Padding shares depend on the micro batch, which does not change the
rows: they are computed from the lengths when the folder is opened.

The key (16 hex digits of a sha256) covers:
  - the tokenizer: its class, vocabulary size (with added tokens), the sha256 of its serialized
    tokenizer.json (fast tokenizers; the padding and truncation settings, which transformers sets
    per call, left out) or of its vocabulary (slow ones), of its chat template, its BOS/EOS ids;
  - the settings that change rows: format, max_len, packing, seed;
  - the data sources in order: absolute path, weight (not the name: it changes no token) and the
    path, size and modification time (ns) of every file under it (hidden files, such as a stage
    folder's lock, left out). Contents are not read: a file rewritten with the same size and
    modification time is not noticed;
  - the layout version (`LAYOUT`), raised when the layout or the row order changes.

Memory stays bounded by the number of examples, not their tokens: examples stream through
`encode` (in worker processes past the first `INLINE_EXAMPLES`) into a scratch store on disk,
keeping per example only its length, truncation flag and label count. The mix is computed on
indices (`data.mix_samples`, `data.mix_order`: the same draws as `data.mix`); a source with a
fractional weight is read once to count it, and only its sampled examples are encoded. Packing
needs only the lengths (`data.best_fit`, what `data.pack` uses); a second pass gathers each row's
tokens from the scratch store and appends them to the output files in chunks. The rows are those
of `read_examples` -> `mix` -> `encode_all` -> `pack` (tests/test_train_prepared.py).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import operator
import os
import pickle
import random
import shutil
import socket
import sys
import time
from array import array
from collections import Counter, deque
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from webinstruct.core import io as fio
from webinstruct.core.procs import pid_alive
from webinstruct.core.formatting import IGNORE_INDEX, encode
from webinstruct.training.config import TrainConfig
from webinstruct.training.data import best_fit, mix_order, mix_samples, padding_share, read_examples

LAYOUT = 1
MARKER = "COMPLETE"
META = "meta.json"
CHUNK_EXAMPLES = 512  # examples per encoding task
INLINE_EXAMPLES = 20_000  # encoded in this process before worker processes are started (their start costs seconds)
GATHER_TOKENS = 1 << 20  # tokens per chunk appended to the output files (~40 bytes of working arrays each)
POLL_SECONDS = 1.0


# ---- the key -------------------------------------------------------------------------------------

def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tokenizer_fingerprint(tokenizer) -> dict[str, Any]:
    """What of a tokenizer decides the token ids of a formatted example (see the module docstring)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # A copy without the padding and truncation that transformers sets on the tokenizer per call.
        plain = type(backend).from_str(backend.to_str())
        plain.no_truncation()
        plain.no_padding()
        body = plain.to_str()
    else:
        body = json.dumps(sorted(tokenizer.get_vocab().items()))
    out = {"class": type(tokenizer).__name__, "vocab_size": len(tokenizer), "tokenizer_sha256": _sha256(body),
           "chat_template_sha256": _sha256(json.dumps(getattr(tokenizer, "chat_template", None), sort_keys=True)),
           "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    for flag in ("add_bos_token", "add_eos_token"):
        if isinstance(getattr(tokenizer, flag, None), bool):
            out[flag] = getattr(tokenizer, flag)
    return out


def data_fingerprint(path: str) -> dict[str, Any]:
    """Path, size and mtime of the files of one data source (a file, or a folder walked recursively)."""
    root = os.path.abspath(path)
    if os.path.isfile(root):
        files = [(os.path.basename(root), os.stat(root))]
    elif os.path.isdir(root):
        files = []
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(n for n in names if not n.startswith(".")):
                full = os.path.join(folder, name)
                files.append((os.path.relpath(full, root), os.stat(full)))
    else:
        raise FileNotFoundError(f"training data {path} does not exist")
    listing = "".join(f"{name}\t{st.st_size}\t{st.st_mtime_ns}\n" for name, st in files)
    return {"files": len(files), "bytes": sum(st.st_size for _, st in files), "sha256": _sha256(listing)}


def key_inputs(cfg: TrainConfig, tokenizer) -> dict[str, Any]:
    """Everything the prepared rows depend on (the key is a hash of it; meta.json keeps it)."""
    return {
        "layout": LAYOUT,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "settings": {"format": cfg.format, "max_len": cfg.max_len, "packing": bool(cfg.packing), "seed": cfg.seed},
        "sources": [{"path": os.path.abspath(src["path"]), "weight": float(src["weight"]),
                     "data": data_fingerprint(src["path"])} for src in cfg.data_sources()],
    }


def data_key(inputs: dict[str, Any]) -> str:
    return _sha256(json.dumps(inputs, sort_keys=True))[:16]


def data_root(cfg: TrainConfig) -> Path:
    return Path(cfg.out_dir()) / "data"


# ---- reading a prepared folder -------------------------------------------------------------------

def _map(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r")


def positions(lengths: np.ndarray) -> np.ndarray:
    """Position ids of sequences laid end to end, restarting at 0 at each (int64)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    return np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(starts, lengths)


class PreparedRows(Sequence):
    """The rows of a prepared folder, read from the memory-mapped arrays on access.

    `rows[i]` is a dict of numpy arrays: input_ids and labels (int32 views of the mapped files, no
    copy), and for packed rows position_ids (restarting at each sequence) and lengths: what
    `batches.collate` takes."""

    def __init__(self, folder: Path, packed: bool):
        self.packed = packed
        self.tokens, self.labels = _map(folder / "tokens.npy"), _map(folder / "labels.npy")
        self.row_offsets = _map(folder / "row_offsets.npy")
        if packed:
            self.seq_lengths, self.seq_offsets = _map(folder / "seq_lengths.npy"), _map(folder / "seq_offsets.npy")

    def __len__(self) -> int:
        return len(self.row_offsets) - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = operator.index(i)
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"row {i} of {n}")
        start, stop = int(self.row_offsets[i]), int(self.row_offsets[i + 1])
        row = {"input_ids": np.asarray(self.tokens[start:stop]), "labels": np.asarray(self.labels[start:stop])}
        if self.packed:
            lengths = np.asarray(self.seq_lengths[int(self.seq_offsets[i]):int(self.seq_offsets[i + 1])])
            row["position_ids"] = positions(lengths)
            row["lengths"] = lengths
        return row

    def row_lengths(self) -> np.ndarray:
        return np.diff(self.row_offsets)


class Prepared:
    """A complete prepared folder: `rows` (a PreparedRows), `meta` (meta.json) and `counts()`."""

    def __init__(self, folder: Path, meta: dict[str, Any]):
        self.folder, self.meta = folder, meta
        self.packed = bool(meta["packed"])
        self.rows = PreparedRows(folder, self.packed)

    def counts(self, micro_batch: int, padding_free: bool) -> Counter:
        """The counts `load_rows` reports: those of meta.json plus the padding shares for this micro batch."""
        counts = Counter(self.meta["counts"])
        rows = self.rows.row_lengths()
        unpacked = _map(self.folder / "mix_lengths.npy") if self.packed else rows
        counts["padding_share_unpacked"] = padding_share(unpacked, micro_batch)
        counts["padding_share_trained"] = 0.0 if padding_free else counts["padding_share_unpacked"]
        if self.packed:
            counts["packed_rows"] = len(self.rows)
            counts["padding_share_packed"] = padding_share(rows, micro_batch)
            counts["padding_share_trained"] = counts["padding_share_packed"]  # packed rows are padded, not flattened
        return counts

    def describe(self, micro_batch: int, padding_free: bool) -> str:
        m = self.meta
        counts = self.counts(micro_batch, padding_free)
        return (f"training data: {self.folder}\n"
                f"{m['rows']:,} rows ({'packed, ' + format(m['sequences'], ',') + ' sequences' if self.packed else 'one sequence each'}), "
                f"{m['tokens']:,} tokens; prepared in {m['seconds']:.1f} s ({m['examples_per_s']:,.0f} examples/s)\n"
                + "\n".join(f"  {k}: {round(v, 4) if isinstance(v, float) else v}" for k, v in counts.items()))


def open_prepared(folder: Path) -> Prepared | None:
    """The prepared folder if its marker is there and every file it lists has its recorded size; else None."""
    try:
        marker = json.loads((folder / MARKER).read_text())
        if marker["key"] != folder.name:
            return None
        for name, size in marker["files"].items():
            if (folder / name).stat().st_size != size:
                return None
        return Prepared(folder, json.loads((folder / META).read_text()))
    except (OSError, ValueError, KeyError):  # missing, cut or unreadable: not a prepared folder
        return None


# ---- encoding --------------------------------------------------------------------------------------

def _encode_chunk(examples: list[dict[str, Any] | None], tokenizer, fmt: str, max_len: int) -> tuple[np.ndarray, ...]:
    """(lengths, truncated flags, label counts, input ids, labels) of a chunk of examples; length -1:
    dropped (the prompt fills max_len), -2: None, an example the mix does not take (not encoded)."""
    lengths, truncated, label_counts, ids, labels = [], [], [], [], []
    for ex in examples:
        enc = None if ex is None else encode(ex, tokenizer, fmt, max_len)
        if enc is None:
            lengths.append(-1 if ex is not None else -2)
            truncated.append(0)
            label_counts.append(0)
            continue
        lengths.append(len(enc["input_ids"]))
        truncated.append(int(enc["truncated"]))
        label_counts.append(sum(1 for t in enc["labels"] if t != IGNORE_INDEX))
        ids += enc["input_ids"]
        labels += enc["labels"]
    return (np.array(lengths, np.int32), np.array(truncated, np.uint8), np.array(label_counts, np.int32),
            np.array(ids, np.int32), np.array(labels, np.int32))


_WORKER: tuple[Any, str, int] | None = None


def _worker_start(tokenizer_bytes: bytes, fmt: str, max_len: int) -> None:
    global _WORKER
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one process per core already
    _WORKER = (pickle.loads(tokenizer_bytes), fmt, max_len)


def _worker_encode(examples: list[dict[str, Any]]) -> tuple[np.ndarray, ...]:
    tokenizer, fmt, max_len = _WORKER
    return _encode_chunk(examples, tokenizer, fmt, max_len)


def default_workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(16, cores))


class _Encoder:
    """Encodes chunks of examples in order: in this process for the first INLINE_EXAMPLES, then in
    `workers` spawned processes (bounded: at most two chunks per worker in flight)."""

    def __init__(self, tokenizer, fmt: str, max_len: int, workers: int):
        self.tokenizer, self.fmt, self.max_len, self.workers = tokenizer, fmt, max_len, workers
        self.encoded = 0  # examples (not None) handed out so far
        self.pool = None
        self.pool_used = False

    def _start_pool(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_worker_start,
                                        initargs=(pickle.dumps(self.tokenizer), self.fmt, self.max_len))

    def run(self, chunks: Iterable[list[dict[str, Any]]]) -> Iterator[tuple[np.ndarray, ...]]:
        pending: deque = deque()
        for chunk in chunks:
            if self.pool is None and self.workers > 1 and self.encoded >= INLINE_EXAMPLES:
                self._start_pool()
                self.pool_used = True
            self.encoded += sum(ex is not None for ex in chunk)
            if self.pool is None:
                yield _encode_chunk(chunk, self.tokenizer, self.fmt, self.max_len)
                continue
            pending.append(self.pool.submit(_worker_encode, chunk))
            if len(pending) >= 2 * self.workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists holding `size` items that are not None (and the Nones between them)."""
    chunk: list[Any] = []
    real = 0
    for item in items:
        chunk.append(item)
        real += item is not None
        if real == size:
            yield chunk
            chunk, real = [], 0
    if chunk:
        yield chunk


class _Scratch:
    """Encoded examples on disk, one slot per example of the sources laid end to end (the positions
    `mix_order` returns); slots of examples the mix does not take are empty (length -2)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.ids = open(folder / "scratch-ids.bin", "wb")
        self.labels = open(folder / "scratch-labels.bin", "wb")
        self.lengths, self.truncated, self.label_counts = array("i"), array("B"), array("i")

    def add(self, lengths, truncated, label_counts, ids, labels) -> None:
        self.lengths.frombytes(lengths.tobytes())
        self.truncated.frombytes(truncated.tobytes())
        self.label_counts.frombytes(label_counts.tobytes())
        self.ids.write(ids.tobytes())
        self.labels.write(labels.tobytes())

    def skip(self, n: int) -> None:
        self.lengths.frombytes(np.full(n, -2, np.int32).tobytes())
        self.truncated.frombytes(bytes(n))
        self.label_counts.frombytes(np.zeros(n, np.int32).tobytes())

    def __len__(self) -> int:
        return len(self.lengths)

    def finish(self) -> None:
        self.ids.close()
        self.labels.close()
        self.lengths_np = np.frombuffer(self.lengths, dtype=np.int32)
        sizes = np.maximum(self.lengths_np, 0).astype(np.int64)
        self.offsets = np.cumsum(sizes) - sizes
        total = int(sizes.sum())
        # np.memmap refuses an empty file.
        self.ids_map = np.memmap(self.ids.name, np.int32, "r") if total else np.zeros(0, np.int32)
        self.labels_map = np.memmap(self.labels.name, np.int32, "r") if total else np.zeros(0, np.int32)

    def remove(self) -> None:
        self.ids_map = self.labels_map = None
        for f in (self.ids, self.labels):
            f.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f.name)


# ---- writing -----------------------------------------------------------------------------------------

class _NpyWriter:
    """A 1-D .npy file of known length, written in pieces."""

    def __init__(self, path: Path, dtype, length: int):
        self.path, self.dtype, self.length, self.written = path, np.dtype(dtype), length, 0
        self.fh = open(path, "wb")
        np.lib.format.write_array_header_1_0(self.fh, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                       "fortran_order": False, "shape": (length,)})

    def write(self, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values, dtype=self.dtype)
        self.fh.write(values.tobytes())
        self.written += len(values)

    def close(self) -> None:
        if self.written != self.length:
            raise RuntimeError(f"{self.path}: {self.written} values written, {self.length} announced")
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()


def _save(path: Path, values: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, values)
        fh.flush()
        os.fsync(fh.fileno())


def _write_tokens(folder: Path, scratch: _Scratch, slots: np.ndarray, not_first: np.ndarray | None) -> None:
    """tokens.npy and labels.npy: the sequences of `slots` in that order; where `not_first` is set
    (a packed sequence after the first of its row) the sequence's first label becomes -100."""
    lengths = scratch.lengths_np[slots].astype(np.int64)
    ends = np.cumsum(lengths)
    total = int(ends[-1]) if len(ends) else 0
    tokens, labels = _NpyWriter(folder / "tokens.npy", np.int32, total), _NpyWriter(folder / "labels.npy", np.int32, total)
    begin = 0
    while begin < len(slots):
        done = int(ends[begin - 1]) if begin else 0
        end = max(begin + 1, int(np.searchsorted(ends, done + GATHER_TOKENS, side="right")))
        n = lengths[begin:end]
        out_starts = np.cumsum(n) - n
        within = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(out_starts, n)
        source = np.repeat(scratch.offsets[slots[begin:end]], n) + within
        ids, labs = scratch.ids_map[source], np.array(scratch.labels_map[source])
        if not_first is not None:
            labs[out_starts[not_first[begin:end] & (n > 0)]] = IGNORE_INDEX
        tokens.write(ids)
        labels.write(labs)
        begin = end
    tokens.close()
    labels.close()


def _offsets(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


class _Progress:
    def __init__(self, every: float = 30.0):
        self.t0 = self.last = time.time()
        self.every = every

    def tick(self, done: int, what: str) -> None:
        now = time.time()
        if now - self.last >= self.every:
            self.last = now
            print(f"prepare: {done:,} {what} ({done / (now - self.t0):,.0f}/s)", flush=True)


def _build(folder: Path, cfg: TrainConfig, tokenizer, inputs: dict[str, Any], key: str, workers: int) -> dict[str, Any]:
    """Write the prepared arrays and meta.json into `folder` (empty); return meta."""
    t0 = time.time()
    counts: Counter = Counter()
    sources = cfg.data_sources()
    weights = [float(src["weight"]) for src in sources]
    fractional = [w < 0 or w == 0 or w != int(w) for w in weights]
    sizes = [0] * len(sources)
    # Sources whose mix needs a seeded sample (or none of it): read once to count them.
    for s, src in enumerate(sources):
        if fractional[s]:
            sizes[s] = sum(1 for _ in read_examples(src["path"], src["name"], counts))
    rng = random.Random(cfg.seed)
    samples = mix_samples(sizes, weights, rng)  # whole weights draw nothing, so their size does not matter yet

    scratch = _Scratch(folder)
    encoder = _Encoder(tokenizer, cfg.format, cfg.max_len, workers)
    progress = _Progress()
    try:
        for s, src in enumerate(sources):
            if weights[s] == 0:
                scratch.skip(sizes[s])
                continue
            start = len(scratch)
            reading = read_examples(src["path"], src["name"], Counter() if fractional[s] else counts)
            if weights[s] < 1:  # only the sampled examples are encoded; the others keep an empty slot
                wanted = np.zeros(sizes[s], dtype=bool)
                wanted[np.asarray(samples[s], dtype=np.int64)] = True
                reading = (ex if i < len(wanted) and wanted[i] else None for i, ex in enumerate(reading))
            for result in encoder.run(_chunks(reading, CHUNK_EXAMPLES)):
                scratch.add(*result)
                progress.tick(encoder.encoded, "examples encoded")
            if fractional[s] and len(scratch) - start != sizes[s]:
                raise RuntimeError(f"{src['path']} changed while it was read: {sizes[s]} examples, then "
                                   f"{len(scratch) - start}")
            sizes[s] = len(scratch) - start
    finally:
        encoder.close()
    scratch.finish()
    order = np.frombuffer(mix_order(sizes, weights, samples, rng), dtype=np.int64)
    lengths = scratch.lengths_np[order]
    if (lengths == -2).any():
        raise RuntimeError("the mix took an example that was not encoded (a source changed while it was read?)")
    keep = lengths >= 0
    kept = order[keep]
    mixed_lengths = lengths[keep].astype(np.int64)
    if len(order):
        counts["examples"] += len(order)
    if (~keep).any():
        counts["dropped_prompt_too_long"] += int((~keep).sum())
    if len(kept):
        counts["kept"] += len(kept)
        counts["truncated"] += int(np.frombuffer(scratch.truncated, np.uint8)[kept].sum())
        counts["tokens"] += int(mixed_lengths.sum())
        counts["label_tokens"] += int(np.frombuffer(scratch.label_counts, np.int32)[kept].astype(np.int64).sum())

    if cfg.packing:
        placed, row_of = best_fit(mixed_lengths, cfg.max_len)
        n_rows = int(row_of.max()) + 1 if len(row_of) else 0
        by_row = placed[np.argsort(row_of, kind="stable")]  # each row's sequences, in placement order
        seq_offsets = _offsets(np.bincount(row_of, minlength=n_rows))
        seq_lengths = mixed_lengths[by_row]
        not_first = np.ones(len(by_row), dtype=bool)
        not_first[seq_offsets[:-1]] = False
        row_lengths = np.add.reduceat(seq_lengths, seq_offsets[:-1]) if n_rows else np.zeros(0, np.int64)
        _write_tokens(folder, scratch, kept[by_row], not_first)
        _save(folder / "seq_lengths.npy", seq_lengths.astype(np.int32))
        _save(folder / "seq_offsets.npy", seq_offsets)
        _save(folder / "mix_lengths.npy", mixed_lengths.astype(np.int32))
    else:
        n_rows, row_lengths = len(kept), mixed_lengths
        _write_tokens(folder, scratch, kept, None)
    _save(folder / "row_offsets.npy", _offsets(row_lengths))
    scratch.remove()
    seconds = time.time() - t0
    meta = {"key": key, "packed": bool(cfg.packing), "rows": n_rows, "sequences": len(kept),
            "tokens": int(mixed_lengths.sum()), "counts": dict(counts), "seconds": round(seconds, 2),
            "examples_encoded": encoder.encoded,
            "examples_per_s": round(encoder.encoded / seconds, 1) if seconds else 0.0,
            "workers": workers if encoder.pool_used else 1,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "inputs": inputs}
    (folder / META).write_text(json.dumps(meta, indent=2) + "\n")
    files = {p.name: p.stat().st_size for p in sorted(folder.iterdir())}
    (folder / MARKER).write_text(json.dumps({"key": key, "files": files}, indent=2) + "\n")
    fio.fsync_dir(folder)
    return meta


def _remove_stale_temporaries(root: Path, key: str) -> None:
    """Temporary folders of this key left by dead preparers on this host (a kill -9)."""
    host = socket.gethostname()
    for tmp in root.glob(f".tmp-{key}-*"):
        owner_host, _, pid = tmp.name[len(f".tmp-{key}-"):].rpartition("-")
        if owner_host == host and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


# ---- entry points ------------------------------------------------------------------------------------

def prepare(cfg: TrainConfig, tokenizer, workers: int | None = None,
            inputs: dict[str, Any] | None = None) -> Prepared:
    """The prepared rows of `cfg`'s data for `tokenizer`: the existing complete folder, or a new one.

    workers: processes that encode once more than INLINE_EXAMPLES examples have been encoded here
    (default: the usable cores, at most 16; 1: all in this process). They are spawned, so a script
    that calls this needs the `if __name__ == "__main__":` guard."""
    inputs = inputs if inputs is not None else key_inputs(cfg, tokenizer)
    key = data_key(inputs)
    root = data_root(cfg)
    folder = root / key
    ready = open_prepared(folder)
    if ready is not None:
        return ready
    root.mkdir(parents=True, exist_ok=True)
    if folder.exists():  # no valid marker: never reused
        shutil.rmtree(folder)
    _remove_stale_temporaries(root, key)
    tmp = root / f".tmp-{key}-{socket.gethostname()}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    print(f"preparing the training data in {folder} (format {cfg.format}, max_len {cfg.max_len}, "
          f"packing {cfg.packing}, {len(inputs['sources'])} source(s))", flush=True)
    try:
        meta = _build(tmp, cfg, tokenizer, inputs, key, workers or default_workers())
        try:
            os.rename(tmp, folder)
        except OSError:  # another preparer finished first
            if open_prepared(folder) is None:
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        fio.fsync_dir(root)
        (root / f".failed-{key}").unlink(missing_ok=True)  # a failed attempt's note (training/load_or_prepare)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"prepared {meta['rows']:,} rows, {meta['tokens']:,} tokens in {meta['seconds']:.1f} s "
          f"({meta['examples_per_s']:,.0f} examples/s)", flush=True)
    prepared = open_prepared(folder)
    if prepared is None:
        raise RuntimeError(f"{folder} was prepared but does not open")
    return prepared


def load_or_prepare(cfg: TrainConfig, tokenizer) -> Prepared:
    """In a process group: rank 0 prepares the rows when missing, the other ranks wait for the
    completion marker (polling, so no collective timeout limits how long preparing may take; the run
    folder must be shared by all ranks); then every rank maps the same files. When rank 0 fails, it
    leaves its error in data/.failed-<key> and the waiting ranks raise it. Alone: `prepare`."""
    try:
        import torch.distributed as dist
        group = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    except ImportError:
        group = False
    if not group:
        return prepare(cfg, tokenizer)
    inputs = key_inputs(cfg, tokenizer)
    key = data_key(inputs)
    folder = data_root(cfg) / key
    failed = data_root(cfg) / f".failed-{key}"
    rank = dist.get_rank()
    ready = open_prepared(folder) if rank == 0 else None
    if rank == 0 and ready is None:
        failed.unlink(missing_ok=True)  # an earlier run's failure, removed before anyone looks for it
    dist.barrier()
    if rank == 0:
        if ready is not None:
            return ready
        try:
            return prepare(cfg, tokenizer, inputs=inputs)
        except BaseException as err:
            with contextlib.suppress(OSError):  # whole or absent, for the ranks polling for it
                failed.parent.mkdir(parents=True, exist_ok=True)
                fio.write_atomic(failed, f"{type(err).__name__}: {err}\n")
            raise
    waited, told = time.time(), False
    while True:
        prepared = open_prepared(folder)
        if prepared is not None:
            return prepared
        if failed.exists():
            raise RuntimeError(f"rank 0 could not prepare the training data ({failed.read_text().strip()})")
        if not told and time.time() - waited > 60:
            told = True
            print(f"rank {rank}: waiting for rank 0 to prepare {folder} (all ranks must see RUN)", flush=True)
        time.sleep(POLL_SECONDS)


def load_tokenizer(cfg: TrainConfig):
    """The tokenizer training uses for `cfg.model` (with our chat template if it has none)."""
    from transformers import AutoTokenizer

    from webinstruct.core.formatting import ensure_chat_template
    from webinstruct.core.registry import resolve

    tokenizer = AutoTokenizer.from_pretrained(resolve(cfg.model, cfg.model_path).path)
    ensure_chat_template(tokenizer)
    return tokenizer


def prepare_and_describe(cfg: TrainConfig, workers: int | None = None) -> str:
    """`--prepare`: prepare (or find) the first stage's rows; a few lines saying where and the counts."""
    prepared = prepare(cfg, load_tokenizer(cfg), workers=workers)
    text = prepared.describe(cfg.micro_batch, cfg.padding_free)
    if cfg.next_stage() is not None:
        text += "\nthe second stage (`then`) is prepared when it starts: its tokenizer comes with the first stage's model"
    return text


if __name__ == "__main__":  # pragma: no cover - spawned workers import this module, never run it
    sys.exit("use `webinstruct train --prepare`")
