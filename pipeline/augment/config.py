"""Settings of the augment stage (recipe section `augment`; the LLM endpoint is section `llm`)."""
from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

from webinstruct.pipeline.runners import RunnerSettings
from webinstruct.core.config import NonNegativeFloat, NonNegativeInt, PositiveInt, option

# MetaMathQA's sizes (MetaMath paper, Table 1): GSM8K 80K AnsAug, 80K rephrased, 40K SV, 40K FOBAR
# (240K); MATH 75K, 50K, 15K, 15K (155K).
PAPER_TARGETS = {"GSM_AnsAug": 80_000, "GSM_Rephrased": 80_000, "GSM_SV": 40_000, "GSM_FOBAR": 40_000,
                 "MATH_AnsAug": 75_000, "MATH_Rephrased": 50_000, "MATH_SV": 15_000, "MATH_FOBAR": 15_000}
RowType = Literal["GSM_AnsAug", "GSM_Rephrased", "GSM_SV", "GSM_FOBAR",
                  "MATH_AnsAug", "MATH_Rephrased", "MATH_SV", "MATH_FOBAR"]
assert set(typing.get_args(RowType)) == set(PAPER_TARGETS)


@dataclass
class AugmentConfig(RunnerSettings):
    run: str = option("runs/sample", "run directory; augment writes RUN/augment/")
    input: list[str] = option([], "input files or globs: GSM8K-style JSON lines ({question, answer with '#### N'}), "
                             "MATH-style ({problem, solution with \\boxed{}}) or WebInstruct shards; empty: the "
                             "WebInstruct shards in RUN/refine")
    out: str = option("", "output directory (default RUN/augment)")
    limit: NonNegativeInt = option(0, "seed questions read per input file at most (0: all)")
    ansaug_samples: NonNegativeInt = option(4, "AnsAug: solutions sampled per question")
    rephrasings: NonNegativeInt = option(2, "Rephrasing: rephrased questions sampled per question")
    rephrase_samples: NonNegativeInt = option(1, "Rephrasing: solutions sampled per rephrased question")
    sv_samples: NonNegativeInt = option(1, "Self-Verification: solutions sampled per masked number")
    fobar_samples: NonNegativeInt = option(1, "FOBAR: solutions sampled per masked number")
    max_masks: NonNegativeInt = option(0, "backward questions per seed question at most, spread over its numbers (0: every "
                               "eligible number, as MetaMath did)")
    temperature: NonNegativeFloat = option(0.7, "sampling temperature of the solutions and rephrasings (MetaMath: 0.7)")
    max_tokens: PositiveInt = option(512, "completion token budget of a sampled solution")
    targets: dict[RowType, NonNegativeInt] = option(dict(PAPER_TARGETS), "rows kept per MetaMathQA type at most (recipe only; default: the "
                                                "paper's 240K/155K split)", cli=False)
    seeds_in_flight: PositiveInt = option(32, "seed questions whose requests may be pending at once per task")
    tasks: NonNegativeInt = option(0, "parallel tasks, each a group of input files (0: one per worker)")
    stop_on_server_failure: bool = option(True, "stop the stage when requests fail for the server's sake after all "
                                                "retries (finished replies stay cached; a rerun resumes)")
    num_shards: PositiveInt = option(2, "output shards")

    def input_paths(self) -> list[str]:
        return list(self.input) or [f"{self.run.rstrip('/')}/refine"]

    def out_dir(self) -> str:
        return self.out or f"{self.run.rstrip('/')}/augment"

    def cache_path(self) -> str:
        return f"{self.run.rstrip('/')}/cache/llm.sqlite"
