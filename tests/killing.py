"""kill -9 at a chosen moment: the one helper the stage-output and stage-fault tests share."""
from __future__ import annotations

import os
import signal
import subprocess
import time

from conftest import ROOT


def kill_when(cmd: list[str], moment, timeout: float = 120, poll: float = 0.001) -> bool:
    """Start `cmd` in its own process group; SIGKILL the group as soon as `moment()` holds.
    Whether it was killed (False: the process ended first)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if moment():
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(poll)
        return False
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
