"""Training data prepared once into memory-mapped arrays (training/prepared.py): the same rows and
counts as the in-memory path (read_examples -> mix -> encode_all -> pack), a key that changes with
the tokenizer, the settings that change rows and the data files and with nothing else, reuse
without encoding, folders a crash or a kill -9 left that are never reused, ranks that wait for
rank 0, and `--prepare` on both command lines. SmolLM2's tokenizer, a few hundred real pairs."""
from __future__ import annotations

import dataclasses
import gzip
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from webinstruct.core.formatting import DEFAULT_CHAT_TEMPLATE, encode_all
from webinstruct.core.procs import free_port
from webinstruct.training import prepared as P
from webinstruct.training.batches import collate
from webinstruct.training.config import TrainConfig
from webinstruct.training.data import mix, pack, padding_share, read_examples

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "data" / "seeds" / "positive.jsonl.gz"
PY = sys.executable


@pytest.fixture(scope="module")
def tokenizer(llm_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(llm_model_dir)


def _pairs(n: int, skip: int = 0) -> list[dict[str, str]]:
    """Real pairs of varied lengths: seed texts split at their first blank line."""
    out = []
    with gzip.open(SEEDS, "rt", encoding="utf-8") as fh:
        for line in fh:
            text = json.loads(line)["text"]
            if "\n\n" in text:
                q, a = text.split("\n\n", 1)
                if q.strip() and a.strip():
                    out.append({"question": q, "answer": a})
    return out[skip:skip + n]


@pytest.fixture()
def data(tmp_path) -> dict[str, Path]:
    """Three sources: JSON lines (with a bad line, an empty answer and prompts too long for
    max_len 320), a folder holding a MetaMathQA-style JSON list (some answers cut at max_len),
    and a small file mixed in with weight 0."""
    a = tmp_path / "a.jsonl"
    with open(a, "w") as fh:
        for p in _pairs(90):
            fh.write(json.dumps(p) + "\n")
        fh.write("{not json\n")
        fh.write(json.dumps({"question": "q", "answer": " "}) + "\n")
        for i in range(4):
            fh.write(json.dumps({"question": f"{i} " + "word " * 400, "answer": "short"}) + "\n")
    b = tmp_path / "b"
    b.mkdir()
    rows = [{"query": p["question"], "response": p["answer"] + " more" * (40 * (i % 3)), "type": "GSM_AnsAug"}
            for i, p in enumerate(_pairs(35, skip=90))]
    (b / "b.json").write_text(json.dumps(rows))
    c = tmp_path / "c.jsonl"
    c.write_text("".join(json.dumps(p) + "\n" for p in _pairs(10, skip=125)))
    return {"a": a, "b": b, "c": c}


def _config(tmp_path: Path, data: dict[str, Path], **settings) -> TrainConfig:
    values = {"model": "smollm2-135m", "run": str(tmp_path / "run"), "format": "chat", "max_len": 320,
              "micro_batch": 3, "seed": 5, "packing": False,
              "data": [{"path": str(data["a"]), "weight": 0.5, "name": "a"},
                       {"path": str(data["b"]), "weight": 1.5, "name": "metamathqa"},
                       {"path": str(data["c"]), "weight": 0.0, "name": "c"}]}
    return TrainConfig(**{**values, **settings})


def _in_memory(cfg: TrainConfig, tokenizer) -> tuple[list[dict], Counter]:
    """What trainer.load_rows did before: every example in Python lists."""
    counts: Counter = Counter()
    sources = [(list(read_examples(s["path"], s["name"], counts)), float(s["weight"])) for s in cfg.data_sources()]
    encoded = encode_all(mix(sources, cfg.seed), tokenizer, cfg.format, cfg.max_len, counts)
    counts["padding_share_unpacked"] = padding_share([len(e["input_ids"]) for e in encoded], cfg.micro_batch)
    counts["padding_share_trained"] = 0.0 if cfg.padding_free else counts["padding_share_unpacked"]
    if not cfg.packing:
        return encoded, counts
    rows = pack(encoded, cfg.max_len)
    counts["packed_rows"] = len(rows)
    counts["padding_share_packed"] = padding_share([len(r["input_ids"]) for r in rows], cfg.micro_batch)
    counts["padding_share_trained"] = counts["padding_share_packed"]
    return rows, counts


def _assert_same_rows(got, want, packed: bool) -> None:
    assert len(got) == len(want)
    for i, row in enumerate(want):
        mine = got[i]
        assert mine["input_ids"].tolist() == list(row["input_ids"]), i
        assert mine["labels"].tolist() == list(row["labels"]), i
        if packed:
            assert mine["position_ids"].tolist() == row["position_ids"], i
            assert mine["lengths"].tolist() == row["lengths"], i
        else:
            assert "position_ids" not in mine


def _count_encodes(monkeypatch) -> list[int]:
    calls = [0]
    real = P.encode

    def counted(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(P, "encode", counted)
    return calls


@pytest.mark.parametrize("packing,fmt,padding_free", [(False, "chat", True), (False, "chat", False),
                                                      (True, "chat", True), (True, "alpaca", False)])
def test_rows_and_counts_equal_the_in_memory_path(tmp_path, data, tokenizer, packing, fmt, padding_free):
    cfg = _config(tmp_path, data, packing=packing, format=fmt, padding_free=padding_free)
    want, want_counts = _in_memory(cfg, tokenizer)
    prepared = P.prepare(cfg, tokenizer, workers=1)
    _assert_same_rows(prepared.rows, want, packing)
    counts = prepared.counts(cfg.micro_batch, cfg.padding_free)
    assert dict(counts) == dict(want_counts)
    # The data exercises every count: bad rows, dropped prompts, cut answers, the mix's duplicates.
    assert counts["skipped_bad_json"] == 1 and counts["skipped_empty_field"] == 1
    assert counts["dropped_prompt_too_long"] >= 2 and counts["truncated"] > 0
    assert counts["read"] == 94 + 35 + 10 and counts["examples"] == round(0.5 * 94) + 35 + round(0.5 * 35)
    if packing:
        assert counts["packed_rows"] < counts["kept"]
    # Batches built from the mapped rows equal those built from the lists.
    for idx in ([0, 1, 2], [len(want) - 1, 3]):
        a = collate([prepared.rows[i] for i in idx], 0, packing, padding_free and not packing)
        b = collate([want[i] for i in idx], 0, packing, padding_free and not packing)
        assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    assert {p.name for p in prepared.folder.iterdir()} == (
        {"tokens.npy", "labels.npy", "row_offsets.npy", "meta.json", P.MARKER}
        | ({"seq_lengths.npy", "seq_offsets.npy", "mix_lengths.npy"} if packing else set()))


def test_worker_processes_give_the_same_rows(tmp_path, data, tokenizer, monkeypatch):
    """Past INLINE_EXAMPLES the encoding moves to spawned processes; the order is kept."""
    monkeypatch.setattr(P, "INLINE_EXAMPLES", 20)
    monkeypatch.setattr(P, "CHUNK_EXAMPLES", 8)
    cfg = _config(tmp_path, data, packing=True)
    prepared = P.prepare(cfg, tokenizer, workers=2)
    assert prepared.meta["workers"] == 2
    want, want_counts = _in_memory(cfg, tokenizer)
    _assert_same_rows(prepared.rows, want, True)
    assert prepared.counts(cfg.micro_batch, cfg.padding_free) == want_counts


def test_rows_object_indexing(tmp_path, data, tokenizer):
    rows = P.prepare(_config(tmp_path, data, packing=True), tokenizer, workers=1).rows
    assert rows[-1]["input_ids"].tolist() == rows[len(rows) - 1]["input_ids"].tolist()
    assert [r["input_ids"].tolist() for r in rows[1:3]] == [rows[1]["input_ids"].tolist(), rows[2]["input_ids"].tolist()]
    with pytest.raises(IndexError):
        rows[len(rows)]
    row = rows[0]
    assert row["input_ids"].dtype == np.int32 and len(row["position_ids"]) == len(row["input_ids"]) == sum(row["lengths"])
    assert sum(1 for _ in rows) == len(rows)


def test_key_follows_tokenizer_settings_and_data_only(tmp_path, data, tokenizer):
    cfg = _config(tmp_path, data)

    def key(c=cfg, tok=tokenizer):
        return P.data_key(P.key_inputs(c, tok))

    base = key()
    from transformers import AutoTokenizer

    fresh = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    fresh("warm up", padding="max_length", max_length=8, truncation=True)  # transformers sets these per call
    assert key(tok=fresh) == base
    unchanged = [dict(micro_batch=7), dict(global_batch=64), dict(lr=1e-3), dict(padding_free=False), dict(epochs=3),
                 dict(max_steps=9), dict(zero_stage=3),
                 dict(data=[{**s, "name": "renamed"} for s in cfg.data_sources()])]
    for change in unchanged:
        assert key(dataclasses.replace(cfg, **change)) == base, change
    changed = [dict(format="alpaca"), dict(max_len=256), dict(packing=True), dict(seed=6),
               dict(data=[{**s, "weight": 1.0} for s in cfg.data_sources()]),
               dict(data=cfg.data_sources()[:2]), dict(data=cfg.data_sources()[::-1])]
    keys = {key(dataclasses.replace(cfg, **change)) for change in changed}
    assert base not in keys and len(keys) == len(changed)

    templated = pickle.loads(pickle.dumps(tokenizer))
    templated.chat_template = DEFAULT_CHAT_TEMPLATE
    grown = pickle.loads(pickle.dumps(tokenizer))
    grown.add_tokens(["<extra-token>"])
    assert len({base, key(tok=templated), key(tok=grown)}) == 3

    st = os.stat(data["a"])
    os.utime(data["a"], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # same bytes, a new mtime
    touched = key()
    assert touched != base
    (data["b"] / ".lock").write_text("123\n")  # hidden files are not data
    assert key() == touched
    (data["b"] / "more.jsonl").write_text(json.dumps(_pairs(1)[0]) + "\n")
    assert key() not in (base, touched)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        key(dataclasses.replace(cfg, data=[{"path": str(tmp_path / "missing.jsonl")}]))


def test_second_prepare_and_load_rows_reuse_without_encoding(tmp_path, data, tokenizer, monkeypatch):
    from webinstruct.training.trainer import load_rows

    cfg = _config(tmp_path, data, packing=True)
    first = P.prepare(cfg, tokenizer, workers=1)
    marker = first.folder / P.MARKER
    stamp = marker.stat().st_mtime_ns

    def refuse(*args, **kwargs):
        raise AssertionError("encoded again")

    monkeypatch.setattr(P, "encode", refuse)
    again = P.prepare(cfg, tokenizer, workers=1)
    rows, counts = load_rows(cfg, tokenizer)  # what every rank calls in train()
    assert again.folder == first.folder and marker.stat().st_mtime_ns == stamp
    assert isinstance(rows, P.PreparedRows) and len(rows) == len(first.rows)
    assert counts == first.counts(cfg.micro_batch, cfg.padding_free)
    assert [p.name for p in P.data_root(cfg).iterdir()] == [first.folder.name]


def test_a_folder_without_a_valid_marker_is_prepared_again(tmp_path, data, tokenizer, monkeypatch):
    cfg = _config(tmp_path, data)
    want, _ = _in_memory(cfg, tokenizer)
    folder = P.prepare(cfg, tokenizer, workers=1).folder
    calls = _count_encodes(monkeypatch)

    (folder / P.MARKER).unlink()  # as if the marker had never been written
    assert P.open_prepared(folder) is None
    _assert_same_rows(P.prepare(cfg, tokenizer, workers=1).rows, want, False)
    assert calls[0] > 0

    calls[0] = 0
    with open(folder / "tokens.npy", "r+b") as fh:  # a file cut short under a valid-looking marker
        fh.truncate(os.path.getsize(folder / "tokens.npy") - 4)
    assert P.open_prepared(folder) is None
    _assert_same_rows(P.prepare(cfg, tokenizer, workers=1).rows, want, False)
    assert calls[0] > 0 and P.open_prepared(folder) is not None


def test_kill_during_prepare_leaves_nothing_that_is_reused(tmp_path, data, tokenizer, llm_model_dir):
    """kill -9 in the middle: only the temporary folder is left; the next prepare removes it (its
    process is gone) and writes the folder from scratch."""
    cfg = _config(tmp_path, data)
    key = P.data_key(P.key_inputs(cfg, tokenizer))
    script = (
        "import sys, time\n"
        "from transformers import AutoTokenizer\n"
        "from webinstruct.training import prepared as P\n"
        "from webinstruct.training.config import TrainConfig\n"
        "real = P.encode\n"
        "def slow(*a, **k):\n"
        "    time.sleep(0.2)\n"
        "    return real(*a, **k)\n"
        "P.encode = slow\n"
        "P.CHUNK_EXAMPLES = 4\n"
        f"cfg = TrainConfig(**{dataclasses.asdict(cfg)!r})\n"
        f"P.prepare(cfg, AutoTokenizer.from_pretrained({llm_model_dir!r}), workers=1)\n")
    proc = subprocess.Popen([PY, "-c", script], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root = P.data_root(cfg)
    temporary = root / f".tmp-{key}-{socket.gethostname()}-{proc.pid}"
    deadline = time.time() + 120
    while not (temporary / "scratch-ids.bin").is_file() or os.path.getsize(temporary / "scratch-ids.bin") == 0:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "the preparer never started writing"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (root / key).exists() and temporary.is_dir()
    prepared = P.prepare(cfg, tokenizer, workers=1)
    assert prepared.folder == root / key and not temporary.exists()
    _assert_same_rows(prepared.rows, _in_memory(cfg, tokenizer)[0], False)


RANK_SCRIPT = """
import json, os, sys
import torch.distributed as dist
from transformers import AutoTokenizer
from webinstruct.training import prepared as P
from webinstruct.training.config import TrainConfig

rank = int(os.environ["RANK"])
dist.init_process_group("gloo")
tok = AutoTokenizer.from_pretrained(sys.argv[1])
cfg = TrainConfig(**json.loads(sys.argv[2]))
calls = [0]
real = P.encode
def counted(*a, **k):
    calls[0] += 1
    return real(*a, **k)
P.encode = counted
got = P.load_or_prepare(cfg, tok)
out = {"folder": str(got.folder), "rows": len(got.rows), "encoded": calls[0],
       "first": got.rows[0]["input_ids"].tolist()}
def boom(*a, **k):
    raise ValueError("no tokens today")
if rank == 0:
    P.encode = boom
try:
    P.load_or_prepare(TrainConfig(**{**json.loads(sys.argv[2]), "seed": 99}), tok)
    out["second"] = "prepared"
except Exception as err:
    out["second"] = f"{type(err).__name__}: {err}"
json.dump(out, open(sys.argv[3] + f".{rank}", "w"))
dist.destroy_process_group()
"""


def test_rank_zero_prepares_while_the_others_wait(tmp_path, data, tokenizer, llm_model_dir):
    """Two processes in a gloo group: rank 0 encodes, rank 1 encodes nothing and maps the same
    folder; when rank 0 fails, rank 1 fails too instead of waiting forever."""
    cfg = _config(tmp_path, data, packing=True)
    env = {**os.environ, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = tmp_path / "rank.json"
    procs = [subprocess.Popen([PY, "-c", RANK_SCRIPT, llm_model_dir, json.dumps(dataclasses.asdict(cfg)), str(out)],
                              cwd=ROOT, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, stderr=subprocess.PIPE)
             for r in range(2)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read().decode()[-3000:]
    r0, r1 = (json.loads(Path(f"{out}.{r}").read_text()) for r in range(2))
    assert r0["encoded"] > 0 and r1["encoded"] == 0
    assert r0["folder"] == r1["folder"] and r0["rows"] == r1["rows"] and r0["first"] == r1["first"]
    assert r0["second"] == "ValueError: no tokens today"
    assert r1["second"].startswith("RuntimeError: rank 0 could not prepare") and "no tokens today" in r1["second"]
    # Left: the prepared folder and the note of the failure (no temporary folder of the failed attempt).
    leftovers = sorted(p.name for p in P.data_root(cfg).iterdir())
    assert len(leftovers) == 2 and leftovers[0].startswith(".failed-") and leftovers[1] == Path(r0["folder"]).name


def test_prepare_flag_of_both_command_lines(tmp_path, data, llm_model_dir, capsys, monkeypatch):
    from webinstruct.infra.cli import main as cli
    from webinstruct.training.trainer import main as trainer_main

    recipe = tmp_path / "prep.yaml"
    recipe.write_text("train:\n  max_len: 320\n  lr: 1.0e-5\n  packing: true\n"
                      f"  data:\n    - {{path: {data['a']}, name: a}}\n")
    run = tmp_path / "run"
    assert cli(["train", "--recipe", str(recipe), "--model-path", llm_model_dir, "--run", str(run), "--prepare"]) == 0
    out = capsys.readouterr().out
    folders = list((run / "train" / "smollm2-135m" / "data").iterdir())
    assert len(folders) == 1 and f"training data: {folders[0]}" in out
    assert "preparing the training data" in out and "kept: " in out and "packed_rows: " in out
    calls = _count_encodes(monkeypatch)
    assert trainer_main(["--config", str(recipe), "--model-path", llm_model_dir, "--run", str(run), "--prepare"]) == 0
    out = capsys.readouterr().out
    assert f"training data: {folders[0]}" in out and "preparing" not in out and calls[0] == 0
    assert list((run / "train" / "smollm2-135m" / "data").iterdir()) == folders
