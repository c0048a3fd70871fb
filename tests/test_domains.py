"""Domain keys, tallies, selection rules and round overlap."""
from __future__ import annotations

import pytest

from webinstruct.pipeline.recall import domains as dom


@pytest.mark.parametrize("url,expected", [
    ("https://math.stackexchange.com/questions/1", "stackexchange.com"),
    ("http://www.bbc.co.uk/news", "bbc.co.uk"),
    ("https://en.m.wikipedia.org/wiki/Variance", "wikipedia.org"),
    ("http://llm-webkit-tests.invalid/x.html", "llm-webkit-tests.invalid"),
    ("https://plainblogaboutpolitics.blogspot.com/2011/12/x", "plainblogaboutpolitics.blogspot.com"),
    ("not a url", ""),
])
def test_registered_domain(url, expected):
    assert dom.registered_domain(url) == expected


def test_path_prefix():
    assert dom.path_prefix("https://a.org/questions/12/x") == "/questions"
    assert dom.path_prefix("https://a.org") == "/"


def _row(domain, seen, recalled):
    t = dom.new_tally()
    for i in range(seen):
        dom.add_page(t, f"https://{domain}/q/{i}", 0.9 if i < recalled else 0.1, i < recalled)
    return dom.tally_to_row(domain, t)


def test_tallies_merge_and_rows():
    a, b = dom.new_tally(), dom.new_tally()
    dom.add_page(a, "https://x.org/q/1", 0.9, True)
    dom.add_page(b, "https://x.org/q/2", 0.8, True)
    dom.add_page(b, "https://x.org/blog/3", 0.1, False)
    row = dom.tally_to_row("x.org", dom.merge_tallies([a, b]))
    assert row == {"domain": "x.org", "pages_seen": 3, "pages_recalled": 2, "recalled_share": 0.6667,
                   "mean_score": 0.6, "top_paths": [["/q", 2]]}


def test_select_rules_and_labeler():
    rows = [_row("big-math.org", 100, 60), _row("news.com", 1000, 50), _row("tiny.org", 3, 3)]
    selected, verdicts = dom.select_domains(rows, min_recalled=10, min_share=0.1)
    assert selected == ["big-math.org"]
    assert verdicts == {"big-math.org": "selected", "news.com": "low_share", "tiny.org": "too_few_recalled"}
    selected, verdicts = dom.select_domains(rows, 10, 0.1, labeler=lambda r: "math" not in r["domain"])
    assert selected == [] and verdicts["big-math.org"] == "labeler_rejected"


def test_load_labeler():
    fn = dom.load_labeler("os.path:isabs")
    assert fn("/x") is True
    with pytest.raises(ValueError):
        dom.load_labeler("no_colon")


def test_overlap():
    ov = dom.overlap(["a", "b", "c"], ["b", "c", "d", "e"])
    assert ov["both"] == 2 and ov["only_current"] == 2 and ov["only_previous"] == 1
    assert ov["share_of_current_already_found"] == 0.5 and ov["jaccard"] == 0.4
