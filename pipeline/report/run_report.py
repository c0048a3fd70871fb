"""The run report: one Markdown page (RUN/report.md) with PNG charts (RUN/report/) that says what a
run did, from WARC records to final rows.

Everything comes from what the stages already leave behind: each stage's stats.json, the recall
domain table, the classifier metadata and the stage shards. A stage that has not run gets a
one-line note instead of its section, so the report works on a run in progress.

Output is deterministic: no timestamps in the Markdown, PNGs saved without the Software chunk and
drawn with fixed sizes, so rerunning the report on the same run gives identical bytes (useful when
the report is committed next to a recipe). Files are read and written through `webinstruct.core.io`
(atomically; the run directory may be local or a URL).
"""
from __future__ import annotations

import collections
import heapq
import io
import math
import os
from typing import Any, Iterable, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from webinstruct.core import shards
from webinstruct.core import io as fio
from webinstruct.core import publish
from webinstruct.pipeline.recall.classifier import meta_path

STAGES = ("recall", "extract", "refine")
FUNNEL = {
    "recall": ("records_read", "records_response", "pages_decoded", "pages_scored", "pages_recalled",
               "docs_written"),
    "extract": ("docs_in", "docs_structured", "docs_with_pairs", "pairs_out"),
    "refine": ("pairs_in", "rows_out"),
}
LLM_ACCOUNTING = ("requests_sent", "cache_hits", "prompt_tokens", "completion_tokens", "wall_seconds")
DROP_PREFIXES = ("dropped_", "decontaminated_")
SCORE_BINS = 20  # recall counts score_bin_00 .. score_bin_19: bin i is [i/20, (i+1)/20)
TOP_DOMAINS = 15
TOP_SOURCES = 15
LENGTH_FIELDS = ("orig_question", "question", "orig_answer", "answer")
STAGE_COLORS = {"recall": "#4C72B0", "extract": "#DD8452", "refine": "#55A868"}
PNG_NAMES = ("funnel.png", "scores.png", "lengths.png", "drops.png")
DPI = 100


# ---- writing ----------------------------------------------------------------------------------

def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)  # the Agg canvas, without touching pyplot's global backend
    buf = io.BytesIO()
    # No Software chunk (it carries the matplotlib version) and no timestamps: same run, same bytes.
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


# ---- reading ----------------------------------------------------------------------------------

def stage_status(run_dir: str) -> dict[str, bool | None]:
    """Per stage: True when its folder is complete (a valid `_SUCCESS` marker), False when it holds
    files (shards or stats.json) but is not, None when the stage never wrote there. Each folder is
    checked once; `render` passes the result to the readers below."""
    out: dict[str, bool | None] = {}
    for stage in STAGES:
        directory = fio.join(run_dir, stage)
        if shards.is_complete(directory):
            out[stage] = True
        elif shards.list_shards(directory) or fio.exists(fio.join(directory, "stats.json")):
            out[stage] = False
        else:
            out[stage] = None
    return out


def load_stats(run_dir: str, status: dict[str, bool | None] | None = None) -> dict[str, dict[str, Any]]:
    """stats.json of every stage whose folder is complete (its `_SUCCESS` marker is valid), by
    stage name: a folder a killed run left behind may hold an earlier run's stats.json."""
    status = stage_status(run_dir) if status is None else status
    out = {}
    for stage, done in status.items():
        path = fio.join(run_dir, stage, "stats.json")
        if done and fio.exists(path):  # a folder published by hand (tests, benches) may have none
            out[stage] = shards.read_json(path)
    return out


def incomplete_stages(run_dir: str, status: dict[str, bool | None] | None = None) -> list[str]:
    """Stages whose folder holds files (shards or stats.json) but is not complete."""
    status = stage_status(run_dir) if status is None else status
    return [stage for stage, done in status.items() if done is False]


