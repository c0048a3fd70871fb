"""Run a model's program the way MAmmoTH2's harness did, but in a sandbox.

MAmmoTH2's math_eval executes any output that contains "print(" (run_open.py and run_choice.py
both do): the whole text is put inside `def run_it():` (every line indented two spaces, then a
call `run_it()`), exec'd in a forked process with the globals of its code_utils module, stdout
captured by `redirect_stdout` into a StringIO; the printed text, stripped of newlines, is the
result, and any exception, exit or the 5 s timeout gives "". We keep all of that (see `wrap`)
and run it where it cannot reach the network, start processes or change files:

- a sandbox process ("zygote", one per pool worker) is a fresh `python -I -B` (isolated: no
  user site, no PYTHON* variables; environment scrubbed) with numpy and sympy imported once (upstream's
  forked child had the harness's modules loaded too; a program still needs its own import); it
  lives in its own network namespace when the kernel allows one (`unshare(CLONE_NEWNET)`, or
  with CLONE_NEWUSER where unprivileged), so there is no interface but a down loopback;
- each program runs in a child forked from it, so every program starts from the same state;
  the child starts a new session, gets a fresh temporary working directory (removed after),
  stdin/stdout/stderr on /dev/null and no other inherited descriptors, and resource limits:
  RLIMIT_CPU (timeout + 2 s), RLIMIT_AS (the warmed interpreter's size + `memory_mb`),
  RLIMIT_FSIZE 0, RLIMIT_CORE 0, RLIMIT_NOFILE 256;
- a seccomp filter (x86_64 and aarch64; installed unprivileged with no_new_privs) refuses in
  the kernel: sockets, process creation (fork, vfork, exec, clone without CLONE_THREAD; threads
  stay possible), opening files for writing, and every call that creates, removes, renames or
  changes a file; signals to other processes, raising limits, namespaces, mounts, ptrace,
  io_uring, bpf and similar;
- a Python audit hook, installed last, stops the program at the first attempt (socket,
  urllib/http, subprocess/os.system/os.exec*/os.fork/os.posix_spawn, open for writing,
  os.remove/rename/mkdir/chmod/..., shutil and tempfile writers, ctypes, signals to other
  processes, setrlimit) and reports which kind it was ("refused: network", ...). The hook is the
  precise, readable layer; the seccomp filter is the one a program cannot talk its way out of
  (a bypass of the hook meets EPERM, seen as "exception: PermissionError"; so does what no
  audit event announces, e.g. the semaphore files in /dev/shm that multiprocessing.Pool makes).
- a wall-clock timeout: the sandbox process kills the child's process group when it passes.

Where seccomp is not available the child falls back to RLIMIT_NPROC 0 (no processes, no
threads; ignored for root) and the hook; `ProgramPool.layers` says what is in effect.

Error kinds (`ProgramResult.error`, "" when the program ran to the end): "syntax error",
"timeout", "memory", "exit" (SystemExit or the process ending without a result),
"exception: <Type>", "refused: network|process|file write|ctypes|signal|limits|tamper",
"crashed: signal <n>", "sandbox failure".

This module imports only the standard library: it is also the sandbox process's script.
"""
from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TIMEOUT = 5.0  # seconds; execute_with_timeout's default in MAmmoTH2's utils.py
DEFAULT_MEMORY_MB = 2048  # address space a program may add to the warmed interpreter
DEFAULT_PRELOAD = ("numpy", "sympy")  # imported once in the sandbox process (the harness had them loaded)
_REPLY_GRACE = 30.0  # seconds past a program's timeout before the sandbox process itself is presumed stuck


@dataclass(frozen=True)
class ProgramResult:
    stdout: str  # everything the program printed (sys.stdout only, as upstream captured it)
    error: str = ""  # "" when it ran to the end, else the kind (see the module docstring)
    detail: str = ""  # the exception message, the refused event, the signal
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def upstream_result(self) -> str:
        """What MAmmoTH2's execute_with_timeout returned: stdout stripped of newlines, "" on failure."""
        return self.stdout.strip("\n") if self.ok else ""


