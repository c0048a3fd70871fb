"""Shared fixtures: where the test data is, a small real classifier, the local LLM server.

Test data comes from two places. The bundled copies are always there: `tests/fixtures` (pages with
reference extractions, WARCs, prompt files; see its MANIFEST.md) and `data/` (seeds, benchmarks,
sample WARCs). `SHARED` is the full shared data folder, `$WEBINSTRUCT_SHARED` when set, else
`../shared` beside the repository; tests use it only for extra cases (the bundle still matching
it), generated only when it is present, so a clone without it runs every test and skips none.
`WEBINSTRUCT_SHARED=/nonexistent make test` shows what such a clone runs.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WEBINSTRUCT_SHARED") or ROOT.parent / "shared")
HAVE_SHARED = SHARED.is_dir()
FIXTURES = ROOT / "tests" / "fixtures"
SAMPLE_WARC = ROOT / "data" / "sample" / "warc"
SEEDS = ROOT / "data" / "seeds"
BENCHMARKS = ROOT / "data" / "benchmarks"
sys.path.insert(0, str(ROOT))


def load_fixture_builder():
    """tests/fixtures/build.py as a module (it is a script, not part of a package)."""
    spec = importlib.util.spec_from_file_location("fixtures_build", FIXTURES / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def testdata(tmp_path_factory) -> Path:
    """The bundled fixtures laid out like the shared folder, decompressed: web/html_math,
    web/html_general, web/expected, web/warc (every shared WARC), fewshot/metamath."""
    return load_fixture_builder().materialise(tmp_path_factory.mktemp("testdata"))


@pytest.fixture(scope="session")
def web(testdata) -> Path:
    """The bundled pages, reference extractions and WARCs, laid out like shared/web."""
    return testdata / "web"


@pytest.fixture(scope="session")
def small_classifier(tmp_path_factory) -> str:
    """A real fastText classifier trained on the bundled seeds, smaller than the paper settings
    (dim 128, 50k buckets) so the pipeline tests stay fast; recall tests use it."""
    from webinstruct.pipeline.recall.classifier import ClassifierConfig, load_texts, train_classifier

    out = tmp_path_factory.mktemp("clf") / "classifier.bin"
    cfg = ClassifierConfig(dim=128, bucket=50_000, threads=1)
    train_classifier(load_texts([str(SEEDS / "positive.jsonl.gz")]),
                     load_texts([str(SEEDS / "negative.jsonl.xz")]), str(out), cfg)
    return str(out)


from llm_fixtures import llm_model_dir, llm_server  # noqa: E402,F401  (session fixtures: the real local LLM)


def pytest_terminal_summary(terminalreporter):
    # Said even when zero: a clone without ../shared must skip nothing (issue 12).
    skipped = len(terminalreporter.stats.get("skipped", []))
    where = str(SHARED) if HAVE_SHARED else "absent"
    terminalreporter.write_line(f"skipped tests: {skipped} (shared data: {where})")
