"""The dataset card (README.md in the refine directory) in the Hugging Face style: YAML front matter
the Hub reads, then what the rows are, how many, what was dropped and why, where they come from,
how they were made and what to be wary of.

The card is written from the rows and stats the refine stage already holds, so its counts are the
dataset's counts. The recipe is dumped verbatim except for secrets (API keys, tokens), which are
masked: a card is meant to be published.
"""
from __future__ import annotations

import collections
import json
import os
from typing import Any, Iterable, Sequence

import yaml

from webinstruct.core import io as fio
from webinstruct.pipeline.report.run_report import DROP_PREFIXES, table

TOP_SOURCES = 20
CONSISTENCY = ("answers_consistent", "answers_changed", "answers_unchecked")
SECRET_WORDS = ("api_key", "apikey", "token", "secret", "password")
# Which keys count as secrets: names containing one of SECRET_WORDS, except counters and settings
# that merely mention tokens (max_tokens, prompt_tokens, tokenizer_dir).
NOT_SECRET = ("max_tokens", "tokens_", "_tokens", "tokenizer")

FIELDS = (
    # name, type, meaning: the public WebInstructSub fields first, then ours.
    ("orig_question", "string", "the question as extracted from the web page"),
    ("orig_answer", "string", "the answer as extracted from the web page"),
    ("question", "string", "the question after LLM refinement"),
    ("answer", "string", "the answer after LLM refinement: a step-by-step solution"),
    ("source", "string", "the site the page came from (registered domain)"),
    ("index", "int", "position in the dataset (0..n-1, by id)"),
    ("id", "string", "row id: pair id + refiner, stable across reruns"),
    ("refiner", "string", "name of the refiner entry that wrote the revision"),
    ("model", "string", "the served model behind the refiner"),
    ("url", "string", "URL of the page"),
    ("doc_id", "string", "id of the recalled document (recall stage)"),
    ("pair_id", "string", "id of the extracted pair (extract stage)"),
    ("extractor", "string", "how the pair was found: `structured:<jsonld|microdata>` or `llm:<model>`"),
    ("doc_score", "float", "recall classifier score of the page, P(educational)"),
    ("final_answer", "string", "the final answer the refined answer states (empty when none)"),
    ("answer_check", "string", "whether refinement kept the original final answer: consistent, "
                               "changed, or unchecked (the original stated none)"),
)

SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                   (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"),
                   (1_000_000_000, "100M<n<1B"))

HOW_MADE = """\
1. **Recall.** WARC records of a web crawl are decoded, turned into math-aware text and scored by a
   fastText classifier trained on educational seed pages against random web pages; pages at or
   above the classifier's threshold are kept, then exact duplicates by URL and by content.
2. **Extract.** Pages that declare their Q&A in markup (schema.org JSON-LD or microdata) give their
   pairs directly; the others are cut into chunks, and an LLM pulls the question-answer pairs
   that the page really contains (it is told not to invent any).
3. **Refine.** An LLM rewrites each pair into a clean question and a step-by-step answer
   (`orig_question`/`orig_answer` keep the extracted text); the final answers before and after
   are compared (`answer_check`).
4. **Decontaminate.** Rows sharing a 10-gram with a benchmark's test questions are removed.
5. **Dedup.** Exact duplicates, then near duplicates by MinHash, are removed.

This follows MAmmoTH2 (Yue et al., 2024, "MAmmoTH2: Scaling Instructions from the Web"), whose
public subset is WebInstructSub; the fields above keep its names."""

LIMITATIONS = """\
The rows come from web pages: they carry the errors, biases, licences and personal data of the
pages they were taken from, and `source` and `url` say which. The refiner is an LLM and can
introduce mistakes that were not on the page: in MAmmoTH2's human check about 10% of refined
pairs had gained a hallucination, and `answer_check` only catches changed final answers, not wrong
steps. A run of this pipeline with the small local model of the demo (SmolLM2-135M) extracts and
refines far worse than the large models of the paper; treat such a dataset as a test of the
pipeline, not as training data. Decontamination covers only the benchmarks it was given, and
only at the 10-gram level."""


def size_category(n: int) -> str:
    for limit, name in SIZE_CATEGORIES:
        if n < limit:
            return name
    return "n>1B"


def _is_secret(key: str) -> bool:
    k = key.lower()
    return any(w in k for w in SECRET_WORDS) and not any(w in k for w in NOT_SECRET)


