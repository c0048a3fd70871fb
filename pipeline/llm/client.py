"""The one LLM client every LLM stage uses: batched, concurrent, cached, retried, counted.

Three ways in, one engine: an asyncio loop in a background thread that keeps up to
`max_concurrency` requests in flight, round-robin over the configured OpenAI-compatible servers.
  * `complete(requests)`: a batch in, its results out (synchronous);
  * `submit(requests)`: the same batch as a future, so a caller can keep several batches going;
  * `stream(groups, max_pending)`: an iterator of (owner, requests) groups in, (owner, results)
    out as each group finishes, with at most `max_pending` groups in flight. A long stage feeds it
    documents and never waits at a batch boundary for the slowest reply: the server stays busy.
Failures are told apart by who is at fault:
  * the SERVER's (connection errors, timeouts, HTTP errors, an HTTP 200 whose body is not a chat
    completion: HTML, `choices: []`, `message.content: null`, another `object` type; a request past
    its `deadline_s`): retried with backoff (the openai client's own retries for transport and
    5xx/429, ours for malformed bodies), never cached; a stage stops on them with one line
    (`stop_on_server_faults`: rerun to resume, the finished replies are cached);
  * the MODEL's (a well-formed reply cut at max_tokens, not JSON, not matching the schema): our
    semantic retries with a new seed, a temperature floor for JSON errors, twice the token budget
    for cut replies; a final failure is cached, and a stage whose share of them passes
    `max_failure_share` ends with `LLMModelFailures` (pipeline/stage.py `close_stats`).
A request that still fails becomes an `LLMResult(ok=False, error="<cause>: ...")`; one bad
request never raises. Only a server that cannot be reached at all raises `LLMUnavailable`.
While requests are pending a heartbeat line is logged every `heartbeat_s` seconds.

Create the client in `DoFn.setup()`, not in the pipeline constructor: it owns a thread and sockets.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import openai

from webinstruct.pipeline.llm.cache import Cache, request_key
from webinstruct.pipeline.llm.config import LLMConfig, normalize_url

log = logging.getLogger(__name__)

SEMANTIC_CAUSES = ("invalid_json", "schema", "length")
PROBE_TIMEOUT_S = 30.0
RETRY_SEED_STRIDE = 1_000_003


# Failures decided by the model's own reply: asking again with the same request gives the same
# answer, so the verdict is cached. Transport and HTTP errors are not final.
FINAL_CAUSES = ("length", "invalid_json", "schema")
# The server's failures (see `is_server_fault`): never cached; a stage stops on them.
SERVER_CAUSES = ("transport", "deadline", "bad_response")
# HTTP statuses that refuse this one request (a prompt over the context length, a body too large):
# neither the model's failure nor a broken server, so the request fails alone and is not cached.
REQUEST_REFUSALS = (400, 413, 422)
MAX_BACKOFF_S = 30.0


class LLMUnavailable(RuntimeError):
    """No configured server answers: a setup problem, not a data problem, so the stage stops."""


class LLMServerFailure(RuntimeError):
    """The endpoint failed mid-run beyond the client's retries (raised by `stop_on_server_faults`)."""


class LLMModelFailures(ValueError):
    """Too large a share of a stage's requests failed for the model's own reasons (invalid JSON,
    schema mismatch, cut at the token cap): the output would be mostly holes (raised by
    pipeline/stage.py `close_stats`, after stats.json is written)."""


class _ServerFault(Exception):
    """One request's server fault, after the retries: `cause` (transport, http_<status>, deadline,
    bad_response) and a one-line `detail`."""

    def __init__(self, cause: str, detail: str):
        super().__init__(f"{cause}: {detail}")
        self.cause, self.detail = cause, detail


def _one_line(text: Any, limit: int = 200) -> str:
    return " ".join(str(text).split())[:limit]


