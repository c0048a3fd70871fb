"""The shared LLM client against a fault-injecting server: retries, failures, cache, load balancing.

The happy path against a real model is covered by the vLLM tests; here every fault is scripted.
"""
from __future__ import annotations

import collections
import multiprocessing
import threading
import time

import pytest

from fault_server import FaultServer, close, dead_url, hang, last_user, ok, status
from webinstruct.pipeline.llm.cache import RequestCache, request_key
from webinstruct.pipeline.llm.client import LLMClient, LLMUnavailable, parse_json, render, validate
from webinstruct.pipeline.llm.config import LLMConfig, normalize_url

SCHEMA = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"],
          "additionalProperties": False}


class Tally(collections.Counter):
    """A `count` callback that also records which threads called it."""

    def __init__(self):
        super().__init__()
        self.threads: set[int] = set()

    def __call__(self, name: str, n: int = 1) -> None:
        self.threads.add(threading.get_ident())
        self[name] += n


def reqs(n: int, schema=SCHEMA, prefix="q") -> list[dict]:
    return [{"id": f"{prefix}{i}", "messages": [{"role": "user", "content": f"{prefix} {i}"}], "schema": schema}
            for i in range(n)]


def make(urls, cache=None, **kw):
    defaults = dict(transport_retries=3, semantic_retries=2, timeout_s=5.0, model="fault-model")
    cfg = LLMConfig(url=list(urls), **{**defaults, **kw})
    tally = Tally()
    return LLMClient(cfg, cache, tally), tally


@pytest.fixture
def server():
    with FaultServer() as s:
        yield s


# ---------------------------------------------------------------- transport

@pytest.mark.timeout(10)
def test_transport_retries_then_success(server):
    server.push(status(500), status(429), status(503))
    with make([server.url])[0] as client:
        [r] = client.complete(reqs(1))
    assert r.ok and r.data == {"echo": "q 0"} and r.attempts == 1
    assert server.count == 4  # three refusals retried by the openai client, then the answer


@pytest.mark.timeout(10)
def test_dropped_connection_is_retried(server):
    server.push(close())
    client, tally = make([server.url], transport_retries=1)
    with client:
        [r] = client.complete(reqs(1))
    assert r.ok and server.count == 2 and tally["requests_sent"] == 1


@pytest.mark.timeout(10)
def test_hang_past_timeout_fails_as_transport_and_others_succeed(server):
    server.reply = lambda body: hang(5) if "q 1" in body["messages"][0]["content"] else \
        ok({"echo": body["messages"][0]["content"]})
    client, tally = make([server.url], timeout_s=0.3, transport_retries=0)
    t0 = time.monotonic()
    with client:
        results = client.complete(reqs(3))
    assert time.monotonic() - t0 < 3
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error.startswith("transport:") and results[1].id == "q1"
    assert tally["failures_transport"] == 1 and tally.get("retries_transport", 0) == 0


@pytest.mark.timeout(10)
def test_every_url_dead_raises_unavailable():
    urls = [dead_url(), dead_url()]
    client, _ = make(urls, transport_retries=0)
    with pytest.raises(LLMUnavailable) as info, client:
        client.complete(reqs(2))
    msg = str(info.value)
    assert all(u in msg for u in urls) and "make serve-llm" in msg and "LLM_URL" in msg


@pytest.mark.timeout(10)
def test_one_dead_url_is_left_out(server):
    client, tally = make([dead_url(), server.url], transport_retries=0)
    with client:
        results = client.complete(reqs(4))
    assert all(r.ok for r in results) and server.count == 4 and tally["urls_unreachable"] == 1


@pytest.mark.timeout(10)
def test_model_resolved_from_server():
    with FaultServer(model="served/smol") as s:
        client, _ = make([s.url], model="")
        with client:
            client.complete(reqs(1))
            assert client.model == "served/smol" and s.requests[0]["model"] == "served/smol"
            assert client.resolve_model(s.url) == "served/smol"
    with pytest.raises(LLMUnavailable, match="make serve-llm"):
        make([dead_url()], transport_retries=0)[0].resolve_model(dead_url())


