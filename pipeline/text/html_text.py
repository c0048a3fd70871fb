"""HTML -> readable, math-preserving text for the recall stage.

* `decode_html(bytes, charset)` turns fetched bytes into str and says honestly when it had to
  guess or replace characters.
* `html_to_text(html)` is the real extractor: lxml parse, `math_markup.convert_math` (formulas
  become `$tex$` / `$$tex$$`), then ONE recursive walk that skips boilerplate (chrome tags,
  menu/sidebar/cookie/share/ad classes, link-dense short blocks) and writes Markdown-ish text:
  blank lines between blocks, `#` headings, `- ` list items, fenced `pre`, tables row by row.
  Inline text keeps the page's own whitespace, so words in adjacent tags are never glued and
  never split.  It never raises.
* `cheap_text(html)` is a regex-only approximation (>10x faster) for first-pass scoring.
"""
from __future__ import annotations

import codecs
import html as _htmlmod
import re
import threading

from lxml import etree

from .math_markup import MATH_ATTR, convert_math

__all__ = ["decode_html", "html_to_text", "cheap_text"]

# -- decoding ------------------------------------------------------------------------------

_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)
# WHATWG: these labels mean windows-1252 in practice, which is a superset for printable bytes.
_SINGLE_BYTE_WESTERN = {"latin-1", "iso8859-1", "ascii", "cp1252"}
# Share of U+FFFD above which a page is reported "undecodable" rather than "lossy".
UNDECODABLE_RATIO = 0.01


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    if label in ("utf8mb4", "utf-8mb4"):
        label = "utf-8"
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def decode_html(data: bytes, declared_charset: str | None = None) -> tuple[str, str]:
    """Decode page bytes; return (text, reason).

    Order: byte-order mark, the HTTP charset, `<meta charset>`, UTF-8, windows-1252; the first
    that decodes strictly wins.  A declared single-byte Western charset loses to UTF-8 when the
    bytes are valid UTF-8 with non-ASCII content (a common mislabel; mojibake otherwise).
    reason: "" = clean decode; "lossy" = some bytes replaced by U+FFFD (at most
    UNDECODABLE_RATIO of the text); "undecodable" = more replaced, or binary data.
    """
    if not data:
        return "", ""
    if isinstance(data, str):
        return data, ""
    for bom, enc in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                     (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            return _with_replacement(data, enc)
    head = data[:4096]
    # Binary (images, PDFs, compressed bodies) has NULs or many control bytes.
    ctrl = sum(head.count(bytes([b])) for b in (0, 1, 2, 3, 4, 5, 6, 7, 8, 14, 15, 16, 17, 26, 27))
    if ctrl > max(2, len(head) // 100):
        text, _ = _with_replacement(data, "utf-8")
        return text, "undecodable"
    meta = _META_CHARSET.search(head)
    candidates = [_codec(declared_charset),
                  _codec(meta.group(1).decode("ascii", "ignore")) if meta else None]
    non_ascii = any(b > 127 for b in data)
    for enc in candidates:
        if enc is None:
            continue
        if enc in _SINGLE_BYTE_WESTERN and non_ascii:
            try:
                return data.decode("utf-8"), ""
            except UnicodeDecodeError:
                enc = "cp1252"
        try:
            return data.decode(enc), ""
        except (UnicodeDecodeError, LookupError):
            continue
    try:
        return data.decode("utf-8"), ""
    except UnicodeDecodeError:
        pass
    # UTF-8 with a few damaged bytes is still UTF-8: if valid multi-byte characters exist,
    # keep UTF-8 and replace the damage rather than turning every accent into mojibake.
    text = data.decode("utf-8", errors="replace")
    n_bad = text.count("\ufffd")
    n_good = sum(1 for c in text if c > "\x7f" and c != "\ufffd")
    if n_good > n_bad:
        return text, _reason(n_bad, len(text))
    try:
        return data.decode("cp1252"), ""
    except UnicodeDecodeError:
        return _with_replacement(data, "cp1252")


def _with_replacement(data: bytes, enc: str) -> tuple[str, str]:
    text = data.decode(enc, errors="replace")
    return text, _reason(text.count("\ufffd"), len(text))


def _reason(n_bad: int, n: int) -> str:
    if n_bad == 0:
        return ""
    return "undecodable" if n_bad > UNDECODABLE_RATIO * max(n, 1) else "lossy"


# -- extraction ----------------------------------------------------------------------------

_tls = threading.local()


def _parser() -> etree.HTMLParser:
    # lxml parsers must not be shared between threads.
    p = getattr(_tls, "parser", None)
    if p is None:
        p = etree.HTMLParser(remove_comments=True, remove_pis=True, no_network=True,
                             recover=True, encoding="utf-8", default_doctype=False)
        _tls.parser = p
    return p


# Never content: skipped with their whole subtree.
_DROP = frozenset("""head script style noscript svg iframe select input textarea option
    template object embed canvas audio video map area link meta title base""".split())
# Page chrome, but judged like boilerplate classes (see _finish) rather than dropped blindly:
# libxml2 is no HTML5 parser, and an unclosed <div> in a header <button> makes the button
# (and header) swallow the whole article; XenForo wraps its post list in a <form>.
_CHROME = frozenset("nav aside form button footer dialog".split())
_BLOCK = frozenset("""p div section article main header footer blockquote center address
    figure figcaption details summary fieldset legend dl dt dd body html caption hgroup
    ul ol li table tr td th thead tbody tfoot menu dir hr pre h1 h2 h3 h4 h5 h6""".split())
_CLASS_CHECKED = _BLOCK - {"body", "html", "main", "article", "h1", "h2", "h3", "h4", "h5",
                           "h6", "pre", "caption", "thead", "tbody", "tfoot", "hr"}
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
# Block elements judged by their share of link text (navigation lists, tag clouds ...).
_LINK_CHECKED = frozenset("div ul ol table section dl menu dir center tr p td li".split())
_CELL_BLOCKS = ("p", "div", "table", "ul", "ol", "pre", "blockquote", "h1", "h2", "h3",
                "h4", "h5", "h6", "dl")

# Class/id words of page chrome; matched at the start of a class-name segment so that
# "post-menu", "left-sidebar", "navLink" match but "hasad" or "comment-copy" do not.
_BOILER = re.compile(
    r"(?<![a-z0-9])(?:nav|menu|sidebar|breadcrumb|cookie|consent|gdpr|share|sharing|social|"
    r"addthis|advert|adsbygoogle|adunit|ad-?slot|taboola|outbrain|related|recommend|login|"
    r"signup|sign-up|register|subscribe|newsletter|footer|widget|popup|modal|dialog|"
    r"signature|toolbar|topbar|leftnav|pagination|pagenav|pager|skip|screen-reader|sr-only|"
    r"visually-?hidden|editsection|catlinks|printfooter|hot-network|promo|masthead|banner|"
    r"respond|commentform|comment-form|reply-?(?:link|box|form|title)|hmenus|jump-?menu)"
    r"|(?<![a-z0-9])ads?(?![a-z0-9])"
)
# State words before a keyword ("has-sidebar", "no-ads") describe the layout, not chrome.
_STATE_TOKEN = re.compile(r"(?<!\S)(?:has|no|with|without|show|is)[-_]\S*")
_WS = re.compile(r"\s+")
_SEPARATORS = frozenset((" ", "\n", "\n\n"))
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.I)
# Hidden content that a click reveals (spoilers, worked solutions) is kept: for a Q&A corpus
# it is often the answer.  Other hidden blocks are templates, JSON, login boxes.
_REVEALABLE = re.compile(r"spoil|answer|solution|hint|reveal|toggl|collaps|expand|proof|show",
                         re.I)


class _Writer:
    """Accumulates output pieces plus the counters the boilerplate decisions need."""

    __slots__ = ("parts", "chars", "link_chars", "links", "in_link", "pre", "candidates",
                 "list_depth", "in_cell_row", "mains")

    def __init__(self):
        self.parts: list[str] = []
        self.chars = 0          # visible characters written so far
        self.link_chars = 0     # ... of which inside <a>
        self.links = 0          # number of <a href> opened
        self.in_link = 0
        self.pre: list[str] = []
        self.candidates: list[tuple[int, int, int, int, int]] = []
        self.mains = 0          # <main> elements seen (a chrome candidate holding one stays)
        self.list_depth = 0
        self.in_cell_row = False  # inside a data-table row: <br> and blocks become spaces

    def text(self, s: str | None) -> None:
        if not s:
            return
        parts = self.parts
        if s.isspace():
            # Whitespace between tags: one space, and none next to a break or another space.
            if not parts or parts[-1] not in _SEPARATORS:
                parts.append(" ")
            return
        s = _WS.sub(" ", s)
        parts.append(s)
        n = len(s) - s.count(" ")
        self.chars += n
        if self.in_link:
            self.link_chars += n

    def brk(self, s: str = "\n\n") -> None:
        """Ask for a line break ("\n") or paragraph break ("\n\n"); adjacent ones merge."""
        parts = self.parts
        if self.in_cell_row:
            s = " "
        if parts:
            last = parts[-1]
            if last == " ":
                parts[-1] = s
                return
            if last == "\n" or last == "\n\n":
                if len(s) > len(last):
                    parts[-1] = s
                return
        parts.append(s)

    def mark(self):
        return len(self.parts), self.chars, self.link_chars, self.links, self.mains

    def rollback(self, m) -> None:
        del self.parts[m[0]:]
        self.chars, self.link_chars, self.links = m[1], m[2], m[3]
        self.candidates = [c for c in self.candidates if c[0] < m[0]]


def _is_boilerplate(el) -> bool:
    s = el.get("class")
    i = el.get("id")
    if not s and not i:
        return False
    s = f"{s or ''} {i or ''}".lower()
    if "-" in s or "_" in s:
        s = _STATE_TOKEN.sub(" ", s)
    return _BOILER.search(s) is not None


def _revealable(el) -> bool:
    parent = el.getparent()
    for e in (el, parent):
        if e is not None and _REVEALABLE.search(f"{e.get('class') or ''} {e.get('id') or ''}"):
            return True
    return False


def _walk_children(el, w: _Writer, ctx: int, depth: int) -> None:
    w.text(el.text)
    for child in el:
        if isinstance(child.tag, str):
            _walk(child, w, ctx, depth + 1)
        w.text(child.tail)


_IN_ARTICLE = 1


def _walk(el, w: _Writer, ctx: int, depth: int) -> None:
    tag = el.tag
    if tag in _DROP:
        return
    style = el.get("style")
    if (style and _HIDDEN_STYLE.search(style) or el.get("hidden") is not None) and \
            not _revealable(el):
        return
    if depth > 400:  # pathological nesting: no structure, just the words
        w.text(" ".join(el.itertext()))
        return
    math = el.get(MATH_ATTR)
    if math is not None:
        if math == "display":
            w.brk()
            w.text(el.text)
            w.brk()
        else:
            w.text(el.text)
        return
    # A <header> inside an article usually holds its title, so only page headers are chrome.
    # Class names are judged on block elements only: an inline link classed
    # "recommendation-inline-link" is part of its sentence.
    candidate = tag in _CHROME or (tag == "header" and not ctx & _IN_ARTICLE) or (
        tag in _CLASS_CHECKED and _is_boilerplate(el))
    block = tag in _BLOCK
    m = w.mark() if (candidate or tag in _LINK_CHECKED) else None
    if tag in ("article", "main"):
        ctx |= _IN_ARTICLE
        if tag == "main":
            w.mains += 1
    if tag == "a":
        if el.get("href") is not None:
            w.links += 1
        w.in_link += 1
        _walk_children(el, w, ctx, depth)
        w.in_link -= 1
    elif tag == "br":
        w.brk("\n")
    elif tag == "img":
        pass  # math images were converted already; others carry no text
    elif tag == "pre" or (tag == "code" and "\n" in (el.text or "").strip()):
        body = "".join(el.itertext()).strip("\n")
        if body.strip():
            w.brk()
            w.parts.append(f"\x00{len(w.pre)}\x00")
            w.pre.append(f"```\n{body}\n```")
            w.chars += len(body)
            w.brk()
    elif tag in _HEADINGS:
        w.brk()
        w.parts.append("#" * _HEADINGS[tag] + " ")
        _walk_children(el, w, ctx, depth)
        w.brk()
    elif tag in ("ul", "ol", "menu", "dir"):
        w.brk("\n" if w.list_depth else "\n\n")
        w.list_depth += 1
        _walk_children(el, w, ctx, depth)
        w.list_depth -= 1
        w.brk("\n" if w.list_depth else "\n\n")
    elif tag == "li":
        w.brk("\n")
        w.parts.append("  " * max(w.list_depth - 1, 0) + "- ")
        _walk_children(el, w, ctx, depth)
        w.brk("\n")
    elif tag == "table":
        _table(el, w, ctx, depth)
    elif block:
        if w.list_depth or tag in ("dt", "dd", "tr", "td", "th"):
            w.brk("\n")
        else:
            w.brk()
        _walk_children(el, w, ctx, depth)
        w.brk("\n" if w.list_depth or tag in ("dt", "dd", "td", "th") else "\n\n")
    else:
        _walk_children(el, w, ctx, depth)

    if m is None:
        return
    chars = w.chars - m[1]
    links = w.links - m[3]
    link_chars = w.link_chars - m[2]
    if chars == 0:
        return
    density = link_chars / chars
    if tag in _LINK_CHECKED and links >= 2 and chars < 1500 and \
            density > (0.8 if tag in ("p", "td", "li") else 0.5):
        w.rollback(m)  # navigation-like block
    elif candidate:
        w.candidates.append((m[0], len(w.parts), chars, link_chars, w.mains - m[4]))


def _table(el, w: _Writer, ctx: int, depth: int) -> None:
    # Layout tables (old StackExchange, vBulletin) hold whole posts in cells: walk them as
    # blocks.  Only tables of inline cells are written row by row.
    layout = any(d is not el for d in el.iter(*_CELL_BLOCKS))
    w.brk()
    if layout:
        _walk_children(el, w, ctx, depth)
        w.brk()
        return
    for row in el.iter("tr"):
        w.brk("\n")
        first = True
        saved = w.in_cell_row
        w.in_cell_row = True
        for cell in row:
            if cell.tag not in ("td", "th"):
                continue
            start, chars = len(w.parts), w.chars
            if not first:
                w.parts.append(" | ")
            _walk_children(cell, w, ctx, depth + 1)
            if w.chars == chars:
                del w.parts[start:]  # empty cell: no dangling separator
            else:
                first = False
        w.in_cell_row = saved
        w.brk("\n")
    for cap in el.iter("caption"):
        w.brk("\n")
        _walk_children(cap, w, ctx, depth + 1)
    w.brk()


_SPACES_AROUND_NL = re.compile(r"[ \t]*\n[ \t]*")
_MULTI_SPACE = re.compile(r"[ \t]{2,}")
_MULTI_NL = re.compile(r"\n{3,}")
_EMPTY_ITEM = re.compile(r"^(?:[ ]*- ?|#+ ?)$", re.M)
_PRE_SLOT = re.compile(r"\x00(\d+)\x00")
# A run of paragraphs that only define TeX macros is a site-wide MathJax preamble
# (LibreTexts prints ~20 on every page); a single definition inside a post is kept.
_MACRO_RUN = re.compile(
    r"(?:^[\\($ ]*\\(?:re)?newcommand\b[^\n]*(?:\n+|\Z)){3,}", re.M)


def _finish(w: _Writer) -> str:
    parts = w.parts
    if w.candidates:
        total = max(w.chars, 1)
        drop = [(s, e) for s, e, c, lc, mains in w.candidates
                # Chrome holding <main>, or much of the page's text without being mostly
                # links, is a misnamed (or mis-parsed) content wrapper: keep it.
                if not (mains or (c >= 0.4 * total and c > 300 and lc < 0.5 * c))]
        if drop:
            keep = [True] * len(parts)
            for s, e in drop:
                for i in range(s, min(e, len(parts))):
                    keep[i] = False
            parts = [p for p, k in zip(parts, keep) if k]
    text = "".join(parts)
    text = _MULTI_SPACE.sub(" ", text)
    text = _SPACES_AROUND_NL.sub("\n", text)
    text = _EMPTY_ITEM.sub("", text)
    if "newcommand" in text:
        text = _MACRO_RUN.sub("", text)
    text = _MULTI_NL.sub("\n\n", text).strip()
    if w.pre:
        text = _PRE_SLOT.sub(lambda mo: w.pre[int(mo.group(1))], text)
    return text


def html_to_text(html: str, url: str | None = None) -> str:
    """Main-content text of an HTML page, with math as `$tex$`/`$$tex$$`; "" if none.

    `url` is accepted for future per-site rules and is currently unused.
    """
    if not html or not isinstance(html, str) or not html.strip():
        return ""
    try:
        root = etree.fromstring(html.encode("utf-8", "replace"), _parser())
    except Exception:  # libxml2 gives up only on hopeless input
        return ""
    if root is None:
        return ""
    try:
        convert_math(root)
        w = _Writer()
        body = root.find("body")
        _walk(body if body is not None else root, w, 0, 0)
        return _finish(w)
    except Exception:
        # A bug here must not lose the page: the regex approximation is better than nothing.
        try:
            return cheap_text(html)
        except Exception:
            return ""


# -- cheap approximation -------------------------------------------------------------------

# One pass removes comments, non-math scripts, styles and every tag (a space each, so words
# in adjacent cells never glue).  Math scripts and LaTeX images are turned into text first,
# and only when the page mentions them, which keeps the common path to three C-level passes.
# Unrolled loops ([^<]* runs) instead of lazy ".*?" keep this a C-speed scan of big scripts.
_CHEAP_STRIP = re.compile(
    r"<(?:!--[^-]*(?:-(?!->)[^-]*)*-->"
    r"|script\b[^<]*(?:<(?!/script)[^<]*)*</script\s*>"
    r"|style\b[^<]*(?:<(?!/style)[^<]*)*</style\s*>"
    r"|[^>]*>)", re.I)
# Case spelled out rather than re.I: a case-sensitive pattern lets re jump from "<" to "<".
_CHEAP_MATH_SCRIPT = re.compile(
    r"<[sS][cC][rR][iI][pP][tT]\b[^>]*math/tex[^>]*>([^<]*(?:<(?!/[sS][cC][rR][iI][pP][tT])[^<]*)*)"
    r"</[sS][cC][rR][iI][pP][tT]\s*>")
_CHEAP_IMG = re.compile(r"<[iI][mM][gG]\b[^>]*>")
_CHEAP_ALT = re.compile(r"alt=(?:\"([^\"]*)\"|'([^']*)')", re.I)


def _cheap_img(m) -> str:
    tag = m.group(0)
    if "latex" not in tag and "codecogs" not in tag and "mathtex" not in tag:
        return " "
    a = _CHEAP_ALT.search(tag)
    return f" ${_htmlmod.unescape(a.group(1) or a.group(2) or '')}$ " if a else " "


def cheap_text(html: str) -> str:
    """Fast tag-stripped text: scripts/styles/comments removed, TeX scripts and LaTeX image
    alts kept as `$tex$`, entities unescaped, whitespace collapsed.  No boilerplate removal."""
    if not html or not isinstance(html, str):
        return ""
    s = html
    if "math/tex" in s:
        s = _CHEAP_MATH_SCRIPT.sub(lambda m: f" ${m.group(1).strip()}$ ", s)
    if "codecogs" in s or "latex.php" in s or ".latex?" in s or "mathtex" in s or \
            '"latex' in s:
        s = _CHEAP_IMG.sub(_cheap_img, s)
    s = _CHEAP_STRIP.sub(" ", s)
    if "&" in s:
        s = _htmlmod.unescape(s)
    return " ".join(s.split())
