"""transformers `generate`: greedy, left-padded batches, stop strings applied by the tokenizer."""
from __future__ import annotations

from webinstruct.evaluation.backends import Generation
from webinstruct.evaluation.protocols import Request, cut_at_stop


def device_choice(cuda_available: bool) -> tuple[dict, str | None]:
    """(extra `from_pretrained` arguments, device to move the loaded model to). With GPUs,
    accelerate's `device_map="auto"` places the layers over the visible GPUs (a model too big for
    one spreads over several; each replica process sees only its own GPUs); on a CPU the model is
    loaded whole and stays there."""
    if cuda_available:
        return {"device_map": "auto"}, None
    return {}, "cpu"


class HFBackend:
    name = "hf"

    def __init__(self, model_dir: str, batch_size: int = 8, dtype=None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        load_kwargs, move_to = device_choice(torch.cuda.is_available())
        # bf16 as the vLLM backend runs (on these CPUs, with AVX512-BF16, 3x faster than fp32 too).
        dtype = dtype or torch.bfloat16
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, **load_kwargs)
        self.model = (model.to(move_to) if move_to else model).eval()
        # Inputs go where the embedding sits (the first GPU of a spread model).
        self.device, self.batch_size = self.model.device, batch_size
        self.max_model_len = getattr(self.model.config, "max_position_embeddings", 4096)

    def _batch(self, requests: list[Request]) -> list[Generation]:
        tok = self.tokenizer
        enc = tok([r.prompt for r in requests], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        width = enc["input_ids"].shape[1]
        budget = min(max(r.max_tokens for r in requests), self.max_model_len - width)
        stops = sorted({s for r in requests for s in r.stop})
        with self.torch.no_grad():
            out = self.model.generate(**enc, do_sample=False, max_new_tokens=budget, pad_token_id=tok.pad_token_id,
                                      stop_strings=stops or None, tokenizer=tok if stops else None)
        results = []
        for r, row in zip(requests, out[:, width:]):
            ids = row.tolist()
            # Trailing pad (= EOS for most models) comes from batch mates that ran longer.
            n = len(ids)
            while n and ids[n - 1] == tok.pad_token_id:
                n -= 1
            ids = ids[: min(n, r.max_tokens)]
            text = tok.decode(ids, skip_special_tokens=True)
            cut = cut_at_stop(text, r.stop)
            finish = "stop" if cut != text or n < budget else "length"
            results.append(Generation(cut, finish, len(ids)))
        return results

    def generate(self, requests: list[Request]) -> list[Generation]:
        order = sorted(range(len(requests)), key=lambda i: len(requests[i].prompt))  # similar lengths pad less
        by_index: dict[int, Generation] = {}
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            too_long = [i for i in idx if len(self.tokenizer(requests[i].prompt)["input_ids"]) >= self.max_model_len]
            for i in too_long:
                by_index[i] = Generation("", "prompt_too_long")
            idx = [i for i in idx if i not in too_long]
            if idx:
                for i, g in zip(idx, self._batch([requests[i] for i in idx])):
                    by_index[i] = g
        return [by_index[i] for i in range(len(requests))]

    def close(self) -> None:
        del self.model
