"""The graders against the grading case set: how often each reaches the verdict it should, and how fast.

    python bench/grading.py [--cases data/grading_cases/cases.jsonl.gz] [--workers 2] [--timeout 5]
                            [--benchmarks gsm8k,math] [--raw] [--details build/grading_disagreements.jsonl]
                            [--out bench/RESULTS.md] [--check]

Every case (data/grading_cases/README.md) is a real benchmark item, a model-style output, the
verdict of the original scorer of its protocol (`oracle`: MAmmoTH2's or MetaMath's own code, run
unchanged) and the verdict of a careful human grader (`human`). Each case is graded three ways:

- seed: `webinstruct.evaluation.grading.seed.grade_seed(item, output, protocol)`, in this process,
  one case after another. It should agree with the oracle on every case.
- robust: `webinstruct.evaluation.grading.robust.grade_robust_many(pairs, protocol=...)` on a
  `symbolic_pool` of --workers processes (what an evaluation runs: plain checks here, symbolic
  ones in the pool, --timeout seconds per answer). It should agree with the human verdict (the issue's bar: 99%
  overall, 97% on every benchmark).
- math-verify alone, for comparison: math-verify's own `parse` and `verify` as its README shows
  them, nothing of ours in between: `verify(parse(gold), parse(output))`, the gold parsed first
  and passed first. What is parsed with which extraction config, by the item's kind:
    - number, math, theoremqa (numbers, lists), BBH numbers: the gold wrapped in `$...$` and the
      raw output, both with parse's default config (LaTeX and plain expressions);
    - multiple choice (gpqa, mmlu_stem, arc): `StringExtractionConfig(strings=<the item's option
      letters>)` for the gold letter and the output;
    - BBH options: the options as BBH writes them, "(A)", "(B)", ...; BBH True/False, Yes/No,
      valid/invalid and TheoremQA bool: that pair, each word capitalised and in lower case (its
      string matching is case-sensitive); TheoremQA options: "(a)".."(d)";
      any other BBH gold (Dyck sequences, sorted words, option text): the gold string itself,
      all through `StringExtractionConfig(strings=...)`.
  math-verify keeps its own timeouts (signal.alarm, 5 s per parse and per comparison): it runs in
  --workers fresh worker processes, each call in a worker's main thread, the pool killing a call
  after --timeout x 4 seconds (a hang in C code no alarm interrupts); a killed call is a wrong answer.

All three see the same text: the output cut at its protocol's stop strings
(`protocols.stop_strings`, `cut_at_stop`), as an evaluation's backend hands it to the
graders (vLLM stops there); --raw grades the outputs uncut.

Reported per benchmark and per protocol: cases, the share the human marks correct, seed = oracle,
robust = human, math-verify = human (percent of the cases, rounded down, with the number of cases
that disagree), the output style tags where robust departs from the human verdict, and
answers per second of each grader (wall clock, worker start-up included, over all cases). Every
case where a grader disagrees with its reference goes to --details (JSON lines: id, style, the
tail of the output, the gold, the references and all three verdicts) for developers.

--out replaces the `## bench/grading.py` section of that RESULTS file (other sections kept).
--check exits 1 unless seed = oracle on every case, robust = human on at least 99% of all cases
and on at least 97% of each benchmark's.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib
import json
import os
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))  # the worker processes import this file as `grading` (see _by_name)

DEFAULT_CASES = "data/grading_cases/cases.jsonl.gz"  # relative to the checkout
DEFAULT_DETAILS = "build/grading_disagreements.jsonl"
SECTION = "bench/grading.py"
SEED_BAR = 1.0  # seed = oracle on every case
ROBUST_BAR = 0.99  # robust = human, all cases together
ROBUST_BENCH_BAR = 0.97  # robust = human, each benchmark
TAIL = 200  # characters of the output kept in the details file
BENCH_ORDER = ("gsm8k", "math", "theoremqa", "gpqa", "mmlu_stem", "bbh", "arc", "gsm8k_backward")
PAIRS = (("true", "false"), ("yes", "no"), ("valid", "invalid"))


# ---- the cases --------------------------------------------------------------------------------

def load_cases(path: Path, benchmarks: list[str] | None = None) -> list[dict]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        cases = [json.loads(line) for line in fh if line.strip()]
    if benchmarks:
        cases = [c for c in cases if c["benchmark"] in benchmarks]
    return cases


def graded_text(case: dict, item, raw: bool = False) -> str:
    """The text an evaluation's graders see: the output cut at its protocol's stop strings."""
    if raw:
        return case["output"]
    from webinstruct.evaluation.protocols import cut_at_stop, stop_strings
    return cut_at_stop(case["output"], stop_strings(case["protocol"]))


# ---- math-verify alone (runs in the worker processes) ------------------------------------------

def math_verify_targets(item) -> tuple[tuple[str, ...] | None, str]:
    """(strings for StringExtractionConfig, or None for parse's default config; the gold text to parse)."""
    gold = str(item.gold)
    if item.kind == "choice":
        return tuple(item.choices) or ("A", "B", "C", "D"), gold
    if item.kind == "theoremqa":
        answer_type = str((item.meta or {}).get("answer_type", ""))
        if answer_type == "bool":
            return ("True", "true", "False", "false"), gold
        if answer_type == "option":
            return ("(a)", "(b)", "(c)", "(d)"), gold
    if item.kind == "bbh":
        if len(gold) == 3 and gold[0] == "(" and gold[2] == ")" and item.choices:
            return tuple(f"({k})" for k in item.choices), gold
        for pair in PAIRS:
            if gold.lower() in pair:  # its matching is case-sensitive: both words in both cases
                return tuple(form for w in pair for form in (w.capitalize(), w)), gold
        if not gold.lstrip("-").isdigit():
            return (gold,), gold
    return None, f"${gold}$"


def math_verify_alone(item, output: str) -> dict:
    """math-verify's verdict: verify(parse(gold), parse(output)) with the configs above."""
    from math_verify import StringExtractionConfig, parse, verify

    strings, gold_text = math_verify_targets(item)
    if strings is None:
        gold, pred = parse(gold_text), parse(output)
        how = "latex+expr"
    else:
        config = [StringExtractionConfig(strings=strings)]
        gold, pred = parse(gold_text, config), parse(output, config)
        how = "strings " + "|".join(strings)
    return {"answer": str(pred[-1]) if pred else "", "correct": bool(verify(gold, pred)),
            "note": how if gold else f"{how}; the gold did not parse"}


def _by_name(fn):
    """`fn` as the worker processes can unpickle it: run as a script this file is `__main__`, which
    names another module in a worker, so take the same function from this file imported as
    `grading` (bench/ is on sys.path, and the workers get this process's sys.path)."""
    module = importlib.import_module("grading")
    if getattr(module, "__file__", None) and Path(module.__file__).resolve() != Path(__file__).resolve():
        raise SystemExit(f"another module named grading shadows bench/grading.py: {module.__file__}")
    return getattr(module, fn.__name__)


# ---- grading ----------------------------------------------------------------------------------

def grade_cases(cases: list[dict], workers: int = 2, timeout: float = 5.0, raw: bool = False) -> dict:
    """Every case graded three ways: {"rows": [...], "seconds": {grader: wall s}, "programs": Counter
    (executed, errors: the seed grader's), "timeouts": Counter (robust, mv: answers over the time limit)}."""
    from webinstruct.evaluation.grading.pool import IsolatedPool
    from webinstruct.evaluation.grading.programs import count_programs
    from webinstruct.evaluation.grading.robust import grade_robust_many, symbolic_pool
    from webinstruct.evaluation.grading.seed import grade_seed
    from webinstruct.evaluation.items import Item

    items = [Item.from_dict(c["item"]) for c in cases]
    texts = [graded_text(c, it, raw) for c, it in zip(cases, items)]
    seconds = {}

    t0 = time.perf_counter()
    seed = [grade_seed(it, text, c["protocol"]) for c, it, text in zip(cases, items, texts)]
    seconds["seed"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    pool = symbolic_pool(workers, timeout)
    try:
        robust: list = [None] * len(cases)
        for protocol in sorted({c["protocol"] for c in cases}):
            at = [i for i, c in enumerate(cases) if c["protocol"] == protocol]
            for i, v in zip(at, grade_robust_many([(items[i], texts[i]) for i in at], pool=pool, protocol=protocol)):
                robust[i] = v
    finally:
        seconds["robust"] = time.perf_counter() - t0
        pool.close()

    t0 = time.perf_counter()
    mv_pool = IsolatedPool(_by_name(math_verify_alone), workers=workers, timeout=4 * timeout,
                           preload=("math_verify",))
    try:
        outcomes = mv_pool.map(list(zip(items, texts)))
    finally:
        seconds["math-verify"] = time.perf_counter() - t0
        mv_pool.close()
    mv = [o.value if o.status == "ok" else {"answer": "", "correct": False, "note": f"{o.status}: {o.detail}"}
          for o in outcomes]

    timeouts = Counter(robust=sum(v.note == "timeout" for v in robust),
                       mv=sum(o.status == "timeout" for o in outcomes))
    counted = count_programs(seed)
    programs = Counter(executed=counted["programs_executed"], errors=counted["program_errors"])
    rows = []
    for c, it, text, s, r, m in zip(cases, items, texts, seed, robust, mv):
        rows.append({"id": c["id"], "benchmark": c["benchmark"], "protocol": c["protocol"],
                     "style": c.get("style", ""), "gold": it.gold, "text": text,
                     "human": bool(c["human"]), "human_answer": c.get("human_answer", ""),
                     "oracle": bool(c["oracle"]), "oracle_answer": c.get("oracle_answer", ""),
                     "seed": s.to_dict(), "robust": r.to_dict(), "math-verify": m})
    return {"rows": rows, "seconds": seconds, "programs": programs, "timeouts": timeouts}


def disagreements(row: dict) -> list[str]:
    out = []
    if row["seed"]["correct"] != row["oracle"]:
        out.append("seed != oracle")
    if row["robust"]["correct"] != row["human"]:
        out.append("robust != human")
    if row["math-verify"]["correct"] != row["human"]:
        out.append("math-verify != human")
    return out


def detail(row: dict) -> dict:
    text = row["text"]
    return {"id": row["id"], "benchmark": row["benchmark"], "protocol": row["protocol"], "style": row["style"],
            "disagree": disagreements(row), "output_tail": text[-TAIL:] if len(text) > TAIL else text,
            "gold": row["gold"], "human": row["human"], "human_answer": row["human_answer"],
            "oracle": row["oracle"], "oracle_answer": row["oracle_answer"],
            "seed": row["seed"], "robust": row["robust"], "math-verify": row["math-verify"]}


# ---- summary ----------------------------------------------------------------------------------

def tally(rows: list[dict]) -> dict:
    """Counts of agreement for one group of rows."""
    return {"n": len(rows),
            "human_correct": sum(r["human"] for r in rows),
            "seed_oracle": sum(r["seed"]["correct"] == r["oracle"] for r in rows),
            "robust_human": sum(r["robust"]["correct"] == r["human"] for r in rows),
            "mv_human": sum(r["math-verify"]["correct"] == r["human"] for r in rows)}


def _order(names) -> list[str]:
    names = set(names)
    return [b for b in BENCH_ORDER if b in names] + sorted(names - set(BENCH_ORDER))


def summarize(rows: list[dict]) -> dict:
    """{"benchmark": {name: tally}, "protocol": {...}, "style": {...}, "tag": {...}, "all": tally};
    a style is tags joined by "+", and a row counts under each of its tags."""
    out = {}
    for key in ("benchmark", "protocol", "style"):
        groups: dict[str, list[dict]] = {}
        for r in rows:
            groups.setdefault(r[key], []).append(r)
        names = _order(groups) if key == "benchmark" else sorted(groups)
        out[key] = {name: tally(groups[name]) for name in names}
    tags: dict[str, list[dict]] = {}
    for r in rows:  # "phrase+number-words" counts under "phrase" and under "number-words"
        for tag in dict.fromkeys(t for t in r["style"].split("+") if t):
            tags.setdefault(tag, []).append(r)
    out["tag"] = {tag: tally(tags[tag]) for tag in sorted(tags)}
    out["all"] = tally(rows)
    return out


def check(summary: dict) -> list[str]:
    """The issue's bar; what fails it (empty: it passes)."""
    fails = []
    total = summary["all"]
    if total["n"] == 0:
        return ["no cases"]
    if total["seed_oracle"] < SEED_BAR * total["n"]:
        fails.append(f"seed = oracle on {total['seed_oracle']} of {total['n']} cases (bar: all)")
    if total["robust_human"] < ROBUST_BAR * total["n"]:
        fails.append(f"robust = human on {_pct(total['robust_human'], total['n'])}% of all cases "
                     f"(bar: {100 * ROBUST_BAR:g}%)")
    for name, t in summary["benchmark"].items():
        if t["robust_human"] < ROBUST_BENCH_BAR * t["n"]:
            fails.append(f"robust = human on {_pct(t['robust_human'], t['n'])}% of {name} "
                         f"(bar: {100 * ROBUST_BENCH_BAR:g}% per benchmark)")
    return fails


# ---- tables -----------------------------------------------------------------------------------

def _pct(k: int, n: int) -> str:
    """k of n in percent, one decimal, rounded down (99.96% is not shown as 100.0)."""
    return "–" if not n else f"{(1000 * k // n) / 10:.1f}"


def _agree(k: int, n: int) -> str:
    return _pct(k, n) + (f" ({n - k})" if k < n else "")


def _table_rows(groups: dict, total: dict | None) -> list[str]:
    rows = [(name, t) for name, t in groups.items()] + ([("**all**", total)] if total else [])
    return [f"| {name} | {t['n']} | {_pct(t['human_correct'], t['n'])} | {_agree(t['seed_oracle'], t['n'])} "
            f"| {_agree(t['robust_human'], t['n'])} | {_agree(t['mv_human'], t['n'])} |" for name, t in rows]


def render(summary: dict, seconds: dict, n: int, programs: Counter, workers: int, details: str = "",
           timeouts: Counter | None = None) -> str:
    head = "| {} | cases | human: correct % | seed = oracle % | robust = human % | math-verify = human % |"
    rule = "|---|---:|---:|---:|---:|---:|"
    lines = ["Agreement in percent of the cases (rounded down); in parentheses the number of cases that "
             "disagree.", "", head.format("benchmark"), rule]
    lines += _table_rows(summary["benchmark"], summary["all"])
    lines += ["", head.format("protocol"), rule]
    lines += _table_rows(summary["protocol"], None)
    off = sorted(((tag, t) for tag, t in summary["tag"].items() if t["robust_human"] < t["n"]),
                 key=lambda kv: (kv[1]["robust_human"] - kv[1]["n"], kv[0]))
    lines += ["", "Output styles where robust departs from the human verdict (a case counts under each tag "
              "of its style, e.g. `phrase+number-words`), most departures first:", ""]
    if off:
        lines += [head.format("style tag"), rule] + _table_rows(dict(off), None)
    else:
        lines.append("none.")
    lines += ["", "| grader | answers/s | wall s | processes |", "|---|---:|---:|---|"]
    procs = {"seed": "this one",
             "robust": f"this one + {workers} workers for what plain checks cannot decide",
             "math-verify": f"{workers} workers"}
    for grader in ("seed", "robust", "math-verify"):
        s = seconds[grader]
        lines.append(f"| {grader} | {n / s if s else float('inf'):,.0f} | {s:.2f} | {procs[grader]} |")
    lines.append("")
    if programs.get("executed"):
        k = programs["executed"]
        lines += [f"The seed grader ran {k} program{'s' if k > 1 else ''} ({programs['errors']} failed).", ""]
    if timeouts and (timeouts.get("robust") or timeouts.get("mv")):
        lines += [f"Answers over the time limit (graded wrong): robust {timeouts.get('robust', 0)}, "
                  f"math-verify {timeouts.get('mv', 0)}.", ""]
    fails = check(summary)
    total = summary["all"]
    worst = min(summary["benchmark"].items(), key=lambda kv: kv[1]["robust_human"] / kv[1]["n"], default=None)

    def verdict(ok: bool) -> str:
        return "**PASS**" if ok else "**FAIL**"

    lines.append(f"- seed = oracle on every case: {verdict(total['seed_oracle'] == total['n'])} "
                 f"({total['seed_oracle']} of {total['n']})")
    lines.append(f"- robust = human on >= {100 * ROBUST_BAR:g}% of all cases: "
                 f"{verdict(total['robust_human'] >= ROBUST_BAR * total['n'])} "
                 f"({_pct(total['robust_human'], total['n'])}%)")
    if worst:
        name, t = worst
        ok = all(t["robust_human"] >= ROBUST_BENCH_BAR * t["n"] for t in summary["benchmark"].values())
        lines.append(f"- robust = human on >= {100 * ROBUST_BENCH_BAR:g}% of each benchmark's cases: {verdict(ok)} "
                     f"(lowest: {name} {_pct(t['robust_human'], t['n'])}%)")
    lines.append(f"- the issue's bar: {verdict(not fails)}")
    if details:
        lines += ["", f"Cases where a grader disagrees with its reference: `{details}`."]
    return "\n".join(lines)


# ---- RESULTS.md -------------------------------------------------------------------------------

def _versions() -> str:
    from importlib import metadata

    parts = []
    for name in ("math-verify", "latex2sympy2_extended", "sympy"):
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(parts)


def header(argv: list[str], cases_path: Path, cases: list[dict], elapsed: float, load: float, raw: bool) -> str:
    from bench.recall import cpu_model
    command = shlex.join(["python", "bench/grading.py", *argv])
    digest = hashlib.sha256(cases_path.read_bytes()).hexdigest()[:12]
    try:
        shown = cases_path.resolve().relative_to(ROOT)
    except ValueError:
        shown = cases_path
    cut = "uncut (--raw)" if raw else "cut at their protocol's stop strings, as an evaluation hands them over"
    return (f"`{command}` on {time.strftime('%Y-%m-%d')}, {cpu_model()}, {os.cpu_count()} cores; load average "
            f"{load:.2f} at start; {len(cases)} cases in `{shown}` (sha256 {digest}), outputs {cut}; "
            f"{_versions()}; the bench took {elapsed:.0f} s.\n\n"
            "seed is compared with the oracle (the original scorer of the case's protocol), robust and "
            "math-verify alone with the human verdict; math-verify alone is `verify(parse(gold), "
            "parse(output))` with the extraction configs the script's docstring lists.\n\n")


# ---- main -------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=DEFAULT_CASES, help="case file, JSON lines, gzipped or not "
                    "(default: %(default)s in the checkout)")
    ap.add_argument("--benchmarks", default="", help="comma-separated benchmarks to grade (default: all)")
    ap.add_argument("--workers", type=int, default=2, help="processes of the robust and math-verify pools "
                    "(default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per answer for the robust grader's "
                    "symbolic checks, as an evaluation's grade_timeout; math-verify calls get four times this "
                    "(default: %(default)s)")
    ap.add_argument("--raw", action="store_true", help="grade the outputs uncut (default: cut at the protocol's "
                    "stop strings, as in an evaluation)")
    ap.add_argument("--details", default=DEFAULT_DETAILS, help="JSON lines of the cases where a grader "
                    "disagrees with its reference (default: %(default)s in the checkout; '' for none)")
    ap.add_argument("--out", default="", help=f"write the `## {SECTION}` section of this RESULTS file")
    ap.add_argument("--check", action="store_true", help="exit 1 unless seed = oracle on every case and robust "
                    f"= human on >= {100 * ROBUST_BAR:g}%% of all cases and >= {100 * ROBUST_BENCH_BAR:g}%% of "
                    "each benchmark's")
    args = ap.parse_args(argv)
    t_bench = time.perf_counter()
    load = os.getloadavg()[0]
    cases_path = ROOT / args.cases if args.cases == DEFAULT_CASES else Path(args.cases)
    if not cases_path.exists():
        raise SystemExit(f"no case file at {cases_path}")
    benchmarks = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    cases = load_cases(cases_path, benchmarks)
    if not cases:
        raise SystemExit(f"no cases in {cases_path}" + (f" for {', '.join(benchmarks)}" if benchmarks else ""))
    ids = Counter(c["id"] for c in cases)
    if len(ids) < len(cases):
        raise SystemExit(f"repeated case ids in {cases_path}: {[i for i, k in ids.items() if k > 1][:5]}")
    print(f"grading {len(cases)} cases from {cases_path} ({args.workers} workers) ...", file=sys.stderr, flush=True)

    graded = grade_cases(cases, workers=args.workers, timeout=args.timeout, raw=args.raw)
    rows = graded["rows"]
    summary = summarize(rows)
    details = ""
    if args.details:
        path = ROOT / args.details if args.details == DEFAULT_DETAILS else Path(args.details)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            for row in rows:
                if disagreements(row):
                    fh.write(json.dumps(detail(row), ensure_ascii=False) + "\n")
        try:
            details = str(path.resolve().relative_to(ROOT))
        except ValueError:
            details = str(path)
    report = render(summary, graded["seconds"], len(rows), graded["programs"], args.workers, details,
                    graded["timeouts"])
    print(report)
    elapsed = time.perf_counter() - t_bench
    if args.out:
        from bench.recall import replace_section
        replace_section(Path(args.out), SECTION, header(argv, cases_path, cases, elapsed, load, args.raw)
                        + report + "\n")
    fails = check(summary)
    if args.check and fails:
        print("\ncheck failed:\n" + "\n".join(f"- {f}" for f in fails), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
