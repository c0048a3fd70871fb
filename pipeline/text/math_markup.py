"""Turn rendered or encoded math in an lxml HTML tree back into TeX text, in place.

`html_text.html_to_text` calls `convert_math(root)` before it serialises a page, so that the
formulas of MathJax (v2 scripts, v3 `mjx-container`), KaTeX, MathML (incl. Wikipedia's
`mwe-math-element`) and LaTeX images (WordPress `img.latex`, codecogs, mathtex ...) come out
as `$tex$` (inline) or `$$tex$$` (display) exactly once.  Every converted formula becomes a
fresh element carrying the attribute `data-wi-math` ("inline" -> `span`, "display" -> `div`),
whose text is the delimited TeX; the serialiser needs no other math knowledge.

AsciiMath becomes TeX too (`asciimath.to_tex`): `<script type="math/asciimath">` like the TeX
scripts, and `backtick` spans in the text, but only on pages that load MathJax's AsciiMath
input or ASCIIMathML.js (`_loads_asciimath`), since elsewhere backticks are just backticks;
code, pre and the other tags MathJax skips keep theirs.

TeX that is already plain text (`$...$`, `\\(...\\)`, `[tex]...[/tex]` ...) is left alone: it
survives serialisation as text.
"""
from __future__ import annotations

import re
from urllib.parse import unquote_plus

from lxml import etree

from .asciimath import to_tex as asciimath_to_tex

MATH_ATTR = "data-wi-math"

# Classes of MathJax v2 output that duplicate the TeX kept in the neighbouring script.
_MATHJAX_RENDERED = re.compile(r"MathJax|MJX|mjx-chtml")
# The outer frame of a MathJax v2 rendering (its assistive MathML sits inside).
_MATHJAX_FRAME = re.compile(
    r"(?<![\w-])(?:MathJax(?:_Display|_SVG|_SVG_Display|_CHTML)?|mjx-chtml)(?![\w-])")
_TEX_ENCODING = re.compile(r"tex|latex", re.I)
_IMG_STRONG = re.compile(r"(?:^|[\s_-])(?:latex|tex|mathtex)(?:$|[\s_-])", re.I)
_IMG_CLASS = re.compile(r"(?:^|[\s_-])(?:math|equation|formula)(?:$|[\s_-])", re.I)
_MATHY = re.compile(r"[\\^_={}+*/<>|()0-9-]")
_IMG_SRC = re.compile(
    r"latex|mathtex|mimetex|codecogs|texvc|/math/render|tex\?|\.tex\b|cht=tx|/equation", re.I
)
# Where a LaTeX image service puts the TeX in its URL, for images without a usable alt.
_SRC_TEX = re.compile(
    r"(?:latex\.php\?latex=|\.latex\?|mathtex\.cgi\?|mimetex\.cgi\?|chl=)([^&]+)")
_BR = re.compile(r"<br\s*/?>", re.I)


def convert_math(root, source: str | None = None) -> int:
    """Replace every formula under `root` by a `data-wi-math` element; return how many.

    `source`, the page's HTML text, lets pages without math markers skip the search.
    """
    if root is None:
        return 0
    # Backtick AsciiMath needs a backtick (a memchr-speed test) and a page that loads an
    # AsciiMath typesetter, which the page's <script> elements tell (see _loads_asciimath).
    ticks = source is None or "`" in source
    if source is not None and not ticks and not any(m in source for m in _MARKERS):
        return 0
    backticks = False
    # Every form is reachable from four tags (lxml filters tags in C; class tests in XPath
    # cost a full scan per test): KaTeX, Wikipedia and MathJax-frame math all carry a
    # <math> whose ancestors say which wrapper to replace.
    scripts, others = [], []
    for el in root.iter("script", "math", "mjx-container", "img"):
        if el.tag == "script":
            kind = el.get("type") or ""
            if "math/tex" in kind or "math/asciimath" in kind:
                scripts.append(el)
            elif ticks and not backticks:
                backticks = _loads_asciimath(el)
        else:
            others.append(el)
    done = 0
    # Scripts first: they carry the original TeX, and their handler removes the rendered
    # frames (which precede them and hold assistive MathML) so those are not converted too.
    for el in scripts:
        done += _script(el)
    for el in others:
        if not _attached(el, root):
            continue  # inside something already replaced or removed
        tag = el.tag
        if tag == "img":
            done += _img(el)
        elif tag == "mjx-container":
            done += _mjx_container(el)
        else:
            done += _math_in_context(el)
    if backticks:
        done += _backtick_math(root)
    return done


