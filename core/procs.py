"""Two small process helpers that several parts of webinstruct need, kept in one place.

`free_port` picks a TCP port for a server we are about to start (the local vLLM server, the
torch.distributed rendezvous); `die_with_parent` makes a child process (a grading worker, the LLM
server's supervisor) go away when the process that started it dies, even by SIGKILL, so a killed
run never leaves orphans holding CPU or memory.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
from pathlib import Path

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on at the moment of the call (the OS's choice).

    Another process may take it before the caller binds it; callers that start a server on it
    are expected to fail loudly in that rare case, not to retry silently."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def die_with_parent(sig: int = signal.SIGKILL, parent: int | None = None) -> bool:
    """Ask Linux to send `sig` to this process when its parent dies (PR_SET_PDEATHSIG).

    Returns False when the parent is already gone: `parent` (a pid) is no longer this process's
    parent, which means it died before the request took effect and `sig` will never come. On a
    system without prctl (not Linux) nothing is set up and True is returned."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, int(sig))
    except (OSError, AttributeError):
        return True
    return parent is None or os.getppid() == parent


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists and has not exited (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie still answers kill(0); /proc tells them apart
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


_BOOT = ("import sys, json, importlib; sys.path[:] = json.loads(sys.argv[1]); "
         "getattr(importlib.import_module(sys.argv[2]), sys.argv[3])(int(sys.argv[4]))")


def spawn_connected(module: str, function: str, env: dict[str, str] | None = None):
    """A fresh interpreter (not a fork: the caller may hold threads) with this process's sys.path,
    running `module.function(fd)`, fd its end of a socket pair; returns (Popen, Connection), the
    connection seeing EOF when the child dies. `env` is added to this process's environment."""
    import json
    import subprocess
    import sys
    from multiprocessing.connection import Connection

    mine, theirs = socket.socketpair()
    proc = subprocess.Popen(
        [sys.executable, "-c", _BOOT, json.dumps([str(p) for p in sys.path]), module, function, str(theirs.fileno())],
        pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env={**os.environ, **env} if env else None)
    theirs.close()  # else no EOF reaches this side when the child dies
    return proc, Connection(mine.detach())
