"""Build the webinstruct wheel and install it into a fresh virtual environment outside the checkout
(tests/test_wheel.py, and the Dask workers of tests/test_dask_cluster.py).

The fresh environment gets its third-party dependencies from the test's own environment through
a path file (a second multi-GB install of torch and vLLM would not fit the suite's time); the
webinstruct it imports is the wheel's: the path file adds the dev environment's site-packages to
sys.path without running that folder's own path files, so its editable webinstruct (the checkout)
is not picked up. `which_webinstruct` tells where an interpreter's `import webinstruct` resolves.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from conftest import ROOT


@dataclasses.dataclass
class WheelEnv:
    wheel: Path      # the built wheel
    venv: Path       # the fresh environment
    python: str      # its interpreter
    work: Path       # an empty working directory outside the checkout
    env: dict        # the environment to run it with: no PYTHONPATH, no VIRTUAL_ENV

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


def build_wheel(dist: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(dist), str(ROOT)], check=True, capture_output=True, timeout=300)
    return next(Path(dist).glob("webinstruct-*.whl"))


def purelib(python: str) -> str:
    return subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(extra)
    return env


def wheel_env(tmp: Path) -> WheelEnv:
    """Build the wheel under `tmp/dist` and install it into the fresh environment `tmp/venv`."""
    tmp = Path(tmp)
    wheel = build_wheel(tmp / "dist")
    venv = tmp / "venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)],
                   check=True, timeout=300)
    python = str(venv / "bin" / "python")
    Path(purelib(python), "zz_webinstruct_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, timeout=300)
    work = tmp / "elsewhere"
    work.mkdir()
    return WheelEnv(wheel=wheel, venv=venv, python=python, work=work, env=clean_env())


def which_webinstruct(python: str, cwd: Path, env: dict) -> str:
    """The file `import webinstruct` loads in `python` run from `cwd`."""
    return subprocess.run([python, "-c", "import webinstruct; print(webinstruct.__file__)"], cwd=cwd, env=env,
                          capture_output=True, text=True, check=True, timeout=120).stdout.strip()
