"""Settings of the refine stage (recipe section `refine`; the default LLM endpoint is section `llm`)."""
from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal, Union

from typing_extensions import TypedDict


from webinstruct.pipeline.runners import RunnerSettings
from webinstruct.core.config import NonNegativeFloat, NonNegativeInt, PositiveInt, Share, option, strict

Merge = Literal["keep_all", "best", "alternate"]
MERGE_POLICIES: tuple[str, ...] = typing.get_args(Merge)
DEFAULT_BENCHMARKS = ["data/benchmarks"]  # relative paths: to the working directory, else to the repository



@strict
class Refiner(TypedDict, total=False):
    """One entry of `refine.refiners`; a misspelt key is an error, not a silently unused one."""
    name: str
    url: Union[str, list[str]]
    model: str
    temperature: NonNegativeFloat


@dataclass
class RefineConfig(RunnerSettings):
    run: str = option("runs/sample", "run directory; refine reads RUN/extract and writes RUN/refine/")
    input: str = option("", "extract directory to read (default RUN/extract)")
    out: str = option("", "output directory (default RUN/refine)")
    refiners: list[Refiner] = option([], "refiner entries, recipe only: [{name, url, model, temperature}]; a missing url "
                                "or model uses the `llm` endpoint; empty: one refiner on that endpoint",
                            cli=False)
    merge: Merge = option("best", "with several refiners: keep_all (a row per passing revision), best (one row per "
                                "pair, chosen by the checks), alternate (each pair goes to one refiner only)")
    keep_original: bool = option(False, "when no revision of a pair passes the checks, keep the original pair if it "
                                        "passes them itself (refiner `original`); for weak refiners such as the demo's")
    min_question_chars: NonNegativeInt = option(15, "shorter revised questions are dropped (too_short)")
    min_answer_chars: NonNegativeInt = option(2, "shorter revised answers are dropped (too_short)")
    max_chars: PositiveInt = option(12000, "longer revised question+answer are dropped (too_long)")
    min_latin_share: Share = option(0.6, "least share of Latin-script letters (language check)")
    drop_changed_answers: bool = option(True, "drop a revision whose stated final answer differs from the original's")
    benchmarks: list[str] = option(DEFAULT_BENCHMARKS, "benchmark directories to decontaminate against: "
                                                       "one sub-directory per benchmark, JSON or JSON-lines files")
    ngram: PositiveInt = option(10, "shared word n-gram length that marks a pair as contaminated")
    index_cache: str = option("", "directory of the benchmark n-gram index, built once per set of benchmark files "
                                  "(default: ~/.cache/webinstruct/decontam)")
    dedup: bool = option(True, "exact and MinHash near-duplicate dedup of questions")
    docs_in_flight: PositiveInt = option(64, "pairs whose LLM requests may be pending at once per task")
    tasks: NonNegativeInt = option(0, "parallel tasks, each a group of extract shards (0: as for extract)")
    num_shards: PositiveInt = option(2, "output shards")

    def input_dir(self) -> str:
        return self.input or f"{self.run.rstrip('/')}/extract"

    def out_dir(self) -> str:
        return self.out or f"{self.run.rstrip('/')}/refine"

    def cache_path(self) -> str:
        return f"{self.run.rstrip('/')}/cache/llm.sqlite"

