"""The LLM client's fault taxonomy (issue 13): who is at fault decides what happens.

SERVER faults (transport, HTTP errors, a 200 that is not a chat completion, a passed deadline) are
retried with backoff, never cached, and stop a stage with one line; the MODEL's failures (a
well-formed reply cut, not JSON, not the schema) may be cached, and a stage with too many of them
exits non-zero. Faults are injected with tests/fault_server.py.
"""
from __future__ import annotations

import collections
import json
import logging
import time

import pytest

from fault_server import FaultServer, hang, html, no_choices, null_content, ok, wrong_object
from webinstruct.core import shards
from webinstruct.pipeline import stage
from webinstruct.pipeline.llm import endpoint
from webinstruct.pipeline.llm.cache import RequestCache, request_key
from webinstruct.pipeline.llm.client import (LLMClient, LLMModelFailures, LLMServerFailure, is_model_failure,
                                             is_server_fault, parse_json, render, stop_on_server_faults)
from webinstruct.pipeline.llm.config import LLMConfig

SCHEMA = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"],
          "additionalProperties": False}
FAULTS = {"html": html, "no_choices": no_choices, "null_content": null_content, "wrong_object": wrong_object}


def reqs(n: int, prefix: str = "q") -> list[dict]:
    return [{"id": f"{prefix}{i}", "messages": [{"role": "user", "content": f"{prefix} {i}"}], "schema": SCHEMA}
            for i in range(n)]


def make(url: str, cache: RequestCache | None = None, **kw) -> tuple[LLMClient, collections.Counter]:
    defaults = dict(transport_retries=2, semantic_retries=1, timeout_s=5.0, backoff_s=0.01, model="fault-model")
    tally: collections.Counter = collections.Counter()
    return LLMClient(LLMConfig(url=[url], **{**defaults, **kw}), cache, lambda name, n=1: tally.update({name: n})), tally


@pytest.fixture
def server():
    with FaultServer() as s:
        yield s


# ---------------------------------------------------------------- the model's JSON, parsed whole first

FENCED_STRING = {"echo": "run it:\n```python\nprint({'a': 1})\n```\nthen ```[1, 2]```"}


def test_fenced_code_inside_a_string_is_part_of_the_reply():
    assert parse_json(json.dumps(FENCED_STRING)) == (FENCED_STRING, None)
    assert parse_json("Sure:\n" + json.dumps(FENCED_STRING) + "\nDone.") == (FENCED_STRING, None)
    # ...and a reply fenced as a whole, or after prose that holds brackets, is still found.
    assert parse_json('```json\n{"a": "```"}\n```') == ({"a": "```"}, None)
    assert parse_json('[1] is a list; the answer:\n```json\n{"a": 1}\n```') == ({"a": 1}, None)


@pytest.mark.timeout(10)
def test_fenced_code_inside_a_string_needs_no_retry(server, tmp_path):
    server.reply = lambda body: ok(FENCED_STRING)
    cache = RequestCache(tmp_path / "c.sqlite")
    client, tally = make(server.url, cache)
    with client:
        [r] = client.complete(reqs(1))
    assert r.ok and r.data == FENCED_STRING and r.attempts == 1 and server.count == 1
    assert tally["model_failures"] == 0 and "failed" not in cache.get_many([request_key(
        render(reqs(1)[0], client.cfg, "fault-model"))]).popitem()[1]