_MARKERS = ("math/tex", "math/asciimath", "<math", "<MATH", "mjx-container", "<img", "<IMG")
# What a page that typesets `backtick` AsciiMath contains: MathJax v2 combined configurations
# (AM_CHTML, TeX-MML-AM_HTMLorMML ...) or its asciimath2jax preprocessor, the AsciiMath input
# jax / v3 component (input/asciimath), or asciimath's own ASCIIMathML.js.
_AM_MARKERS = ("AM_CHTML", "AM_HTMLorMML", "AM_SVG", "asciimath2jax", "input/asciimath",
               "input/AsciiMath", "ASCIIMathML", "asciimathml", "ASCIIMathTeXImg")


# Inline scripts longer than this are application code, not a MathJax configuration.
_CONFIG_MAX = 20000


def _loads_asciimath(script) -> bool:
    """True when a <script> loads or configures AsciiMath typesetting, by its src or (for a
    short inline script) its text.

    Checking scripts, not the raw page, keeps this cheap: a substring scan of a whole page
    costs ~0.1 ms per marker (0.3 ns a character), while a page's inline scripts are a
    fraction of it, and three short needles shared by all markers screen them first."""
    src = script.get("src")
    if src and any(m in src for m in _AM_MARKERS):
        return True
    text = script.text
    if not text or len(text) >= _CONFIG_MAX:
        return False
    if "AM_" in text or "ciimath" in text or "ciiMath" in text or "CIIMath" in text:
        return any(m in text for m in _AM_MARKERS)
    return False


def _math_in_context(m) -> int:
    """Convert a <math>, replacing the widget that wraps it (KaTeX, Wikipedia, MathJax)."""
    anc = m.getparent()
    for _ in range(4):
        if anc is None:
            break
        cls = anc.get("class") or ""
        if cls:
            if "mwe-math-element" in cls:
                return _from_math_inside(anc, display=_wiki_display(anc))
            if "katex" in cls.split():
                return _katex(anc)
            if _MATHJAX_FRAME.search(cls):
                return _from_math_inside(anc, display="Display" in cls, keep_if_none=True)
        anc = anc.getparent()
    return _math(m)


# -- handlers ------------------------------------------------------------------------------

def _script(el) -> int:
    kind = el.get("type") or ""
    tex = (el.text or "").strip()
    if tex and "math/asciimath" in kind:
        tex = asciimath_to_tex(tex)
    display = "mode=display" in kind.replace(" ", "")
    # MathJax v2 puts its preview and rendered frame right before the script.
    prev = el.getprevious()
    while prev is not None and isinstance(prev.tag, str) and \
            _MATHJAX_RENDERED.search(prev.get("class") or ""):
        nxt = prev.getprevious()
        _drop(prev)
        prev = nxt
    if not tex:
        _drop(el)
        return 0
    _replace(el, tex, display)
    return 1


def _mjx_container(el) -> int:
    display = (el.get("display") or "").lower() in ("true", "block")
    if _first_math(el) is not None:
        return _from_math_inside(el, display=display)
    # No MathML: whatever text it holds (often TeX with its own delimiters) stays as it is,
    # made a block when MathJax said display.
    if display:
        el.tag = "div"
    return 0


def _katex(el) -> int:
    tex = None
    for ann in el.iter("annotation"):
        if _TEX_ENCODING.search(ann.get("encoding") or ""):
            tex = (ann.text or "").strip()
            break
    if not tex:
        m = _first_math(el)
        tex = _linearise(m) if m is not None else None
    if not tex:
        return 0  # leave KaTeX's own HTML rendering: better than losing the formula
    target, display = el, False
    parent = el.getparent()
    if parent is not None and "katex-display" in (parent.get("class") or ""):
        target, display = parent, True
    _replace(target, tex, display)
    return 1


def _math(el) -> int:
    tex = _math_tex(el)
    if not tex:
        _drop(el)
        return 0
    display = (el.get("display") or "").lower() == "block" or el.get("mode") == "display"
    _replace(el, tex, display)
    return 1


def _from_math_inside(el, display: bool, keep_if_none: bool = False) -> int:
    m = _first_math(el)
    tex = _math_tex(m) if m is not None else None
    if not tex:
        # Wikipedia's fallback image still holds the TeX in its alt text.
        for img in el.iter("img"):
            tex = _clean_alt(img.get("alt") or "")
            if tex:
                break
    if not tex:
        if not keep_if_none:
            _drop(el)
        return 0
    if m is not None and (m.get("display") or "").lower() == "block":
        display = True
    _replace(el, tex, display)
    return 1


