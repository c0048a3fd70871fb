"""Any OpenAI-compatible endpoint, through the completions API (the rendered prompt as sent)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from webinstruct.evaluation.backends import Generation
from webinstruct.evaluation.protocols import Request, cut_at_stop, server_stops


class OpenAIBackend:
    name = "openai"

    def __init__(self, url: str, model: str = "", concurrency: int = 8, api_key: str = "", timeout: float = 600.0):
        import openai
        self.client = openai.OpenAI(base_url=url, api_key=api_key or "none", timeout=timeout, max_retries=3)
        if not model:
            try:
                model = self.client.models.list().data[0].id
            except openai.APIConnectionError as err:
                raise ConnectionError(f"no LLM server answers at {url} ({err}); start one with `make serve-llm` "
                                      "or pass LLM_URL") from None
            except openai.APIStatusError as err:
                raise ConnectionError(f"{url.rstrip('/')}/models answered HTTP {err.status_code}: is {url} an "
                                      "OpenAI-compatible server (the URL ends in /v1)? Pass LLM_URL") from None
        self.model, self.concurrency = model, concurrency

    def _one(self, r: Request) -> Generation:
        import openai
        try:
            # OpenAI's API and vLLM's server take four stop strings; the text is cut at all below.
            reply = self.client.completions.create(model=self.model, prompt=r.prompt, max_tokens=r.max_tokens,
                                                   temperature=0.0, top_p=1.0, stop=server_stops(r.stop, r.prompt) or None)
        except openai.BadRequestError as err:
            if "context" in str(err).lower() or "too long" in str(err).lower() or "maximum" in str(err).lower():
                return Generation("", "prompt_too_long")
            raise
        choice = reply.choices[0]
        tokens = reply.usage.completion_tokens if reply.usage else 0
        text = cut_at_stop(choice.text, r.stop)
        finish = "length" if choice.finish_reason == "length" and text == choice.text else "stop"
        return Generation(text, finish, tokens)

    def generate(self, requests: list[Request]) -> list[Generation]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(self._one, requests))

    def close(self) -> None:
        self.client.close()
