"""Object storage, for real: every stage with RUN and WARC on `s3://`, against moto's S3 server on
loopback, gives the same bytes as a local run; the LLM cache on the bucket makes reruns free.

The unit tests of the segmented LLM cache use fsspec's in-memory file system (same code path as
s3://: a URI, no append, atomic puts); the end-to-end test uses the S3 server."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from s3_server import s3_server, use_env
from webinstruct.core import io as fio
from webinstruct.pipeline.llm import cache as C

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample" / "warc"
BUCKET = "webinstruct-test"


# ---- the segmented cache ------------------------------------------------------------------------

@pytest.fixture
def mem_cache(request):
    path = f"memory://cache-{request.node.name}/run/cache/llm.sqlite"
    yield path
    C._STORES.clear()


def _segments(path: str) -> list[str]:
    return [n for n in fio.listdir(C.segments_dir(path)) if n.startswith("seg-")]


def test_a_remote_path_gets_a_segmented_cache_and_a_local_one_sqlite(tmp_path, mem_cache):
    assert isinstance(C.open_cache(tmp_path / "c.sqlite"), C.RequestCache)
    remote = C.open_cache(mem_cache)
    assert isinstance(remote, C.SegmentedCache)
    assert C.segments_dir(mem_cache) == mem_cache[: -len(".sqlite")] + ".segments"


def test_entries_reach_the_bucket_on_flush_and_another_process_reads_them(mem_cache):
    cache = C.open_cache(mem_cache)
    cache.put("k1", {"text": "one"})
    cache.put("k2", {"text": "two"})
    assert _segments(mem_cache) == []  # below FLUSH_EVERY and FLUSH_SECONDS: still local
    cache.flush()
    assert len(_segments(mem_cache)) == 1
    cache.flush()  # nothing new: no empty segment
    assert len(_segments(mem_cache)) == 1
    C._STORES.clear()  # as a fresh worker process would start
    again = C.open_cache(mem_cache)
    assert again.get_many(["k1", "k2", "k3"]) == {"k1": {"text": "one"}, "k2": {"text": "two"}}
    assert len(again) == 2 and "k1" in again and again.get("k3") is None


def test_a_segment_is_written_every_flush_every_entries(mem_cache, monkeypatch):
    monkeypatch.setattr(C, "FLUSH_EVERY", 3)
    cache = C.open_cache(mem_cache)
    for i in range(7):
        cache.put(f"k{i}", {"i": i})
    assert len(_segments(mem_cache)) == 2  # after the 3rd and 6th put; the 7th waits for a flush
    cache.close()
    assert len(_segments(mem_cache)) == 3


def test_compaction_merges_every_segment_keeping_the_newest_value(mem_cache):
    cache = C.open_cache(mem_cache)
    cache.put("a", {"v": 1})
    cache.flush()
    cache.put("a", {"v": 2})
    cache.put("b", {"v": 3})
    cache.flush()
    assert len(_segments(mem_cache)) == 2
    assert C.compact(mem_cache) == 2
    names = _segments(mem_cache)
    assert len(names) == 1 and "-merged-2." in names[0]
    C._STORES.clear()
    assert C.open_cache(mem_cache).get_many(["a", "b"]) == {"a": {"v": 2}, "b": {"v": 3}}
    assert C.compact(mem_cache) == 0  # one segment: nothing to merge
    assert C.compact("/tmp/some/local.sqlite") == 0


def test_a_cache_pickled_to_a_worker_sees_segments_written_since(mem_cache):
    import pickle

    writer = C.open_cache(mem_cache)
    writer.put("x", {"v": 1})
    writer.flush()
    clone = pickle.loads(pickle.dumps(writer))
    assert clone.get("x") == {"v": 1} and pickle.dumps(writer) == pickle.dumps(clone)


def test_segments_are_gzipped_key_tab_json_lines(mem_cache):
    cache = C.open_cache(mem_cache)
    cache.put("key", {"text": "é"})
    cache.flush()
    (name,) = _segments(mem_cache)
    lines = gzip.decompress(fio.read_bytes(fio.join(C.segments_dir(mem_cache), name))).decode().splitlines()
    assert lines == ['key\t{"text": "é"}']


# ---- every stage on the S3 server -----------------------------------------------------------------

def _recipe(path: Path, warc: str) -> str:
    recipe = yaml.safe_load((ROOT / "infra" / "recipes" / "sample.yaml").read_text())
    recipe["classifier"]["threads"] = 1  # a bit-reproducible classifier: local and S3 runs train the same model
    recipe["recall"]["warc"] = [warc]
    recipe["extract"]["max_chunks_per_doc"] = 1  # fewer LLM calls on 2 CPU cores
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def _make(*args: str, env: dict) -> subprocess.CompletedProcess:
    venv = Path(sys.executable).parent.parent
    cmd = ["make", "-s", "-o", f"{venv}/.installed", f"VENV={venv}", *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, f"{' '.join(args)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _cli(*args: str, env: dict) -> None:
    proc = subprocess.run([sys.executable, "-m", "webinstruct.infra.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, env=env, timeout=1200)
    assert proc.returncode == 0, f"{' '.join(args)}\n{proc.stderr[-3000:]}"


# The files of each stage folder that must be byte-identical (stats and config name their paths and times).
COMPARED = {
    "classifier": ["classifier.bin"],
    "recall": ["part-*", "domains.jsonl.gz"],
    "domains/round-2/recall": ["part-*", "domains.jsonl.gz"],
    "extract": ["part-*"],
    "refine": ["part-*", "contaminated.jsonl.gz", "export/webinstruct.jsonl"],
}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """The S3 server with a bucket holding the bundled sample's main WARC; this process's
    environment points at it."""
    tmp = tmp_path_factory.mktemp("moto")
    with s3_server(str(tmp / "moto.log")) as s3env, pytest.MonkeyPatch.context() as mp:
        use_env(s3env, mp)
        import s3fs

        fs = s3fs.S3FileSystem()
        fs.mkdir(BUCKET)
        fs.put_file(str(SAMPLE / "pages.warc.gz"), f"{BUCKET}/crawl/pages.warc.gz")
        yield s3env, fs


@pytest.fixture(scope="module")
def runs(tmp_path_factory, llm_server, s3):
    """The bundled sample's main WARC, run through classifier, recall, a domain round, extract and
    refine twice: on S3 (WARC and RUN on the bucket, through make) and locally (through the CLI,
    reading the S3 run's LLM cache, so both see the same replies)."""
    tmp = tmp_path_factory.mktemp("s3")
    s3env, fs = s3
    if True:
        env = {**os.environ, **s3env}
        run = f"s3://{BUCKET}/run"
        s3_recipe = _recipe(tmp / "s3.yaml", str(SAMPLE / "*.warc*"))  # WARC= given: the recipe's is not read
        llm = [f"LLM_URL={llm_server.url}", f"LLM_MODEL={llm_server.model}"]
        _make("classifier", "recall", "domain-round", f"CONFIG={s3_recipe}", f"RUN={run}",
              f"WARC=s3://{BUCKET}/crawl/*.warc.gz", env=env)
        _make("extract", "refine", f"CONFIG={s3_recipe}", f"RUN={run}", *llm, env=env)
        first = {stage: fio.read_json(f"{run}/{stage}/stats.json") for stage in ("extract", "refine")}
        _make("extract", "refine", f"CONFIG={s3_recipe}", f"RUN={run}", *llm, env=env)  # the rerun
        rerun = {stage: fio.read_json(f"{run}/{stage}/stats.json") for stage in ("extract", "refine")}

        local = tmp / "local"
        # The same input (documents name the WARC they came from): only RUN differs.
        local_recipe = _recipe(tmp / "local.yaml", f"s3://{BUCKET}/crawl/*.warc.gz")
        base = ["--config", local_recipe, "--run", str(local)]
        _cli("classifier", "train", *base, env=env)
        _cli("recall", *base, env=env)
        _cli("domains", "round", *base, env=env)
        shared_cache = ["--llm-url", llm_server.url, "--llm-model", llm_server.model,
                        "--llm-cache", f"{run}/cache/llm.sqlite"]
        _cli("extract", *base, *shared_cache, env=env)
        _cli("refine", *base, *shared_cache, env=env)
        local_stats = {stage: json.loads((local / stage / "stats.json").read_text()) for stage in ("extract", "refine")}
        listing = sorted(fs.find(f"{BUCKET}/run"))
        yield {"run": run, "local": local, "first": first, "rerun": rerun, "local_stats": local_stats,
               "listing": listing}


@pytest.mark.slow
def test_every_stage_on_s3_writes_the_bytes_of_a_local_run(runs):
    run, local = runs["run"], runs["local"]
    compared = 0
    for stage, patterns in COMPARED.items():
        for pattern in patterns:
            remote = fio.glob(f"{run}/{stage}/{pattern}")
            here = sorted(str(p) for p in (local / stage).glob(pattern))
            assert remote and [fio.basename(p) for p in remote] == [Path(p).name for p in here], (stage, pattern)
            for r, h in zip(remote, here):
                assert fio.read_bytes(r) == Path(h).read_bytes(), r
                compared += 1
    assert compared >= 12
    assert runs["first"]["extract"]["requests_sent"] > 0 and runs["first"]["extract"]["records_written"] > 0


@pytest.mark.slow
def test_reruns_on_s3_and_a_local_run_on_its_cache_send_no_request(runs):
    for stage in ("extract", "refine"):
        assert runs["rerun"][stage]["requests_sent"] == 0, stage
        assert runs["local_stats"][stage]["requests_sent"] == 0, stage
        assert runs["rerun"][stage]["cache_hits"] > 0


@pytest.mark.slow
def test_the_run_on_s3_holds_its_artifacts_and_compacted_cache(runs):
    listing = runs["listing"]
    names = {p.split("/run/", 1)[1] for p in listing}
    for expected in ("classifier/classifier.bin", "recall/_SUCCESS", "domains/round-2/overlap.json",
                     "extract/_SUCCESS", "refine/_SUCCESS", "refine/README.md", "refine/export/webinstruct.parquet",
                     "report.md"):
        assert expected in names, expected
    segments = [n for n in names if n.startswith("cache/llm.segments/")]
    assert len(segments) == 1 and "-merged-" in segments[0], segments  # compacted after each stage
    assert any(n.startswith("cache/decontam/ngrams-") for n in names)  # the index the workers read
    assert not any(n.startswith("s3:") or "/s3:/" in n for n in names)


@pytest.mark.slow
def test_beams_s3_options_reach_the_bucket_without_aws_variables(s3, tmp_path):
    """`--runner-options --s3_endpoint_url=... --s3_access_key_id=...` instead of the AWS variables:
    recall reads its WARC from the bucket and writes its run there; the documents are those of a
    local run on the local copy of the WARC."""
    s3env, fs = s3
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_SHARED_CREDENTIALS_FILE"] = env["AWS_CONFIG_FILE"] = str(tmp_path / "none")
    # Nothing may leave the machine: no instance-metadata lookup, and a dead loopback endpoint that
    # the S3-specific one given by the options has to override.
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"
    beam = ["--runner-options", f"--s3_endpoint_url={s3env['AWS_ENDPOINT_URL']}",
            f"--s3_access_key_id={s3env['AWS_ACCESS_KEY_ID']}",
            f"--s3_secret_access_key={s3env['AWS_SECRET_ACCESS_KEY']}", "--s3_region_name=us-east-1"]
    recipe = _recipe(tmp_path / "r.yaml", str(SAMPLE / "pages.warc.gz"))
    local = tmp_path / "local"
    _cli("classifier", "train", "--config", recipe, "--run", str(local), env=env)
    classifier = ["--classifier", str(local / "classifier" / "classifier.bin")]
    _cli("recall", "--config", recipe, "--run", str(local), *classifier, env=env)
    run = f"s3://{BUCKET}/beam-options"
    _cli("recall", "--config", recipe, "--run", run, "--warc", f"s3://{BUCKET}/crawl/*.warc.gz", *classifier,
         *beam, env=env)
    remote = fio.glob(f"{run}/recall/part-*")
    assert [fio.basename(p) for p in remote] == sorted(p.name for p in (local / "recall").glob("part-*"))
    for path in remote:
        # The same documents; each names the WARC it came from, here the bucket's copy.
        there = [json.loads(line) for line in gzip.decompress(fio.read_bytes(path)).splitlines()]
        here = [json.loads(line) for line in gzip.decompress((local / "recall" / fio.basename(path)).read_bytes()).splitlines()]
        assert there and [d.pop("warc_file") for d in there] == [f"s3://{BUCKET}/crawl/pages.warc.gz"] * len(there)
        assert [d.pop("warc_file") for d in here] == [str(SAMPLE / "pages.warc.gz")] * len(here)
        assert there == here