def read_reply(reply: Any) -> tuple[str, str, Any]:
    """(content, finish_reason, usage) of a chat-completions reply, or `_ServerFault("bad_response")`
    when the server sent something else: a body that is not JSON (the openai client hands it back
    as a str), another `object` type, no choices, or `content: null` (kept only with
    finish_reason "length": the model spent its budget before writing anything, its own failure)."""
    if not hasattr(reply, "choices"):
        raise _ServerFault("bad_response", f"body is not a chat completion: {_one_line(reply, 80)!r}")
    kind = getattr(reply, "object", None)
    if kind not in (None, "chat.completion"):
        raise _ServerFault("bad_response", f"object {kind!r}, not a chat.completion")
    if not reply.choices:
        raise _ServerFault("bad_response", "no choices in the reply")
    choice = reply.choices[0]
    message = getattr(choice, "message", None)
    finish = getattr(choice, "finish_reason", None) or ""
    content = getattr(message, "content", None)
    if not isinstance(content, str):
        if content is None and finish == "length":
            content = ""
        else:
            raise _ServerFault("bad_response", f"message.content is {_one_line(repr(content), 40)} "
                                               f"(finish_reason {finish or 'missing'!r})")
    return content, finish, getattr(reply, "usage", None)


@dataclass
class LLMResult:
    id: str
    ok: bool
    text: str = ""             # raw content of the last reply
    data: Any = None           # parsed JSON when the request had a schema and the reply matched it
    error: str = ""            # "<cause>: detail" when not ok; the model's: invalid_json, schema, length;
                               # the server's: transport, deadline, http_<status>, bad_response
    finish_reason: str = ""
    prompt_tokens: int = 0     # summed over attempts: what the request cost
    completion_tokens: int = 0
    cached: bool = False
    attempts: int = 0          # chat requests sent for it (0 when cached)


# ---------------------------------------------------------------- lenient JSON and a schema subset

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.S)
_MAX_JSON_STARTS = 32  # candidate '{' / '[' positions tried; bounds the work on long garbage


def parse_json(text: str) -> tuple[Any, str | None]:
    """(value, None) for the JSON object or array in `text`, or (None, reason).

    The whole reply is parsed first (a valid reply whose strings hold a ``` fence is that reply,
    not the fenced code); then ```json fences, then the first object or array embedded in prose.
    Models wrap JSON in fences or prose even when asked not to; servers that enforce the schema do
    not, so leniency costs nothing there."""
    text = (text or "").strip()
    try:
        return json.loads(text, strict=False), None
    except ValueError:
        pass
    embedded = None  # (start, end, value) of the first object or array that decodes
    decoder = json.JSONDecoder(strict=False)  # raw newlines in strings: common in model output
    starts = [m.start() for m in re.finditer(r"[\[{]", text)][:_MAX_JSON_STARTS]
    for start in starts:
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            continue
        embedded = (start, end, value)
        break
    for fenced in _FENCE.finditer(text):
        if embedded is not None and embedded[0] < fenced.start() < embedded[1]:
            break  # a fence inside a string of the embedded object: the object is the reply
        try:
            return json.loads(fenced.group(1).strip(), strict=False), None
        except ValueError:
            continue
    if embedded is not None:
        return embedded[2], None
    snippet = text[:60].replace("\n", " ")
    return None, f"no JSON object or array in reply {snippet!r}" if text else "empty reply"


_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def validate(value: Any, schema: dict, path: str = "$") -> str | None:
    """None when `value` matches `schema`, else the first mismatch ("$.items[2].answer: ...").

    The subset our prompts use: type (one or a list), properties, required, items, enum and
    additionalProperties: false. Other keywords are ignored (the server enforces them, or not)."""
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_TYPES.get(t, lambda v: True)(value) for t in names):
            return f"{path}: expected {'/'.join(names)}, got {type(value).__name__}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{path}: {value!r} not in {schema['enum']!r}"
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                return f"{path}: missing required {name!r}"
        if schema.get("additionalProperties") is False:
            extra = sorted(set(value) - set(props))
            if extra:
                return f"{path}: unexpected properties {extra!r}"
        for name, sub in props.items():
            if name in value:
                err = validate(value[name], sub, f"{path}.{name}")
                if err:
                    return err
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            err = validate(item, schema["items"], f"{path}[{i}]")
            if err:
                return err
    return None


# ---------------------------------------------------------------- requests

