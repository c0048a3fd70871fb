"""Where the evaluation's engines run: tensor-parallel size (tp) and data-parallel replicas (dp).

A replica is one engine (a vLLM `LLM`, or a transformers model) on `tp` GPUs; `dp` replicas each
answer a contiguous share of the questions. Tensor parallelism costs communication at every layer,
so the rule is: as few GPUs per replica as hold the model, as many replicas as the GPUs allow.

`choose` is pure arithmetic (unit-tested with made-up GPUs and models):

1. Which tp vLLM can run: it splits attention heads across the tp GPUs, so the number of heads
   must be divisible by tp (vllm/config/model.py, `verify_with_parallel_config`), and the KV heads
   must be divisible by tp, or, when there are fewer KV heads than GPUs, tp must be a multiple of
   them (each KV head is then copied; the attention layers of vllm/model_executor/models/llama.py
   assert it). Automatic choices are also powers of two: MLP widths of released models divide by
   them, while a 3- or 5-way split often does not, and vLLM's custom all-reduce kernels cover
   2, 4, 6, 8 and 16 GPUs (its quick all-reduce 2, 4 and 8). An explicit `tp` is only checked
   against the head rule.
2. Which tp holds the model: a replica has `tp x memory x utilization` bytes (vLLM's
   gpu_memory_utilization, 0.9 by default); it must hold the weights plus `headroom` (KV cache and
   activations). The smallest such tp wins. If none leaves the headroom, the smallest tp that holds
   the weights alone is taken and the reason says the KV cache will be small; if the weights do not
   fit on all GPUs together, `ValueError`.
3. dp = GPUs // tp. GPUs left over stay idle (said in the reason).

Overrides: `tp` and `dp` (0: automatic). Only `dp`: each replica gets the largest valid tp within
GPUs // dp (the replica count is what was asked; the GPUs still serve it). A tp the heads do not
allow, tp x dp over the GPUs, or tp > 1 without GPUs fails with one `ValueError` line, before any
model loads. Without GPUs: tp 1 and dp 1 unless asked (replicas then share the CPU cores).

`model_estimate` reads what `choose` needs from a model folder; `gpu_inventory` asks torch about
the visible GPUs. The vLLM head rule, the GPU probe and the utilization are those of
`webinstruct.core.placement`, which sizes the local LLM server the same way (its memory rule is
weights x 1.2; here the headroom is an explicit KV cache, as an evaluation keeps many answers in
flight).
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from webinstruct.core.placement import UTILIZATION, detect_devices, heads_allow

GB = 10 ** 9
GIB = 1024 ** 3
# Default headroom: a KV cache for this many tokens (32 concurrent answers of 2,048 tokens: the
# MAmmoTH2 budget; prompts of a few hundred to ~1,500 tokens share prefixes) plus a reserve for
# activations, CUDA graphs and the sampler.
KV_TOKENS = 65536
ACTIVATION_RESERVE = 2 * GIB
_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}  # cast to the serving dtype on load; other types load as stored


@dataclass(frozen=True)
class Placement:
    tp: int  # GPUs per replica (tensor-parallel size for vLLM, the device_map span for transformers)
    dp: int  # replicas
    reason: str

    @property
    def gpus(self) -> int:
        return self.tp * self.dp

    def devices(self, visible: list[str]) -> list[list[str]]:
        """Each replica's GPUs, as CUDA_VISIBLE_DEVICES entries: consecutive runs of `visible`."""
        if len(visible) < self.gpus:
            raise ValueError(f"placement needs {self.gpus} GPUs, {len(visible)} visible")
        return [list(visible[r * self.tp:(r + 1) * self.tp]) for r in range(self.dp)]


def _gb(n: float) -> str:
    return f"{n / GB:.1f} GB"


