"""Program execution for MAmmoTH2's seed grader: the sandbox stops programs that write files,
use the network, start processes, loop or eat memory, counts them, and changes nothing outside
its temporary folder; the seed grader reads program outputs the way run_open.py did."""
from __future__ import annotations

import socket
import time

import pytest

from webinstruct.evaluation.benchmarks import load
from webinstruct.evaluation.grading import Verdict
from webinstruct.evaluation.grading.programs import ProgramPool, count_programs, run_program, wrap
from webinstruct.evaluation.grading.seed import grade_seed


@pytest.fixture(scope="module")
def pool():
    with ProgramPool(1) as p:
        yield p


@pytest.fixture(scope="module")
def kernel_only():
    """A sandbox without the audit hook: what the kernel alone (seccomp, namespace) stops."""
    with ProgramPool(1, preload=(), hook=False) as p:
        if p.layers["seccomp"] != "on":
            pytest.skip(f"seccomp not available here: {p.layers['seccomp']}")
        yield p


@pytest.fixture
def listener():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.3)
    yield srv, srv.getsockname()[1]
    srv.close()


def no_connection(srv) -> bool:
    try:
        conn, _ = srv.accept()
    except (socket.timeout, TimeoutError):
        return True
    conn.close()
    return False


def snapshot(path):
    return sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*"))


# ---------------------------------------------------------------- the upstream wrapping

def test_wrap_is_format_code():
    assert wrap("x = 1\nprint(x)") == "def run_it():\n  x = 1\n  print(x)\nrun_it()"


def test_a_program_prints_its_value(pool):
    result = pool.run("import math\nx = math.comb(5, 2)\nprint(x * 2)")
    assert (result.error, result.stdout, result.upstream_result) == ("", "20\n", "20")
    assert run_program("print(sum(range(5)))").stdout == "10\n"  # this process's shared sandbox


@pytest.mark.parametrize("code, stdout, error", [
    ("print(math.sqrt(4))", "", "exception: NameError"),  # code_utils never imported math
    ("print(StringIO.__name__)", "StringIO\n", ""),  # ... but it did import StringIO
    ("if __name__ == '__main__':\n    print(4)", "", ""),  # __name__ is 'code_utils'
    ("x = 5\nreturn\nprint(x)", "", ""),  # a bare return is legal inside run_it()
    ("print(1)\nexit()", "", "exit"),  # SystemExit loses what was printed
    ("print(1)\n1 / 0", "", "exception: ZeroDivisionError"),
    ("Let's compute.\nprint(3)", "", "syntax error"),  # prose around the code
    ("```python\nprint(3)\n```", "", "syntax error"),  # markdown fences
    ("def f(n):\n    return 1 if n < 2 else n * f(n - 1)\nprint(f(6))", "720\n", ""),
])
def test_upstream_quirks(pool, code, stdout, error):
    result = pool.run(code)
    assert (result.stdout if not result.error else "", result.error) == (stdout, error)


def test_every_program_starts_fresh(pool):
    assert pool.run("import math\nmath.leak = 1\nglobal g\ng = 2\nprint(1)").ok
    assert pool.run("import math\nprint(hasattr(math, 'leak'))\nprint(g)").error == "exception: NameError"
    assert pool.run("import math\nprint(hasattr(math, 'leak'))").stdout == "False\n"


def test_the_work_folder_is_fresh_and_removed(pool, tmp_path):
    first = pool.run("import os\nprint(os.getcwd())\nprint(os.listdir('.'))")
    folder, listing = first.stdout.split("\n")[:2]
    assert listing == "[]" and not str(folder).startswith(str(tmp_path))
    assert folder != pool.run("import os\nprint(os.getcwd())").stdout.strip()
    from pathlib import Path
    assert not Path(folder).exists()


# ---------------------------------------------------------------- what is stopped and counted