def render(request: dict, cfg: LLMConfig, model: str) -> dict:
    """The chat-completions arguments for one request dict; also what the cache key hashes.

    A request: {"messages": [...], "schema": json-schema or None, "max_tokens": int|None,
    "temperature": float|None, "id": str} (optional "seed", "schema_name", "stop": [str, ...]; a
    request without "stop" renders, and is cached, as before the field existed)."""
    if not request.get("messages"):
        raise ValueError(f"LLM request {request.get('id', '')!r} has no messages")
    payload = {
        "model": model,
        "messages": request["messages"],
        "temperature": float(cfg.temperature if request.get("temperature") is None else request["temperature"]),
        "max_tokens": int(request.get("max_tokens") or cfg.max_tokens),
        "seed": int(cfg.seed if request.get("seed") is None else request["seed"]),
    }
    if request.get("stop"):
        payload["stop"] = list(request["stop"])
    if request.get("schema") is not None:
        payload["response_format"] = {"type": "json_schema", "json_schema": {
            "name": request.get("schema_name") or "output", "schema": request["schema"], "strict": True}}
    return payload


def _unavailable(urls: list[str], errors: list[BaseException]) -> LLMUnavailable:
    why = "; ".join(f"{u} ({type(e).__name__}: {e})" for u, e in zip(urls, errors))
    return LLMUnavailable(
        f"no LLM server reachable at {why}. Start the local one with `make serve-llm`, or set LLM_URL "
        f"(or --llm-url) to a running OpenAI-compatible server, e.g. LLM_URL=http://gpu-host:8000/v1")


def _first_model(ids: list[str], url: str) -> str:
    if not ids:
        raise LLMUnavailable(f"the server at {url} lists no models at /v1/models; set LLM_MODEL (or --model)")
    return ids[0]


def _no_count(name: str, n: int = 1) -> None:  # module-level so a client without counters pickles
    pass


