"""Putting the model's weights on each rank: whole (ZeRO 0-2), or partitioned while loading (ZeRO-3).

Why not just `HfDeepSpeedConfig` + `from_pretrained` under ZeRO-3: transformers 5.19 does build
the model partitioned then (under `deepspeed.zero.Init`), but it first merges every checkpoint
shard into one state dict on every rank, and rank 0 copies each tensor into the gathered layer
before it is split again. The shards are memory-mapped, so rank 0's resident memory still climbs
to the whole checkpoint (file pages) plus its share, on every node.

Here, when the checkpoint is safetensors whose names are the model's own parameter names (Llama,
Mistral, Qwen, Yi...), the model is built empty under `deepspeed.zero.Init` (no random init: every
weight is overwritten) and each rank copies from the files only the slice of each tensor that it
owns, straight into its partition: no rank ever holds a whole tensor that is not its own, and
nothing goes over the network. Other checkpoints (.bin files, or names that transformers renames
or fuses while loading, e.g. Mixtral's experts) take transformers' own ZeRO-3 path.

DeepSpeed's layout, relied on here (deepspeed/runtime/zero/partition_parameters.py, 0.19): a
partitioned parameter keeps `ds_tensor`, a flat tensor of `ceil(numel / world)` elements holding
elements [rank * size, (rank + 1) * size) of the flattened full tensor (zero padded at the end).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SAFETENSORS_INDEX = "model.safetensors.index.json"
SAFETENSORS_SINGLE = "model.safetensors"


# Resident memory of this process, in MiB (Linux /proc; None elsewhere).

def _status(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def rss_mib() -> float | None:
    return _status("VmRSS")


def peak_rss_mib() -> float | None:
    return _status("VmHWM")


def reset_peak_rss() -> bool:
    """Start a new peak (VmHWM) from the current resident size; False when the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


# The checkpoint's files and tensor names.

def checkpoint_files(model_dir: str) -> dict[str, list[str]] | None:
    """{safetensors file: its tensor names} of a model folder, or None when it has no safetensors."""
    from safetensors import safe_open

    folder = Path(model_dir)
    index = folder / SAFETENSORS_INDEX
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (folder / SAFETENSORS_SINGLE).is_file():
        files = [SAFETENSORS_SINGLE]
    else:
        return None
    out = {}
    for name in files:
        with safe_open(str(folder / name), framework="pt") as fh:  # reads the header only
            out[str(folder / name)] = list(fh.keys())
    return out


def _flat_slice(handle, key: str, start: int, count: int):
    """Elements [start, start + count) of tensor `key`, flattened in row-major order, reading only
    the rows of its first dimension that hold them."""
    part = handle.get_slice(key)
    shape = part.get_shape()
    if len(shape) == 0:
        return handle.get_tensor(key).reshape(-1)[start:start + count]
    row = math.prod(shape[1:])
    first, last = start // row, (start + count - 1) // row + 1
    rows = part[first:last].reshape(-1)
    offset = start - first * row
    return rows[offset:offset + count]


def _own_share(param, handle, key: str) -> None:
    """Copy this rank's partition of `param` from tensor `key` of an open safetensors file."""
    import torch
    import torch.distributed as dist
    from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus

    part = getattr(param, "ds_tensor", None)
    if part is None or param.ds_status != ZeroParamStatus.NOT_AVAILABLE:
        raise RuntimeError(f"{key}: not a partitioned ZeRO-3 parameter (status {getattr(param, 'ds_status', None)})")
    if getattr(param, "ds_secondary_tensor", None) is not None or getattr(part, "final_location", None) is not None:
        raise RuntimeError(f"{key}: hierarchical partitions and NVMe offload are not supported by the partitioned load")
    size = part.ds_numel
    start = size * dist.get_rank(group=param.ds_process_group)
    count = max(0, min(size, param.ds_numel - start))
    shape = tuple(handle.get_slice(key).get_shape())
    if shape != tuple(param.ds_shape):
        raise ValueError(f"{key}: checkpoint shape {shape}, model shape {tuple(param.ds_shape)}")
    with torch.no_grad():
        if count:
            part.narrow(0, 0, count).copy_(_flat_slice(handle, key, start, count))
        part.narrow(0, count, size - count).zero_()


