"""The DRY_RUN planner: parameter count, model-state memory per GPU, data tokens and steps.

Memory follows the ZeRO paper (Rajbhandari et al., arXiv 1910.02054, section 3): mixed-precision
Adam keeps 2 bytes of parameters, 2 bytes of gradients and K = 12 bytes of optimizer states (fp32
master weights, momentum, variance) per parameter. Over Nd data-parallel processes:

    stage 0: (2 + 2 + K) P          stage 2: 2 P + (2 + K) P / Nd
    stage 1: (2 + 2) P + K P / Nd   stage 3: (2 + 2 + K) P / Nd

Offload moves the optimizer-state term to CPU memory (and with `optimizer+params`, stage 3 only,
the parameter partitions too).

Two more estimates, with what they assume printed beside them:
- Load peak (host memory while the weights are read): without ZeRO-3 every process builds the
  whole model (2 bytes per parameter in bf16) before DeepSpeed takes it over; under ZeRO-3 the
  model is built partitioned (`HfDeepSpeedConfig`), so a process holds its share plus the
  checkpoint file being read (the largest shard: measured when the folder is on the machine,
  else 5 GB, the usual shard size of hub checkpoints).
- Activations per GPU for one micro batch of `micro_batch x max_len` tokens (an upper bound: rows
  are at most max_len long), bf16, attention by SDPA or FlashAttention (no s x s score matrix is
  kept). A Llama-family layer keeps about 4h + 3q + 3kv + 4i values per token for the backward
  pass (norm inputs, the projections' inputs, q/k/v before and after rotary embedding, the MLP's
  gate, up, activation and product; h hidden, q and kv the query and key/value widths, i the MLP
  width, times the experts a token visits for a mixture of experts). With gradient checkpointing
  only each layer's input (h per token) is kept and one layer is recomputed at a time. The logits
  add vocab x 10 bytes per token (bf16 logits, their fp32 copy for the loss and its log-softmax).
  Temporary buffers, fragmentation and the CUDA context (~1-2 GiB) come on top.
"""
from __future__ import annotations

import math
from typing import Any

from webinstruct.core.registry import ModelSpec, get_spec

GIB = 1024 ** 3
OFFLOADS = ("none", "optimizer", "optimizer+params")
DEFAULT_SHARD_BYTES = 5 * 10 ** 9  # hub checkpoints are mostly cut in shards of about 5 GB
LOGIT_BYTES = 10  # per vocabulary entry and token: bf16 logits, fp32 copy, fp32 log-softmax


def parameter_count(spec: ModelSpec) -> dict[str, int]:
    """Parameters by part (Llama-family layout: no biases, RMSNorm weights only) and the total."""
    h, hd = spec.hidden_size, spec.head_size
    attention = h * spec.num_heads * hd * 2 + h * spec.num_kv_heads * hd * 2  # q and o; k and v (GQA)
    mlp = 3 * h * spec.intermediate_size  # SwiGLU: gate, up, down
    if spec.num_experts:
        mlp = spec.num_experts * mlp + h * spec.num_experts  # experts + router
    norms = 2 * h
    parts = {
        "embedding": spec.vocab_size * h,
        "attention": spec.num_layers * attention,
        "mlp": spec.num_layers * mlp,
        "norms": spec.num_layers * norms + h,  # two per layer + the final norm
        "lm_head": 0 if spec.tie_embeddings else spec.vocab_size * h,
    }
    parts["total"] = sum(parts.values())
    if spec.num_experts:  # parameters one token passes through
        parts["active"] = parts["total"] - spec.num_layers * (spec.num_experts - spec.experts_per_token) * 3 * h * spec.intermediate_size
    return parts


def memory_per_gpu(params: int, zero_stage: int, offload: str = "none", n_gpus: int = 1, n_nodes: int = 1,
                   param_bytes: int = 2, grad_bytes: int = 2, optimizer_bytes: int = 12) -> dict[str, Any]:
    """Model-state bytes per GPU and per node's CPU memory (ZeRO formulas; see the module docstring).

    `n_gpus` is per node; data parallelism spans n_gpus * n_nodes processes. Returns None values for
    combinations DeepSpeed does not offer (offload at stage 0, parameter offload below stage 3)."""
    if zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"ZeRO stage must be 0-3, got {zero_stage}")
    if offload not in OFFLOADS:
        raise ValueError(f"offload must be one of {OFFLOADS}, got {offload!r}")
    nd = n_gpus * n_nodes
    p, g, o = param_bytes * params, grad_bytes * params, optimizer_bytes * params
    parts = {"params": p / nd if zero_stage >= 3 else p,
             "grads": g / nd if zero_stage >= 2 else g,
             "optimizer": o / nd if zero_stage >= 1 else o}
    supported = not ((offload != "none" and zero_stage == 0) or (offload == "optimizer+params" and zero_stage != 3))
    if not supported:
        return {"gpu_bytes": None, "cpu_bytes_per_node": None, "supported": False}
    moved = {"none": (), "optimizer": ("optimizer",), "optimizer+params": ("optimizer", "params")}[offload]
    gpu = sum(v for k, v in parts.items() if k not in moved)
    cpu = sum(parts[k] for k in moved) * n_gpus
    return {"gpu_bytes": gpu, "cpu_bytes_per_node": cpu, "supported": True}


