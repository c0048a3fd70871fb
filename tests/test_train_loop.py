"""The trainer end to end on CPU: DeepSpeed ZeRO-3 over two processes (torchrun, gloo) training a
tiny random Llama on real GSM8K pairs from the seeds; kill -9 and resume; SIGTERM stops and resumes;
export and reload; packing isolation; one short run of SmolLM2 itself. Plus fast checks of the schedule, the step
order and the DeepSpeed config.

The first DeepSpeed run on a machine compiles its shared-memory op (about 90 s, cached in
TORCH_EXTENSIONS_DIR); afterwards a 12-step two-process run takes about 15 s."""
from __future__ import annotations

import gzip
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from webinstruct.core.procs import free_port
from webinstruct.training.batches import StepOrder, collate
from webinstruct.training.config import load_train_config
from webinstruct.training.data import pack
from webinstruct.training.schedule import lr_factor, warmup_steps

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "data" / "seeds" / "positive.jsonl.gz"
PY = sys.executable
STEPS, SAVE_EVERY, LR, WARMUP_RATIO = 12, 4, 3e-3, 0.1


def _gsm8k_pairs(n: int) -> list[dict[str, str]]:
    """Real question/answer pairs: the seeds' GSM8K items, split at the first blank line."""
    pairs = []
    with gzip.open(SEEDS, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if "grade-school-math" in row["source"] and "\n\n" in row["text"]:
                q, a = row["text"].split("\n\n", 1)
                pairs.append({"question": q, "answer": a})
                if len(pairs) == n:
                    break
    return pairs


def _tiny_model(folder: Path, tokenizer_dir: str) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, llm_model_dir) -> dict:
    root = tmp_path_factory.mktemp("train-loop")
    _tiny_model(root / "tiny-llama", llm_model_dir)
    with open(root / "pairs.jsonl", "w") as fh:
        for p in _gsm8k_pairs(64):
            fh.write(json.dumps(p) + "\n")
    recipe = root / "tiny-zero3.yaml"
    recipe.write_text(
        "train:\n  format: chat\n  max_len: 128\n  global_batch: 8\n  micro_batch: 2\n  epochs: 1\n"
        f"  max_steps: {STEPS}\n  lr: {LR}\n  warmup_ratio: {WARMUP_RATIO}\n  schedule: cosine\n"
        f"  zero_stage: 3\n  bf16: false\n  save_every: {SAVE_EVERY}\n  seed: 7\n"
        f"  data:\n    - {{path: {root / 'pairs.jsonl'}, weight: 2.0, name: gsm8k}}\n")
    return {"root": root, "model": str(root / "tiny-llama"), "recipe": str(recipe)}


