"""Data-parallel replicas (backends/replicas.py) on a CPU, and the evaluation's generate-then-grade
pipeline (chunks, grading in a background thread, order, resume after a failure).

Replicas are real processes: two transformers replicas (a small random Llama with SmolLM2's
tokenizer) must give exactly what one in-process backend gives; a light echo backend checks the
shares, order and failures.
The pipeline tests fake only the generation (a backend that sleeps and answers a fixed text);
grading, the worker pool and the prediction files are the real ones."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from webinstruct.evaluation import predictions as P
from webinstruct.evaluation.backends import Generation
from webinstruct.evaluation.backends.replicas import ReplicaBackend, split
from webinstruct.evaluation.protocols import Request
from webinstruct.core.procs import pid_alive


class _Echo:
    """A backend for the runner's own tests: each answer names the prompt and the replica's process."""
    name = "echo"
    chunk = 3

    def __init__(self, tag: str = ""):
        self.tag = tag

    def generate(self, requests: list[Request]) -> list[Generation]:
        if any(r.prompt == "crash" for r in requests):
            os._exit(7)
        if any(r.prompt == "raise" for r in requests):
            raise ValueError("asked to raise")
        cores = ",".join(map(str, sorted(os.sched_getaffinity(0))))
        return [Generation(f"{self.tag}{r.prompt}|{os.getpid()}|{os.environ.get('REPLICA_TAG', '')}|{cores}", "stop", 1)
                for r in requests]

    def close(self) -> None:
        pass


def _echo_or_fail(pid_dir: str) -> _Echo:
    """Replica 1 (REPLICA_TAG=1) fails to load; the others note their process id and load."""
    if os.environ["REPLICA_TAG"] == "1":
        raise ValueError("no such model folder")
    Path(pid_dir, str(os.getpid())).touch()
    return _Echo()


def _gone(pid: int) -> bool:
    return not pid_alive(pid)


def _req(text: str) -> Request:
    return Request(text, (), 4)


def test_split_is_contiguous_and_even():
    assert split(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert split(2, 4) == [(0, 0), (0, 1), (1, 1), (1, 2)]
    assert split(0, 2) == [(0, 0), (0, 0)]


def test_replicas_answer_contiguous_shares_merged_in_order():
    cores = sorted(os.sched_getaffinity(0))
    pinned = [cores[:1], cores[-1:], cores]  # each replica's cores, as `evaluate` gives them on a CPU
    backend = ReplicaBackend(_Echo, ("x",), {}, envs=[{"REPLICA_TAG": str(i)} for i in range(3)], cpus=pinned)
    try:
        pids = backend.pids
        assert len(set(pids)) == 3 and backend.name == "echo" and backend.chunk == 9
        for n in (10, 2, 0):
            out = backend.generate([_req(f"q{k}") for k in range(n)])
            texts = [g.text.split("|") for g in out]
            assert [t[0] for t in texts] == [f"xq{k}" for k in range(n)]
            # Replica i (its own process, environment and cores) answered the i-th contiguous share.
            owner = [next(i for i, (a, b) in enumerate(split(n, 3)) if a <= k < b) for k in range(n)]
            assert [(int(t[1]), t[2], t[3]) for t in texts] == \
                [(pids[i], str(i), ",".join(map(str, pinned[i]))) for i in owner]
        with pytest.raises(RuntimeError, match="replica 1: ValueError: asked to raise"):
            backend.generate([_req(t) for t in ("a", "b", "raise", "c", "d", "e")])
        assert len(backend.generate([_req("again")] * 3)) == 3  # the replicas stay in step after an error
        with pytest.raises(RuntimeError, match=r"replica 2 died \(exit code 7\)"):
            backend.generate([_req(t) for t in ("a", "b", "c", "d", "e", "crash")])
    finally:
        backend.close()
    assert all(_gone(pid) for pid in pids)


def test_a_replica_that_cannot_load_fails_the_backend_and_stops_the_others(tmp_path):
    with pytest.raises(RuntimeError, match="replica 1 failed to start: ValueError: no such model folder"):
        ReplicaBackend(_echo_or_fail, (str(tmp_path),), {}, envs=[{"REPLICA_TAG": str(i)} for i in range(3)])
    loaded = [int(p.name) for p in tmp_path.iterdir()]
    assert loaded and all(_gone(pid) for pid in loaded)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, llm_model_dir) -> str:
    """A small random Llama (2 layers, width 64) with SmolLM2's tokenizer: real transformers
    generation that loads and runs in a moment."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    tok = AutoTokenizer.from_pretrained(llm_model_dir)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=len(tok), max_position_embeddings=512,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


