"""Question-answer pairs that a page states in its markup, found without an LLM.

Q&A sites declare their structure: schema.org `QAPage`, `FAQPage` and `Quiz` data as JSON-LD, or
as microdata (`itemtype=".../Question"` with `.../Answer` items, as on every StackExchange page).
Where a page has it, the pairs come from the markup (accepted answer first, then by votes) and the
extract stage spends no LLM call on it. Bodies go through the math-aware extractor so TeX survives.

The recall stage runs this on the pages it keeps (it has the HTML) and stores the result in the
document's `structured` field.
"""
from __future__ import annotations

import json
import re
from typing import Any

from lxml import etree, html as lxml_html

from webinstruct.pipeline.text.html_text import html_to_text

_JSONLD = re.compile(r"<script[^>]*application/ld\+json[^>]*>(.*?)</script>", re.I | re.S)
_QA_TYPES = {"QAPage", "FAQPage", "Quiz"}


def _types(node: dict) -> set[str]:
    t = node.get("@type", [])
    return {str(x).rsplit("/", 1)[-1] for x in (t if isinstance(t, list) else [t])}


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _text(fragment: Any) -> str:
    """Answer or question text, which JSON-LD may give as HTML."""
    if not isinstance(fragment, str):
        return ""
    if "<" in fragment and ">" in fragment:
        return html_to_text(fragment).strip()
    return fragment.strip()


def _score(node: dict) -> int:
    try:
        return int(node.get("upvoteCount") or 0)
    except (TypeError, ValueError):
        return 0


def _walk_jsonld(node: Any, out: list[dict]) -> None:
    if isinstance(node, list):
        for n in node:
            _walk_jsonld(n, out)
        return
    if not isinstance(node, dict):
        return
    if "@graph" in node:
        _walk_jsonld(node["@graph"], out)
    if "Question" in _types(node):
        q = " ".join(x for x in (_text(node.get("name")), _text(node.get("text"))) if x)
        answers = [{"text": _text(a.get("text")), "accepted": True, "score": _score(a)}
                   for a in _as_list(node.get("acceptedAnswer")) if isinstance(a, dict)]
        answers += [{"text": _text(a.get("text")), "accepted": False, "score": _score(a)}
                    for a in _as_list(node.get("suggestedAnswer")) if isinstance(a, dict)]
        answers = [a for a in answers if a["text"]]
        if q and answers:
            out.append({"question": q, "answers": answers})
        return
    for key in ("mainEntity", "hasPart", "itemListElement"):
        _walk_jsonld(node.get(key), out)


def from_jsonld(page_html: str) -> list[dict]:
    out: list[dict] = []
    for raw in _JSONLD.findall(page_html):
        try:
            data = json.loads(raw.strip())
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and not (_types(data) & (_QA_TYPES | {"Question"})) and "@graph" not in data:
            continue
        _walk_jsonld(data, out)
    return out


def _itemtype(el) -> str:
    return (el.get("itemtype") or "").rsplit("/", 1)[-1]


def _own_props(scope, prop: str) -> list:
    """Elements with `itemprop=prop` belonging to `scope` itself, not to a nested item."""
    found = []
    for el in scope.iter():
        if el is scope or not isinstance(el.tag, str):
            continue
        props = (el.get("itemprop") or "").split()
        if prop in props:
            # The nearest enclosing itemscope must be `scope`.
            parent = el.getparent()
            while parent is not None and parent is not scope and parent.get("itemscope") is None:
                parent = parent.getparent()
            if parent is scope:
                found.append(el)
    return found


def _fragment_text(el) -> str:
    return html_to_text(etree.tostring(el, encoding="unicode", method="html")).strip()


def _vote(el) -> int:
    for v in _own_props(el, "upvoteCount"):
        raw = v.get("data-value") or v.get("content") or (v.text or "")
        try:
            return int(raw.strip())
        except ValueError:
            continue
    try:
        return int(el.get("data-score") or 0)
    except ValueError:
        return 0


def from_microdata(page_html: str) -> list[dict]:
    if "schema.org/Question" not in page_html:
        return []
    try:
        root = lxml_html.document_fromstring(page_html)
    except (etree.ParserError, ValueError):
        return []
    questions = [el for el in root.iter() if isinstance(el.tag, str) and _itemtype(el) == "Question"]
    answers = [el for el in root.iter() if isinstance(el.tag, str) and _itemtype(el) == "Answer"]
    if not questions:
        return []
    out = []
    for q in questions:
        title = " ".join(_fragment_text(n).lstrip("# ") for n in _own_props(q, "name"))
        if not title:
            h1 = root.find(".//h1")
            title = h1.text_content().strip() if h1 is not None else ""
        body = " ".join(_fragment_text(n) for n in _own_props(q, "text"))
        # One question per QAPage: its answers may sit outside the Question item (older SE pages).
        mine = [a for a in answers if q in a.iterancestors()] or (answers if len(questions) == 1 else [])
        items = []
        for a in mine:
            text = "\n\n".join(_fragment_text(n) for n in _own_props(a, "text"))
            accepted = "acceptedAnswer" in (a.get("itemprop") or "") or "accepted-answer" in (a.get("class") or "")
            if text:
                items.append({"text": text, "accepted": accepted, "score": _vote(a)})
        question = "\n\n".join(x for x in (title, body) if x)
        if question and items:
            out.append({"question": question, "answers": items})
    return out


def structured_qa(page_html: str) -> tuple[list[dict], str]:
    """Pairs declared by the page, answers ordered accepted first then by votes; and the source."""
    for source, fn in (("jsonld", from_jsonld), ("microdata", from_microdata)):
        try:
            found = fn(page_html)
        except Exception:  # markup is untrusted input: never fail the page over it
            found = []
        if found:
            for item in found:
                item["answers"].sort(key=lambda a: (not a["accepted"], -a["score"]))
            return found, source
    return [], ""