@pytest.mark.parametrize("code", [
    "open('out.txt', 'w').write('x')\nprint(1)",
    "with open('{target}', 'w') as f:\n    f.write('x')\nprint(1)",
    "import os\nfd = os.open('{target}', os.O_CREAT | os.O_WRONLY)\nprint(1)",
    "import pathlib\npathlib.Path('{target}').write_text('x')\nprint(1)",
    "import os\nos.remove('{keep}')\nprint(1)",
    "import shutil\nshutil.rmtree('{folder}')\nprint(1)",
    "import tempfile\ntempfile.mkstemp()\nprint(1)",
    "try:\n    open('{target}', 'w')\nexcept Exception:\n    pass\nprint(1)",  # the refusal cannot be caught
])
def test_file_writes_are_refused(pool, tmp_path, code):
    (tmp_path / "keep.txt").write_text("keep")
    before = snapshot(tmp_path)
    target = tmp_path / "written.txt"
    result = pool.run(code.format(target=target, keep=tmp_path / "keep.txt", folder=tmp_path))
    assert result.error == "refused: file write" and result.stdout == ""
    assert not target.exists() and snapshot(tmp_path) == before


@pytest.mark.parametrize("code", [
    "import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\nprint(1)",
    "import socket\ns = socket.socket()\nprint(1)",
    "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}/', timeout=1)\nprint(1)",
    "import socket\nprint(socket.gethostbyname('localhost'))",
])
def test_the_network_is_refused(pool, listener, code):
    srv, port = listener
    result = pool.run(code.format(port=port))
    assert result.error == "refused: network"
    assert no_connection(srv)


@pytest.mark.parametrize("code", [
    "import subprocess\nsubprocess.run(['touch', '{target}'])\nprint(1)",
    "import os\nos.system('touch {target}')\nprint(1)",
    "import os\nif os.fork() == 0:\n    open('{target}', 'w')\nprint(1)",
    "p = multiprocessing.Process(target=print, args=(1,))\np.start()\np.join()",  # code_utils' global
])
def test_processes_are_refused(pool, tmp_path, code):
    target = tmp_path / "spawned"
    result = pool.run(code.format(target=target))
    assert result.error == "refused: process"
    time.sleep(0.05)
    assert not target.exists()


def test_an_endless_loop_is_stopped(pool):
    start = time.monotonic()
    result = pool.run("while True:\n    pass", timeout=0.5)
    assert result.error == "timeout" and time.monotonic() - start < 3
    assert pool.run("import time\ntime.sleep(30)", timeout=0.3).error == "timeout"
    assert pool.run("print(7)").stdout == "7\n"  # the sandbox is still there


def test_too_much_memory_is_stopped(pool):
    result = pool.run("chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))", memory_mb=64)
    assert result.error == "memory"
    assert pool.run("x = bytearray(10**7)\nprint(len(x))", memory_mb=64).stdout == "10000000\n"


def test_the_sandbox_process_cannot_be_killed_from_inside(pool):
    assert pool.run("import os\nos.kill(os.getppid(), 9)").error == "refused: signal"
    assert pool.run("print(8)").stdout == "8\n"


def test_the_kernel_stops_what_gets_past_the_hook(kernel_only, tmp_path, listener):
    """Without the audit hook, seccomp and the network namespace still refuse (EPERM)."""
    srv, port = listener
    (tmp_path / "keep.txt").write_text("keep")
    before = snapshot(tmp_path)
    for code in [f"open('{tmp_path / 'written.txt'}', 'w')", f"import os\nos.remove('{tmp_path / 'keep.txt'}')",
                 f"import os\nos.rename('{tmp_path / 'keep.txt'}', '{tmp_path / 'moved'}')",
                 "open('local.txt', 'w')", f"import socket\nsocket.create_connection(('127.0.0.1', {port}))",
                 f"import subprocess\nsubprocess.run(['touch', '{tmp_path / 'spawned'}'])", "import os\nos.fork()",
                 "import os\nos.kill(os.getppid(), 9)"]:
        result = kernel_only.run(code + "\nprint(1)")
        assert result.error == "exception: PermissionError", (code, result)
    assert snapshot(tmp_path) == before and no_connection(srv)
    threads = "import threading\nt = threading.Thread(target=print, args=(5,))\nt.start()\nt.join()"
    assert kernel_only.run(threads).stdout == "5\n"  # threads are not processes