@pytest.mark.timeout(10)
def test_a_fence_failure_recorded_by_the_old_parser_is_recovered(server, tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")
    client, tally = make(server.url, cache)
    key = request_key(render(reqs(1)[0], client.cfg, "fault-model"))
    cache.put(key, {"failed": "invalid_json: Expecting value", "text": json.dumps(FENCED_STRING), "finish_reason": "stop"})
    with client:
        [r] = client.complete(reqs(1))
    assert r.ok and r.cached and r.data == FENCED_STRING and server.count == 0
    assert tally["cache_failures_recovered"] == 1 and tally["model_failures"] == 0
    assert "failed" not in cache.get_many([key])[key]


# ---------------------------------------------------------------- malformed 200 replies are the server's fault

def _clean_run(tmp_path, n: int = 3) -> list:
    with FaultServer() as clean:
        client, _ = make(clean.url, RequestCache(tmp_path / "clean.sqlite"))
        with client:
            return client.complete(reqs(n))


@pytest.mark.timeout(15)
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_malformed_reply_is_retried_counted_as_server_fault_and_never_cached(server, tmp_path, fault):
    server.push(FAULTS[fault](), FAULTS[fault]())  # the first two requests sent get the fault, then echoes
    cache = RequestCache(tmp_path / "c.sqlite")
    client, tally = make(server.url, cache, max_concurrency=1)
    with client:
        results = client.complete(reqs(3))
    assert all(r.ok for r in results)
    assert tally["server_faults"] == 2 and tally["retries_bad_response"] == 2
    assert tally["model_failures"] == 0 and not any(k.startswith("failures_") for k in tally)
    assert not any(k.startswith("retries_invalid") for k in tally)  # not a semantic retry
    # The same results as a clean run, and only good replies in the cache.
    clean = _clean_run(tmp_path)
    assert [(r.id, r.data, r.text) for r in results] == [(r.id, r.data, r.text) for r in clean]
    keys = [request_key(render(r, client.cfg, "fault-model")) for r in reqs(3)]
    stored = cache.get_many(keys)
    assert len(stored) == 3 and not any("failed" in v for v in stored.values())


@pytest.mark.timeout(15)
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_persistent_malformed_replies_stop_the_stage_in_one_line(server, tmp_path, fault):
    server.reply = lambda body: FAULTS[fault]()
    cache = RequestCache(tmp_path / "c.sqlite")
    client, tally = make(server.url, cache, transport_retries=2)
    with client:
        results = client.complete(reqs(2))
    assert all(not r.ok and r.error.startswith("bad_response:") for r in results)
    assert all(is_server_fault(r) and not is_model_failure(r) for r in results)
    assert server.count == 2 * 3 and tally["failures_bad_response"] == 2 and tally["model_failures"] == 0
    assert len(cache) == 0  # a rerun asks again
    with pytest.raises(LLMServerFailure) as info:
        stop_on_server_faults(results, "of document http://x/")
    msg = str(info.value)
    assert "\n" not in msg and "2 of 2 requests" in msg and "bad_response" in msg and "rerun the stage to resume" in msg


@pytest.mark.timeout(10)
def test_a_server_fault_cached_by_an_older_client_is_asked_again(server, tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")
    client, tally = make(server.url, cache)
    key = request_key(render(reqs(1)[0], client.cfg, "fault-model"))
    cache.put(key, {"failed": "invalid_json: no JSON object or array in reply ''", "text": "", "finish_reason": "stop"})
    with client:
        [r] = client.complete(reqs(1))
    assert not r.ok and r.cached and server.count == 0  # a real model failure stays recorded...
    cache.put(key, {"failed": "bad_response: IndexError: list index out of range", "text": ""})
    client, tally = make(server.url, cache)
    with client:
        [r] = client.complete(reqs(1))
    assert r.ok and not r.cached and server.count == 1  # ...a server fault never was one


def test_http_errors_are_server_faults_but_one_request_refused_is_not():
    from webinstruct.pipeline.llm.client import LLMResult

    def fault(error):
        return is_server_fault(LLMResult(id="x", ok=False, error=error))

    assert fault("http_404: HTTP 404") and fault("http_401: x") and fault("transport: x") and fault("deadline: x")
    assert not fault("http_400: over the context length") and not fault("invalid_json: x") and not fault("length: x")


# ---------------------------------------------------------------- stalled servers: deadline and heartbeat

@pytest.mark.timeout(15)
def test_a_stalled_request_is_bounded_by_its_deadline(server):
    server.reply = lambda body: hang(20) if body["messages"][0]["content"] == "q 1" else ok({"echo": "fine"})
    # Without the deadline: 4 attempts of 2 s each (8 s); with it, about 1 s.
    client, tally = make(server.url, timeout_s=2.0, transport_retries=3, deadline_s=1.0)
    t0 = time.monotonic()
    with client:
        results = client.complete(reqs(3))
    assert time.monotonic() - t0 < 3
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error.startswith("deadline:") and is_server_fault(results[1])
    assert tally["failures_deadline"] == 1
    with pytest.raises(LLMServerFailure, match="deadline"):
        stop_on_server_faults(results)


@pytest.mark.timeout(15)
def test_heartbeat_reports_pending_requests(server, caplog):
    server.reply = lambda body: hang(1.2) if body["messages"][0]["content"] == "q 0" else ok({"echo": "x"})
    client, _ = make(server.url, heartbeat_s=0.2)
    with caplog.at_level(logging.INFO, logger="webinstruct.pipeline.llm.client"), client:
        client.complete(reqs(3))
    beats = [r.getMessage() for r in caplog.records if "heartbeat" in r.getMessage()]
    assert len(beats) >= 2
    assert "1 requests pending" in beats[-1] and "2 done" in beats[-1] and "oldest pending" in beats[-1]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="webinstruct.pipeline.llm.client"):
        time.sleep(0.5)  # nothing pending: no more lines
    assert not [r for r in caplog.records if "heartbeat" in r.getMessage()]


def test_sample_recipe_bounds_a_stalled_server_to_minutes():
    import pathlib

    import yaml

    recipe = yaml.safe_load((pathlib.Path(__file__).resolve().parents[1] / "infra/recipes/sample.yaml").read_text())
    cfg = LLMConfig(**recipe["llm"])
    assert cfg.deadline_s <= 10 * 60 and cfg.timeout_s <= cfg.deadline_s


# ---------------------------------------------------------------- the model's failures over a share

def _stats_dir(tmp_path, **counts) -> str:
    out = str(tmp_path / "stage")
    shards.makedirs(out)
    shards.write_json(shards.join(out, "stats.json"), counts)
    return out


def test_model_failures_over_the_share_end_the_stage(tmp_path):
    out = _stats_dir(tmp_path, requests=10, model_failures=6, failures_invalid_json=4, cache_hits_failed=2)
    with pytest.raises(LLMModelFailures) as info:
        stage.close_stats(out, time.monotonic(), max_failure_share=0.5)
    msg = str(info.value)
    assert isinstance(info.value, ValueError) and "\n" not in msg
    assert "6 of 10" in msg and "60%" in msg and "invalid_json 4" in msg and "--llm-max-failure-share" in msg
    assert shards.read_json(shards.join(out, "stats.json"))["wall_seconds"] >= 0  # stats written first
    stage.close_stats(out, time.monotonic(), max_failure_share=1.0)  # accepted
    stage.close_stats(_stats_dir(tmp_path, requests=10, model_failures=5), time.monotonic(), max_failure_share=0.5)
    stage.close_stats(_stats_dir(tmp_path, docs_in=3), time.monotonic())  # no LLM: nothing to check


def test_every_reply_invalid_json_is_counted_and_ends_the_stage(server, tmp_path):
    server.reply = lambda body: ok("this is not json {")
    cache = RequestCache(tmp_path / "c.sqlite")
    client, tally = make(server.url, cache, semantic_retries=1)
    with client:
        results = client.complete(reqs(4))
    assert all(is_model_failure(r) and not is_server_fault(r) for r in results)
    assert tally["model_failures"] == tally["requests"] == 4 and tally["failures_invalid_json"] == 4
    stop_on_server_faults(results)  # the model's failures do not stop the stage mid-run...
    out = _stats_dir(tmp_path, **tally)
    with pytest.raises(LLMModelFailures, match="4 of 4 LLM requests"):  # ...they fail it at the end
        stage.close_stats(out, time.monotonic(), max_failure_share=0.5)
    # A rerun served from the cache counts them again.
    client, tally = make(server.url, cache, semantic_retries=1)
    with client:
        client.complete(reqs(4))
    assert tally["cache_hits_failed"] == 4 and tally["model_failures"] == 4 and server.count == 8
