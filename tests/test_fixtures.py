"""The bundled test data: documented, small, complete, and (where ../shared is present) still the
same as the shared data it was copied from."""
from __future__ import annotations

import gzip
import json
import lzma

from webinstruct.pipeline.text.fidelity import load_reference_pairs

from conftest import BENCHMARKS, FIXTURES, HAVE_SHARED, ROOT, SEEDS, SHARED, load_fixture_builder

build = load_fixture_builder()
BUDGET_BYTES = 20 * 2**20  # the limit for the repository's data (data/ + tests/fixtures/)


def test_manifest_names_every_bundled_file():
    manifest = (FIXTURES / "MANIFEST.md").read_text(encoding="utf-8")
    files = build.bundled_files()
    assert len(files) == 37
    # Each file by its path, or (the reference extractions) by the page it belongs to.
    names = [rel.rsplit("/", 1)[-1].removesuffix(".llmwebkit.jsonl.gz") for rel in files]
    missing = [rel for rel, name in zip(files, names) if f"`{rel}`" not in manifest and name not in manifest]
    assert not missing, missing


def test_repo_data_stays_small():
    sizes = [p.stat().st_size for folder in (ROOT / "data", FIXTURES) for p in folder.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts]
    assert sum(sizes) < BUDGET_BYTES, f"{sum(sizes) / 2**20:.1f} MiB"


def test_testdata_is_laid_out_like_shared(testdata):
    web = testdata / "web"
    assert len(list((web / "html_math").glob("*.html"))) == 10
    assert len(list((web / "html_general").glob("*.html"))) == 5
    assert sorted(p.name for p in (web / "warc").iterdir()) == sorted(build.WARCS + build.SAMPLE_WARC_COPIES)
    assert len(list((testdata / "fewshot" / "metamath").glob("*.txt"))) == 10
    pairs = load_reference_pairs(web)
    assert [name for name, _, _ in pairs] == build.MATH_PAGES
    for name, html_path, content in pairs:
        assert html_path.read_bytes().lstrip()[:1] == b"<" and len(content) > 500, name
        record = json.loads((web / "expected" / f"{name}.llmwebkit.jsonl").read_text(encoding="utf-8"))
        assert sorted(record) == ["content", "url"] and record["url"].startswith("http")


# --- only with ../shared: the bundle and data/ still match what they were copied from ---------
# Defined only when the shared folder is there, so that a clone without it has nothing to skip.

if HAVE_SHARED:
    def test_fixtures_rebuild_from_shared():
        assert build.check(SHARED) == []

    def test_shared_has_no_reference_page_the_bundle_lacks():
        assert [name for name, _, _ in load_reference_pairs(SHARED / "web")] == build.MATH_PAGES

    def test_bundled_seeds_are_the_shared_seeds():
        def rows(path, opener=open):
            with opener(path, "rt", encoding="utf-8") as f:
                return [json.loads(line) for line in f]

        assert rows(SEEDS / "positive.jsonl.gz", gzip.open) == rows(SHARED / "seeds" / "positive.jsonl")
        negative = rows(SHARED / "seeds" / "negative.jsonl")
        assert rows(SEEDS / "negative.jsonl.xz", lzma.open)[:len(negative)] == negative

    def test_bundled_benchmarks_are_the_shared_benchmarks():
        shared = SHARED / "benchmarks"
        files = sorted(p.relative_to(shared) for p in shared.rglob("*") if p.suffix in (".json", ".jsonl"))
        assert len(files) > 20
        for rel in files:
            bundled = BENCHMARKS / rel.parent / (rel.name + ".gz")
            assert gzip.decompress(bundled.read_bytes()) == (shared / rel).read_bytes(), rel
