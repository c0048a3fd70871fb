"""One clear line for every user error and infrastructure fault (issue 13).

Each case runs the real command in a subprocess and checks: exit status 2, exactly one stderr line
besides the ordinary INFO log lines (and Beam's "apitools not found" import warning), no traceback,
and the words that make the line useful (the path, the URL, file:line). No real LLM server: a
closed local port, or `tests/fault_server.py`, or the small handler below for /v1/models faults.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fault_server import FaultServer, dead_url, status
from conftest import ROOT

CLI = [sys.executable, "-m", "webinstruct.infra.cli"]
INFO = re.compile(r"^\d\d:\d\d:\d\d INFO ")
FAST_LLM = ["--llm-transport-retries", "0", "--llm-timeout-s", "10"]


def run_cli(*argv: str, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(argv), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def problem_lines(stderr: str) -> list[str]:
    """stderr without the INFO log lines and Beam's import warning."""
    return [ln for ln in stderr.splitlines()
            if ln.strip() and not INFO.match(ln) and "apitools not found" not in ln]


def one_error_line(proc: subprocess.CompletedProcess, command: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr and "Task was destroyed" not in proc.stderr, proc.stderr[-3000:]
    lines = problem_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"webinstruct {command}: error: "), lines[0]
    return lines[0]


def seeds_file(path: Path, n: int = 10, bad: dict[int, str] | None = None) -> Path:
    """GSM8K-style JSON lines; `bad` puts a non-JSON text at those 1-based line numbers."""
    good = [json.dumps({"id": f"g{i}", "question": f"Tom has {i} apples and buys 4. How many apples now?",
                        "answer": f"{i}+4={i + 4}\n#### {i + 4}"}) for i in range(n)]
    for lineno, text in sorted((bad or {}).items()):
        good.insert(lineno - 1, text)
    path.write_text("\n".join(good) + "\n")
    return path


SMALL_AUGMENT = ["--ansaug-samples", "1", "--rephrasings", "0", "--max-masks", "1"]


# ---- the LLM server -----------------------------------------------------------------------------

def test_llm_unavailable_is_one_line(tmp_path):
    url = dead_url()
    proc = run_cli("augment", "--run", str(tmp_path / "run"), "--input", str(seeds_file(tmp_path / "s.jsonl")),
                   "--llm-url", url, *FAST_LLM)
    line = one_error_line(proc, "augment")
    assert "no LLM server reachable" in line and url in line


def test_llm_server_failure_mid_run_is_one_line_with_rerun(tmp_path):
    with FaultServer(reply=lambda body: status(500)) as server:
        proc = run_cli("augment", "--run", str(tmp_path / "run"), "--input", str(seeds_file(tmp_path / "s.jsonl")),
                       "--llm-url", server.url, *SMALL_AUGMENT, *FAST_LLM)
    line = one_error_line(proc, "augment")
    assert "stopped answering" in line and "rerun" in line and "[while running" not in line


def test_llm_fault_with_debug_shows_the_traceback(tmp_path):
    proc = run_cli("augment", "--debug", "--run", str(tmp_path / "run"), "--input",
                   str(seeds_file(tmp_path / "s.jsonl")), "--llm-url", dead_url(), *FAST_LLM)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "LLMUnavailable" in proc.stderr


