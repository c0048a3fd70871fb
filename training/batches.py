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
from typing import Any, Sequence

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
        self._perm: tuple[int, list[int]] | None = None

    def _permutation(self, epoch: int) -> list[int]:
        if self._perm is None or self._perm[0] != epoch:
            idx = list(range(self.n_rows))
            random.Random(self.seed + epoch).shuffle(idx)
            self._perm = (epoch, idx)
        return self._perm[1]

    def rows(self, step: int, micro_step: int, rank: int) -> list[int]:
        """Row indices of one micro batch; `step` counts over all epochs."""
        epoch, s = divmod(step, self.steps_per_epoch)
        perm = self._permutation(epoch)
        start = s * self.global_rows + (micro_step * self.world + rank) * self.micro
        return [perm[i % self.n_rows] for i in range(start, start + self.micro)]


def collate(rows: Sequence[dict[str, Any]], pad_id: int, packed: bool, padding_free: bool = False) -> dict[str, torch.Tensor]:
    """One micro batch as model inputs.

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
    if padding_free:
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for r in rows:
            n = len(r["input_ids"])
            row_labels = list(r["labels"])
            if ids:
                row_labels[0] = IGNORE_INDEX
            ids += list(r["input_ids"])
            labels += row_labels
            positions += list(r["position_ids"]) if "position_ids" in r else list(range(n))
        return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
                "position_ids": torch.tensor([positions])}
    width = max(len(r["input_ids"]) for r in rows)
    ids2, labels2, extra = [], [], []
    for r in rows:
        n = len(r["input_ids"])
        ids2.append(list(r["input_ids"]) + [pad_id] * (width - n))
        labels2.append(list(r["labels"]) + [IGNORE_INDEX] * (width - n))
        if packed:
            extra.append(list(r["position_ids"]) + list(range(width - n)))
        else:
            extra.append([1] * n + [0] * (width - n))
    batch = {"input_ids": torch.tensor(ids2), "labels": torch.tensor(labels2)}
    batch["position_ids" if packed else "attention_mask"] = torch.tensor(extra)
    return batch
