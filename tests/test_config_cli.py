"""Configuration and the command line: precedence, one dest per section, pass-through Beam options,
recipe and flag validation (one line, exit 2, no traceback unless --debug), --print-config."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from webinstruct.core import config as C
from webinstruct.infra import cli
from webinstruct.pipeline.recall.config import RecallConfig

from conftest import ROOT

CLI = [sys.executable, "-m", "webinstruct.infra.cli"]


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(argv), cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_precedence_default_recipe_flags(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("recall:\n  num_shards: 7\n  min_chars: 50\n")
    args = cli.parse_args(["recall", "--config", str(recipe), "--min-chars", "10", "--prefilter", "false"])
    cfg = C.from_args(RecallConfig, args, cli._recipe(args), "recall")
    assert cfg.num_shards == 7          # recipe
    assert cfg.min_chars == 10          # flag beats recipe, converted to int
    assert cfg.prefilter is False
    assert cfg.max_page_bytes == RecallConfig().max_page_bytes  # default
    assert cfg.out_dir() == "runs/sample/recall"


def test_unknown_setting_is_an_error():
    with pytest.raises(C.ConfigError, match="unknown settings"):
        C.build(RecallConfig, {}, {"num_shard": 3})
    with pytest.raises(C.ConfigError, match=r"recall\.num_shard: unknown setting \(did you mean num_shards\?\)"):
        C.build(RecallConfig, {"num_shard": 3}, name="recall")


def _llm_stage(argv: list[str]):
    args = cli.parse_args(argv)
    recipe = cli._recipe(args)
    from webinstruct.pipeline.augment.config import AugmentConfig
    from webinstruct.pipeline.llm.config import LLMConfig

    return (C.from_args(AugmentConfig, args, recipe, "augment"),
            C.from_args(LLMConfig, args, recipe, "llm", prefix="llm-"))


def test_stage_flag_does_not_set_the_llm_setting_of_the_same_name():
    stage, llm = _llm_stage(["augment", "--temperature", "0.9", "--max-tokens", "300"])
    assert stage.temperature == 0.9 and stage.max_tokens == 300
    assert llm.temperature == 0.0 and llm.max_tokens == 1024  # the LLM's own defaults


def test_llm_flag_does_not_set_the_stage_setting_of_the_same_name():
    stage, llm = _llm_stage(["augment", "--llm-max-tokens", "2000", "--llm-temperature", "0.3"])
    assert llm.max_tokens == 2000 and llm.temperature == 0.3
    assert stage.max_tokens == 512 and stage.temperature == 0.7


def test_dests_carry_their_section():
    args = cli.parse_args(["augment", "--temperature", "0.9", "--llm-temperature", "0.1"])
    assert vars(args)["augment.temperature"] == "0.9" and vars(args)["llm.temperature"] == "0.1"
    assert "temperature" not in vars(args)


@pytest.mark.parametrize("argv, expected", [
    (["--runner-options", "--flink_master=localhost:8081"], ["--flink_master=localhost:8081"]),
    (["--runner-options", "--project=P", "--region=R", "--temp_location=gs://b/tmp", "--workers", "3"],
     ["--project=P", "--region=R", "--temp_location=gs://b/tmp"]),
    (["--runner-options=--flink_master=h:8081", "--runner-options=--parallelism=4"],
     ["--flink_master=h:8081", "--parallelism=4"]),
])
def test_runner_options_take_foreign_flags(argv, expected):
    args = cli.parse_args(["recall", "--runner", "flink", *argv])
    cfg = C.from_args(RecallConfig, args, C.Recipe(), "recall")
    assert cfg.runner_options == expected
    assert cfg.runner == "flink"
    if "--workers" in argv:
        assert cfg.workers == 3  # the next known flag ends the list


def _bad(tmp_path, text: str) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text, key, words", [
    ("recall:\n  num_shards: two\n", "recall.num_shards", "expected an integer >= 1, got 'two'"),
    ("llm:\n  max_concurrency: eight\n", "llm.max_concurrency", "expected an integer >= 1, got 'eight'"),
    ("recall:\n  warc: path.warc.gz\n", "recall.warc", "expected a list of strings, got 'path.warc.gz'"),
    ("recal:\n  num_shards: 2\n", "'recal'", "known sections: seeds, classifier, recall, domains, llm"),
    ("recall:\n  num_shard: 2\n", "recall.num_shard", "known: runner, workers"),
    ("recall:\n  runner: flonk\n", "recall.runner", "expected one of local, multiprocess, dask, flink, spark, dataflow"),
    ("refine:\n  merge: everything\n", "refine.merge", "expected one of keep_all, best, alternate"),
    ("refine:\n  refiners: [{nmae: a}]\n", "refine.refiners[0].nmae", "known: name, url, model, temperature"),
    ("augment:\n  temperature: -0.5\n", "augment.temperature", "expected a number >= 0, got -0.5"),
])
def test_bad_recipe_is_one_line_exit_2(tmp_path, text, key, words):
    path = _bad(tmp_path, text)
    out = run_cli("augment", "--config", path, "--print-config")
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert path in lines[0] and key in lines[0] and words in lines[0]
    assert "Traceback" not in out.stderr
    assert out.stdout == ""  # nothing printed, nothing run


def test_debug_shows_the_traceback(tmp_path):
    path = _bad(tmp_path, "recall:\n  num_shards: two\n")
    for argv in (["--debug", "recall", "--config", path], ["recall", "--config", path, "--debug"]):
        out = run_cli(*argv)
        assert out.returncode != 0
        assert "Traceback" in out.stderr and "ConfigError" in out.stderr and "recall.num_shards" in out.stderr


def test_print_config_shows_each_section_separately():
    out = run_cli("augment", "--temperature", "0.9", "--print-config")
    assert out.returncode == 0, out.stderr
    printed = yaml.safe_load(out.stdout)
    assert printed["augment"]["temperature"] == 0.9
    assert printed["llm"]["temperature"] == 0.0  # the LLM's default, untouched
    assert {"runner", "workers", "runner_options", "num_shards"} <= set(printed["augment"])


def test_print_config_merges_the_recipe_and_runs_nothing(capsys, tmp_path):
    run = tmp_path / "never"
    rc = cli.main(["augment", "--config", "infra/recipes/metamathqa.yaml", "--run", str(run),
                   "--llm-max-tokens", "333", "--print-config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert rc == 0 and not run.exists()
    assert printed["augment"]["num_shards"] == 64 and printed["augment"]["max_tokens"] == 1024  # recipe
    assert printed["llm"]["max_tokens"] == 333 and printed["llm"]["max_concurrency"] == 256  # flag, recipe
    assert C.load_recipe(_write(tmp_path, printed), cli.recipe_schema())  # the output is a valid recipe


def _write(tmp_path, data) -> str:
    path = tmp_path / "printed.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize("argv", [
    ["recall", "--print-config"], ["classifier", "train", "--print-config"], ["domains", "select", "--print-config"],
    ["domains", "round", "--print-config"], ["extract", "--print-config"], ["refine", "--print-config"],
    ["train", "--print-config"], ["eval", "--print-config"],
])
def test_every_stage_prints_its_config(argv, capsys):
    assert cli.main(argv) == 0
    assert yaml.safe_load(capsys.readouterr().out)


def test_print_config_masks_the_api_key(capsys, monkeypatch):
    monkeypatch.setenv("LLM_API_KEY", "sk-secret")
    assert cli.main(["extract", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "sk-secret" not in out and yaml.safe_load(out)["llm"]["api_key"] == "***"


@pytest.mark.parametrize("argv, words", [
    (["recall", "--workers", "0"], "--workers (recall.workers): expected an integer >= 1, got 0"),
    (["recall", "--num-shards", "two"], "--num-shards (recall.num_shards): expected an integer >= 1, got two"),
    (["recall", "--runner", "sparky"], "--runner (recall.runner): expected one of local"),
    (["augment", "--llm-max-concurrency", "0"], "--llm-max-concurrency (llm.max_concurrency)"),
    (["augment", "--llm-temperature", "-1"], "--llm-temperature (llm.temperature): expected a number >= 0"),
    (["extract", "--llm-timeout-s", "nan"], "--llm-timeout-s (llm.timeout_s): expected a number > 0"),
    (["train", "--lr=-1e-5"], "--lr (train.lr): expected a number >= 0"),
    (["train", "--lr", "inf"], "--lr (train.lr)"),
    (["train", "--zero-stage", "4"], "--zero-stage (train.zero_stage): expected an integer >= 0 and <= 3"),
    (["train", "--gpus", "0"], "argument --gpus: expected an integer >= 1, got 0"),
    (["train", "--nodes", "0"], "argument --nodes: expected an integer >= 1, got 0"),
    (["eval", "--limit", "-3"], "--limit (eval.limit): expected an integer >= 1 or all"),
    (["eval", "--gpus", "-1"], "--gpus (eval.gpus): expected an integer >= 0"),
    (["eval", "--protocol", "alpaca"], "--protocol (eval.protocol): expected one of mammoth2, metamath, chat"),
    (["eval", "--benchmarks", "gsm8k,nope"], "unknown benchmark(s) nope"),
    (["eval", "rescore", "--workers", "0"], "argument --workers: expected an integer >= 1, got 0"),
    (["classifier", "train", "--holdout", "1.5"], "--holdout (classifier.holdout): expected a number > 0 and < 1"),
])
def test_bad_flag_is_one_line_exit_2(argv, words, capsys):
    try:
        rc = cli.main(argv + ["--print-config"])
    except SystemExit as stop:  # argparse rejected it while parsing
        rc = stop.code
    assert rc == 2
    err = capsys.readouterr()
    assert err.out == ""
    lines = err.err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], err.err


def test_flag_errors_exit_2_in_a_subprocess():
    out = run_cli("recall", "--workers", "0")
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
    assert "--workers (recall.workers): expected an integer >= 1, got 0" in out.stderr


def test_eval_limit_takes_all():
    args = cli.parse_args(["eval", "--limit", "all"])
    from webinstruct.evaluation.config import EvalConfig

    assert C.from_args(EvalConfig, args, C.Recipe(), "eval").limit == 0  # no limit
    assert C.from_args(EvalConfig, cli.parse_args(["eval", "--limit", "5"]), C.Recipe(), "eval").limit == 5


def test_train_checks_before_any_model(tmp_path):
    from webinstruct.training.config import check_learning_rates, load_train_config

    with pytest.raises(ValueError, match="no learning rate"):
        check_learning_rates(load_train_config("cpu-demo", model="mistral-7b"))
    recipe = tmp_path / "t.yaml"
    recipe.write_text("train:\n  lrs: {smollm2-135m: 0}\n")
    with pytest.raises(C.ConfigError, match=r"t\.yaml: train\.lrs\.smollm2-135m: expected a number > 0, got 0"):
        load_train_config(str(recipe))
    recipe.write_text("train:\n  then: {model: x}\n")
    with pytest.raises(C.ConfigError, match=r"train\.then\.model: cannot be set"):
        load_train_config(str(recipe))
    recipe.write_text("eval:\n  limit: 3\n")
    with pytest.raises(C.ConfigError, match="unknown section 'eval'; known sections: train"):
        load_train_config(str(recipe))


def test_trainer_parses_its_own_flags():
    from webinstruct.training import trainer

    args = trainer.parser().parse_args(["--config", "mammoth2", "--model", "mistral-7b", "--model-path", "DIR",
                                        "--run-dir", "RUN", "--local_rank=0", "--max-steps", "5"])
    cfg = trainer.load_from_args(args)
    assert (cfg.run, cfg.model_path, cfg.max_steps, cfg.recipe) == ("RUN", "DIR", 5, "mammoth2")


@pytest.mark.parametrize("cmd", [[], ["recall"], ["augment"], ["train"], ["eval"], ["classifier", "train"],
                                 ["classifier", "score"], ["domains", "table"], ["domains", "select"],
                                 ["domains", "round"]])
def test_help(cmd):
    out = run_cli(*cmd, "--help")
    assert out.returncode == 0, out.stderr
    assert "usage: webinstruct" in out.stdout


def test_missing_input_is_a_clear_error(tmp_path):
    out = run_cli("domains", "table", "--run", str(tmp_path))
    assert out.returncode == 2
    assert "run `webinstruct recall` first" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_flag_can_settle_a_conflict_in_the_recipe(tmp_path):
    # overlap_chars (default 600) must be below chunk_chars: the recipe alone breaks that rule, the
    # flag repairs it, so the recipe must not be refused before the flags are merged.
    recipe = tmp_path / "r.yaml"
    recipe.write_text("extract:\n  chunk_chars: 500\n")
    base = [sys.executable, "-m", "webinstruct.infra.cli", "extract", "--config", str(recipe), "--print-config"]
    fixed = subprocess.run(base + ["--overlap-chars", "50"], capture_output=True, text=True, timeout=60)
    assert fixed.returncode == 0, fixed.stderr
    assert "chunk_chars: 500" in fixed.stdout and "overlap_chars: 50" in fixed.stdout
    broken = subprocess.run(base, capture_output=True, text=True, timeout=60)
    assert broken.returncode == 2 and "must be smaller than chunk_chars (500)" in broken.stderr
    assert "Traceback" not in broken.stderr
