"""The local LLM server's tensor- and data-parallel sizes: the rule in core/placement.py, the vLLM
command line built from the settings and a made-up description of the GPUs, the refusal of tp or
dp above 1 on this CPU machine (`llm serve --tp 2`, a recipe's llm.tp), and, with vLLM's own
argument parser, that the flags we pass mean to vLLM 0.32 what we intend."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from webinstruct.core import placement as P
from webinstruct.core.config import ConfigError
from webinstruct.pipeline.llm import server as L
from webinstruct.pipeline.llm.config import LLMConfig

from conftest import ROOT

GIB = P.GIB
GB = 10 ** 9
H100 = P.Devices(8, 80 * GIB)  # total memory as torch reports it


def model_folder(path: Path, heads: int, kv_heads: int, weights: int, shards: int = 2) -> str:
    """A model folder with config.json and `shards` safetensors files totalling `weights` bytes
    (sparse files: their size is all the rule reads)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"num_attention_heads": heads, "num_key_value_heads": kv_heads}))
    for i in range(shards):
        with open(path / f"model-{i + 1:05d}-of-{shards:05d}.safetensors", "wb") as f:
            f.truncate(weights // shards + (weights % shards if i == 0 else 0))
    (path / "tokenizer.json").write_text("{}")  # not weights: not counted
    return str(path)


# --------------------------------------------------------------------------- the rule

def test_heads_rule():
    assert P.heads_allow(4, 32, 8) and P.heads_allow(8, 32, 8) and P.heads_allow(1, 40, 8)
    assert not P.heads_allow(3, 32, 8)  # heads not divisible
    assert not P.heads_allow(5, 40, 8)  # heads divisible, 8 KV heads over 5 GPUs are not
    assert P.heads_allow(16, 64, 8)  # fewer KV heads than GPUs: each copied twice
    assert not P.heads_allow(6, 48, 4)  # 6 GPUs, 4 KV heads: not a multiple
    assert not P.heads_allow(0, 32, 8)


def test_smallest_tp_is_the_fewest_gpus_that_hold_the_weights():
    usable = 80 * GIB * P.UTILIZATION
    assert P.smallest_tp(15 * GB, 32, 8, 8, 80 * GIB) == 1  # a 7B model in bf16
    # Just fits one GPU with the 1.2x headroom; a byte more needs two.
    edge = int(usable / P.HEADROOM)
    assert P.smallest_tp(edge, 32, 8, 8, 80 * GIB) == 1
    assert P.smallest_tp(edge + 1, 32, 8, 8, 80 * GIB) == 2
    assert P.smallest_tp(141 * GB, 64, 8, 8, 80 * GIB) == 4  # a 70B model: 169 GB with headroom
    # 3 GPUs would hold it, but 40 heads do not split over 3 (nor 8 KV heads over 5): 4.
    assert P.smallest_tp(int(2.5 * usable / P.HEADROOM), 40, 8, 8, 80 * GIB) == 4
    # 405B in bf16 does not fit on 8 of them.
    with pytest.raises(ValueError, match=r"do not fit on 8 GPU\(s\) of 80.0 GiB at 90%"):
        P.smallest_tp(810 * GB, 128, 8, 8, 80 * GIB)
    # Limited by the GPUs there are: 2 GPUs cannot take what needs 4.
    with pytest.raises(ValueError, match="on 2 GPUs"):
        P.smallest_tp(141 * GB, 64, 8, 2, 80 * GIB)


def test_the_model_folder_is_read(tmp_path):
    folder = model_folder(tmp_path / "m", 64, 8, 141 * GB, shards=30)
    assert P.weight_bytes(folder) == 141 * GB
    assert P.attention_heads(folder) == (64, 8)
    # A multimodal config keeps the language model's numbers under text_config; no KV heads: MHA.
    (tmp_path / "m" / "config.json").write_text(json.dumps({"text_config": {"num_attention_heads": 40}}))
    assert P.attention_heads(folder) == (40, 40)
    bins = tmp_path / "bin"
    bins.mkdir()
    (bins / "pytorch_model.bin").write_bytes(b"x" * 1000)
    assert P.weight_bytes(str(bins)) == 1000


def test_devices_describe_themselves():
    assert str(P.Devices()) == "no GPU"
    assert str(P.Devices(1, 141 * GIB)) == "1 GPU of 141.0 GiB"
    assert str(H100) == "8 GPUs of 80.0 GiB"


# A stand-in torch for detect_devices' child process: the GPUs it reports, without GPUs here.
FAKE_TORCH = """
import os
class _Props:
    def __init__(self, memory):
        self.total_memory = memory
class cuda:
    _memories = [int(m) for m in os.environ["FAKE_GPUS"].split(",") if m]
    is_available = staticmethod(lambda: bool(cuda._memories))
    device_count = staticmethod(lambda: len(cuda._memories))
    get_device_properties = staticmethod(lambda i: _Props(cuda._memories[i]))
"""


@pytest.mark.parametrize("memories, expected", [
    ([80 * GIB] * 4, P.Devices(4, 80 * GIB)),
    ([80 * GIB, 40 * GIB], P.Devices(2, 40 * GIB)),  # the smallest GPU bounds what one engine shard holds
    ([], P.Devices()),
])
def test_detect_devices_asks_torch_in_a_child(tmp_path, monkeypatch, memories, expected):
    (tmp_path / "torch.py").write_text(FAKE_TORCH)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("FAKE_GPUS", ",".join(map(str, memories)))
    assert P.detect_devices() == expected


def test_detect_devices_reports_a_failing_probe(tmp_path, monkeypatch):
    (tmp_path / "torch.py").write_text("class cuda:\n    is_available = staticmethod(lambda: 1 / 0)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"could not list the GPUs .*exited 1\): ZeroDivisionError"):
        P.detect_devices()
    # No torch at all: no GPUs, not an error.
    (tmp_path / "torch.py").write_text("raise ImportError('no torch here')\n")
    assert P.detect_devices() == P.Devices()


# --------------------------------------------------------------------------- the command line

def _flags(cmd: list[str]) -> dict[str, str]:
    """`--name value` pairs (and bare switches, as "") of a vLLM command line."""
    args = cmd[cmd.index("vllm.entrypoints.openai.api_server") + 1:]
    out: dict[str, str] = {}
    for i, a in enumerate(args):
        if a.startswith("--"):
            out[a] = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else ""
    return out


def _command(folder: str, devices: P.Devices, tp: int = 0, dp: int = 0):
    return L.server_command(folder, "m", "127.0.0.1", 8123, 4096, devices=devices, tp=tp, dp=dp)


def test_gpu_command_has_the_parallel_sizes_and_no_cpu_settings(tmp_path):
    small = model_folder(tmp_path / "7b", 32, 8, 15 * GB)
    cmd, env, why = _command(small, H100)
    flags = _flags(cmd)
    assert flags["--tensor-parallel-size"] == "1" and flags["--data-parallel-size"] == "1"
    assert flags["--gpu-memory-utilization"] == str(P.UTILIZATION)
    assert flags["--model"] == small and flags["--served-model-name"] == "m" and flags["--port"] == "8123"
    assert not {"--enforce-eager", "--dtype", "--no-enable-chunked-prefill"} & set(flags) and env == {}
    assert why.startswith("tp 1: the fewest of 8 GPUs of 80.0 GiB")

    big = model_folder(tmp_path / "70b", 64, 8, 141 * GB)
    assert _flags(_command(big, H100)[0])["--tensor-parallel-size"] == "4"
    assert _flags(_command(big, P.Devices(2, 141 * GIB))[0])["--tensor-parallel-size"] == "2"  # two H200s
    # dp 2: the automatic tp is chosen within 8 / 2 = 4 GPUs per engine.
    flags = _flags(_command(big, H100, dp=2)[0])
    assert (flags["--tensor-parallel-size"], flags["--data-parallel-size"]) == ("4", "2")
    # As asked, when the heads and the GPUs allow it.
    flags = _flags(_command(big, H100, tp=8, dp=1)[0])
    assert (flags["--tensor-parallel-size"], flags["--data-parallel-size"]) == ("8", "1")
    flags = _flags(_command(small, H100, tp=2, dp=4)[0])
    assert (flags["--tensor-parallel-size"], flags["--data-parallel-size"]) == ("2", "4")


@pytest.mark.parametrize("tp, dp, devices, message", [
    (3, 0, H100, r"tp 3: vLLM cannot split the model's 64 attention heads / 8 KV heads over 3 GPUs "
                 r"\(tp that work on 8 GPUs of 80.0 GiB: 1, 2, 4, 8\)"),
    (4, 4, H100, r"tp 4 x dp 4 needs 16 GPUs; 8 GPUs of 80.0 GiB visible"),
    (0, 9, H100, r"tp 1 x dp 9 needs 9 GPUs"),
    (0, 4, H100, r"do not fit on 2 GPU\(s\) of 80.0 GiB"),  # 8 / 4 = 2 GPUs per engine: too few for 70B
    (0, 0, P.Devices(1, 24 * GIB), r"do not fit on 1 GPU\(s\) of 24.0 GiB"),
])
def test_impossible_sizes_are_refused_in_one_line(tmp_path, tp, dp, devices, message):
    big = model_folder(tmp_path / "70b", 64, 8, 141 * GB)
    with pytest.raises(ConfigError, match=message) as err:
        _command(big, devices, tp=tp, dp=dp)
    assert "\n" not in str(err.value)


def test_cpu_command_is_as_before_and_refuses_parallel_sizes(tmp_path):
    folder = model_folder(tmp_path / "m", 9, 3, 270 * 10 ** 6)
    for tp, dp in ((0, 0), (1, 1), (1, 0)):
        cmd, env, why = _command(folder, P.Devices(), tp=tp, dp=dp)
        flags = _flags(cmd)
        assert flags["--dtype"] == "bfloat16" and flags["--gpu-memory-utilization"] == "0.3"
        assert "--enforce-eager" in flags and "--no-enable-chunked-prefill" in flags
        assert flags["--max-num-batched-tokens"] == "4096" and env == {"VLLM_CPU_KVCACHE_SPACE": "2"}
        assert "--tensor-parallel-size" not in flags and "--data-parallel-size" not in flags
        assert why == "no GPU: one engine on the CPU"
    for tp, dp, asked in ((2, 0, "tp 2 needs"), (0, 2, "dp 2 needs"), (2, 2, "tp 2 and dp 2 need")):
        with pytest.raises(ConfigError, match=f"the LLM server's {asked} GPUs and this machine has none"):
            _command(folder, P.Devices(), tp=tp, dp=dp)


def test_the_server_object_passes_its_settings(tmp_path, monkeypatch):
    folder = model_folder(tmp_path / "m", 64, 8, 141 * GB)
    monkeypatch.setattr(L, "on_gpu", lambda: True)  # as on a GPU machine: tp above 1 is accepted
    server = L.LocalLLMServer(folder, tp=8, dp=1, port=8124)
    cmd, env = server.command(H100)
    flags = _flags(cmd)
    assert (flags["--tensor-parallel-size"], flags["--data-parallel-size"]) == ("8", "1")
    assert env["VLLM_NO_USAGE_STATS"] == "1" and "VLLM_CPU_KVCACHE_SPACE" not in env
    assert server.why == "tp 8 and dp 1 as asked, on 8 GPUs of 80.0 GiB"


def test_the_server_refuses_tp_on_this_cpu_before_converting_anything(tmp_path, monkeypatch):
    if L.on_gpu():
        pytest.skip("this machine has a GPU")
    monkeypatch.setenv("WEBINSTRUCT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ConfigError, match="tp 2 needs GPUs"):
        L.LocalLLMServer(tp=2)  # the embedded model: would be converted first otherwise
    assert not (tmp_path / "cache").exists()


def test_a_recipe_tp_reaches_the_local_server(tmp_path, monkeypatch):
    """`llm: {tp: 2}` in a recipe: a stage that starts the local server on this CPU machine stops
    with the server's one line (before converting or starting anything)."""
    if L.on_gpu():
        pytest.skip("this machine has a GPU")
    import argparse

    from webinstruct.core import config as C
    from webinstruct.pipeline.llm.endpoint import llm_endpoint

    parser = argparse.ArgumentParser()
    C.add_arguments(parser, LLMConfig, section="llm", prefix="llm-")
    llm = C.from_args(LLMConfig, parser.parse_args([]), {"llm": {"tp": 2, "dp": 1}}, "llm", prefix="llm-")
    assert (llm.tp, llm.dp) == (2, 1)
    assert C.from_args(LLMConfig, parser.parse_args(["--llm-dp", "3"]), {}, "llm", prefix="llm-").dp == 3
    monkeypatch.setenv("WEBINSTRUCT_CACHE", str(tmp_path / "cache"))  # no detached server recorded there
    with pytest.raises(ConfigError, match="the LLM server's tp 2 needs GPUs"):
        with llm_endpoint(llm):
            pass
    assert not (tmp_path / "cache").exists()


def test_llm_serve_with_tp_on_this_cpu_exits_2_with_one_line(tmp_path):
    if L.on_gpu():
        pytest.skip("this machine has a GPU")
    env = dict(os.environ, WEBINSTRUCT_CACHE=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-m", "webinstruct.infra.cli", "llm", "serve", "--tp", "2"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines == ["webinstruct llm: error: the LLM server's tp 2 needs GPUs and this machine has none: "
                     "vLLM's CPU build runs one engine here (tp and dp 0 or 1)"], out.stderr
    assert out.stdout == "" and not (tmp_path / "cache").exists()


# --------------------------------------------------------------------------- vLLM's own reading

PARSE = r"""
import json, sys
from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
from vllm.utils.argparse_utils import FlexibleArgumentParser
out = []
for argv in json.loads(sys.argv[1]):
    args = make_arg_parser(FlexibleArgumentParser()).parse_args(argv)
    validate_parsed_serve_args(args)
    out.append({k: getattr(args, k) for k in ("model", "served_model_name", "port", "max_model_len",
                "tensor_parallel_size", "data_parallel_size", "gpu_memory_utilization", "enforce_eager",
                "enable_chunked_prefill", "max_num_batched_tokens", "dtype")})
print(json.dumps(out))
"""


@pytest.mark.slow
def test_vllm_reads_our_flags_as_meant(tmp_path):
    """The installed vLLM 0.32 (the CPU build here; the CUDA package of the GPU set is the same
    release) parses both command lines into the settings we mean."""
    big = model_folder(tmp_path / "70b", 64, 8, 141 * GB)
    gpu_cmd, _, _ = _command(big, H100, dp=2)
    cpu_cmd, _, _ = _command(big, P.Devices())
    argvs = [c[c.index("vllm.entrypoints.openai.api_server") + 1:] for c in (gpu_cmd, cpu_cmd)]
    out = subprocess.run([sys.executable, "-c", PARSE, json.dumps(argvs)], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    gpu, cpu = json.loads(out.stdout.strip().splitlines()[-1])
    assert (gpu["tensor_parallel_size"], gpu["data_parallel_size"], gpu["gpu_memory_utilization"]) == (4, 2, 0.9)
    assert gpu["model"] == big and gpu["served_model_name"] == ["m"] and gpu["port"] == 8123
    assert not gpu["enforce_eager"] and gpu["dtype"] == "auto"
    assert (cpu["tensor_parallel_size"], cpu["data_parallel_size"], cpu["gpu_memory_utilization"]) == (1, 1, 0.3)
    assert cpu["enforce_eager"] and cpu["enable_chunked_prefill"] is False and cpu["dtype"] == "bfloat16"
    assert cpu["max_num_batched_tokens"] == 4096 and cpu["max_model_len"] == 4096