def test_run_many_keeps_order():
    from webinstruct.evaluation.grading.programs import run_programs
    codes = [f"print({i} * 2)" for i in range(6)] + ["while True: pass"]
    results = run_programs(codes, timeout=0.5, workers=2)
    assert [r.stdout for r in results[:6]] == [f"{2 * i}\n" for i in range(6)]
    assert results[6].error == "timeout"


# ---------------------------------------------------------------- the seed grader

@pytest.fixture(scope="module")
def items():
    return {name: load(name)[0] for name in ("gsm8k", "math", "mmlu_stem")}


def test_seed_grader_runs_mammoth2_programs(items):
    gsm = items["gsm8k"]  # Janet's ducks, gold "18"
    assert gsm.gold == "18"
    gold = int(gsm.gold)
    right = grade_seed(gsm, f"eggs = 16 - 3 - 4\nprint(eggs * {gold // 9})", "mammoth2")
    assert right == Verdict(gsm.gold, True, "program")
    wrong = grade_seed(gsm, f"print({gold + 1})", "mammoth2")
    assert (wrong.answer, wrong.correct, wrong.note) == (str(gold + 1), False, "program")
    silent = grade_seed(gsm, f"x = {gold}", "mammoth2")  # no "print(": read as text
    assert (silent.correct, silent.note) == (True, "no answer phrase")


def test_seed_grader_keeps_upstream_quirks(items):
    gsm = items["gsm8k"]
    fenced = f"Here is the code:\n```python\nprint({gsm.gold})\n```\nThe answer is {gsm.gold}"
    verdict = grade_seed(gsm, fenced, "mammoth2")  # KNOWN WRONG: prose around the code
    assert (verdict.answer, verdict.correct, verdict.note) == ("", False, "program error: syntax error")
    assert grade_seed(gsm, fenced, "mammoth2", programs=False).correct
    math_item = items["math"]  # vertical asymptotes of 2/(x^2+x-6), gold "2"
    assert math_item.gold == "2"
    solve = "x = sympy.Symbol('x')\nprint(len(sympy.solve(x**2 + x - 6, x)))"
    assert grade_seed(math_item, "import sympy\n" + solve, "mammoth2") == Verdict(math_item.gold, True, "program")
    no_import = grade_seed(math_item, solve, "mammoth2")  # the harness had sympy loaded, not in the program's scope
    assert (no_import.correct, no_import.note) == (False, "program error: exception: NameError")
    choice = items["mmlu_stem"]
    assert choice.gold == "C"
    assert grade_seed(choice, "print('C')", "mammoth2") == Verdict("C", True, "program")
    broken = grade_seed(choice, "print('C'", "mammoth2")
    assert (broken.answer, broken.note) == ("A", "program error: syntax error; not a letter -> A")
    # "print(" anywhere sends the whole output to the interpreter: a worked solution is lost.
    prose = grade_seed(gsm, f"Let me print({gsm.gold}) the answer.\nThe answer is {gsm.gold}", "mammoth2")
    assert prose.note == "program error: syntax error" and not prose.correct


def test_chat_and_metamath_never_run_programs(items, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("program executed")
    import webinstruct.evaluation.grading.programs as programs
    monkeypatch.setattr(programs, "run_program", refuse)
    gsm = items["gsm8k"]
    output = f"We could print({gsm.gold}) here.\nThe answer is: {gsm.gold}"
    for protocol in ("chat", "metamath"):
        verdict = grade_seed(gsm, output, protocol)
        assert verdict.correct and not verdict.note.startswith("program")
    assert grade_seed(gsm, output, "mammoth2", programs=False).correct
    with pytest.raises(AssertionError, match="program executed"):
        grade_seed(gsm, output, "mammoth2")


def test_count_programs():
    verdicts = [Verdict("1", True, "program"), Verdict("", False, "program error: timeout"),
                Verdict("", False, "program: no output"), Verdict("2", True, ""),
                {"answer": "", "correct": False, "note": "program error: refused: network; not a letter -> A"}]
    assert count_programs(verdicts) == {"programs_executed": 4, "program_errors": 2}
