"""Settings of the shared LLM client (recipe sections `extract`, `refine`, `augment` embed them).

Servers are any OpenAI-compatible endpoint (vLLM, llama.cpp's server, a hosted API). Environment
variables LLM_URL, LLM_MODEL and LLM_API_KEY override the built config (`LLMConfig.from_env`), so a
user can point every stage at a GPU server without editing a recipe.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from webinstruct.core.config import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Share, option


@dataclass
class LLMConfig:
    url: list[str] = option([], "OpenAI-compatible base URLs, load-balanced round-robin "
                                "(empty: the stage starts the local server)")
    model: str = option("", "served model name (empty: the first model the server lists at /v1/models)")
    api_key: str = option("EMPTY", "API key sent to the server (local servers ignore it)")
    max_concurrency: PositiveInt = option(16, "requests in flight per worker process")
    timeout_s: PositiveFloat = option(120.0, "seconds before one HTTP request is abandoned (then retried)")
    transport_retries: NonNegativeInt = option(3, "retries of a server fault: the openai client's own on connection errors, "
                                                  "timeouts, 429 and 5xx; ours on a malformed reply (HTML, no choices, "
                                                  "null content)")
    deadline_s: PositiveFloat = option(600.0, "seconds one request may take in all, every attempt and retry together (time "
                                              "queued for a free slot not counted); past it the request is a server "
                                              "fault and the stage stops (rerun to resume)")
    backoff_s: PositiveFloat = option(1.0, "first wait before a malformed server reply is asked again; doubled on each "
                                           "retry, at most 30 s")
    heartbeat_s: PositiveFloat = option(30.0, "seconds between progress lines (pending, in flight, done, oldest pending "
                                              "age) while requests are pending")
    max_failure_share: Share = option(0.5, "share of a stage's requests that may fail for the model's own reasons "
                                           "(invalid JSON, schema mismatch, cut at max_tokens_cap) before the stage "
                                           "exits non-zero; 1 accepts any share")
    semantic_retries: NonNegativeInt = option(2, "our retries on invalid JSON, schema mismatch or a reply cut at max_tokens")
    temperature: NonNegativeFloat = option(0.0, "sampling temperature (0: greedy)")
    retry_temperature: NonNegativeFloat = option(0.5, "temperature floor on retries after invalid JSON or a schema mismatch "
                                           "(greedy decoding would repeat the same reply whatever the seed)")
    max_tokens: PositiveInt = option(1024, "completion token budget per request")
    max_tokens_cap: PositiveInt = option(4096, "upper bound when a reply cut at max_tokens is retried with twice the budget")
    seed: int = option(0, "sampling seed (varied on retries)")
    retry_failed: bool = option(False, "send again requests whose final failure (cut at the cap, invalid JSON, "
                                       "schema mismatch) is recorded in the cache")
    tp: NonNegativeInt = option(0, "the local server on GPUs (when no url is given): tensor-parallel size, GPUs per "
                                   "engine (0: the fewest that hold the model's weights x 1.2 at 90% of their memory); "
                                   "above 1 is refused without GPUs")
    dp: NonNegativeInt = option(0, "the local server on GPUs: data-parallel size, engines behind its one endpoint (0: one); "
                                   "above 1 is refused without GPUs")
    cache: str = option("", "request cache: a local SQLite file, or a URI whose segment folder workers share (empty: RUN/cache/llm.sqlite)")

    @classmethod
    def from_env(cls, base: "LLMConfig") -> "LLMConfig":
        """`base` with LLM_URL (comma or space separated), LLM_MODEL and LLM_API_KEY applied when set."""
        changes: dict = {}
        urls = os.environ.get("LLM_URL", "").strip()
        if urls:
            changes["url"] = [u for u in re.split(r"[,\s]+", urls) if u]
        for var, field in (("LLM_MODEL", "model"), ("LLM_API_KEY", "api_key")):
            value = os.environ.get(var, "").strip()
            if value:
                changes[field] = value
        return dataclasses.replace(base, **changes) if changes else base

    def base_urls(self) -> list[str]:
        return [normalize_url(u) for u in self.url]


def normalize_url(url: str) -> str:
    """`host:8000` and `http://host:8000` become `http://host:8000/v1`; an explicit path is kept
    (some gateways serve the API under their own prefix)."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    if urlsplit(url).path in ("", "/"):
        url += "/v1"
    return url
