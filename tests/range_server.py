"""A static file server on 127.0.0.1 with HTTP Range support and scripted connection drops.

For the tests of the resumable reader (core/http_range.py) and of Common Crawl inputs: it serves
the files under `root` (GET, `Range: bytes=a-` / `a-b`, answering 206 with Content-Range), in a
thread of the test process. Faults, all deterministic:

- `cut_at[name] = [offsets]`: the first response whose body would cross each absolute byte offset
  sends the bytes up to it and closes the socket (its Content-Length promised more). Each offset
  cuts once, so a reader that resumes from where it stopped gets past it.
- `always_cut[name] = k`: every response for `name` is closed after k body bytes (a file that
  keeps failing).
- `ignore_range`: names answered 200 with the whole file even to a range request.

`requests` logs (name, range header or None, status) for each request answered.
"""
from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # a client closing its end early (what the reader under test does on a cut) is expected


class RangeServer:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.cut_at: dict[str, list[int]] = {}
        self.always_cut: dict[str, int] = {}
        self.ignore_range: set[str] = set()
        self.requests: list[tuple[str, str | None, int]] = []
        self.lock = threading.Lock()
        self.httpd = _QuietServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "RangeServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def ranged(self, name: str) -> list[str]:
        """The Range headers of the requests for `name` that had one."""
        return [r for n, r, _ in self.requests if n == name and r]

    def _plan(self, name: str, start: int, end: int) -> int | None:
        """How many body bytes to send before cutting this response (None: all)."""
        with self.lock:
            if name in self.always_cut:
                return self.always_cut[name]
            for off in sorted(self.cut_at.get(name, [])):
                if start <= off < end:
                    self.cut_at[name].remove(off)
                    return off - start
        return None

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                name = unquote(urlsplit(self.path).path).lstrip("/")
                path = (server.root / name).resolve()
                if not path.is_file() or server.root.resolve() not in path.parents:
                    server.requests.append((name, self.headers.get("Range"), 404))
                    self.send_error(404)
                    return
                data = path.read_bytes()
                size = len(data)
                header = self.headers.get("Range")
                m = re.fullmatch(r"bytes=(\d+)-(\d*)", header or "")
                if m and name not in server.ignore_range:
                    start = int(m.group(1))
                    end = min(size, int(m.group(2)) + 1) if m.group(2) else size
                    if start >= size:
                        server.requests.append((name, header, 416))
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{size}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                else:
                    start, end, status = 0, size, 200
                server.requests.append((name, header, status))
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(end - start))
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
                self.end_headers()
                cut = server._plan(name, start, end)
                body = data[start:end] if cut is None else data[start:start + cut]
                try:
                    self.wfile.write(body)
                    self.wfile.flush()
                except OSError:
                    pass
                if cut is not None:
                    self.close_connection = True
                    try:
                        self.connection.shutdown(2)
                    except OSError:
                        pass

        return Handler