@pytest.mark.slow
def test_two_hf_replicas_equal_one_in_process_backend(tiny_model_dir):
    # Greedy decoding, fp32, one prompt per batch and one thread everywhere: the same numbers.
    import torch

    from webinstruct.evaluation.backends.hf_backend import HFBackend

    # No stop strings: transformers builds tables over the whole vocabulary for them (seconds).
    requests = [Request("Question: What is 2+3?\nAnswer:", (), 12), Request("The capital of France is", (), 8),
                Request("1, 2, 3,", (), 10), Request("def add(a, b):", (), 16), Request("Q: Is 7 prime?\nA:", (), 8)]
    kwargs = {"batch_size": 1, "dtype": torch.float32}
    replicas = ReplicaBackend(HFBackend, (tiny_model_dir,), kwargs, envs=[{"OMP_NUM_THREADS": "1"}] * 2)
    try:
        assert replicas.name == "hf" and replicas.chunk == 0
        merged = replicas.generate(requests)
    finally:
        replicas.close()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = HFBackend(tiny_model_dir, **kwargs)
        expected = single.generate(requests)
        single.close()
    finally:
        torch.set_num_threads(threads)
    assert merged == expected
    assert all(g.tokens > 0 for g in merged) and len({g.text for g in merged}) > 1


# ---- the evaluation's pipeline --------------------------------------------------------------------

class _SlowAnswers:
    """Fake generation: sleeps, then answers "The answer is <gold>" for the questions in `golds`. It
    records the size of each call and signals when each call starts."""
    name = "fake"

    def __init__(self, path: Path, seconds: float = 0.0, chunk: int = 0, fail_on_call: int = 0):
        self.path, self.seconds, self.fail_on_call = path, seconds, fail_on_call
        self.chunk = chunk
        self.calls: list[int] = []
        self.call_started = [threading.Event() for _ in range(10)]
        self.golds: dict[str, str] = {}

    def generate(self, requests: list[Request]) -> list[Generation]:
        self.call_started[len(self.calls)].set()
        self.calls.append(len(requests))
        if len(self.calls) == self.fail_on_call:
            raise RuntimeError("the GPU fell over")
        time.sleep(self.seconds)
        return [Generation(f"Work.\nThe answer is {self.golds[r.prompt]}" if r.prompt in self.golds else "Not sure.",
                           "stop", 5) for r in requests]

    def close(self) -> None:
        pass


def _gsm8k(limit: int):
    from webinstruct.evaluation import benchmarks as B
    return B.load("gsm8k", limit, 0)


def test_chunks_are_graded_in_the_background_and_saved_in_order(tmp_path):
    from webinstruct.evaluation.grading import grading_pool
    from webinstruct.evaluation.protocols import Protocol
    from webinstruct.evaluation.run import generate_and_grade

    items = _gsm8k(12)
    protocol = Protocol("mammoth2")
    (tmp_path / "predictions").mkdir()
    path = tmp_path / "predictions" / "gsm8k.jsonl"
    backend = _SlowAnswers(path, seconds=0.2)
    backend.golds = {protocol.render(it).prompt: it.gold for it in items[::2]}
    saves = []

    def on_saved(n: int) -> None:
        # Chunk k's save waits until chunk k+1's generation has begun: with grading in the
        # generating thread, this would wait in vain.
        k = len(saves)
        overlapped = backend.call_started[k + 1].wait(10) if k < 2 else True
        saves.append((n, threading.current_thread() is not threading.main_thread(), overlapped,
                      len(P.read(path))))

    with grading_pool(1, 10.0) as pool:
        stats = generate_and_grade(backend, {"gsm8k": items}, protocol, tmp_path, 5, pool, on_saved=on_saved)
    assert backend.calls == [5, 5, 2]
    assert saves == [(5, True, True, 5), (5, True, True, 10), (2, True, True, 12)]
    records = P.read(path)
    assert [r["id"] for r in records] == [it.id for it in items]
    assert [r["verdicts"]["robust"]["correct"] for r in records] == [k % 2 == 0 for k in range(12)]
    assert [r["verdicts"]["seed"]["correct"] for r in records] == [k % 2 == 0 for k in range(12)]
    assert stats["generated"] == 12 and stats["completion_tokens"] == 60


def test_a_failed_chunk_loses_only_itself_and_the_rerun_resumes(tmp_path, monkeypatch):
    import webinstruct.evaluation.run as run
    from webinstruct.evaluation.config import EvalConfig

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    out = tmp_path / "eval"
    path = out / "predictions" / "gsm8k.jsonl"
    made: list[_SlowAnswers] = []

    def fake_backend(cfg, model_dir, stack, placement=None, gpus=()):
        made.append(_SlowAnswers(path, chunk=4, fail_on_call=3 if len(made) == 0 else 0))
        return made[-1]

    monkeypatch.setattr(run, "_backend", fake_backend)
    cfg = EvalConfig(model=str(model), out=str(out), benchmarks="gsm8k", limit=10, backend="hf", batch_size=3)
    with pytest.raises(RuntimeError, match="the GPU fell over"):
        run.evaluate(cfg)
    # chunk size max(backend chunk 4, batch size 3); the two chunks generated before the failure are saved
    first = P.read(path)
    assert made[0].calls == [4, 4, 2] and len(first) == 8
    results = run.evaluate(cfg)
    after = P.read(path)
    assert made[1].calls == [2] and after[:8] == first
    assert [r["id"] for r in after] == [it.id for it in _gsm8k(10)]
    assert results["settings"]["generation"]["generated"] == 2
    assert results["settings"]["generation"]["placement"] == \
        {"tp": 1, "dp": 1, "reason": "no GPU visible: one engine in this process"}
    assert json.loads((out / "results.json").read_text())["benchmarks"]["gsm8k"]["n"] == 10
