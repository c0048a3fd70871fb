"""`make eval` end to end with SmolLM2 on vLLM's CPU build, resume after kill -9, the openai and hf
backends, GPQA stable across runs, rescoring; plus the prediction files' crash rules."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from webinstruct.evaluation import predictions as P
from webinstruct.evaluation.benchmarks import REGISTRY
from webinstruct.evaluation.run import _check_identity

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "webinstruct.infra.cli", "eval"]


def _records(eval_dir: Path, name: str) -> list[dict]:
    return P.read(eval_dir / "predictions" / f"{name}.jsonl")


def test_torn_last_line_is_skipped_and_repaired(tmp_path):
    path = tmp_path / "p.jsonl"
    P.append(path, [{"id": "1"}, {"id": "2"}])
    with open(path, "a") as f:
        f.write('{"id": "3", "out')  # a kill in the middle of a write
    assert [r["id"] for r in P.read(path)] == ["1", "2"]
    assert P.repair(path) == len('{"id": "3", "out')
    P.append(path, [{"id": "3"}])
    assert [r["id"] for r in P.read(path)] == ["1", "2", "3"]
    P.rewrite(path, [{"id": "9"}])
    assert [r["id"] for r in P.read(path)] == ["9"] and not list(tmp_path.glob("*.tmp"))


def test_predictions_of_other_settings_are_not_mixed(tmp_path):
    settings = {"model_path": "/m", "protocol": "mammoth2", "form": "short", "exemplars": "repaired", "shots": None,
                "max_new_tokens": None, "seed": 0, "backend": "vllm"}
    (tmp_path / "predictions").mkdir()
    (tmp_path / "run.json").write_text(json.dumps(settings))
    P.append(tmp_path / "predictions" / "gsm8k.jsonl", [{"id": "1"}])
    _check_identity(tmp_path, dict(settings, limit=5), fresh=False)  # a larger LIMIT may resume
    with pytest.raises(ValueError, match="protocol: 'mammoth2' -> 'metamath'.*--fresh"):
        _check_identity(tmp_path, dict(settings, protocol="metamath"), fresh=False)
    _check_identity(tmp_path, dict(settings, protocol="metamath"), fresh=True)
    assert not (tmp_path / "predictions").exists() and not (tmp_path / "run.json").exists()


@pytest.fixture(scope="module")
def make_eval(tmp_path_factory, llm_model_dir):
    """One `make eval` over every benchmark: 2 questions each, 64 new tokens (SmolLM2 rarely needs
    more to state an answer or fail to), vLLM CPU backend, the embedded model (no trained one)."""
    run = tmp_path_factory.mktemp("evalrun")
    cmd = ["make", "-s", "eval", f"RUN={run}", "LIMIT=2", "MAX_NEW_TOKENS=64"]
    t = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return run, proc, time.monotonic() - t


@pytest.mark.slow
def test_make_eval_writes_predictions_results_table_and_chart(make_eval):
    run, proc, seconds = make_eval
    out = run / "eval"
    for name in REGISTRY:
        recs = _records(out, name)
        assert len(recs) == 2, name
        for r in recs:
            assert r["prompt"] and isinstance(r["output"], str) and r["finish"] in ("stop", "length")
            assert set(r["verdicts"]) == {"seed", "robust"}
            assert all(isinstance(v["correct"], bool) for v in r["verdicts"].values())
    results = json.loads((out / "results.json").read_text())
    assert set(results["benchmarks"]) == set(REGISTRY)
    for r in results["benchmarks"].values():
        assert r["n"] == 2 and 0 <= r["seed"] <= 1 and 0 <= r["robust"] <= 1
    assert results["settings"]["model"] == "smollm2-135m" and results["settings"]["backend"] == "vllm"
    assert results["settings"]["generation"]["generated"] == 16
    md = (out / "results.md").read_text()
    assert "| | TheoremQA | MATH | GSM8K | GPQA | MMLU-ST | BBH | ARC-C | Avg |" in md
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "gsm8k_backward" in proc.stdout and "results.md" in proc.stdout


@pytest.mark.slow
def test_rerun_generates_nothing_and_keeps_the_files(make_eval):
    run, _, _ = make_eval
    before = {p.name: p.read_bytes() for p in (run / "eval" / "predictions").glob("*.jsonl")}
    proc = subprocess.run(["make", "-s", "eval", f"RUN={run}", "LIMIT=2", "MAX_NEW_TOKENS=64"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((run / "eval" / "results.json").read_text())["settings"]["generation"]["generated"] == 0
    assert before == {p.name: p.read_bytes() for p in (run / "eval" / "predictions").glob("*.jsonl")}


@pytest.mark.slow
def test_gpqa_is_identical_across_two_runs(make_eval, tmp_path):
    run, _, _ = make_eval
    out = tmp_path / "again"
    proc = subprocess.run(CLI + ["--run", str(run), "--out", str(out), "--benchmarks", "gpqa", "--limit", "2",
                                 "--max-new-tokens", "64"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    keys = ("id", "question", "gold", "choices", "prompt", "output", "verdicts")
    first = [{k: r[k] for k in keys} for r in _records(run / "eval", "gpqa")]
    second = [{k: r[k] for k in keys} for r in _records(out, "gpqa")]
    assert first == second
    assert json.loads((out / "results.json").read_text())["benchmarks"]["gpqa"] == \
        json.loads((run / "eval" / "results.json").read_text())["benchmarks"]["gpqa"]


@pytest.mark.slow
def test_rescore_regrades_without_generating(make_eval, tmp_path):
    run, _, _ = make_eval
    import shutil
    copy = tmp_path / "eval"
    shutil.copytree(run / "eval", copy)
    path = copy / "predictions" / "gsm8k.jsonl"
    recs = P.read(path)
    for r in recs:
        r["verdicts"] = {"seed": {"answer": "x", "correct": True, "note": ""},
                         "robust": {"answer": "x", "correct": True, "note": ""}}
    P.rewrite(path, recs)
    proc = subprocess.run(CLI + ["rescore", "--dir", str(copy)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["verdicts"] for r in P.read(path)] == [r["verdicts"] for r in _records(run / "eval", "gsm8k")]
    assert json.loads((copy / "run.json").read_text())["rescored"]["verdicts_changed"] >= 1


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_with_the_hf_backend(tmp_path, llm_model_dir):
    out = tmp_path / "eval"
    cmd = CLI + ["--model", llm_model_dir, "--out", str(out), "--benchmarks", "gsm8k", "--limit", "6",
                 "--backend", "hf", "--protocol", "metamath", "--batch-size", "1", "--max-new-tokens", "48"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    path = out / "predictions" / "gsm8k.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(P.read(path)) < 2:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = P.read(path)
    assert 2 <= len(done_before) < 6
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = P.read(path)
    assert len(after) == 6 and len({r["id"] for r in after}) == 6
    assert after[: len(done_before)] == done_before, "finished answers are kept, not asked again"
    generated = json.loads((out / "results.json").read_text())["settings"]["generation"]["generated"]
    assert generated == 6 - len(done_before)
    assert all(r["prompt"].endswith("### Response: Let's think step by step.") for r in after)


@pytest.mark.slow
def test_openai_backend_against_the_local_server(llm_server, tmp_path):
    out = tmp_path / "eval"
    proc = subprocess.run(CLI + ["--model", llm_server.model_dir, "--out", str(out), "--benchmarks", "gsm8k,arc",
                                 "--limit", "2", "--backend", "openai", "--protocol", "chat", "--llm-url", llm_server.url,
                                 "--llm-model", llm_server.model, "--max-new-tokens", "64", "--max-model-len", "4096"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("gsm8k", "arc"):
        recs = _records(out, name)
        assert len(recs) == 2 and all(r["tokens"] > 0 for r in recs)
        # SmolLM2's own chat template, with the MAmmoTH2 exemplars as earlier turns.
        assert all(r["prompt"].count("<|im_start|>user") == REGISTRY[name].shots + 1 for r in recs)
    assert json.loads((out / "run.json").read_text())["backend"] == "openai"


def test_default_model_is_the_newest_trained_one(tmp_path, llm_model_dir):
    from webinstruct.evaluation.config import EvalConfig
    from webinstruct.evaluation.run import pick_model

    assert pick_model(EvalConfig(run=str(tmp_path))) == ("smollm2-135m", llm_model_dir)
    for name in ("older", "newer"):
        final = tmp_path / "train" / name / "final"
        final.mkdir(parents=True)
        (final / "config.json").write_text("{}")
        time.sleep(0.05)
    assert pick_model(EvalConfig(run=str(tmp_path))) == ("newer (trained)", str(tmp_path / "train/newer/final"))
    assert pick_model(EvalConfig(run=str(tmp_path), model=llm_model_dir))[1] == llm_model_dir


def test_dead_endpoint_is_a_clear_error(tmp_path, llm_model_dir):
    proc = subprocess.run(CLI + ["--model", llm_model_dir, "--out", str(tmp_path / "e"), "--benchmarks", "gsm8k",
                                 "--limit", "1", "--backend", "openai", "--llm-url", "http://127.0.0.1:9/v1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "no LLM server answers at http://127.0.0.1:9/v1" in proc.stderr
