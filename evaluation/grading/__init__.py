"""Graders: decide whether a model's output answers a benchmark question.

Two graders run on every prediction and both are reported:

- ``seed`` reproduces the scorer of the paper whose protocol produced the output (MAmmoTH2's
  harness for the ``mammoth2`` and ``chat`` protocols, MetaMath's scripts for ``metamath``),
  quirks included, so our numbers can be set beside theirs.
- ``robust`` reads the answer however it is phrased (after cutting the output at the protocol's
  stop strings) and compares it symbolically (math-verify, sympy), numerically (exact, or with the
  benchmark's own tolerance), or by option letter, number or text.
"""
from __future__ import annotations

from dataclasses import dataclass

GRADERS = ("seed", "robust")


@dataclass(frozen=True)
class Verdict:
    answer: str  # the answer this grader read from the output ("" when it found none)
    correct: bool
    note: str = ""  # why, when it is not a plain comparison: "no answer phrase", "timeout", ...

    def to_dict(self) -> dict:
        return {"answer": self.answer, "correct": self.correct, "note": self.note}


def grade(item, output: str, grader: str, protocol: str) -> Verdict:
    """One verdict. For many outputs use `grade_all`, which runs the robust grader in a pool."""
    if grader == "seed":
        from webinstruct.evaluation.grading.seed import grade_seed
        return grade_seed(item, output, protocol)
    if grader == "robust":
        from webinstruct.evaluation.grading.robust import grade_robust
        return grade_robust(item, output, protocol=protocol)
    raise ValueError(f"unknown grader {grader!r}; choose from {', '.join(GRADERS)}")


def grade_all(pairs: list, protocol: str, workers: int = 2, timeout: float = 5.0, pool=None) -> list[dict[str, Verdict]]:
    """Both graders' verdicts for each (item, output) pair, in order. `pool` (from `grading_pool`)
    keeps the robust grader's worker processes across calls; without it each call starts its own."""
    from webinstruct.evaluation.grading.robust import grade_robust_many
    from webinstruct.evaluation.grading.seed import grade_seed
    robust = grade_robust_many(pairs, workers=workers, timeout=timeout, pool=pool, protocol=protocol)
    return [{"seed": grade_seed(item, output, protocol), "robust": r} for (item, output), r in zip(pairs, robust)]


def grading_pool(workers: int = 2, timeout: float = 5.0):
    """The robust grader's worker processes, started now and reused by every `grade_all(..., pool=)`
    until `.close()` (also a context manager). `timeout`: seconds per answer."""
    from webinstruct.evaluation.grading.robust import symbolic_pool
    return symbolic_pool(workers, timeout)
