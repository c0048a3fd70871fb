"""The learning-rate schedule: linear warmup, then cosine (or linear, or constant) decay.

A multiplier of the peak rate per optimizer step, usable as a `torch.optim.lr_scheduler.LambdaLR`
lambda. Warmup takes `ceil(warmup_ratio * total)` steps and starts at peak/warmup, not at 0, so
no step is spent with a zero rate; the decay reaches 0 one step after the last step.
"""
from __future__ import annotations

import math

SCHEDULES = ("cosine", "linear", "constant")


def warmup_steps(total: int, warmup_ratio: float) -> int:
    return math.ceil(warmup_ratio * total) if warmup_ratio > 0 else 0


def lr_factor(step: int, total: int, warmup: int, kind: str = "cosine") -> float:
    """Multiplier of the peak learning rate at optimizer step `step` (0-based)."""
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; known: {', '.join(SCHEDULES)}")
    if step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))