def choose(gpus: int, gpu_bytes: int, heads: int, kv_heads: int, weight_bytes: int, headroom: int = 0,
           utilization: float = UTILIZATION, tp: int = 0, dp: int = 0, head_rule: bool = True) -> Placement:
    """tp and dp for `gpus` GPUs of `gpu_bytes` each (the smallest, when they differ) and a model of
    `heads` / `kv_heads` attention heads and `weight_bytes` of weights needing `headroom` more per
    replica. `tp`, `dp`: overrides (0: choose). `head_rule`: False for engines that do not split
    heads (transformers' device_map places whole layers)."""
    def allowed(t: int) -> bool:
        return heads_allow(t, heads, kv_heads) if head_rule else t >= 1

    def flag() -> str:
        return " ".join(f"--{k} {v}" for k, v in (("tp", tp), ("dp", dp)) if v)

    if gpus <= 0:
        if tp > 1:
            raise ValueError(f"--tp {tp}: no GPU is visible, and tensor parallelism needs GPUs")
        dp = dp or 1
        return Placement(1, dp, "no GPU visible: " + ("one engine in this process" if dp == 1 else
                                                      f"{dp} engine processes sharing the CPU cores (--dp {dp})"))
    if tp > gpus or dp > gpus or tp * dp > gpus:
        raise ValueError(f"{flag()} needs {max(tp, 1) * max(dp, 1)} GPUs; {gpus} in use")
    if tp and not allowed(tp):
        valid = ", ".join(str(t) for t in range(1, gpus + 1) if allowed(t))
        raise ValueError(f"--tp {tp}: vLLM splits the model's {heads} attention heads and {kv_heads} KV heads over the "
                         f"tensor-parallel GPUs, so heads must be divisible by tp and KV heads divisible by tp or "
                         f"tp by KV heads; tp that work on {gpus} GPUs: {valid}")

    usable = gpu_bytes * utilization
    need = weight_bytes + headroom
    facts = (f"{gpus} GPU{'s' if gpus > 1 else ''} of {_gb(gpu_bytes)} ({utilization:.0%} usable: {_gb(usable)}); "
             f"model {heads} heads / {kv_heads} KV heads, weights {_gb(weight_bytes)} + headroom {_gb(headroom)}")
    limit = gpus // dp if dp else gpus
    powers = [t for t in (2 ** k for k in range(limit.bit_length())) if t <= limit and allowed(t)]
    if tp:
        why = f"tp {tp} as asked"
        if tp * usable < weight_bytes:
            raise ValueError(f"--tp {tp}: the weights ({_gb(weight_bytes)}) do not fit on {tp} GPU(s) of {_gb(usable)} "
                             f"usable each")
        if tp * usable < need:
            why += " (KV headroom short: few answers at a time)"
    elif dp:
        tp = max(powers)  # 1 is always allowed
        if tp * usable < weight_bytes:
            raise ValueError(f"--dp {dp}: a replica gets at most {tp} GPU(s) the heads allow, and the weights "
                             f"({_gb(weight_bytes)}) do not fit on {tp} GPU(s) of {_gb(usable)} usable each")
        why = f"tp {tp}: the most GPUs each of the {dp} replicas asked for can use"
        if tp * usable < need:
            why += " (KV headroom short: few answers at a time)"
    else:
        roomy = [t for t in powers if t * usable >= need]
        tight = [t for t in powers if t * usable >= weight_bytes]
        if roomy:
            tp = roomy[0]
            why = f"tp {tp}: the fewest GPUs that hold weights + headroom"
        elif tight:
            tp = tight[0]
            why = f"tp {tp}: the fewest GPUs that hold the weights (KV headroom short: few answers at a time)"
        else:
            raise ValueError(f"the model's weights ({_gb(weight_bytes)}) do not fit on {powers[-1]} GPU(s) of "
                             f"{_gb(usable)} usable each (the most its {heads} heads allow on {gpus} GPUs)")
    dp = dp or gpus // tp
    idle = gpus - tp * dp
    reason = f"{facts}: {why}, dp {dp} replica{'s' if dp > 1 else ''}" + (f", {idle} GPU(s) idle" if idle else "")
    return Placement(tp, dp, reason)


# ---------------------------------------------------------------------------------------------
# What `choose` needs, from the machine and the model folder


def gpu_inventory() -> tuple[list[str], int]:
    """(CUDA_VISIBLE_DEVICES entries of the visible GPUs, memory of the smallest in bytes);
    ([], 0) without GPUs. The memory is read in a child process (`detect_devices`), so no CUDA
    context stays in this one, which may start vLLM on the same GPUs."""
    try:
        import torch
    except ImportError:
        return [], 0
    if not torch.cuda.is_available():
        return [], 0
    devices = detect_devices()
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    ids = listed[:devices.count] if len(listed) >= devices.count else [str(i) for i in range(devices.count)]
    return ids, devices.memory


def _safetensors_bytes(files: list[Path], dtype_bytes: int) -> int:
    """Weight bytes once loaded: float tensors at `dtype_bytes` per value, others as stored
    (quantized packs), read from the safetensors headers (no tensor data is read)."""
    total = 0
    for path in files:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for dim in entry["shape"]:
                count *= dim
            start, end = entry["data_offsets"]
            total += count * dtype_bytes if entry["dtype"] in _FLOAT_DTYPES else end - start
    return total


@dataclass(frozen=True)
class ModelEstimate:
    heads: int
    kv_heads: int
    weight_bytes: int
    headroom: int
    source: str  # where weight_bytes comes from


def spec_estimate(spec, weight_bytes: int = 0, dtype_bytes: int = 2, kv_tokens: int = KV_TOKENS,
                  source: str = "") -> ModelEstimate:
    """A `ModelEstimate` from a `ModelSpec`: `weight_bytes` when measured, else the architecture's
    parameter count x `dtype_bytes`; headroom = a KV cache of `kv_tokens` tokens (keys and values of
    every layer's KV heads) + `ACTIVATION_RESERVE`."""
    if not weight_bytes:
        from webinstruct.training.plan import parameter_count
        weight_bytes, source = parameter_count(spec)["total"] * dtype_bytes, "parameter count of the architecture"
    kv_per_token = 2 * spec.num_layers * spec.num_kv_heads * spec.head_size * dtype_bytes
    return ModelEstimate(spec.num_heads, spec.num_kv_heads, weight_bytes, kv_tokens * kv_per_token + ACTIVATION_RESERVE,
                         source)


def model_estimate(model_dir: str, dtype_bytes: int = 2, kv_tokens: int = KV_TOKENS) -> ModelEstimate:
    """`spec_estimate` for a model folder: heads from config.json, weight bytes in the serving dtype
    from the safetensors headers (else the parameter count of config.json's architecture)."""
    from webinstruct.core.registry import get_spec

    files = sorted(Path(model_dir).glob("*.safetensors"))
    weights = _safetensors_bytes(files, dtype_bytes) if files else 0
    return spec_estimate(get_spec(model_dir), weights, dtype_bytes, kv_tokens, "safetensors headers" if weights else "")
