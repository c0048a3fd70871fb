"""The stage-level fault matrix of issue 13, against tests/fault_server.py (no real model).

(a) The server answers the first attempts of every request with a server fault (HTML body,
    `content: null`, `choices: []`, another object type) and the valid reply afterwards; the valid
    reply itself holds ```-fenced code inside its JSON strings (a model's reply, not a fault). The
    stage must end with exactly the rows of a clean run, count the faults, and cache exactly what
    the clean run cached (no server fault recorded).
(b) `kill -9` of a real `webinstruct extract` / `refine` / `augment` process at several moments, then a rerun:
    the folder is complete and equal to a clean run's, or the next stage refuses it with one line
    (exit 2; augment's reader is `webinstruct train --dry-run --recipe metamath`); the rerun gives the
    clean run's bytes and asks only for the replies not yet cached.

Replies are deterministic functions of the request, so a clean and a faulty run can be compared.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from fault_server import Action, FaultServer, html, no_choices, null_content, ok, wrong_object
from webinstruct.core import shards
from webinstruct.core.schema import QAPair, RecalledDocument, WebInstructRow
from webinstruct.pipeline.extract import job as extract_job
from webinstruct.pipeline.extract.config import ExtractConfig
from webinstruct.pipeline.extract.transforms import pair_id
from webinstruct.pipeline.llm.client import FINAL_CAUSES
from webinstruct.pipeline.llm.config import LLMConfig
from webinstruct.pipeline.refine import job as refine_job
from webinstruct.pipeline.refine.config import RefineConfig

import killing
from conftest import ROOT

FAULTS = (html, null_content, no_choices, wrong_object)
FENCE = "Check it with:\n```python\nprint({'x': [1, 2]})\n```\nthen ```[3]```."
LLM = dict(model="fault-model", max_concurrency=4, transport_retries=3, semantic_retries=1, backoff_s=0.01,
           timeout_s=10, deadline_s=60, max_tokens=256, max_tokens_cap=256)
EXTRACT = dict(chunk_chars=400, overlap_chars=40, max_chunks_per_doc=3, num_shards=2)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def last_user(body: dict) -> str:
    return [m["content"] for m in body["messages"] if m["role"] == "user"][-1]


def extract_reply(body: dict) -> dict:
    """Pairs derived from the chunk alone: 0, 1 or 2 of them (0: a void chunk)."""
    h = digest(last_user(body))
    n = int(h[0], 16) % 3
    return {"pairs": [{"question": f"What is the value of item {h[i:i + 6]} in problem {i}?",
                       "answer": f"First, {FENCE}\nThe answer is: {int(h[i:i + 4], 16) % 97}"} for i in range(n)]}


def refine_reply(body: dict) -> dict:
    """A revision that keeps the pair's final answer: steps with fenced code, then the original."""
    text = last_user(body)
    q = text.split("Question:\n", 1)[1].split("\n\nAnswer:\n", 1)[0].strip()
    a = text.split("\n\nAnswer:\n", 1)[1].rsplit("\n</pair>", 1)[0].strip()
    return {"question": f"{q} Show every step.", "answer": f"Work it out. {FENCE}\n{a}"}


def body_key(body: dict) -> str:
    return digest(json.dumps(body, sort_keys=True))


def faulty_first(valid, calls: dict, lock: threading.Lock):
    """The first 1 or 2 attempts of each distinct request body get a server fault (chosen by the
    body's hash), later ones the valid reply (`valid(body)`: an Action, or the content)."""
    def reply(body: dict):
        key = body_key(body)
        with lock:
            seen = calls[key] = calls.get(key, 0) + 1
        h = int(key[:8], 16)
        if seen <= 1 + h % 2:
            return FAULTS[(h + seen) % len(FAULTS)]()
        answer = valid(body)
        return answer if isinstance(answer, Action) else ok(answer)
    return reply