def _launch(tiny: dict, run: Path, log: Path, *flags: str) -> subprocess.Popen:
    """torchrun with two CPU processes, in its own process group (so kill -9 reaches the workers)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [PY, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "webinstruct.training.trainer", "--config", tiny["recipe"], "--model", tiny["model"], "--run-dir", str(run),
           *flags]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train" / "tiny-llama" / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def full_run(tiny) -> dict:
    run, out = tiny["root"] / "run-full", tiny["root"] / "full.out"
    t0 = time.time()
    proc = _launch(tiny, run, out)
    assert proc.wait(timeout=600) == 0, out.read_text()[-3000:]
    print(f"\nZeRO-3 x2 processes, {STEPS} steps: {time.time() - t0:.1f} s")
    return {"run": run, "out": run / "train" / "tiny-llama", "log": _log(run)}


@pytest.mark.slow
def test_zero3_two_processes_loss_decreases(full_run):
    log = full_run["log"]
    assert [r["step"] for r in log] == list(range(1, STEPS + 1))
    assert log[-1]["loss"] < log[0]["loss"] - 0.5, [r["loss"] for r in log]
    assert all(r["grad_norm"] is not None and r["tokens_per_s"] > 0 for r in log)
    stats = json.loads((full_run["out"] / "stats.json").read_text())
    assert stats["world_size"] == 2 and stats["steps"] == STEPS and stats["grad_accumulation"] == 2
    assert stats["read"] == 64 and stats["kept"] + stats["dropped"] == 128  # weight 2.0: every pair twice
    assert (full_run["out"] / "loss.png").stat().st_size > 0
    assert (full_run["out"] / "checkpoints" / "latest").read_text().strip() == f"step{STEPS}"


@pytest.mark.slow
def test_lr_follows_warmup_cosine(full_run):
    total, warmup = STEPS, warmup_steps(STEPS, WARMUP_RATIO)
    expected = [LR * lr_factor(s, total, warmup) for s in range(total)]
    assert [r["lr"] for r in full_run["log"]] == pytest.approx(expected, rel=1e-9)


@pytest.mark.slow
def test_kill_and_resume_continues_schedule(tiny, full_run):
    run, out1 = tiny["root"] / "run-killed", tiny["root"] / "killed.out"
    latest = run / "train" / "tiny-llama" / "checkpoints" / "latest"
    t0 = time.time()
    proc = _launch(tiny, run, out1)
    while not latest.exists() and proc.poll() is None and time.time() - t0 < 600:
        time.sleep(0.05)
    # torchrun's workers do not die with it (they run in their own sessions): kill the whole tree,
    # as a lost node or the OOM killer would.
    import psutil
    tree = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    for pid in tree:
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    psutil.wait_procs([psutil.Process(p) for p in tree[1:] if psutil.pid_exists(p)], timeout=30)
    killed_at = max(r["step"] for r in _log(run))
    assert killed_at < STEPS, "the run finished before it could be killed"
    tag = latest.read_text().strip()
    out2 = tiny["root"] / "resumed.out"
    proc = _launch(tiny, run, out2)
    assert proc.wait(timeout=600) == 0, out2.read_text()[-3000:]
    print(f"\nkill -9 after {tag} (logged up to step {killed_at}) and resume: {time.time() - t0:.1f} s")
    assert f"resuming at step {int(tag[4:])}" in out2.read_text()
    log, ref = _log(run), full_run["log"]
    assert [r["step"] for r in log] == list(range(1, STEPS + 1))
    assert [r["lr"] for r in log] == pytest.approx([r["lr"] for r in ref], rel=1e-9)
    # Same data order, same restored optimizer state: the losses follow the uninterrupted run.
    assert [r["loss"] for r in log] == pytest.approx([r["loss"] for r in ref], rel=1e-3)


def _stop_with_sigterm(proc: subprocess.Popen, log_file: Path, after: int, rank: int | None) -> int:
    """Once log.jsonl has `after` steps, SIGTERM to torchrun (rank None; it forwards the signal to
    its workers) or to that one worker only; returns torchrun's exit code."""
    import psutil

    t0 = time.time()
    while proc.poll() is None and time.time() - t0 < 600:
        if log_file.exists() and len(log_file.read_text().splitlines()) >= after:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be stopped"
    if rank is None:
        os.kill(proc.pid, signal.SIGTERM)
    else:
        workers = [c for c in psutil.Process(proc.pid).children() if c.environ().get("RANK") == str(rank)]
        assert len(workers) == 1
        workers[0].send_signal(signal.SIGTERM)
    return proc.wait(timeout=120)