def wrap(code: str) -> str:
    """MAmmoTH2's format_code: the text as the body of `run_it()`, then the call."""
    return "def run_it():\n" + "".join("  " + line + "\n" for line in code.split("\n")) + "run_it()"


def count_programs(verdicts) -> dict[str, int]:
    """How many verdicts ran a program and how many of those failed, from their notes ("program",
    "program: no output", "program error: <kind>"). Takes Verdicts, their dicts, or notes."""
    executed = errors = 0
    for v in verdicts:
        note = v if isinstance(v, str) else (v.get("note", "") if isinstance(v, dict) else getattr(v, "note", ""))
        note = note or ""
        if note.startswith("program"):
            executed += 1
            errors += note.startswith("program error")
    return {"programs_executed": executed, "program_errors": errors}


# ---------------------------------------------------------------- the caller's side

def _message_write(fd: int, obj) -> None:
    data = json.dumps(obj).encode()
    data = struct.pack("<I", len(data)) + data
    while data:
        data = data[os.write(fd, data):]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes | None:
    """n bytes from fd, or None at EOF or past the deadline."""
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _message_read(fd: int, deadline: float | None = None):
    head = _read_exact(fd, 4, deadline)
    if head is None:
        return None
    body = _read_exact(fd, struct.unpack("<I", head)[0], deadline)
    return None if body is None else json.loads(body)


