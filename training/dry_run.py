"""`DRY_RUN=1`: plan a training job without weights and without a GPU.

Reads and encodes the data with the model's tokenizer when its folder is on the machine, else
with the embedded SmolLM2 tokenizer (token counts then marked as an estimate), and prints the
plan of `webinstruct.training.plan`.

    python -m webinstruct.training.dry_run --recipe mammoth2 --model mistral-7b --gpus 8 --nodes 4
"""
from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path
from typing import Any

from webinstruct.core.config import ConfigParser, add_arguments, checked, given_flags, section_values
from webinstruct.training.config import TrainConfig, check_learning_rates, load_train_config
from webinstruct.training.data import mix, pack, read_examples
from webinstruct.core.formatting import encode_all, ensure_chat_template
from webinstruct.training.plan import format_plan, plan
from webinstruct.core.registry import EMBEDDED_MODEL, ModelNotFound, get_spec, resolve


def _tokenizer(cfg: TrainConfig):
    """(tokenizer, estimated?, the model's folder or None)."""
    from transformers import AutoTokenizer
    try:
        path, estimate = resolve(cfg.model, cfg.model_path).path, False
    except ModelNotFound:
        path, estimate = resolve(EMBEDDED_MODEL).path, True
    tok = AutoTokenizer.from_pretrained(path)
    ensure_chat_template(tok)
    return tok, estimate, None if estimate else path


def largest_shard(folder: str | None) -> int:
    """Bytes of the biggest weights file in a model folder (0: no folder or no weights files)."""
    if not folder:
        return 0
    sizes = [f.stat().st_size for f in Path(folder).iterdir() if f.suffix in (".safetensors", ".bin", ".pt")]
    return max(sizes, default=0)


def data_stats(cfg: TrainConfig, tokenizer) -> dict[str, Any]:
    """Counts of reading, mixing, encoding and (optionally) packing the recipe's data sources."""
    counts: Counter = Counter()
    sources = []
    for src in cfg.data_sources():
        if not os.path.exists(src["path"]):
            counts["missing_sources"] += 1
            continue
        sources.append((list(read_examples(src["path"], src["name"], counts)), float(src["weight"])))
    encoded = encode_all(mix(sources, cfg.seed), tokenizer, cfg.format, cfg.max_len, counts)
    stats = dict(counts)
    stats.setdefault("kept", 0)
    stats.setdefault("tokens", 0)
    if cfg.packing:
        stats["packed_rows"] = len(pack(encoded, cfg.max_len))
    return stats


def dry_run(cfg: TrainConfig, n_gpus: int = 1, n_nodes: int = 1) -> dict[str, Any]:
    get_spec(cfg.model)  # an unknown model fails here, before any data is read
    tokenizer, estimate, folder = _tokenizer(cfg)
    p = plan(cfg.model, data_stats(cfg, tokenizer), cfg, n_gpus, n_nodes, largest_shard(folder))
    p["tokens_estimated"] = estimate
    return p


def report(cfg: TrainConfig, n_gpus: int = 1, n_nodes: int = 1) -> str:
    """The plan as text, with notes on estimated token counts and missing data."""
    p = dry_run(cfg, n_gpus, n_nodes)
    lines = [format_plan(p)]
    if p["tokens_estimated"]:
        lines.append(f"(no tokenizer of {cfg.model} on this machine: token counts are estimated with {EMBEDDED_MODEL}'s)")
    if p["data"].get("missing_sources"):
        lines.append(f"({p['data']['missing_sources']} data source(s) missing: {[s['path'] for s in cfg.data_sources()]})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = ConfigParser(prog="python -m webinstruct.training.dry_run", description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=checked(int, 1), default=1, help="GPUs per node")
    parser.add_argument("--nodes", type=checked(int, 1), default=1)
    add_arguments(parser, TrainConfig, section="train")
    args = parser.parse_args(argv)
    overrides = section_values(args, "train")
    try:
        cfg = load_train_config(overrides.pop("recipe", ""),
                                flags=given_flags(overrides), **overrides)
        print(report(cfg, args.gpus, args.nodes))
        check_learning_rates(cfg)  # a launch would stop here: so does the plan, after printing it
    except (ModelNotFound, FileNotFoundError, ValueError) as err:
        print(f"error: {err}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