class _Loop:
    """An asyncio loop in a daemon thread. A loop per `complete()` call would throw away the HTTP
    connections each time, and `asyncio.run` fails when the caller's thread already runs a loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="llm-client", daemon=True)
        self.thread.start()

    def run(self, coro):
        return self.submit(coro).result()

    def submit(self, coro) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


class LLMClient:
    """See the module docstring. `count(name, n)` receives every counter (a `StageCounter`)."""

    def __init__(self, cfg: LLMConfig, cache: Cache | None = None,
                 count: Callable[[str, int], None] | None = None):
        if not cfg.url:
            raise ValueError("LLMConfig.url is empty: the stage must start a local server or set LLM_URL first")
        self.cfg = cfg
        self.cache = cache
        self.count = count if count is not None else _no_count
        self.urls = cfg.base_urls()
        self.model = cfg.model
        self._init_process_state()

    def _init_process_state(self) -> None:
        self._pid: int | None = None
        self._loop: _Loop | None = None
        self._clients: list[openai.AsyncOpenAI] = []
        self._sem: asyncio.Semaphore | None = None
        self._probe_lock: asyncio.Lock | None = None
        self._inflight: dict[str, asyncio.Future] = {}  # key -> reply being fetched (shared by duplicates)
        self._rr = 0
        self._probed = False
        self._lock = threading.Lock()
        self._pending: dict[int, float] = {}  # id of a request being fetched -> when it started (monotonic)
        self._active = 0                       # of those, requests now waiting on the server
        self._done = 0
        self._heartbeat_task: asyncio.Task | None = None

    # Beam pickles DoFns; a client carried along restarts its thread and connections where it lands.
    def __getstate__(self):
        return {"cfg": self.cfg, "cache": self.cache, "count": self.count, "urls": self.urls, "model": self.model}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._init_process_state()

    def _start(self) -> None:
        # Also after a fork: the loop thread does not exist in the child.
        if self._pid == os.getpid():
            return
        self._loop = _Loop()
        self._clients = [openai.AsyncOpenAI(base_url=u, api_key=self.cfg.api_key, timeout=self.cfg.timeout_s,
                                            max_retries=self.cfg.transport_retries) for u in self.urls]
        self._sem, self._probe_lock, self._inflight = None, None, {}
        self._rr, self._probed = 0, False
        self._pending, self._active, self._done, self._heartbeat_task = {}, 0, 0, None
        self._pid = os.getpid()

    # ------------------------------------------------------------ public

    def complete(self, requests: list[dict]) -> list[LLMResult]:
        """One result per request, in order. Counts are made here, in the caller's thread, because
        Beam metrics are attached to the thread that runs the bundle."""
        return self.collect(self.submit(requests))

    def submit(self, requests: list[dict]) -> concurrent.futures.Future:
        """Start a batch; the future's result is `(results, tally)`. Pass it to `collect()` (in the
        thread that owns the counters) for the results. Raises `LLMUnavailable` from the future when
        no server answers."""
        with self._lock:
            self._start()
        return self._loop.submit(self._complete(list(requests)))  # type: ignore[union-attr]

    def collect(self, future: concurrent.futures.Future) -> list[LLMResult]:
        """The results of a submitted batch; its counts go to `count` now, in this thread."""
        results, tally = future.result()
        for name, n in tally.items():
            self.count(name, n)
        return results

    def stream(self, groups: Iterable[tuple[Any, list[dict]]], max_pending: int = 64) -> Iterator[tuple[Any, list[LLMResult]]]:
        """(owner, results) for each (owner, requests) of `groups`, in the order the groups finish.

        Keeps at most `max_pending` groups submitted (it reads `groups` lazily, so a caller can
        stream a whole shard of documents through), and `max_concurrency` requests in flight among
        them. A group with no requests finishes at once. Stopping the iteration early (an exception
        in the caller, `close()` of the generator) cancels what is still pending; replies that had
        finished are already in the cache."""
        for owner, parts in stream_many(((o, [(self, r)]) for o, r in groups), max_pending):
            yield owner, parts[0]

    def resolve_model(self, url: str) -> str:
        """The first model id the server at `url` lists at /v1/models."""
        client = openai.OpenAI(base_url=normalize_url(url), api_key=self.cfg.api_key,
                               timeout=min(self.cfg.timeout_s, PROBE_TIMEOUT_S), max_retries=self.cfg.transport_retries)
        try:
            ids = [m.id for m in client.models.list().data]
        except openai.APIConnectionError as err:
            raise _unavailable([url], [err]) from err
        finally:
            client.close()
        return _first_model(ids, url)

    def close(self) -> None:
        if self.cache is not None:
            self.cache.flush()  # a remote cache uploads what this client added
        if self._loop is not None and self._pid == os.getpid():
            async def _close_all():
                if self._heartbeat_task is not None:
                    self._heartbeat_task.cancel()
                for c in self._clients:
                    await c.close()
            try:
                self._loop.run(_close_all())
            finally:
                self._loop.stop()
        self._init_process_state()

    def __enter__(self) -> "LLMClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ internals

    async def _complete(self, requests: list[dict]) -> tuple[list[LLMResult], collections.Counter]:
        """Runs in the loop thread. Counts go to a tally of this batch, handed back with the results."""
        tally: collections.Counter = collections.Counter()
        tally["requests"] += len(requests)
        if not requests:
            return [], tally
        if not self.model:
            await self._ensure_probed(tally)  # the model name is part of every cache key
        payloads = [render(r, self.cfg, self.model) for r in requests]
        keys = [request_key(p) for p in payloads]
        ids = [str(r.get("id", i)) for i, r in enumerate(requests)]
        results: list[LLMResult | None] = [None] * len(requests)

        hits = self.cache.get_many(keys) if self.cache is not None else {}
        todo: dict[str, list[int]] = {}  # key -> request indices; duplicates in a batch are sent once
        for i, key in enumerate(keys):
            hit = hits.get(key)
            if hit is not None and "failed" in hit:
                if self.cfg.retry_failed or _cause(hit["failed"]) not in FINAL_CAUSES:
                    hit = None  # asked to try recorded failures again; or a server fault an older client recorded
                else:
                    hit = self._recover(key, hit, requests[i].get("schema"), tally)
            if hit is not None:
                results[i] = _from_cache(ids[i], hit)
                tally["cache_hits_failed" if "failed" in hit else "cache_hits"] += 1
            else:
                todo.setdefault(key, []).append(i)
        if not todo:
            return _count_model_failures(results, tally), tally  # type: ignore[arg-type]

        await self._ensure_probed(tally)
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.cfg.max_concurrency)
        keys_todo = list(todo)
        self._start_heartbeat()
        sent = await asyncio.gather(*(self._shared(key, payloads[todo[key][0]], requests[todo[key][0]].get("schema"),
                                                   tally) for key in keys_todo))
        for key, result in zip(keys_todo, sent):
            for i in todo[key]:
                results[i] = dataclasses.replace(result, id=ids[i])
        failed = collections.Counter(r.error.split(":", 1)[0] for r in sent if not r.ok)
        if failed:
            # Debug only: a stage streams one batch per document, and the stage's stats count every cause.
            log.debug("LLM: %d of %d requests failed after retries: %s", sum(failed.values()), len(sent), dict(failed))
        return _count_model_failures(results, tally), tally  # type: ignore[arg-type]

    def _recover(self, key: str, hit: dict, schema: dict | None, tally: collections.Counter) -> dict:
        """A recorded invalid_json/schema verdict whose reply the current parser accepts (an older
        one took a fenced block out of a string for the reply) becomes the reply it is."""
        if schema is None or _cause(hit["failed"]) not in ("invalid_json", "schema") or not hit.get("text"):
            return hit
        data, err = parse_json(hit["text"])
        if err is not None or validate(data, schema) is not None:
            return hit
        value = {"text": hit["text"], "data": data, "finish_reason": hit.get("finish_reason") or "stop",
                 "prompt_tokens": 0, "completion_tokens": 0}
        try:
            self.cache.put(key, value)  # type: ignore[union-attr]
        except Exception as err_:
            log.warning("LLM cache: could not store a recovered reply: %s", err_)
            tally["cache_put_errors"] += 1
        tally["cache_failures_recovered"] += 1
        return value

    def _start_heartbeat(self) -> None:
        if self._heartbeat_task is None or self._heartbeat_task.done():
            self._heartbeat_task = asyncio.ensure_future(self._heartbeat())

    async def _heartbeat(self) -> None:
        """A progress line every `heartbeat_s` while requests are pending, so a stalled server shows."""
        while True:
            await asyncio.sleep(self.cfg.heartbeat_s)
            if not self._pending:
                return
            oldest = time.monotonic() - min(self._pending.values())
            log.info("LLM heartbeat: %d requests pending, %d in flight at the server, %d done; oldest pending %.0f s "
                     "(deadline %.0f s)", len(self._pending), self._active, self._done, oldest, self.cfg.deadline_s)

    async def _shared(self, key: str, payload: dict, schema: dict | None, tally: collections.Counter) -> LLMResult:
        """The reply for `key`; a request already in flight for another batch is awaited, not sent twice."""
        running = self._inflight.get(key)
        if running is not None:
            tally["requests_joined"] += 1
            return await asyncio.shield(running)
        task = asyncio.ensure_future(self._one(key, payload, schema, tally))
        self._inflight[key] = task
        try:
            result = await asyncio.shield(task)
        finally:
            if task.done():
                self._inflight.pop(key, None)
            else:  # this batch was cancelled: let the request finish (and be cached) for whoever asks next
                task.add_done_callback(lambda _t, k=key: self._inflight.pop(k, None))
        if not result.ok and result.error.split(":", 1)[0] in FINAL_CAUSES:
            self._store_failure(key, result, tally)
        return result

    async def _ensure_probed(self, tally: collections.Counter) -> None:
        """Once per process, before the first request: which servers answer, and the model name."""
        if self._probed:
            return
        if self._probe_lock is None:
            self._probe_lock = asyncio.Lock()
        async with self._probe_lock:
            if self._probed:
                return
            answers = await self._probe()
            dead = [i for i, a in enumerate(answers) if isinstance(a, BaseException)]
            if len(dead) == len(answers):
                raise _unavailable(self.urls, answers)
            if dead:
                # Requests sent to a dead server would all fail: leave it out for this process's life.
                for i in dead:
                    log.warning("LLM server %s unreachable (%s); using the other %d", self.urls[i], answers[i],
                                len(answers) - len(dead))
                tally["urls_unreachable"] += len(dead)
                self._clients = [c for i, c in enumerate(self._clients) if i not in dead]
                live_urls = [u for i, u in enumerate(self.urls) if i not in dead]
                answers = [a for i, a in enumerate(answers) if i not in dead]
            else:
                live_urls = self.urls
            if not self.model:
                self.model = _first_model(answers[0], live_urls[0])
                log.info("LLM: using model %r served at %s", self.model, live_urls[0])
            self._probed = True

    async def _probe(self) -> list:
        async def one(client: openai.AsyncOpenAI):
            try:
                page = await client.with_options(timeout=min(self.cfg.timeout_s, PROBE_TIMEOUT_S)).models.list()
                return [m.id for m in page.data]
            except openai.APIConnectionError as err:  # includes timeouts
                return err
            except openai.APIStatusError:
                return []  # it answers, it just has no /v1/models
        return await asyncio.gather(*(one(c) for c in self._clients))

    def _next_client(self) -> openai.AsyncOpenAI:
        client = self._clients[self._rr % len(self._clients)]
        self._rr += 1
        return client

    async def _one(self, key: str, payload: dict, schema: dict | None, tally: collections.Counter) -> LLMResult:
        token = id(asyncio.current_task())
        self._pending[token] = time.monotonic()
        try:
            return await self._attempts(payload, schema, tally, key)
        finally:
            self._pending.pop(token, None)
            self._done += 1

    async def _attempts(self, payload: dict, schema: dict | None, tally: collections.Counter, key: str) -> LLMResult:
        cfg = self.cfg
        max_tokens, temperature = payload["max_tokens"], payload["temperature"]
        cap = max(cfg.max_tokens_cap, max_tokens)
        cause = detail = text = finish = ""
        data: Any = None
        budget = [cfg.deadline_s]  # seconds left to this request (all its attempts)
        counts = {"attempts": 0, "prompt_tokens": 0, "completion_tokens": 0}
        for attempt in range(cfg.semantic_retries + 1):
            send = dict(payload)
            if attempt:
                # A new seed so a sampled reply differs (greedy decoding ignores it: see temperature
                # below); a large stride so it does not collide with seed+1 used as another sample.
                send.update(seed=(payload["seed"] + attempt * RETRY_SEED_STRIDE) % 2**31, max_tokens=max_tokens,
                            temperature=temperature)
            try:
                text, finish = await self._send(send, budget, counts, tally)
            except _ServerFault as fault:
                if fault.cause.startswith("http_") and cause == "length":
                    # the doubled budget was refused (over the context length?): still the model's failure
                    detail = f"{detail}; the larger budget was refused: {fault.detail}"
                else:
                    cause, detail, text, finish = fault.cause, fault.detail, "", ""
                break

            if finish == "length":
                cause, detail = "length", f"reply cut at max_tokens={send['max_tokens']}"
                if send["max_tokens"] >= cap and temperature == 0:
                    break  # the same greedy reply would be cut again
                max_tokens = min(send["max_tokens"] * 2, cap)
            elif schema is not None:
                data, err_text = parse_json(text)
                if err_text is None:
                    err_text = validate(data, schema)
                    cause = "schema" if err_text else ""
                else:
                    cause = "invalid_json"
                detail = err_text or ""
                if cause:
                    data = None
                    temperature = max(temperature, cfg.retry_temperature)
            else:
                cause = ""
            if not cause:
                result = LLMResult(id="", ok=True, text=text, data=data, finish_reason=finish,
                                   prompt_tokens=counts["prompt_tokens"], completion_tokens=counts["completion_tokens"],
                                   attempts=counts["attempts"])
                self._store(key, result, tally)
                return result
            if attempt < cfg.semantic_retries:
                tally[f"retries_{cause}"] += 1
        tally["prompt_tokens"] += counts["prompt_tokens"]
        tally["completion_tokens"] += counts["completion_tokens"]
        tally[f"failures_{cause}"] += 1
        log.debug("LLM request failed: %s: %s", cause, detail)
        return LLMResult(id="", ok=False, text=text, error=f"{cause}: {detail}", finish_reason=finish,
                         prompt_tokens=counts["prompt_tokens"], completion_tokens=counts["completion_tokens"],
                         attempts=counts["attempts"])

    async def _send(self, send: dict, budget: list[float], counts: dict, tally: collections.Counter) -> tuple[str, str]:
        """(content, finish_reason) of one chat request, or `_ServerFault` when the server failed it
        after the retries (the openai client retries transport faults and 429/5xx itself; a
        malformed 200 is retried here, with backoff) or `budget[0]` seconds ran out."""
        faults = 0
        while True:
            if budget[0] <= 0:
                raise _ServerFault("deadline", f"no reply within deadline_s={self.cfg.deadline_s:g} s")
            counts["attempts"] += 1
            tally["requests_sent"] += 1
            try:
                async with self._sem:  # type: ignore[union-attr]
                    started = time.monotonic()
                    self._active += 1
                    try:
                        reply = await asyncio.wait_for(self._next_client().chat.completions.create(**send),
                                                       timeout=budget[0])
                    finally:
                        self._active -= 1
                        budget[0] -= time.monotonic() - started
                text, finish, usage = read_reply(reply)
            except openai.APIStatusError as err:
                code = err.status_code
                cause = "transport" if code == 429 or code >= 500 else f"http_{code}"
                raise _ServerFault(cause, f"HTTP {code} {_one_line(err)}") from None
            except openai.APIConnectionError as err:  # connection errors and timeouts, after the client's retries
                raise _ServerFault("transport", _one_line(f"{type(err).__name__}: {err}")) from None
            except asyncio.TimeoutError:
                raise _ServerFault("deadline", f"no reply within deadline_s={self.cfg.deadline_s:g} s "
                                               f"(timeout_s={self.cfg.timeout_s:g} per attempt)") from None
            except _ServerFault as fault:
                faults += 1
                tally["server_faults"] += 1
                if faults > self.cfg.transport_retries:
                    raise
                wait = min(self.cfg.backoff_s * 2 ** (faults - 1), MAX_BACKOFF_S, max(budget[0], 0.0))
                tally["retries_bad_response"] += 1
                log.debug("LLM: malformed reply (%s); asking again in %.1f s", fault.detail, wait)
                await asyncio.sleep(wait)
                budget[0] -= wait
                continue
            if usage is not None:
                counts["prompt_tokens"] += getattr(usage, "prompt_tokens", 0) or 0
                counts["completion_tokens"] += getattr(usage, "completion_tokens", 0) or 0
            return text, finish

    def _store_failure(self, key: str, result: LLMResult, tally: collections.Counter) -> None:
        """Record the final verdict of a request that failed every retry for a reason the model
        itself gave (cut at the token cap, invalid JSON, schema mismatch): a rerun of the stage
        then does not pay for it again. Transport failures are never recorded (the server may come
        back). `retry_failed` sends recorded failures again."""
        if self.cache is None:
            return
        try:
            self.cache.put(key, {"failed": result.error, "text": result.text, "finish_reason": result.finish_reason})
        except Exception as err:
            log.warning("LLM cache: could not record a failure: %s", err)
            tally["cache_put_errors"] += 1

    def _store(self, key: str, result: LLMResult, tally: collections.Counter) -> None:
        tally["prompt_tokens"] += result.prompt_tokens
        tally["completion_tokens"] += result.completion_tokens
        if self.cache is None:
            return
        try:
            self.cache.put(key, {"text": result.text, "data": result.data, "finish_reason": result.finish_reason,
                                 "prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens})
        except Exception as err:  # a full disk or a lock held too long costs a re-ask later, not the result
            log.warning("LLM cache: could not store a reply: %s", err)
            tally["cache_put_errors"] += 1


def stream_many(groups: Iterable[tuple[Any, list[tuple["LLMClient", list[dict]]]]],
                max_pending: int = 64) -> Iterator[tuple[Any, list[list[LLMResult]]]]:
    """`LLMClient.stream` over several clients (several refiner endpoints, say): each group is
    (owner, [(client, requests), ...]) and comes back as (owner, [results per part]) once all its
    parts are done. Counts go to each client's `count` in the calling thread."""
    source = iter(groups)
    pending: dict[concurrent.futures.Future, tuple[int, int]] = {}  # future -> (group, part)
    groups_open: dict[int, list] = {}  # group -> [owner, clients, futures, parts left]
    order = 0
    exhausted = False
    try:
        while True:
            while not exhausted and len(groups_open) < max(1, max_pending):
                try:
                    owner, parts = next(source)
                except StopIteration:
                    exhausted = True
                    break
                futures = [client.submit(requests) for client, requests in parts]
                groups_open[order] = [owner, [c for c, _ in parts], futures, len(parts)]
                for part, future in enumerate(futures):
                    pending[future] = (order, part)
                if not parts:
                    pending[_done_future()] = (order, -1)
                order += 1
            if not pending:
                return
            done, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
            finished = []
            for future in done:
                group, part = pending.pop(future)
                if part >= 0:
                    groups_open[group][3] -= 1
                if groups_open[group][3] <= 0:
                    finished.append(group)
            for group in sorted(finished):  # several at once: input order
                owner, clients, futures, _ = groups_open.pop(group)
                yield owner, [client.collect(f) for client, f in zip(clients, futures)]
    finally:
        for future in pending:
            future.cancel()