def _scrubbed_env() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class _Sandbox:
    """One sandbox process and the programs sent to it, one at a time."""

    def __init__(self, preload=DEFAULT_PRELOAD, hook: bool = True, wait: bool = True):
        self.config = {"preload": list(preload), "hook": hook}
        self.lock = threading.Lock()
        self.proc = None
        self.layers: dict = {}
        self._spawn()
        if wait:
            self._ready()

    def _start(self) -> None:
        self._spawn()
        self._ready()

    def _spawn(self) -> None:
        self.errors = tempfile.TemporaryFile()  # the sandbox process's own stderr (programs' goes to /dev/null)
        self.root = tempfile.mkdtemp(prefix="webinstruct-programs-")  # the programs' folders go in here
        config = {**self.config, "root": self.root}
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-B", str(Path(__file__).resolve()), "--serve", json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors,
            env=_scrubbed_env(), cwd=tempfile.gettempdir(), start_new_session=True, close_fds=True)

    def _ready(self) -> None:
        ready = _message_read(self.proc.stdout.fileno(), time.monotonic() + 120)
        if not ready or not ready.get("ready"):
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.errors.seek(0)
            tail = self.errors.read().decode(errors="replace")[-2000:]
            self._kill(now=True)
            raise RuntimeError(f"the program sandbox did not start:\n{tail}")
        self.layers = ready["layers"]

    def _kill(self, now: bool = False) -> None:
        """Stop the sandbox process: closing its stdin ends it after the program in hand; `now`
        kills it (its program child dies with it: PR_SET_PDEATHSIG)."""
        if self.proc is None:
            return
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            if now:
                raise subprocess.TimeoutExpired(self.proc.args, 0)
            self.proc.wait(timeout=_REPLY_GRACE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self.errors.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def run(self, code: str, timeout: float, memory_mb: int) -> ProgramResult:
        request = {"code": code, "timeout": float(timeout), "memory_mb": int(memory_mb)}
        with self.lock:
            for _ in (0, 1):
                if self.proc is None:
                    self._start()
                try:
                    _message_write(self.proc.stdin.fileno(), request)
                    reply = _message_read(self.proc.stdout.fileno(), time.monotonic() + timeout + _REPLY_GRACE)
                except OSError:
                    reply = None
                if reply is not None:
                    return ProgramResult(reply["stdout"], reply["error"], reply["detail"], reply["seconds"])
                self._kill(now=True)  # the sandbox process died or hung: a fresh one, and the program once more
            return ProgramResult("", "sandbox failure", "the sandbox process stopped twice")

    def close(self) -> None:
        with self.lock:
            self._kill()


class ProgramPool:
    """`workers` sandbox processes, started now and kept until `close()` (also a context manager).
    Each program runs in a fresh child of one of them. `preload`: modules the sandbox processes
    import once (programs still need their own import statements). `hook=False` leaves only the
    kernel-side limits (for tests of that layer)."""

    def __init__(self, workers: int = 1, preload=DEFAULT_PRELOAD, hook: bool = True):
        self._free: list[_Sandbox] = []
        self._cond = threading.Condition()
        self.workers = max(1, int(workers))
        self._all = self._free
        try:
            for _ in range(self.workers):  # started together, then waited for
                self._free.append(_Sandbox(preload, hook, wait=False))
            for box in self._free:
                box._ready()
        except Exception:
            self.close()
            raise
        self._all = list(self._free)
        self.layers = self._all[0].layers

    def run(self, code: str, timeout: float = DEFAULT_TIMEOUT, memory_mb: int = DEFAULT_MEMORY_MB) -> ProgramResult:
        with self._cond:
            while not self._free:
                self._cond.wait()
            box = self._free.pop()
        try:
            return box.run(code, timeout, memory_mb)
        finally:
            with self._cond:
                self._free.append(box)
                self._cond.notify()

    def run_many(self, codes, timeout: float = DEFAULT_TIMEOUT, memory_mb: int = DEFAULT_MEMORY_MB) -> list[ProgramResult]:
        codes = list(codes)
        if self.workers == 1 or len(codes) < 2:
            return [self.run(c, timeout, memory_mb) for c in codes]
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(self.workers) as ex:
            return list(ex.map(lambda c: self.run(c, timeout, memory_mb), codes))

    def close(self) -> None:
        for box in self._all:  # stdin closed on all first: they wind down together
            if box.proc is not None:
                box.proc.stdin.close()
        for box in self._all:
            box.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_shared: dict = {}
_shared_lock = threading.Lock()


def _shared_pool() -> ProgramPool:
    """One sandbox process per grading process, started on first use, closed at exit."""
    with _shared_lock:
        pool = _shared.get(os.getpid())
        if pool is None:
            _shared.clear()  # a forked process does not reuse its parent's pipes
            pool = _shared[os.getpid()] = ProgramPool(1)
            atexit.register(pool.close)
        return pool


def run_program(code: str, timeout: float = DEFAULT_TIMEOUT, memory_mb: int = DEFAULT_MEMORY_MB,
                pool: ProgramPool | None = None) -> ProgramResult:
    """Run `code` as MAmmoTH2 did (wrapped in `run_it()`, stdout captured), in a sandbox child.
    Without `pool`, this process's shared sandbox (one worker, started on first use)."""
    return (pool or _shared_pool()).run(code, timeout, memory_mb)


def run_programs(codes, timeout: float = DEFAULT_TIMEOUT, memory_mb: int = DEFAULT_MEMORY_MB,
                 workers: int = 2, pool: ProgramPool | None = None) -> list[ProgramResult]:
    """`run_program` for many, in order, `workers` at a time (a pool of its own unless given)."""
    if pool is not None:
        return pool.run_many(codes, timeout, memory_mb)
    with ProgramPool(workers) as own:
        return own.run_many(codes, timeout, memory_mb)


# ---------------------------------------------------------------- the sandbox process

# Syscall numbers: (x86_64, generic = aarch64); None where the architecture has no such call.
_SYSCALLS = {
    "socket": (41, 198), "socketpair": (53, 199), "connect": (42, 203), "bind": (49, 200),
    "listen": (50, 201), "accept": (43, 202), "accept4": (288, 242),
    "fork": (57, None), "vfork": (58, None), "execve": (59, 221), "execveat": (322, 281),
    "creat": (85, None), "unlink": (87, None), "unlinkat": (263, 35), "rename": (82, None),
    "renameat": (264, 38), "renameat2": (316, 276), "mkdir": (83, None), "mkdirat": (258, 34),
    "rmdir": (84, None), "link": (86, None), "linkat": (265, 37), "symlink": (88, None),
    "symlinkat": (266, 36), "chmod": (90, None), "fchmod": (91, 52), "fchmodat": (268, 53),
    "fchmodat2": (452, 452), "chown": (92, None), "fchown": (93, 55), "lchown": (94, None),
    "fchownat": (260, 54), "truncate": (76, 45), "ftruncate": (77, 46), "mknod": (133, None),
    "mknodat": (259, 33), "utime": (132, None), "utimes": (235, None), "utimensat": (280, 88),
    "futimesat": (261, None), "setxattr": (188, 5), "lsetxattr": (189, 6), "fsetxattr": (190, 7),
    "removexattr": (197, 14), "lremovexattr": (198, 15), "fremovexattr": (199, 16),
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "pidfd_open": (434, 434), "pidfd_send_signal": (424, 424), "pidfd_getfd": (438, 438),
    "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41), "chroot": (161, 51),
    "unshare": (272, 97), "setns": (308, 268), "setrlimit": (160, 164), "bpf": (321, 280),
    "perf_event_open": (298, 241), "userfaultfd": (323, 282), "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426), "io_uring_register": (427, 427), "keyctl": (250, 219),
    "add_key": (248, 217), "request_key": (249, 218), "open_by_handle_at": (304, 265),
    "name_to_handle_at": (303, 264), "fanotify_init": (300, 262), "reboot": (169, 142),
    "kexec_load": (246, 104), "kexec_file_load": (320, 294), "init_module": (175, 105),
    "finit_module": (313, 273), "delete_module": (176, 106), "swapon": (167, 224),
    "swapoff": (168, 225), "sethostname": (170, 161), "setdomainname": (171, 162),
    "settimeofday": (164, 170), "clock_settime": (227, 112), "clock_adjtime": (305, 266),
    "adjtimex": (159, 171), "acct": (163, 89), "quotactl": (179, 60), "setuid": (105, 146),
    "setgid": (106, 144), "setreuid": (113, 145), "setregid": (114, 143), "setresuid": (117, 147),
    "setresgid": (119, 149), "setgroups": (116, 159), "setfsuid": (122, 151), "setfsgid": (123, 152),
    "capset": (126, 91), "personality": (135, 92), "memfd_create": (319, 279), "shmget": (29, 194),
    "msgget": (68, 186), "mq_open": (240, 180), "fsopen": (430, 430), "fsmount": (432, 432),
    "move_mount": (429, 429), "open_tree": (428, 428), "fspick": (433, 433), "mount_setattr": (442, 442),
}
_CHECKED = {  # calls allowed only with some arguments (see _seccomp_filter)
    "clone": (56, 220), "clone3": (435, 435), "open": (2, None), "openat": (257, 56), "openat2": (437, 437),
    "kill": (62, 129), "tkill": (200, 130), "tgkill": (234, 131), "rt_sigqueueinfo": (129, 138),
    "rt_tgsigqueueinfo": (297, 240), "prlimit64": (302, 261), "ioctl": (16, 29),
}
_ARCHES = {"x86_64": (0, 0xC000003E), "amd64": (0, 0xC000003E), "aarch64": (1, 0xC00000B7), "arm64": (1, 0xC00000B7)}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_CLONE_THREAD = 0x00010000
_TIOCSTI, _TIOCLINUX = 0x5412, 0x541C
_EPERM, _ENOSYS = 1, 38


def _seccomp_filter(machine: str, pid: int) -> list[tuple[int, int, int, int]] | None:
    """The BPF program (code, jt, jf, k) for this architecture, or None when we have no table."""
    if machine not in _ARCHES:
        return None
    column, audit_arch = _ARCHES[machine]
    ld, jeq, jset, jge, ret = 0x20, 0x15, 0x45, 0x35, 0x06
    allow, deny, enosys, kill = 0x7FFF0000, 0x00050000 | _EPERM, 0x00050000 | _ENOSYS, 0x80000000
    nr = {name: nums[column] for name, nums in {**_SYSCALLS, **_CHECKED}.items() if nums[column] is not None}

    def arg(i, high=False):
        return 16 + 8 * i + (4 if high else 0)

    prog: list = [(ld, 0, 0, 4), (jeq, 1, 0, audit_arch), (ret, 0, 0, kill), (ld, 0, 0, 0)]
    if column == 0:
        prog.append((jge, "deny", 0, 0x40000000))  # x32 system calls
    prog += [(jeq, "deny", 0, nr[name]) for name in _SYSCALLS if name in nr]
    prog += [(jeq, "enosys", 0, nr["clone3"]), (jeq, "enosys", 0, nr["openat2"]),
             (jeq, "clone", 0, nr["clone"]), (jeq, "openat", 0, nr["openat"]),
             (jeq, "prlimit", 0, nr["prlimit64"]), (jeq, "ioctl", 0, nr["ioctl"])]
    if "open" in nr:
        prog.append((jeq, "open", 0, nr["open"]))
    prog += [(jeq, "signal", 0, nr[name]) for name in ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")]
    prog.append((ret, 0, 0, allow))
    labels: dict[str, int] = {}

    def label(name):
        labels[name] = len(prog)

    label("clone")  # threads only
    prog += [(ld, 0, 0, arg(0)), (jset, "allow", "deny", _CLONE_THREAD)]
    if "open" in nr:
        label("open")
        prog += [(ld, 0, 0, arg(1)), (jset, "deny", "allow", _WRITE_FLAGS)]
    label("openat")
    prog += [(ld, 0, 0, arg(2)), (jset, "deny", "allow", _WRITE_FLAGS)]
    label("prlimit")  # reading limits only
    prog += [(ld, 0, 0, arg(2)), (jeq, 0, "deny", 0), (ld, 0, 0, arg(2, True)), (jeq, "allow", "deny", 0)]
    label("ioctl")  # no faking terminal input
    prog += [(ld, 0, 0, arg(1)), (jeq, "deny", 0, _TIOCSTI), (jeq, "deny", "allow", _TIOCLINUX)]
    label("signal")  # to itself (its pid, its process group) only
    prog += [(ld, 0, 0, arg(0)), (jeq, "allow", 0, pid), (jeq, "allow", 0, 0),
             (jeq, "allow", "deny", (-pid) & 0xFFFFFFFF)]
    label("allow")
    prog.append((ret, 0, 0, allow))
    label("deny")
    prog.append((ret, 0, 0, deny))
    label("enosys")
    prog.append((ret, 0, 0, enosys))
    out = []
    for i, (code, jt, jf, k) in enumerate(prog):
        jt = labels[jt] - i - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - i - 1 if isinstance(jf, str) else jf
        if not (0 <= jt <= 255 and 0 <= jf <= 255):
            raise ValueError("seccomp jump out of range")
        out.append((code, jt, jf, k))
    return out


class _Kernel:
    """ctypes handles made once in the sandbox process (before any program runs)."""

    def __init__(self):
        import ctypes
        self.ctypes = ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)

        class SockFilter(ctypes.Structure):
            _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]

        class SockFprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

        self.SockFilter, self.SockFprog = SockFilter, SockFprog
        self.machine = os.uname().machine
        self.linux = sys.platform.startswith("linux")
        self.pid = os.getpid()  # the sandbox process
        self._filter, self._pid_slots = None, []
        program = _seccomp_filter(self.machine, 1000) if self.linux else None
        if program is not None:
            other = _seccomp_filter(self.machine, 2000)
            self._pid_slots = [(i, a[3] == 1000) for i, (a, b) in enumerate(zip(program, other)) if a != b]
            self._filter = (SockFilter * len(program))(*[SockFilter(*ins) for ins in program])

    def seccomp(self, pid: int) -> str:
        """Install the filter in this process; "" when done, else why not. The filter is built
        once (with a stand-in pid, found again by where it differs) and patched per child."""
        if self._filter is None:
            return f"no system call table for {self.machine}"
        ct, array = self.ctypes, self._filter
        for i, plain in self._pid_slots:
            array[i].k = pid if plain else (-pid) & 0xFFFFFFFF
        fprog = self.SockFprog(len(array), ct.cast(array, ct.POINTER(self.SockFilter)))
        if self.libc.prctl(38, ct.c_ulong(1), ct.c_ulong(0), ct.c_ulong(0), ct.c_ulong(0)) != 0:  # PR_SET_NO_NEW_PRIVS
            return "prctl(PR_SET_NO_NEW_PRIVS): " + os.strerror(ct.get_errno())
        if self.libc.prctl(22, ct.c_ulong(2), ct.byref(fprog), ct.c_ulong(0), ct.c_ulong(0)) != 0:  # PR_SET_SECCOMP, FILTER
            return "prctl(PR_SET_SECCOMP): " + os.strerror(ct.get_errno())
        return ""

    def unshare_network(self) -> str:
        """Move this (still single-threaded) process into a new network namespace."""
        if not self.linux:
            return "none: not Linux"
        for flags, name in ((0x40000000, "network namespace"), (0x10000000 | 0x40000000, "user+network namespace")):
            if self.libc.unshare(flags) == 0:
                return name
        return "none: " + os.strerror(self.ctypes.get_errno())


