"""Session fixtures for tests that need a real LLM: the embedded SmolLM2 model folder and one
local vLLM server shared by the whole test session (starting one costs about 35 s on 2 cores).

Made available to every test module by `from llm_fixtures import llm_model_dir, llm_server`
in tests/conftest.py."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def llm_model_dir() -> str:
    """The converted embedded model, from the user's cache (`$WEBINSTRUCT_CACHE`): converted on
    the first run on a machine (about 25 s), reused afterwards."""
    from webinstruct.pipeline.llm.server import ensure_model

    return ensure_model()


@pytest.fixture(scope="session")
def llm_server(llm_model_dir, tmp_path_factory):
    """A running `LocalLLMServer` on a free port; `.url` and `.model` for the openai client."""
    from webinstruct.pipeline.llm.server import DEFAULT_MODEL, LocalLLMServer

    log = tmp_path_factory.mktemp("llm-server") / "server.log"
    # 4k context: the extract prompt (~1.1k tokens of instructions and examples) plus a chunk and a reply.
    with LocalLLMServer(llm_model_dir, served_name=DEFAULT_MODEL, port=0, log_path=str(log),
                        max_model_len=4096) as server:
        yield server
