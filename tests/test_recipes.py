"""Every shipped recipe parses into its typed settings, every section of it; a new recipe file is
covered by being there."""
from __future__ import annotations

import dataclasses

import pytest

from webinstruct.core import config as C
from webinstruct.infra.cli import recipe_schema

from conftest import ROOT

STAGE_RECIPES = sorted((ROOT / "infra" / "recipes").glob("*.yaml"))
TRAIN_RECIPES = sorted((ROOT / "infra" / "recipes" / "train").glob("*.yaml"))


def test_recipes_are_there():
    assert STAGE_RECIPES and TRAIN_RECIPES


@pytest.mark.parametrize("path", STAGE_RECIPES, ids=lambda p: p.name)
def test_stage_recipe_sections_are_valid(path):
    schema = recipe_schema()
    recipe = C.load_recipe(str(path), schema)
    assert recipe, f"{path.name} has no sections"
    for section, values in recipe.items():
        cfg = C.build(schema[section], values, name=section, source=str(path))
        assert dataclasses.is_dataclass(cfg)
        for key, value in values.items():  # what the file says is what the settings hold
            assert getattr(cfg, key) == value, f"{path.name}: {section}.{key}"


@pytest.mark.parametrize("path", TRAIN_RECIPES, ids=lambda p: p.name)
def test_train_recipe_is_valid(path):
    from webinstruct.training.config import check_learning_rates, load_train_config

    cfg = load_train_config(str(path))
    assert cfg.recipe == path.stem and cfg.data_sources()
    for model in cfg.lrs:  # each model the recipe names has a usable rate in every stage
        check_learning_rates(dataclasses.replace(cfg, model=model))
    stage = dataclasses.replace(cfg, model=next(iter(cfg.lrs), cfg.model)).next_stage()
    while stage is not None:  # a `then` stage is as valid as a stage read from a file
        C.validate(type(stage), {k: v for k, v in dataclasses.asdict(stage).items()})
        stage = stage.next_stage()


@pytest.mark.parametrize("path", TRAIN_RECIPES, ids=lambda p: p.name)
def test_train_recipe_by_name(path):
    from webinstruct.training.config import load_train_config

    assert load_train_config(path.stem) == load_train_config(str(path))