_NETWORK_EVENTS = {"urllib.Request", "http.client.connect", "http.client.send", "ftplib.connect", "smtplib.connect",
                   "nntplib.connect", "poplib.connect", "imaplib.open", "telnetlib.Telnet.open", "webbrowser.open"}
_PROCESS_EVENTS = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                   "os.forkpty", "pty.spawn", "os.startfile"}
_FILE_EVENTS = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.chflags",
                "os.lchflags", "os.link", "os.symlink", "os.truncate", "os.utime", "os.setxattr",
                "os.removexattr", "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.copytree",
                "shutil.rmtree", "shutil.move", "shutil.chown", "shutil.make_archive", "shutil.unpack_archive",
                "tempfile.mkstemp", "tempfile.mkdtemp"}
_CTYPES_EVENTS = {"ctypes.dlopen", "ctypes.dlsym", "ctypes.dlsym/handle", "ctypes.cdata", "ctypes.cdata/buffer",
                  "ctypes.string_at", "ctypes.wstring_at", "ctypes.call_function"}
_EVENT_KINDS = {**{e: "network" for e in _NETWORK_EVENTS}, **{e: "process" for e in _PROCESS_EVENTS},
                **{e: "file write" for e in _FILE_EVENTS}, **{e: "ctypes" for e in _CTYPES_EVENTS},
                "resource.setrlimit": "limits", "resource.prlimit": "limits"}


