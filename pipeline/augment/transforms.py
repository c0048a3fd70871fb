"""The augment stage's main step: seed questions -> MetaMathQA rows.

Per seed question (a question with a checkable final answer), two rounds of LLM requests:

1. AnsAug: `ansaug_samples` solutions; Rephrasing: `rephrasings` rephrased questions; the
   Self-Verification rewrite of the question's last sentence with its answer into a statement;
   FOBAR: for each masked number, `fobar_samples` solutions of the masked question told the
   original answer.
2. Solutions of each rephrased question (`rephrase_samples`), and SV: for each number masked in
   the question's body, `sv_samples` solutions of "<masked body> <statement> What is the value of
   unknown variable x?".

A solution is kept when its final answer equals the gold one (for SV and FOBAR: the masked
number); kept responses end with "The answer is: {gold}". Round 1 of many seeds streams through
the client at once; round 2 of a seed is sent as soon as its round 1 is back. Every reply is in
the persistent cache, so a rerun sends nothing that finished.
"""
from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Iterable, Iterator

import apache_beam as beam

from webinstruct.core import io as fio
from webinstruct.core import shards
from webinstruct.pipeline.augment import accept, masking, prompts
from webinstruct.pipeline.augment.inputs import iter_json_lines, read_seed
from webinstruct.pipeline.llm.client import stop_on_server_faults
from webinstruct.core.stats import Progress, StageCounter

log = logging.getLogger(__name__)
STAGE = "augment"
KINDS = ("ansaug", "rephrase", "sv", "fobar")
STOP = ["\nQuestion:"]  # the few-shot pattern's next turn, when a model writes on


def row_id(type_: str, query: str, response: str) -> str:
    return hashlib.sha1(f"{type_}\n{query}\n{response}".encode("utf-8")).hexdigest()[:20]


def input_files(paths: list[str]) -> list[str]:
    """Files behind the input paths: a directory gives its shards (a stage folder, which must be
    complete: StageIncomplete otherwise; MissingInput when it has no shards, as a run killed before
    its first shard leaves it), a glob its matches."""
    files: list[str] = []
    for p in paths:
        if fio.isdir(p) or shards.list_shards(p) or shards.exists(shards.join(p, shards.MARKER)):
            files += shards.complete_shards(p)
        else:
            files += fio.glob(p) if any(c in p for c in "*?[") else [p]
    return files


def iter_records(path: str, count=None) -> Iterator[dict]:
    """JSON lines (plain, .gz, .xz), a stage shard, or a JSON array file. A JSON line that does not
    parse is skipped and counted with `count` (see `inputs.iter_json_lines`)."""
    if path.endswith(".jsonl.gz") and "/part-" in path:
        yield from shards.iter_shard(path)
        return
    with shards.open_text(path) as f:
        head = f.read(1)
        f.seek(0)
        if head == "[":
            yield from json.load(f)
            return
        yield from iter_json_lines(path, f, *([count] if count is not None else []))


def _request(id_: str, messages: list[dict], c: dict, seed: int, temperature: float | None = None,
             max_tokens: int | None = None) -> dict:
    return {"id": id_, "messages": messages, "temperature": c["temperature"] if temperature is None else temperature,
            "seed": seed, "max_tokens": max_tokens or c["max_tokens"], "stop": STOP}


def masks_of(seed: dict, max_masks: int) -> list[masking.Masked]:
    found = masking.mask_numbers(seed["question"], seed["domain"])
    if max_masks and len(found) > max_masks:
        step = len(found) / max_masks  # spread over the question rather than its first numbers
        found = [found[int(i * step)] for i in range(max_masks)]
    return found


def first_round(seed: dict, c: dict) -> tuple[list[dict], list[masking.Masked]]:
    """Round-1 requests of a seed question, and its masked variants."""
    q, d, sid = seed["question"], seed["domain"], seed["id"]
    reqs = [_request(f"{sid}:ansaug:{i}", prompts.ansaug_messages(q, d), c, seed=i) for i in range(c["ansaug_samples"])]
    reqs += [_request(f"{sid}:rephrase:{i}", prompts.rephrase_messages(q, d), c, seed=i, max_tokens=256)
             for i in range(c["rephrasings"])]
    body, last = masking.split_question(q)
    masks = masks_of(seed, c["max_masks"])
    if body and any(m.question.endswith(last) for m in masks):
        reqs.append(_request(f"{sid}:sv_rewrite", prompts.sv_rewrite_messages(last, seed["answer"], d), c, seed=0,
                             temperature=0.0, max_tokens=160))
    var = masking.unknown_var(d)
    for j, m in enumerate(masks):
        fq = masking.fobar_question(m.question, seed["answer"], var)
        reqs += [_request(f"{sid}:fobar:{j}:{i}", prompts.fobar_messages(fq, d), c, seed=i)
                 for i in range(c["fobar_samples"])]
    return reqs, masks


