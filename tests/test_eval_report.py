"""Evaluation report: exact summary numbers from hand-made predictions (truncated last line, a
resumed run's repeated id, BBH with two tasks, benchmarks that did not run), the papers' table
layouts with their reference rows, results.json's shape, a real PNG, atomic writes."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from webinstruct.evaluation import report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAMMOTH2_HEADER = "| | TheoremQA | MATH | GSM8K | GPQA | MMLU-ST | BBH | ARC-C | Avg |"
METAMATH_HEADER = "| | GSM8K | MATH | GSM8K-Backward |"
SETTINGS = {"model": "tiny-mistral", "model_path": "/runs/r1/train/final", "protocol": "mammoth2",
            "form": "step", "backend": "vllm", "benchmarks": ["gsm8k", "math", "bbh", "arc"], "limit": 5,
            "seed": 0, "max_new_tokens": 2048}


def pred(benchmark: str, i, seed: bool, robust: bool, task: str = "", seed_note: str = "",
         output: str = "The answer is 1.", question: str = "", answers: tuple[str, str] = ("1", "1")) -> dict:
    return {"id": str(i), "benchmark": benchmark, "task": task or benchmark, "question": question or f"q{i}",
            "prompt": f"Problem: q{i}\nSolution:", "output": output, "gold": "1",
            "verdicts": {"seed": {"answer": answers[0], "correct": seed, "note": seed_note},
                         "robust": {"answer": answers[1], "correct": robust, "note": ""}}}


def write_lines(path: str, records: list[dict], tail: str = "") -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
        fh.write(tail)


@pytest.fixture
def eval_dir(tmp_path):
    """gsm8k 4 items (+ a truncated line), math 5, bbh 2 tasks, arc with a repeated id; theoremqa,
    mmlu_stem and gsm8k_backward absent; gpqa holds only a truncated line (it never got going)."""
    d = str(tmp_path / "eval")
    p = os.path.join(d, "predictions")
    gsm8k = [pred("gsm8k", 0, True, True), pred("gsm8k", 1, False, True), pred("gsm8k", 2, True, False),
             pred("gsm8k", 3, False, False)]
    write_lines(os.path.join(p, "gsm8k.jsonl"), gsm8k, tail='{"id": "4", "benchmark": "gsm8k", "verd')
    write_lines(os.path.join(p, "math.jsonl"),
                [pred("math", 0, True, True), pred("math", 1, False, True), pred("math", 2, False, True),
                 pred("math", 3, False, False), pred("math", 4, False, False)])
    write_lines(os.path.join(p, "bbh.jsonl"),
                [pred("bbh", 0, True, True, "boolean_expressions"), pred("bbh", 1, True, True, "boolean_expressions"),
                 pred("bbh", 2, False, True, "date_understanding"), pred("bbh", 3, False, False, "date_understanding"),
                 pred("bbh", 4, True, True, "date_understanding")])
    # A resumed run wrote id 0 again with a newer verdict: it replaces the first, n stays 2.
    write_lines(os.path.join(p, "arc.jsonl"),
                [pred("arc", 0, False, False), pred("arc", 1, False, False), pred("arc", 0, True, True)])
    write_lines(os.path.join(p, "gpqa.jsonl"), [], tail='{"id": "0", "bench')
    with open(os.path.join(d, "run.json"), "w") as fh:
        json.dump(SETTINGS, fh)
    return d


def full_run(tmp_path, limit=None) -> str:
    """All seven MAmmoTH2 benchmarks plus GSM8K-Backward, two items each."""
    d = str(tmp_path / "full")
    for b in report.MAMMOTH2_BENCHMARKS + ("gsm8k_backward",):
        write_lines(os.path.join(d, "predictions", f"{b}.jsonl"), [pred(b, 0, True, True), pred(b, 1, False, True)])
    report.write_results(d, dict(SETTINGS, limit=limit))
    return d


def read(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


# ---- summary ----------------------------------------------------------------------------------

def test_summary_numbers_exact(eval_dir):
    s = report.summarize(os.path.join(eval_dir, "predictions"))
    assert list(s) == ["math", "gsm8k", "bbh", "arc"]  # the paper's column order; gpqa had no record
    examples = {b: e.pop("disagree_examples") for b, e in s.items()}
    assert s["gsm8k"] == {"n": 4, "seed": 0.5, "robust": 0.5, "disagree": 2, "seed_only": 1, "robust_only": 1,
                          "by_task": {}, "programs_executed": 0, "program_errors": 0, "skipped_unreadable": 1}
    assert s["math"] == {"n": 5, "seed": 0.2, "robust": 0.6, "disagree": 2, "seed_only": 0, "robust_only": 2,
                         "by_task": {}, "programs_executed": 0, "program_errors": 0, "skipped_unreadable": 0}
    # The disagreements shown: robust-only and seed-only in turn, in file order.
    assert [x["id"] for x in examples["gsm8k"]] == ["1", "2"]
    assert [x["id"] for x in examples["math"]] == ["1", "2"]
    assert examples["arc"] == []
    assert s["arc"]["n"] == 2 and s["arc"]["seed"] == 0.5 and s["arc"]["robust"] == 0.5
    bbh = s["bbh"]
    assert (bbh["n"], bbh["seed"], bbh["robust"], bbh["disagree"], bbh["seed_only"], bbh["robust_only"]) \
        == (5, 0.6, 0.8, 1, 0, 1)
    assert bbh["by_task"] == {"boolean_expressions": {"n": 2, "seed": 1.0, "robust": 1.0},
                              "date_understanding": {"n": 3, "seed": pytest.approx(1 / 3),
                                                     "robust": pytest.approx(2 / 3)}}


def test_multi_task_benchmark_gets_by_task_and_missing_dir_is_empty(tmp_path):
    p = str(tmp_path / "predictions")
    write_lines(os.path.join(p, "mmlu_stem.jsonl"),
                [pred("mmlu_stem", 0, True, True, "physics"), pred("mmlu_stem", 1, False, True, "biology")])
    s = report.summarize(p)
    assert s["mmlu_stem"]["by_task"] == {"biology": {"n": 1, "seed": 0.0, "robust": 1.0},
                                         "physics": {"n": 1, "seed": 1.0, "robust": 1.0}}
    assert report.summarize(str(tmp_path / "nowhere")) == {}


def test_average_over_present_mammoth2_benchmarks_only(tmp_path):
    summary = {"gsm8k": {"seed": 0.5, "robust": 0.75}, "math": {"seed": 0.25, "robust": 0.25},
               "gsm8k_backward": {"seed": 1.0, "robust": 1.0}}  # not one of the seven: not averaged
    avg = report.average(summary)
    assert avg == {"seed": 0.375, "robust": 0.5, "over": ["math", "gsm8k"]}
    assert report.average({}) == {"seed": None, "robust": None, "over": []}


# ---- files ------------------------------------------------------------------------------------

def test_results_json_structure(eval_dir):
    returned = report.write_results(eval_dir, SETTINGS)
    data = json.loads(read(os.path.join(eval_dir, "results.json")))
    assert data == json.loads(json.dumps(returned))
    assert set(data) == {"settings", "benchmarks", "average"}
    assert data["settings"] == SETTINGS
    assert set(data["benchmarks"]) == {"gsm8k", "math", "bbh", "arc"}
    assert data["average"]["over"] == ["math", "gsm8k", "bbh", "arc"]
    assert data["average"]["seed"] == pytest.approx((0.2 + 0.5 + 0.6 + 0.5) / 4)
    assert data["average"]["robust"] == pytest.approx((0.6 + 0.5 + 0.8 + 0.5) / 4)
    # No temporary files left beside the results.
    assert sorted(os.listdir(eval_dir)) == ["predictions", "results.json", "results.md", "results.png", "run.json"]


def test_settings_default_to_run_json_and_path_objects_work(eval_dir):
    data = report.write_results(pathlib.Path(eval_dir))  # webinstruct.evaluation.run passes a Path
    assert data["settings"] == SETTINGS
    assert os.path.exists(os.path.join(eval_dir, "results.md"))


def test_markdown_tables_on_a_partial_limited_run(eval_dir):
    report.write_results(eval_dir, SETTINGS)
    md = read(os.path.join(eval_dir, "results.md"))
    lines = md.splitlines()
    assert lines[0] == "# Evaluation results: tiny-mistral"
    for row in ("| protocol | mammoth2 |", "| backend | vllm |", "| limit | 5 items per benchmark |"):
        assert row in lines
    assert "LIMIT=5" in md and "Small sample" in md
    assert "gsm8k 1" in md  # the truncated line is reported
    # MAmmoTH2 table in the paper's layout; benchmarks that did not run show a dash.
    i = lines.index(MAMMOTH2_HEADER)
    assert lines[i + 1] == "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    assert lines[i + 2] == "| ours (seed grader) | – | 20.0 | 50.0 | – | – | 60.0 | 50.0 | 45.0 |"
    assert lines[i + 3] == "| ours (robust grader) | – | 60.0 | 50.0 | – | – | 80.0 | 50.0 | 60.0 |"
    assert lines[i + 4] == "| n scored | – | 5 of 5000 | 4 of 1319 | – | – | 5 of 6511 | 2 of 1172 | 16 |"
    # Reference rows: the paper's numbers; Avg over the same four benchmarks, half rounded up.
    assert lines[i + 5] == "| Mistral-7B (MAmmoTH2 paper) | 19.2 | 11.2 | 36.2 | 24.7 | 50.1 | 55.7 | 74.2 | 44.3 |"
    assert lines[i + 6] == "| MAmmoTH2-7B (MAmmoTH2 paper) | 29.0 | 36.7 | 68.4 | 32.4 | 62.4 | 58.6 | 81.7 | 61.4 |"
    assert "mean over the 4 of 7 benchmarks that ran (math, gsm8k, bbh, arc)" in md
    assert "Mistral-7B 38.8, MAmmoTH2-7B 52.8" in md
    assert "arXiv 2405.03548" in md
    # MetaMath table.
    j = lines.index(METAMATH_HEADER)
    assert lines[j + 2] == "| ours (seed grader) | 50.0 | 20.0 | – |"
    assert lines[j + 3] == "| ours (robust grader) | 50.0 | 60.0 | – |"
    assert lines[j + 5] == "| MetaMath-7B (MetaMath paper) | 66.5 | 19.8 | – |"
    assert lines[j + 6] == "| MetaMath-Mistral-7B (MetaMath paper) | 77.7 | 28.2 | – |"
    assert "arXiv 2309.12284" in md
    assert "full test sets" in md and "decoding" in md
    # Grader disagreement and BBH per task.
    k = lines.index("| benchmark | n | seed % | robust % | disagree | seed-only | robust-only |")
    assert lines[k + 2:k + 6] == ["| math | 5 | 20.0 | 60.0 | 2 | 0 | 2 |", "| gsm8k | 4 | 50.0 | 50.0 | 2 | 1 | 1 |",
                                  "| bbh | 5 | 60.0 | 80.0 | 1 | 0 | 1 |", "| arc | 2 | 50.0 | 50.0 | 0 | 0 | 0 |"]
    b = lines.index("## BBH per task")
    assert lines[b + 2] == "| task | n | seed % | robust % |"
    assert lines[b + 4:b + 6] == ["| boolean_expressions | 2 | 100.0 | 100.0 |",
                                  "| date_understanding | 3 | 33.3 | 66.7 |"]
    assert md.count("per task") == 1  # only BBH has tasks here


def test_markdown_full_run_uses_papers_averages(tmp_path):
    md = read(os.path.join(full_run(tmp_path), "results.md"))
    lines = md.splitlines()
    i = lines.index(MAMMOTH2_HEADER)
    assert lines[i + 2] == "| ours (seed grader) | 50.0 | 50.0 | 50.0 | 50.0 | 50.0 | 50.0 | 50.0 | 50.0 |"
    assert lines[i + 4] == ("| n scored | 2 of 800 | 2 of 5000 | 2 of 1319 | 2 of 198 | 2 of 3134 | 2 of 6511 "
                            "| 2 of 1172 | 14 |")
    assert lines[i + 5] == "| Mistral-7B (MAmmoTH2 paper) | 19.2 | 11.2 | 36.2 | 24.7 | 50.1 | 55.7 | 74.2 | 38.8 |"
    assert lines[i + 6] == "| MAmmoTH2-7B (MAmmoTH2 paper) | 29.0 | 36.7 | 68.4 | 32.4 | 62.4 | 58.6 | 81.7 | 52.8 |"
    assert "Avg is the mean over the seven benchmarks." in md
    j = lines.index(METAMATH_HEADER)
    assert lines[j + 3] == "| ours (robust grader) | 100.0 | 100.0 | 100.0 |"
    assert "| limit | none (full test sets) |" in lines
    assert "Small sample" not in md and "Partial run" in md  # two items each, no LIMIT: still called out
    assert "– |" not in lines[i + 2]


def test_png_is_real_and_deterministic(eval_dir, tmp_path):
    report.write_results(eval_dir, SETTINGS)
    with open(os.path.join(eval_dir, "results.png"), "rb") as fh:
        png = fh.read()
    assert png.startswith(PNG_MAGIC) and len(png) > 5000
    summary = report.summarize(os.path.join(eval_dir, "predictions"))
    assert report.render_chart(SETTINGS, summary) == png
    assert report.render_chart(SETTINGS, {}) != png  # the bars do depend on the results


def test_failed_chart_leaves_previous_png_whole(eval_dir, monkeypatch):
    report.write_results(eval_dir, SETTINGS)
    with open(os.path.join(eval_dir, "results.png"), "rb") as fh:
        old_png = fh.read()

    def broken(*_):
        raise RuntimeError("chart failed")

    monkeypatch.setattr(report, "render_chart", broken)
    write_lines(os.path.join(eval_dir, "predictions", "theoremqa.jsonl"), [pred("theoremqa", 0, True, True)])
    with pytest.raises(RuntimeError):
        report.write_results(eval_dir, SETTINGS)
    # The files written before the failure are whole and new; the PNG is the old one; no temp files.
    assert json.loads(read(os.path.join(eval_dir, "results.json")))["benchmarks"]["theoremqa"]["n"] == 1
    with open(os.path.join(eval_dir, "results.png"), "rb") as fh:
        assert fh.read() == old_png
    assert not [n for n in os.listdir(eval_dir) if n.startswith(".")]


def test_write_atomic_leaves_no_partial_file(tmp_path):
    target = str(tmp_path / "out" / "x.json")
    report.write_atomic(target, b"old")
    with pytest.raises(TypeError):
        report.write_atomic(target, 12345)  # neither bytes nor text
    assert read(target) == "old"
    assert os.listdir(os.path.dirname(target)) == ["x.json"]


def test_import_does_not_load_matplotlib():
    code = "import sys, webinstruct.evaluation.report; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.strip() == "False"


# ---- disagreement examples and programs --------------------------------------------------------

def test_disagreement_examples_alternate_and_clip():
    long_q = "Q" * 300
    long_out = "x" * 500 + "\nThe answer is 7."
    records = [pred("math", 0, True, True), pred("math", 1, False, True, question=long_q, output=long_out,
                                                 answers=("", "7")),
               pred("math", 2, False, True), pred("math", 3, False, True), pred("math", 4, True, False,
                                                                                answers=("7", "7.5")),
               pred("math", 5, True, False)]
    entry = report.summarize_records(records)
    assert (entry["disagree"], entry["seed_only"], entry["robust_only"]) == (5, 2, 3)
    ex = entry["disagree_examples"]
    assert [x["id"] for x in ex] == ["1", "4", "2"]  # robust-only, seed-only, robust-only: at most three
    first = ex[0]
    assert first["question"] == "Q" * report.QUESTION_CHARS + "…"
    assert first["output"].startswith("…") and first["output"].endswith("The answer is 7.")
    assert len(first["output"]) == report.OUTPUT_CHARS + 1
    assert first["seed"] == {"answer": "", "correct": False, "note": ""}
    assert first["robust"] == {"answer": "7", "correct": True, "note": ""}
    assert ex[1]["seed"]["answer"] == "7" and ex[1]["robust"] == {"answer": "7.5", "correct": False, "note": ""}
    # No disagreement: no example.
    assert report.summarize_records([pred("math", 0, True, True)])["disagree_examples"] == []


def test_markdown_shows_disagreement_examples(eval_dir):
    write_lines(os.path.join(eval_dir, "predictions", "theoremqa.jsonl"),
                [pred("theoremqa", 0, False, True, question="What is `x`?\nCompute it.",
                      output="Step 1.\nSo x = ``1``.\nThe answer is 1", answers=("", "1"), seed_note="no answer phrase")])
    report.write_results(eval_dir, SETTINGS)
    md = read(os.path.join(eval_dir, "results.md"))
    lines = md.splitlines()
    i = lines.index("## Disagreement examples")
    assert i > lines.index("## Where the graders disagree")
    assert "### gsm8k: the graders disagree on 2 of 4 answers" in lines
    assert "### arc" not in md  # no disagreement there
    t = lines.index("### theoremqa: the graders disagree on 1 of 1 answers")
    assert lines[t + 2:t + 6] == [
        "- id `0`, gold `1`",
        "  - question: `` What is `x`? ⏎ Compute it. ``",
        "  - output: ``` Step 1. ⏎ So x = ``1``. ⏎ The answer is 1 ```",
        "  - seed read nothing (wrong, no answer phrase); robust read `1` (correct)"]
    g = lines.index("### gsm8k: the graders disagree on 2 of 4 answers")
    assert lines[g + 2] == "- id `1`, gold `1`"
    assert lines[g + 5] == "  - seed read `1` (wrong); robust read `1` (correct)"
    assert lines[g + 6] == "- id `2`, gold `1`"
    assert "## Programs run by the seed grader" not in md  # none ran
    data = json.loads(read(os.path.join(eval_dir, "results.json")))
    assert data["benchmarks"]["theoremqa"]["disagree_examples"][0]["seed"]["note"] == "no answer phrase"


def test_program_counts_in_json_and_markdown(tmp_path):
    d = str(tmp_path / "eval")
    write_lines(os.path.join(d, "predictions", "theoremqa.jsonl"),
                [pred("theoremqa", 0, True, True, seed_note="program"),
                 pred("theoremqa", 1, False, False, seed_note="program error: timeout"),
                 pred("theoremqa", 2, False, False, seed_note="program error: NameError"),
                 pred("theoremqa", 3, True, True, seed_note="no answer phrase")])
    write_lines(os.path.join(d, "predictions", "gsm8k.jsonl"),
                [pred("gsm8k", 0, True, True, seed_note="program"), pred("gsm8k", 1, True, True)])
    write_lines(os.path.join(d, "predictions", "math.jsonl"), [pred("math", 0, True, True)])
    data = report.write_results(d, SETTINGS)
    b = data["benchmarks"]
    assert (b["theoremqa"]["programs_executed"], b["theoremqa"]["program_errors"]) == (3, 2)
    assert (b["gsm8k"]["programs_executed"], b["gsm8k"]["program_errors"]) == (1, 0)
    assert (b["math"]["programs_executed"], b["math"]["program_errors"]) == (0, 0)
    on_disk = json.loads(read(os.path.join(d, "results.json")))["benchmarks"]
    assert on_disk["theoremqa"]["program_errors"] == 2
    lines = read(os.path.join(d, "results.md")).splitlines()
    i = lines.index("## Programs run by the seed grader")
    k = lines.index("| benchmark | programs executed | program errors |", i)
    assert lines[k + 1] == "|---|---:|---:|"
    assert lines[k + 2:k + 4] == ["| theoremqa | 3 | 2 |", "| gsm8k | 1 | 0 |"]
    assert not any(line.startswith("| math |") for line in lines[k:])  # math ran none: no row
    assert "## Disagreement examples" not in lines  # the graders agree everywhere here
