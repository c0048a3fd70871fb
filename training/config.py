"""Settings of a training run (recipe section `train`, recipes in infra/recipes/train/).

Precedence as for the pipeline stages: dataclass default < recipe section < command line.
Outputs go under RUN/train/<model>/.
"""
from __future__ import annotations

import dataclasses

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from typing_extensions import Required, TypedDict

import annotated_types as at

from webinstruct.core.config import (ConfigError, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt,
                                     Share, build, load_recipe, option, strict, validate)
from webinstruct.core.registry import REGISTRY
from webinstruct.core.resources import infra_path

RECIPES_DIR = infra_path("recipes", "train")



@strict
class DataSource(TypedDict, total=False):
    """One entry of `train.data`."""
    path: Required[str]
    weight: NonNegativeFloat
    name: str


@dataclass
class TrainConfig:
    model: str = option("smollm2-135m", "registered model name or a local model folder")
    model_path: str = option("", "folder with the model's weights (MODEL_PATH); default: the cache folder")
    recipe: str = option("", "recipe name (infra/recipes/train/<recipe>.yaml) or YAML path; empty: the model's paper "
                             "recipe (mammoth2 for the MAmmoTH2 models, metamath for llama-2-7b, cpu-demo for the "
                             "embedded model and for model folders)")
    run: str = option("runs/sample", "run directory; training writes RUN/train/<model>/")
    data: list[DataSource] = option([], "data sources, recipe only: [{path, weight, name}]; a path may use {run}; "
                            "empty: the WebInstruct shards in RUN/refine", cli=False)
    format: Literal["chat", "alpaca"] = option("chat", "prompt format: chat (the tokenizer's chat template) or alpaca (MetaMath's prompt)")
    max_len: PositiveInt = option(512, "tokens per sequence; longer responses are cut, longer prompts dropped")
    global_batch: PositiveInt = option(8, "sequences per optimizer step, over all processes (micro batch x accumulation x world)")
    micro_batch: PositiveInt = option(2, "sequences per process per forward pass")
    epochs: PositiveInt = option(1, "passes over the data")
    max_steps: NonNegativeInt = option(0, "stop after this many optimizer steps (0: no cap); the schedule spans the capped run")
    lr: NonNegativeFloat = option(0.0, "learning rate; 0: the recipe's value for this model (`lrs`), else the paper's")
    lrs: dict[str, PositiveFloat] = option({}, "learning rate per model name, recipe only", cli=False)
    warmup_ratio: Share = option(0.03, "share of the steps with linear warmup")
    weight_decay: NonNegativeFloat = option(0.0, "AdamW weight decay")
    schedule: Literal["cosine", "linear", "constant"] = option("cosine", "learning-rate schedule after warmup: cosine, linear or constant")
    zero_stage: Annotated[int, at.Ge(0), at.Le(3)] = option(2, "DeepSpeed ZeRO stage: 0, 1, 2 or 3")
    offload: Literal["none", "optimizer", "optimizer+params"] = option("none", "ZeRO offload to CPU memory: none, optimizer, or optimizer+params (stage 3)")
    bf16: bool = option(True, "bf16 mixed precision (GPUs); false: fp32 (CPUs)")
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass to save memory")
    padding_free: bool = option(True, "without packing: put each micro batch's sequences in one row with restarted "
                                      "position ids instead of padding them (no pad tokens); false: pad to the longest")
    packing: bool = option(False, "pack several sequences per row (position ids restart per sequence)")
    seed: int = option(42, "seed of data order and mixing")
    save_every: NonNegativeInt = option(0, "save a checkpoint every N optimizer steps (0: only at the end)")
    keep_checkpoints: NonNegativeInt = option(2, "newest checkpoints kept on disk (0: all)")
    name: str = option("", "output folder under RUN/train (default: the model's name)")
    then: dict = option({}, "recipe only: a second stage that starts from this stage's final model with these "
                            "settings changed (MAmmoTH2's Plus recipe: WebInstruct first, then other data)", cli=False)

    def out_dir(self) -> str:
        name = self.name or Path(self.model.rstrip("/")).name
        return f"{self.run.rstrip('/')}/train/{name}"

    def next_stage(self) -> "TrainConfig | None":
        """The `then` stage: this stage's final model, this stage's settings with `then` applied."""
        if not self.then:
            return None
        changes = dict(self.then)  # its keys were checked when the recipe was read (load_train_config)
        base = Path(self.out_dir()).name
        return dataclasses.replace(self, **{"lr": self.learning_rate(), "name": f"{base}-stage2", **changes,
                                            "model": f"{self.out_dir()}/final", "model_path": "", "then": {}})

    def learning_rate(self) -> float:
        """`lr` if set, else the recipe's `lrs[model]`, else the paper's rate for this recipe."""
        return self.learning_rate_source()[0]

    def learning_rate_source(self) -> tuple[float, str]:
        """The learning rate and where it comes from; ValueError (naming the recipes that have one) if none."""
        if self.lr:
            return self.lr, "set with lr"
        if self.model in self.lrs:
            return float(self.lrs[self.model]), f"recipe {self.recipe}'s rate for {self.model}"
        spec = REGISTRY.get(self.model)
        if spec and self.recipe in spec.paper_lr:
            return spec.paper_lr[self.recipe], f"the {self.recipe} paper's rate for {self.model}"
        others = ", ".join(f"{r} ({v:g})" for r, v in spec.paper_lr.items()) if spec else ""
        hint = f"; recipes with one for it: {others}" if others else ""
        raise ValueError(f"no learning rate for model {self.model!r} in recipe {self.recipe!r}: set lr= "
                         f"(--lr, or lrs in the recipe){hint}")

    def data_sources(self) -> list[dict]:
        sources = self.data or [{"path": "{run}/refine", "weight": 1.0, "name": "webinstruct"}]
        return [{"weight": 1.0, "name": "", **s, "path": str(s["path"]).format(run=self.run.rstrip("/"))}
                for s in sources]


