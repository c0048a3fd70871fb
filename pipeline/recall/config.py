"""Settings of the recall stage (recipe section `recall`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import annotated_types as at

from webinstruct.pipeline.runners import RunnerSettings
from webinstruct.core.config import NonNegativeInt, PositiveInt, Share, option

SAMPLE_WARC = "data/sample/warc/*.warc*"


@dataclass
class RecallConfig(RunnerSettings):
    warc: list[str] = option([SAMPLE_WARC], "WARC paths or globs (local, or gs:// s3:// where Beam has the file system)")
    run: str = option("runs/sample", "run directory; recall writes RUN/recall/")
    out: str = option("", "output directory (default RUN/recall)")
    classifier: str = option("", "fastText model (default RUN/classifier/classifier.bin, trained from the bundled seeds when absent)")
    threshold: Annotated[float, at.Ge(-1), at.Le(1)] = option(-1.0, "keep pages scoring at least this; -1 uses the threshold saved with the classifier")
    prefilter: bool = option(False, "score a cheap tag-stripped text first and run the math-aware extraction only on likely pages "
                             "(off by default: our extraction is fast enough that it did not pay on real pages, see bench/RESULTS.md)")
    prefilter_threshold: Share = option(0.05, "cheap-text score below which a page is dropped without full extraction")
    min_latin_share: Share = option(0.5, "drop pages whose letters are less than this share Latin script (0 keeps all scripts)")
    min_chars: NonNegativeInt = option(200, "drop pages whose extracted text is shorter than this")
    max_page_bytes: PositiveInt = option(2_000_000, "drop HTML payloads larger than this (Common Crawl truncates at 1 MiB)")
    num_shards: PositiveInt = option(4, "output shards (deterministic names part-NNNNN-of-MMMMM.jsonl.gz)")
    dedup_buckets: PositiveInt = option(16, "hash buckets for the URL deduplication shuffle")
    round: PositiveInt = option(1, "domain round number recorded on each document")

    def out_dir(self) -> str:
        return self.out or f"{self.run.rstrip('/')}/recall"

    def classifier_path(self) -> str:
        return self.classifier or f"{self.run.rstrip('/')}/classifier/classifier.bin"
