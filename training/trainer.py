"""The trainer: a transformers causal LM driven by DeepSpeed (ZeRO 2 or 3) on the recipe's data.

    python -m webinstruct.training.trainer --config infra/recipes/train/cpu-demo.yaml [--model M] [--run RUN]
    torchrun --nproc_per_node 2 -m webinstruct.training.trainer --config cpu-demo --run-dir RUN  (torchrun takes --run)
    deepspeed --num_gpus 8 --module webinstruct.training.trainer --config mammoth2 --model mistral-7b --run RUN

Everything goes under RUN/train/<model>/: log.jsonl (step, loss, lr, grad_norm, tokens/s),
checkpoints/step<N>/ (DeepSpeed checkpoints, every `save_every` steps and at the end),
final/ (a normal model folder: safetensors, config, tokenizer with its chat template),
loss.png, stats.json and tb/ (TensorBoard, when the tensorboard package is installed).
Started again with the same command after a crash, it loads the latest checkpoint and
continues the same schedule from its step (same world size: ZeRO checkpoints are per rank).

The logged loss is the mean of the micro batches' token-mean losses over accumulation steps and
processes (what DeepSpeed's gradient averages too). Every rank reads and encodes the whole data
set: fine up to some 100k examples; beyond, encode once and cache (not done yet).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from webinstruct.core.config import ConfigParser, add_arguments, given_flags, section_values
from webinstruct.core import io as fio
from webinstruct.core.procs import free_port
from webinstruct.training.batches import StepOrder, collate
from webinstruct.training.config import TrainConfig, check_learning_rates, load_train_config
from webinstruct.training.data import mix, pack, padding_share, read_examples
from webinstruct.core.formatting import encode_all, ensure_chat_template
from webinstruct.core.registry import ModelNotFound, resolve
from webinstruct.training.schedule import lr_factor, warmup_steps
from webinstruct.core.resources import infra_path

DEEPSPEED_DIR = infra_path("deepspeed")


def ensure_dist_env() -> None:
    """A plain `python -m webinstruct.training.trainer` is a world of one: give it what a launcher would set."""
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))


def deepspeed_config(cfg: TrainConfig, world: int, on_gpu: bool) -> dict[str, Any]:
    """infra/deepspeed/zero{2,3}.json filled with this run's batch, precision, offload and optimizer."""
    stage = cfg.zero_stage
    ds = json.loads((DEEPSPEED_DIR / f"zero{3 if stage == 3 else 2}.json").read_text())
    accum = max(1, math.ceil(cfg.global_batch / (cfg.micro_batch * world)))
    ds["train_micro_batch_size_per_gpu"] = cfg.micro_batch
    ds["gradient_accumulation_steps"] = accum
    ds["train_batch_size"] = cfg.micro_batch * accum * world
    ds["bf16"] = {"enabled": bool(cfg.bf16 and on_gpu)}
    params = ds["optimizer"]["params"]
    params.update(lr=cfg.learning_rate(), weight_decay=cfg.weight_decay)
    # On a CPU torch's AdamW avoids compiling DeepSpeed's fused Adam; on GPUs the fused one is faster.
    params["torch_adam"] = not on_gpu
    zero = ds["zero_optimization"]
    zero["stage"] = stage
    if cfg.offload not in ("none", "optimizer", "optimizer+params"):
        raise ValueError(f"offload must be none, optimizer or optimizer+params, got {cfg.offload!r}")
    if cfg.offload != "none":
        if stage == 0:
            raise ValueError("offload needs ZeRO stage 1, 2 or 3")
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": on_gpu}
    if cfg.offload == "optimizer+params":
        if stage != 3:
            raise ValueError("offload=optimizer+params needs zero_stage 3")
        zero["offload_param"] = {"device": "cpu", "pin_memory": on_gpu}
    if stage < 3:
        for key in [k for k in zero if k.startswith("stage3_") or k == "offload_param"]:
            zero.pop(key)
    return ds


def load_rows(cfg: TrainConfig, tokenizer) -> tuple[list[dict[str, Any]], Counter]:
    """Read, mix (seeded), encode and optionally pack the recipe's data sources."""
    counts: Counter = Counter()
    sources = []
    for src in cfg.data_sources():
        sources.append((list(read_examples(src["path"], src["name"], counts)), float(src["weight"])))
    encoded = encode_all(mix(sources, cfg.seed), tokenizer, cfg.format, cfg.max_len, counts)
    counts["padding_share_unpacked"] = padding_share([len(e["input_ids"]) for e in encoded], cfg.micro_batch)
    counts["padding_share_trained"] = 0.0 if cfg.padding_free else counts["padding_share_unpacked"]
    if not cfg.packing:
        return encoded, counts
    rows = pack(encoded, cfg.max_len)
    counts["packed_rows"] = len(rows)
    counts["padding_share_packed"] = padding_share([len(r["input_ids"]) for r in rows], cfg.micro_batch)
    counts["padding_share_trained"] = counts["padding_share_packed"]  # packed rows are padded, not flattened
    return rows, counts