def _send(fd: int, obj) -> None:
    data = json.dumps(obj).encode()
    while data:
        data = data[os.write(fd, data):]


def _install_hook(result_fd: int, pid: int) -> None:
    """Stop the program, reporting the kind, at its first attempt at anything refused."""
    kinds, writing = _EVENT_KINDS, _WRITE_FLAGS

    def refuse(kind, event):
        try:
            _send(result_fd, {"stdout": "", "error": "refused: " + kind, "detail": event})
        finally:
            os._exit(0)

    def hook(event, args):
        kind = kinds.get(event)
        if kind is not None:
            refuse(kind, event)
        elif event.startswith("socket."):
            refuse("network", event)
        elif event == "open":
            mode, flags = args[1], args[2]
            if (isinstance(flags, int) and flags & writing) or (isinstance(mode, str) and any(c in mode for c in "wax+")):
                refuse("file write", f"open({args[0]!r}, {mode!r})")
        elif event in ("os.kill", "os.killpg"):
            if args[0] not in (pid, 0, -pid):
                refuse("signal", f"{event}({args[0]})")
        elif event == "object.__setattr__" and len(args) > 1 and args[1] == "__code__":
            refuse("tamper", "setting __code__")

    sys.addaudithook(hook)


def _isolate(memory_mb: int, timeout: float, workdir: str, kernel: _Kernel, use_seccomp: bool) -> None:
    """New session, /dev/null for 0-2, nothing open but those and the result pipe (fd 3), the
    work directory, the limits, the seccomp filter (RLIMIT_NPROC 0 without it)."""
    import resource
    if kernel.linux:  # PR_SET_PDEATHSIG: die with the sandbox process
        kernel.libc.prctl(1, kernel.ctypes.c_ulong(signal.SIGKILL), kernel.ctypes.c_ulong(0),
                          kernel.ctypes.c_ulong(0), kernel.ctypes.c_ulong(0))
    if os.getppid() != kernel.pid:  # it died before that
        os._exit(1)
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(4, 1 << 16)
    os.chdir(workdir)
    os.environ.update({"HOME": workdir, "TMPDIR": workdir})
    try:
        with open("/proc/self/statm") as f:
            base = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        base = 0
    cpu = int(timeout) + 2
    for limit, value in ((resource.RLIMIT_CPU, (cpu, cpu + 1)), (resource.RLIMIT_FSIZE, (0, 0)),
                         (resource.RLIMIT_CORE, (0, 0)), (resource.RLIMIT_NOFILE, (256, 256)),
                         (resource.RLIMIT_AS, (base + memory_mb * 2**20,) * 2)):
        resource.setrlimit(limit, value)
    why = kernel.seccomp(os.getpid()) if use_seccomp else "off"
    if why:
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))


