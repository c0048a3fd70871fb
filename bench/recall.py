"""Recall throughput and math fidelity: webinstruct against a datatrove-style baseline, side by side.

    python bench/recall.py [--repeat 3] [--warc GLOB ...] [--classifier PATH] [--out bench/RESULTS.md]

Both pipelines run in this one process, one core, on the same pages read from real WARC files,
with the same fastText classifier and threshold:

- baseline (built like datatrove's pipeline): warcio records -> trafilatura(favor_precision)
  text -> fastText score on every page -> keep above the threshold.
- webinstruct: our WARC reader -> latin-script gate and fastText on a cheap tag-stripped text ->
  math-aware extraction only for pages that pass -> fastText score -> keep above the threshold.

Printed: pages/s per core for each, the ratio, how many pages each kept and how many of the
known math pages; then extraction fidelity (TeX-command and word recall) of both extractors on
the math pages with reference extractions in ../shared/web. Timings are the best of --repeat
passes (each pass runs baseline and ours alternately, so machine noise hits both).
"""
from __future__ import annotations

import argparse
import glob
import logging
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

from pipeline.recall.warc import read_pages  # noqa: E402
from pipeline.text import fidelity  # noqa: E402


def load_pages(patterns: list[str]) -> list[dict]:
    pages = []
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            pages.extend(read_pages(path))
    return pages


def baseline_pass(pages, clf, threshold):
    import trafilatura

    kept = []
    for p in pages:
        text = trafilatura.extract(p["html"], favor_precision=True, include_comments=False,
                                   deduplicate=False) or ""
        if text and clf.score(text) >= threshold:
            kept.append(p["url"])
    return kept


