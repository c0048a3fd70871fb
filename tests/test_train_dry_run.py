"""DRY_RUN end to end: real files, a real tokenizer, no weights of the planned model."""
from __future__ import annotations

from webinstruct.core.shards import publish_stage, write_shard
from webinstruct.training.config import load_train_config
from webinstruct.training.dry_run import dry_run, main


def _refine(run):
    rows = [{"question": f"What is {i} + {i}?", "answer": f"{i} + {i} = {2 * i}. The answer is {2 * i}."} for i in range(20)]
    write_shard(str(run / "refine" / "part-00000-of-00001.jsonl.gz"), rows + [{"question": "", "answer": "x"}])
    publish_stage(str(run / "refine"), "refine")


def test_dry_run_mistral_without_weights(tmp_path, monkeypatch, llm_model_dir):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("WEBINSTRUCT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("webinstruct.training.dry_run.resolve", _embedded_only(llm_model_dir))
    _refine(tmp_path)
    cfg = load_train_config("mammoth2", model="mistral-7b", run=str(tmp_path), packing=True)
    p = dry_run(cfg, n_gpus=8, n_nodes=4)
    assert p["tokens_estimated"] and p["parameters"]["total"] == 7_241_732_096
    assert p["data"]["kept"] == 20 and p["data"]["skipped_empty_field"] == 1
    assert p["data"]["packed_rows"] == 1 and p["steps_per_epoch"] == 1 and p["total_steps"] == 2
    assert p["tokens"] > 20 * 10


def test_dry_run_cli_prints_the_plan(tmp_path, monkeypatch, capsys, llm_model_dir):
    monkeypatch.setenv("WEBINSTRUCT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("webinstruct.training.dry_run.resolve", _embedded_only(llm_model_dir))
    _refine(tmp_path)
    assert main(["--recipe", "cpu-demo", "--run", str(tmp_path), "--gpus", "1"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m" in out and "20 sequences" in out and "activations" in out
    assert main(["--recipe", "cpu-demo", "--model", "no-such-model"]) == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().out


def _embedded_only(model_dir):
    """resolve() with the embedded model already converted (the session fixture's folder)."""
    from webinstruct.core.registry import REGISTRY, ResolvedModel, resolve

    def fake(name, model_path=""):
        if name == "smollm2-135m":
            return ResolvedModel(name, model_dir, REGISTRY[name])
        return resolve(name, model_path)
    return fake


def test_webinstruct_train_without_weights_says_where_to_put_them(tmp_path, monkeypatch, capsys):
    from webinstruct.infra.cli import main as cli

    monkeypatch.setenv("WEBINSTRUCT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert cli(["train", "--model", "mistral-7b", "--run", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "MODEL_PATH" in err and "mistralai/Mistral-7B-v0.1" in err and "Traceback" not in err


def test_webinstruct_train_dry_run_for_every_registered_model(tmp_path, capsys, llm_model_dir):
    """With no recipe each registered model plans with its paper's recipe and shows the rate it would use."""
    from webinstruct.infra.cli import main as cli
    from webinstruct.core.registry import REGISTRY
    from webinstruct.training.config import default_recipe

    for name, spec in REGISTRY.items():
        assert cli(["train", "--dry-run", "--model", name, "--gpus", "8", "--run", str(tmp_path)]) == 0
        out = capsys.readouterr().out
        assert "parameters" in out and "ZeRO" in out, name
        recipe = default_recipe(name)
        rate = spec.paper_lr[recipe]
        assert f"learning rate    {rate:g} (recipe {recipe}'s rate for {name})" in out, out
        assert "load peak" in out and "activations" in out and "assumes" in out
    assert [default_recipe(n) for n in ("mistral-7b", "llama-3-8b", "mixtral-8x7b", "yi-34b", "llama-2-7b",
                                        "smollm2-135m", "/some/folder")] == \
        ["mammoth2"] * 4 + ["metamath", "cpu-demo", "cpu-demo"]


def test_a_pair_without_a_rate_fails_in_the_dry_run_and_before_weights(tmp_path, capsys, monkeypatch):
    """The plan is printed, then the same one-line error a launch gives; a launch gives it before any weights
    are even looked for (no MODEL_PATH, no cache: the error is the rate, not the missing weights)."""
    from webinstruct.infra.cli import main as cli

    monkeypatch.setenv("WEBINSTRUCT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert cli(["train", "--dry-run", "--model", "llama-2-7b", "--recipe", "mammoth2", "--run", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "learning rate    NONE: no learning rate for model 'llama-2-7b' in recipe 'mammoth2'" in captured.out
    assert "no learning rate for model 'llama-2-7b' in recipe 'mammoth2'" in captured.err
    assert "recipes with one for it: metamath (2e-05)" in captured.err and "Traceback" not in captured.err
    assert cli(["train", "--model", "llama-2-7b", "--recipe", "cpu-demo", "--run", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no learning rate for model 'llama-2-7b' in recipe 'cpu-demo'" in err and "MODEL_PATH" not in err
    assert cli(["train", "--dry-run", "--model", "llama-2-7b", "--recipe", "mammoth2", "--lr", "3e-6",
                "--run", str(tmp_path)]) == 0
    assert "learning rate    3e-06 (set with lr)" in capsys.readouterr().out