def _rows(run_dir: str, stage: str) -> Iterable[dict[str, Any]]:
    """The rows of a complete stage folder; none for a folder that is not."""
    try:
        paths = shards.complete_shards(fio.join(run_dir, stage), stage)
    except shards.MissingInput:  # StageIncomplete included
        return iter(())
    return (row for path in paths for row in shards.iter_shard(path))


def _relative(path: str, run_dir: str) -> str:
    """`path` relative to run_dir when it lies inside it, else as given."""
    if fio.is_remote(path) or fio.is_remote(run_dir):
        prefix = run_dir.rstrip("/") + "/"
        return path[len(prefix):] if path.startswith(prefix) else path
    inside = os.path.abspath(path).startswith(os.path.abspath(run_dir) + os.sep)
    return os.path.relpath(path, run_dir) if inside else path


def threshold(run_dir: str) -> tuple[float | None, str]:
    """The recall threshold and where it came from: recall/config.json, else the classifier's."""
    config_path = fio.join(run_dir, "recall", "config.json")
    candidates = []
    if fio.exists(config_path):
        config = shards.read_json(config_path)
        value = config.get("threshold")
        if isinstance(value, (int, float)) and value >= 0:  # -1 means "the classifier's own"
            return float(value), "recall/config.json"
        if config.get("classifier"):
            candidates.append(meta_path(config["classifier"]))
    candidates.append(fio.join(run_dir, "classifier", "classifier.json"))
    for path in candidates:
        if fio.exists(path):
            meta = shards.read_json(path)
            if isinstance(meta.get("threshold"), (int, float)):
                return float(meta["threshold"]), _relative(path, run_dir)
    return None, ""


def score_histogram(run_dir: str, recall_stats: dict[str, Any]) -> tuple[list[int], str]:
    """Counts per score bin and what they count: the recall counters when present (every scored
    page), else the `score` of the recalled documents (only pages at or above the threshold)."""
    names = [f"score_bin_{i:02d}" for i in range(SCORE_BINS)]
    if any(name in recall_stats for name in names):
        return [int(recall_stats.get(name, 0)) for name in names], "scored pages (recall counters)"
    counts = [0] * SCORE_BINS
    for doc in _rows(run_dir, "recall"):
        score = doc.get("score")
        if isinstance(score, (int, float)):
            counts[min(max(int(score * SCORE_BINS), 0), SCORE_BINS - 1)] += 1
    return counts, "recalled documents only (recall stats have no score_bin_* counters)"


def top_domains(run_dir: str, n: int = TOP_DOMAINS) -> list[dict[str, Any]] | None:
    path = fio.join(run_dir, "recall", "domains.jsonl.gz")
    if not fio.exists(path):
        return None
    return heapq.nsmallest(n, shards.iter_shard(path),
                           key=lambda r: (-r.get("pages_recalled", 0), -r.get("pages_seen", 0), r.get("domain", "")))