def ours_pass(pages, scorer):
    kept = []
    tallies: dict = {}
    for p in pages:
        doc = scorer(p, lambda name, n=1: None, tallies)
        if doc is not None:
            kept.append(p["url"])
    return kept


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def fidelity_table(shared: Path):
    import trafilatura

    from pipeline.text.html_text import html_to_text

    rows = []
    for name, html_path, reference in fidelity.load_reference_pairs(shared / "web"):
        html = html_path.read_text(encoding="utf-8", errors="replace")
        base = trafilatura.extract(html, favor_precision=True, include_comments=False, deduplicate=False) or ""
        ours = html_to_text(html)
        rows.append((name, fidelity.score_page(reference, base), fidelity.score_page(reference, ours)))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warc", nargs="+", default=[str(ROOT / "data/sample/warc/*.warc*"),
                                                  str(SHARED / "web/warc/*.warc*")])
    ap.add_argument("--classifier", default=str(ROOT / "runs/sample/classifier/classifier.bin"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench/RESULTS.md"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("trafilatura").setLevel(logging.CRITICAL)

    from infra.cli import ensure_classifier
    from pipeline.config import load_recipe
    from pipeline.recall.classifier import Classifier
    from pipeline.recall.config import RecallConfig
    from pipeline.recall.transforms import ScorePages

    ensure_classifier(args.classifier, load_recipe(str(ROOT / "infra/recipes/sample.yaml")))
    clf = Classifier.load(args.classifier)
    cfg = RecallConfig()
    scorer = ScorePages(args.classifier, -1.0, True, cfg.prefilter_threshold, cfg.min_chars, 1, cfg.min_latin_share)
    # Ablations: what each of the two shortcuts contributes.
    no_gate = ScorePages(args.classifier, -1.0, True, cfg.prefilter_threshold, cfg.min_chars, 1, 0.0)
    full = ScorePages(args.classifier, -1.0, False, cfg.prefilter_threshold, cfg.min_chars, 1, 0.0)
    pages = load_pages(args.warc)
    math_urls = {p["url"] for p in pages if any(k in p["url"] for k in (
        "stackexchange.com/questions", "mathhelpforum", "physicsforums", "libretexts", "uniteasy",
        "wiki/Variance", "terrytao", "llm-webkit-tests"))}
    print(f"{len(pages)} HTML pages from {len(args.warc)} WARC globs ({len(math_urls)} known math pages); "
          f"threshold {clf.threshold:.3f}; best of {args.repeat} passes")

    base_times, our_times, ablation = [], [], {"no_gate": [], "full": []}
    for _ in range(args.repeat):
        t, base_kept = timed(baseline_pass, pages, clf, clf.threshold)
        base_times.append(t)
        t, our_kept = timed(ours_pass, pages, scorer)
        our_times.append(t)
        t, no_gate_kept = timed(ours_pass, pages, no_gate)
        ablation["no_gate"].append(t)
        t, full_kept = timed(ours_pass, pages, full)
        ablation["full"].append(t)
    tb, to = min(base_times), min(our_times)
    base_pps, our_pps = len(pages) / tb, len(pages) / to
    ratio = base_pps and our_pps / base_pps
    both = set(base_kept) & set(our_kept)
    lines = [
        "| pipeline | pages/s per core (best) | median | kept | known math pages kept |",
        "|---|---:|---:|---:|---:|",
        f"| baseline: warcio + trafilatura(favor_precision) + fastText on every page | {base_pps:.1f} | "
        f"{len(pages) / statistics.median(base_times):.1f} | {len(base_kept)} | {len(set(base_kept) & math_urls)}/{len(math_urls)} |",
        f"| webinstruct: cheap score -> math-aware extraction on likely pages -> fastText | {our_pps:.1f} | "
        f"{len(pages) / statistics.median(our_times):.1f} | {len(our_kept)} | {len(set(our_kept) & math_urls)}/{len(math_urls)} |",
        f"| ablation: webinstruct without the latin-script gate | {len(pages) / min(ablation['no_gate']):.1f} | "
        f"{len(pages) / statistics.median(ablation['no_gate']):.1f} | {len(no_gate_kept)} | "
        f"{len(set(no_gate_kept) & math_urls)}/{len(math_urls)} |",
        f"| ablation: webinstruct math-aware extraction on every page (no gate, no cheap score) | "
        f"{len(pages) / min(ablation['full']):.1f} | {len(pages) / statistics.median(ablation['full']):.1f} | "
        f"{len(full_kept)} | {len(set(full_kept) & math_urls)}/{len(math_urls)} |",
        "",
        f"**Throughput ratio (webinstruct / baseline): {ratio:.2f}x**; pages kept by both: {len(both)}; "
        f"only baseline: {len(set(base_kept) - both)}; only webinstruct: {len(set(our_kept) - both)}.",
    ]
    fid = fidelity_table(SHARED) if SHARED.exists() else []
    if fid:
        lines += ["", "| math page (reference: llm-webkit) | baseline TeX | baseline words | ours TeX | ours words |",
                  "|---|---:|---:|---:|---:|"]
        for name, b, o in fid:
            lines.append(f"| {name} | {b['tex_recall']:.2f} | {b['word_recall']:.2f} | "
                         f"{o['tex_recall']:.2f} | {o['word_recall']:.2f} |")
        mean = lambda rows, side, key: statistics.mean(r[side][key] for r in rows)  # noqa: E731
        lines.append(f"| **mean** | **{mean(fid, 1, 'tex_recall'):.2f}** | **{mean(fid, 1, 'word_recall'):.2f}** | "
                     f"**{mean(fid, 2, 'tex_recall'):.2f}** | **{mean(fid, 2, 'word_recall'):.2f}** |")
    report = "\n".join(lines)
    print(report)
    if args.out:
        write_results(Path(args.out), report, len(pages), args)
    return 0


def write_results(path: Path, report: str, n_pages: int, args) -> None:
    import platform

    header = (f"## bench/recall.py\n\n`python bench/recall.py --repeat {args.repeat}` on "
              f"{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, one process, "
              f"{n_pages} real HTML pages.\n\n")
    text = path.read_text() if path.exists() else "# Benchmark results\n\nLatest results of the scripts under `bench/`.\n\n"
    start = text.find("## bench/recall.py")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + text[end + 1:] if end >= 0 else text[:start]
    path.write_text(text.rstrip() + "\n\n" + header + report + "\n")


if __name__ == "__main__":
    sys.exit(main())
