"""Every stage on a real Dask cluster of separate programs writes the local runner's bytes.

A `dask scheduler` and two `dask worker` processes (one worker process, one thread each) are
started as programs, not a LocalCluster object, with the interpreter of a fresh environment into
which the built wheel is installed (tests/wheel_env.py), from an empty working directory, without
PYTHONPATH. Where the machine allows it (root and `unshare`), they also run in their own mount
namespace in which the checkout and the launcher's caches (`~/.cache`: the decontamination index,
the model) are covered by empty folders, so a worker that reached for one of the launcher's files
would fail; only the dependencies' site-packages are mounted back. The run folders (the shared
storage of a real cluster) stay visible.

From the launcher (this environment's `webinstruct`, absolute run folders), each stage runs on the
cluster (`--runner dask --dask-address ...`; the domain round takes its runner from the recipe's
recall section) and on the local runner into a second run folder, and every shard file and the
counters of stats.json are compared.

LLM answers: the cluster run of each LLM stage asks the session's real vLLM server (its workers
reach it over TCP) and fills its request cache (RUN/cache/llm.sqlite, an SQLite file keyed by
the request as sent); that cache is then copied into the local run before the local run of the
same stage, which must send nothing: each of its requests was asked, identically, by the cluster
run. Greedy decoding alone would not do: vLLM's CPU kernels batch the requests each runner's
tasks happen to have in flight together, and the logits (so the argmax, so the text) may depend
on the batch. The counters that only say where an answer came from (requests sent, cache hits,
tokens) are compared through that identity; every other counter must be equal.

The work is checked to run on the workers, and on both: each worker's count of executed tasks
grows during every cluster stage (every stage has at least two units of work; before
pipeline/runners' `dask_partitions`, Beam's Dask runner put them all in one partition, so one
worker did everything), the local runs leave the counts alone, and the workers import webinstruct
from the wheel's environment. Two cases, relative input paths, are expected failures (see there).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from wheel_env import clean_env, wheel_env, which_webinstruct

pytestmark = pytest.mark.slow

WI = str(Path(sys.executable).parent / "webinstruct")
# Counters that say where an LLM answer came from (asked or cached) and what it cost, not what it
# was: the client counts retries and final failures (`retries_<cause>`, `failures_<cause>`) only for
# requests it sends; a recorded failure found in the cache is a `cache_hits_failed`.
TRAFFIC = ("requests_sent", "cache_hits", "cache_hits_failed", "prompt_tokens", "completion_tokens")
TRAFFIC_PREFIXES = ("retries_", "failures_")
VOLATILE = ("wall_seconds", "pages_per_second")
TIMINGS: dict[str, dict[str, float]] = {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _can_isolate() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", "mount -t tmpfs none /mnt"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


def _isolated(argv: list[str], keep: Path, cwd: Path) -> list[str]:
    """`argv` in a private mount namespace where the checkout (but its .venv, the dependencies)
    and ~/.cache are empty folders."""
    venv = ROOT / ".venv"
    cache = Path.home() / ".cache"
    script = "\n".join([
        "set -e",
        f"mkdir -p '{keep}'",
        f"mount --bind '{venv}' '{keep}'",
        f"mount -t tmpfs tmpfs '{ROOT}'",
        f"mkdir -p '{venv}'",
        f"mount --bind '{keep}' '{venv}'",
        f"if [ -d '{cache}' ]; then mount -t tmpfs tmpfs '{cache}'; fi",
        f"cd '{cwd}'",
        'exec "$@"',
    ])
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *argv]


class Cluster:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []
        self.logs: dict[str, Path] = {}
        self.isolated = _can_isolate()

    def start(self, name: str, argv: list[str], cwd: Path, env: dict) -> subprocess.Popen:
        if self.isolated:
            argv = _isolated(argv, self.tmp / f"keep-{name}", cwd)
        log = self.logs[name] = self.tmp / f"{name}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    def tails(self, n: int = 3000) -> str:
        return "\n".join(f"--- {k}\n{p.read_text(errors='replace')[-n:]}" for k, p in self.logs.items() if p.exists())

    def stop(self) -> list[int]:
        """Stop every process group; return the pids of any process left in them."""
        groups = [p.pid for p in self.procs]
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            for g in groups:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(g, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _members(groups):
                time.sleep(0.2)
            if not _members(groups):
                break
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
        return _members(groups)


def _members(groups: list[int]) -> list[int]:
    """Live (not zombie) processes whose process group is one of `groups`."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            fields = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) in groups:
            out.append(int(d))
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from distributed import Client

    tmp = tmp_path_factory.mktemp("dask-cluster")
    built = wheel_env(tmp / "wheel")
    work = tmp / "worker-cwd"
    work.mkdir()
    env = clean_env()
    where = which_webinstruct(built.python, work, env)
    assert where.startswith(str(built.venv) + "/") and "site-packages" in where, where
    assert not where.startswith(str(ROOT) + "/"), where

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    c = Cluster(tmp)
    try:
        # One queued task per worker thread (the default 1.1 lets one idle worker take two of two
        # root tasks), so a stage's two units of work go to both workers.
        c.start("scheduler", [built.python, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                              "--no-dashboard"], work, {**env, "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0"})
        for i in (1, 2):
            c.start(f"worker{i}", [built.python, "-m", "dask", "worker", address, "--nworkers", "1", "--nthreads", "1",
                                   "--no-dashboard", "--name", f"w{i}", "--local-directory", str(tmp / f"w{i}")],
                    work, env)
        client = None
        deadline = time.monotonic() + 120
        while client is None:
            try:
                client = Client(address, timeout=10)
            except OSError:
                if time.monotonic() > deadline or any(p.poll() is not None for p in c.procs):
                    raise AssertionError("the scheduler did not start:\n" + c.tails())
                time.sleep(1)
        try:
            client.wait_for_workers(2, timeout=180)
        except TimeoutError:
            raise AssertionError("two workers did not join:\n" + c.tails()) from None
        yield {"address": address, "client": client, "cluster": c, "venv": built.venv, "work": work}
        client.close()
    finally:
        left = c.stop()
        assert not left, f"processes left after teardown: {left}"


