"""The cluster runners that cannot run here (Flink, Spark, Dataflow need job servers or a cloud)
still get checked as far as a laptop allows: each option file parses into Beam's PipelineOptions
with every key known to Beam and its value kept, the runner it names is a class Beam can build,
and the launch line its comment shows is accepted by the CLI."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from webinstruct.pipeline.runners import RUNNER_FILES, RUNNERS, _file_args, beam_runner

ROOT = Path(__file__).resolve().parents[1]
FILED = ("flink", "spark", "dataflow")


def test_every_cluster_runner_has_an_option_file_and_nothing_else_does():
    files = sorted(p.stem for p in Path(str(RUNNER_FILES)).glob("*.yaml"))
    assert files == sorted(FILED)
    assert set(FILED) <= set(RUNNERS)


@pytest.mark.parametrize("kind", FILED)
def test_option_file_parses_into_pipeline_options_with_every_key_known(kind):
    data = yaml.safe_load((Path(str(RUNNER_FILES)) / f"{kind}.yaml").read_text())["options"]
    options = PipelineOptions(_file_args(kind))
    known = options.get_all_options(drop_default=False)  # unknown flags are dropped from this view
    for key, value in data.items():
        assert key in known, f"{kind}.yaml: {key} is not a Beam pipeline option"
        got = known[key]
        if isinstance(got, list):  # repeated options such as --experiments
            assert str(value) in got, (key, got)
        else:
            assert str(got).lower() == str(value).lower(), (key, got, value)
    with beam_runner(kind) as (runner, opts):
        assert runner is None  # Beam builds the runner the options name
        name = opts.view_as(StandardOptions).runner
        from apache_beam.runners.runner import create_runner

        assert type(create_runner(name)).__name__ == name


@pytest.mark.parametrize("kind", FILED)
def test_the_launch_line_in_the_option_file_is_accepted(kind):
    text = (Path(str(RUNNER_FILES)) / f"{kind}.yaml").read_text()
    launch = re.search(r"^#   (webinstruct .*?)(?=\n# [A-Z])", text, re.S | re.M).group(1)
    argv = shlex.split(launch.replace("\\\n#      ", " ").replace("\\\n#       ", " "))
    assert argv[:3] == ["webinstruct", "recall", "--runner"] and argv[3] == kind
    proc = subprocess.run([sys.executable, "-m", "webinstruct.infra.cli", *argv[1:], "--print-config"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"\n  runner: {kind}\n" in proc.stdout
    extra = [a for a in argv[argv.index("--runner-options") + 1:]]
    assert extra and all(f"  - {a}\n" in proc.stdout for a in extra), proc.stdout


@pytest.mark.parametrize("address,loopback", [
    ("tcp://127.0.0.1:8786", True), ("localhost:8786", True), ("http://[::1]:8000/v1", True),
    ("http://127.0.0.1:8000/v1", True), ("tcp://10.0.0.5:8786", False), ("http://gpu-host:8000/v1", False)])
def test_loopback_addresses(address, loopback):
    from webinstruct.pipeline.runners import is_loopback

    assert is_loopback(address) is loopback


def test_workers_elsewhere_refuse_a_loopback_llm_endpoint_in_one_line():
    from webinstruct.core.config import ConfigError
    from webinstruct.pipeline.llm.config import LLMConfig
    from webinstruct.pipeline.llm.endpoint import llm_endpoint
    from webinstruct.pipeline.runners import RunnerSettings

    assert not RunnerSettings(runner="dask", dask_address="tcp://127.0.0.1:8786").workers_elsewhere()
    assert not RunnerSettings(runner="dask").workers_elsewhere()  # a local cluster
    assert not RunnerSettings(runner="multiprocess").workers_elsewhere()
    assert RunnerSettings(runner="dask", dask_address="tcp://10.1.2.3:8786").workers_elsewhere()
    for kind in FILED:
        assert RunnerSettings(runner=kind).workers_elsewhere()
    for llm in (LLMConfig(url=["http://127.0.0.1:8000/v1"]), LLMConfig()):  # given, or a local server to start
        with pytest.raises(ConfigError, match=r"loopback address, which workers on other machines cannot reach.*LLM_URL="):
            with llm_endpoint(llm, workers_elsewhere=True):
                pass
