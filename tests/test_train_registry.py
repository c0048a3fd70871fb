"""The model registry and the DRY_RUN planner: no weights, no network."""
from __future__ import annotations

import json
import math

import pytest

from webinstruct.training.config import load_train_config
from webinstruct.training.plan import GIB, format_plan, memory_per_gpu, memory_table, parameter_count, plan
from webinstruct.core.registry import REGISTRY, ModelNotFound, resolve

# Mistral-7B-v0.1 by hand: 32 layers, hidden 4096, 32 heads of 128, 8 KV heads, intermediate 14336,
# vocab 32000, untied embeddings, RMSNorm without biases.
H, L, HEADS, KV, HD, I, V = 4096, 32, 32, 8, 128, 14336, 32000
ATTN = 2 * H * HEADS * HD + 2 * H * KV * HD  # q, o + k, v
MLP = 3 * H * I
MISTRAL = V * H + L * (ATTN + MLP + 2 * H) + H + V * H  # embedding, layers, final norm, lm head


@pytest.fixture(autouse=True)
def empty_caches(tmp_path, monkeypatch):
    """Point every cache at empty folders so a developer's downloads do not change the results."""
    monkeypatch.setenv("WEBINSTRUCT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))


def test_mistral_parameter_count_matches_hand_computation():
    assert MISTRAL == 7_241_732_096
    assert parameter_count(REGISTRY["mistral-7b"])["total"] == MISTRAL


def test_known_parameter_counts():
    # Published sizes: Llama-3-8B 8.03B, Mixtral 46.7B (12.9B active), Yi-34B 34.4B, Llama-2-7B 6.74B, SmolLM2 134.5M.
    totals = {n: parameter_count(s) for n, s in REGISTRY.items()}
    assert totals["llama-3-8b"]["total"] == 8_030_261_248
    assert round(totals["mixtral-8x7b"]["total"] / 1e9, 1) == 46.7
    assert round(totals["mixtral-8x7b"]["active"] / 1e9, 1) == 12.9
    assert round(totals["yi-34b"]["total"] / 1e9, 1) == 34.4
    assert totals["llama-2-7b"]["total"] == 6_738_415_616
    assert totals["smollm2-135m"]["total"] == 134_515_008
    assert totals["smollm2-135m"]["lm_head"] == 0  # tied


def test_zero_memory_for_mistral_on_8_gpus_matches_the_formulas():
    P, N = MISTRAL, 8
    expected = {  # ZeRO paper: 2 bytes params + 2 grads + 12 optimizer states, partitioned by stage
        (0, "none"): 16 * P, (1, "none"): 4 * P + 12 * P / N, (2, "none"): 2 * P + 14 * P / N,
        (3, "none"): 16 * P / N, (1, "optimizer"): 4 * P, (2, "optimizer"): 2 * P + 2 * P / N,
        (3, "optimizer"): 4 * P / N, (3, "optimizer+params"): 2 * P / N,
    }
    for (stage, offload), gpu in expected.items():
        m = memory_per_gpu(P, stage, offload, n_gpus=N)
        assert m["gpu_bytes"] == pytest.approx(gpu), (stage, offload)
    assert memory_per_gpu(P, 2, "optimizer", n_gpus=N)["cpu_bytes_per_node"] == pytest.approx(12 * P)
    # ~115.9 GB without ZeRO, ~14.5 GB at stage 3 (1e9 bytes)
    assert memory_per_gpu(P, 0, n_gpus=N)["gpu_bytes"] / 1e9 == pytest.approx(115.87, abs=0.01)
    assert memory_per_gpu(P, 3, n_gpus=N)["gpu_bytes"] / 1e9 == pytest.approx(14.48, abs=0.01)
    # two nodes of 8: stage 3 halves again; offload at stage 0 does not exist
    assert memory_per_gpu(P, 3, n_gpus=8, n_nodes=2)["gpu_bytes"] == pytest.approx(P)
    assert memory_per_gpu(P, 0, "optimizer", n_gpus=N)["supported"] is False
    assert len(memory_table(P, 8)) == 8
    assert memory_table(P, 8)[0]["gpu_gib"] == pytest.approx(16 * P / GIB)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_plan_runs_for_every_registered_model_without_weights(name):
    recipe = load_train_config("mammoth2", model=name)
    p = plan(name, {"kept": 1000, "tokens": 300_000, "truncated": 3, "dropped_prompt_too_long": 1}, recipe, n_gpus=8, n_nodes=4)
    assert p["effective_batch"] == 512 and p["grad_accumulation"] == 8
    assert p["steps_per_epoch"] == math.ceil(1000 / 512) == 2 and p["total_steps"] == 4
    text = format_plan(p)
    assert "activations not included" in text and name in text and "load peak" in text


def test_plan_steps_cap_and_uneven_batch():
    recipe = load_train_config("cpu-demo")
    p = plan("smollm2-135m", {"kept": 1000, "tokens": 1}, recipe, n_gpus=1)
    assert p["effective_batch"] == 8 and p["grad_accumulation"] == 4
    assert p["steps_per_epoch"] == 125 and p["total_steps"] == 30  # max_steps caps
    assert p["lr"] == 1e-5 and p["precision"].startswith("fp32")
    odd = load_train_config("metamath", model="llama-2-7b", micro_batch=3)
    q = plan("llama-2-7b", {"kept": 100, "tokens": 1}, odd, n_gpus=5)
    assert q["effective_batch"] == 135 and "not a multiple" in format_plan(q)


def test_load_peak_and_activation_estimates():
    """Hand-computed numbers for Mistral-7B (h 4096, q 4096, kv 1024, i 14336, 32 layers, vocab 32000)."""
    from webinstruct.core.registry import get_spec
    from webinstruct.training.plan import activation_memory, load_peak

    spec = get_spec("mistral-7b")
    P = parameter_count(spec)["total"]
    full = load_peak(P, 2, n_gpus=8)  # every process builds the whole bf16 model
    assert full["per_process_bytes"] == 2 * P and full["per_node_bytes"] == 16 * P
    part = load_peak(P, 3, n_gpus=8, largest_shard=10 ** 9)  # its share + the shard being read
    assert part["per_process_bytes"] == pytest.approx(2 * P / 8 + 10 ** 9)
    assert load_peak(P, 3, n_gpus=8)["largest_shard_bytes"] == 5 * 10 ** 9  # unknown: the hub's usual shard
    tokens = 2 * 4096
    per_layer = (4 * 4096 + 3 * 4096 + 3 * 1024 + 4 * 14336) * 2 * tokens
    logits = 32000 * 10 * tokens
    off = activation_memory(spec, tokens, checkpointing=False)
    on = activation_memory(spec, tokens, checkpointing=True)
    assert off["total_bytes"] == 32 * per_layer + logits
    assert on["total_bytes"] == 32 * 4096 * 2 * tokens + per_layer + logits
    assert 5 * GIB < on["total_bytes"] < 6.5 * GIB and off["total_bytes"] > 40 * GIB  # checkpointing pays
    mixtral = activation_memory(get_spec("mixtral-8x7b"), tokens, checkpointing=False)  # two experts per token
    assert mixtral["layers_bytes"] > off["layers_bytes"]
    m2 = plan("mistral-7b", {"kept": 1000, "tokens": 1}, load_train_config("mammoth2", model="mistral-7b"), n_gpus=8)
    assert m2["activations"]["checkpointing"] and m2["activations"]["tokens"] == tokens
    assert "gradient checkpointing on" in format_plan(m2) and "partitioned (ZeRO-3)" in format_plan(m2)


def test_recipes_hold_the_paper_numbers():
    mm = load_train_config("metamath", model="llama-2-7b")
    assert (mm.max_len, mm.global_batch, mm.epochs, mm.learning_rate(), mm.weight_decay) == (512, 128, 3, 2e-5, 0.0)
    assert load_train_config("metamath", model="mistral-7b").learning_rate() == 5e-6
    m2 = load_train_config("mammoth2", model="mixtral-8x7b")
    assert (m2.max_len, m2.global_batch, m2.epochs, m2.zero_stage, m2.learning_rate()) == (4096, 512, 2, 3, 1e-5)
    assert load_train_config("mammoth2", model="mistral-7b").learning_rate() == 5e-6
    demo = load_train_config("cpu-demo", run="runs/x")
    assert demo.out_dir() == "runs/x/train/smollm2-135m" and demo.data_sources()[0]["path"] == "runs/x/refine"


def test_missing_weights_say_where_to_put_them():
    with pytest.raises(ModelNotFound) as err:
        resolve("mistral-7b")
    msg = str(err.value)
    assert "mistralai/Mistral-7B-v0.1" in msg
    assert "make train MODEL=mistral-7b MODEL_PATH=/path/to/Mistral-7B-v0.1" in msg
    assert "huggingface-cli download mistralai/Mistral-7B-v0.1 --local-dir" in msg
    assert "Traceback" not in msg


def test_model_path_without_config(tmp_path):
    with pytest.raises(ModelNotFound, match="holds no config.json"):
        resolve("llama-3-8b", model_path=str(tmp_path))


def test_unknown_name_lists_the_registry():
    with pytest.raises(ModelNotFound) as err:
        resolve("gpt-5")
    for name in REGISTRY:
        assert name in str(err.value)
    assert isinstance(err.value, ValueError)


def _fake_folder(path, **cfg):
    path.mkdir(parents=True)
    base = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
            "vocab_size": 100, "tie_word_embeddings": True}
    (path / "config.json").write_text(json.dumps({**base, **cfg}))
    return path


def test_resolution_order(tmp_path):
    cached = _fake_folder(tmp_path / "cache" / "models" / "mistral-7b")
    assert resolve("mistral-7b").path == str(cached)
    given = _fake_folder(tmp_path / "elsewhere")
    r = resolve("mistral-7b", model_path=str(given))
    assert r.path == str(given) and r.spec is REGISTRY["mistral-7b"]
    hf = _fake_folder(tmp_path / "hf" / "models--01-ai--Yi-34B" / "snapshots" / "abc")
    assert resolve("yi-34b").path == str(hf)


def test_local_folder_is_used_as_is(tmp_path):
    folder = _fake_folder(tmp_path / "tiny", num_key_value_heads=2)
    r = resolve(str(folder))
    assert r.path == str(folder) and r.name == "tiny"
    assert r.spec.num_kv_heads == 2 and r.spec.tie_embeddings
    assert parameter_count(r.spec)["total"] == 100 * 64 + 2 * (64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 128 + 128) + 64
    with pytest.raises(ModelNotFound, match="no config.json"):
        resolve(str(tmp_path))
