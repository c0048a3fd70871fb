"""Complete-or-absent stage outputs (core/publish.py): a stage folder is readable only with its
`_SUCCESS` marker, written last; a killed run leaves a folder the next stage refuses with one line;
a rerun cleans stale temporaries and gives the clean run's bytes; a second concurrent run is refused.

The unit tests build folders by hand; the slow ones kill a real `webinstruct recall` process with
SIGKILL at several moments of its run."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from webinstruct.core import io as fio
from webinstruct.core import publish
from webinstruct.core import shards
from webinstruct.core.schema import RecalledDocument

from conftest import ROOT, SAMPLE_WARC
from killing import kill_when

DOC = {"id": "a", "url": "http://x.org/1", "domain": "x.org", "text": "t", "score": 0.9,
       "warc_file": "f", "record_id": "r", "offset": 0, "content_hash": "h"}
REFUSED = r"recall is incomplete \(.*\): rerun `make recall` \(webinstruct recall\)"


def stage_folder(directory, n: int = 2, marker: bool = True) -> str:
    directory = str(directory)
    for i in range(n):
        shards.write_shard(shards.join(directory, shards.shard_name(i, n)), [{**DOC, "id": f"d{i}"}], RecalledDocument)
    shards.write_json(shards.join(directory, "stats.json"), {"docs_written": n})
    if marker:
        shards.publish_stage(directory, "recall")
    return directory


def cli(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "webinstruct.infra.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


# ---- readers ----------------------------------------------------------------------------------

def test_published_folder_is_read(tmp_path):
    out = stage_folder(tmp_path / "recall")
    marker = shards.read_json(shards.join(out, "_SUCCESS"))
    assert marker["stage"] == "recall" and marker["format"] == 1
    assert sorted(marker["shards"]) == [shards.shard_name(0, 2), shards.shard_name(1, 2)]
    assert marker["files"]["stats.json"]["bytes"] == os.path.getsize(shards.join(out, "stats.json"))
    assert [d["id"] for d in shards.read_shards(out, RecalledDocument)] == ["d0", "d1"]
    assert shards.complete_shards(out, deep=True) == shards.list_shards(out)


def test_folder_without_marker_is_refused(tmp_path):
    out = stage_folder(tmp_path / "recall", marker=False)
    with pytest.raises(shards.StageIncomplete, match=REFUSED):
        list(shards.read_shards(out))
    assert not shards.is_complete(out)
    # An empty folder is missing input (never ran), not incomplete.
    with pytest.raises(shards.MissingInput, match="no shards .* run `make recall` .*first") as err:
        shards.complete_shards(str(tmp_path / "nothing" / "recall"))
    assert not isinstance(err.value, shards.StageIncomplete)


@pytest.mark.parametrize("damage", ["missing_shard", "wrong_size", "stats_changed", "garbled_marker", "old_format"])
def test_marker_that_does_not_match_is_refused(tmp_path, damage):
    out = stage_folder(tmp_path / "recall")
    first = shards.join(out, shards.shard_name(0, 2))
    if damage == "missing_shard":
        os.remove(first)
        why = "part-00000-of-00002.jsonl.gz listed in _SUCCESS is missing"
    elif damage == "wrong_size":
        shards.write_shard(first, [DOC, DOC])  # another run's shard under the same name
        why = "part-00000-of-00002.jsonl.gz has .* bytes, _SUCCESS says"
    elif damage == "stats_changed":
        shards.write_json(shards.join(out, "stats.json"), {"docs_written": 12345})
        why = "stats.json has"
    elif damage == "garbled_marker":
        fio.write_atomic(shards.join(out, "_SUCCESS"), "{not json")
        why = "unreadable _SUCCESS"
    else:
        shards.write_json(shards.join(out, "_SUCCESS"), {"shards": []})
        why = "not a completion marker"
    with pytest.raises(shards.StageIncomplete, match=why):
        list(shards.read_shards(out))


def test_same_size_other_bytes_caught_by_deep_check(tmp_path):
    out = stage_folder(tmp_path / "recall", n=1)
    path = shards.join(out, shards.shard_name(0, 1))
    data = bytearray(open(path, "rb").read())
    data[-5] ^= 0xFF  # the gzip CRC: same size, other bytes
    open(path, "wb").write(bytes(data))
    assert shards.complete_shards(out) == [path]
    with pytest.raises(shards.StageIncomplete, match="does not have the sha256"):
        shards.complete_shards(out, deep=True)


def test_only_listed_shards_are_read(tmp_path):
    out = stage_folder(tmp_path / "recall")
    shards.write_shard(shards.join(out, shards.shard_name(0, 3)), [{**DOC, "id": "stray"}])
    assert [d["id"] for d in shards.read_shards(out)] == ["d0", "d1"]


# ---- writing ----------------------------------------------------------------------------------

def test_stage_output_removes_marker_first_and_cleans_temporaries(tmp_path):
    out = stage_folder(tmp_path / "recall")
    stale = [os.path.join(out, ".part-00000-of-00002.jsonl.gz.k2j3.tmp"), os.path.join(out, ".stats.json.x.tmp-9"),
             os.path.join(out, "export", ".webinstruct.parquet.abc.tmp")]
    for path in stale:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").write("half")
    with shards.stage_output(out, "recall") as output:
        assert not os.path.exists(os.path.join(out, "_SUCCESS"))
        assert not any(os.path.exists(p) for p in stale)
        with pytest.raises(shards.StageIncomplete, match=REFUSED):
            shards.complete_shards(out)  # killed here: refused
        output.publish()
    assert shards.is_complete(out, deep=True)


def test_failed_stage_leaves_no_marker_and_releases_lock(tmp_path):
    out = stage_folder(tmp_path / "recall")
    with pytest.raises(RuntimeError):
        with shards.stage_output(out, "recall"):
            raise RuntimeError("the pipeline failed")
    assert not shards.is_complete(out)
    with shards.stage_output(out, "recall") as output:  # the lock was released
        output.publish()
    assert shards.is_complete(out)


def test_second_writer_is_refused(tmp_path):
    out = str(tmp_path / "recall")
    with publish.lock(out):
        with pytest.raises(shards.StageBusy, match=f"being written by another run \\(pid {os.getpid()}\\)"):
            with shards.stage_output(out, "recall"):
                pass
    with shards.stage_output(out, "recall"):
        pass


def test_llm_stages_refuse_incomplete_input_before_any_server(tmp_path, monkeypatch):
    """extract, refine and augment check their input folder before the LLM endpoint starts."""
    from webinstruct.pipeline.augment import job as augment
    from webinstruct.pipeline.augment.config import AugmentConfig
    from webinstruct.pipeline.extract import job as extract
    from webinstruct.pipeline.extract.config import ExtractConfig
    from webinstruct.pipeline.llm.config import LLMConfig
    from webinstruct.pipeline.refine import job as refine
    from webinstruct.pipeline.refine.config import RefineConfig

    def no_server(*a, **k):
        raise AssertionError("the LLM endpoint started before the input was checked")

    for module in (extract, refine, augment):
        monkeypatch.setattr(module, "llm_endpoint", no_server)
    run = tmp_path / "run"
    for stage in ("recall", "extract", "refine"):
        stage_folder(run / stage, marker=False)
    cases = [(extract, ExtractConfig(run=str(run)), "recall"), (refine, RefineConfig(run=str(run)), "extract"),
             (augment, AugmentConfig(run=str(run)), "refine")]
    for module, cfg, stage in cases:
        with pytest.raises(shards.StageIncomplete, match=f"{stage} is incomplete .*rerun `make {stage}`"):
            module.run(cfg, LLMConfig())
        assert not os.path.exists(os.path.join(cfg.out_dir(), ".lock"))  # its own folder untouched


def test_cli_refuses_incomplete_recall_with_one_line(tmp_path):
    stage_folder(tmp_path / "recall", marker=False)
    out = cli("extract", "--run", str(tmp_path), timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("webinstruct extract: error: ")
    assert "recall is incomplete" in lines[0] and "rerun `make recall` (webinstruct recall)" in lines[0]
    assert not (tmp_path / "extract").exists()  # refused before the stage touched its own folder


def test_cli_refuses_second_concurrent_run(tmp_path):
    out_dir = stage_folder(tmp_path / "recall")
    before = open(os.path.join(out_dir, "_SUCCESS")).read()
    clf = tmp_path / "classifier.bin"  # never loaded: the lock is taken before the pipeline starts
    clf.write_bytes(b"")
    with publish.lock(out_dir):
        out = cli("recall", "--run", str(tmp_path), "--warc", str(SAMPLE_WARC / "*.warc*"), "--classifier",
                  str(clf), timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"is being written by another run (pid {os.getpid()})" in lines[0]
    assert open(os.path.join(out_dir, "_SUCCESS")).read() == before  # the running writer's folder is untouched


# ---- killed runs (real processes) ---------------------------------------------------------------

def recall_args(run, clf, num_shards=2):
    return ["recall", "--run", str(run), "--warc", str(SAMPLE_WARC / "*.warc*"), "--classifier", clf,
            "--num-shards", str(num_shards)]


def folder_bytes(directory) -> dict[str, bytes]:
    """The data files of a stage folder (shards and the domain table), by name."""
    return {n: open(os.path.join(directory, n), "rb").read() for n in sorted(os.listdir(directory))
            if n.endswith(".jsonl.gz") and not n.startswith(".")}


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, small_classifier):
    run = tmp_path_factory.mktemp("clean")
    out = cli(*recall_args(run, small_classifier))
    assert out.returncode == 0, out.stderr[-3000:]
    assert shards.is_complete(str(run / "recall"), deep=True)
    return folder_bytes(run / "recall")


def _moments(out: str):
    marker, stats, config = (os.path.join(out, n) for n in ("_SUCCESS", "stats.json", "config.json"))
    stats_before, config_before = os.stat(stats).st_mtime_ns, os.stat(config).st_mtime_ns

    def names():
        try:
            return os.listdir(out)
        except FileNotFoundError:
            return []
    return {
        "marker_removed": lambda: not os.path.exists(marker),
        "first_new_shard_or_temp": lambda: any("of-00002" in n for n in names()),
        "stats_rewritten": lambda: os.path.exists(stats) and os.stat(stats).st_mtime_ns != stats_before,
        "config_rewritten": lambda: os.path.exists(config) and os.stat(config).st_mtime_ns != config_before,
    }


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["marker_removed", "first_new_shard_or_temp", "stats_rewritten",
                                    "config_rewritten"])
def test_killed_recall_is_refused_then_rerun_matches_clean(tmp_path, small_classifier, clean_run, moment):
    """An earlier complete run (3 shards) is overwritten by a 2-shard run killed at `moment`: the
    folder is the earlier run intact, refused, or the new run complete; a rerun gives the clean bytes."""
    run = tmp_path / "run"
    out = str(run / "recall")
    first = cli(*recall_args(run, small_classifier, num_shards=3))
    assert first.returncode == 0, first.stderr[-3000:]
    old = folder_bytes(out)
    cmd = [sys.executable, "-m", "webinstruct.infra.cli", *recall_args(run, small_classifier)]
    killed = kill_when(cmd, _moments(out)[moment])
    if killed:
        try:
            shards.complete_shards(out, "recall", deep=True)
            state = "old" if folder_bytes(out) == old else "new"
        except shards.StageIncomplete as err:
            assert "recall is incomplete" in str(err) and "rerun `make recall` (webinstruct recall)" in str(err)
            state = "refused"
        print(f"killed at {moment}: {state}")
        if state == "new":
            assert folder_bytes(out) == clean_run
        if state == "refused" and moment == "first_new_shard_or_temp":
            # The next stage refuses it with one line and exit 2, before any LLM server starts.
            nxt = cli("extract", "--run", str(run), timeout=120)
            assert nxt.returncode == 2 and len(nxt.stderr.strip().splitlines()) == 1, nxt.stderr[-2000:]
            assert "recall is incomplete" in nxt.stderr
        # Temporaries a kill may leave; the rerun must clean them.
        open(os.path.join(out, ".part-00000-of-00002.jsonl.gz.zz9.tmp"), "w").write("half")
    rerun = cli(*recall_args(run, small_classifier))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert shards.is_complete(out, deep=True)
    assert folder_bytes(out) == clean_run
    assert not [n for n in os.listdir(out) if n.startswith(".") and n != ".lock"]
    assert sorted(shards.read_json(os.path.join(out, "_SUCCESS"))["shards"]) == [
        shards.shard_name(0, 2), shards.shard_name(1, 2)]
