"""Shared fixtures: where ../shared is, the bundled sample, and a small real classifier."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SAMPLE_WARC = ROOT / "data" / "sample" / "warc"
SEEDS = ROOT / "data" / "seeds"
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.exists():
        pytest.skip("../shared is not present")
    return SHARED


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