# ---------------------------------------------------------------- semantic retries

@pytest.mark.timeout(10)
def test_invalid_json_then_valid(server):
    server.push(ok("Sure, here it is: {echo: q 0"))
    client, tally = make([server.url])
    with client:
        [r] = client.complete(reqs(1))
    assert r.ok and r.data == {"echo": "q 0"} and r.attempts == 2
    assert tally["retries_invalid_json"] == 1 and tally["requests_sent"] == 2
    first, second = server.requests
    assert second["seed"] != first["seed"]                      # a different sample
    assert second["temperature"] >= 0.5 > first["temperature"]  # greedy would repeat the garbage
    assert first["response_format"]["type"] == "json_schema"
    assert first["response_format"]["json_schema"]["schema"] == SCHEMA
    assert tally.threads == {threading.get_ident()}  # counted in the caller's thread (Beam metrics)


@pytest.mark.timeout(10)
def test_schema_mismatch_then_valid(server):
    server.push(ok({"echo": 5}), ok({"answer": "x"}))
    client, tally = make([server.url])
    with client:
        [r] = client.complete(reqs(1))
    assert r.ok and r.attempts == 3 and tally["retries_schema"] == 2


@pytest.mark.timeout(10)
def test_lenient_parsing_needs_no_retry(server):
    server.push(ok('```json\n{"echo": "a"}\n```'), ok('Answer: {"echo": "b"} -- hope that helps {'))
    client, tally = make([server.url])
    with client:
        results = client.complete(reqs(2))
    assert sorted(r.data["echo"] for r in results) == ["a", "b"]
    assert tally["requests_sent"] == 2 and not any(k.startswith("retries_") for k in tally)


@pytest.mark.timeout(10)
def test_truncated_reply_retried_with_more_tokens(server):
    server.push(ok('{"echo": "q', finish_reason="length"))
    client, tally = make([server.url], max_tokens=100)
    with client:
        [r] = client.complete(reqs(1))
    assert r.ok and tally["retries_length"] == 1
    assert [b["max_tokens"] for b in server.requests] == [100, 200]


@pytest.mark.timeout(10)
def test_exhausted_retries_give_a_failed_result_not_an_exception(server):
    def reply(body):
        text = body["messages"][0]["content"]
        return ok("no json here") if text == "q 2" else ok({"echo": text})
    server.reply = reply
    client, tally = make([server.url], semantic_retries=2)
    with client:
        results = client.complete(reqs(5))
    assert [r.ok for r in results] == [True, True, False, True, True]
    bad = results[2]
    assert bad.id == "q2" and bad.error.startswith("invalid_json:") and bad.attempts == 3 and bad.data is None
    assert tally["retries_invalid_json"] == 2 and tally["failures_invalid_json"] == 1
    assert tally["requests_sent"] == server.count == 4 + 3


@pytest.mark.timeout(10)
def test_length_failure_stops_at_the_cap(server):
    server.reply = lambda body: ok('{"echo": "', finish_reason="length")
    client, tally = make([server.url], max_tokens=100, max_tokens_cap=200, semantic_retries=3)
    with client:
        [r] = client.complete(reqs(1))
    assert not r.ok and r.error.startswith("length:") and tally["failures_length"] == 1
    assert [b["max_tokens"] for b in server.requests] == [100, 200]  # greedy at the cap: no point


@pytest.mark.timeout(10)
def test_client_error_is_named(server):
    server.push(status(400))
    client, tally = make([server.url])
    with client:
        [r] = client.complete(reqs(1))
    assert not r.ok and r.error.startswith("http_400:") and tally["failures_http_400"] == 1 and server.count == 1


@pytest.mark.timeout(10)
def test_refused_larger_budget_is_still_a_length_failure(server):
    server.push(ok('{"echo": "q', finish_reason="length"), status(400))  # e.g. over the context length
    client, tally = make([server.url])
    with client:
        [r] = client.complete(reqs(1))
    assert not r.ok and r.error.startswith("length:") and tally["failures_length"] == 1