def _child(code: str, memory_mb: int, timeout: float, result_fd: int, workdir: str, kernel: _Kernel,
           use_seccomp: bool, hook: bool) -> None:
    """In the forked child: isolate, limit, run, report. Never returns."""
    import builtins
    import contextlib
    import io
    try:
        if result_fd != 3:
            os.dup2(result_fd, 3)
        result_fd = 3
        try:
            _isolate(memory_mb, timeout, workdir, kernel, use_seccomp)
        except BaseException as e:
            _send(result_fd, {"stdout": "", "error": "sandbox failure", "detail": f"{type(e).__name__}: {e}"[:300]})
            raise
        pid = os.getpid()
        # What the program sees as globals: MAmmoTH2's code_utils module (its imports included).
        import multiprocessing
        namespace = {"__name__": "code_utils", "__builtins__": builtins, "multiprocessing": multiprocessing,
                     "threading": threading, "StringIO": io.StringIO, "redirect_stdout": contextlib.redirect_stdout}
        if hook:
            _install_hook(result_fd, pid)
        reply = {"stdout": "", "error": "", "detail": ""}
        try:
            compiled = compile(wrap(code), "<program>", "exec")
        except (SyntaxError, ValueError) as e:  # ValueError: NUL bytes in the source
            reply.update(error="syntax error", detail=f"{type(e).__name__}: {e}")
        else:
            buffer = io.StringIO()
            try:
                with contextlib.redirect_stdout(buffer):
                    exec(compiled, namespace, {})
                reply["stdout"] = buffer.getvalue()
            except MemoryError as e:
                reply.update(error="memory", detail=str(e)[:200])
            except (SystemExit, KeyboardInterrupt) as e:
                reply.update(error="exit", detail=f"{type(e).__name__}: {e}"[:200])
            except BaseException as e:
                try:
                    detail = f"{type(e).__name__}: {e}"[:300]
                except BaseException:
                    detail = type(e).__name__
                reply.update(error=f"exception: {type(e).__name__}", detail=detail)
        try:
            _send(result_fd, reply)
        except MemoryError:
            _send(result_fd, {"stdout": "", "error": "memory", "detail": "output too large"})
    finally:
        os._exit(0)


