"""Beam runner selection: one pipeline, several engines.

- `local` (default): Beam's in-process FnApiRunner, chosen explicitly because the DirectRunner
  first tries to download the Prism runner binary, which fails offline.
- `multiprocess`: the same runner with `direct_num_workers` worker processes (threads do not help
  the GIL-bound HTML extraction).
- `dask`: Beam's Dask runner on a Dask cluster (`--dask-address`, or a local cluster started here
  with `workers` processes): a real distributed engine that runs offline. Its `Create` puts up to
  128 elements in one Dask partition (one task), and its `Reshuffle` is an identity, so the few
  coarse units our stages create (WARC files, task groups of shards) would all run in one task on
  one worker: `dask_partitions` spreads them (see there).
- `flink`, `spark`, `dataflow`: option files in `pipeline/runners/` (see README, "Running on a cluster").
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
Runner = Literal["local", "multiprocess", "dask", "flink", "spark", "dataflow"]
RUNNERS: tuple[str, ...] = typing.get_args(Runner)


def _file_args(name: str) -> list[str]:
    path = RUNNER_FILES / f"{name}.yaml"
    data = yaml.safe_load(path.read_text()) or {}
    # A boolean is a switch in Beam (`--spark_submit_uber_jar`, not `=True`): true names it, false leaves it out.
    return [f"--{k}" if v is True else f"--{k}={v}" for k, v in (data.get("options") or {}).items() if v is not False]


@dataclasses.dataclass
class RunnerSettings:
    """The runner fields every Beam stage's config shares (stage configs inherit them)."""

    runner: Runner = option("local", "Beam runner: local | multiprocess | dask | flink | spark | dataflow")
    workers: PositiveInt = option(2, "worker processes for multiprocess and a local Dask cluster")
    dask_address: str = option("", "address of a running Dask scheduler (default: start a local cluster)")
    runner_options: list[str] = option([], "extra Beam pipeline options: the tokens after the flag up to the next "
                                          "webinstruct flag, e.g. --runner-options --flink_master=HOST:8081", passthrough=True)

    def workers_elsewhere(self) -> bool:
        """Whether the workers may run on other machines, where this machine's loopback address
        (a local LLM server's 127.0.0.1) is not this machine: a cluster runner, or a Dask scheduler
        that is not on loopback."""
        if self.runner in ("flink", "spark", "dataflow"):
            return True
        return self.runner == "dask" and bool(self.dask_address) and not is_loopback(self.dask_address)

    def workers_share_cwd(self) -> bool:
        """Whether the workers run in this process's working directory (the local runners and a
        local Dask cluster start them here); elsewhere a relative path means another file."""
        return self.runner in ("local", "multiprocess") or (self.runner == "dask" and not self.dask_address)

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


PATH_FIELDS = ("run", "out", "classifier", "cache", "index_cache")


def for_workers(cfg: Any, settings: "RunnerSettings | None" = None) -> Any:
    """`cfg` with its relative local paths (RUN, an output folder, the classifier, a cache) made
    absolute when the workers of `settings` (default: `cfg` itself) run in another working
    directory, where a relative path would name another file. Otherwise `cfg` as it is, so logs
    and recorded settings keep the paths as the user wrote them."""
    import os

    from webinstruct.core import io as fio

    settings = settings if settings is not None else cfg
    if not isinstance(settings, RunnerSettings) or settings.workers_share_cwd():
        return cfg
    changes = {}
    for name in PATH_FIELDS:
        value = getattr(cfg, name, None)
        if isinstance(value, str) and value and not fio.is_remote(value) and not os.path.isabs(value):
            changes[name] = os.path.abspath(fio.local_path(value))
    return dataclasses.replace(cfg, **changes) if changes else cfg


def is_loopback(address: str) -> bool:
    """Whether a URL or `host:port` names this machine's loopback (127.x, ::1, localhost)."""
    from urllib.parse import urlsplit

    host = urlsplit(address if "://" in address else f"tcp://{address}").hostname or ""
    return host == "localhost" or host.startswith("127.") or host == "::1"


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
            # A cluster started here has `workers` single-threaded workers: nothing to ask it.
            threads = workers if cluster is not None else None
            yield DaskRunner(), PipelineOptions([f"--dask_client_address={address}"]
                                                + dask_partitions(address, extra, threads) + extra)
        finally:
            if cluster is not None:
                cluster.close()
        return
    # flink / spark / dataflow: the runner named in the option file; Beam resolves it by name.
    args = _file_args(kind) + extra
    log.info("runner %s with options %s", kind, shlex.join(args))
    yield None, PipelineOptions(args)


PARTITIONS_PER_THREAD = 4


def dask_partitions(address: str, extra: list[str], threads: int | None = None) -> list[str]:
    """`--dask_npartitions` for the Dask runner: PARTITIONS_PER_THREAD partitions per worker thread
    (`threads`, else those of the cluster at `address`, asked once; 2 while none has joined yet),
    unless `extra` sets the partitioning itself.

    Beam's Dask runner turns every `beam.Create` into a Dask bag of `partition_size=128` by default
    and runs `Reshuffle` as an identity, so a stage's units of work (the WARC files of recall, the
    task groups of the LLM stages: at most a few hundred) sat in one partition, that is one task
    on one worker, the others idle. One partition per unit would balance best but makes a shuffle
    of N partitions per GroupByKey (tens of thousands for a crawl's WARC list); a few partitions per
    worker thread keep every worker busy with a bounded graph. `from_sequence` makes at most one
    partition per element, so a short list gets one unit per partition."""
    if any(a.split("=", 1)[0] in ("--dask_npartitions", "--dask_partition_size") for a in extra):
        return []
    if threads is None:
        from distributed import Client

        with Client(address, timeout=60) as client:
            threads = sum(client.nthreads().values()) or 2
    return [f"--dask_npartitions={max(1, PARTITIONS_PER_THREAD * threads)}"]


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
