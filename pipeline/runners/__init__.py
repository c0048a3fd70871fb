"""Beam runner selection: one pipeline, several engines.

- `local` (default): Beam's in-process FnApiRunner, chosen explicitly because the DirectRunner
  first tries to download the Prism runner binary, which fails offline.
- `multiprocess`: the same runner with `direct_num_workers` worker processes (threads do not help
  the GIL-bound HTML extraction).
- `dask`: Beam's Dask runner on a Dask cluster (`--dask-address`, or a local cluster started here
  with `workers` processes): a real distributed engine that runs offline.
- `flink`, `dataflow`: option files in `pipeline/runners/` (see README, "Running at scale").
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import shlex
import typing
from typing import Any, Callable, Iterator, Literal

import yaml
from apache_beam.options.pipeline_options import PipelineOptions

from webinstruct.core.config import PositiveInt, option
from webinstruct.core.resources import package_path

log = logging.getLogger(__name__)
RUNNER_FILES = package_path(__package__)
Runner = Literal["local", "multiprocess", "dask", "flink", "dataflow"]
RUNNERS: tuple[str, ...] = typing.get_args(Runner)


def _file_args(name: str) -> list[str]:
    path = RUNNER_FILES / f"{name}.yaml"
    data = yaml.safe_load(path.read_text()) or {}
    return [f"--{k}={v}" for k, v in (data.get("options") or {}).items()]


@dataclasses.dataclass
class RunnerSettings:
    """The runner fields every Beam stage's config shares (stage configs inherit them)."""

    runner: Runner = option("local", "Beam runner: local | multiprocess | dask | flink | dataflow")
    workers: PositiveInt = option(2, "worker processes for multiprocess and a local Dask cluster")
    dask_address: str = option("", "address of a running Dask scheduler (default: start a local cluster)")
    runner_options: list[str] = option([], "extra Beam pipeline options: the tokens after the flag up to the next "
                                          "webinstruct flag, e.g. --runner-options --flink_master=HOST:8081", passthrough=True)

    def task_count(self, n_inputs: int) -> int:
        """Parallel tasks for a stage that groups its input shards (the LLM stages): the stage's
        `tasks` setting, else one per worker on a local runner (one task streams all its requests
        through one client), else one per input shard."""
        tasks = getattr(self, "tasks", 0)
        if tasks > 0:
            return tasks
        if self.runner == "local":
            return 1
        return self.workers if self.runner in ("multiprocess", "dask") and not self.dask_address else n_inputs


@contextlib.contextmanager
def beam_runner(kind: str, workers: int = 2, dask_address: str = "", extra: list[str] | None = None) -> Iterator[tuple]:
    """Yield `(runner, options)` for `kind`; tears down anything it started (a local Dask cluster)."""
    extra = list(extra or [])
    if kind not in RUNNERS:
        raise ValueError(f"unknown runner {kind!r}; choose one of {', '.join(RUNNERS)}")
    if kind in ("local", "multiprocess"):
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        args = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
        if kind == "multiprocess":
            args = [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
        yield FnApiRunner(), PipelineOptions(args + extra)
        return
    if kind == "dask":
        from apache_beam.runners.dask.dask_runner import DaskRunner

        cluster = None
        address = dask_address
        if not address:
            from distributed import LocalCluster

            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            address = cluster.scheduler_address
            log.info("started a local Dask cluster at %s with %d workers", address, workers)
        try:
            yield DaskRunner(), PipelineOptions([f"--dask_client_address={address}"] + extra)
        finally:
            if cluster is not None:
                cluster.close()
        return
    # flink / dataflow: the runner named in the option file; Beam resolves it by name.
    args = _file_args(kind) + extra
    log.info("runner %s with options %s", kind, shlex.join(args))
    yield None, PipelineOptions(args)


def run_pipeline(settings: RunnerSettings, build: Callable[[Any], None]) -> Any:
    """Build a pipeline with `build(pipeline)` on the runner `settings` choose, run it to the end
    and return the result (its metrics, where the runner has them)."""
    import apache_beam as beam

    with beam_runner(settings.runner, settings.workers, settings.dask_address, settings.runner_options) as (runner, options):
        p = beam.Pipeline(runner=runner, options=options)
        build(p)
        result = p.run()
        result.wait_until_finish()
        client = getattr(result, "client", None)  # the Dask runner leaves its client open
        if client is not None:
            client.close()
    return result
