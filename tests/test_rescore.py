"""`webinstruct eval rescore` deletes nothing: a garbled line, a record without `output` and a torn
last line stay in the predictions file byte for byte, are counted (`skipped_unreadable`) in the
command's output and in results.json, and the readable records are re-graded. Resume of generation
still cuts only a torn last line off, never a garbled line in the middle."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from webinstruct.evaluation import benchmarks as B
from webinstruct.evaluation import predictions as P

from conftest import ROOT

CLI = [sys.executable, "-m", "webinstruct.infra.cli", "eval", "rescore"]
GARBLED = b'{"id": "x", "benchmark": "gsm8k", "outp\xff garbled\n'
NO_OUTPUT = b'{"id": "y", "benchmark": "gsm8k", "question": "q"}\n'
TORN = b'{"id": "z", "bench'


def _eval_dir(tmp_path: Path, tail: bytes = b"") -> tuple[Path, Path, list[dict]]:
    d = tmp_path / "eval"
    (d / "predictions").mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"model": "m", "protocol": "mammoth2", "benchmarks": ["gsm8k"]}))
    items = B.load("gsm8k", 2, 0)
    wrong = {"seed": {"answer": "x", "correct": True, "note": ""}, "robust": {"answer": "x", "correct": True, "note": ""}}
    recs = [P.record(it, "p", f"The answer is {it.gold}.", "stop", 5, {}) | {"verdicts": wrong} for it in items]
    path = d / "predictions" / "gsm8k.jsonl"
    path.write_bytes((json.dumps(recs[0]) + "\n").encode() + GARBLED + NO_OUTPUT
                     + (json.dumps(recs[1]) + "\n").encode() + tail)
    return d, path, recs


def test_rescore_keeps_and_counts_what_it_cannot_read(tmp_path):
    d, path, recs = _eval_dir(tmp_path, tail=TORN)
    proc = subprocess.run(CLI + ["--dir", str(d), "--workers", "1"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "skipped_unreadable: 3" in proc.stdout
    lines = path.read_bytes().splitlines(keepends=True)
    assert lines[1] == GARBLED and lines[2] == NO_OUTPUT and lines[4] == TORN  # kept where they were, verbatim
    regraded = [json.loads(lines[0]), json.loads(lines[3])]
    assert [r["id"] for r in regraded] == [r["id"] for r in recs]
    assert all(r["verdicts"]["seed"]["answer"] != "x" for r in regraded)  # graded again
    results = json.loads((d / "results.json").read_text())
    assert results["benchmarks"]["gsm8k"]["skipped_unreadable"] == 3
    assert results["benchmarks"]["gsm8k"]["n"] == 2
    assert results["settings"]["rescored"]["skipped_unreadable"] == 3
    assert "kept in the files but not graded" in (d / "results.md").read_text()
    # A second rescore finds the same lines, still there.
    proc = subprocess.run(CLI + ["--dir", str(d), "--workers", "1"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "skipped_unreadable: 3" in proc.stdout
    assert path.read_bytes().splitlines(keepends=True)[1:3] == [GARBLED, NO_OUTPUT]


def test_resume_repair_cuts_only_a_torn_last_line(tmp_path):
    d, path, _ = _eval_dir(tmp_path, tail=TORN)
    assert P.repair(path) == len(TORN)
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) == 4 and lines[1] == GARBLED and lines[2] == NO_OUTPUT
    assert P.repair(path) == 0
    assert [r["id"] for r in P.read(path)][-1] != "z"


def test_scan_marks_lines_that_are_not_predictions(tmp_path):
    _, path, _ = _eval_dir(tmp_path, tail=TORN)
    marks = [(n, r is not None) for n, _, r in P.scan(path)]
    assert marks == [(1, True), (2, False), (3, False), (4, True), (5, False)]
