"""Build the bundled sample WARCs from the real pages and WARC files in ../shared/web.

    python data/sample/build_sample.py [SHARED_DIR]

Writes data/sample/warc/: `pages.warc.gz` (the real math and general HTML pages wrapped as HTTP
responses, with two duplicates added on purpose: the same URL fetched twice and the same page
under a second URL) and byte-for-byte copies of real crawl files, including a clipped and a
truncated one so the sample shows how broken input is counted. Sources: data/sample/MANIFEST.md.
"""
from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

HERE = Path(__file__).resolve().parent
COPIED = [
    "cc-main-2020-34_excerpt.resiliparse.warc.gz",
    "dolma_sample-0000.warc.gz",
    "clueweb22_quirk.resiliparse.warc.gz",
    "clipped.resiliparse.warc.gz",
    "example-trunc.warcio.warc",
]
GENERAL_URLS = {
    "stackoverflow.com.rust": "https://stackoverflow.blog/2020/01/20/what-is-rust-and-why-is-it-so-popular/",
    "nature.com.telescope": "https://www.nature.com/articles/d41586-019-02790-3",
    "blog.python.org": "http://blog.python.org/2016/12/python-360-is-now-available.html",
    "health.com.magnesium": "https://www.health.com/fruits-high-in-magnesium-8787394",
    "plainblogaboutpolitics.blogspot.com": "http://plainblogaboutpolitics.blogspot.com/2011/12/acceptable.html?m=1",
}
# Test pages from llm-webkit that have no original URL: a reserved, never-resolving host.
NO_URL = {
    "testmathjax_llmwebkit-test": "http://llm-webkit-tests.invalid/testmathjax.html",
    "physicsforums_llmwebkit-test": "http://llm-webkit-tests.invalid/math_physicsforums.html",
}


def page_urls(web: Path) -> list[tuple[str, Path]]:
    out = []
    for html in sorted((web / "html_math").glob("*.html")):
        exp = web / "expected" / f"{html.stem}.llmwebkit.jsonl"
        url = json.loads(exp.read_text().splitlines()[0])["url"] if exp.exists() else NO_URL[html.stem]
        out.append((url, html))
    for html in sorted((web / "html_general").glob("*.html")):
        out.append((GENERAL_URLS[html.stem], html))
    return out


def write_response(writer: WARCWriter, url: str, body: bytes, date: str) -> None:
    http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                       ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
    rec = writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http,
                                    warc_headers_dict={"WARC-Date": date})
    writer.write_record(rec)


def build(shared: Path, out_dir: Path) -> None:
    web = shared / "web"
    out_dir.mkdir(parents=True, exist_ok=True)
    pages = page_urls(web)
    with open(out_dir / "pages.warc.gz", "wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        for i, (url, path) in enumerate(pages):
            write_response(writer, url, path.read_bytes(), f"2024-05-01T00:00:{i:02d}Z")
        # Duplicates on purpose: a re-fetch of the same URL, and the same page under another URL.
        url, path = pages[0]
        write_response(writer, url, path.read_bytes(), "2024-05-02T00:00:00Z")
        url, path = pages[1]
        write_response(writer, url.split("?")[0] + "?answertab=votes", path.read_bytes(), "2024-05-02T00:00:01Z")
    for name in COPIED:
        shutil.copyfile(web / "warc" / name, out_dir / name)


if __name__ == "__main__":
    shared = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[2] / "shared"
    build(shared, HERE / "warc")
    print(f"sample WARCs in {HERE / 'warc'}")
