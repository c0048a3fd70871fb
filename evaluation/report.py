"""The evaluation report: turn a run's graded predictions into results.json, results.md and
results.png beside them (RUN/eval/).

The Markdown puts our numbers in the published papers' own table layouts (MAmmoTH2's seven
benchmarks, MetaMath's three) with the papers' reference rows underneath, so a reader compares
like with like at a glance. Both graders are reported side by side, and a separate table counts
where they disagree: the gap between the seed grader (the papers' exact-match rules) and the
robust one is itself a finding, and hiding it behind one number would make runs look more
comparable to the papers than they are. Three examples per benchmark show what the robust grader
changed, and a table counts the programs the seed grader ran (MAmmoTH2's harness executes outputs
that print) and how many of them failed, when any ran.

Reading is tolerant of a run cut short: a line that is not a prediction (the torn last one of a
killed run, a garbled line, a record without `output`) is skipped and counted (`skipped_unreadable`). Writing is atomic (`webinstruct.core.io.write_atomic`), so a report being
rewritten never leaves a half file behind, and eval_dir may be a local folder or a URL. matplotlib is imported only by the
chart function, so importing this module stays cheap.
"""
from __future__ import annotations

import io
import json
import math
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterable, Mapping, Sequence

from webinstruct.evaluation.grading.programs import count_programs
from webinstruct.evaluation.predictions import is_prediction, read_counted
from webinstruct.core import io as fio
from webinstruct.core.io import write_atomic

GRADERS = ("seed", "robust")
DASH = "–"  # a benchmark that did not run

# The papers' column order and headers, keyed by our benchmark registry names.
MAMMOTH2_COLUMNS = (("theoremqa", "TheoremQA"), ("math", "MATH"), ("gsm8k", "GSM8K"), ("gpqa", "GPQA"),
                    ("mmlu_stem", "MMLU-ST"), ("bbh", "BBH"), ("arc", "ARC-C"))
METAMATH_COLUMNS = (("gsm8k", "GSM8K"), ("math", "MATH"), ("gsm8k_backward", "GSM8K-Backward"))
MAMMOTH2_BENCHMARKS = tuple(name for name, _ in MAMMOTH2_COLUMNS)

# Reference rows, accuracy in percent, as printed in the papers (full test sets, their own decoding).
# The printed averages are kept as printed (52.8 for MAmmoTH2-7B, though its seven numbers mean 52.74).
MAMMOTH2_SOURCE = "MAmmoTH2 paper, arXiv 2405.03548, main results table"
MAMMOTH2_REFERENCES = {
    "Mistral-7B (MAmmoTH2 paper)": {"theoremqa": 19.2, "math": 11.2, "gsm8k": 36.2, "gpqa": 24.7,
                                    "mmlu_stem": 50.1, "bbh": 55.7, "arc": 74.2, "avg": 38.8},
    "MAmmoTH2-7B (MAmmoTH2 paper)": {"theoremqa": 29.0, "math": 36.7, "gsm8k": 68.4, "gpqa": 32.4,
                                     "mmlu_stem": 62.4, "bbh": 58.6, "arc": 81.7, "avg": 52.8},
}
METAMATH_SOURCE = "MetaMath paper, arXiv 2309.12284"
METAMATH_REFERENCES = {
    "MetaMath-7B (MetaMath paper)": {"gsm8k": 66.5, "math": 19.8},
    "MetaMath-Mistral-7B (MetaMath paper)": {"gsm8k": 77.7, "math": 28.2},
}

# Full test-set sizes (data/benchmarks MANIFEST), to show how much of each set a run scored.
FULL_SIZES = {"theoremqa": 800, "math": 5000, "gsm8k": 1319, "gpqa": 198, "mmlu_stem": 3134, "bbh": 6511,
              "arc": 1172, "gsm8k_backward": 1270}