@pytest.mark.timeout(10)
def test_plain_text_request(server):
    server.reply = lambda body: ok("just prose")
    client, tally = make([server.url])
    with client:
        [r] = client.complete(reqs(1, schema=None))
    assert r.ok and r.text == "just prose" and r.data is None
    assert "response_format" not in server.requests[0]
    assert tally["prompt_tokens"] == 2 and tally["completion_tokens"] == 2


# ---------------------------------------------------------------- cache

@pytest.mark.timeout(10)
def test_second_call_is_served_from_cache(server, tmp_path):
    cache = RequestCache(tmp_path / "llm_cache.sqlite")
    client, first = make([server.url], cache)
    with client:
        a = client.complete(reqs(5))
    assert first["requests_sent"] == 5 and len(cache) == 5
    client, second = make([server.url], cache)
    with client:
        b = client.complete(reqs(5))
    assert second["requests_sent"] == 0 and second["cache_hits"] == 5 and server.count == 5
    assert [r.data for r in b] == [r.data for r in a] and all(r.cached and r.attempts == 0 for r in b)
    assert [r.id for r in b] == [f"q{i}" for i in range(5)]


@pytest.mark.timeout(10)
def test_cached_batch_needs_no_server(tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")
    with FaultServer() as s:
        with make([s.url], cache)[0] as client:
            client.complete(reqs(3))
    client, tally = make([dead_url()], cache)
    assert [r.data["echo"] for r in client.complete(reqs(3))] == ["q 0", "q 1", "q 2"]
    assert tally["cache_hits"] == 3


@pytest.mark.timeout(10)
def test_failures_are_never_cached_as_replies(server, tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")
    server.reply = lambda body: ok('{"echo": "cut', finish_reason="length")
    client, _ = make([server.url], cache, semantic_retries=0)
    with client:
        first = client.complete(reqs(2))
    assert not any(r.ok for r in first)
    # The final verdict is recorded, so a rerun does not pay for the same cut reply again...
    client, tally = make([server.url], cache, semantic_retries=0)
    with client:
        again = client.complete(reqs(2))
    assert tally.get("requests_sent", 0) == 0 and tally["cache_hits_failed"] == 2
    assert [r.error for r in again] == [r.error for r in first] and not any(r.ok for r in again)
    # ...unless asked to try again; transport failures are never recorded at all.
    client, tally = make([server.url], cache, semantic_retries=0, retry_failed=True)
    with client:
        client.complete(reqs(2))
    assert tally["requests_sent"] == 2
    server.reply = lambda body: status(500)
    other = RequestCache(tmp_path / "d.sqlite")
    client, _ = make([server.url], other, semantic_retries=0, transport_retries=0)
    with client:
        assert not client.complete(reqs(1))[0].ok
    assert len(other) == 0


@pytest.mark.timeout(10)
def test_duplicates_in_a_batch_are_sent_once(server):
    batch = reqs(1) + [dict(reqs(1)[0], id="again")]
    client, tally = make([server.url])
    with client:
        results = client.complete(batch)
    assert server.count == 1 and [r.id for r in results] == ["q0", "again"] and results[1].ok


def _cache_writer(path: str, worker: int, n: int, barrier) -> None:
    cache = RequestCache(path)
    barrier.wait(5)  # both processes write at the same moment
    for i in range(n):
        shared = i % 3 == 0  # both workers write these keys: concurrent replaces of one row
        key = f"shared-{i}" if shared else f"w{worker}-{i}"
        cache.put(key, {"worker": worker, "i": i, "pad": "x" * 200})


@pytest.mark.timeout(10)
def test_cache_survives_concurrent_writers(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    ctx = multiprocessing.get_context("spawn")
    n = 1000
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_cache_writer, args=(path, w, n, barrier)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(9)
    assert [p.exitcode for p in procs] == [0, 0]
    cache = RequestCache(path)
    shared = len(range(0, n, 3))
    assert len(cache) == shared + 2 * (n - shared)
    assert cache.get("w1-1") == {"worker": 1, "i": 1, "pad": "x" * 200}
    assert cache.get("shared-3")["worker"] in (0, 1)
    assert cache.get("missing") is None


def test_request_key_is_stable_and_sensitive():
    cfg = LLMConfig(url=["x"], model="m")
    base = render(reqs(1)[0], cfg, "m")
    assert request_key(base) == request_key(dict(reversed(list(base.items()))))
    assert request_key(base) == request_key(render(reqs(1)[0], cfg, "m"))
    variants = [
        dict(base, model="m2"),
        dict(base, messages=[{"role": "user", "content": "q 1"}]),
        dict(base, messages=[{"role": "system", "content": "q 0"}]),
        dict(base, messages=[{"role": "system", "content": "be brief"}] + base["messages"]),
        dict(base, temperature=0.1),
        dict(base, max_tokens=base["max_tokens"] + 1),
        dict(base, seed=1),
        {k: v for k, v in base.items() if k != "response_format"},
        dict(base, response_format={**base["response_format"], "json_schema": {
            **base["response_format"]["json_schema"], "schema": {**SCHEMA, "required": []}}}),
        dict(base, response_format={**base["response_format"], "json_schema": {
            **base["response_format"]["json_schema"], "name": "other"}}),
        dict(base, top_p=0.9),
    ]
    keys = {request_key(v) for v in variants} | {request_key(base)}
    assert len(keys) == len(variants) + 1
    # The id names the result, it does not change the request.
    assert request_key(render(dict(reqs(1)[0], id="zzz"), cfg, "m")) == request_key(base)


# ---------------------------------------------------------------- parsing, validation, config

def test_parse_json_leniency():
    assert parse_json('{"a": 1}') == ({"a": 1}, None)
    assert parse_json('```json\n[1, 2]\n```')[0] == [1, 2]
    assert parse_json('Here: {"a": "}"} and {"b": 2}')[0] == {"a": "}"}
    assert parse_json('{broken {"a": 1}')[0] == {"a": 1}
    assert parse_json("no json")[0] is None and parse_json("")[1] == "empty reply"
    # The whole reply first: a fence inside one of its strings is not the reply (issue 13).
    assert parse_json('{"code": "```json\\n[1, 2]\\n```"}')[0] == {"code": "```json\n[1, 2]\n```"}
    assert parse_json('{"code": "```json\n[1, 2]\n```"}')[0] == {"code": "```json\n[1, 2]\n```"}  # raw newlines
    assert parse_json('Here: {"code": "```[3]```"} ok')[0] == {"code": "```[3]```"}


def test_validate_subset():
    schema = {"type": "object", "required": ["qa"], "properties": {"qa": {"type": "array", "items": {
        "type": "object", "required": ["q", "n"], "properties": {
            "q": {"type": "string"}, "n": {"type": "integer"}, "kind": {"enum": ["mc", "open"]},
            "ok": {"type": "boolean"}, "x": {"type": ["number", "null"]}}}}}}
    good = {"qa": [{"q": "a", "n": 2, "kind": "mc", "ok": True, "x": None}, {"q": "b", "n": 3.0, "x": 1.5}]}
    assert validate(good, schema) is None
    assert validate({"qa": [{"q": "a", "n": True}]}, schema) == "$.qa[0].n: expected integer, got bool"
    assert "missing required 'n'" in validate({"qa": [{"q": "a"}]}, schema)
    assert "not in" in validate({"qa": [{"q": "a", "n": 1, "kind": "essay"}]}, schema)
    assert "expected array" in validate({"qa": {}}, schema)
    assert "unexpected properties" in validate({"echo": "a", "x": 1}, SCHEMA)


def test_config_from_env(monkeypatch):
    monkeypatch.setenv("LLM_URL", "http://a:8000/v1, b:9000  http://c/proxy/v1")
    monkeypatch.setenv("LLM_MODEL", "big")
    monkeypatch.delenv("LLM_API_KEY", raising=False)
    cfg = LLMConfig.from_env(LLMConfig(url=["http://local:8000/v1"], api_key="k"))
    assert cfg.url == ["http://a:8000/v1", "b:9000", "http://c/proxy/v1"] and cfg.model == "big" and cfg.api_key == "k"
    assert cfg.base_urls() == ["http://a:8000/v1", "http://b:9000/v1", "http://c/proxy/v1"]
    assert normalize_url("http://h:1/") == "http://h:1/v1"


# ---------------------------------------------------------------- load balancing and throughput

@pytest.mark.timeout(10)
def test_two_urls_are_load_balanced():
    with FaultServer() as a, FaultServer() as b:
        client, _ = make([a.url, b.url])
        with client:
            results = client.complete(reqs(10))
        assert all(r.ok for r in results) and (a.count, b.count) == (5, 5)


@pytest.mark.timeout(10)
def test_concurrency_is_bounded(server):
    live = {"now": 0, "max": 0}
    lock = threading.Lock()

    def reply(body):
        with lock:
            live["now"] += 1
            live["max"] = max(live["max"], live["now"])
        time.sleep(0.02)
        with lock:
            live["now"] -= 1
        return ok({"echo": "x"})
    server.reply = reply
    client, _ = make([server.url], max_concurrency=4)
    with client:
        assert all(r.ok for r in client.complete(reqs(40)))
    assert 2 <= live["max"] <= 4


# ---------------------------------------------------------------- streaming (submit / stream)

def _slow_when(word: str, seconds: float):
    def reply(body):
        text = last_user(body)
        if word in text:
            time.sleep(seconds)
        return ok({"echo": text})
    return reply


@pytest.mark.timeout(10)
def test_stream_yields_groups_as_they_finish(server):
    """A slow group does not hold back the groups after it (no batch barrier)."""
    server.reply = _slow_when("slow", 1.0)
    groups = [("g0", reqs(1, prefix="slow")), ("g1", reqs(2, prefix="a")), ("g2", []), ("g3", reqs(1, prefix="b"))]
    client, tally = make([server.url], max_concurrency=4)
    with client:
        out = list(client.stream(iter(groups), max_pending=4))
    owners = [o for o, _ in out]
    assert sorted(owners) == ["g0", "g1", "g2", "g3"] and owners[-1] == "g0"
    by_owner = dict(out)
    assert [r.data["echo"] for r in by_owner["g1"]] == ["a 0", "a 1"] and by_owner["g2"] == []
    assert tally["requests"] == 4 and tally["requests_sent"] == 4
    assert tally.threads == {threading.get_ident()}  # counts arrive in the caller's thread


@pytest.mark.timeout(10)
def test_stream_reads_groups_lazily(server):
    """At most max_pending groups are taken from the source before one is handed back."""
    pulled = []

    def source():
        for i in range(20):
            pulled.append(i)
            yield i, reqs(1, prefix=f"p{i}-")
    client, _ = make([server.url], max_concurrency=2)
    with client:
        stream = client.stream(source(), max_pending=3)
        first = next(stream)
        assert len(pulled) == 3 and first[0] in (0, 1, 2)
        rest = list(stream)
    assert sorted([first[0]] + [o for o, _ in rest]) == list(range(20))


@pytest.mark.timeout(10)
def test_same_request_pending_in_two_groups_is_sent_once(server):
    server.reply = _slow_when("q", 0.3)
    client, tally = make([server.url])
    with client:
        out = dict(client.stream([("a", reqs(1)), ("b", reqs(1))], max_pending=2))
    assert server.count == 1 and out["a"][0].ok and out["b"][0].data == {"echo": "q 0"}
    assert tally["requests_joined"] == 1


@pytest.mark.timeout(15)
def test_closing_a_stream_cancels_pending_groups_but_keeps_finished_replies(server, tmp_path):
    server.reply = _slow_when("slow", 0.5)
    cache = RequestCache(tmp_path / "c.sqlite")
    client, _ = make([server.url], cache=cache, max_concurrency=8)
    with client:
        stream = client.stream([("fast", reqs(1, prefix="f")), ("slow", reqs(3, prefix="slow"))], max_pending=2)
        owner, _ = next(stream)
        assert owner == "fast"
        stream.close()  # the caller stops (an error in its loop does the same)
        time.sleep(1.0)  # requests already at the server finish and are cached for the next run
        again = client.complete(reqs(3, prefix="slow"))
    assert all(r.cached for r in again)