class AugmentFiles(beam.DoFn):
    """A group of input files -> ("record", MetaMathQA row)..., ("stats", counts)."""

    def __init__(self, cfg: dict[str, Any], llm: dict[str, Any]):
        self.cfg, self.llm = cfg, llm

    def setup(self):
        from webinstruct.pipeline.llm.cache import open_cache
        from webinstruct.pipeline.llm.client import LLMClient
        from webinstruct.pipeline.llm.config import LLMConfig

        self._make_client = lambda count: LLMClient(LLMConfig(**self.llm), open_cache(self.cfg["cache"]), count)

    def process(self, files: list[str]) -> Iterator[tuple[str, Any]]:
        count = StageCounter(STAGE)
        client = self._make_client(count)
        progress = Progress(f"augment {len(files)} input file(s)")
        c = self.cfg
        seen: set[str] = set()
        try:
            groups = (((seed, masks), reqs) for seed in self._seeds(files, count)
                      for reqs, masks in [first_round(seed, c)])
            pending: list = []
            for (seed, masks), results in client.stream(groups, max_pending=c["seeds_in_flight"]):
                self._check(results)
                rows, second, ctx = self._first(seed, masks, results, count)
                yield from self._emit(rows, seen, count)
                if second:
                    pending.append(((seed, ctx), second))
                if len(pending) >= c["seeds_in_flight"]:
                    yield from self._second_round(client, pending, seen, count)
                    pending = []
                progress.maybe(seeds=count.get("seeds_in"), rows=count.get("rows_out"))
            yield from self._second_round(client, pending, seen, count)
        finally:
            client.close()
        yield ("stats", count.drain())

    def _seeds(self, files: list[str], count) -> Iterator[dict]:
        limit = self.cfg["limit"]
        for path in files:
            taken = 0
            for record in iter_records(path, count):
                if limit and taken >= limit:
                    break
                seed, reason = read_seed(record)
                if seed is None:
                    count(f"skipped_{reason}", 1)
                    continue
                taken += 1
                count("seeds_in", 1)
                count(f"seeds_{seed['domain']}", 1)
                yield seed

    def _check(self, results) -> None:
        if self.cfg["stop_on_server_failure"]:
            stop_on_server_faults(results)

    def _solutions(self, kind: str, seed: dict, query: str, gold: str, results, count) -> list[dict]:
        """Rows of the accepted solutions of one query."""
        rows = []
        type_ = accept.row_type(kind, seed["domain"])
        for r in results:
            count(f"{kind}_samples", 1)
            if not r.ok:
                count(f"{kind}_failed_{(r.error or 'unknown').split(':', 1)[0]}", 1)
                continue
            if not accept.accepts(r.text, gold):
                count(f"{kind}_rejected_{'no_answer' if not accept.final_of(r.text) else 'wrong_answer'}", 1)
                continue
            count(f"{kind}_accepted", 1)
            response = accept.finish(r.text, gold, hashes=seed["domain"] == "gsm8k")
            rows.append({"id": row_id(type_, query, response), **accept.metamathqa_row(type_, query, seed["question"],
                                                                                       response)})
        return rows

    def _first(self, seed: dict, masks, results, count) -> tuple[list[dict], list[dict], dict]:
        """Rows from round 1 and the round-2 requests it makes possible."""
        c, d, sid = self.cfg, seed["domain"], seed["id"]
        by_kind: dict[str, list] = {}
        for r in results:
            by_kind.setdefault(r.id.split(":")[1], []).append(r)
        rows = self._solutions("ansaug", seed, seed["question"], seed["answer"], by_kind.get("ansaug", []), count)
        var = masking.unknown_var(d)
        fobar = {}
        for r in by_kind.get("fobar", []):
            fobar.setdefault(int(r.id.split(":")[2]), []).append(r)
        for j, rs in sorted(fobar.items()):
            fq = masking.fobar_question(masks[j].question, seed["answer"], var)
            rows += self._solutions("fobar", seed, fq, masks[j].value, rs, count)
        second: list[dict] = []
        ctx: dict[tuple[str, int], tuple[str, str]] = {}  # round-2 group -> (row kind, its query)
        rephrased: list[str] = []
        for r in by_kind.get("rephrase", []):
            text = prompts.parse_rephrased(r.text) if r.ok else ""
            if not text or text.strip() == seed["question"].strip() or text in rephrased:
                count("rephrase_questions_unusable", 1)
                continue
            rephrased.append(text)
            count("rephrase_questions", 1)
            k = len(rephrased) - 1
            ctx[("rephrase_solve", k)] = ("rephrase", text)
            second += [_request(f"{sid}:rephrase_solve:{k}:{i}", prompts.ansaug_messages(text, d), c, seed=i)
                       for i in range(c["rephrase_samples"])]
        rewrite = next(iter(by_kind.get("sv_rewrite", [])), None)
        statement = prompts.parse_rewrite(rewrite.text) if rewrite is not None and rewrite.ok else ""
        if rewrite is not None and not statement:
            count("sv_rewrite_unusable", 1)
        if statement:
            _, last = masking.split_question(seed["question"])
            for j, m in enumerate(masks):
                if not m.question.endswith(last):
                    count("sv_masks_in_last_sentence", 1)  # the statement replaces that sentence
                    continue
                body = m.question[: len(m.question) - len(last)].rstrip()
                svq = masking.sv_question(masking.sv_statement(body, statement), var)
                ctx[("sv", j)] = ("sv", svq)
                second += [_request(f"{sid}:sv:{j}:{i}", prompts.sv_messages(svq, d), c, seed=i)
                           for i in range(c["sv_samples"])]
        return rows, second, {"ctx": ctx, "masks": masks}

    def _second_round(self, client, pending, seen, count) -> Iterator[tuple[str, Any]]:
        for (seed, state), results in client.stream(pending, max_pending=self.cfg["seeds_in_flight"]):
            self._check(results)
            groups: dict[tuple[str, int], list] = {}
            for r in results:
                parts = r.id.split(":")
                groups.setdefault((parts[1], int(parts[2])), []).append(r)
            rows = []
            for key, rs in sorted(groups.items()):
                kind, query = state["ctx"][key]
                gold = seed["answer"] if kind == "rephrase" else state["masks"][key[1]].value
                rows += self._solutions(kind, seed, query, gold, rs, count)
            yield from self._emit(rows, seen, count)

    def _emit(self, rows: list[dict], seen: set[str], count) -> Iterator[tuple[str, Any]]:
        for row in rows:
            if row["id"] in seen:
                count(f"dropped_duplicate_{row['type']}", 1)
                continue
            seen.add(row["id"])
            count("rows_out", 1)
            count(f"rows_{row['type']}", 1)
            yield ("record", row)


