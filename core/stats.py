"""Counters for a stage: Beam metrics for the runner's UI, and the same counts as data for stats.json.

Beam metrics are the natural home for counters, but not every runner reports them (the Dask
runner raises NotImplementedError on `metrics()`). So each DoFn counts into a `StageCounter`,
which increments the Beam metric *and* a local tally that the DoFn emits as an ordinary element;
the pipeline sums those elements and writes `stats.json` itself. The file is therefore exact on
every runner, and tests check that it equals the Beam metrics where the runner has them.
"""
from __future__ import annotations

import collections
import logging
import time
from typing import Any, Iterable, Mapping

from apache_beam.metrics import Metrics

NAMESPACE = "webinstruct"
log = logging.getLogger(__name__)


class StageCounter:
    """Count by name into Beam metrics and into a local tally drained as data."""

    def __init__(self, stage: str):
        self.stage = stage
        self._metrics: dict[str, Any] = {}
        self._tally: collections.Counter = collections.Counter()

    def __call__(self, name: str, n: int = 1) -> None:
        if n == 0:
            return
        metric = self._metrics.get(name)
        if metric is None:
            metric = self._metrics[name] = Metrics.counter(NAMESPACE, f"{self.stage}.{name}")
        metric.inc(n)
        self._tally[name] += n

    def get(self, name: str) -> int:
        return self._tally[name]

    def drain(self) -> dict[str, int]:
        out = dict(self._tally)
        self._tally.clear()
        return out


def merge(parts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: collections.Counter = collections.Counter()
    for part in parts:
        total.update(part)
    return dict(sorted(total.items()))


def beam_counters(result: Any, stage: str) -> dict[str, int] | None:
    """Counters the runner reports for `stage`, or None when the runner has no metrics."""
    try:
        query = result.metrics().query()
    except (NotImplementedError, AttributeError):
        return None
    prefix = f"{stage}."
    out: dict[str, int] = collections.Counter()
    for c in query.get("counters", []):
        name = c.key.metric.name
        if c.key.metric.namespace == NAMESPACE and name.startswith(prefix):
            value = c.committed if c.committed is not None else c.attempted
            out[name[len(prefix):]] += int(value or 0)
    return dict(sorted(out.items()))


def format_stats(stats: Mapping[str, Any], title: str = "") -> str:
    """A readable two-column table of counters, drops grouped last."""
    lines = [title] if title else []
    counters = {k: v for k, v in stats.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    width = max((len(k) for k in counters), default=10)
    keep = [k for k in counters if not k.startswith("dropped_")]
    drops = [k for k in counters if k.startswith("dropped_")]
    for k in keep + drops:
        v = counters[k]
        shown = f"{v:,}" if isinstance(v, int) else f"{v:.4g}"
        lines.append(f"  {k:<{width}}  {shown:>12}")
    return "\n".join(lines)


class Progress:
    """Periodic progress lines for long work (one per `every_s` seconds)."""

    def __init__(self, label: str, every_s: float = 10.0):
        self.label = label
        self.every_s = every_s
        self.start = self._last = time.monotonic()

    def maybe(self, **counts: int) -> None:
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self.report(**counts)

    def report(self, **counts: int) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        parts = ", ".join(f"{k} {v:,}" for k, v in counts.items())
        first = next(iter(counts.values()), 0)
        log.info("%s: %s (%.1f/s, %.0fs)", self.label, parts, first / elapsed, elapsed)
