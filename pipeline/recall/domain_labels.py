"""The LLM's verdict on a domain for the domain rounds: an educational site, or not.

MAmmoTH2 had an LLM label the domains its first-round classifier recalled most, keeping sites of
exam problems, tutorials and learning resources in math, science and engineering, and leaving out
news, entertainment and shopping sites whose pages only mention numbers. Here each candidate
domain (one that passed the count and share rules) becomes one request through the shared LLM
client: the domain, its recall statistics, its busiest paths and the openings of up to three of its
recalled documents. The reply is a category and a yes/no, with a short reason kept for audit.
Replies are cached like every LLM call, so selecting again costs nothing.
"""
from __future__ import annotations

import collections
import json
import logging
from typing import Any, Iterable

from webinstruct.pipeline.llm.config import LLMConfig

log = logging.getLogger(__name__)

PROMPT_VERSION = "domain-labels-2"
EDUCATIONAL = ("exam_problems", "tutorials", "learning_resources", "qa_forum", "reference")
OTHER = ("news", "entertainment", "shopping", "business", "personal", "other")
SCHEMA = {
    "type": "object",
    "properties": {
        "reason": {"type": "string"},
        "category": {"type": "string", "enum": list(EDUCATIONAL + OTHER)},
        "educational": {"type": "boolean"},
    },
    "required": ["reason", "category", "educational"],
    "additionalProperties": False,
}
SAMPLES_PER_DOMAIN = 3
SAMPLE_CHARS = 300

INSTRUCTIONS = """You sort web sites for a dataset of math and science study material.

You get one site: its domain name, how many of its pages a math/science classifier picked, the
paths those pages live under, and the beginnings of a few of them. Decide what kind of site it is:

- exam_problems: problem sets, past exams, worksheets, homework help with worked answers
- tutorials: lessons and explanations that teach a method step by step
- learning_resources: textbooks, lecture notes, course pages, encyclopedic math/science articles
- qa_forum: question-and-answer sites or forums where people ask and answer math or science questions
- reference: formula collections, calculators that show their steps, tables of constants
- news, entertainment, shopping, business, personal, other: anything else, including sites whose
  pages only mention numbers (sports results, prices, stock quotes, recipes, horoscopes)

`educational` is true exactly for the first five categories and only when the site's pages are
about mathematics, science or engineering. Judge by the evidence given, not by the name alone.
Answer with one JSON object with the keys reason (what the pages are, in a few words), category
and educational."""

# Two worked examples (invented sites, real kinds of pages) so a small model sees the format and
# both verdicts before the real site.
EXAMPLES = [
    ({"domain": "league-scores.example", "pages_seen": 120, "pages_recalled": 14, "recalled_share": 0.117,
      "top_paths": [["/standings", 10], ["/match", 4]]},
     [{"url": "https://league-scores.example/standings/2021",
       "text": "Standings after round 14: 1. Rovers 31 points, goal difference +12; 2. United 29 points, "
               "+9. Average goals per match 2.7, up 0.3 on last season."}],
     {"reason": "sports league tables full of numbers, not teaching anything", "category": "news",
      "educational": False}),
    ({"domain": "calc-practice.example", "pages_seen": 40, "pages_recalled": 31, "recalled_share": 0.775,
      "top_paths": [["/problems", 25], ["/solutions", 6]]},
     [{"url": "https://calc-practice.example/problems/limits-12",
       "text": "Problem 12. Evaluate the limit of (sin 3x)/x as x tends to 0. Solution: write it as "
               "3 (sin 3x)/(3x); the second factor tends to 1, so the limit is 3."}],
     {"reason": "calculus practice problems with worked solutions", "category": "exam_problems",
      "educational": True}),
]


def site_card(row: dict[str, Any], samples: list[dict[str, Any]]) -> str:
    paths = ", ".join(f"{p} ({n})" for p, n in row.get("top_paths", [])) or "-"
    lines = [f"Domain: {row['domain']}",
             f"Pages seen: {row['pages_seen']}; picked by the classifier: {row['pages_recalled']} "
             f"({100 * row['recalled_share']:.0f}%)",
             f"Busiest paths of picked pages: {paths}"]
    for i, doc in enumerate(samples, 1):
        text = " ".join((doc.get("text") or "").split())[:SAMPLE_CHARS]
        lines.append(f"Page {i}: {doc.get('url', '')}\n{text}")
    return "\n".join(lines)


def request(row: dict[str, Any], samples: list[dict[str, Any]]) -> dict[str, Any]:
    # Fixed instructions first, the site last: the server's prefix cache serves the shared part.
    messages = [{"role": "system", "content": INSTRUCTIONS}]
    for ex_row, ex_samples, answer in EXAMPLES:
        messages += [{"role": "user", "content": site_card(ex_row, ex_samples)},
                     {"role": "assistant", "content": json.dumps(answer)}]
    messages.append({"role": "user", "content": site_card(row, samples)})
    return {"id": row["domain"], "schema": SCHEMA, "schema_name": "domain_label", "max_tokens": 160,
            "messages": messages}


def samples_by_domain(docs: Iterable[dict[str, Any]], domains: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Up to SAMPLES_PER_DOMAIN recalled documents of each wanted domain, best scored first."""
    found: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for doc in docs:
        if doc.get("domain") in domains:
            found[doc["domain"]].append(doc)
    return {d: sorted(v, key=lambda x: (-x.get("score", 0.0), x.get("url", "")))[:SAMPLES_PER_DOMAIN]
            for d, v in found.items()}


def label_domains(rows: list[dict[str, Any]], docs: Iterable[dict[str, Any]], llm: LLMConfig,
                  cache_path: str) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """({domain: {"educational", "category", "reason"} or {"error"}}, LLM accounting) for `rows`.

    Starts the local server when `llm` names no endpoint (see pipeline/llm/endpoint.py)."""
    from webinstruct.pipeline.llm.cache import open_cache
    from webinstruct.pipeline.llm.client import LLMClient
    from webinstruct.pipeline.llm.endpoint import llm_endpoint

    if not rows:
        return {}, {}
    samples = samples_by_domain(docs, {r["domain"] for r in rows})
    requests = [request(r, samples.get(r["domain"], [])) for r in rows]
    tally: collections.Counter = collections.Counter()
    with llm_endpoint(llm, max_model_len=2048) as live:
        with LLMClient(live, open_cache(cache_path), lambda name, n=1: tally.update({name: n})) as client:
            results = client.complete(requests)
    labels: dict[str, dict[str, Any]] = {}
    for row, res in zip(rows, results):
        if not res.ok:
            labels[row["domain"]] = {"error": res.error}
            tally["labels_failed"] += 1
            continue
        data = res.data
        # A model may say "news" and "educational: true" at once; the category decides.
        educational = bool(data["educational"]) and data["category"] in EDUCATIONAL
        labels[row["domain"]] = {"educational": educational, "category": data["category"],
                                 "reason": data["reason"][:300]}
        tally["labels_educational" if educational else "labels_other"] += 1
    log.info("domain labels: %s", dict(tally))
    return labels, dict(tally)
