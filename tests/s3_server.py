"""A real S3-compatible server on loopback for the object-storage tests: moto's standalone server
(`python -m moto.server`, from PyPI), started as its own process, with credentials and endpoint in
the standard AWS environment variables as boto3 (and so s3fs) reads them."""
from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import urllib.request
from typing import Iterator

from webinstruct.core.procs import free_port


@contextlib.contextmanager
def s3_server(log_path: str) -> Iterator[dict[str, str]]:
    """Start the server; yield the environment variables that point boto3 / s3fs at it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the S3 server did not start; see {log_path}")
                time.sleep(0.2)
        yield {"AWS_ACCESS_KEY_ID": "webinstruct-test", "AWS_SECRET_ACCESS_KEY": "webinstruct-test",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": url}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def use_env(env: dict[str, str], monkeypatch) -> None:
    """Point this process (and the processes it starts) at the server; forget file-system
    instances made for another endpoint."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)  # a user's profile would win over the variables
    import fsspec

    with contextlib.suppress(Exception):
        fsspec.get_filesystem_class("s3").clear_instance_cache()
