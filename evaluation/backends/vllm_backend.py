"""vLLM in-process: `vllm.LLM` over a local model folder (tensor-parallel over `tp` GPUs), greedy
`SamplingParams` per request. Several replicas: `webinstruct.evaluation.backends.replicas`."""
from __future__ import annotations

import os

from webinstruct.evaluation.backends import Generation
from webinstruct.evaluation.placement import UTILIZATION
from webinstruct.evaluation.protocols import Request, cut_at_stop
from webinstruct.pipeline.llm.server import on_gpu


class VLLMBackend:
    name = "vllm"
    # Questions per `generate` call that `evaluate` aims for: vLLM schedules best with many prompts
    # at once, but `LLM.generate` returns only when all are done, so a crash loses at most a chunk.
    chunk = 512

    def __init__(self, model_dir: str, tp: int = 1, max_model_len: int = 0, dtype: str = "bfloat16",
                 gpu_memory_utilization: float = UTILIZATION):
        # vLLM's CPU build sizes its KV cache by this variable (GiB); it must be set before import.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
        os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
        os.environ.setdefault("DO_NOT_TRACK", "1")
        from vllm import LLM
        kwargs = {"model": model_dir, "dtype": dtype, "seed": 0}
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        if on_gpu():
            # tp from `webinstruct.evaluation.placement` (the first tp visible GPUs: a replica
            # process sees only its own).
            kwargs.update(tensor_parallel_size=tp, gpu_memory_utilization=gpu_memory_utilization)
        else:
            # On a CPU `gpu_memory_utilization` is a share of RAM (the 0.92 default fails on a shared
            # machine); eager mode skips a torch.compile warm-up that did not pay here.
            kwargs.update(gpu_memory_utilization=0.3, enforce_eager=True)
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len

    def generate(self, requests: list[Request]) -> list[Generation]:
        from vllm import SamplingParams
        results: list[Generation | None] = [None] * len(requests)
        prompts, params, where = [], [], []
        for i, r in enumerate(requests):
            room = self.max_model_len - len(self.tokenizer(r.prompt)["input_ids"])
            if room < 1:
                results[i] = Generation("", "prompt_too_long")
                continue
            prompts.append(r.prompt)
            params.append(SamplingParams(temperature=0.0, top_p=1.0, max_tokens=min(r.max_tokens, room),
                                         stop=list(r.stop) or None))
            where.append(i)
        if prompts:
            for i, out in zip(where, self.llm.generate(prompts, params, use_tqdm=False)):
                o = out.outputs[0]
                finish = "length" if o.finish_reason == "length" else "stop"
                # vLLM cuts at the first stop string of the list that matches, not at the earliest
                # match ("\nProblem" inside "\n\nProblem" leaves a newline): put the matched string
                # back and cut at the earliest, as the other backends do.
                text = o.text + (o.stop_reason if isinstance(o.stop_reason, str) else "")
                results[i] = Generation(cut_at_stop(text, requests[i].stop), finish, len(o.token_ids))
        return results  # type: ignore[return-value]

    def close(self) -> None:
        del self.llm