@pytest.mark.slow
def test_sigterm_saves_at_the_step_and_resumes(tiny, full_run):
    """SIGTERM to torchrun (Kubernetes signals a pod's first process), which forwards it: both workers
    finish the step under way, save a checkpoint at it and exit. Resumed, the run is stopped again by
    SIGTERM to rank 1 alone (a signal reaching ranks at different moments): rank 0 learns of it at the
    step boundary and both exit 143. Resumed again, it ends as the uninterrupted run."""
    run, t0 = tiny["root"] / "run-sigterm", time.time()
    out = run / "train" / "tiny-llama"
    stops = []
    for n, (after, rank) in enumerate([(3, None), (3, 1)]):
        text_file = tiny["root"] / f"sigterm{n}.out"
        first = max((r["step"] for r in _log(run)), default=0) if (out / "log.jsonl").exists() else 0
        code = _stop_with_sigterm(_launch(tiny, run, text_file, "--save-every", "0"), out / "log.jsonl",
                                  first + after, rank)
        text = text_file.read_text()
        stopped = re.search(rf"stopped by SIGTERM at step (\d+) of {STEPS}: checkpoint (\S+) saved", text)
        assert stopped and code != 0, text[-3000:]
        at = int(stopped.group(1))
        assert first + after <= at < STEPS
        assert "forcefully exiting" not in text  # the workers ended themselves, before torchrun's SIGKILL
        # save_every 0: the stops' checkpoints are the only ones
        assert sorted(p.name for p in (out / "checkpoints").glob("step*")) == [f"step{s}" for s, _ in stops] + [f"step{at}"]
        assert Path(stopped.group(2)).name == f"step{at}"
        assert (out / "checkpoints" / "latest").read_text().strip() == f"step{at}"
        assert max(r["step"] for r in _log(run)) == at
        if first:
            assert f"resuming at step {first} (step{first})" in text
        stops.append((at, code))
    # torchrun lists its failed workers' exit codes when it was not signalled itself: rank 1 exits 143 after the
    # save; rank 0 too, unless torchrun, which stops the other workers as soon as one has failed, reaches it with
    # its own SIGTERM while it is leaving (-15; its stop message and the checkpoint are checked above).
    assert "exitcode  : 143" in text, text[-3000:]
    assert re.findall(r"exitcode  : (-?\d+)", text) and set(re.findall(r"exitcode  : (-?\d+)", text)) <= {"143", "-15"}
    done_file = tiny["root"] / "sigterm-done.out"
    assert _launch(tiny, run, done_file, "--save-every", "0").wait(timeout=600) == 0, done_file.read_text()[-3000:]
    print(f"\nSIGTERM stops at steps {stops} (step, torchrun's exit code), resumed to the end: {time.time() - t0:.1f} s")
    assert f"resuming at step {stops[-1][0]}" in done_file.read_text()
    log, ref = _log(run), full_run["log"]
    assert [r["step"] for r in log] == list(range(1, STEPS + 1))
    assert [r["lr"] for r in log] == pytest.approx([r["lr"] for r in ref], rel=1e-9)
    assert [r["loss"] for r in log] == pytest.approx([r["loss"] for r in ref], rel=1e-3)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["steps"] == STEPS and stats["final_loss"] == pytest.approx(ref[-1]["loss"], rel=1e-3)


