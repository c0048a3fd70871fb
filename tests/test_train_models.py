"""`make train MODEL=mistral-7b MODEL_PATH=<folder>` as a user types it: the model's paper recipe
(mammoth2) is chosen without RECIPE, scaled down by flags, trains on CPU on RUN/refine and exports a
folder transformers loads. The folder is a tiny random Mistral (the real architecture class, the
embedded model's tokenizer) built here."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_train_loop import _gsm8k_pairs
from webinstruct.core.shards import publish_stage, write_shard

ROOT = Path(__file__).resolve().parents[1]


def _tiny_mistral(folder: Path, tokenizer_dir: str) -> None:
    import torch
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = MistralConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    MistralForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)


@pytest.mark.slow
def test_make_train_mistral_uses_the_mammoth2_recipe_scaled_by_flags(tmp_path, llm_model_dir):
    model = tmp_path / "Mistral-7B-v0.1"
    _tiny_mistral(model, llm_model_dir)
    run = tmp_path / "run"
    write_shard(str(run / "refine" / "part-00000-of-00001.jsonl.gz"), _gsm8k_pairs(24))
    publish_stage(str(run / "refine"), "refine")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "TOKENIZERS_PARALLELISM": "false",
           "WEBINSTRUCT_CACHE": str(tmp_path / "cache")}
    scale = "--max-len 128 --global-batch 4 --micro-batch 2 --max-steps 3"
    make = ["make", "-s", "-o", ".venv/.installed", "train", "MODEL=mistral-7b", f"MODEL_PATH={model}", f"RUN={run}"]
    proc = subprocess.run(make + [f"TRAIN_ARGS={scale}"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    out = run / "train" / "mistral-7b"
    stats = json.loads((out / "stats.json").read_text())
    # The mammoth2 recipe's settings, with only what the flags changed scaled down.
    assert stats["steps"] == 3 and stats["grad_accumulation"] == 2
    assert "lr 5e-06, ZeRO-3" in proc.stdout
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and all(r["loss"] > 0 for r in log)
    assert max(r["lr"] for r in log) == pytest.approx(5e-6)  # warmup's first step is already at the peak
    check = ("import sys, torch; from transformers import AutoModelForCausalLM, AutoTokenizer; "
             "m = AutoModelForCausalLM.from_pretrained(sys.argv[1]); t = AutoTokenizer.from_pretrained(sys.argv[1]); "
             "ids = t('What is 2 + 3?', return_tensors='pt').input_ids; "
             "print(type(m).__name__, m(ids).logits.shape[-1], bool(t.chat_template))")
    loaded = subprocess.run([sys.executable, "-c", check, str(out / "final")], capture_output=True, text=True,
                            timeout=300, env=env)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.split() == ["MistralForCausalLM", str(json.loads((model / "config.json").read_text())["vocab_size"]), "True"]