def _run_one(request: dict, root: str, kernel: _Kernel, use_seccomp: bool, hook: bool) -> dict:
    """Fork a child for one program, wait for it at most `timeout` seconds, clean up."""
    start = time.monotonic()
    timeout = request["timeout"]
    workdir = tempfile.mkdtemp(dir=root)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _child(request["code"], request["memory_mb"], timeout, w, workdir, kernel, use_seccomp, hook)
    os.close(w)
    chunks, timed_out, deadline = [], False, start + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([r], [], [], left)[0]:
            timed_out = True
            break
        chunk = os.read(r, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    if timed_out:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.kill(pid, signal.SIGKILL)  # in case it died before its setsid
        except ProcessLookupError:
            pass
    os.close(r)
    _, status = os.waitpid(pid, 0)
    shutil.rmtree(workdir, ignore_errors=True)
    seconds = time.monotonic() - start
    reply = None
    if chunks and not timed_out:
        try:
            reply = json.loads(b"".join(chunks))
        except ValueError:
            reply = {"stdout": "", "error": "exception: garbled result", "detail": "the program wrote over its result"}
    if reply is None:
        if timed_out:
            reply = {"stdout": "", "error": "timeout", "detail": f"wall clock {timeout:g} s"}
        elif os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            kind = {signal.SIGXCPU: "timeout", signal.SIGXFSZ: "refused: file write"}.get(sig, f"crashed: signal {sig}")
            reply = {"stdout": "", "error": kind, "detail": signal.Signals(sig).name}
        else:
            reply = {"stdout": "", "error": "exit", "detail": f"exit status {os.WEXITSTATUS(status)}"}
    reply["seconds"] = round(seconds, 4)
    return reply


def _serve(config: dict) -> None:
    """The sandbox process: requests on stdin, replies on stdout, until stdin closes."""
    kernel = _Kernel()
    network = kernel.unshare_network()  # first, while single-threaded
    for name in config["preload"]:
        try:
            __import__(name)
        except Exception:
            pass
    import contextlib  # noqa: F401 - the children's namespace uses these; import them once here
    import io  # noqa: F401
    import multiprocessing  # noqa: F401
    import resource  # noqa: F401
    root = config["root"]
    use_seccomp = _probe_seccomp(kernel)
    layers = {"network": network, "seccomp": "on" if use_seccomp == "" else "unavailable: " + use_seccomp,
              "hook": config["hook"]}
    import gc
    gc.collect()
    gc.freeze()  # children share the warmed heap instead of copying it page by page
    try:
        _message_write(1, {"ready": True, "layers": layers})
        while True:
            request = _message_read(0)
            if request is None:
                break
            _message_write(1, _run_one(request, root, kernel, use_seccomp == "", config["hook"]))
    finally:
        shutil.rmtree(root, ignore_errors=True)  # (the caller removes it too, should this process be killed)


def _probe_seccomp(kernel: _Kernel) -> str:
    """"" when a child can install the filter and is then refused a socket, else why not."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            why = kernel.seccomp(os.getpid())
            if not why:
                import socket
                try:
                    socket.socket().close()
                    why = "filter installed but a socket was allowed"
                except PermissionError:
                    pass
            os.write(w, why.encode()[:500] or b"ok")
        finally:
            os._exit(0)
    os.close(w)
    answer = b""
    while chunk := os.read(r, 4096):
        answer += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return "" if answer == b"ok" else (answer.decode(errors="replace") or "probe failed")


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    _serve(json.loads(sys.argv[2]))
