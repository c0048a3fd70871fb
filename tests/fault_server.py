"""A scriptable OpenAI-compatible server for fault-injection tests of the LLM client.

Not a model: it answers POST /v1/chat/completions and GET /v1/models on 127.0.0.1 only, in a
thread of the test process. Each chat request takes the next scripted action (`push`), or, when
the script is empty, what `reply(body)` returns; the default reply echoes the last user message
as `{"echo": "..."}`. Actions: `ok(content, finish_reason)`, `status(code)` (500, 429, ...),
`hang(seconds)` (past the client's timeout), `close()` (drop the connection without a reply),
`raw(body, content_type)` (an HTTP 200 with any body: HTML, `choices: []`, `content: null`...;
see `html()`, `no_choices()`, `null_content()`, `wrong_object()`).
The happy path against a real model is tested against vLLM elsewhere.
"""
from __future__ import annotations

import collections
import json
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from webinstruct.core.procs import free_port

MAX_BODY = 1 << 20
MAX_HANG_S = 30.0


@dataclass
class Action:
    kind: str                       # ok | status | hang | close | raw
    content: str = ""
    content_type: str = "application/json"
    finish_reason: str = "stop"
    code: int = 200
    seconds: float = 0.0
    retry_after_ms: int | None = 10  # keeps the openai client's backoff short in tests


def ok(content: str | dict, finish_reason: str = "stop") -> Action:
    return Action("ok", content=content if isinstance(content, str) else json.dumps(content),
                  finish_reason=finish_reason)


def status(code: int, retry_after_ms: int | None = 10) -> Action:
    return Action("status", code=code, retry_after_ms=retry_after_ms)


def hang(seconds: float) -> Action:
    return Action("hang", seconds=min(seconds, MAX_HANG_S))


def close() -> Action:
    return Action("close")


def raw(body: str | dict, content_type: str = "application/json") -> Action:
    """An HTTP 200 whose body is `body` as given (a dict is sent as JSON)."""
    return Action("raw", content=body if isinstance(body, str) else json.dumps(body), content_type=content_type)


def completion(choices: list, object: str = "chat.completion") -> dict:
    return {"id": "chatcmpl-raw", "object": object, "created": 0, "model": "fault-model", "choices": choices,
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def html() -> Action:
    """What a proxy in front of a dead server often sends: a 200 with an HTML page."""
    return raw("<html><head><title>502 Bad Gateway</title></head>\n<body>upstream down</body></html>",
               "text/html")


def no_choices() -> Action:
    return raw(completion([]))


def null_content() -> Action:
    return raw(completion([{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": None}}]))


def wrong_object() -> Action:
    """A well-formed reply of another endpoint (a model list where a chat completion belongs)."""
    return raw({"object": "list", "data": [{"id": "fault-model", "object": "model"}]})


def last_user(body: dict) -> str:
    users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
    return users[-1] if users else ""


def echo(body: dict) -> Action:
    return ok({"echo": last_user(body)})


class FaultServer:
    """`with FaultServer() as s:` ... `s.url`, `s.push(...)`, `s.count`, `s.requests` (chat bodies)."""

    def __init__(self, reply: Callable[[dict], Action | str | dict] | None = None, model: str = "fault-model"):
        self.reply = reply or echo
        self.model = model
        self.script: collections.deque[Action] = collections.deque()
        self.requests: list[dict] = []
        self.models_count = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def count(self) -> int:
        return len(self.requests)

    def push(self, *actions: Action) -> "FaultServer":
        self.script.extend(actions)
        return self

    def start(self) -> "FaultServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                # Headers and body leave in two writes; without this, Nagle's algorithm and the
                # client's delayed ACK add 40 ms to every reply.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _send(self, code: int, body: dict, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:  # the client gave up (after a hang)
                    self.close_connection = True

            def do_GET(self) -> None:
                if self.path.rstrip("/") != "/v1/models":
                    return self._send(404, {"error": {"message": "not found"}})
                with server._lock:
                    server.models_count += 1
                self._send(200, {"object": "list", "data": [
                    {"id": server.model, "object": "model", "created": 0, "owned_by": "fault-server"}]})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self.close_connection = True
                    return self._send(413, {"error": {"message": "body too large"}})
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": "not found"}})
                with server._lock:
                    server.requests.append(body)
                    action = server.script.popleft() if server.script else None
                if action is None:
                    action = server.reply(body)
                    if not isinstance(action, Action):
                        action = ok(action)
                if action.kind == "close":
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if action.kind == "hang":
                    server._stop.wait(action.seconds)  # released at once when the server stops
                    action = echo(body)
                if action.kind == "raw":
                    data = action.content.encode()
                    self.send_response(200)
                    self.send_header("Content-Type", action.content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    try:
                        self.wfile.write(data)
                    except OSError:
                        self.close_connection = True
                    return
                if action.kind == "status":
                    wait = action.retry_after_ms
                    headers = {"retry-after-ms": str(wait)} if wait is not None else {}
                    return self._send(action.code, {"error": {"message": f"injected {action.code}",
                                                              "type": "fault", "code": action.code}}, headers)
                prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
                completion = max(1, len(action.content.split()))
                self._send(200, {
                    "id": f"chatcmpl-{len(server.requests)}", "object": "chat.completion", "created": 0,
                    "model": body.get("model", server.model),
                    "choices": [{"index": 0, "finish_reason": action.finish_reason,
                                 "message": {"role": "assistant", "content": action.content}}],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                              "total_tokens": prompt + completion}})

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> "FaultServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def dead_url() -> str:
    """A loopback URL where nothing listens (a port just freed)."""
    return f"http://127.0.0.1:{free_port()}/v1"
