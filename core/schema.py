"""The records that cross stage boundaries, defined once.

Every stage reads the previous stage's shards as dicts and writes its own; these dataclasses say
which fields each boundary carries. Records travel through Beam as plain dicts (cheap to pickle,
the same on every runner) and are checked against the schema when written and read.

Later stages add their records here (Q-A pair, WebInstruct row, training example, prediction).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any


class SchemaError(ValueError):
    """A record does not have the fields its stage boundary promises."""


@dataclass
class Page:
    """An HTML response read from a WARC file, before any text extraction."""

    url: str
    html: str
    warc_file: str
    record_id: str
    offset: int
    fetch_date: str = ""
    charset: str = ""


@dataclass
class RecalledDocument:
    """A page the recall classifier kept: the `recall` stage's output record."""

    id: str  # stable: sha1 of url + record id, so reruns produce the same ids
    url: str
    domain: str  # registered domain (eTLD+1): the unit of the domain rounds
    text: str  # math-aware extracted text, TeX in $...$ / $$...$$
    score: float  # classifier probability of the positive label on `text`
    warc_file: str
    record_id: str
    offset: int
    content_hash: str  # hash of the normalised text: exact-duplicate key
    fetch_date: str = ""
    prescore: float = -1.0  # score of the cheap text, -1 when the cheap pass was off
    round: int = 1  # domain round that recalled it
    language: str = ""  # lid.176's code for the page ("" when language identification was off)
    # Q&A the page declares in its markup (schema.org JSON-LD / microdata): [{question, answers:
    # [{text, accepted, score}]}]; the extract stage takes these without an LLM call.
    structured: list = field(default_factory=list)
    structured_source: str = ""  # "jsonld" | "microdata" | ""


@dataclass
class DomainRow:
    """One line of the domain table that drives the domain rounds."""

    domain: str
    pages_seen: int
    pages_recalled: int
    recalled_share: float
    mean_score: float
    top_paths: list = field(default_factory=list)  # [[path prefix, recalled pages], ...]


@dataclass
class QAPair:
    """A question-answer pair found in a recalled document: the `extract` stage's output record."""

    id: str  # sha1 of doc id + question: stable across reruns
    doc_id: str
    url: str
    domain: str
    question: str
    answer: str
    extractor: str  # "structured:<jsonld|microdata>" or "llm:<model>"
    chunk: int = -1  # chunk of the document the LLM saw; -1 for structured pages
    raw: str = ""  # the LLM's raw reply (or the structured item) kept for audit
    doc_score: float = 0.0  # recall classifier score of the document


@dataclass
class WebInstructRow:
    """A refined pair: the `refine` stage's output, a WebInstruct row.

    The first six fields are those of the public WebInstructSub release; the rest say where the
    row came from and how it was checked."""

    orig_question: str
    orig_answer: str
    question: str
    answer: str
    source: str  # the site (registered domain) the pair was found on
    index: int  # position in the final dataset (0..n-1, by id)
    id: str  # pair id + refiner: stable across reruns
    pair_id: str  # the extract stage's QAPair id
    doc_id: str
    url: str
    refiner: str  # name of the refiner entry that wrote the revision
    model: str  # the served model behind it
    extractor: str
    doc_score: float = 0.0
    final_answer: str = ""  # the revision's stated final answer ("" when it states none)
    answer_check: str = "unchecked"  # consistent | changed | unchecked (the original stated no answer)


@dataclass
class MetaMathRow:
    """A bootstrapped question with an accepted solution: the `augment` stage's output, in
    MetaMathQA's format (its four fields) plus a stable id."""

    id: str  # sha1 of type + query + response
    type: str  # GSM_AnsAug, GSM_Rephrased, GSM_SV, GSM_FOBAR, MATH_AnsAug, ... (MetaMathQA's names)
    query: str
    original_question: str
    response: str  # ends with "The answer is: {gold}"


SCHEMAS = {"recall": RecalledDocument, "domains": DomainRow, "extract": QAPair, "refine": WebInstructRow,
           "augment": MetaMathRow}


def field_names(schema: type) -> list[str]:
    return [f.name for f in fields(schema)]


def required_fields(schema: type) -> set[str]:
    return {
        f.name
        for f in fields(schema)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }


def validate(record: dict[str, Any], schema: type) -> dict[str, Any]:
    """Return `record` when it has every required field of `schema`, else raise SchemaError."""
    if not isinstance(record, dict):
        raise SchemaError(f"{schema.__name__}: expected a dict, got {type(record).__name__}")
    missing = required_fields(schema) - record.keys()
    if missing:
        raise SchemaError(f"{schema.__name__}: missing fields {sorted(missing)}")
    return record


def to_record(obj: Any) -> dict[str, Any]:
    """Dataclass instance to the plain dict that travels through Beam and into shards."""
    return dataclasses.asdict(obj)