def _names_match(files: dict[str, list[str]], config) -> bool:
    """The checkpoint's names are exactly the model's parameter and persistent buffer names (tied
    copies may be absent): built on the meta device, nothing allocated."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    skeleton.tie_weights()
    params = dict(skeleton.named_parameters(remove_duplicate=False))
    known = set(params) | set(skeleton.state_dict())
    stored = {k for keys in files.values() for k in keys}
    loaded = {id(params[k]) for k in stored if k in params}
    return stored <= known and loaded == {id(p) for p in params.values()}


def _build_partitioned(config, ds_config: dict[str, Any]):
    """The model with every parameter partitioned from birth, weights left uninitialised."""
    import deepspeed
    from transformers.initialization import no_init_weights
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    model_class = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    # Constructing the class directly (not `from_config` with an HfDeepSpeedConfig alive) keeps
    # transformers from opening a second zero.Init and random-initialising weights gathered
    # layer by layer, all of which the checkpoint overwrites next.
    with no_init_weights(), deepspeed.zero.Init(config_dict_or_path=ds_config):
        model = model_class(config)
    model.tie_weights()  # post_init's tying is part of the init that was switched off
    return model


def _rope_buffers_in_fp32(model) -> None:
    """zero.Init turns every floating tensor created inside it into the weights' dtype, rotary
    inverse frequencies included (bf16 on GPUs). Recompute them outside it, in fp32, as a model
    loaded whole has them (DeepSpeed keeps such buffers fp32) and as the exported model will."""
    import torch
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    for module in model.modules():
        inv = getattr(module, "inv_freq", None)
        if not isinstance(inv, torch.Tensor) or inv.dtype == torch.float32 or not hasattr(module, "rope_type"):
            continue
        if module.rope_type == "default":
            rope_fn = getattr(module, "compute_default_rope_parameters", None)
        else:
            rope_fn = ROPE_INIT_FUNCTIONS.get(module.rope_type)
        if rope_fn is None:
            continue
        value, _ = rope_fn(module.config)
        module.inv_freq = value.to(device=inv.device, dtype=torch.float32)
        if isinstance(getattr(module, "original_inv_freq", None), torch.Tensor):
            module.original_inv_freq = module.inv_freq.clone()


def load_partitioned(config, ds_config: dict[str, Any], files: dict[str, list[str]]):
    """Build partitioned, then fill each rank's partitions from the safetensors files."""
    import torch
    from safetensors import safe_open

    model = _build_partitioned(config, ds_config)
    _rope_buffers_in_fp32(model)
    params = dict(model.named_parameters(remove_duplicate=False))
    buffers = dict(model.named_buffers())
    for path, keys in files.items():
        with safe_open(path, framework="pt") as fh:
            for key in keys:
                if key in params:
                    _own_share(params[key], fh, key)
                else:  # a persistent buffer: never partitioned, every rank keeps it whole
                    with torch.no_grad():
                        buffers[key].copy_(fh.get_tensor(key))
    return model


@dataclass
class LoadPlan:
    """How the weights will be loaded (`how`: "whole", "partitioned" or "transformers-zero3"), decided
    from the config and the checkpoint's headers before any weight is read."""
    model_dir: str
    dtype: Any
    attn_implementation: str
    ds_config: dict[str, Any]
    how: str
    config: Any = None
    files: dict[str, list[str]] | None = None


def plan_load(model_dir: str, dtype, attn_implementation: str, ds_config: dict[str, Any]) -> LoadPlan:
    """Whole under ZeRO 0-2; under ZeRO-3 partitioned when the checkpoint is safetensors with the
    model's own names, else transformers' ZeRO-3 loading."""
    from transformers import AutoConfig

    plan = LoadPlan(model_dir, dtype, attn_implementation, ds_config, "whole")
    if ds_config["zero_optimization"]["stage"] != 3:
        return plan
    plan.config = AutoConfig.from_pretrained(model_dir)
    plan.config.dtype = dtype
    plan.config._attn_implementation = attn_implementation
    plan.files = checkpoint_files(model_dir)
    plan.how = "partitioned" if plan.files is not None and _names_match(plan.files, plan.config) else "transformers-zero3"
    return plan


def load_model(plan: LoadPlan):
    """(model, keep): `keep` must stay referenced while the model is used (transformers'
    HfDeepSpeedConfig, under ZeRO-3; None otherwise)."""
    from transformers import AutoModelForCausalLM
    from transformers.integrations import HfDeepSpeedConfig

    if plan.how == "whole":
        return AutoModelForCausalLM.from_pretrained(plan.model_dir, dtype=plan.dtype,
                                                    attn_implementation=plan.attn_implementation), None
    if plan.how == "partitioned":
        model = load_partitioned(plan.config, plan.ds_config, plan.files)
        # From here on transformers knows the model is ZeRO-3 partitioned (generation, resizing).
        return model, HfDeepSpeedConfig(plan.ds_config)
    # transformers builds under zero.Init, but every rank maps every shard and rank 0 reads them all.
    keep = HfDeepSpeedConfig(plan.ds_config)
    return AutoModelForCausalLM.from_pretrained(plan.model_dir, dtype=plan.dtype,
                                                attn_implementation=plan.attn_implementation), keep


def release_hf_deepspeed_config() -> None:
    """Forget the HfDeepSpeedConfig (a later stage of the same process may not be ZeRO-3)."""
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()


def parameter_count(model) -> int:
    """Parameters of the whole model, partitioned or not (tied ones once)."""
    return sum(getattr(p, "ds_numel", None) or p.numel() for p in model.parameters())
