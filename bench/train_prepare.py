"""Training data prepared once (training/prepared.py): preparing speed, the preparer's memory, and
the memory of training ranks that map the prepared arrays, for growing numbers of rows.

    python bench/train_prepare.py [--rows 10000 30000 100000] [--readers 2] [--steps 100] [--out bench/RESULTS.md]

For each size N: N synthetic question/answer pairs (word counts drawn from log-normal laws, a long
tail of long answers, math words, numbers and LaTeX) are written to a JSON-lines file, then
  - prepare: `prepared.prepare` in a process of its own with SmolLM2's tokenizer (chat format,
    max_len 1024, packing on): wall time, examples/s, the process's peak RSS and that of its
    encoding workers (`--workers`, spawned once past INLINE_EXAMPLES examples);
  - ranks: `--readers` processes that each open the folder (np.load, mmap_mode="r"), build the
    StepOrder of a 2-rank run (micro batch 4, accumulation 4) and collate `--steps` optimizer
    steps of micro batches as a training rank does; each reports its RSS (anonymous and
    file-backed, /proc/self/status) after importing torch, and after reading;
  - before (`--baseline`): what every rank did before (read_examples -> mix -> encode_all -> pack
    in Python lists), in a process of its own: its peak RSS, once per rank.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MAX_LEN = 1024
MICRO, ACCUM, WORLD = 4, 4, 2
WORDS = ("the of a to is in that for it as with on be by this are or an which from can if then let we "
         "solve equation find value function integral derivative prime number triangle angle probability "
         "matrix vector limit series sum area volume radius therefore hence substitute simplify compute "
         "answer step first second total each per cent ratio speed distance time cost price").split()
MATH = ["x", "y", "n", "\\frac{1}{2}", "\\sqrt{3}", "=", "+", "-", "\\cdot", "x^2", "(a+b)", "\\pi", "\\int_0^1",
        "dx", "\\leq", "\\sum_{k=1}^{n}", "2k+1"]
NOTES = """
Reading the numbers: a rank's anonymous memory, what it holds privately, stays flat in the number
of rows: the rows stay in the files (what grows is the StepOrder permutation, 8 bytes a row). Its
file-backed RSS counts the mapped pages it has touched, the kernel mapping up to 64 kB around each
faulting page already in the page cache: page cache shared by the ranks of a node, dropped under
memory pressure, and bounded by the size of the files. Before, every rank held every encoded
example in Python lists (the "before" columns: anonymous memory growing with the rows, some
30 kB per example) and every rank spent the whole tokenising time; now rank 0 tokenises once.
The preparer keeps some 150 bytes per example at its peak (lengths, flags, offsets, the mix order,
the packing plan and their sorts) besides working sets of constant size (a 512-example encoding chunk, a 1M-token gather
chunk); its file-backed peak is the scratch store and output files it maps. Each encoding worker
holds transformers and the tokenizer. Preparing speed is tokenising speed (`encode`: for the chat
format two tokenizer calls per example): it grows with the encoding processes on a machine with
free cores; on this 2-core machine shared with other work it swings with the load, so compare
the rows of one run, not runs.
"""


def words(rng: random.Random, mean: float, sigma: float, lo: int, hi: int) -> str:
    n = int(min(hi, max(lo, rng.lognormvariate(math.log(mean), sigma))))
    out = []
    for _ in range(n):
        r = rng.random()
        out.append(rng.choice(MATH) if r < 0.12 else str(rng.randint(0, 9999)) if r < 0.2 else rng.choice(WORDS))
    return " ".join(out)


def write_pairs(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w") as fh:
        for _ in range(n):
            fh.write(json.dumps({"question": words(rng, 45, 0.6, 5, 600),
                                 "answer": words(rng, 160, 0.7, 5, 2000)}) + "\n")


def config(work: Path, n: int):
    from webinstruct.training.config import TrainConfig

    return TrainConfig(model="smollm2-135m", run=str(work / f"run-{n}"), format="chat", max_len=MAX_LEN,
                       packing=True, micro_batch=MICRO, seed=1,
                       data=[{"path": str(work / f"pairs-{n}.jsonl"), "weight": 1.0, "name": "synthetic"}])


def status_mb() -> dict[str, float]:
    """RssAnon, RssFile and VmHWM of this process, in MiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


