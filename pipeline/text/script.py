"""Which writing system a text is in: the recall stage's language gate.

The seed classifier is trained on English text; on pages in other scripts almost no token is in
its vocabulary and its score says nothing (Japanese shop pages scored 0.9 on the sample). MAmmoTH2
recalled English pages; `latin_share` lets the recall stage drop other scripts by a named reason
instead of trusting a meaningless score. Set the threshold to 0 to keep every script.
"""
from __future__ import annotations

import re

_LETTER = re.compile(r"[^\W\d_]")
# Latin letters: ASCII, Latin-1 Supplement, Latin Extended-A/B, IPA, Latin Extended Additional.
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f\u0250-\u02af\u1e00-\u1eff]")


def latin_share(text: str, sample_chars: int = 20000) -> float:
    """Share of letters (in the first `sample_chars`) that are Latin; 1.0 when there are none."""
    head = text[:sample_chars]
    letters = len(_LETTER.findall(head))
    if not letters:
        return 1.0
    return len(_LATIN.findall(head)) / letters
