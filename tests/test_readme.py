"""Every command the README shows still parses: `webinstruct ...` lines through the real parser and
the settings validation (`--print-config`, so nothing runs), `make ...` lines through the Makefile
(the target must exist; `make -n` prints the `webinstruct` lines it would run, which are checked the
same way), and the trainer lines of DeepSpeed's launcher through the trainer's own parser.

`make -n` is run with `-o $(VENV)/.installed`, so the install step is never planned, and with `WI` and
`PY` replaced by markers, so the lines are found whatever the virtualenv's path. Commands that are
not this project's (pip, `python bench/...`, zcat) are not checked."""
from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess

import pytest

from conftest import ROOT

README = (ROOT / "README.md").read_text()
WI, PY = "__WEBINSTRUCT__", "__PYTHON__"
TRAINER = "webinstruct.training.trainer"
# Subcommands whose function stops after printing the settings when --print-config is set.
PRINTABLE = {"cmd_recall", "cmd_extract", "cmd_refine", "cmd_augment", "cmd_train", "cmd_eval",
             "cmd_classifier_train", "cmd_domains_select", "cmd_domains_round", "cmd_domains_fetch"}


def _expand(cmd: str) -> list[str]:
    """README shorthand -> commands: `webinstruct domains table / select / round` is three,
    `webinstruct llm serve [--detach]` is two (with and without the optional part)."""
    pieces = [p.strip() for p in cmd.split(" / ")]
    first = pieces[0].split()
    out = [pieces[0]] + [" ".join(first[:len(first) - len(p.split())] + p.split()) for p in pieces[1:]]
    expanded = []
    for c in out:
        if re.search(r"\[[^\]]*\]", c):
            expanded += [re.sub(r"\s*\[[^\]]*\]", "", c), re.sub(r"\[([^\]]*)\]", r"\1", c)]
        else:
            expanded.append(c)
    return [" ".join(c.split()) for c in expanded]


def readme_commands() -> list[str]:
    """`webinstruct`, `make` and trainer-launch commands in code blocks and inline code."""
    found: list[str] = []
    blocks = re.findall(r"```[^\n]*\n(.*?)```", README, flags=re.S)
    for block in blocks:
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(("webinstruct ", "make ")) or line in ("make", "webinstruct"):
                found.append(line)
    prose = re.sub(r"```.*?```", "", README, flags=re.S)
    for code in re.findall(r"`([^`]+)`", prose):
        code = " ".join(code.split())
        if code.startswith(("webinstruct ", "make ")) or (TRAINER in code and code.startswith(("deepspeed", "torchrun", "python"))):
            found.append(code)
    return list(dict.fromkeys(c for raw in found for c in _expand(raw)))


COMMANDS = readme_commands()


def check_webinstruct(argv: list[str]) -> None:
    from webinstruct.infra import cli

    try:
        args = cli.parse_args(argv)
    except SystemExit as stop:  # --help exits 0; a parse error exits 2
        assert stop.code == 0, f"webinstruct {shlex.join(argv)}: rejected by the parser"
        return
    if args.func.__name__ in PRINTABLE:
        args.print_config = True
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert args.func(args) == 0
        assert out.getvalue().startswith("# webinstruct")


def check_trainer(cmd: str) -> None:
    from webinstruct.training import trainer

    tokens = shlex.split(cmd)
    at = next(i for i, t in enumerate(tokens) if t in ("--module", "-m") and tokens[i + 1] == TRAINER)
    trainer.load_from_args(trainer.parser().parse_args(tokens[at + 2:]))


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), flags=re.M))


def make_lines(tokens: list[str]) -> list[list[str]]:
    """The `webinstruct` argv lists `make -n` prints for these targets and variables."""
    out = subprocess.run(["make", "-n", "-s", "-C", str(ROOT), "-o", ".venv/.installed", "VENV=.venv",
                          f"WI={WI}", f"PY={PY}", *tokens], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    text = out.stdout.replace("\\\n", " ")
    found = []
    for segment in text.split(WI)[1:]:
        found.append(shlex.split(re.split(r";|&&|\|\||\n", segment, maxsplit=1)[0]))
    return found


def test_readme_has_commands():
    assert any(c.startswith("webinstruct ") for c in COMMANDS) and any(c.startswith("make ") for c in COMMANDS)


@pytest.mark.parametrize("cmd", COMMANDS)
def test_readme_command_parses(cmd):
    if cmd.startswith("webinstruct "):
        check_webinstruct(shlex.split(cmd)[1:])
    elif cmd.startswith("make"):
        tokens = shlex.split(cmd)[1:]
        targets = [t for t in tokens if "=" not in t]
        missing = set(targets) - make_targets()
        assert not missing, f"no Makefile target {sorted(missing)}"
        for argv in make_lines(tokens):
            check_webinstruct(argv)
    else:
        check_trainer(cmd)


def test_make_lines_are_found():
    lines = make_lines(["demo"])
    assert ["recall", "--config", "infra/recipes/sample.yaml", "--run", "runs/sample"] in lines
    assert ["llm", "stop"] in lines and len(lines) >= 6
