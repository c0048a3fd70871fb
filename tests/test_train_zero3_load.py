"""ZeRO-3 loads the model partitioned: on two CPU ranks (torchrun, gloo) each rank's resident memory
grows by about its half of a ~380 MB random Llama while the model loads, and the partitioned run
trains as a run that loads the whole model on every rank (ZeRO-2) does: same losses, step by step.

Where the margin above one half goes: while a ZeRO-3 model is built each tensor exists whole for a
moment before DeepSpeed splits it (the largest here, the 24 MiB embedding, is 7% of the model),
and some 25 MiB of bookkeeping. Hence the shape: small embeddings, many mid-sized tensors (hidden
128, MLP 32768 wide, 7 layers). glibc keeps freed heap memory mapped when its adaptive trim
threshold has grown, which adds up to ~200 MiB of free-but-kept pages to one rank or another
from run to run; MALLOC_TRIM_THRESHOLD_ makes it hand them back, so the numbers measure what is
held (both runs get the same setting)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from webinstruct.core.procs import free_port
from test_train_loop import _gsm8k_pairs  # tests/ is on sys.path (conftest imports llm_fixtures so too)

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
STEPS = 2


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, llm_model_dir) -> dict:
    """A ~95M-parameter random Llama (fp32) saved in 50 MB shards, its recipe and its data."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("zero3-load")
    tok = AutoTokenizer.from_pretrained(llm_model_dir)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=32768, num_hidden_layers=7,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(root / "wide-llama", max_shard_size="50MB")
    tok.save_pretrained(root / "wide-llama")
    del model
    with open(root / "pairs.jsonl", "w") as fh:
        for p in _gsm8k_pairs(16):
            fh.write(json.dumps(p) + "\n")
    recipe = root / "wide.yaml"
    recipe.write_text(
        "train:\n  format: chat\n  max_len: 128\n  global_batch: 2\n  micro_batch: 1\n  epochs: 1\n"
        f"  max_steps: {STEPS}\n  lr: 1.0e-3\n  warmup_ratio: 0.0\n  schedule: constant\n"
        "  zero_stage: 3\n  bf16: false\n  seed: 5\n  keep_checkpoints: 1\n"
        f"  data:\n    - {{path: {root / 'pairs.jsonl'}, name: gsm8k}}\n")
    shards = sorted((root / "wide-llama").glob("model-*.safetensors"))
    return {"root": root, "model": str(root / "wide-llama"), "recipe": str(recipe), "shards": shards,
            "model_mib": sum(s.stat().st_size for s in shards) / 2**20}


def _run(sharded: dict, name: str, *flags: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "TOKENIZERS_PARALLELISM": "false",
           "MALLOC_TRIM_THRESHOLD_": str(1 << 20)}
    run = sharded["root"] / name
    cmd = [PY, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "webinstruct.training.trainer", "--config", sharded["recipe"], "--model", sharded["model"],
           "--run-dir", str(run), *flags]
    t0 = time.time()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    out = run / "train" / "wide-llama"
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {"stats": json.loads((out / "stats.json").read_text()), "log": log, "seconds": time.time() - t0,
            "stdout": done.stdout}


@pytest.mark.slow
def test_zero3_loads_partitioned_and_trains_like_a_whole_load(sharded):
    assert len(sharded["shards"]) >= 6  # several shards, as a real checkpoint
    size = sharded["model_mib"]
    part = _run(sharded, "run-zero3")
    whole = _run(sharded, "run-zero2", "--zero-stage", "2")
    p_mem, w_mem = part["stats"]["memory_mib"], whole["stats"]["memory_mib"]
    print(f"\nmodel {size:.0f} MiB ({part['stats']['model_parameters'] / 1e6:.1f}M parameters); peak growth while "
          f"loading per rank: partitioned {p_mem['load_peak_growth']}, whole {w_mem['load_peak_growth']} MiB; "
          f"through deepspeed.initialize: {p_mem['initialize_peak_growth']} / {w_mem['initialize_peak_growth']}; "
          f"runs {part['seconds']:.0f} s / {whole['seconds']:.0f} s; losses {[r['loss'] for r in part['log']]} / "
          f"{[r['loss'] for r in whole['log']]}")
    assert part["stats"]["model_load"] == "partitioned" and whole["stats"]["model_load"] == "whole"
    assert p_mem["peak_reset"] and len(p_mem["load_peak_growth"]) == 2
    # Each rank holds half the model, plus for a moment its largest tensor: well under the whole.
    assert max(p_mem["load_peak_growth"]) < 0.7 * size, p_mem
    # A whole load maps the checkpoint lazily; deepspeed.initialize then brings all of it in on every rank.
    assert min(w_mem["initialize_peak_growth"]) > size, w_mem
    # The same weights, data and updates: the same losses.
    assert [r["step"] for r in part["log"]] == list(range(1, STEPS + 1))
    assert part["log"][0]["loss"] == pytest.approx(whole["log"][0]["loss"], rel=1e-6)
    assert [r["loss"] for r in part["log"]] == pytest.approx([r["loss"] for r in whole["log"]], rel=1e-4)
    assert [r["grad_norm"] for r in part["log"]] == pytest.approx([r["grad_norm"] for r in whole["log"]], rel=1e-3)


BF16_SCRIPT = r"""
import sys, torch, deepspeed
from safetensors.torch import load_file
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
from webinstruct.training import loading
from webinstruct.training.config import load_train_config
from webinstruct.training.trainer import deepspeed_config

deepspeed.init_distributed(dist_backend="gloo")
folder = sys.argv[1]
ds = deepspeed_config(load_train_config("cpu-demo", zero_stage=3, bf16=True), world=1, on_gpu=True)
plan = loading.plan_load(folder, torch.bfloat16, "sdpa", ds)
assert plan.how == "partitioned", plan.how
raw = loading._build_partitioned(plan.config, ds)  # what zero.Init alone gives
print("raw inv_freq", raw.model.rotary_emb.inv_freq.dtype)
model, keep = loading.load_model(plan)
rope = model.model.rotary_emb
print("loaded inv_freq", rope.inv_freq.dtype, rope.original_inv_freq.dtype)
expected = LlamaRotaryEmbedding(plan.config).inv_freq
assert expected.dtype == torch.float32
torch.testing.assert_close(rope.inv_freq, expected, rtol=0, atol=0)
stored = load_file(folder + "/model.safetensors")
params = dict(model.named_parameters())
for name, value in stored.items():
    with deepspeed.zero.GatheredParameters([params[name]]):
        assert params[name].dtype == torch.bfloat16, name
        torch.testing.assert_close(params[name].data, value.to(torch.bfloat16), rtol=0, atol=0)
print("checked", len(stored), "tensors")
"""


@pytest.mark.slow
def test_bf16_partitioned_load_keeps_rotary_frequencies_fp32(tmp_path):
    """With bf16 (the GPU setting) zero.Init turns every floating tensor made inside it into bf16,
    the rotary inverse frequencies too; the partitioned load recomputes them in fp32, as a whole
    load keeps them, and every weight arrives intact (one rank: the partition is the whole)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                      rope_theta=500000.0, tie_word_embeddings=False)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "m")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()),
               DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
    done = subprocess.run([PY, "-c", BF16_SCRIPT, str(tmp_path / "m")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "raw inv_freq torch.bfloat16" in done.stdout  # why the recomputation is needed
    assert "loaded inv_freq torch.float32 torch.float32" in done.stdout and "checked 21 tensors" in done.stdout
