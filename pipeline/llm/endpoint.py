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
    """`llm` with its model named; asking the first URL checks that it answers (a clear error if not)."""
    from webinstruct.pipeline.llm.client import LLMClient

    model = LLMClient(llm).resolve_model(llm.url[0])
    return llm if llm.model else dataclasses.replace(llm, model=model)


@contextlib.contextmanager
def llm_endpoint(llm: LLMConfig, max_model_len: int = 4096) -> Iterator[LLMConfig]:
    """`llm` with a reachable URL and model: the given endpoint, or a local server for this run
    (with a context of `max_model_len` tokens)."""
    if llm.url:
        yield with_model(llm)
        return
    from webinstruct.pipeline.llm.server import LocalLLMServer, detached_url

    url = detached_url()
    if url:
        log.info("using the running local LLM server at %s (make serve-llm)", url)
        yield with_model(dataclasses.replace(llm, url=[url]))
        return
    log.info("no LLM endpoint given (LLM_URL): starting the local server for this run")
    with LocalLLMServer(max_model_len=max_model_len) as server:
        yield dataclasses.replace(llm, url=[server.url], model=llm.model or server.model)
