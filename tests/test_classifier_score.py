"""A scorer-neutral classifier: classifier.json's "normalization" states the steps exactly (a
re-implementation from that data alone matches `normalize_for_classifier`), and
`webinstruct classifier score` scores, or prints the fastText input of, any text the way recall
does."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from webinstruct.infra import cli
from webinstruct.pipeline.recall import scoring
from webinstruct.pipeline.recall.classifier import (NEG, POS, Classifier, ClassifierConfig, load_texts, meta_path,
                                                    train_classifier)
from webinstruct.pipeline.text import normalize as N
from webinstruct.pipeline.text.normalize import NORMALIZE_VERSION, normalization_spec, normalize_for_classifier

from conftest import ROOT, SEEDS

MAX_CHARS = 400  # the tiny model's: small, so that --normalized must use the model's, not the default

# Texts that exercise every step: quotes, TeX, digits of several scripts, long runs, CJK, control
# and format characters, NFKC expansions, case mappings that change length, the label prefix.
TEXTS = [
    "",
    " \n\t ",
    "\u201cCurly\u201d and \u2018single\u2019 quotes, 5\u2032 11\u2033 tall, a \u2014 dash, \u22123 \u2013 minus",
    "Let $\\frac{1}{2}x^2 = 2019$.\r\nThen\t\\Delta \\\\ \\{a\\} \\, \\alpha_{i}^{2} \\sqrt[3]{x}",
    "Call 555-0199 or 1234567890123; pi = 3.14159265358979; 007 agents; 10000000 and 1000000",
    "Rule: ----------- ==== .... ***** !!!!! ???? ~~~~~ |||||| ____ //// :::: <<<< >>>> ++++ $$$$",
    "Mixed run -=-=-=-= and --==-- and ...--- and a_b__c___d",
    "\u6570\u5b66\u306e\u554f\u984c: x\u00b2 + 2x + 1 = 0 \u3092\u89e3\u3051\u3002 \u7b54\u3048\u306f -1 \u3067\u3059\u3002",
    "\uff26\uff55\uff4c\uff4c\uff57\uff49\uff44\uff54\uff48 \uff11\uff12\uff13 and \u2460 \u00bd \ufb01ne \u3392 \u2122",
    "ctrl\x00nul\x07bell\x1bescape\x7fdel\x85nel\x9f end\u2028line\u2029para",
    "soft\u00adhyphen zero\u200bwidth joiner\u200dzwj \ufeffbom \u202eright-to-left\u202c \u2066iso\u2069",
    "lone \ud800 surrogate \udfff here",
    "\u0130stanbul \u0049 \u03a3\u039f\u03a6\u039f\u03a3 \u1e9e STRASSE \u00df \u01c5 Dz",
    "Arabic-Indic \u0663\u0664\u0665, Devanagari \u0967\u0968 and \u0939\u093f\u0928\u094d\u0926\u0940 text",
    "__label__pos __label__neg x_1 snake_case __init__ _under_",
    "Emoji \U0001f600 math \U0001d465 \U0001d7d9 \u212b \u00c5ngstr\u00f6m caf\u0065\u0301",
    "Q: What is 2+2?\n\nA: **4**. See https://example.com/a?b=1&c=2#frag, (brackets) [x] {y} <z>",
    "word " * 200,
    "x" * 1000,
    "supercalifragilistic " * 30 + "\u0130" * 50,
]


def from_spec(spec: dict, text: str, max_chars: int, use_code_points: bool = False) -> str:
    """normalize_for_classifier, re-implemented from the spec's data with `re` and `unicodedata`
    only; with `use_code_points`, character-class steps use the listed code points, not the regex."""
    tokens: list[str] = []
    for step in spec["steps"]:
        op = step["op"]
        if op == "empty":
            if not text:
                return ""
        elif op == "truncate_input":
            text = text[: step["max_chars_multiple"] * max_chars]
        elif op == "unicode_normalize":
            text = unicodedata.normalize(step["form"], text)
        elif op == "regex_sub":
            pattern = step["pattern"]
            if use_code_points and "code_points" in step:
                pattern = "[" + "".join(_class_range(r) for r in step["code_points"]) + "]"
            text = re.sub(pattern, step["replacement"], text)
        elif op == "lowercase":
            text = text.lower()
        elif op == "regex_findall":
            tokens = re.findall(step["pattern"], text)
        elif op == "join":
            text = step["separator"].join(tokens)
        elif op == "truncate_output":
            if len(text) > max_chars:
                cut = text.rfind(" ", 0, max_chars + 1)
                text = text[:cut] if cut > 0 else text[:max_chars]
        else:
            raise AssertionError(f"step {op!r} is not known to this re-implementation")
    return text


def _class_range(item: str) -> str:
    lo, _, hi = item.partition("-")
    esc = [f"\\U{int(cp[2:], 16):08x}" for cp in (lo, hi or lo)]
    return esc[0] if not hi else f"{esc[0]}-{esc[1]}"


# ---- the spec ---------------------------------------------------------------------------------

def test_spec_patterns_are_the_live_ones():
    spec = normalization_spec()
    assert json.loads(json.dumps(spec)) == spec  # JSON-ready, as written into classifier.json
    live = [p.pattern for p, _ in N._TYPO] + [N._CONTROL.pattern, N._FORMAT.pattern, N._DIGIT.pattern,
                                              N._LONG_NUMBER.pattern, N._LONG_SYMBOL.pattern]
    subs = [s for s in spec["steps"] if s["op"] == "regex_sub"]
    assert [s["pattern"] for s in subs] == live
    assert [s["replacement"] for s in subs[:3]] == [r for _, r in N._TYPO]
    assert [s["pattern"] for s in spec["steps"] if s["op"] == "regex_findall"] == [N._TOKEN.pattern]
    for p in [p for p, _ in N._TYPO] + [N._CONTROL, N._FORMAT, N._DIGIT, N._LONG_NUMBER, N._LONG_SYMBOL,
                                        N._TOKEN]:
        assert p.flags == re.UNICODE  # no flag the spec does not state
    assert spec["version"] == NORMALIZE_VERSION
    assert spec["max_chars"]["default"] == ClassifierConfig().max_chars
    assert spec["fasttext"]["labels"] == [POS, NEG]
    typo = {s["replacement"]: s["code_points"] for s in subs[:3]}
    assert typo["'"] == ["U+2018-U+201B", "U+2032"] and typo["-"] == ["U+2010-U+2015", "U+2212"]


@pytest.mark.parametrize("use_code_points", [False, True], ids=["patterns", "code-points"])
@pytest.mark.parametrize("max_chars", [20000, 60, 7])
def test_spec_alone_reproduces_normalize(max_chars, use_code_points):
    spec = normalization_spec()
    seeds = load_texts([str(SEEDS / "positive.jsonl.gz")], limit=3) + load_texts(
        [str(SEEDS / "negative.jsonl.xz")], limit=3)
    for text in TEXTS + seeds:
        assert from_spec(spec, text, max_chars, use_code_points) == normalize_for_classifier(text, max_chars), text


# ---- the model and the command ------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory, small_classifier):
    """A small real model (a second or so to train) with max_chars 400, and documents to score."""
    folder = tmp_path_factory.mktemp("tiny")
    pos = load_texts([str(SEEDS / "positive.jsonl.gz")], limit=300)
    neg = load_texts([str(SEEDS / "negative.jsonl.xz")], limit=300)
    # The session's small classifier with max_chars set to MAX_CHARS in its metadata (the scoring
    # side reads it from there): a tiny model of its own hit fastText's intermittent "Encountered
    # NaN." on all its retries in a full run.
    shutil.copy(small_classifier, folder / "classifier.bin")
    meta = json.loads(Path(meta_path(small_classifier)).read_text())
    meta["config"]["max_chars"] = MAX_CHARS
    (folder / "classifier.json").write_text(json.dumps(meta))
    docs = [{"id": f"d{i}", "url": f"https://example.com/{i}", "text": t, "other": i}
            for i, t in enumerate(pos[250:260] + neg[250:260] + [t for t in TEXTS if t.strip()][:6])]
    docs.append({"text": ""})  # no id or url: none is made up
    path = folder / "docs.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs) + "\n")  # a blank line is skipped
    return {"model": str(folder / "classifier.bin"), "meta": meta, "docs": docs, "jsonl": str(path),
            "clf": Classifier.load(folder / "classifier.bin")}


def _run(capsys, *argv: str) -> tuple[int, list[str], str]:
    rc = cli.main(["classifier", "score", *argv])
    out, err = capsys.readouterr()
    return rc, out.splitlines(), err


def test_metadata_states_the_normalization(tiny):
    on_disk = json.loads(open(tiny["model"][:-4] + ".json").read())
    assert on_disk["normalization"] == normalization_spec()
    assert on_disk["config"]["max_chars"] == MAX_CHARS


def test_scores_equal_score_many(tiny, capsys):
    rc, lines, _ = _run(capsys, "--classifier", tiny["model"], tiny["jsonl"])
    assert rc == 0
    rows = [json.loads(line) for line in lines]
    expected = tiny["clf"].score_many([d["text"] for d in tiny["docs"]])
    assert [r["score"] for r in rows] == expected
    assert scoring.score_texts(tiny["model"], [d["text"] for d in tiny["docs"]]) == expected
    assert [r["keep"] for r in rows] == [s >= tiny["meta"]["threshold"] for s in expected]
    assert rows[0] == {"score": expected[0], "keep": rows[0]["keep"], "id": "d0", "url": "https://example.com/0"}
    assert rows[-1] == {"score": 0.0, "keep": False}
    assert len({r["keep"] for r in rows}) == 2  # the tiny model does separate the seed documents


def test_normalized_is_the_fasttext_input(tiny, capsys):
    rc, lines, _ = _run(capsys, "--classifier", tiny["model"], "--normalized", tiny["jsonl"])
    assert rc == 0
    assert lines == [normalize_for_classifier(d["text"], MAX_CHARS) for d in tiny["docs"]]
    assert any(len(normalize_for_classifier(d["text"])) > MAX_CHARS for d in tiny["docs"])  # the model's cut
    # What another tool computes from these lines is our score.
    model = tiny["clf"].model
    for line, d in zip(lines, tiny["docs"]):
        if line:
            labels, probs = model.predict(line, k=2)
            assert min(max(float(dict(zip(labels, probs))[POS]), 0.0), 1.0) == tiny["clf"].score(d["text"])


def test_stdin_run_folder_threshold_and_plain(tiny, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "stdin", io.StringIO(open(tiny["jsonl"]).read()))
    rc, from_stdin, _ = _run(capsys, "--classifier", tiny["model"])  # no FILE: standard input
    assert rc == 0
    _, from_file, _ = _run(capsys, "--classifier", tiny["model"], tiny["jsonl"])
    assert from_stdin == from_file

    run = tmp_path / "run"
    (run / "classifier").mkdir(parents=True)
    for name in ("classifier.bin", "classifier.json"):
        shutil.copy(os.path.join(os.path.dirname(tiny["model"]), name), run / "classifier" / name)
    rc, lines, _ = _run(capsys, "--run", str(run), "--threshold", "0", tiny["jsonl"])
    assert rc == 0 and [json.loads(x)["score"] for x in lines] == [json.loads(x)["score"] for x in from_file]
    assert all(json.loads(x)["keep"] for x in lines)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"recall:\n  classifier: {tiny['model']}\n  threshold: 1.0\n")
    rc, lines, _ = _run(capsys, "--config", str(recipe), tiny["jsonl"])
    assert rc == 0 and not any(json.loads(x)["keep"] for x in lines)

    pages = [tmp_path / "a.txt", tmp_path / "b.txt"]
    for page, d in zip(pages, tiny["docs"]):
        page.write_text(d["text"])
    rc, lines, _ = _run(capsys, "--classifier", tiny["model"], "--plain", *map(str, pages),
                        "--text", tiny["docs"][2]["text"])
    rows = [json.loads(x) for x in lines]
    assert rc == 0 and [r.get("file") for r in rows] == [None, str(pages[0]), str(pages[1])]
    # --text documents come first, then each file whole.
    assert [r["score"] for r in rows] == tiny["clf"].score_many([tiny["docs"][i]["text"] for i in (2, 0, 1)])


def test_errors_are_one_line(tiny, capsys, tmp_path):
    rc, lines, err = _run(capsys, "--run", str(tmp_path / "nowhere"), "--text", "x")
    assert rc == 2 and not lines
    assert err.strip().splitlines() == [f"webinstruct classifier: error: no classifier at "
                                        f"{tmp_path}/nowhere/classifier/classifier.bin: run "
                                        "`webinstruct classifier train` first"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"body": "no text"}\n')
    rc, _, err = _run(capsys, "--classifier", tiny["model"], str(bad))
    assert rc == 2 and err.strip().splitlines() == [
        f"webinstruct classifier: error: {bad}, line 2: expected a JSON object with a string field `text` "
        "(for plain text files give --plain)"]
    rc, _, err = _run(capsys, "--classifier", tiny["model"], str(tmp_path / "missing.jsonl"))
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "missing.jsonl does not exist" in err


def test_real_stdin_in_a_process(tiny):
    # The installed command, standard input as bytes and a C locale: output is UTF-8 all the same.
    exe = os.path.join(os.path.dirname(sys.executable), "webinstruct")
    text = "\u201cQuoted\u201d caf\u00e9 \u6570\u5b66 x\u00b2"
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONIOENCODING": ""}
    out = subprocess.run([exe, "classifier", "score", "--classifier", tiny["model"], "--normalized", "-"],
                         input=json.dumps({"text": text}).encode() + b"\n", capture_output=True, env=env,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode("utf-8") == normalize_for_classifier(text, MAX_CHARS) + "\n"