def cache_entries(path) -> dict[str, dict]:
    with sqlite3.connect(path) as db:
        return {k: json.loads(v) for k, v in db.execute("select key, value from cache")}


def assert_no_server_fault_cached(entries: dict[str, dict]) -> None:
    for value in entries.values():
        if "failed" in value:
            assert value["failed"].split(":", 1)[0] in FINAL_CAUSES, value


def shard_bytes(directory) -> dict[str, bytes]:
    return {os.path.basename(p): open(p, "rb").read() for p in shards.list_shards(str(directory))}


# ---------------------------------------------------------------- inputs built by hand

def recall_folder(run, n_docs: int = 6) -> None:
    docs = []
    for i in range(n_docs):
        h = digest(f"doc{i}")
        paras = [f"Problem {i}.{j}: a train leaves at {j} o'clock at {10 + i + j} km/h; how far has it gone "
                 f"after {j + 2} hours? Solution: it goes {(10 + i + j) * (j + 2)} km. Ref {h[j:j + 8]}."
                 for j in range(1 + i % 4)]
        docs.append({"id": h[:16], "url": f"http://site{i % 3}.example/q/{i}", "domain": f"site{i % 3}.example",
                     "text": "\n\n".join(paras), "score": 0.5 + i / 100, "warc_file": "f.warc.gz",
                     "record_id": f"r{i}", "offset": i, "content_hash": h})
    for s in range(2):
        shards.write_shard(shards.join(str(run / "recall"), shards.shard_name(s, 2)), docs[s::2], RecalledDocument)
    shards.write_json(shards.join(str(run / "recall"), "stats.json"), {"docs_written": n_docs})
    shards.publish_stage(str(run / "recall"), "recall")


def extract_folder(run, n_pairs: int = 8) -> None:
    pairs = []
    for i in range(n_pairs):
        doc = f"doc{i}"
        q = f"A shop sells {i + 2} pens for {3 * (i + 1)} dollars each. How much do all the pens cost, case {i}?"
        a = f"Multiply: {i + 2} times {3 * (i + 1)} is {(i + 2) * 3 * (i + 1)}.\nThe answer is: {(i + 2) * 3 * (i + 1)}"
        url = f"https://shop{i % 3}.example/t/{i}"
        pairs.append({"id": pair_id(doc, q), "doc_id": doc, "url": url, "domain": url.split("/")[2], "question": q,
                      "answer": a, "extractor": "test", "chunk": 0, "raw": "", "doc_score": 0.9 - i / 100})
    pairs.sort(key=lambda p: p["id"])
    for s in range(2):
        shards.write_shard(shards.join(str(run / "extract"), shards.shard_name(s, 2)), pairs[s::2], QAPair)
    shards.publish_stage(str(run / "extract"), "extract")


@pytest.fixture(scope="module")
def index_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("decontam"))


def run_extract(run, reply) -> dict:
    with FaultServer(reply=reply) as server:
        stats = extract_job.run(ExtractConfig(run=str(run), **EXTRACT), LLMConfig(url=[server.url], **LLM))
    return stats


def run_refine(run, reply, index_cache) -> dict:
    with FaultServer(reply=reply) as server:
        stats = refine_job.run(RefineConfig(run=str(run), num_shards=2, index_cache=index_cache),
                               LLMConfig(url=[server.url], **LLM))
    return stats


# ---------------------------------------------------------------- (a) faulty first attempts, same rows