def _done_future() -> concurrent.futures.Future:
    future: concurrent.futures.Future = concurrent.futures.Future()
    future.set_result(None)
    return future


def _cause(error: str) -> str:
    return (error or "").split(":", 1)[0]


def is_server_fault(result: LLMResult) -> bool:
    """The server, not the reply, failed the request: transport errors, a passed deadline, HTTP
    errors but for the refusals of one request (400, 413, 422), and malformed 200 replies. A stage
    stops on them (its finished replies are cached) rather than writing output with holes."""
    if result.ok:
        return False
    cause = _cause(result.error)
    if cause.startswith("http_"):
        return not cause[5:].isdigit() or int(cause[5:]) not in REQUEST_REFUSALS
    return cause in SERVER_CAUSES


def is_model_failure(result: LLMResult) -> bool:
    """The model's own well-formed reply failed: cut at max_tokens, not JSON, not the schema."""
    return not result.ok and _cause(result.error) in FINAL_CAUSES


def _count_model_failures(results: list, tally: collections.Counter) -> list:
    """Tally `model_failures` (fresh and cached) beside `requests`: pipeline/stage.py `close_stats`
    compares their ratio with `max_failure_share`."""
    tally["model_failures"] += sum(1 for r in results if is_model_failure(r))
    return results