def key_by_type(item: tuple[str, Any]) -> tuple[int, tuple[str, Any]]:
    """A record to the integer key of its MetaMathQA type (1 + its place in TYPES); anything
    else (stats) to 0."""
    from webinstruct.pipeline.augment.accept import TYPES

    kind, payload = item
    if kind == "record":
        return TYPES.index(payload["type"]) + 1, item
    return 0, item


def cap_group(kv: tuple[int, Iterable[tuple[str, Any]]], targets: dict[str, int]) -> Iterator[tuple[str, Any]]:
    """One group of `key_by_type`: a type's rows capped by `cap_type`; key 0 passes through."""
    key, items = kv
    if key == 0:
        yield from items
        return
    yield from cap_type((accept.TYPES[key - 1], list(items)), targets)


def cap_type(kv: tuple[str, list[tuple[str, Any]]], targets: dict[str, int]) -> Iterator[tuple[str, Any]]:
    """At most `targets[type]` rows of one MetaMathQA type: those with the smallest ids (a fixed
    pseudo-random choice); the rest are counted as dropped."""
    type_, items = kv
    rows = sorted((p for k, p in items), key=lambda r: r["id"])
    cap = targets.get(type_)
    count = StageCounter(STAGE)
    if cap is not None and len(rows) > cap:
        count(f"dropped_over_target_{type_}", len(rows) - cap)
        rows = rows[:cap]
    count(f"kept_{type_}", len(rows))
    for r in rows:
        yield ("record", r)
    yield ("stats", count.drain())