def test_extract_with_faulty_first_attempts_ends_as_a_clean_run(tmp_path):
    clean, faulty = tmp_path / "clean", tmp_path / "faulty"
    for run in (clean, faulty):
        recall_folder(run)
    clean_stats = run_extract(clean, lambda body: ok(extract_reply(body)))
    calls: dict = {}
    stats = run_extract(faulty, faulty_first(extract_reply, calls, threading.Lock()))

    rows = list(shards.read_shards(str(faulty / "extract"), QAPair))
    assert rows == list(shards.read_shards(str(clean / "extract"), QAPair))
    assert shard_bytes(faulty / "extract") == shard_bytes(clean / "extract")
    assert any(FENCE in r["answer"] for r in rows) and clean_stats["pairs_llm"] > 0
    assert clean_stats.get("server_faults", 0) == 0 and clean_stats["requests_sent"] == clean_stats["llm_requests"]
    # Every request saw 1 or 2 faults, each counted and retried; none reached the records.
    assert len(calls) == stats["llm_requests"] and all(n in (2, 3) for n in calls.values())
    assert stats["server_faults"] == stats["retries_bad_response"] == sum(calls.values()) - len(calls) > 0
    assert stats["requests_sent"] == sum(calls.values())
    assert not any(k.startswith(("dropped_chunk_", "failures_")) for k in stats), stats
    for key in ("docs_in", "docs_with_pairs", "docs_void", "pairs_llm", "pairs_out", "records_written"):
        assert stats.get(key, 0) == clean_stats.get(key, 0), key
    # The cache holds what the clean run's holds, value for value: no server fault was recorded.
    entries = cache_entries(faulty / "cache" / "llm.sqlite")
    assert entries == cache_entries(clean / "cache" / "llm.sqlite") and len(entries) == stats["llm_requests"]
    assert_no_server_fault_cached(entries)
    # A rerun against a server that only faults sends nothing: every reply is cached.
    again = run_extract(faulty, lambda body: html())
    assert again["requests_sent"] == 0 and again["cache_hits"] == stats["llm_requests"]
    assert shard_bytes(faulty / "extract") == shard_bytes(clean / "extract")


def test_refine_with_faulty_first_attempts_ends_as_a_clean_run(tmp_path, index_cache):
    clean, faulty = tmp_path / "clean", tmp_path / "faulty"
    for run in (clean, faulty):
        extract_folder(run)
    clean_stats = run_refine(clean, lambda body: ok(refine_reply(body)), index_cache)
    calls: dict = {}
    stats = run_refine(faulty, faulty_first(refine_reply, calls, threading.Lock()), index_cache)

    rows = list(shards.read_shards(str(faulty / "refine"), WebInstructRow))
    assert rows == list(shards.read_shards(str(clean / "refine"), WebInstructRow))
    assert shard_bytes(faulty / "refine") == shard_bytes(clean / "refine")
    assert len(rows) == clean_stats["rows_refined"] == 8
    assert all(FENCE in r["answer"] and r["refiner"] == "refiner" and r["answer_check"] == "consistent" for r in rows)
    for name in ("export/webinstruct.jsonl", "export/webinstruct.parquet"):
        assert (faulty / "refine" / name).read_bytes() == (clean / "refine" / name).read_bytes()
    assert clean_stats.get("server_faults", 0) == 0
    assert len(calls) == 8 and all(n in (2, 3) for n in calls.values())
    assert stats["server_faults"] == stats["retries_bad_response"] == sum(calls.values()) - len(calls) > 0
    assert stats["requests_sent"] == sum(calls.values())
    assert not any(k.startswith(("dropped_refine_", "failures_")) for k in stats), stats
    entries = cache_entries(faulty / "cache" / "llm.sqlite")
    assert entries == cache_entries(clean / "cache" / "llm.sqlite") and len(entries) == 8
    assert_no_server_fault_cached(entries)
    again = run_refine(faulty, lambda body: no_choices(), index_cache)
    assert again["requests_sent"] == 0 and again["cache_hits"] == 8
    assert shard_bytes(faulty / "refine") == shard_bytes(clean / "refine")


# ---------------------------------------------------------------- (b) kill -9, then a rerun