class _ModelsFault(BaseHTTPRequestHandler):
    """Answers GET /v1/models with the status in the server's `code` (a model list that 404s/500s)."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        body = json.dumps({"error": {"message": f"injected {self.server.code}"}}).encode()
        self.send_response(self.server.code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.parametrize("code", [404, 500])
def test_model_list_http_error_names_url_and_status(tmp_path, code):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _ModelsFault)
    httpd.code = code
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    try:
        proc = run_cli("augment", "--run", str(tmp_path / "run"), "--input", str(seeds_file(tmp_path / "s.jsonl")),
                       "--llm-url", url, *FAST_LLM)
    finally:
        httpd.shutdown()
        httpd.server_close()
    line = one_error_line(proc, "augment")
    assert f"{url}/models answered HTTP {code}" in line, line


# ---- input files --------------------------------------------------------------------------------

def test_truncated_shard_names_its_path(tmp_path):
    data = b"".join(json.dumps({"id": f"g{i}", "question": f"Tom has {i} apples and buys 4. How many now?",
                                "answer": f"#### {i + 4}", "pad": os.urandom(300).hex()}).encode() + b"\n"
                    for i in range(8))
    packed = gzip.compress(data)
    shard = tmp_path / "in" / "part-00000-of-00001.jsonl.gz"
    shard.parent.mkdir()
    shard.write_bytes(packed[: len(packed) // 2])
    with FaultServer() as server:
        proc = run_cli("augment", "--run", str(tmp_path / "run"), "--input", str(shard), "--llm-url", server.url,
                       *SMALL_AUGMENT, "--limit", "1000", *FAST_LLM)
    line = one_error_line(proc, "augment")
    assert re.search(re.escape(str(shard)) + r":\d+: truncated shard", line), line
    assert "EOFError" not in line


def test_iter_shard_names_path_and_line(tmp_path):
    from webinstruct.core import shards

    not_gzip = tmp_path / "part-00000-of-00001.jsonl.gz"
    not_gzip.write_bytes(b"hello\n")
    with pytest.raises(ValueError, match=re.escape(str(not_gzip)) + r":1: unreadable shard \(BadGzipFile"):
        list(shards.iter_shard(str(not_gzip)))
    bad_line = tmp_path / "part-00000-of-00002.jsonl.gz"
    bad_line.write_bytes(gzip.compress(b'{"a": 1}\n{oops\n'))
    with pytest.raises(ValueError, match=re.escape(str(bad_line)) + r":2: not a JSON line"):
        list(shards.iter_shard(str(bad_line)))


def test_augment_skips_and_counts_a_bad_json_line(tmp_path):
    src = seeds_file(tmp_path / "s.jsonl", n=10, bad={6: "{not json"})
    with FaultServer() as server:
        proc = run_cli("augment", "--run", str(tmp_path / "run"), "--input", str(src), "--llm-url", server.url,
                       *SMALL_AUGMENT, *FAST_LLM)
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [ln for ln in problem_lines(proc.stderr) if "not JSON" in ln]
    assert len(warnings) == 1 and f"{src}:6: skipped 1 of 11 lines that are not JSON" in warnings[0], proc.stderr
    assert "Traceback" not in proc.stderr
    stats = json.loads((tmp_path / "run" / "augment" / "stats.json").read_text())
    assert stats["skipped_bad_json"] == 1 and stats["seeds_in"] == 10


def test_augment_input_that_is_not_json_lines_is_one_line(tmp_path):
    src = tmp_path / "notes.jsonl"
    src.write_text("these are notes\n{\"question\": \"ok\", \"answer\": \"#### 1\"}\nnot json either\n")
    with FaultServer() as server:
        proc = run_cli("augment", "--run", str(tmp_path / "run"), "--input", str(src), "--llm-url", server.url,
                       *SMALL_AUGMENT, *FAST_LLM)
    line = one_error_line(proc, "augment")
    assert f"{src}:1: 2 of 3 lines are not JSON" in line, line


def test_json_lines_threshold_unit():
    from webinstruct.pipeline.augment.inputs import BadInputFile, iter_json_lines

    counted = []
    lines = ['{"a": %d}\n' % i for i in range(10)] + ["garbage\n"]
    assert len(list(iter_json_lines("f.jsonl", lines, lambda n, k=1: counted.append(n)))) == 10
    assert counted == ["skipped_bad_json"]
    with pytest.raises(BadInputFile, match=r"^f\.jsonl:3: 2 of 5 lines"):
        list(iter_json_lines("f.jsonl", ['{"a": 1}\n', "\n", "x\n", '{"a": 2}\n', "y\n", '{"a": 3}\n']))
    with pytest.raises(BadInputFile, match=r"^f\.jsonl:1: 1 of 1 lines"):
        list(iter_json_lines("f.jsonl", ["x\n"]))


# ---- recall inputs ------------------------------------------------------------------------------

def test_text_file_named_warc_is_not_a_warc(tmp_path, small_classifier):
    fake = tmp_path / "notes.warc.gz"
    fake.write_text("".join(f"line {i} of a text file\n" for i in range(100)))
    proc = run_cli("recall", "--warc", str(fake), "--run", str(tmp_path / "run"), "--classifier", small_classifier)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = problem_lines(proc.stderr)
    assert len(lines) == 1 and f"{fake}: not a WARC file" in lines[0], lines
    stats = json.loads((tmp_path / "run" / "recall" / "stats.json").read_text())
    assert stats["not_a_warc"] == 1 and "records_read" not in stats


def test_warc_directory_is_one_line(tmp_path):
    proc = run_cli("recall", "--warc", str(tmp_path), "--run", str(tmp_path / "run"))
    line = one_error_line(proc, "recall")
    assert f"{tmp_path} is a directory" in line and f"--warc '{tmp_path}/*.warc.gz'" in line


# ---- numbers on the command line (typed config) ----------------------------------------------------

@pytest.mark.parametrize("argv, command, words", [
    (["train", "--dry-run", "--gpus", "0"], "train", "--gpus: expected an integer >= 1, got 0"),
    (["train", "--dry-run", "--gpus", "-2"], "train", "--gpus: expected an integer >= 1, got -2"),
    (["train", "--dry-run", "--nodes", "0"], "train", "--nodes: expected an integer >= 1, got 0"),
    (["eval", "--limit", "-1"], "eval", "--limit (eval.limit): expected an integer >= 1 or all, got -1"),
    (["augment", "--limit", "-1"], "augment", "--limit (augment.limit): expected an integer >= 0, got -1"),
    (["recall", "--workers", "0"], "recall", "--workers (recall.workers): expected an integer >= 1, got 0"),
    (["eval", "rescore", "--workers", "0"], "eval rescore", "--workers: expected an integer >= 1, got 0"),
])
def test_bad_numbers_are_one_line(argv, command, words):
    line = one_error_line(run_cli(*argv), command)
    assert words in line, line


def test_an_error_a_worker_process_raised_is_reported_as_itself():
    """Beam's multiprocess runner hands a worker's exception back as the text of a RuntimeError:
    the CLI rebuilds webinstruct's and builtin errors from its last line; anything else stays a bug."""
    from webinstruct.core.http_range import RemoteReadError
    from webinstruct.infra.cli import _user_error

    text = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n"
            "webinstruct.core.http_range.RemoteReadError: http://h/a.warc.gz: gave up after 2 retries at byte 0 "
            "[while running 'RecallFile']\n")
    found = _user_error(RuntimeError(text))
    assert isinstance(found, RemoteReadError) and str(found).startswith("http://h/a.warc.gz: gave up")
    assert isinstance(_user_error(RuntimeError("Traceback ...\nValueError: bad value")), ValueError)
    assert _user_error(RuntimeError("Traceback ...\nsomepkg.Oops: no")) is None
    assert _user_error(RuntimeError("Traceback ...\nKeyError: 'x'")) is None  # a bug: the traceback stays
