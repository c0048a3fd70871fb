"""An LLM endpoint for a stage's run: the configured servers, or a local server started for it.

Every LLM stage (extract, the domain labeller, refine, augment) opens its endpoint here, so they
all behave alike: `LLM_URL` (or `--llm-url`) wins; else a server started with `make serve-llm`
is reused; else the stage starts the local vLLM server for its run and stops it afterwards.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import Iterator

from webinstruct.pipeline.llm.config import LLMConfig

log = logging.getLogger(__name__)

def with_model(llm: LLMConfig) -> LLMConfig:
    """`llm` with its model named; asking the first URL checks that it answers (a clear error if not:
    `LLMUnavailable` naming the model-list URL and the HTTP status that answered)."""
    import openai

    from webinstruct.pipeline.llm.client import LLMClient, LLMUnavailable
    from webinstruct.pipeline.llm.config import normalize_url

    try:
        model = LLMClient(llm).resolve_model(llm.url[0])
    except openai.APIStatusError as err:
        where = normalize_url(llm.url[0]).rstrip("/") + "/models"
        detail = " ".join(str(getattr(err, "message", "") or err).split())[:200]
        raise LLMUnavailable(
            f"{where} answered HTTP {err.status_code} ({detail}): is {llm.url[0]} an OpenAI-compatible server "
            f"(the URL ends in /v1)? Set LLM_URL (or --llm-url) to one, e.g. LLM_URL=http://gpu-host:8000/v1") from err
    return llm if llm.model else dataclasses.replace(llm, model=model)


_SERVE_ELSEWHERE = ("serve the model where they can (vLLM with --host 0.0.0.0) and set LLM_URL=http://HOST:8000/v1 "
                    "(or --llm-url)")


def _reachable_from_workers(urls: list[str]) -> None:
    from webinstruct.core.config import ConfigError
    from webinstruct.pipeline.runners import is_loopback

    if not urls:
        raise ConfigError("no LLM endpoint is given, and the local server a stage starts listens on this machine's "
                          f"loopback address, which workers on other machines cannot reach: {_SERVE_ELSEWHERE}")
    local = [u for u in urls if is_loopback(u)]
    if local:
        raise ConfigError(f"the LLM endpoint {local[0]} is this machine's loopback address, which workers on other "
                          f"machines cannot reach: {_SERVE_ELSEWHERE}")


@contextlib.contextmanager
def llm_endpoint(llm: LLMConfig, max_model_len: int = 4096, workers_elsewhere: bool = False) -> Iterator[LLMConfig]:
    """`llm` with a reachable URL and model: the given endpoint, or a local server for this run
    (with a context of `max_model_len` tokens). `workers_elsewhere` (a cluster runner): a loopback
    URL, or starting a local server, is refused with one line saying what to do instead."""
    if llm.url:
        if workers_elsewhere:
            _reachable_from_workers(list(llm.url))
        yield with_model(llm)
        return
    if workers_elsewhere:
        _reachable_from_workers([])
    from webinstruct.pipeline.llm.server import LocalLLMServer, detached_url

    url = detached_url()
    if url:
        log.info("using the running local LLM server at %s (make serve-llm)", url)
        yield with_model(dataclasses.replace(llm, url=[url]))
        return
    log.info("no LLM endpoint given (LLM_URL): starting the local server for this run")
    with LocalLLMServer(max_model_len=max_model_len, tp=llm.tp, dp=llm.dp) as server:
        log.info("local LLM server: %s", server.why)
        yield dataclasses.replace(llm, url=[server.url], model=llm.model or server.model)