def memory_table(params: int, n_gpus: int, n_nodes: int = 1, **bytes_per) -> list[dict[str, Any]]:
    rows = []
    for stage in (0, 1, 2, 3):
        for offload in OFFLOADS:
            m = memory_per_gpu(params, stage, offload, n_gpus, n_nodes, **bytes_per)
            if m["supported"]:
                rows.append({"zero_stage": stage, "offload": offload, "gpu_gib": m["gpu_bytes"] / GIB,
                             "cpu_gib_per_node": m["cpu_bytes_per_node"] / GIB})
    return rows


def load_peak(params: int, zero_stage: int, n_gpus: int = 1, n_nodes: int = 1, largest_shard: int = 0,
              param_bytes: int = 2) -> dict[str, Any]:
    """Host bytes per process and per node while the weights load (see the module docstring)."""
    nd = n_gpus * n_nodes
    shard = min(largest_shard or DEFAULT_SHARD_BYTES, param_bytes * params)
    if zero_stage == 3:
        per_process = param_bytes * params / nd + shard
        how = f"partitioned (ZeRO-3): its 1/{nd} share + the checkpoint shard being read"
    else:
        per_process = param_bytes * params
        how = "the whole model in every process until DeepSpeed takes it over"
    return {"per_process_bytes": per_process, "per_node_bytes": per_process * n_gpus, "largest_shard_bytes": shard,
            "how": how}


def activation_memory(spec: ModelSpec, tokens: int, checkpointing: bool, value_bytes: int = 2) -> dict[str, Any]:
    """Bytes of activations kept for the backward pass of one micro batch of `tokens` tokens."""
    h, hd = spec.hidden_size, spec.head_size
    q, kv = spec.num_heads * hd, spec.num_kv_heads * hd
    mlp = spec.intermediate_size * (spec.experts_per_token if spec.num_experts else 1)
    layer = (4 * h + 3 * q + 3 * kv + 4 * mlp) * value_bytes * tokens  # one layer, everything kept
    layers = (spec.num_layers * h * value_bytes * tokens + layer) if checkpointing else spec.num_layers * layer
    logits = spec.vocab_size * LOGIT_BYTES * tokens
    return {"tokens": tokens, "layers_bytes": layers, "logits_bytes": logits, "total_bytes": layers + logits,
            "checkpointing": checkpointing}


def plan(model: str | ModelSpec, data: dict[str, Any], recipe: Any, n_gpus: int = 1, n_nodes: int = 1,
         largest_shard: int = 0) -> dict[str, Any]:
    """Everything a cluster job needs to be sized, without weights.

    `data`: counts of the encoded data (`kept` or `examples` sequences, `tokens`, optional
    `packed_rows`, `truncated`, `dropped_prompt_too_long`); `recipe`: a TrainConfig."""
    spec = model if isinstance(model, ModelSpec) else get_spec(model)
    counts = parameter_count(spec)
    world = n_gpus * n_nodes
    per_step = recipe.micro_batch * world
    accumulation = max(1, math.ceil(recipe.global_batch / per_step))
    effective = recipe.micro_batch * accumulation * world
    sequences = data.get("packed_rows") if recipe.packing and data.get("packed_rows") else data.get("kept", data.get("examples", 0))
    steps_per_epoch = math.ceil(sequences / effective) if sequences else 0
    total = steps_per_epoch * recipe.epochs
    if recipe.max_steps:
        total = min(total, recipe.max_steps) if total else recipe.max_steps
    bytes_per = {} if recipe.bf16 else {"param_bytes": 4, "grad_bytes": 4, "optimizer_bytes": 12}
    try:
        lr, lr_source = recipe.learning_rate_source()
    except ValueError as err:
        lr, lr_source = None, str(err)
    value_bytes = 2 if recipe.bf16 else 4
    return {
        "model": spec.name, "hub_id": spec.hub_id, "parameters": counts,
        "precision": "bf16 mixed (2+2+12 bytes/param)" if recipe.bf16 else "fp32 (4+4+12 bytes/param)",
        "n_gpus": n_gpus, "n_nodes": n_nodes, "world_size": world,
        "memory": memory_table(counts["total"], n_gpus, n_nodes, **bytes_per),
        "chosen": {"zero_stage": recipe.zero_stage, "offload": recipe.offload},
        "data": dict(data), "sequences": sequences, "tokens": data.get("tokens", 0),
        "micro_batch": recipe.micro_batch, "grad_accumulation": accumulation,
        "global_batch": recipe.global_batch, "effective_batch": effective,
        "steps_per_epoch": steps_per_epoch, "epochs": recipe.epochs, "total_steps": total,
        "max_len": recipe.max_len, "lr": lr, "lr_source": lr_source,
        "load": load_peak(counts["total"], recipe.zero_stage, n_gpus, n_nodes, largest_shard, value_bytes),
        "activations": activation_memory(spec, recipe.micro_batch * recipe.max_len,
                                         bool(recipe.gradient_checkpointing), value_bytes),
    }


