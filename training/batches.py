"""Micro batches of a training run: a deterministic order from the seed, addressable by step.

Rows are encoded examples (or packed rows). Each epoch shuffles the row indices with
`seed + epoch`; optimizer step s of the epoch takes `global_rows` consecutive indices (the last
step wraps around to the start of the permutation), split into micro batches per accumulation
step and process. Because a batch is a pure function of (epoch, step, micro step, rank), resuming
from a checkpoint just starts at its step: the micro batches already consumed are skipped
without reading them.
"""
from __future__ import annotations

import math
import random
from array import array
from typing import Any, Sequence

import numpy as np
import torch

from webinstruct.core.formatting import IGNORE_INDEX


class StepOrder:
    """Which rows each process reads at each step."""

    def __init__(self, n_rows: int, micro_batch: int, accumulation: int, world: int, seed: int):
        if n_rows <= 0:
            raise ValueError("no training rows: every data source was empty or dropped")
        self.n_rows, self.micro, self.accum, self.world, self.seed = n_rows, micro_batch, accumulation, world, seed
        self.global_rows = micro_batch * accumulation * world
        self.steps_per_epoch = math.ceil(n_rows / self.global_rows)
        self._perm: tuple[int, array] | None = None

    def _permutation(self, epoch: int) -> array:
        if self._perm is None or self._perm[0] != epoch:
            # 8 bytes a row (a list of ints takes ~36): the same swaps, so the same order, as on a list.
            idx = array("q", range(self.n_rows))
            random.Random(self.seed + epoch).shuffle(idx)
            self._perm = (epoch, idx)
        return self._perm[1]

    def rows(self, step: int, micro_step: int, rank: int) -> list[int]:
        """Row indices of one micro batch; `step` counts over all epochs."""
        epoch, s = divmod(step, self.steps_per_epoch)
        perm = self._permutation(epoch)
        start = s * self.global_rows + (micro_step * self.world + rank) * self.micro
        return [perm[i % self.n_rows] for i in range(start, start + self.micro)]


def _ints(values: Any) -> np.ndarray:
    """A row's field as an int64 array, without a copy when it already is one."""
    return np.asarray(values, dtype=np.int64)


def collate(rows: Sequence[dict[str, Any]], pad_id: int, packed: bool, padding_free: bool = False) -> dict[str, torch.Tensor]:
    """One micro batch as model inputs (int64 tensors).

    Row fields may be lists or numpy arrays (slices of the memory-mapped arrays of
    training/prepared.py): each is copied once into a preallocated batch array, then handed to
    torch without another copy.

    padding_free: every row of the micro batch goes into one long row, position ids restarting at
    each sequence (as packing does inside a row) and the first label of each sequence after the
    first set to -100, so no target is predicted across a boundary; no pad token at all. The loss
    is the same token mean as with padding. Needs a model that separates sequences by their
    position ids when called with use_cache=False (the Llama family in transformers 5; see the
    stack notes and tests/test_train_loop.py).

    Otherwise rows are padded to the longest of the micro batch (right padding, labels -100 on
    pads). Unpacked: an attention mask hides the pads. Packed: no attention mask, restarted
    `position_ids` instead; the padding tail is one more sequence of its own, and being last it
    is never attended to by a real token."""
    lengths = [len(r["input_ids"]) for r in rows]
    if padding_free:
        total = sum(lengths)
        ids, labels, positions = (np.empty(total, dtype=np.int64) for _ in range(3))
        at = 0
        for r, n in zip(rows, lengths):
            ids[at:at + n] = _ints(r["input_ids"])
            labels[at:at + n] = _ints(r["labels"])
            positions[at:at + n] = _ints(r["position_ids"]) if "position_ids" in r else np.arange(n)
            if at and n:
                labels[at] = IGNORE_INDEX
            at += n
        return {"input_ids": torch.from_numpy(ids)[None], "labels": torch.from_numpy(labels)[None],
                "position_ids": torch.from_numpy(positions)[None]}
    width = max(lengths)
    ids2 = np.full((len(rows), width), pad_id, dtype=np.int64)
    labels2 = np.full((len(rows), width), IGNORE_INDEX, dtype=np.int64)
    # Packed: the pad tail counts its own positions from 0. Unpacked: the attention mask, 1 on real tokens.
    extra = np.tile(np.arange(width, dtype=np.int64), (len(rows), 1)) if packed else np.zeros_like(ids2)
    for b, (r, n) in enumerate(zip(rows, lengths)):
        ids2[b, :n] = _ints(r["input_ids"])
        labels2[b, :n] = _ints(r["labels"])
        if packed:
            extra[b, :n] = _ints(r["position_ids"])
            extra[b, n:] -= n
        else:
            extra[b, :n] = 1
    batch = {"input_ids": torch.from_numpy(ids2), "labels": torch.from_numpy(labels2)}
    batch["position_ids" if packed else "attention_mask"] = torch.from_numpy(extra)
    return batch