@pytest.mark.slow
def test_exported_model_loads_and_generates(full_run):
    final = full_run["out"] / "final"
    assert (final / "model.safetensors").is_file() and (final / "config.json").is_file()
    script = (
        "import sys, torch\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "tok = AutoTokenizer.from_pretrained(sys.argv[1]); m = AutoModelForCausalLM.from_pretrained(sys.argv[1])\n"
        "assert tok.chat_template\n"
        "ids = tok.apply_chat_template([{'role': 'user', 'content': 'What is 2+3?'}], add_generation_prompt=True,"
        " return_tensors='pt', return_dict=True)['input_ids']\n"
        "out = m.generate(ids, max_new_tokens=5, do_sample=False)\n"
        "assert out.shape[1] == ids.shape[1] + 5, out.shape\n"
        "print('generated', out.shape[1] - ids.shape[1])\n")
    res = subprocess.run([PY, "-c", script, str(final)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "generated 5" in res.stdout


@pytest.mark.slow
def test_packing_isolates_sequences(tiny):
    """Logits of a sequence alone equal its logits packed after another one (restarted
    position_ids, use_cache=False), and differ when the positions do not restart."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny["model"], dtype=torch.float32)
    model.train()  # as in training: the notes report cross-attention in training mode with the cache on
    torch.manual_seed(1)
    a = {"input_ids": torch.randint(5, 1000, (23,)).tolist(), "labels": [-100] * 23}
    b = {"input_ids": torch.randint(5, 1000, (17,)).tolist(), "labels": [-100] * 17}
    rows = pack([a, b], max_len=64)
    assert len(rows) == 1 and rows[0]["lengths"] == [23, 17]
    packed = collate(rows, pad_id=0, packed=True)
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([b["input_ids"]]), use_cache=False).logits[0]
        together = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits[0]
        contiguous = model(input_ids=packed["input_ids"], use_cache=False).logits[0]
    torch.testing.assert_close(together[23:40], alone, atol=1e-4, rtol=1e-4)
    assert (contiguous[23:40] - alone).abs().max() > 1e-2


@pytest.mark.slow
def test_smollm2_short_run(tmp_path, llm_model_dir):
    """The embedded SmolLM2-135M itself, one plain process (no launcher), ZeRO-2, 2 steps."""
    with open(tmp_path / "pairs.jsonl", "w") as fh:
        for p in _gsm8k_pairs(8):
            fh.write(json.dumps(p) + "\n")
    recipe = tmp_path / "smol.yaml"
    recipe.write_text("train:\n  model: smollm2-135m\n  max_len: 96\n  global_batch: 2\n  micro_batch: 1\n"
                      "  max_steps: 2\n  lr: 1.0e-5\n  zero_stage: 2\n  bf16: false\n"
                      f"  data:\n    - {{path: {tmp_path / 'pairs.jsonl'}, name: gsm8k}}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    t0 = time.time()
    res = subprocess.run([PY, "-m", "webinstruct.training.trainer", "--config", str(recipe), "--model-path", llm_model_dir,
                          "--run", str(tmp_path / "run")], cwd=ROOT, env={**env, "OMP_NUM_THREADS": "2"},
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    print(f"\nSmolLM2-135M, 1 process, 2 steps + export: {time.time() - t0:.1f} s")
    out = tmp_path / "run" / "train" / "smollm2-135m"
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(math.isfinite(r["loss"]) for r in log)
    assert (out / "final" / "model.safetensors").is_file()


# Fast checks (no DeepSpeed run).

def test_schedule_warmup_then_cosine_to_zero():
    assert warmup_steps(100, 0.03) == 3
    f = [lr_factor(s, 100, 3) for s in range(101)]
    assert f[:4] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    assert all(x >= y for x, y in zip(f[3:], f[4:])) and f[100] == pytest.approx(0.0)
    assert lr_factor(5, 10, 0, "constant") == 1.0 and lr_factor(5, 10, 0, "linear") == 0.5
    with pytest.raises(ValueError):
        lr_factor(0, 10, 0, "step")


def test_step_order_covers_each_row_once_per_epoch_and_is_seeded():
    order = StepOrder(n_rows=29, micro_batch=2, accumulation=2, world=2, seed=3)
    assert order.steps_per_epoch == 4  # ceil(29 / 8): the last step wraps around
    seen = [i for s in range(4) for m in range(2) for r in range(2) for i in order.rows(s, m, r)]
    assert set(seen) == set(range(29)) and len(seen) == 32
    again = StepOrder(29, 2, 2, 2, seed=3)
    assert again.rows(5, 1, 1) == order.rows(5, 1, 1)  # addressable by step: resume skips nothing twice
    assert [order.rows(s, 0, 0) for s in range(4)] != [order.rows(s, 0, 0) for s in range(4, 8)]  # reshuffled


def test_collate_pads_and_masks():
    rows = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    b = collate(rows, pad_id=0, packed=False)
    assert b["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert b["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_collate_padding_free_is_one_row_with_restarted_positions():
    rows = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8, 9], "labels": [8, 9]}]
    b = collate(rows, pad_id=0, packed=False, padding_free=True)
    assert b["input_ids"].tolist() == [[5, 6, 7, 8, 9]] and b["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert b["labels"].tolist() == [[-100, 6, 7, -100, 9]] and "attention_mask" not in b
    packed = [{"input_ids": [1, 2, 3], "labels": [1, 2, 3], "position_ids": [0, 0, 1]}, rows[1]]
    assert collate(packed, 0, True, True)["position_ids"].tolist() == [[0, 0, 1, 0, 1]]


def test_padding_free_loss_equals_padded_loss(tiny):
    """The same micro batch padded or flattened gives the same loss (and so the same gradients)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny["model"], dtype=torch.float32)
    torch.manual_seed(2)
    rows = [{"input_ids": (ids := torch.randint(5, 1000, (n,)).tolist()), "labels": [-100] * 3 + ids[3:]}
            for n in (19, 11, 7)]
    with torch.no_grad():
        padded = model(**collate(rows, pad_id=0, packed=False), use_cache=False).loss
        flat = model(**collate(rows, pad_id=0, packed=False, padding_free=True), use_cache=False).loss
    torch.testing.assert_close(flat, padded, atol=1e-5, rtol=1e-5)


def test_deepspeed_config_filled_from_recipe():
    from webinstruct.training.trainer import deepspeed_config

    cfg = load_train_config("mammoth2", model="mistral-7b", offload="optimizer+params")
    ds = deepspeed_config(cfg, world=32, on_gpu=True)
    assert ds["train_micro_batch_size_per_gpu"] == 2 and ds["gradient_accumulation_steps"] == 8
    assert ds["train_batch_size"] == 512 and ds["bf16"] == {"enabled": True}
    assert ds["gradient_clipping"] == 1.0 and ds["optimizer"]["params"]["lr"] == 5e-6
    assert ds["zero_optimization"]["offload_param"]["device"] == "cpu"
    cpu = deepspeed_config(load_train_config("cpu-demo"), world=1, on_gpu=False)
    assert cpu["zero_optimization"]["stage"] == 2 and "offload_param" not in cpu["zero_optimization"]
    assert cpu["bf16"] == {"enabled": False} and cpu["optimizer"]["params"]["torch_adam"] is True
    with pytest.raises(ValueError):
        deepspeed_config(load_train_config("cpu-demo", offload="optimizer+params"), world=1, on_gpu=False)
    assert "auto" not in json.dumps(ds)


@pytest.mark.slow
def test_plus_recipe_second_stage_starts_from_the_first(tiny, tmp_path):
    """`then:` in a recipe: stage 2 trains the first stage's exported model on other data."""
    with open(tmp_path / "more.jsonl", "w") as fh:
        for p in _gsm8k_pairs(80)[64:]:
            fh.write(json.dumps({"query": p["question"], "response": p["answer"], "type": "GSM_AnsAug"}) + "\n")
    recipe = tmp_path / "plus.yaml"
    recipe.write_text(
        "train:\n  format: chat\n  max_len: 128\n  global_batch: 4\n  micro_batch: 2\n  max_steps: 2\n"
        f"  lr: {LR}\n  zero_stage: 2\n  bf16: false\n  seed: 7\n"
        f"  data:\n    - {{path: {tiny['root'] / 'pairs.jsonl'}, name: gsm8k}}\n"
        f"  then:\n    max_steps: 3\n    data:\n      - {{path: {tmp_path / 'more.jsonl'}, name: metamathqa}}\n")
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "TOKENIZERS_PARALLELISM": "false"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    done = subprocess.run([PY, "-m", "webinstruct.training.trainer", "--config", str(recipe), "--model", tiny["model"],
                           "--run", str(run)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    first, second = run / "train" / "tiny-llama", run / "train" / "tiny-llama-stage2"
    assert (first / "final" / "config.json").exists() and (second / "final" / "config.json").exists()
    stats = json.loads((second / "stats.json").read_text())
    assert stats["model_path"] == str(first / "final") and stats["steps"] == 3
    assert [json.loads(x)["step"] for x in (second / "log.jsonl").read_text().splitlines()] == [1, 2, 3]
