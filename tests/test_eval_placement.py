"""Where the evaluation's engines go: tensor-parallel size and replicas for made-up GPU counts and
the registry's models (evaluation/placement.py), the overrides and their errors, the weight
estimate from safetensors headers, the wiring into `evaluate`, and the hf backend's device choice."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from webinstruct.core.registry import REGISTRY, ModelSpec
from webinstruct.core.placement import heads_allow
from webinstruct.evaluation.placement import GB, Placement, choose, model_estimate, spec_estimate

ROOT = Path(__file__).resolve().parents[1]
# A 72B-class model (Qwen2-72B's config.json numbers): 64 heads, 8 KV heads, about 145 GB in bf16.
QWEN72 = ModelSpec("qwen2-72b", "Qwen/Qwen2-72B", hidden_size=8192, num_layers=80, num_heads=64, num_kv_heads=8,
                   intermediate_size=29568, vocab_size=152064)


def place(spec: ModelSpec, gpus: int, gb_per_gpu: float, **kw) -> Placement:
    est = spec_estimate(spec)
    kw.setdefault("headroom", est.headroom)
    return choose(gpus, int(gb_per_gpu * GB), est.heads, est.kv_heads, est.weight_bytes, **kw)


def test_estimates_of_the_registry_models():
    # bf16 weights from the parameter count; headroom = KV cache of 65,536 tokens + 2 GiB.
    smol, mistral, yi = (spec_estimate(REGISTRY[n]) for n in ("smollm2-135m", "mistral-7b", "yi-34b"))
    assert smol.weight_bytes / GB == pytest.approx(0.269, abs=0.001)
    assert mistral.weight_bytes / GB == pytest.approx(14.48, abs=0.01)
    assert mistral.headroom == 65536 * (2 * 32 * 8 * 128 * 2) + 2 * 1024 ** 3  # 10.7 GB
    assert yi.weight_bytes / GB == pytest.approx(68.78, abs=0.01)
    assert spec_estimate(QWEN72).weight_bytes / GB == pytest.approx(145.4, abs=0.1)


def test_vllm_head_rule():
    # heads % tp == 0, and KV heads % tp == 0 (tp <= KV heads) or tp % KV heads == 0 (tp > KV heads).
    assert [t for t in range(1, 10) if heads_allow(t, 9, 3)] == [1, 3, 9]  # SmolLM2
    assert [t for t in range(1, 9) if heads_allow(t, 56, 8)] == [1, 2, 4, 8]  # Yi-34B: 56 = 7 x 8
    assert not heads_allow(7, 56, 8)  # 56 % 7 == 0, but 8 KV heads do not split 7 ways
    assert [t for t in range(1, 17) if heads_allow(t, 32, 8)] == [1, 2, 4, 8, 16]  # 16: KV heads copied


def test_small_model_on_eight_gpus_is_eight_replicas():
    # SmolLM2's 9 heads allow no power-of-two tp but 1; it fits anyway.
    p = place(REGISTRY["smollm2-135m"], 8, 80)
    assert (p.tp, p.dp) == (1, 8)
    assert "8 GPUs of 80.0 GB" in p.reason and "dp 8 replicas" in p.reason


def test_mistral_7b_on_80_and_24_gb_gpus():
    assert (lambda p: (p.tp, p.dp))(place(REGISTRY["mistral-7b"], 8, 80)) == (1, 8)
    # 24 GB x 0.9 = 21.6 GB: the weights (14.5) fit, but not with a KV cache for 64k tokens (10.7);
    # two GPUs per replica hold both.
    p = place(REGISTRY["mistral-7b"], 8, 24)
    assert (p.tp, p.dp) == (2, 4)
    # On a single 24 GB GPU it still runs on one, with a small KV cache, and says so.
    p = place(REGISTRY["mistral-7b"], 1, 24)
    assert (p.tp, p.dp) == (1, 1) and "KV headroom short" in p.reason


def test_72b_class_model_on_80_gb_gpus():
    # 145 GB of weights do not fit in 2 x 72 GB; 4 GPUs hold them with room: two replicas.
    assert (lambda p: (p.tp, p.dp))(place(QWEN72, 8, 80)) == (4, 2)
    # With a headroom wish beyond 4 x 72 - 145 GB, one replica over all 8 GPUs.
    assert (lambda p: (p.tp, p.dp))(place(QWEN72, 8, 80, headroom=150 * GB)) == (8, 1)
    with pytest.raises(ValueError, match=r"weights \(145.4 GB\) do not fit on 2 GPU"):
        place(QWEN72, 2, 80)


def test_yi_34b():
    yi = REGISTRY["yi-34b"]
    assert (lambda p: (p.tp, p.dp))(place(yi, 8, 80)) == (2, 4)
    assert (lambda p: (p.tp, p.dp))(place(yi, 8, 40)) == (4, 2)
    assert (lambda p: (p.tp, p.dp))(place(yi, 8, 24)) == (8, 1)  # 56 % 8 == 0: tp 8 is allowed
    assert (lambda p: (p.tp, p.dp))(place(yi, 8, 80, tp=8)) == (8, 1)


def test_overrides():
    smol, mistral = REGISTRY["smollm2-135m"], REGISTRY["mistral-7b"]
    # tp 3 is allowed by SmolLM2's heads (never chosen automatically): 2 replicas, 2 GPUs idle.
    p = place(smol, 8, 80, tp=3)
    assert (p.tp, p.dp) == (3, 2) and "2 GPU(s) idle" in p.reason
    assert (lambda p: (p.tp, p.dp))(place(mistral, 8, 80, dp=2)) == (4, 2)  # replicas asked: each gets 4 GPUs
    assert (lambda p: (p.tp, p.dp))(place(mistral, 8, 80, tp=2, dp=3)) == (2, 3)
    assert (lambda p: (p.tp, p.dp))(place(mistral, 8, 80, tp=2)) == (2, 4)
    # transformers' device_map does not split heads: no head rule for the hf backend.
    assert place(smol, 8, 80, tp=2, head_rule=False).tp == 2


@pytest.mark.parametrize("gpus,kw,message", [
    (8, {"tp": 2}, r"--tp 2: vLLM splits the model's 9 attention heads and 3 KV heads .* tp that work on 8 GPUs: 1, 3"),
    (8, {"tp": 4}, r"--tp 4: vLLM splits"),
    (8, {"tp": 3, "dp": 3}, r"--tp 3 --dp 3 needs 9 GPUs; 8 in use"),
    (8, {"dp": 16}, r"--dp 16 needs 16 GPUs; 8 in use"),
    (4, {"tp": 8}, r"--tp 8 needs 8 GPUs; 4 in use"),
    (0, {"tp": 2}, r"--tp 2: no GPU is visible"),
])
def test_bad_overrides_are_one_line_errors(gpus, kw, message):
    with pytest.raises(ValueError, match=message) as err:
        place(REGISTRY["smollm2-135m"], gpus, 80, **kw)
    assert "\n" not in str(err.value)


def test_weights_that_cannot_fit_are_refused():
    with pytest.raises(ValueError, match=r"--tp 1: the weights \(145.4 GB\) do not fit on 1 GPU"):
        place(QWEN72, 8, 80, tp=1)
    with pytest.raises(ValueError, match=r"--dp 8: a replica gets at most 1 GPU"):
        place(QWEN72, 8, 80, dp=8)


def test_no_gpu_is_one_engine_unless_replicas_are_asked_for():
    p = choose(0, 0, 9, 3, 10 ** 9)
    assert (p.tp, p.dp) == (1, 1) and "no GPU visible" in p.reason
    assert (lambda p: (p.tp, p.dp))(choose(0, 0, 9, 3, 10 ** 9, dp=2)) == (1, 2)


def test_each_replica_gets_consecutive_visible_gpus():
    p = Placement(2, 2, "")
    assert p.devices(["3", "5", "6", "7", "9"]) == [["3", "5"], ["6", "7"]]
    with pytest.raises(ValueError):
        Placement(2, 4, "").devices(["0", "1"])


def test_weight_bytes_come_from_safetensors_headers(tmp_path):
    import torch
    from safetensors.torch import save_file

    (tmp_path / "config.json").write_text(json.dumps({
        "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_size": 64, "num_hidden_layers": 2,
        "intermediate_size": 128, "vocab_size": 100, "head_dim": 16}))
    # fp32 on disk is served in bf16 (2 bytes a value); a packed integer tensor loads as stored.
    save_file({"a": torch.zeros(10, 20), "b": torch.zeros(5, dtype=torch.float16)}, str(tmp_path / "m-1.safetensors"))
    save_file({"q": torch.zeros(8, 4, dtype=torch.int32)}, str(tmp_path / "m-2.safetensors"))
    est = model_estimate(str(tmp_path))
    assert est.weight_bytes == (200 + 5) * 2 + 32 * 4 and est.source == "safetensors headers"
    assert (est.heads, est.kv_heads) == (4, 2)
    assert est.headroom == 65536 * (2 * 2 * 2 * 16 * 2) + 2 * 1024 ** 3


def test_weight_bytes_of_the_embedded_model(llm_model_dir):
    from webinstruct.training.plan import parameter_count

    est = model_estimate(llm_model_dir)
    assert est.weight_bytes == 2 * parameter_count(REGISTRY["smollm2-135m"])["total"]


# ---- wiring into the evaluation ----------------------------------------------------------------

def test_evaluation_placement_with_fake_gpus(monkeypatch, llm_model_dir):
    from webinstruct.evaluation import placement
    from webinstruct.evaluation.config import EvalConfig
    from webinstruct.evaluation.run import _replica_setup, plan_placement

    monkeypatch.setattr(placement, "gpu_inventory", lambda: ([str(i) for i in range(8)], 80 * GB))
    p, gpus = plan_placement(EvalConfig(model=llm_model_dir), llm_model_dir)
    assert (p.tp, p.dp, len(gpus)) == (1, 8, 8)
    envs, cpus = _replica_setup(p, gpus)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == [str(i) for i in range(8)] and cpus is None
    p, gpus = plan_placement(EvalConfig(model=llm_model_dir, gpus=4, tp=3), llm_model_dir)
    assert (p.tp, p.dp, gpus) == (3, 1, ["0", "1", "2", "3"])
    assert _replica_setup(p, gpus)[0] == [{"CUDA_VISIBLE_DEVICES": "0,1,2"}]
    with pytest.raises(ValueError, match="--tp 2: vLLM splits the model's 9 attention heads"):
        plan_placement(EvalConfig(model=llm_model_dir, tp=2), llm_model_dir)
    assert plan_placement(EvalConfig(model=llm_model_dir, tp=2, backend="hf"), llm_model_dir)[0].tp == 2
    with pytest.raises(ValueError, match="--gpus 9: 8 GPU"):
        plan_placement(EvalConfig(model=llm_model_dir, gpus=9), llm_model_dir)


def test_cpu_replicas_split_the_cores():
    import os

    from webinstruct.evaluation.run import _replica_setup

    cores = sorted(os.sched_getaffinity(0))
    envs, cpus = _replica_setup(Placement(1, 2, ""), [])
    assert sorted(c for part in cpus for c in part) == cores or len(cores) == 1
    assert [e["OMP_NUM_THREADS"] for e in envs] == [str(len(c)) for c in cpus]


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


@pytest.mark.skipif(_cuda(), reason="checks the refusal on a machine without GPUs")
def test_bad_tp_fails_before_anything_loads(tmp_path, llm_model_dir):
    cli = [sys.executable, "-m", "webinstruct.infra.cli", "eval", "--model", llm_model_dir, "--out", str(tmp_path / "e"),
           "--benchmarks", "gsm8k", "--limit", "1"]
    proc = subprocess.run(cli + ["--tp", "2"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == \
        "webinstruct eval: error: --tp 2: no GPU is visible, and tensor parallelism needs GPUs"
    assert not (tmp_path / "e").exists()


def test_tp_and_dp_are_refused_for_the_openai_backend(tmp_path, llm_model_dir):
    from webinstruct.evaluation.config import EvalConfig
    from webinstruct.evaluation.run import evaluate

    with pytest.raises(ValueError, match="--tp/--dp place the vllm and hf backends' engines"):
        evaluate(EvalConfig(model=llm_model_dir, out=str(tmp_path / "e"), backend="openai", dp=2))
    assert not (tmp_path / "e").exists()


def test_hf_backend_device_choice():
    from webinstruct.evaluation.backends.hf_backend import device_choice

    assert device_choice(cuda_available=True) == ({"device_map": "auto"}, None)
    assert device_choice(cuda_available=False) == ({}, "cpu")