class RunLog:
    """log.jsonl (rank 0), optionally mirrored to TensorBoard."""

    def __init__(self, out: Path, resume_step: int, enabled: bool):
        self.path, self.enabled, self.tb = out / "log.jsonl", enabled, None
        if not enabled:
            return
        # A killed run may have logged steps after its last checkpoint: those are trained again.
        kept = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= resume_step] if self.path.exists() else []
        fio.write_atomic(self.path, "".join(line + "\n" for line in kept))
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(out / "tb"), purge_step=resume_step + 1)
        except ImportError as err:
            print(f"TensorBoard logs skipped ({err}); log.jsonl has the same numbers", flush=True)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        fio.append_lines(self.path, [json.dumps(record) + "\n"], durable=False)
        if self.tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tb.add_scalar(f"train/{key}", value, record["step"])

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def latest_tag(ckpt_dir: Path) -> str | None:
    latest = ckpt_dir / "latest"
    return latest.read_text().strip() if latest.is_file() else None


def prune_checkpoints(ckpt_dir: Path, keep: int) -> None:
    """Keep the `keep` newest step<N> folders (ZeRO-3 checkpoints of a 7B model are ~100 GB each)."""
    tags = sorted((p for p in ckpt_dir.glob("step*") if p.is_dir() and p.name[4:].isdigit()),
                  key=lambda p: int(p.name[4:]))
    for old in tags[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def export_model(engine, model, tokenizer, out: Path, zero_stage: int, rank: int) -> None:
    """A normal model folder from the trained engine; under ZeRO-3 the partitioned parameters are
    gathered one at a time (all ranks take part) and rank 0 writes them."""
    import torch
    import deepspeed

    if zero_stage == 3:
        state = {}
        # remove_duplicate=False: tied weights (lm_head = embeddings) appear under both names.
        for name, param in model.named_parameters(remove_duplicate=False):
            with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
                if rank == 0:
                    state[name] = param.data.detach().cpu().clone()
        if rank == 0:
            keys = set(model.state_dict())
            state.update({k: b.detach().cpu().clone() for k, b in model.named_buffers() if k in keys})
    else:
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()} if rank == 0 else None
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        model.config.use_cache = True
        model.save_pretrained(str(out), state_dict=state, safe_serialization=True)
        tokenizer.save_pretrained(str(out))
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def loss_curve(records: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["step"] for r in records], [r["loss"] for r in records], marker=".")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train with DeepSpeed in the current process group; returns the stats (on every rank)."""
    ensure_dist_env()
    import torch
    import deepspeed
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.time()
    resolved = resolve(cfg.model, cfg.model_path)  # ModelNotFound before any process group work
    deepspeed.init_distributed(dist_backend=None)
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    on_gpu = torch.cuda.is_available()
    out = Path(cfg.out_dir())
    ckpt_dir = out / "checkpoints"
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    tokenizer = AutoTokenizer.from_pretrained(resolved.path)
    ensure_chat_template(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows, counts = load_rows(cfg, tokenizer)

    dtype = torch.bfloat16 if (cfg.bf16 and on_gpu) else torch.float32
    torch.manual_seed(cfg.seed)
    model = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=dtype)
    model.config.use_cache = False
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    ds_config = deepspeed_config(cfg, world, on_gpu)
    accum = ds_config["gradient_accumulation_steps"]
    order = StepOrder(len(rows), cfg.micro_batch, accum, world, cfg.seed)
    total = order.steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    warmup = warmup_steps(total, cfg.warmup_ratio)
    lr_factor(0, total, warmup, cfg.schedule)  # an unknown schedule fails before initialize

    def scheduler(optimizer):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup, cfg.schedule))

    engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=model.parameters(),
                                           config=ds_config, lr_scheduler=scheduler)
    step = 0
    tag = latest_tag(ckpt_dir)
    if tag is not None:
        path, client = engine.load_checkpoint(str(ckpt_dir), tag=tag)
        if path is None:
            raise RuntimeError(f"checkpoint {ckpt_dir / tag} could not be loaded")
        step = int(client["step"])
        if client.get("total_steps", total) != total:
            raise ValueError(f"checkpoint {tag} belongs to a run of {client['total_steps']} steps, this one has "
                             f"{total}: same data and recipe needed to resume (or remove {ckpt_dir})")
    log = RunLog(out, step, enabled=rank == 0)
    if rank == 0:
        print(f"{resolved.name}: {len(rows)} rows, world {world}, micro batch {cfg.micro_batch} x accumulation "
              f"{accum} = {ds_config['train_batch_size']} per step, {total} steps ({warmup} warmup), "
              f"lr {cfg.learning_rate():g}, ZeRO-{cfg.zero_stage}, {dtype}"
              + (f", resuming at step {step} ({tag})" if step else ""), flush=True)

    device = engine.device
    engine.train()
    bar = tqdm(total=total, initial=step, disable=rank != 0, desc="train", dynamic_ncols=True)
    trained_tokens = 0
    while step < total:
        t0 = time.time()
        lr = engine.get_lr()[0]  # the rate this step's update uses
        loss_sum = torch.zeros((), device=device)
        tokens = torch.zeros((), device=device, dtype=torch.long)
        for micro in range(accum):
            micro_rows = [rows[i] for i in order.rows(step, micro, rank)]
            batch = {k: v.to(device) for k, v in collate(micro_rows, pad_id, cfg.packing, cfg.padding_free and not cfg.packing).items()}
            # use_cache=False: with packing, the only way transformers keeps the sequences apart.
            result = engine(**batch, use_cache=False)
            engine.backward(result.loss)
            engine.step()  # DeepSpeed updates only at the accumulation boundary
            loss_sum += result.loss.detach().float()
            tokens += sum(len(r["input_ids"]) for r in micro_rows)
        torch.distributed.all_reduce(loss_sum)
        torch.distributed.all_reduce(tokens)
        step += 1
        seconds = time.time() - t0
        grad_norm = engine.get_global_grad_norm()
        grad_norm = float(grad_norm) if grad_norm is not None else None
        record = {"step": step, "loss": round(loss_sum.item() / (accum * world), 6), "lr": lr,
                  "grad_norm": grad_norm, "tokens": int(tokens.item()),
                  "tokens_per_s": round(tokens.item() / seconds, 1), "epoch": (step - 1) // order.steps_per_epoch}
        trained_tokens += record["tokens"]
        log.write(record)
        bar.update(1)
        bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}")
        if (cfg.save_every and step % cfg.save_every == 0) or step == total:
            engine.save_checkpoint(str(ckpt_dir), tag=f"step{step}",
                                   client_state={"step": step, "epoch": record["epoch"], "total_steps": total,
                                                 "rows": len(rows), "seed": cfg.seed})
            if rank == 0:
                prune_checkpoints(ckpt_dir, cfg.keep_checkpoints)
    bar.close()

    export_model(engine, engine.module, tokenizer, out / "final", cfg.zero_stage, rank)
    stats = {"model": resolved.name, "model_path": resolved.path, "world_size": world, "steps": total,
             "warmup_steps": warmup, "grad_accumulation": accum, "rows": len(rows),
             "tokens_trained_this_session": trained_tokens, **dict(counts),
             "dropped": counts.get("dropped_prompt_too_long", 0),
             "wall_seconds_this_session": round(time.time() - started, 1)}
    if rank == 0:
        records = log.records()
        stats["tokens_trained"] = sum(r["tokens"] for r in records)
        stats["final_loss"] = records[-1]["loss"] if records else None
        fio.write_json(out / "stats.json", stats, sort_keys=False)
        if records:
            loss_curve(records, out / "loss.png", f"{resolved.name} ({cfg.recipe})")
        print(f"done: {total} steps, model in {out / 'final'}", flush=True)
    log.close()
    return stats


def train_stages(cfg: TrainConfig) -> list[dict[str, Any]]:
    """`train(cfg)`, then its `then` stage (if any) from the first stage's exported model."""
    stats = [train(cfg)]
    second = cfg.next_stage()
    if second is not None:
        print(f"second stage: {second.out_dir()} from {second.model}", flush=True)
        stats.append(train(second))
    return stats


def parser() -> argparse.ArgumentParser:
    """The trainer's own flags (what torchrun and DeepSpeed's launcher pass): --config plus the
    `train` settings, with one-line errors."""
    p = ConfigParser(prog="python -m webinstruct.training.trainer", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="recipe: a name (infra/recipes/train/<name>.yaml) or a YAML path")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)  # launchers
    add_arguments(p, TrainConfig, section="train")
    # torchrun reads `--run` after the script as an abbreviation of its own --run-path: use --run-dir there.
    p.add_argument("--run-dir", dest="train.run", default=argparse.SUPPRESS, help="same as --run")
    return p


def load_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's TrainConfig from parsed trainer flags, checked before any process group or model exists."""
    overrides = section_values(args, "train")
    recipe = args.config or overrides.get("recipe") or ""  # none: the model's (training.config.default_recipe)
    cfg = load_train_config(recipe, flags=given_flags(overrides), **overrides)
    check_learning_rates(cfg)
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        cfg = load_from_args(args)  # settings and learning rates: ValueError is a config problem here
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        train_stages(cfg)
    except (ModelNotFound, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