def _img(el) -> int:
    cls = el.get("class") or ""
    src = el.get("src") or ""
    strong = _IMG_STRONG.search(cls) or _IMG_SRC.search(src)
    if not (strong or _IMG_CLASS.search(cls)):
        return 0
    tex = _clean_alt(el.get("alt") or "")
    if not tex:
        m = _SRC_TEX.search(src)
        tex = _clean_alt(unquote_plus(m.group(1))) if m else ""
    # A class like "math-logo" alone is weak evidence: the alt must look like a formula.
    if not tex or not (strong or len(tex) <= 3 or _MATHY.search(tex)):
        return 0
    # WordPress marks display formulas only by \displaystyle at the start of a paragraph.
    display = "display" in cls or _alone_in_block(el) or (
        tex.startswith("\\displaystyle") and _starts_block(el))
    _replace(el, tex, display)
    return 1


# Where MathJax does not look for math, and our own formulas.
_NO_MATH_TAGS = frozenset("pre code kbd samp tt script noscript style textarea title "
                          "annotation annotation-xml math".split())
_IGNORE_CLASS = re.compile(r"(?:asciimath2jax|tex2jax|mathjax)_ignore", re.I)
_BACKTICK_SPAN = re.compile(r"`([^`]+)`")


def _backtick_math(root) -> int:
    """Turn `asciimath` in text nodes into inline TeX formulas; return how many."""
    todo = []  # (element, in_tail) whose text holds a backtick pair
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        if el.text and el.text.count("`") > 1:
            todo.append((el, False))
        if el.tail and el.tail.count("`") > 1:
            todo.append((el, True))
    done = 0
    for el, in_tail in todo:
        # A text belongs to its element; a tail to the element's parent.
        owner = el.getparent() if in_tail else el
        if owner is None or _math_skipped(owner):
            continue
        done += _split_backticks(el, in_tail)
    return done


def _math_skipped(el) -> bool:
    while el is not None:
        tag = el.tag
        if isinstance(tag, str):
            if tag in _NO_MATH_TAGS or el.get(MATH_ATTR) is not None:
                return True
            cls = el.get("class")
            if cls and "ignore" in cls and _IGNORE_CLASS.search(cls):
                return True
        el = el.getparent()
    return False


def _split_backticks(el, in_tail: bool) -> int:
    text = el.tail if in_tail else el.text
    pieces, last, spans = [], 0, []
    for m in _BACKTICK_SPAN.finditer(text):
        body = m.group(1).strip()
        if not body:
            continue
        pieces.append(text[last:m.start()])
        span = etree.Element("span")
        span.set(MATH_ATTR, "inline")
        span.text = f"${asciimath_to_tex(body)}$"
        spans.append(span)
        last = m.end()
    if not spans:
        return 0
    rest = text[last:]
    for i, span in enumerate(spans):
        span.tail = pieces[i + 1] if i + 1 < len(pieces) else rest
    if in_tail:
        el.tail = pieces[0]
        parent = el.getparent()
        at = parent.index(el) + 1
        for i, span in enumerate(spans):
            parent.insert(at + i, span)
    else:
        el.text = pieces[0]
        for i, span in enumerate(spans):
            el.insert(i, span)
    return len(spans)


# -- helpers -------------------------------------------------------------------------------

def _wiki_display(el) -> bool:
    # The a11y span and the fallback image are direct children of span.mwe-math-element.
    for sub in el:
        c = sub.get("class") or ""
        if "mathml-display" in c or "fallback-image-display" in c:
            return True
    return False


def _first_math(el):
    for m in el.iter("math"):
        return m
    return None


def _math_tex(m) -> str:
    """TeX for a MathML element: its TeX annotation, else alttext, else a linearisation."""
    for ann in m.iter("annotation"):
        if _TEX_ENCODING.search(ann.get("encoding") or ""):
            t = (ann.text or "").strip()
            if t:
                return t
    alt = (m.get("alttext") or "").strip()
    if alt:
        return alt
    return _linearise(m)


def _clean_alt(alt: str) -> str:
    # Forum software pastes <br /> into alt text; a formula image alt may carry delimiters.
    t = _BR.sub(" ", alt).strip()
    for a, b in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if len(t) > len(a) + len(b) and t.startswith(a) and t.endswith(b):
            t = t[len(a):-len(b)].strip()
            break
    return t


