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

SIGTERM (what SLURM and Kubernetes send before killing; torchrun forwards it to its workers)
lets every rank finish the optimizer step under way, save a checkpoint at that step and exit with
code 143 (128 + SIGTERM, the code of a process the signal ended: schedulers and Kubeflow's
ExitCode restart policy read 128-255 as "retry", where 0 would mark the unfinished run done). The
same command resumes it. Leave a grace period longer than a step plus a checkpoint save: torchrun
kills its workers 30 s after forwarding the signal unless given --shutdown-timeout (or
TORCH_ELASTIC_SHUTDOWN_TIMEOUT); SLURM's KillWait and Kubernetes' terminationGracePeriodSeconds
bound it too.

Under ZeRO-3 the weights are loaded partitioned (training/loading.py): each rank reads and holds
only its share from the start (safetensors checkpoints with the model's own tensor names; others
go through transformers' ZeRO-3 loading). The attention kernel is chosen per device
(training/attention.py): flash-attention 2 on GPUs with the flash-attn package and bf16, else
PyTorch's SDPA. stats.json records both, and each rank's resident memory around the load.

The logged loss is the mean of the micro batches' token-mean losses over accumulation steps and
processes (what DeepSpeed's gradient averages too). The data is tokenised once, by rank 0 while
the other ranks wait (or beforehand with --prepare), into memory-mapped arrays under
RUN/train/<model>/data/<key>/ (training/prepared.py; the key covers the tokenizer, the settings
that change rows and the data files); every rank maps the same files, a restart reuses them.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
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
from webinstruct.core.formatting import ensure_chat_template
from webinstruct.core.registry import ModelNotFound, resolve
from webinstruct.training.schedule import lr_factor, warmup_steps
from webinstruct.core.resources import infra_path
from webinstruct.training.attention import check_transformers_version, choose_attention
from webinstruct.training import loading

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


def load_rows(cfg: TrainConfig, tokenizer) -> tuple[Any, Counter]:
    """The recipe's data sources read, mixed (seeded), encoded and optionally packed, as memory-mapped
    rows (training/prepared.py): prepared by rank 0 when missing, the other ranks waiting, then
    mapped by every rank; the counts as before (read, kept, tokens, truncated, dropped, padding shares...)."""
    from webinstruct.training.prepared import load_or_prepare

    prepared = load_or_prepare(cfg, tokenizer)
    return prepared.rows, prepared.counts(cfg.micro_batch, cfg.padding_free)


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


STOP_EXIT_CODE = 143  # 128 + SIGTERM: what a shell reports for a process the signal ended


class StoppedBySignal(SystemExit):
    """Raised on every rank once the checkpoint of a SIGTERM stop is saved: the process exits 143."""

    def __init__(self, step: int, total: int):
        super().__init__(STOP_EXIT_CODE)
        self.step, self.total = step, total


class StopRequest:
    """Notes a SIGTERM while installed (the step under way goes on); `agreed` tells every rank at a
    step boundary whether any rank got one, since the signal reaches ranks at different moments."""

    def __init__(self, rank: int):
        self.rank, self.signalled, self.previous = rank, False, None

    def install(self) -> None:
        import threading

        if threading.current_thread() is threading.main_thread():  # Python handles signals there only
            self.previous = signal.signal(signal.SIGTERM, self._note)

    def uninstall(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
            self.previous = None

    def _note(self, signum, frame) -> None:
        if not self.signalled and self.rank == 0:
            os.write(2, b"SIGTERM: finishing the optimizer step under way, then saving a checkpoint\n")
        self.signalled = True

    def agreed(self, device) -> bool:
        import torch

        flag = torch.tensor([int(self.signalled)], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train with DeepSpeed in the current process group; returns the stats (on every rank)."""
    ensure_dist_env()
    import torch
    import deepspeed
    from tqdm import tqdm
    from transformers import AutoTokenizer

    started = time.time()
    check_transformers_version()
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
    attn, attn_why = choose_attention(on_gpu, dtype, flattened=cfg.packing or cfg.padding_free)
    ds_config = deepspeed_config(cfg, world, on_gpu)  # before the model: under ZeRO-3 it is built partitioned
    torch.manual_seed(cfg.seed)
    plan = loading.plan_load(resolved.path, dtype, attn, ds_config)  # config and checkpoint headers only
    peak_reset = loading.reset_peak_rss()  # resident memory of this rank: before, and peak while loading
    rss_before = loading.rss_mib()
    model, hf_ds_config = loading.load_model(plan)
    load_peak = loading.peak_rss_mib()
    n_params = loading.parameter_count(model)
    model.config.use_cache = False
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

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
    init_peak = loading.peak_rss_mib()
    memory = _memory_per_rank(rss_before, load_peak, init_peak, peak_reset, world)
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
              f"lr {cfg.learning_rate():g}, ZeRO-{cfg.zero_stage}, {dtype}, weights loaded {plan.how}, "
              f"attention {attn} ({attn_why})"
              + (f", resuming at step {step} ({tag})" if step else ""), flush=True)
        print(f"resident memory per rank (MiB): before loading {_mib(memory['rss_before_load'])}; peak growth "
              f"while loading {_mib(memory['load_peak_growth'], '+')}, through deepspeed.initialize "
              f"{_mib(memory['initialize_peak_growth'], '+')}", flush=True)

    device = engine.device
    engine.train()
    bar = tqdm(total=total, initial=step, disable=rank != 0, desc="train", dynamic_ncols=True)
    trained_tokens = 0

    def save(at: int, epoch: int) -> None:
        engine.save_checkpoint(str(ckpt_dir), tag=f"step{at}",
                               client_state={"step": at, "epoch": epoch, "total_steps": total,
                                             "rows": len(rows), "seed": cfg.seed})
        if rank == 0:
            prune_checkpoints(ckpt_dir, cfg.keep_checkpoints)

    stop, stopped = StopRequest(rank), False
    stop.install()
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
        saved = bool(cfg.save_every and step % cfg.save_every == 0) or step == total
        if saved:
            save(step, record["epoch"])
        if stop.agreed(device):  # every rank, every step: all stop at the same step
            if not saved:
                save(step, record["epoch"])
            stopped = True
            break
    stop.uninstall()
    bar.close()
    if stopped:
        log.close()
        loading.release_hf_deepspeed_config()
        if rank == 0:
            print(f"stopped by SIGTERM at step {step} of {total}: checkpoint {ckpt_dir / f'step{step}'} saved; "
                  f"run the same command again to resume (exit code {STOP_EXIT_CODE})", flush=True)
        raise StoppedBySignal(step, total)

    export_model(engine, engine.module, tokenizer, out / "final", cfg.zero_stage, rank)
    stats = {"model": resolved.name, "model_path": resolved.path, "world_size": world, "steps": total,
             "warmup_steps": warmup, "grad_accumulation": accum, "rows": len(rows),
             "tokens_trained_this_session": trained_tokens, **dict(counts),
             "dropped": counts.get("dropped_prompt_too_long", 0),
             "attn_implementation": attn, "attention_reason": attn_why, "model_load": plan.how,
             "model_parameters": n_params, "memory_mib": memory,
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
    loading.release_hf_deepspeed_config()
    del hf_ds_config
    return stats


def _memory_per_rank(before: float | None, load_peak: float | None, init_peak: float | None, peak_reset: bool,
                     world: int) -> dict[str, Any]:
    """Every rank's resident memory before the model load and its peak growth while loading and through
    deepspeed.initialize (MiB, all ranks take part). A whole load maps the checkpoint lazily: its
    weights come into memory in deepspeed.initialize. Without a peak reset (`peak_reset` false) the
    peaks date from process start: upper bounds."""
    import torch

    mine = (before, load_peak, init_peak)
    ranks: list[Any] = [None] * world
    torch.distributed.all_gather_object(ranks, mine)

    def growth(i: int) -> list[float | None]:
        return [round(r[i] - r[0], 1) if r[i] is not None and r[0] is not None else None for r in ranks]

    return {"rss_before_load": [round(r[0], 1) if r[0] is not None else None for r in ranks],
            "load_peak_growth": growth(1), "initialize_peak_growth": growth(2), "peak_reset": peak_reset}


def _mib(values: list[float | None], sign: str = "") -> str:
    return ", ".join("?" if v is None else f"{sign}{v:.0f}" for v in values)


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
    p.add_argument("--prepare", action="store_true",
                   help="only tokenise the data into RUN/train/<model>/data/<key>/ (reused when there) and exit")
    return p


def load_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's TrainConfig from parsed trainer flags, checked before any process group or model exists."""
    overrides = section_values(args, "train")
    recipe = args.config or overrides.get("recipe") or ""  # none: the model's (training.config.default_recipe)
    cfg = load_train_config(recipe, flags=given_flags(overrides), **overrides)
    check_learning_rates(cfg)
    check_transformers_version()  # a ValueError here is one line, before any process group or model
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        cfg = load_from_args(args)  # settings and learning rates: ValueError is a config problem here
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.prepare:
        from webinstruct.training.prepared import prepare_and_describe
        try:
            print(prepare_and_describe(cfg))
        except (ModelNotFound, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        return 0
    try:
        train_stages(cfg)
    except (ModelNotFound, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
