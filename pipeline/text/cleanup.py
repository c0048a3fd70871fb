"""Rule-based removal of the site chrome that survives HTML-to-text extraction.

`html_to_text` drops navigation, headers, footers and hidden blocks by their markup. What is
left is chrome written as ordinary text inside the content area: Q&A site widgets ("Ask
Question", "Viewed 614 times", "up vote 17 down vote accepted", "$\\begingroup$"), forum post
headers ("Joined", "Posts"), wiki "edit" links, cookie and sign-up banners. Each costs LLM
tokens in every chunk and can be mistaken for content, so the extract stage removes it before
chunking. The rules are whole-line and conservative: a line goes only when all of it matches a
rule, so a sentence that merely mentions "share" or "edit" stays, and no rule touches a line with
math in it other than the StackExchange group markers.
"""
from __future__ import annotations

import re
from collections import Counter

# Whole lines (lowercased, list/table markers and trailing punctuation stripped) that are chrome.
CHROME_LINES = frozenset((
    "ask question", "sign up", "log in", "login", "sign in", "register", "share", "share this",
    "share this post", "improve this answer", "improve this question", "follow", "flag", "cite", "edit",
    "reply", "quote", "report", "permalink", "print", "email", "tweet", "loading", "loading...",
    "dismiss notice", "save as pdf", "last updated", "page id", "add a comment", "skip to main content",
    "skip to content", "jump to navigation", "jump to search", "toggle navigation", "back to top",
    "read more", "show more", "show less", "load more comments", "related questions",
    "hot network questions", "linked", "related", "$\\begingroup$", "$\\endgroup$", "\\begingroup",
    "\\endgroup", "reset to default", "sorted by", "joined", "posts", "thanks", "thanked", "reputation",
    "rep power", "likes received", "trophy points",
))

_PATTERNS = [re.compile(p, re.I) for p in (
    r"(asked|modified|viewed|active|answered|edited|commented|posted|updated)\b.{0,40}\b(ago|times?|at \d{1,2}:\d\d)",
    r"(asked|answered|edited|commented|posted) (on )?[a-z]{3,9}\.? \d{1,2},? \d{4}( at \d{1,2}:\d\d)?",
    r"up ?vote \d+ down ?vote( accepted| favorite)?",
    r"(show|add|load) \d* ?more comments?",
    r"\d+ answers?",
    r"sorted by:.*",
    r"join [\w .]{1,40} today!?",
    r"(we|this site) uses? cookies\b.{0,200}",
    r"(accept|reject|manage)( all)? cookies",
    r"subscribe to (our|the) newsletter.{0,100}",
    r"(©|\(c\)|copyright)\s*\d{4}.{0,120}",
    r"all rights reserved\.?",
    r"(privacy policy|terms of (service|use)|cookie policy)( [|·•-] (privacy policy|terms of (service|use)|cookie policy|contact( us)?))*",
    r"by clicking .{0,120}(terms|privacy|cookie).{0,120}",
    r"not the answer you're looking for\?.{0,200}",
    r"(thanks|thank you) for contributing an answer to .{0,200}",
)]
_STRIP = re.compile(r"^[\s\-*•|>#]+|[\s|:.!]+$")
_BLANKS = re.compile(r"\n{3,}")
_GROUP_MARKERS = re.compile(r"[ \t]*\$\\(?:begin|end)group\$[ \t]*")  # StackExchange's post markers


def _is_chrome(line: str) -> bool:
    core = _STRIP.sub("", line).lower()
    if not core:
        return False
    if core in CHROME_LINES or core.rstrip(".") in CHROME_LINES:
        return True
    if "$" in core and core not in ("$\\begingroup$", "$\\endgroup$"):
        return False
    return any(p.fullmatch(core) for p in _PATTERNS)


def remove_chrome(text: str) -> tuple[str, Counter]:
    """(`text` without chrome lines and with runs of blank lines squeezed, counts) where counts
    holds `chrome_lines` removed and `chrome_chars` saved (blank-line squeezing included)."""
    kept, removed = [], 0
    for line in text.split("\n"):
        if _is_chrome(line):
            removed += 1
            continue
        if "group$" in line:  # a marker glued to a comment's text: drop the marker, keep the text
            line = _GROUP_MARKERS.sub(" ", line).rstrip()
        kept.append(line)
    out = _BLANKS.sub("\n\n", "\n".join(kept)).strip("\n")
    return out, Counter(chrome_lines=removed, chrome_chars=len(text) - len(out))