def _alone_in_block(el) -> bool:
    """True when the image is the only content of a paragraph-like parent (display math)."""
    parent = el.getparent()
    if parent is None or parent.tag not in ("p", "div", "center", "dd", "td", "figure"):
        return False
    if (parent.text or "").strip() or (el.tail or "").strip().strip(".,;:"):
        return False
    for sib in parent:
        if sib is not el and isinstance(sib.tag, str) and sib.tag != "br":
            return False
    return True


def _starts_block(el) -> bool:
    parent = el.getparent()
    return parent is not None and parent.tag in ("p", "div", "center", "dd") and \
        not (parent.text or "").strip() and parent.index(el) == 0


def _attached(el, root) -> bool:
    last = el
    for last in el.iterancestors():
        pass
    return last is root or el is root


def _drop(el) -> None:
    """Remove `el` but keep its tail text in the tree."""
    parent = el.getparent()
    if parent is None:
        return
    tail = el.tail
    if tail:
        prev = el.getprevious()
        if prev is not None:
            prev.tail = (prev.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(el)


def _replace(el, tex: str, display: bool) -> None:
    parent = el.getparent()
    if parent is None:
        return
    new = etree.Element("div" if display else "span")
    new.set(MATH_ATTR, "display" if display else "inline")
    new.text = f"$${tex}$$" if display else f"${tex}$"
    new.tail = el.tail
    parent.replace(el, new)


# -- MathML linearisation (used only when no TeX source is present) -------------------------

_SYMBOLS = {
    "∑": "\\sum ", "∏": "\\prod ", "∫": "\\int ", "∞": "\\infty ", "≤": "\\le ", "≥": "\\ge ",
    "≠": "\\ne ", "±": "\\pm ", "×": "\\times ", "·": "\\cdot ", "⋅": "\\cdot ", "→": "\\to ",
    "∈": "\\in ", "∂": "\\partial ", "√": "\\sqrt ", "≈": "\\approx ", "∇": "\\nabla ",
    "α": "\\alpha ", "β": "\\beta ", "γ": "\\gamma ", "δ": "\\delta ", "ε": "\\epsilon ",
    "θ": "\\theta ", "λ": "\\lambda ", "μ": "\\mu ", "π": "\\pi ", "ρ": "\\rho ",
    "σ": "\\sigma ", "τ": "\\tau ", "φ": "\\phi ", "ω": "\\omega ", "Δ": "\\Delta ",
    "Σ": "\\Sigma ", "Ω": "\\Omega ", "\u2061": "", "\u2062": "", "\u2063": "",
}


def _tok(text: str | None) -> str:
    t = (text or "").strip()
    return "".join(_SYMBOLS.get(c, c) for c in t)


def _linearise(el) -> str:
    return re.sub(r"\s+", " ", _lin(el)).strip()


def _lin(el) -> str:
    tag = el.tag if isinstance(el.tag, str) else ""
    tag = tag.rsplit(":", 1)[-1]
    kids = [k for k in el if isinstance(k.tag, str) and k.tag != "annotation"
            and k.tag != "annotation-xml"]
    parts = [_lin(k) for k in kids]
    if tag in ("mi", "mn", "mo", "mtext", "ms"):
        return _tok(el.text)
    if tag == "mspace":
        return " "
    if tag == "mfrac" and len(parts) == 2:
        return f"\\frac{{{parts[0]}}}{{{parts[1]}}}"
    if tag == "msqrt":
        return f"\\sqrt{{{''.join(parts)}}}"
    if tag == "mroot" and len(parts) == 2:
        return f"\\sqrt[{parts[1]}]{{{parts[0]}}}"
    if tag in ("msup", "mover") and len(parts) == 2:
        return f"{{{parts[0]}}}^{{{parts[1]}}}"
    if tag in ("msub", "munder") and len(parts) == 2:
        return f"{{{parts[0]}}}_{{{parts[1]}}}"
    if tag in ("msubsup", "munderover") and len(parts) == 3:
        return f"{{{parts[0]}}}_{{{parts[1]}}}^{{{parts[2]}}}"
    if tag == "mfenced":
        return f"{el.get('open', '(')}{', '.join(parts)}{el.get('close', ')')}"
    if tag == "mtable":
        return "\\begin{matrix}" + " \\\\ ".join(parts) + "\\end{matrix}"
    if tag in ("mtr", "mlabeledtr"):
        return " & ".join(parts)
    return " ".join(p for p in parts if p)
