"""Settings of the extract stage (recipe section `extract`; the LLM endpoint is section `llm`)."""
from __future__ import annotations

from dataclasses import dataclass

from webinstruct.pipeline.runners import RunnerSettings
from webinstruct.core.config import NonNegativeInt, PositiveInt, option


@dataclass
class ExtractConfig(RunnerSettings):
    run: str = option("runs/sample", "run directory; extract reads RUN/recall and writes RUN/extract/")
    input: str = option("", "recall directory to read (default RUN/recall)")
    out: str = option("", "output directory (default RUN/extract)")
    remove_chrome: bool = option(True, "drop site-chrome lines left in the text (vote widgets, 'Asked 3 years ago', "
                                       "cookie banners; pipeline/text/cleanup.py) before chunking")
    chunk_chars: PositiveInt = option(6000, "longest document chunk sent to the LLM, in characters")
    overlap_chars: NonNegativeInt = option(600, "characters shared by consecutive chunks")
    use_structured: bool = option(True, "take pairs from schema.org QAPage/FAQPage markup without an LLM call")
    structured_answers: NonNegativeInt = option(1, "answers kept per structured question (accepted or top-voted first)")
    max_chunks_per_doc: PositiveInt = option(8, "chunks of one document sent to the LLM at most (the rest are counted and skipped)")
    docs_in_flight: PositiveInt = option(64, "documents whose LLM requests may be pending at once per task (the client keeps "
                                     "max_concurrency requests in flight among them)")
    tasks: NonNegativeInt = option(0, "parallel tasks, each a group of recall shards (0: one per worker on the local and "
                           "multiprocess runners, one per recall shard on the others)")
    stop_on_server_failure: bool = option(True, "stop the stage when requests fail for the server's sake after all retries "
                                          "(finished replies stay cached; a rerun resumes)")
    num_shards: PositiveInt = option(2, "output shards")

    def __post_init__(self) -> None:
        if self.overlap_chars >= self.chunk_chars:
            raise ValueError(f"overlap_chars ({self.overlap_chars}) must be smaller than chunk_chars ({self.chunk_chars})")

    def input_dir(self) -> str:
        return self.input or f"{self.run.rstrip('/')}/recall"

    def out_dir(self) -> str:
        return self.out or f"{self.run.rstrip('/')}/extract"

    def cache_path(self) -> str:
        return f"{self.run.rstrip('/')}/cache/llm.sqlite"