def _executed(client) -> dict[str, int]:
    return client.run(lambda dask_worker: dask_worker.state.executed_count)


# Seed questions for augment that SmolLM2-135M answers right often enough that some samples are
# accepted (on the bundled GSM8K / MATH sample it accepts none in a run this small, and empty shards
# would compare nothing); a GSM8K-style and a MATH-style file, so the stage has two units of work.
EASY = {
    "gsm_easy.jsonl": [{"question": "Tom has 3 apples and buys 2 more. How many apples does Tom have now?",
                        "answer": "Tom has 3+2=5 apples.\n#### 5"},
                       {"question": "A box holds 4 pens. How many pens are in 2 boxes?",
                        "answer": "2 boxes hold 2*4=8 pens.\n#### 8"}],
    "math_easy.jsonl": [{"problem": "What is $2+2$?", "solution": "$2+2=\\boxed{4}$."},
                        {"problem": "Compute $3 \\times 3$.", "solution": "$3 \\times 3=\\boxed{9}$."}],
}


def _shared_inputs(folder: Path) -> Path:
    """The sample's WARC files and the augment questions, where the workers see them (a cluster's
    shared storage): the checkout is hidden from them."""
    shutil.copytree(ROOT / "data" / "sample" / "warc", folder / "warc")
    (folder / "augment").mkdir()
    for name, rows in EASY.items():
        (folder / "augment" / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _recipe(path: Path, runner: str, address: str = "", inputs: str = "") -> str:
    """infra/recipes/sample.yaml with its inputs under `inputs` (absolute, or relative to the
    launcher's working directory), on `runner`, scaled down."""
    recipe = yaml.safe_load((ROOT / "infra" / "recipes" / "sample.yaml").read_text())
    recipe["recall"]["warc"] = [f"{inputs}/warc/*.warc*"]
    recipe["augment"]["input"] = [f"{inputs}/augment/{name}" for name in EASY]
    # Small and bit-reproducible: one fastText thread, a small model; few LLM requests.
    recipe["classifier"].update(dim=64, bucket=50_000, threads=1)
    recall = {"runner": runner}
    if address:
        recall["dask_address"] = address
    recipe["recall"].update(recall)
    recipe["extract"].update(max_chunks_per_doc=1, chunk_chars=2000, overlap_chars=200)
    recipe["augment"].update(limit=2, ansaug_samples=2, rephrasings=1, max_masks=1)
    recipe["llm"].update(max_concurrency=8, max_tokens=256, max_tokens_cap=512, timeout_s=300, deadline_s=900)
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dask-runs")
    inputs = str(_shared_inputs(tmp / "inputs"))
    dask_run, local_run = tmp / "dask", tmp / "local"
    dask_run.mkdir()
    local_run.mkdir()
    yield {
        "dask": {"run": dask_run, "recipe": _recipe(tmp / "dask.yaml", "dask", cluster["address"], inputs),
                 "runner": ["--runner", "dask", "--dask-address", cluster["address"]]},
        "local": {"run": local_run, "recipe": _recipe(tmp / "local.yaml", "local", inputs=inputs),
                  "runner": ["--runner", "local"]},
        "tmp": tmp,
        "state": {},
    }
    # The measured wall times of each command (seen with -s; kept beside the runs).
    (tmp / "timings.json").write_text(json.dumps(TIMINGS, indent=1))
    print("\nwall seconds per stage (launcher to exit), local vs dask:")
    for stage, t in TIMINGS.items():
        print(f"  {stage:14s} local {t.get('local', '-'):>7}  dask {t.get('dask', '-'):>7}")


def _cli(args: list[str], timeout: int = 1200) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    out = subprocess.run([WI, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return out, round(time.monotonic() - t0, 1)


def _copy_cache(src_run: Path, dest_run: Path) -> None:
    """Copy RUN/cache/llm.sqlite with SQLite's backup API (the WAL file's pages included)."""
    src = src_run / "cache" / "llm.sqlite"
    dest = dest_run / "cache" / "llm.sqlite"
    dest.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(str(dest) + suffix).unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(src)) as a, contextlib.closing(sqlite3.connect(dest)) as b:
        a.backup(b)


def _data_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.jsonl.gz"))
            if not p.name.startswith(".")}


def _read(runs, kind: str, name: str) -> bytes:
    """A file of one run, its run folder's path replaced by RUN."""
    return (runs[kind]["run"] / name).read_bytes().replace(str(runs[kind]["run"]).encode(), b"RUN")


def _stats(folder: Path) -> dict:
    return json.loads((folder / "stats.json").read_text())


def run_stage(runs, cluster, stage: str, args: list[str], llm=None, runner_flags: bool = True) -> dict:
    """Run `webinstruct <args>` on the cluster, then locally; return both folders' run dirs and stats."""
    client = cluster["client"]
    results = {}
    for kind in ("dask", "local"):
        r = runs[kind]
        if kind == "local" and llm:
            _copy_cache(runs["dask"]["run"], r["run"])
        before = _executed(client)
        cmd = [*args, "--config", r["recipe"], "--run", str(r["run"])]
        if runner_flags:
            cmd += r["runner"]
        if llm:
            cmd += ["--llm-url", llm.url, "--llm-model", llm.model]
        out, wall = _cli(cmd)
        TIMINGS.setdefault(stage, {})[kind] = wall
        assert out.returncode == 0, f"{kind} {stage}: {out.stderr[-4000:]}\n{cluster['cluster'].tails()}"
        after = _executed(client)
        grown = {w: after[w] - before.get(w, 0) for w in after}
        results[kind] = {"executed": grown}
        if kind == "dask":
            # The work ran on the cluster's workers, not in the launcher, and on both of them: every
            # stage has at least two units of work (WARC files, task groups of shards or files).
            assert len(grown) == 2 and all(n > 0 for n in grown.values()), \
                f"the workers did not both run tasks during {stage}: {grown}"
        else:
            assert sum(grown.values()) == 0, f"the local run of {stage} used the cluster: {grown}"
    print(f"\n{stage}: local {TIMINGS[stage]['local']} s, dask {TIMINGS[stage]['dask']} s; "
          f"tasks per worker {results['dask']['executed']}")
    return results


def assert_same(runs, sub: str) -> tuple[dict, dict]:
    """Byte-identical data files under RUN/<sub> and equal counters; return both stats."""
    d, l = runs["dask"]["run"] / sub, runs["local"]["run"] / sub
    fd, fl = _data_files(d), _data_files(l)
    assert fd and sorted(fd) == sorted(fl), (sorted(fd), sorted(fl))
    differ = [name for name in fd if fd[name] != fl[name]]
    assert not differ, f"{sub}: files differ between the dask and local runs: {differ}"
    sd, sl = _stats(d), _stats(l)
    assert _counters(sd) == _counters(sl)
    return sd, sl


def _counters(stats: dict) -> dict:
    return {k: v for k, v in stats.items()
            if k not in VOLATILE and k not in TRAFFIC and not k.startswith(TRAFFIC_PREFIXES)}


def assert_answers_shared(sd: dict, sl: dict) -> None:
    """The local run found every answer in the cluster run's cache: the requests were identical."""
    assert sd.get("requests_sent", 0) > 0 or sd.get("cache_hits", 0) > 0, sd
    assert sl["requests_sent"] == 0, f"the local run asked {sl['requests_sent']} requests the cluster run did not"
    # Every request the cluster run gave up on (recorded in the cache) is a recorded failure locally.
    failed = sum(v for k, v in sd.items() if k.startswith("failures_"))
    assert sl.get("cache_hits_failed", 0) == sd.get("cache_hits_failed", 0) + failed, (sd, sl)


# ---- the stages, in pipeline order ----------------------------------------------------------

def test_workers_are_separate_programs_on_the_wheel(cluster):
    client = cluster["client"]
    info = client.run(lambda: (__import__("os").getpid(), __import__("os").getcwd(), __import__("sys").executable,
                               __import__("webinstruct").__file__))
    assert len(info) == 2
    pids = {v[0] for v in info.values()}
    assert len(pids) == 2 and os.getpid() not in pids
    for pid, cwd, exe, package in info.values():
        assert exe.startswith(str(cluster["venv"])), exe
        assert package.startswith(str(cluster["venv"]) + "/"), package
        assert not cwd.startswith(str(ROOT)), cwd
    if cluster["cluster"].isolated:
        # The launcher's files are out of the workers' reach.
        hidden = client.run(lambda: [__import__("os").path.exists(p) for p in
                                     (str(ROOT / "setup.py"), str(ROOT / "pipeline"), str(Path.home() / ".cache" / "webinstruct"))])
        assert all(v == [False, False, False] for v in hidden.values()), hidden


def test_classifier(runs):
    for kind in ("dask", "local"):
        r = runs[kind]
        out, wall = _cli(["classifier", "train", "--config", r["recipe"], "--run", str(r["run"])])
        TIMINGS.setdefault("classifier", {})[kind] = wall
        assert out.returncode == 0, out.stderr[-3000:]
    a, b = (runs[k]["run"] / "classifier" / "classifier.bin" for k in ("dask", "local"))
    assert a.read_bytes() == b.read_bytes()  # one thread: the same model, so recall compares runners only


def test_recall(runs, cluster):
    run_stage(runs, cluster, "recall", ["recall"])
    sd, _ = assert_same(runs, "recall")
    assert sd["docs_written"] > 5
    runs["state"]["recall"] = True


def test_domain_round(runs, cluster):
    assert runs["state"].get("recall"), "recall did not finish"
    # Runner and scheduler from the recipe's recall section (the round has no runner flags).
    run_stage(runs, cluster, "domain round", ["domains", "round"], runner_flags=False)
    sd, _ = assert_same(runs, "domains/round-2/recall")
    assert sd["docs_written"] > 0
    # The selection (which names its run's folder), the round's classifier and its overlap report.
    assert _read(runs, "dask", "domains/selected.json") == _read(runs, "local", "domains/selected.json")
    assert _read(runs, "dask", "domains/round-2/classifier.bin") == _read(runs, "local", "domains/round-2/classifier.bin")
    od, ol = (json.loads(_read(runs, k, "domains/round-2/overlap.json")) for k in ("dask", "local"))
    assert od == ol


def test_extract(runs, cluster, llm_server):
    assert runs["state"].get("recall"), "recall did not finish"
    run_stage(runs, cluster, "extract", ["extract"], llm=llm_server)
    sd, sl = assert_same(runs, "extract")
    assert sd["pairs_out"] > 0
    assert_answers_shared(sd, sl)
    runs["state"]["extract"] = True


def test_refine(runs, cluster, llm_server):
    assert runs["state"].get("extract"), "extract did not finish"
    run_stage(runs, cluster, "refine", ["refine"], llm=llm_server)
    sd, sl = assert_same(runs, "refine")
    assert sd["rows_out"] > 0
    for name in ("export/webinstruct.jsonl", "export/webinstruct.parquet"):  # written by the launcher from the shards
        assert _read(runs, "dask", f"refine/{name}") == _read(runs, "local", f"refine/{name}"), name
    assert_answers_shared(sd, sl)


def test_augment(runs, cluster, llm_server):
    run_stage(runs, cluster, "augment", ["augment"], llm=llm_server)
    sd, sl = assert_same(runs, "augment")
    assert sd["rows_out"] > 0
    assert_answers_shared(sd, sl)


# ---- relative input paths -------------------------------------------------------------------
# A recipe names its inputs relative to the launcher's working directory (the sample recipe does:
# data/sample/warc/*.warc*), and RUN may be relative too; the workers run in another directory.

def test_recall_with_relative_warc_paths_and_run(runs, cluster):
    """WARC paths and RUN relative to the launcher's directory: the workers, in another one, read
    and write the launcher's files (RUN is made absolute, WARC paths are opened under its directory
    and recorded as written)."""
    assert runs["state"].get("recall"), "recall did not finish"
    tmp = runs["tmp"]
    run = tmp / "relative-recall"
    recipe = _recipe(tmp / "relative.yaml", "dask", cluster["address"], inputs="inputs")
    out = subprocess.run([WI, "recall", "--config", recipe, "--run", "relative-recall", "--classifier",
                          str(runs["local"]["run"] / "classifier" / "classifier.bin")],
                         cwd=tmp, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert _counters(_stats(run / "recall")) == _counters(_stats(runs["local"]["run"] / "recall"))


def test_augment_with_relative_input_paths(runs, cluster, llm_server):
    tmp = runs["tmp"]
    run = tmp / "relative-augment"
    run.mkdir()
    _copy_cache(runs["dask"]["run"], run)  # the answers are known: only the paths differ
    recipe = _recipe(tmp / "relative.yaml", "dask", cluster["address"], inputs="inputs")
    out = subprocess.run([WI, "augment", "--config", recipe, "--run", str(run), *runs["dask"]["runner"],
                          "--llm-url", llm_server.url, "--llm-model", llm_server.model],
                         cwd=tmp, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert _counters(_stats(run / "augment")) == _counters(_stats(runs["dask"]["run"] / "augment"))