def format_plan(p: dict[str, Any]) -> str:
    """The plan as text for the terminal."""
    c = p["parameters"]
    lines = [f"model            {p['model']} ({p['hub_id']})",
             f"parameters       {c['total']:,} ({c['total'] / 1e9:.2f} B)"
             + (f", {c['active'] / 1e9:.2f} B active per token" if "active" in c else ""),
             "                 " + ", ".join(f"{k} {v / 1e6:,.1f} M" for k, v in c.items() if k not in ("total", "active")),
             f"GPUs             {p['n_gpus']} per node x {p['n_nodes']} node(s) = {p['world_size']} processes",
             f"batch            micro {p['micro_batch']} x accumulation {p['grad_accumulation']} x world "
             f"{p['world_size']} = effective {p['effective_batch']} (asked {p['global_batch']})"]
    if p["effective_batch"] != p["global_batch"]:
        lines.append("                 note: the global batch is not a multiple of micro batch x world size")
    lines += [f"data             {p['sequences']:,} sequences, {p['tokens']:,} tokens (max_len {p['max_len']})"
              + (f", {p['data'].get('truncated', 0):,} truncated, {p['data'].get('dropped_prompt_too_long', 0):,} dropped"
                 if "truncated" in p["data"] else ""),
              f"steps            {p['steps_per_epoch']:,} per epoch x {p['epochs']} epochs -> {p['total_steps']:,} total",
              f"learning rate    {p['lr']:g} ({p['lr_source']})" if p["lr"] is not None
              else f"learning rate    NONE: {p['lr_source']}",
              "", f"model states per GPU, {p['precision']} (activations not included):",
              f"  {'ZeRO':>4}  {'offload':<17} {'GPU GiB':>9} {'CPU GiB/node':>13}"]
    chosen = p["chosen"]
    for r in p["memory"]:
        mark = "  <- recipe" if (r["zero_stage"], r["offload"]) == (chosen["zero_stage"], chosen["offload"]) else ""
        lines.append(f"  {r['zero_stage']:>4}  {r['offload']:<17} {r['gpu_gib']:>9.1f} {r['cpu_gib_per_node']:>13.1f}{mark}")
    load, act = p["load"], p["activations"]
    lines += ["", f"load peak        {load['per_process_bytes'] / GIB:.1f} GiB host memory per process, "
                  f"{load['per_node_bytes'] / GIB:.1f} GiB per node: {load['how']}"
                  + (f" (largest shard {load['largest_shard_bytes'] / GIB:.1f} GiB)" if p["chosen"]["zero_stage"] == 3 else ""),
              f"activations      {act['total_bytes'] / GIB:.1f} GiB per GPU: {act['tokens']:,} tokens per micro batch "
              f"(micro {p['micro_batch']} x max_len {p['max_len']}), gradient checkpointing "
              f"{'on' if act['checkpointing'] else 'off'}; layers {act['layers_bytes'] / GIB:.1f} GiB, "
              f"logits {act['logits_bytes'] / GIB:.1f} GiB",
              "assumes          SDPA or FlashAttention (no s x s scores kept), rows of max_len tokens; temporary "
              "buffers, fragmentation and the CUDA context (~1-2 GiB) come on top"]
    return "\n".join(lines)
