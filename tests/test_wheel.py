"""The built wheel works on its own: installed into a fresh virtual environment outside the
checkout, `webinstruct` runs, recalls from a bundled WARC and renders every stage's prompt from
the package data alone (what a Beam or Dask worker gets), under one top-level import name.

The build and the fresh environment (third-party dependencies from the test's own environment
through a path file) are tests/wheel_env.py's, shared with the Dask cluster test; the webinstruct
the fresh environment imports is the wheel's, which the test checks.
"""
from __future__ import annotations

import json
import subprocess
import zipfile

import pytest

from conftest import ROOT
from wheel_env import wheel_env

pytestmark = pytest.mark.slow

# Renders one prompt of each stage and protocol from package data; prints where each file came from.
RENDER = r"""
import json, webinstruct
from webinstruct.core.formatting import alpaca_prompt
from webinstruct.evaluation import benchmarks as B
from webinstruct.evaluation.protocols import Protocol
from webinstruct.pipeline.augment import prompts as A
from webinstruct.pipeline.extract import prompt as X
from webinstruct.pipeline.recall import domain_labels as D
from webinstruct.pipeline.refine import prompt as R
from webinstruct.training.config import load_train_config

out = {"package": webinstruct.__file__}
out["extract"] = X.messages("What is 2+3? The answer is 5.")
out["refine"] = R.messages("What is 2+3?", "2+3=5. The answer is 5.")
out["augment"] = [A.ansaug_messages("Tom has 3 apples and buys 2 more. How many?", "gsm8k"),
                  A.fobar_messages("Tom has x apples. If we know the answer to the above question is 5, what is x?", "gsm8k")]
row = {"domain": "example.edu", "pages_seen": 4, "pages_recalled": 3, "recalled_share": 0.75, "top_paths": [["/a", 3]]}
out["domains"] = D.request(row, [{"url": "https://example.edu/a", "text": "Solve x+1=2."}])
items = {name: B.load(name, limit=1) for name in B.names("all")}
out["eval"] = {name: Protocol("mammoth2").render(batch[0]).prompt for name, batch in items.items()}
out["eval_metamath"] = Protocol("metamath").render(items["gsm8k"][0]).prompt
out["train"] = alpaca_prompt("What is 2+3?")
cfg = load_train_config("cpu-demo")
out["train_recipe"] = [cfg.recipe]
from webinstruct.training import trainer
out["deepspeed"] = sorted(p.name for p in trainer.DEEPSPEED_DIR.iterdir())
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    built = wheel_env(tmp_path_factory.mktemp("wheel"))
    return {"wheel": built.wheel, "venv": built.venv, "python": built.python, "work": built.work, "env": built.env}


def test_one_top_level_name_and_all_package_data(installed):
    with zipfile.ZipFile(installed["wheel"]) as zf:
        names = zf.namelist()
        top = zf.read(next(n for n in names if n.endswith(".dist-info/top_level.txt"))).decode().split()
    assert top == ["webinstruct"]
    assert {n.split("/")[0] for n in names} == {"webinstruct", installed["wheel"].name.split("-py3")[0] + ".dist-info"}
    # Every data file of the checkout's packages is in the wheel (build scripts aside).
    wanted = set()
    for folder in ("data", "infra", "pipeline", "core", "training", "evaluation"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts:
                wanted.add("webinstruct/" + path.relative_to(ROOT).as_posix())
    assert wanted and not wanted - set(names), sorted(wanted - set(names))
    shown = subprocess.run([installed["python"], "-m", "pip", "show", "-f", "webinstruct"], capture_output=True,
                           text=True, check=True, cwd=installed["work"], env=installed["env"]).stdout
    files = [line.strip() for line in shown.split("Files:")[1].splitlines() if line.strip()]
    tops = {f.split("/")[0] for f in files if not f.startswith("..")}
    assert tops == {"webinstruct", "webinstruct-0.1.0.dist-info"}, tops


def test_cli_and_recall_from_the_wheel(installed):
    exe = str(installed["venv"] / "bin" / "webinstruct")
    run = dict(cwd=installed["work"], env=installed["env"], capture_output=True, text=True, timeout=600)
    help_out = subprocess.run([exe, "--help"], **run)
    assert help_out.returncode == 0 and "recall" in help_out.stdout, help_out.stderr
    # A relative data/... path that does not exist here is read from the installed package, and so
    # are the seeds the default classifier is trained from.
    rec = subprocess.run([exe, "recall", "--warc", "data/sample/warc/pages.warc.gz", "--run", "run"], **run)
    assert rec.returncode == 0, rec.stderr[-3000:]
    recall = installed["work"] / "run" / "recall"
    stats = json.loads((recall / "stats.json").read_text())
    assert stats["warc_files"] == 1 and stats["docs_written"] >= 1
    shards = sorted(recall.glob("part-*.jsonl.gz"))
    assert shards
    import gzip

    docs = [json.loads(line) for s in shards for line in gzip.open(s, "rt")]
    assert docs and all(d["warc_file"].endswith("pages.warc.gz") for d in docs)
    assert str(ROOT) not in json.dumps(docs[0])


def test_every_prompt_renders_from_the_wheel(installed):
    out = subprocess.run([installed["python"], "-c", RENDER], cwd=installed["work"], env=installed["env"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["package"].startswith(str(installed["venv"]))
    assert "2+3" in got["extract"][-1]["content"] and len(got["extract"]) > 2  # the bundled examples
    assert "2+3" in json.dumps(got["refine"])
    assert all(len(m) > 2 for m in got["augment"])  # MetaMath's exemplars from data/fewshot
    assert "example.edu" in json.dumps(got["domains"])
    assert set(got["eval"]) == {"theoremqa", "math", "gsm8k", "gpqa", "mmlu_stem", "bbh", "arc", "gsm8k_backward"}
    assert all(p.count("Problem:") >= 2 for p in got["eval"].values())  # few-shot exemplars present
    assert "### Response:" in got["eval_metamath"] and "### Response:" in got["train"]
    assert got["train_recipe"][0] == "cpu-demo"
    assert {"zero2.json", "zero3.json"} <= set(got["deepspeed"])
