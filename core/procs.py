"""Two small process helpers that several parts of webinstruct need, kept in one place.

`free_port` picks a TCP port for a server we are about to start (the local vLLM server, the
torch.distributed rendezvous); `die_with_parent` makes a child process (a grading worker, the LLM
server's supervisor) go away when the process that started it dies, even by SIGKILL, so a killed
run never leaves orphans holding CPU or memory.
"""
from __future__ import annotations

import os
import signal
import socket

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