def cli(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "webinstruct.infra.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def slow(valid, seconds: float = 0.12):
    def reply(body: dict):
        time.sleep(seconds)
        return ok(valid(body))
    return reply


def cached_count(path) -> int:
    try:
        with sqlite3.connect(path, timeout=1) as db:
            return db.execute("select count(*) from cache").fetchone()[0]
    except sqlite3.Error:
        return 0


def kill_when(args: list[str], moment) -> bool:
    """`webinstruct ARGS`, killed with SIGKILL as soon as `moment()` holds (see killing.py)."""
    return killing.kill_when([sys.executable, "-m", "webinstruct.infra.cli", *args], moment, poll=0.002)


def moments(out, cache) -> dict:
    def names():
        try:
            return os.listdir(out)
        except FileNotFoundError:
            return []
    return {
        "replies_cached": lambda: cached_count(cache) >= 2,
        "first_shard_or_temp": lambda: any("-of-00002" in n for n in names()),
        "stats_written": lambda: os.path.exists(os.path.join(out, "stats.json")),
    }


def check_killed(run, stage: str, nxt: list[str], clean: dict[str, bytes], moment: str) -> str:
    """What a kill left: the clean run's folder complete, or a folder the next stage refuses as
    incomplete (the stage's lock file says it started there, shards or not)."""
    out = str(run / stage)
    assert not os.path.exists(os.path.join(out, "_SUCCESS")) or shards.is_complete(out, deep=True)
    try:
        shards.complete_shards(out, stage, deep=True)
    except shards.StageIncomplete as err:
        assert f"{stage} is incomplete" in str(err) and f"rerun `make {stage}`" in str(err)
        state = "refused"
    else:
        assert shard_bytes(out) == clean
        state = "complete"
    refused = cli(*nxt, timeout=120)
    if state == "refused":
        lines = refused.stderr.strip().splitlines()
        assert refused.returncode == 2 and len(lines) == 1, refused.stderr[-2000:]
        assert f"{stage} is incomplete" in lines[0] and f"rerun `make {stage}` (webinstruct {stage})" in lines[0], \
            lines[0]
    print(f"{stage} killed at {moment}: {state}")
    return state


def extract_args(run, url) -> list[str]:
    return ["extract", "--run", str(run), "--llm-url", url, "--llm-model", "fault-model", "--llm-max-concurrency", "1",
            "--llm-backoff-s", "0.01", "--chunk-chars", "400", "--overlap-chars", "40", "--max-chunks-per-doc", "3",
            "--num-shards", "2", "--llm-max-tokens", "256", "--llm-max-tokens-cap", "256"]


def refine_args(run, url, index_cache) -> list[str]:
    return ["refine", "--run", str(run), "--llm-url", url, "--llm-model", "fault-model", "--llm-max-concurrency", "1",
            "--llm-backoff-s", "0.01", "--num-shards", "2", "--index-cache", index_cache,
            "--llm-max-tokens", "256", "--llm-max-tokens-cap", "256"]


@pytest.fixture(scope="module")
def clean_extract(tmp_path_factory):
    run = tmp_path_factory.mktemp("clean_extract")
    recall_folder(run)
    with FaultServer(reply=lambda body: ok(extract_reply(body))) as server:
        done = cli(*extract_args(run, server.url))
    assert done.returncode == 0, done.stderr[-3000:]
    stats = shards.read_json(str(run / "extract" / "stats.json"))
    return shard_bytes(run / "extract"), stats


@pytest.fixture(scope="module")
def clean_refine(tmp_path_factory, index_cache):
    run = tmp_path_factory.mktemp("clean_refine")
    extract_folder(run)
    with FaultServer(reply=lambda body: ok(refine_reply(body))) as server:
        done = cli(*refine_args(run, server.url, index_cache))
    assert done.returncode == 0, done.stderr[-3000:]
    stats = shards.read_json(str(run / "refine" / "stats.json"))
    return shard_bytes(run / "refine"), stats


def rerun_matches_clean(run, stage: str, args: list[str], clean: dict[str, bytes], total: int, cached: int) -> None:
    done = cli(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    out = str(run / stage)
    assert shards.is_complete(out, deep=True) and shard_bytes(out) == clean
    stats = shards.read_json(os.path.join(out, "stats.json"))
    # Only the replies not cached before the kill were asked for.
    assert stats["cache_hits"] >= cached and stats["requests_sent"] == total - stats["cache_hits"]
    assert not [n for n in os.listdir(out) if n.startswith(".") and n != ".lock"]


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["replies_cached", "first_shard_or_temp", "stats_written"])
def test_killed_extract_is_refused_then_rerun_matches_clean(tmp_path, clean_extract, index_cache, moment):
    clean, clean_stats = clean_extract
    total = clean_stats["llm_requests"]
    run = tmp_path / "run"
    recall_folder(run)
    cache = str(run / "cache" / "llm.sqlite")
    with FaultServer(reply=slow(extract_reply)) as server:
        args = extract_args(run, server.url)
        killed = kill_when(args, moments(str(run / "extract"), cache)[moment])
        cached = cached_count(cache)
        if killed:
            check_killed(run, "extract", refine_args(run, server.url, index_cache), clean, moment)
        rerun_matches_clean(run, "extract", args, clean, total, cached)
    if killed and moment == "replies_cached":
        assert 2 <= cached < total


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["replies_cached", "first_shard_or_temp", "stats_written"])
def test_killed_refine_is_refused_then_rerun_matches_clean(tmp_path, clean_refine, moment):
    clean, clean_stats = clean_refine
    total = clean_stats["requests"] if "requests" in clean_stats else clean_stats["requests_sent"]
    run = tmp_path / "run"
    extract_folder(run)
    cache = str(run / "cache" / "llm.sqlite")
    index = str(tmp_path / "decontam")
    with FaultServer(reply=slow(refine_reply)) as server:
        args = refine_args(run, server.url, index)
        killed = kill_when(args, moments(str(run / "refine"), cache)[moment])
        cached = cached_count(cache)
        if killed:
            check_killed(run, "refine", ["augment", "--run", str(run), "--llm-url", server.url], clean, moment)
        rerun_matches_clean(run, "refine", args, clean, total, cached)
    if killed and moment == "replies_cached":
        assert 2 <= cached < total


