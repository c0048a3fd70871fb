"""How many GPUs one vLLM engine spans (its tensor-parallel size), from the model and the GPUs.

The rule, pure arithmetic so it can be tested with made-up GPUs and models:

- vLLM splits the attention heads over the tensor-parallel GPUs: the head count must be divisible
  by tp, and the KV heads by tp, or tp by the KV heads when there are fewer of them than GPUs
  (each is then copied); see `verify_with_parallel_config` in vllm/config/model.py.
- tp GPUs hold `tp x memory x utilization` bytes (vLLM's `--gpu-memory-utilization`); the weights
  need their size times `HEADROOM` (the rest: KV cache, activations).
- The smallest tp that satisfies both, among the GPUs there are, wins: tensor parallelism costs
  communication in every layer.

The weight size is the total size of the model folder's safetensors files (else its PyTorch .bin
files). `detect_devices` asks torch, in a short-lived child process, how many GPUs are visible and
how much memory the smallest has.

Only the standard library here (core sits under the LLM layer and evaluation alike).
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

GIB = 1024 ** 3
UTILIZATION = 0.9  # the share of each GPU's memory vLLM may take (passed as --gpu-memory-utilization)
HEADROOM = 1.2  # weights x this must fit: the rest is for the KV cache and activations


@dataclass(frozen=True)
class Devices:
    """The visible GPUs: how many, and the memory of the smallest in bytes (0 and 0: none)."""
    count: int = 0
    memory: int = 0

    def __str__(self) -> str:
        if not self.count:
            return "no GPU"
        return f"{self.count} GPU{'s' if self.count > 1 else ''} of {self.memory / GIB:.1f} GiB"


# Run in a child so that no CUDA context (hundreds of MB on the first GPU) stays in the parent,
# which then starts vLLM on the same GPUs.
_PROBE = """
import json
try:
    import torch
except ImportError:
    torch = None
n = torch.cuda.device_count() if torch is not None and torch.cuda.is_available() else 0
print(json.dumps([torch.cuda.get_device_properties(i).total_memory for i in range(n)]))
"""


def detect_devices(timeout: float = 120.0) -> Devices:
    """The GPUs torch sees (CUDA_VISIBLE_DEVICES applies); `Devices()` without torch or GPUs.
    RuntimeError when the probe itself fails (it names the last line the probe printed)."""
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=timeout)
        memories = [int(m) for m in json.loads(out.stdout.strip().splitlines()[-1])] if out.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError, IndexError) as err:
        raise RuntimeError(f"could not list the GPUs (torch in a child process): {err}") from None
    if memories is None:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"could not list the GPUs (torch in a child process exited {out.returncode}): {last}")
    return Devices(len(memories), min(memories)) if memories else Devices()


def attention_heads(model_dir: str) -> tuple[int, int]:
    """(attention heads, KV heads) from the folder's config.json (a multimodal model's text part)."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    cfg = cfg.get("text_config") or cfg
    heads = int(cfg["num_attention_heads"])
    return heads, int(cfg.get("num_key_value_heads") or heads)


def weight_bytes(model_dir: str) -> int:
    """Total size of the folder's safetensors files, else of its PyTorch .bin weight files."""
    folder = Path(model_dir)
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    return sum(f.stat().st_size for f in files)


def heads_allow(tp: int, heads: int, kv_heads: int) -> bool:
    """Whether vLLM can split `heads` attention heads and `kv_heads` KV heads over `tp` GPUs."""
    if tp < 1 or heads % tp:
        return False
    return kv_heads % tp == 0 if kv_heads >= tp else tp % kv_heads == 0


def smallest_tp(weights: int, heads: int, kv_heads: int, gpus: int, gpu_memory: int,
                utilization: float = UTILIZATION, headroom: float = HEADROOM) -> int:
    """The fewest of `gpus` GPUs of `gpu_memory` bytes that vLLM can split the heads over and
    whose usable memory holds `weights` x `headroom`; ValueError (one line) when none does."""
    need = weights * headroom
    usable = gpu_memory * utilization
    valid = [tp for tp in range(1, gpus + 1) if heads_allow(tp, heads, kv_heads)]
    for tp in valid:
        if tp * usable >= need:
            return tp
    top = valid[-1] if valid else 1
    raise ValueError(f"the model's weights ({weights / GIB:.1f} GiB, {need / GIB:.1f} GiB with {headroom:g}x headroom) "
                     f"do not fit on {top} GPU(s) of {gpu_memory / GIB:.1f} GiB at {utilization:.0%} (the most that "
                     f"its {heads} attention heads / {kv_heads} KV heads allow on {gpus} GPUs)")