CHART_BARS = (("ours (seed grader)", "#4C72B0"), ("ours (robust grader)", "#55A868"),
              ("MAmmoTH2-7B (MAmmoTH2 paper)", "#DD8452"), ("Mistral-7B (MAmmoTH2 paper)", "#8C8C8C"))
DPI = 100
EXAMPLES = 3  # disagreement examples shown per benchmark
QUESTION_CHARS = 160  # how much of the question an example shows (its start)
OUTPUT_CHARS = 240  # how much of the output an example shows (its end, where the answer is)


# ---- reading ----------------------------------------------------------------------------------

def read_predictions(path: str) -> tuple[list[dict[str, Any]], int]:
    """The prediction records of one file and how many lines were skipped because they are not a
    prediction: not a JSON object (a killed run leaves a truncated last line), or one without the
    model's `output`. A record that repeats an earlier id replaces it: a resumed run's newer
    verdict wins, and no item counts twice."""
    records, skipped = read_counted(path)
    by_id: dict[str, dict[str, Any]] = {}
    anonymous: list[dict[str, Any]] = []
    for record in records:
        if not is_prediction(record):
            skipped += 1
            continue
        if record.get("id") is None:
            anonymous.append(record)
        else:
            by_id[str(record["id"])] = record
    return list(by_id.values()) + anonymous, skipped


def _correct(record: Mapping[str, Any], grader: str) -> bool:
    """A grader's verdict on a record; a missing verdict counts as wrong (nothing was credited)."""
    verdict = (record.get("verdicts") or {}).get(grader) or {}
    return bool(verdict.get("correct"))


def _accuracy(hits: int, n: int) -> float | None:
    return hits / n if n else None