def test_augment_refuses_a_refine_folder_killed_before_its_first_shard(tmp_path, monkeypatch):
    """A refine run killed before any shard leaves RUN/refine with temporaries only; augment used to
    take the folder for an input file and fail inside Beam (IsADirectoryError) after starting the
    LLM endpoint. It is missing input, said before any server starts."""
    from webinstruct.pipeline.augment import job as augment_job
    from webinstruct.pipeline.augment.config import AugmentConfig

    def no_server(*a, **k):
        raise AssertionError("the LLM endpoint started before the input was checked")

    monkeypatch.setattr(augment_job, "llm_endpoint", no_server)
    out = tmp_path / "refine"
    out.mkdir()
    (out / ".part-00000-of-00002.jsonl.gz.k2j3.tmp").write_text("half")
    with pytest.raises(shards.MissingInput, match=r"no shards .* in .*refine: run `make refine` \(webinstruct refine\) first"):
        augment_job.run(AugmentConfig(run=str(tmp_path)), LLMConfig(url=["http://127.0.0.1:9/v1"]))
    assert not (tmp_path / "augment").exists()
    (out / ".lock").write_text("123\n")  # what a real refine run leaves: it started there
    with pytest.raises(shards.StageIncomplete, match=r"refine is incomplete \(no shards and no _SUCCESS.*rerun `make refine`"):
        augment_job.run(AugmentConfig(run=str(tmp_path)), LLMConfig(url=["http://127.0.0.1:9/v1"]))


# ---------------------------------------------------------------- (a) for augment