def stop_on_server_faults(results: list[LLMResult], where: str = "") -> None:
    """Raise `LLMServerFailure` when any result failed for the server's sake after all retries.

    An LLM stage calls this before using a group's replies: every reply that did finish is already
    in the cache, so stopping loses nothing, and a rerun asks again only for what is missing,
    where going on would write shards with holes. `where` names the group ("of document URL")."""
    lost = [r for r in results if is_server_fault(r)]
    if lost:
        raise LLMServerFailure(
            f"the LLM server stopped answering: {len(lost)} of {len(results)} requests{' ' + where if where else ''} "
            f"failed after retries ({_one_line(lost[0].error, 300)}); the finished replies are cached, "
            f"rerun the stage to resume")


def _from_cache(id_: str, value: dict) -> LLMResult:
    if "failed" in value:
        return LLMResult(id=id_, ok=False, text=value.get("text", ""), error=value["failed"],
                         finish_reason=value.get("finish_reason", ""), cached=True, attempts=0)
    return LLMResult(id=id_, ok=True, text=value["text"], data=value.get("data"),
                     finish_reason=value.get("finish_reason", "stop"), prompt_tokens=value.get("prompt_tokens", 0),
                     completion_tokens=value.get("completion_tokens", 0), cached=True, attempts=0)