class PeakSampler:
    """The largest RssAnon and RssFile of this process, sampled every 20 ms in a thread (VmHWM mixes
    both: the preparer maps its scratch files, whose pages are file-backed and reclaimable)."""

    def __init__(self):
        import threading

        self.peak = {"RssAnon": 0.0, "RssFile": 0.0}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.02):
            now = status_mb()
            for key in self.peak:
                self.peak[key] = max(self.peak[key], now[key])

    def close(self) -> dict[str, float]:
        self.stop.set()
        self.thread.join()
        return self.peak


def run_prepare(work: Path, n: int, workers: int) -> dict:
    from webinstruct.pipeline.llm.server import ensure_model
    from webinstruct.training import prepared as P
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ensure_model())
    before = status_mb()
    sampler = PeakSampler()
    t0 = time.time()
    got = P.prepare(config(work, n), tok, workers=workers)
    wall = time.time() - t0
    peak = sampler.close()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"wall": wall, "examples_per_s": got.meta["examples_per_s"], "rows": got.meta["rows"],
            "sequences": got.meta["sequences"], "tokens": got.meta["tokens"], "workers": got.meta["workers"],
            "anon_before_mb": before["RssAnon"], "anon_peak_mb": peak["RssAnon"], "file_peak_mb": peak["RssFile"],
            "peak_mb": status_mb()["VmHWM"], "worker_peak_mb": children,
            "folder": str(got.folder), "bytes": sum(p.stat().st_size for p in got.folder.iterdir())}


def run_reader(folder: str, rank: int, steps: int) -> dict:
    import torch  # noqa: F401  (what a rank has loaded anyway)

    from webinstruct.training import prepared as P
    from webinstruct.training.batches import StepOrder, collate

    start = status_mb()
    got = P.open_prepared(Path(folder))
    order = StepOrder(len(got.rows), MICRO, ACCUM, WORLD, seed=1)
    t0 = time.time()
    tokens = 0
    for step in range(steps):
        for micro in range(ACCUM):
            rows = [got.rows[i] for i in order.rows(step, micro, rank)]
            batch = collate(rows, 0, packed=True)
            tokens += int(batch["input_ids"].numel())
    seconds = time.time() - t0
    end = status_mb()
    return {"start": start, "end": end, "batches_per_s": steps * ACCUM / seconds, "tokens": tokens}


def run_baseline(work: Path, n: int) -> dict:
    from transformers import AutoTokenizer

    from webinstruct.core.formatting import encode_all
    from webinstruct.pipeline.llm.server import ensure_model
    from webinstruct.training.data import mix, pack, read_examples

    tok = AutoTokenizer.from_pretrained(ensure_model())
    cfg = config(work, n)
    before = status_mb()
    sampler = PeakSampler()
    t0 = time.time()
    sources = [(list(read_examples(s["path"], s["name"])), float(s["weight"])) for s in cfg.data_sources()]
    rows = pack(encode_all(mix(sources, cfg.seed), tok, cfg.format, cfg.max_len), cfg.max_len)
    wall = time.time() - t0
    peak = sampler.close()
    return {"wall": wall, "rows": len(rows), "anon_before_mb": before["RssAnon"], "anon_peak_mb": peak["RssAnon"]}