def default_recipe(model: str) -> str:
    """The recipe a model trains with when none is named: its paper's (the first of the registry's
    `paper_lr`: mammoth2 for the MAmmoTH2 models, metamath for llama-2-7b, cpu-demo for the
    embedded model); cpu-demo for anything else (a model folder: set lr=)."""
    spec = REGISTRY.get(model)
    return next(iter(spec.paper_lr)) if spec and spec.paper_lr else "cpu-demo"


def recipe_path(name_or_path: str) -> str:
    """A recipe name (`metamath`) or a YAML path."""
    p = Path(name_or_path)
    return str(p) if p.suffix in (".yaml", ".yml") else str(RECIPES_DIR / f"{name_or_path}.yaml")


def load_train_config(recipe: str = "", *, flags: dict[str, str] | None = None, **overrides) -> TrainConfig:
    """TrainConfig from a recipe's `train` section, then overrides (None values ignored).

    No recipe: the model's (`default_recipe`; the model is the `model` override, else the default).

    Everything is checked here, before a model or a process group exists: the recipe (its only
    section is `train`; the second stage's `then` settings included) and the overrides; `flags`
    maps override fields to the flag that gave them, for the error message."""
    recipe = recipe or default_recipe(overrides.get("model") or TrainConfig.model)
    path = recipe_path(recipe)
    data = load_recipe(path, {"train": TrainConfig})
    section = dict(data.get("train") or {})
    section.setdefault("recipe", Path(recipe).stem)
    then = section.get("then") or {}
    if then:
        known = {f.name for f in dataclasses.fields(TrainConfig)} - {"model", "then"}
        bad = sorted(set(then) - known)
        if bad:
            raise ConfigError(f"{path}: train.then.{bad[0]}: cannot be set for the second stage (it starts from the "
                              f"first stage's final model); known: {', '.join(sorted(known))}")
        validate(TrainConfig, then, section="train.then", source=path)
    return build(TrainConfig, section, overrides, name="train", source=path, flags=flags)


def check_learning_rates(cfg: TrainConfig) -> None:
    """Every stage has a learning rate: called before weights are loaded or processes launched."""
    stage: TrainConfig | None = cfg
    while stage is not None:
        stage.learning_rate()
        stage = stage.next_stage()