SEEDS = [
    {"question": "Tom has 3 apples and buys 5 more. How many apples does he have?", "answer": "3 + 5 = 8\n#### 8"},
    {"question": "A box holds 12 pens. Mia buys 4 boxes and gives away 7 pens. How many pens does she keep?",
     "answer": "12 * 4 = 48 and 48 - 7 = 41\n#### 41"},
    {"question": "Sam reads 15 pages a day for 6 days. How many pages does he read?", "answer": "15 * 6 = 90\n#### 90"},
]
AUGMENT = dict(ansaug_samples=2, rephrasings=1, rephrase_samples=1, sv_samples=1, fobar_samples=1, max_masks=2,
               num_shards=2)


def augment_reply(golds: dict[str, str]):
    """Solutions that state the gold answer of the question they recognise (AnsAug, Rephrased,
    FOBAR are accepted), a rephrasing that keeps the question, and no answer for the rest (SV)."""
    from webinstruct.pipeline.augment.prompts import REPHRASE_LABEL

    def reply(body: dict):
        text = last_user(body)
        h = digest(json.dumps(body, sort_keys=True))[:6]
        if text.endswith(REPHRASE_LABEL):
            q = text[len("Question: "):-len(REPHRASE_LABEL)].strip()
            return ok(f"{q} Give the number only.")
        for question, gold in sorted(golds.items(), key=lambda kv: -len(kv[0])):
            if question in text:
                return ok(f"Step {h}: {FENCE}\nThe answer is: {gold}")
        return ok(f"Sample {h}: I cannot tell.")
    return reply


def test_augment_with_faulty_first_attempts_ends_as_a_clean_run(tmp_path):
    from webinstruct.core.schema import MetaMathRow
    from webinstruct.pipeline.augment import job as augment_job
    from webinstruct.pipeline.augment import masking
    from webinstruct.pipeline.augment import transforms as AT
    from webinstruct.pipeline.augment.config import AugmentConfig
    from webinstruct.pipeline.augment.inputs import read_seed

    seeds_file = tmp_path / "seeds.jsonl"
    seeds_file.write_text("".join(json.dumps(s) + "\n" for s in SEEDS))
    golds = {}
    for record in SEEDS:
        seed, _ = read_seed(record)
        golds[seed["question"]] = seed["answer"]
        for m in AT.masks_of(seed, AUGMENT["max_masks"]):
            golds[masking.fobar_question(m.question, seed["answer"], masking.unknown_var(seed["domain"]))] = m.value
    valid = augment_reply(golds)

    def run_augment(run, reply) -> dict:
        with FaultServer(reply=reply) as server:
            return augment_job.run(AugmentConfig(run=str(run), input=[str(seeds_file)], **AUGMENT),
                                   LLMConfig(url=[server.url], **LLM))

    clean, faulty = tmp_path / "clean", tmp_path / "faulty"
    clean_stats = run_augment(clean, valid)
    calls: dict = {}
    stats = run_augment(faulty, faulty_first(valid, calls, threading.Lock()))

    rows = list(shards.read_shards(str(faulty / "augment"), MetaMathRow))
    assert rows == list(shards.read_shards(str(clean / "augment"), MetaMathRow))
    assert shard_bytes(faulty / "augment") == shard_bytes(clean / "augment")
    kinds = {r["type"] for r in rows}
    assert {"GSM_AnsAug", "GSM_Rephrased", "GSM_FOBAR"} <= kinds, kinds
    assert all(FENCE in r["response"] for r in rows)
    assert clean_stats.get("server_faults", 0) == 0 and clean_stats["sv_samples"] > 0
    total = clean_stats["requests_sent"]
    assert len(calls) == total and all(n in (2, 3) for n in calls.values())
    assert stats["server_faults"] == stats["retries_bad_response"] == sum(calls.values()) - total > 0
    assert stats["requests_sent"] == sum(calls.values())
    for key in ("seeds_in", "rows_out", *(f"{k}_{w}" for k in AT.KINDS for w in ("samples", "accepted"))):
        assert stats.get(key, 0) == clean_stats.get(key, 0), key
    assert not any("_failed_" in k or k.startswith("failures_") for k in stats), stats
    entries = cache_entries(faulty / "cache" / "llm.sqlite")
    assert entries == cache_entries(clean / "cache" / "llm.sqlite") and len(entries) == total
    assert_no_server_fault_cached(entries)
    again = run_augment(faulty, lambda body: null_content())
    assert again["requests_sent"] == 0 and again["cache_hits"] == total
    assert shard_bytes(faulty / "augment") == shard_bytes(clean / "augment")


