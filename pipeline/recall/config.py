"""Settings of the recall stage (recipe section `recall`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import annotated_types as at
import pydantic

from webinstruct.pipeline.runners import RunnerSettings
from webinstruct.core.config import NonNegativeInt, PositiveInt, Share, option
from webinstruct.core.http_range import HTTPSettings

SAMPLE_WARC = "data/sample/warc/*.warc*"
CC_BASE = "https://data.commoncrawl.org/"
# A Python-slice-like selection of a crawl's WARC list: `7`, `0:100`, `100:`, `:-1`, `0:1000:10`.
FILES_PATTERN = r"^(-?\d+|-?\d*:-?\d*(:-?\d+)?)?$"
FileRange = Annotated[str, pydantic.StringConstraints(pattern=FILES_PATTERN)]
CrawlName = Annotated[str, pydantic.StringConstraints(pattern=r"^([A-Za-z0-9][A-Za-z0-9._-]*)?$")]


@dataclass
class RecallConfig(HTTPSettings, RunnerSettings):
    warc: list[str] = option([SAMPLE_WARC], "WARC paths or globs (local, or gs:// s3:// where Beam has the file system), "
                                            "or http(s):// URLs (streamed, resumed after a dropped connection)")
    crawl: CrawlName = option("", "Common Crawl crawl name (CC-MAIN-2024-10): read the WARCs its warc.paths.gz lists "
                                  "(selected by --files) instead of --warc", expected="a crawl name such as CC-MAIN-2024-10")
    files: FileRange = option("", "which WARCs of the crawl's list: an index (7) or a Python slice (0:100, 100:, 0:1000:10); "
                                  "empty: all", expected="a file index or a slice a:b[:step] such as 0:100 (a string: quote it in YAML)")
    cc_base: str = option(CC_BASE, "where the crawl's files are: https://data.commoncrawl.org/, s3://commoncrawl/ or a mirror")
    run: str = option("runs/sample", "run directory; recall writes RUN/recall/")
    out: str = option("", "output directory (default RUN/recall)")
    classifier: str = option("", "fastText model (default RUN/classifier/classifier.bin, trained from the bundled seeds when absent)")
    threshold: Annotated[float, at.Ge(-1), at.Le(1)] = option(-1.0, "keep pages scoring at least this; -1 uses the threshold saved with the classifier")
    languages: list[str] = option(["en"], "keep pages whose language (fastText lid.176 on the page's cheap text) is one of "
                                          "these ISO 639 codes; empty keeps every language")
    prefilter: bool = option(True, "two passes: score the page's cheap tag-stripped text first and run the math-aware "
                             "extraction only on pages scoring at least --prefilter-threshold (false: extract every page)")
    prefilter_threshold: Share = option(0.01, "cheap-text score below which a page is dropped without full extraction "
                                              "(recall-safe: far below the final threshold)")
    min_latin_share: Share = option(0.0, "drop pages whose letters are less than this share Latin script (0: off; "
                                         "language identification does this job now)")
    min_chars: NonNegativeInt = option(200, "drop pages whose extracted text is shorter than this")
    max_page_bytes: PositiveInt = option(2_000_000, "drop HTML payloads larger than this (Common Crawl truncates at 1 MiB)")
    num_shards: PositiveInt = option(4, "output shards (deterministic names part-NNNNN-of-MMMMM.jsonl.gz)")
    dedup_buckets: PositiveInt = option(16, "hash buckets for the URL deduplication shuffle")
    round: PositiveInt = option(1, "domain round number recorded on each document")

    def page_settings(self) -> dict:
        """The options that decide a page's fate (transforms.ScorePages.from_settings): one place
        for the recall job, the threshold calibration and `classifier report`."""
        return {"languages": list(self.languages), "prefilter": self.prefilter,
                "prefilter_threshold": self.prefilter_threshold, "min_chars": self.min_chars,
                "min_latin_share": self.min_latin_share, "max_page_bytes": self.max_page_bytes}

    def out_dir(self) -> str:
        return self.out or f"{self.run.rstrip('/')}/recall"

    def classifier_path(self) -> str:
        return self.classifier or f"{self.run.rstrip('/')}/classifier/classifier.bin"
