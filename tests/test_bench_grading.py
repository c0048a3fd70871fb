"""bench/grading.py on a handful of hand-made cases of real benchmark items: the tables, the details
file, the RESULTS.md section it replaces, the issue's bar (--check) and math-verify's configs."""
from __future__ import annotations

import gzip
import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import ROOT
from webinstruct.evaluation import benchmarks

SCRIPT = ROOT / "bench" / "grading.py"
HEAD = "| {} | cases | human: correct % | seed = oracle % | robust = human % | math-verify = human % |"


def load_script():
    spec = importlib.util.spec_from_file_location("bench_grading", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


grading = load_script()


def item(name: str):
    return benchmarks.load(name)[0]


def case(n: int, name: str, protocol: str, style: str, output: str, human: bool, oracle: bool | None = None) -> dict:
    it = item(name)
    return {"id": f"{name}/{protocol}/{n:04d}", "benchmark": name, "protocol": protocol, "style": style,
            "item": it.to_dict(), "output": output, "human": human, "human_answer": "",
            "oracle": human if oracle is None else oracle, "oracle_answer": ""}


def cases() -> list[dict]:
    """Eight plain cases every grader reads the same way (the oracle agrees with the human)."""
    g, a, b = item("gsm8k").gold, item("arc"), item("bbh")
    wrong = next(k for k in a.choices if k != a.gold)
    return [
        case(0, "gsm8k", "mammoth2", "answer-phrase", f"16 - 3 - 4 = 9 eggs, 9 * 2 = {g}. The answer is {g}.", True),
        case(1, "gsm8k", "mammoth2", "wrong", "The answer is 17.", False),
        case(2, "gsm8k", "metamath", "answer-phrase", f"9 * 2 = {g}\nThe answer is: {g}", True),
        # Cut at "\n\nProblem" as the backend would: the invented next problem's answer is not read.
        case(3, "gsm8k", "mammoth2", "run-on", f"The answer is {g}.\n\nProblem:\nWhat is 2+2?\nSolution:\nThe answer is 4.",
             True),
        case(4, "arc", "mammoth2", "mc-letter", f"The answer is {a.gold}.", True),
        case(5, "arc", "mammoth2", "wrong", f"The answer is {wrong}.", False),
        case(6, "bbh", "mammoth2", "answer-phrase", f"So the answer is {b.gold}.", True),
        case(7, "bbh", "mammoth2", "wrong", f"So the answer is {'True' if b.gold == 'False' else 'False'}.", False),
    ]


def write_cases(path, rows: list[dict]) -> str:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return str(path)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def test_bench_on_tiny_cases_tables_details_and_results_section(tmp_path):
    path = write_cases(tmp_path / "cases.jsonl.gz", cases())
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## bench/llm.py\n\nllm numbers\n\n## bench/grading.py\n\nold numbers\n\n"
                       "## bench/recall.py\n\nrecall numbers\n")
    details = tmp_path / "dis.jsonl"
    proc = run("--cases", path, "--details", str(details), "--out", str(results), "--check", "--workers", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    i = lines.index(HEAD.format("benchmark"))
    assert lines[i + 2:i + 6] == ["| gsm8k | 4 | 75.0 | 100.0 | 100.0 | 100.0 |",  # MAmmoTH2's order
                                  "| bbh | 2 | 50.0 | 100.0 | 100.0 | 100.0 |",
                                  "| arc | 2 | 50.0 | 100.0 | 100.0 | 100.0 |",
                                  "| **all** | 8 | 62.5 | 100.0 | 100.0 | 100.0 |"]
    j = lines.index(HEAD.format("protocol"))
    assert lines[j + 2:j + 4] == ["| mammoth2 | 7 | 57.1 | 100.0 | 100.0 | 100.0 |",
                                  "| metamath | 1 | 100.0 | 100.0 | 100.0 | 100.0 |"]
    speed = {line.split(" | ")[0].strip("| "): line for line in lines if line.startswith("| seed |")
             or line.startswith("| robust |") or line.startswith("| math-verify |")}
    assert set(speed) == {"seed", "robust", "math-verify"}
    assert "- the issue's bar: **PASS**" in lines
    assert details.read_text() == ""  # no grader departs from its reference
    text = results.read_text()
    assert "old numbers" not in text and "llm numbers" in text and "recall numbers" in text
    section = text[text.index("## bench/grading.py"):]
    assert section.startswith("## bench/grading.py\n\n`python bench/grading.py --cases ")
    assert "8 cases in" in section and "| **all** | 8 | 62.5 |" in section
    assert text.index("## bench/recall.py") < text.index("## bench/grading.py")  # rewritten at the end


def test_check_fails_and_details_name_the_case(tmp_path):
    rows = cases()
    rows[1]["oracle"] = True  # the oracle "accepted" 17: seed (rightly wrong) now disagrees with it
    rows[4]["human"] = False  # and the human rejects a right letter: robust and math-verify disagree
    path = write_cases(tmp_path / "cases.jsonl.gz", rows)
    details = tmp_path / "dis.jsonl"
    proc = run("--cases", path, "--details", str(details), "--check", "--workers", "1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "| gsm8k | 4 | 75.0 | 75.0 (1) | 100.0 | 100.0 |" in proc.stdout
    assert "| arc | 2 | 0.0 | 100.0 | 50.0 (1) | 50.0 (1) |" in proc.stdout
    assert "| **all** | 8 | 50.0 | 87.5 (1) | 87.5 (1) | 87.5 (1) |" in proc.stdout
    k = proc.stdout.splitlines().index(HEAD.format("style tag"))  # the style tags where robust departs
    assert proc.stdout.splitlines()[k + 2:k + 4] == ["| mc-letter | 1 | 0.0 | 100.0 | 0.0 (1) | 0.0 (1) |", ""]
    assert "- seed = oracle on every case: **FAIL** (7 of 8)" in proc.stdout
    assert "lowest: arc 50.0%" in proc.stdout
    assert "seed = oracle on 7 of 8 cases" in proc.stderr and "robust = human on 50.0% of arc" in proc.stderr
    found = [json.loads(line) for line in details.read_text().splitlines()]
    assert [(d["id"], d["disagree"]) for d in found] == [
        ("gsm8k/mammoth2/0001", ["seed != oracle"]), ("arc/mammoth2/0004", ["robust != human", "math-verify != human"])]
    assert found[0]["output_tail"] == "The answer is 17." and found[0]["seed"]["correct"] is False
    assert set(found[1]) >= {"style", "gold", "human", "oracle", "seed", "robust", "math-verify"}


def tally(n, seed, robust):
    return {"n": n, "human_correct": 0, "seed_oracle": seed, "robust_human": robust, "mv_human": 0}


@pytest.mark.parametrize("per_bench, fails", [
    ({"a": (100, 100, 97), "b": (900, 900, 900)}, []),  # 97% on one benchmark, 99.7% overall: passes
    ({"a": (100, 100, 96), "b": (900, 900, 900)}, ["96.0% of a"]),  # 96% on one benchmark fails
    ({"a": (100, 100, 98), "b": (100, 100, 99)}, ["98.5% of all cases"]),  # overall under 99%
    ({"a": (1000, 999, 1000)}, ["seed = oracle on 999 of 1000"]),  # one seed verdict off fails
    ({"a": (100, 99, 96), "b": (100, 100, 100)}, ["seed = oracle on 199 of 200", "98.0% of all cases",
                                                  "96.0% of a"]),
])
def test_check_is_the_issues_bar(per_bench, fails):
    summary = {"benchmark": {b: tally(*v) for b, v in per_bench.items()}}
    summary["all"] = tally(*(sum(v[k] for v in per_bench.values()) for k in range(3)))
    got = grading.check(summary)
    assert len(got) == len(fails) and all(f in g for f, g in zip(fails, got)), got


def test_check_passes_at_the_bar_and_rounds_down():
    summary = {"benchmark": {"a": tally(100, 100, 97), "b": tally(900, 900, 900)}, "all": tally(1000, 1000, 997)}
    assert grading.check(summary) == []
    assert grading._pct(9999, 10000) == "99.9" and grading._pct(1, 1) == "100.0" and grading._pct(0, 0) == "–"


def test_math_verify_configs_by_kind():
    targets = grading.math_verify_targets
    assert targets(item("gsm8k")) == (None, f"${item('gsm8k').gold}$")
    assert targets(item("arc")) == (tuple(item("arc").choices), item("arc").gold)
    bbh = benchmarks.load("bbh")
    by_gold = {i.gold: i for i in bbh}
    assert targets(by_gold["False"]) == (("True", "true", "False", "false"), "False")
    assert targets(by_gold["valid"]) == (("Valid", "valid", "Invalid", "invalid"), "valid")
    option = next(i for i in bbh if i.gold.startswith("(") and i.choices)
    assert targets(option) == (tuple(f"({k})" for k in option.choices), option.gold)
    number = next(i for i in bbh if i.task == "multistep_arithmetic_two")
    assert targets(number) == (None, f"${number.gold}$")
    dyck = next(i for i in bbh if i.task == "dyck_languages")
    assert targets(dyck) == ((dyck.gold,), dyck.gold)
    verdict = grading.math_verify_alone(item("gsm8k"), f"The answer is {item('gsm8k').gold}.")
    assert verdict["correct"] is True and verdict["note"] == "latex+expr"


def test_help_and_missing_cases(tmp_path):
    proc = run("--help")
    assert proc.returncode == 0 and "math-verify" in proc.stdout and "--check" in proc.stdout
    proc = run("--cases", str(tmp_path / "none.jsonl.gz"))
    assert proc.returncode != 0 and "no case file" in proc.stderr