# ---------------------------------------------------------------- (b) for augment: kill -9, then a rerun

def augment_golds(seeds: list[dict]) -> dict[str, str]:
    """The gold answer of every question augment asks a solution for (seeds and FOBAR questions)."""
    from webinstruct.pipeline.augment import masking
    from webinstruct.pipeline.augment import transforms as AT
    from webinstruct.pipeline.augment.inputs import read_seed

    golds = {}
    for record in seeds:
        seed, _ = read_seed(record)
        golds[seed["question"]] = seed["answer"]
        for m in AT.masks_of(seed, AUGMENT["max_masks"]):
            golds[masking.fobar_question(m.question, seed["answer"], masking.unknown_var(seed["domain"]))] = m.value
    return golds


def augment_args(run, url, seeds_file) -> list[str]:
    return ["augment", "--run", str(run), "--input", str(seeds_file), "--llm-url", url, "--llm-model", "fault-model",
            "--llm-max-concurrency", "1", "--llm-backoff-s", "0.01", "--ansaug-samples", "2", "--rephrasings", "1",
            "--rephrase-samples", "1", "--sv-samples", "1", "--fobar-samples", "1", "--max-masks", "2",
            "--num-shards", "2"]


def train_args(run, model_dir) -> list[str]:
    """The reader of RUN/augment: a training dry run of the MetaMath recipe (data `{run}/augment`),
    with the embedded model's tokenizer (and a rate: the recipe has none for it)."""
    return ["train", "--dry-run", "--recipe", "metamath", "--run", str(run), "--model", "smollm2-135m",
            "--model-path", model_dir, "--lr", "2e-5"]


@pytest.fixture(scope="module")
def augment_seeds(tmp_path_factory):
    seeds_file = tmp_path_factory.mktemp("augment_seeds") / "seeds.jsonl"
    seeds_file.write_text("".join(json.dumps(s) + "\n" for s in SEEDS))
    return seeds_file, augment_reply(augment_golds(SEEDS))


@pytest.fixture(scope="module")
def clean_augment(tmp_path_factory, augment_seeds):
    seeds_file, valid = augment_seeds
    run = tmp_path_factory.mktemp("clean_augment")
    with FaultServer(reply=valid) as server:
        done = cli(*augment_args(run, server.url, seeds_file))
    assert done.returncode == 0, done.stderr[-3000:]
    stats = shards.read_json(str(run / "augment" / "stats.json"))
    return shard_bytes(run / "augment"), stats


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["replies_cached", "first_shard_or_temp", "stats_written"])
def test_killed_augment_is_refused_then_rerun_matches_clean(tmp_path, augment_seeds, clean_augment, llm_model_dir,
                                                             moment):
    seeds_file, valid = augment_seeds
    clean, clean_stats = clean_augment
    total = clean_stats["requests_sent"]
    run = tmp_path / "run"
    cache = str(run / "cache" / "llm.sqlite")

    def slow_valid(body: dict):
        time.sleep(0.12)
        return valid(body)

    with FaultServer(reply=slow_valid) as server:
        args = augment_args(run, server.url, seeds_file)
        killed = kill_when(args, moments(str(run / "augment"), cache)[moment])
        cached = cached_count(cache)
        if killed:
            check_killed(run, "augment", train_args(run, llm_model_dir), clean, moment)
        rerun_matches_clean(run, "augment", args, clean, total, cached)
    if killed and moment == "replies_cached":
        assert 2 <= cached < total