def child(*args: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    res = subprocess.run([sys.executable, __file__, "--child", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    ap.add_argument("--workers", type=int, default=0, help="encoding processes (0: the usable cores, at most 16)")
    ap.add_argument("--readers", type=int, default=2, help="rank-like processes mapping the arrays")
    ap.add_argument("--steps", type=int, default=100, help="optimizer steps each reader collates")
    ap.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--out", default=str(ROOT / "bench/RESULTS.md"), help="RESULTS.md to update ('' : print only)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, work, n = args.child[0], Path(args.child[1]), int(args.child[2])
        if kind == "prepare":
            out = run_prepare(work, n, int(args.child[3]))
        elif kind == "reader":
            out = run_reader(args.child[3], int(args.child[4]), int(args.child[5]))
        else:
            out = run_baseline(work, n)
        print(json.dumps(out))
        return 0

    from webinstruct.training.prepared import default_workers

    workers = args.workers or default_workers()
    load_start = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        work = Path(tmp)
        for n in args.rows:
            write_pairs(work / f"pairs-{n}.jsonl", n)
            prep = child("prepare", str(work), str(n), str(workers))
            print(f"{n}: prepared in {prep['wall']:.1f} s, {prep['examples_per_s']:.0f} examples/s", flush=True)
            readers = [subprocess.Popen([sys.executable, __file__, "--child", "reader", str(work), str(n), prep["folder"],
                                         str(rank), str(args.steps)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                                        env={**os.environ, "OMP_NUM_THREADS": "1"})
                       for rank in range(args.readers)]
            reads = []
            for p in readers:
                stdout, _ = p.communicate()
                if p.returncode != 0:
                    raise RuntimeError(f"reader failed ({p.returncode})")
                reads.append(json.loads(stdout.strip().splitlines()[-1]))
            base = child("baseline", str(work), str(n)) if args.baseline else None
            results.append((n, prep, reads, base))
            print(json.dumps({"n": n, "prepare": prep, "readers": reads, "baseline": base}), flush=True)

    lines = ["| rows (pairs) | tokens | packed rows | prepare s | examples/s | encoding processes | "
             "preparer anon RSS MiB | preparer file-backed peak MiB | encoding worker peak RSS MiB | on disk MiB |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n, prep, _, _ in results:
        lines.append(f"| {n:,} | {prep['tokens']:,} | {prep['rows']:,} | {prep['wall']:.1f} | "
                     f"{prep['examples_per_s']:,.0f} | {prep['workers']} | {prep['anon_before_mb']:.0f} -> "
                     f"{prep['anon_peak_mb']:.0f} | {prep['file_peak_mb']:.0f} | "
                     f"{prep['worker_peak_mb']:.0f} | {prep['bytes'] / 2**20:.1f} |")
    lines += ["", f"Per rank ({args.readers} processes, each collating {args.steps} steps x {ACCUM} micro batches "
                  f"of {MICRO} packed rows; RSS after `import torch` -> after reading; before: the in-memory path "
                  "each rank ran until now, anon RSS before -> peak):", "",
              "| rows (pairs) | anon RSS MiB | file-backed RSS MiB | batches/s per rank | before: anon RSS per rank MiB "
              "| before: tokenising s per rank |",
              "|---:|---:|---:|---:|---:|---:|"]
    for n, _, reads, base in results:
        anon = " / ".join(f"{r['start']['RssAnon']:.0f} -> {r['end']['RssAnon']:.0f}" for r in reads)
        file_backed = " / ".join(f"{r['start']['RssFile']:.0f} -> {r['end']['RssFile']:.0f}" for r in reads)
        speed = sum(r["batches_per_s"] for r in reads) / len(reads)
        before = f"{base['anon_before_mb']:.0f} -> {base['anon_peak_mb']:.0f}" if base else "-"
        before_s = f"{base['wall']:.1f}" if base else "-"
        lines.append(f"| {n:,} | {anon} | {file_backed} | {speed:,.0f} | {before} | {before_s} |")
    report = "\n".join(lines)
    print(report)
    report += "\n" + NOTES
    if args.out:
        from bench.recall import replace_section

        command = "python bench/train_prepare.py" + (
            "" if args.rows == [10_000, 30_000, 100_000] else " --rows " + " ".join(map(str, args.rows)))
        replace_section(Path(args.out), "bench/train_prepare.py",
                        f"`{command}` on {time.strftime('%Y-%m-%d')}: SmolLM2's tokenizer, chat format, max_len "
                        f"{MAX_LEN}, packing, synthetic pairs (log-normal lengths: questions ~45 words, answers "
                        f"~160 words, long tail); x86_64, {os.cpu_count()} CPU cores shared with other work (1-minute load "
                        f"average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end).\n\n" + report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