def drop_counters(stats: dict[str, dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Every dropped_* / decontaminated_* counter, by stage (stages with none left out)."""
    out = {}
    for stage, counters in stats.items():
        drops = {k: v for k, v in sorted(counters.items()) if k.startswith(DROP_PREFIXES)}
        if drops:
            out[stage] = drops
    return out


def nearest_rank(values: Sequence[int], q: float) -> int:
    """The q-th percentile (0-100) by nearest rank on sorted `values`; 0 for no values."""
    if not values:
        return 0
    return values[max(math.ceil(q / 100 * len(values)) - 1, 0)]


# ---- formatting -------------------------------------------------------------------------------

def _num(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "–"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) >= 1 else f"{v:.4g}"
    return _cell(v)


def _cell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "") -> list[str]:
    """Markdown table lines; `align` gives one of l/r per column (default: first l, rest r)."""
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_num(c) if i and align[i] == "r" else _cell(c)
                                       for i, c in enumerate(row)) + " |")
    return lines


# ---- charts -----------------------------------------------------------------------------------

def _barh(labels: list[str], values: list[int], colors: list[str], title: str, xlabel: str) -> bytes:
    fig = Figure(figsize=(8, 0.9 + 0.32 * len(labels)))
    ax = fig.add_subplot()
    y = list(range(len(labels)))[::-1]  # first label on top
    ax.barh(y, [max(v, 0) for v in values], color=colors)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(0.8, max(max(values, default=1), 1) * 4)  # room for the value labels
    for yi, v in zip(y, values):
        ax.text(max(v, 1) * 1.08, yi, f"{v:,}", va="center", fontsize=7)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=8)
    # Fixed margins from the longest label: tight_layout would measure every text, costing half the
    # report's time for the same picture.
    height = fig.get_figheight()
    fig.subplots_adjust(left=min(0.2 + 0.06 * max(map(len, labels), default=0), 4.5) / 8, right=0.97,
                        top=1 - 0.35 / height, bottom=0.5 / height)
    return _png(fig)


def funnel_png(steps: list[tuple[str, str, int]]) -> bytes:
    return _barh([f"{stage}: {name}" for stage, name, _ in steps], [v for *_, v in steps],
                 [STAGE_COLORS[stage] for stage, _, _ in steps], "From WARC records to final rows",
                 "count (log scale)")


def drops_png(drops: dict[str, dict[str, int]]) -> bytes:
    items = [(stage, name, v) for stage, counters in drops.items() for name, v in counters.items()]
    return _barh([f"{stage}: {name}" for stage, name, _ in items], [v for *_, v in items],
                 [STAGE_COLORS.get(stage, "#888888") for stage, _, _ in items], "Drops by reason",
                 "count (log scale)")


def scores_png(counts: list[int], cut: float | None, what: str) -> bytes:
    fig = Figure(figsize=(8, 3.6))
    ax = fig.add_subplot()
    width = 1 / SCORE_BINS
    ax.bar([i * width for i in range(SCORE_BINS)], counts, width=width, align="edge",
           color=STAGE_COLORS["recall"], edgecolor="white")
    if cut is not None:
        ax.axvline(cut, color="#C44E52", linestyle="--", label=f"threshold {cut:.3f}")
        ax.legend(fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("classifier score P(educational)", fontsize=8)
    ax.set_ylabel("pages", fontsize=8)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"Recall classifier scores: {what}", fontsize=9)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.9, bottom=0.14)
    return _png(fig)


def lengths_png(lengths: dict[str, dict[str, list[int]]]) -> bytes:
    """2x2: question/answer by chars/words, the extracted (orig_*) and refined text overlaid."""
    fig = Figure(figsize=(9, 6))
    axes = fig.subplots(2, 2)
    for row, kind in enumerate(("question", "answer")):
        for col, unit in enumerate(("chars", "words")):
            ax = axes[row][col]
            series = [(f, lengths[f][unit]) for f in (f"orig_{kind}", kind) if f in lengths]
            combined = sorted(v for _, vs in series for v in vs)
            top = max(nearest_rank(combined, 99), 1)  # the longest 1% would squash the rest
            bins = [top * i / 30 for i in range(31)]
            for (name, vs), color in zip(series, ("#8C8C8C", STAGE_COLORS["refine"])):
                ax.hist([min(v, top) for v in vs], bins=bins, alpha=0.6, color=color, label=name)
            ax.set_title(f"{kind} length ({unit})", fontsize=9)
            ax.tick_params(labelsize=7)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel("rows", fontsize=7)
            if series:
                ax.legend(fontsize=7)
    fig.subplots_adjust(left=0.07, right=0.98, top=0.95, bottom=0.06, hspace=0.3, wspace=0.2)
    return _png(fig)


# ---- sections ---------------------------------------------------------------------------------

def _funnel(stats: dict[str, dict[str, Any]], pngs: dict[str, bytes]) -> list[str]:
    lines = ["## Funnel", ""]
    if not stats:
        return lines + ["No stage has written stats.json yet.", ""]
    steps, rows = [], []
    for stage in STAGES:
        if stage not in stats:
            rows.append((stage, "(stage has not run)", None))
            continue
        for name in FUNNEL[stage]:
            value = stats[stage].get(name)
            rows.append((stage, name, value))
            if isinstance(value, int):
                steps.append((stage, name, value))
    lines += table(["stage", "step", "count"], rows, "llr")
    if steps:
        pngs["funnel.png"] = funnel_png(steps)
        lines += ["", "![funnel](report/funnel.png)"]
    return lines + [""]


def _scores(run_dir: str, stats: dict[str, dict[str, Any]], pngs: dict[str, bytes]) -> list[str]:
    lines = ["## Classifier scores", ""]
    if "recall" not in stats:
        return lines + ["Recall has not run: no scores.", ""]
    counts, what = score_histogram(run_dir, stats["recall"])
    cut, cut_from = threshold(run_dir)
    cut_line = f"Threshold {cut:.4f} (from `{cut_from}`)." if cut is not None else "Threshold unknown."
    lines += [f"Histogram of {what}; {sum(counts):,} pages. {cut_line}", ""]
    if not any(counts):
        return lines + ["No scores to plot.", ""]
    pngs["scores.png"] = scores_png(counts, cut, what.split(" (")[0])
    return lines + ["![scores](report/scores.png)", ""]


def _domains(run_dir: str, final: dict[str, Any], stats: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["## Top domains", ""]
    rows = top_domains(run_dir) if "recall" in stats else None
    if rows is None:
        lines += ["Recall has not run (no recall/domains.jsonl.gz).", ""]
    else:
        lines += [f"Top {len(rows)} recall domains by pages recalled:", ""]
        lines += table(["domain", "pages seen", "pages recalled", "recalled share", "mean score", "top paths"],
                       [(r.get("domain", ""), r.get("pages_seen"), r.get("pages_recalled"),
                         float(r.get("recalled_share", 0.0)), float(r.get("mean_score", 0.0)),
                         ", ".join(f"{p} ({n})" for p, n in r.get("top_paths", [])[:3]))
                        for r in rows], "lrrrrl")
        lines.append("")
    sources = final["sources"]
    if final["stage"] != "refine":
        return lines + ["Refine has not run: no final rows to count sources of.", ""]
    top = sorted(sources.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_SOURCES]
    total = sum(sources.values())
    lines += [f"Top {len(top)} `source` values of the {total:,} final rows:", ""]
    lines += table(["source", "rows", "share"], [(s, n, f"{n / total:.1%}") for s, n in top])
    return lines + [""]


def _final_rows(run_dir: str, stats: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Length lists and source counts of the final rows (refine), or of the extracted pairs when
    refine has not run; one pass over the shards, keeping only integers."""
    stage = "refine" if "refine" in stats else "extract" if "extract" in stats else ""
    lengths: dict[str, dict[str, list[int]]] = {}
    sources: collections.Counter = collections.Counter()
    if stage:
        for row in _rows(run_dir, stage):
            for name in LENGTH_FIELDS:
                text = row.get(name)
                if isinstance(text, str):
                    entry = lengths.setdefault(name, {"chars": [], "words": []})
                    entry["chars"].append(len(text))
                    entry["words"].append(len(text.split()))
            sources[row.get("source") or row.get("domain") or "(none)"] += 1
    for entry in lengths.values():
        entry["chars"].sort()
        entry["words"].sort()
    return {"stage": stage, "lengths": lengths, "sources": sources}


def _lengths(final: dict[str, Any], pngs: dict[str, bytes]) -> list[str]:
    lines = ["## Question and answer lengths", ""]
    lengths = final["lengths"]
    if not final["stage"]:
        return lines + ["Neither extract nor refine has run: no pairs.", ""]
    if not lengths:
        return lines + [f"The {final['stage']} shards hold no rows.", ""]
    if final["stage"] == "extract":
        lines += ["Refine has not run: lengths of the extracted pairs instead of the final rows.", ""]
    else:
        lines += ["`orig_*` is the pair as extracted, `question`/`answer` as refined.", ""]
    rows = [(name, len(v["chars"]), nearest_rank(v["chars"], 50), nearest_rank(v["chars"], 90),
             nearest_rank(v["words"], 50), nearest_rank(v["words"], 90))
            for name, v in ((n, lengths[n]) for n in LENGTH_FIELDS if n in lengths)]
    lines += table(["field", "rows", "median chars", "p90 chars", "median words", "p90 words"], rows)
    pngs["lengths.png"] = lengths_png(lengths)
    return lines + ["", "![lengths](report/lengths.png)", ""]


def _drops(stats: dict[str, dict[str, Any]], pngs: dict[str, bytes]) -> list[str]:
    lines = ["## Drops by reason", ""]
    if not stats:
        return lines + ["No stage has run.", ""]
    drops = drop_counters(stats)
    for stage in STAGES:
        if stage not in stats:
            lines += [f"{stage}: has not run.", ""]
        elif stage not in drops:
            lines += [f"{stage}: no drop counters.", ""]
        else:
            lines += [f"### {stage}", ""]
            lines += table(["reason", "count"], drops[stage].items()) + [""]
    if drops:
        pngs["drops.png"] = drops_png(drops)
        lines += ["![drops](report/drops.png)", ""]
    return lines


def _llm(stats: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["## LLM accounting", ""]
    stages = [s for s in STAGES if s in stats and any(k in stats[s] for k in LLM_ACCOUNTING[:-1])]
    if not stages:
        return lines + ["No stage that calls an LLM has run.", ""]
    lines += table(["stage", *LLM_ACCOUNTING], [(s, *(stats[s].get(k) for k in LLM_ACCOUNTING)) for s in stages])
    return lines + [""]


def render(run_dir: str) -> tuple[str, dict[str, bytes]]:
    """The report's Markdown and its PNGs by file name, without writing anything."""
    status = stage_status(run_dir)
    stats = load_stats(run_dir, status)
    unfinished = incomplete_stages(run_dir, status)
    if not stats:
        if unfinished:  # the one-line refusal of the first incomplete folder
            shards.complete_shards(fio.join(run_dir, unfinished[0]), unfinished[0])
        raise shards.MissingInput(f"no stage stats.json under {run_dir}: run `make recall` (webinstruct recall) first")
    pngs: dict[str, bytes] = {}
    final = _final_rows(run_dir, stats)
    name = os.path.basename(os.path.normpath(run_dir))
    ran = ", ".join(s for s in STAGES if s in stats)
    lines = [f"# Run report: {name}", "", f"Stages with output: {ran}.", ""]
    if unfinished:
        lines += ["Incomplete (a run did not finish; not reported): "
                  + "; ".join(f"{s}: rerun {publish.command_for(s, s)}" for s in unfinished) + ".", ""]
    lines += _funnel(stats, pngs)
    lines += _scores(run_dir, stats, pngs)
    lines += _domains(run_dir, final, stats)
    lines += _lengths(final, pngs)
    lines += _drops(stats, pngs)
    lines += _llm(stats)
    return "\n".join(lines).rstrip() + "\n", pngs


def write_report(run_dir: str) -> str:
    """Write RUN/report.md and its PNGs in RUN/report/; return the Markdown path."""
    text, pngs = render(run_dir)
    png_dir = fio.join(run_dir, "report")
    for name in PNG_NAMES:  # a chart this run no longer has must not linger from an earlier report
        path = fio.join(png_dir, name)
        if name not in pngs:
            fio.remove(path)
    for name, data in sorted(pngs.items()):
        fio.write_atomic(fio.join(png_dir, name), data)
    path = fio.join(run_dir, "report.md")
    fio.write_atomic(path, text)
    return path
