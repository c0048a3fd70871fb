"""Configuration precedence and the command line."""
from __future__ import annotations

import subprocess
import sys

import pytest

from webinstruct.core import config as C
from webinstruct.pipeline.recall.config import RecallConfig

from conftest import ROOT


def test_precedence_default_recipe_flags(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("recall:\n  num_shards: 7\n  min_chars: 50\n")
    from webinstruct.infra.cli import parser

    args = parser().parse_args(["recall", "--config", str(recipe), "--min-chars", "10", "--prefilter", "false"])
    cfg = C.from_args(RecallConfig, args, C.load_recipe(args.config), "recall")
    assert cfg.num_shards == 7          # recipe
    assert cfg.min_chars == 10          # flag beats recipe
    assert cfg.prefilter is False
    assert cfg.max_page_bytes == RecallConfig().max_page_bytes  # default
    assert cfg.out_dir() == "runs/sample/recall"


def test_unknown_setting_is_an_error():
    with pytest.raises(ValueError, match="unknown settings"):
        C.build(RecallConfig, {"num_shard": 3})


def test_shipped_recipes_are_valid():
    from webinstruct.pipeline.recall.classifier import ClassifierConfig
    from webinstruct.pipeline.recall.rounds import DomainsConfig

    for path in sorted((ROOT / "infra" / "recipes").glob("*.yaml")):
        recipe = C.load_recipe(str(path))
        C.build(RecallConfig, recipe.get("recall"))
        C.build(ClassifierConfig, recipe.get("classifier"))
        C.build(DomainsConfig, recipe.get("domains"))


@pytest.mark.parametrize("cmd", [[], ["recall"], ["classifier", "train"], ["classifier", "score"],
                                 ["domains", "table"], ["domains", "select"], ["domains", "round"]])
def test_help(cmd):
    out = subprocess.run([sys.executable, "-m", "webinstruct.infra.cli", *cmd, "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "usage: webinstruct" in out.stdout


def test_missing_input_is_a_clear_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "webinstruct.infra.cli", "domains", "table", "--run", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "run `webinstruct recall` first" in out.stderr
    assert "Traceback" not in out.stderr