def mask_secrets(obj: Any) -> Any:
    """A copy of `obj` with the values of secret-looking keys replaced by "***"."""
    if isinstance(obj, dict):
        return {k: ("***" if _is_secret(str(k)) and v not in ("", None, "***") else mask_secrets(v))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [mask_secrets(v) for v in obj]
    return obj


def _tokenizer(recipe: dict[str, Any]) -> tuple[Any, str]:
    """(tokenizer or None, a sentence saying how tokens were counted)."""
    path = recipe.get("tokenizer_dir")
    if not path:
        return None, "Counted as whitespace-separated words (the recipe names no `tokenizer_dir`)."
    if not os.path.isdir(str(path)):  # checked first: importing transformers takes seconds
        return None, f"Counted as whitespace-separated words (no tokenizer directory at `{path}`)."
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as err:  # any failure to load means: fall back, and say why
        return None, (f"Counted as whitespace-separated words (the tokenizer in `{path}` did not "
                      f"load: {type(err).__name__}).")
    return tok, f"Counted with the `{type(tok).__name__}` tokenizer from `{path}`, without special tokens."


def count_tokens(texts: Sequence[str], tokenizer: Any = None, batch: int = 1000) -> list[int]:
    if tokenizer is None:
        return [len(t.split()) for t in texts]
    out: list[int] = []
    for start in range(0, len(texts), batch):
        ids = tokenizer(list(texts[start:start + batch]), add_special_tokens=False)["input_ids"]
        out.extend(len(x) for x in ids)
    return out


def _counter_rows(counts: collections.Counter, total: int, n: int | None = None) -> Iterable[tuple]:
    top = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:n]
    return [(name, c, f"{c / total:.1%}" if total else "–") for name, c in top]


def render_card(rows: list[dict[str, Any]], stats: dict[str, Any], recipe: dict[str, Any]) -> str:
    n = len(rows)
    front = {"license": "other", "task_categories": ["question-answering"], "language": ["en"],
             "size_categories": [size_category(n)], "tags": ["math", "science", "instruction-tuning", "web"],
             "pretty_name": str(recipe.get("name") or "WebInstruct pipeline output"),
             "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "part-*.jsonl.gz"}]}]}
    lines = ["---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
             f"# {front['pretty_name']}", ""]

    lines += ["## Summary", "",
              f"{n:,} instruction rows (question, step-by-step answer) mined from web pages by the "
              "webinstruct pipeline: recall of educational pages, LLM extraction of the question-answer "
              "pairs they contain, LLM refinement, decontamination and deduplication. The fields follow "
              "WebInstructSub (MAmmoTH2), with provenance fields added.", ""]

    lines += ["## Fields", ""]
    lines += table(["field", "type", "meaning"], FIELDS, "lll")
    known = {f[0] for f in FIELDS}
    extra = sorted({k for r in rows for k in r} - known)
    if extra:
        lines += ["", "Also present: " + ", ".join(f"`{k}`" for k in extra) + "."]
    lines.append("")

    lines += ["## Counts", "", f"Rows: {n:,}.", "", "By refiner:", ""]
    lines += table(["refiner", "rows", "share"], _counter_rows(
        collections.Counter(str(r.get("refiner", "(none)")) for r in rows), n))
    lines += ["", "Answer consistency (the final answer before and after refinement):", ""]
    lines += table(["check", "rows"], [(k, stats.get(k, "not recorded")) for k in CONSISTENCY])
    lines.append("")

    lines += ["## Filters", ""]
    drops = {k: v for k, v in sorted(stats.items()) if k.startswith(DROP_PREFIXES)}
    if drops:
        lines += ["Rows removed, by filter:", ""] + table(["filter", "dropped"], drops.items())
    else:
        lines.append("The stats hold no `dropped_*` or `decontaminated_*` counters.")
    lines.append("")

    lines += ["## Sources", "", f"Top {TOP_SOURCES} `source` values:", ""]
    sources = collections.Counter(str(r.get("source", "(none)")) for r in rows)
    lines += table(["source", "rows", "share"], _counter_rows(sources, n, TOP_SOURCES))
    lines += ["", f"{len(sources):,} distinct sources in all.", ""]

    tokenizer, how = _tokenizer(recipe)
    lines += ["## Token counts", "", how, ""]
    token_rows = []
    for name in ("question", "answer"):
        counts = count_tokens([str(r.get(name, "")) for r in rows], tokenizer)
        total = sum(counts)
        token_rows.append((name, total, f"{total / n:.1f}" if n else "–"))
    lines += table(["field", "total", "mean per row"], token_rows) + [""]

    safe = mask_secrets(json.loads(json.dumps(recipe, default=str)))  # plain types for safe_dump
    lines += ["## Recipe", "", "```yaml",
              yaml.safe_dump(safe, sort_keys=False, allow_unicode=True).rstrip(), "```", ""]
    lines += ["## How it was made", "", HOW_MADE, ""]
    lines += ["## Limitations", "", LIMITATIONS, ""]
    return "\n".join(lines)


def write_card(refine_dir: str, rows: list[dict[str, Any]], stats: dict[str, Any], recipe: dict[str, Any]) -> str:
    """Write `<refine_dir>/README.md` for `rows` (the final dataset); return its path."""
    path = fio.join(refine_dir, "README.md")
    fio.write_atomic(path, render_card(rows, stats, recipe))
    return path