def summarize_records(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Accuracy under both graders and where they part ways, for one benchmark's records."""
    seed = [_correct(r, "seed") for r in records]
    robust = [_correct(r, "robust") for r in records]
    n = len(records)
    out: dict[str, Any] = {
        "n": n,
        "seed": _accuracy(sum(seed), n),
        "robust": _accuracy(sum(robust), n),
        "disagree": sum(s != r for s, r in zip(seed, robust)),
        "seed_only": sum(s and not r for s, r in zip(seed, robust)),
        "robust_only": sum(r and not s for s, r in zip(seed, robust)),
    }
    tasks: dict[str, list[int]] = {}
    for record, s, r in zip(records, seed, robust):
        counts = tasks.setdefault(str(record.get("task") or ""), [0, 0, 0])
        counts[0] += 1
        counts[1] += s
        counts[2] += r
    out["by_task"] = {task: {"n": c[0], "seed": c[1] / c[0], "robust": c[2] / c[0]}
                      for task, c in sorted(tasks.items())}
    out.update(count_programs(str(((r.get("verdicts") or {}).get("seed") or {}).get("note") or "") for r in records))
    out["disagree_examples"] = disagreement_examples(records, seed, robust)
    return out


def _clip(text: str, limit: int, end: bool = False) -> str:
    """The first (or, `end`, the last) `limit` characters, an ellipsis marking the cut."""
    text = text or ""
    if len(text) <= limit:
        return text
    return "…" + text[-limit:] if end else text[:limit] + "…"


def disagreement_examples(records: Sequence[Mapping[str, Any]], seed: Sequence[bool], robust: Sequence[bool],
                          k: int = EXAMPLES) -> list[dict[str, Any]]:
    """Up to `k` records the graders disagree on, in file order, taking in turn one only robust
    marks correct and one only seed does, so both kinds show: the question's start, the output's
    end, the answer each grader read and its verdict."""
    robust_only = [r for r, s, o in zip(records, seed, robust) if o and not s]
    seed_only = [r for r, s, o in zip(records, seed, robust) if s and not o]
    picked: list[Mapping[str, Any]] = []
    while len(picked) < k and (robust_only or seed_only):
        for side in (robust_only, seed_only):
            if side and len(picked) < k:
                picked.append(side.pop(0))
    out = []
    for record in picked:
        verdicts = record.get("verdicts") or {}
        example: dict[str, Any] = {"id": record.get("id"), "question": _clip(str(record.get("question") or ""), QUESTION_CHARS),
                                   "output": _clip(str(record.get("output") or ""), OUTPUT_CHARS, end=True),
                                   "gold": record.get("gold")}
        for grader in GRADERS:
            v = verdicts.get(grader) or {}
            example[grader] = {"answer": str(v.get("answer") or ""), "correct": bool(v.get("correct")),
                               "note": str(v.get("note") or "")}
        out.append(example)
    return out


def summarize(predictions_dir: str) -> dict[str, dict[str, Any]]:
    """benchmark -> {n, seed, robust (accuracies 0..1), disagree, seed_only, robust_only, by_task,
    programs_executed, program_errors, disagree_examples, skipped_unreadable}, from
    predictions/<benchmark>.jsonl. `programs_executed` counts the outputs whose program the seed
    grader ran (its note starts with "program"), `program_errors` those of them that failed ("program
    error: ..."); `disagree_examples` holds up to three records the graders disagree on. `by_task` is filled for BBH and for any benchmark
    whose records carry more than one task, and is {} otherwise. A file without one readable record
    is left out: the benchmark did not run. `skipped_unreadable` counts lines that are not predictions
    (kept in the file, not graded)."""
    summary: dict[str, dict[str, Any]] = {}
    for name in fio.listdir(predictions_dir):
        if not name.endswith(".jsonl"):
            continue
        benchmark = name[:-len(".jsonl")]
        records, skipped = read_predictions(fio.join(predictions_dir, name))
        if not records:
            continue
        entry = summarize_records(records)
        if benchmark != "bbh" and len(entry["by_task"]) < 2:
            entry["by_task"] = {}
        entry["skipped_unreadable"] = skipped
        summary[benchmark] = entry
    return _ordered(summary)


def _ordered(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The papers' order first (MAmmoTH2's seven, then GSM8K-Backward), anything else by name."""
    known = list(MAMMOTH2_BENCHMARKS) + ["gsm8k_backward"]
    names = [b for b in known if b in summary] + sorted(b for b in summary if b not in known)
    return {b: summary[b] for b in names}


def average(summary: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Mean accuracy over the MAmmoTH2 benchmarks present (a macro average, as the paper's Avg),
    and which benchmarks it covers; None when none of them ran."""
    present = [b for b in MAMMOTH2_BENCHMARKS if b in summary]
    out: dict[str, Any] = {}
    for grader in GRADERS:
        values = [summary[b][grader] for b in present if summary[b][grader] is not None]
        out[grader] = sum(values) / len(values) if values else None
    out["over"] = present
    return out


# ---- rendering --------------------------------------------------------------------------------

def _one_decimal(percent: float) -> str:
    """Round half up to one decimal, as a reader rounds by hand (61.35 -> 61.4), instead of the
    binary-float rounding of format() that turns some printed halves down."""
    exact = Decimal(repr(round(percent, 9)))
    return str(exact.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def _pct(value: float | None) -> str:
    """An accuracy in 0..1 as a percentage with one decimal; a dash when there is none."""
    return DASH if value is None else _one_decimal(100 * value)


def _ref(value: float | None) -> str:
    """A value already in percent (the papers' numbers)."""
    return DASH if value is None else _one_decimal(value)


def _row(cells: Iterable[str]) -> str:
    return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric: bool = True) -> list[str]:
    """A Markdown table; the first column holds labels, the others right-aligned numbers unless
    `numeric` is False."""
    lines = [_row(header), "|" + "---|" + ("---:|" if numeric else "---|") * (len(header) - 1)]
    lines += [_row(r) for r in rows]
    return lines


def _n_cell(benchmark: str, entry: Mapping[str, Any] | None) -> str:
    if entry is None:
        return DASH
    full = FULL_SIZES.get(benchmark)
    return f"{entry['n']} of {full}" if full and entry["n"] < full else str(entry["n"])


def _limit(settings: Mapping[str, Any]) -> int | None:
    """LIMIT as a positive item count, or None for a full run (None, 0, or a negative value)."""
    limit = settings.get("limit")
    if isinstance(limit, str) and limit.strip().isdigit():
        limit = int(limit)
    return limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else None


def _header(settings: Mapping[str, Any], summary: Mapping[str, Mapping[str, Any]]) -> list[str]:
    model = settings.get("model") or settings.get("model_path") or "unnamed model"
    limit = _limit(settings)
    rows = [("model", model), ("model path", settings.get("model_path")),
            ("protocol", settings.get("protocol")), ("prompt form", settings.get("form")),
            ("backend", settings.get("backend")),
            ("limit", f"{limit} items per benchmark" if limit else "none (full test sets)"),
            ("seed", settings.get("seed")), ("max new tokens", settings.get("max_new_tokens"))]
    lines = [f"# Evaluation results: {model}", ""]
    lines += _table(("setting", "value"), [(k, str(v)) for k, v in rows if v not in (None, "")], numeric=False)
    lines.append("")
    small = [b for b, e in summary.items() if e["n"] < FULL_SIZES.get(b, 0)]
    if limit:
        lines += [f"**Small sample.** LIMIT={limit}: each benchmark was scored on at most {limit} items "
                     "(the \"n scored\" rows give the counts), so these numbers carry sampling error of "
                     "several points and are not directly comparable to the reference rows.", ""]
    elif small:
        lines += ["**Partial run.** Fewer items than the full test set were scored for "
                  + ", ".join(small) + " (see the \"n scored\" rows).", ""]
    skipped = {b: e.get("skipped_unreadable", 0) for b, e in summary.items() if e.get("skipped_unreadable")}
    if skipped:
        lines += ["Unreadable prediction lines, kept in the files but not graded (a run cut short, a garbled "
                  "line): "
                  + ", ".join(f"{b} {k}" for b, k in skipped.items()) + ".", ""]
    return lines


def _mammoth2_table(summary: Mapping[str, Mapping[str, Any]], avg: Mapping[str, Any]) -> list[str]:
    present = list(avg["over"])
    header = [""] + [title for _, title in MAMMOTH2_COLUMNS] + ["Avg"]
    rows = []
    for grader in GRADERS:
        rows.append([f"ours ({grader} grader)"]
                    + [_pct(summary[b][grader]) if b in summary else DASH for b in MAMMOTH2_BENCHMARKS]
                    + [_pct(avg[grader])])
    rows.append(["n scored"] + [_n_cell(b, summary.get(b)) for b in MAMMOTH2_BENCHMARKS]
                + [str(sum(summary[b]["n"] for b in present)) if present else DASH])
    full = len(present) == len(MAMMOTH2_BENCHMARKS)
    for label, ref in MAMMOTH2_REFERENCES.items():
        # Over a subset, the reference Avg is recomputed over the same benchmarks so the column compares.
        ref_avg = ref["avg"] if full or not present else sum(ref[b] for b in present) / len(present)
        rows.append([label] + [_ref(ref.get(b)) for b in MAMMOTH2_BENCHMARKS] + [_ref(ref_avg)])
    lines = ["## MAmmoTH2 benchmarks (accuracy %)", ""] + _table(header, rows) + [""]
    if full:
        lines.append("Avg is the mean over the seven benchmarks.")
    elif present:
        printed = ", ".join(f"{label.split(' (')[0]} {ref['avg']:.1f}" for label, ref in MAMMOTH2_REFERENCES.items())
        lines.append(f"Avg is the mean over the {len(present)} of 7 benchmarks that ran "
                     f"({', '.join(present)}); the reference rows' Avg is taken over the same benchmarks "
                     f"(the paper's seven-benchmark averages: {printed}).")
    else:
        lines.append("None of the seven benchmarks ran; the reference rows show the paper's averages.")
    lines += ["", f"Reference rows: {MAMMOTH2_SOURCE}.", ""]
    return lines


def _metamath_table(summary: Mapping[str, Mapping[str, Any]]) -> list[str]:
    names = [b for b, _ in METAMATH_COLUMNS]
    header = [""] + [title for _, title in METAMATH_COLUMNS]
    rows = [[f"ours ({g} grader)"] + [_pct(summary[b][g]) if b in summary else DASH for b in names]
            for g in GRADERS]
    rows.append(["n scored"] + [_n_cell(b, summary.get(b)) for b in names])
    rows += [[label] + [_ref(ref.get(b)) for b in names] for label, ref in METAMATH_REFERENCES.items()]
    return (["## MetaMath benchmarks (accuracy %)", ""] + _table(header, rows) + [""]
            + [f"Reference rows: {METAMATH_SOURCE} (no GSM8K-Backward reference number is given for "
               "these models).", ""])


def _graders_table(summary: Mapping[str, Mapping[str, Any]]) -> list[str]:
    rows = [[b, str(e["n"]), _pct(e["seed"]), _pct(e["robust"]), str(e["disagree"]), str(e["seed_only"]),
             str(e["robust_only"])] for b, e in summary.items()]
    lines = ["## Where the graders disagree", "",
             "seed: the papers' exact-match rules; robust: our equivalence checks. seed-only / robust-only "
             "count items only that grader marked correct.", ""]
    if not rows:
        return lines + ["No predictions found.", ""]
    return lines + _table(("benchmark", "n", "seed %", "robust %", "disagree", "seed-only", "robust-only"),
                          rows) + [""]


def _code(text: str) -> str:
    """Text as a Markdown code span on one line: newlines shown as ⏎, delimited by more backticks
    than it holds in a row."""
    text = " ⏎ ".join(part.strip() for part in str(text).strip().splitlines()) or " "
    run = longest = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or longest else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _said(verdict: Mapping[str, Any]) -> str:
    answer = _code(verdict["answer"]) if verdict["answer"] else "nothing"
    note = f", {verdict['note']}" if verdict.get("note") else ""
    return f"{answer} ({'correct' if verdict['correct'] else 'wrong'}{note})"


def _examples(summary: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Per benchmark with disagreements: how many, and up to three of them, so a reader sees what
    the robust grader changes."""
    shown = [(b, e) for b, e in summary.items() if e.get("disagree")]
    if not shown:
        return []
    lines = ["## Disagreement examples", "",
             "Up to three answers per benchmark that one grader marks correct and the other wrong: the "
             "question's start, the output's end, what each grader read.", ""]
    for benchmark, entry in shown:
        lines += [f"### {benchmark}: the graders disagree on {entry['disagree']} of {entry['n']} answers", ""]
        for example in entry.get("disagree_examples") or []:
            lines += [f"- id {_code(example['id'])}, gold {_code(example['gold'])}",
                      f"  - question: {_code(example['question'])}",
                      f"  - output: {_code(example['output'])}",
                      f"  - seed read {_said(example['seed'])}; robust read {_said(example['robust'])}"]
        lines.append("")
    return lines


def _programs_table(summary: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Programs the seed grader ran (MAmmoTH2's protocol executes outputs that print), where any ran."""
    rows = [[b, str(e.get("programs_executed", 0)), str(e.get("program_errors", 0))]
            for b, e in summary.items() if e.get("programs_executed") or e.get("program_errors")]
    if not rows:
        return []
    return (["## Programs run by the seed grader", "",
             "MAmmoTH2's harness executes an output that prints (`print(`) and takes what it prints as the "
             "answer; errors are programs that failed (exception, timeout).", ""]
            + _table(("benchmark", "programs executed", "program errors"), rows) + [""])


def _task_tables(summary: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines: list[str] = []
    for benchmark, entry in summary.items():
        if not entry.get("by_task"):
            continue
        title = "BBH" if benchmark == "bbh" else benchmark
        rows = [[task or "(none)", str(t["n"]), _pct(t["seed"]), _pct(t["robust"])]
                for task, t in entry["by_task"].items()]
        lines += [f"## {title} per task", ""] + _table(("task", "n", "seed %", "robust %"), rows) + [""]
    return lines


def render_markdown(settings: Mapping[str, Any], summary: Mapping[str, Mapping[str, Any]],
                    avg: Mapping[str, Any] | None = None) -> str:
    """results.md: run header, the two papers' tables with reference rows, grader disagreement with
    examples, programs the seed grader ran (when any), per-task breakdowns."""
    avg = average(summary) if avg is None else avg
    lines = _header(settings, summary)
    lines += _mammoth2_table(summary, avg)
    lines += _metamath_table(summary)
    lines += ["Reference rows come from the papers: full test sets and each paper's own prompts and "
              "decoding setup, not this run's.", ""]
    lines += _graders_table(summary)
    lines += _examples(summary)
    lines += _programs_table(summary)
    lines += _task_tables(summary)
    return "\n".join(lines).rstrip("\n") + "\n"


def render_chart(settings: Mapping[str, Any], summary: Mapping[str, Mapping[str, Any]]) -> bytes:
    """results.png: grouped bars per MAmmoTH2 benchmark, ours under both graders next to the paper's
    MAmmoTH2-7B and Mistral-7B. Drawn on an Agg canvas without pyplot, saved without the Software
    chunk, so the same results give the same bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series = [[100 * summary[b]["seed"] if b in summary and summary[b]["seed"] is not None else math.nan
               for b in MAMMOTH2_BENCHMARKS],
              [100 * summary[b]["robust"] if b in summary and summary[b]["robust"] is not None else math.nan
               for b in MAMMOTH2_BENCHMARKS]]
    series += [[MAMMOTH2_REFERENCES[label][b] for b in MAMMOTH2_BENCHMARKS] for label, _ in CHART_BARS[2:]]
    fig = Figure(figsize=(10, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.2
    for k, ((label, color), values) in enumerate(zip(CHART_BARS, series)):
        xs = [i + (k - 1.5) * width for i in range(len(MAMMOTH2_BENCHMARKS))]
        ax.bar(xs, values, width=width, color=color, label=label)
    for i, benchmark in enumerate(MAMMOTH2_BENCHMARKS):
        if benchmark not in summary:
            ax.text(i - width, 2, "not run", ha="center", va="bottom", rotation=90, fontsize=8, color="#555555")
    ax.set_xticks(range(len(MAMMOTH2_BENCHMARKS)))
    ax.set_xticklabels([title for _, title in MAMMOTH2_COLUMNS])
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy %")
    model = settings.get("model") or settings.get("model_path") or "unnamed model"
    title = f"{model}, {settings.get('protocol') or 'unknown'} protocol"
    if _limit(settings):
        title += f" (LIMIT={_limit(settings)} items per benchmark)"
    ax.set_title(title)
    # Below the axes, so a benchmark near 100% is never hidden behind it.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), fontsize=8, ncol=4, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


# ---- writing ----------------------------------------------------------------------------------

def write_results(eval_dir: str, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Summarize eval_dir/predictions and write results.json, results.md and results.png into
    eval_dir. `settings` are the run's settings (run.json); None reads eval_dir/run.json when there
    is one. Returns what results.json holds."""
    if settings is None:
        run_json = fio.join(eval_dir, "run.json")
        settings = fio.read_json(run_json) if fio.exists(run_json) else {}
    summary = summarize(fio.join(eval_dir, "predictions"))
    avg = average(summary)
    results = {"settings": dict(settings), "benchmarks": summary, "average": avg}
    text = json.dumps(results, indent=2, ensure_ascii=False, default=str) + "\n"
    write_atomic(fio.join(eval_dir, "results.json"), text)
    write_atomic(fio.join(eval_dir, "results.md"), render_markdown(settings, summary, avg))
    write_atomic(fio.join(eval_dir, "results.png"), render_chart(settings, summary))
    return results
