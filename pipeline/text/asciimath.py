"""AsciiMath (the input language of ASCIIMathML.js and of MathJax's AsciiMath input) -> LaTeX.

`to_tex("sum_(i=1)^n i = (n(n+1))/2")` gives `\\sum_{i=1}^n i = \\frac{n(n+1)}{2}`.

The grammar is AsciiMath's own, small and forgiving:

    simple        S ::= symbol | number | letter | left E right | unary S | binary S S | text
    intermediate  I ::= S | S_S | S^S | S_S^S
    expression    E ::= I E | I/I E

Tokens are found by longest match against the symbol table (so `sinh` beats `sin`, `int`
beats `in`, and, as in the browser, `box` reads `b` `ox`); anything else is a number, one
letter or one character.  A fraction, root, script or unary argument loses one pair of round,
square or curly brackets (`(a+b)/(c+d)` is `\\frac{a+b}{c+d}`); `{: :}` are invisible brackets;
a bracket holding two or more bracketed rows of equal length is a matrix (`[[a,b],[c,d]]`), and
`{` ... `:}` around rows is a case distinction.  Functions (`sin`, `log`, `f` ...) take the next
simple expression as argument unless a script or `/` follows them.

The converter covers the notation people write, not every corner of the reference
implementations (no `class`/`id`, no augmented-matrix bars).  It never raises: input it cannot
parse comes back unchanged.  Results are cached, since pages repeat their formulas.
"""
from __future__ import annotations

import html as _html
import re
from functools import lru_cache

__all__ = ["to_tex"]

# -- symbol table ------------------------------------------------------------------------------
# kind: "c" constant, "fn" function, "uo" big operator / limit (scripts go under/over: in TeX
# that is just _ and ^), "acc" unary wrapper (\cmd{arg}), "sqrt", "enc" enclosing pair
# (abs, floor ...), "bin" two-argument command, "txt" text command, "lb"/"rb" brackets,
# "bar" the ambiguous |, "inf" infix _ ^ /, "sp" words set as text (and, or, if).

_C = {
    # arithmetic and set operators
    "+": "+", "-": "-", "*": r"\cdot", "**": r"\ast", "***": r"\star", "//": "/",
    "\\\\": r"\backslash", "setminus": r"\setminus", "xx": r"\times", "|><": r"\ltimes",
    "><|": r"\rtimes", "|><|": r"\bowtie", "-:": r"\div", "@": r"\circ", "o+": r"\oplus",
    "o-": r"\ominus", "ox": r"\otimes", "o.": r"\odot", "^^": r"\wedge", "vv": r"\vee",
    "nn": r"\cap", "uu": r"\cup", "dag": r"\dagger", "ddag": r"\ddagger",
    # relations
    "=": "=", "!=": r"\ne", ":=": ":=", "lt": "<", "gt": ">", "<=": r"\le", ">=": r"\ge",
    "lt=": r"\leq", "gt=": r"\geq", "mlt": r"\ll", "mgt": r"\gg", "-<": r"\prec",
    "-lt": r"\prec", ">-": r"\succ", "-<=": r"\preceq", ">-=": r"\succeq", "in": r"\in",
    "!in": r"\notin", "sub": r"\subset", "!sub": r"\not\subset", "sup": r"\supset",
    "!sup": r"\not\supset", "sube": r"\subseteq", "!sube": r"\not\subseteq",
    "supe": r"\supseteq", "!supe": r"\not\supseteq", "-=": r"\equiv", "!-=": r"\not\equiv",
    "~=": r"\cong", "~~": r"\approx", "~": r"\sim", "prop": r"\propto",
    # logic
    "not": r"\neg", "=>": r"\Rightarrow", "<=>": r"\Leftrightarrow", "AA": r"\forall",
    "EE": r"\exists", "_|_": r"\bot", "TT": r"\top", "|--": r"\vdash", "|==": r"\models",
    # miscellaneous
    "del": r"\partial", "grad": r"\nabla", "+-": r"\pm", "-+": r"\mp", "O/": r"\emptyset",
    "oo": r"\infty", "aleph": r"\aleph", "...": r"\ldots", ":.": r"\therefore",
    ":'": r"\because", "/_": r"\angle", "/_\\": r"\triangle", "'": "'", "\\ ": r"\ ",
    "frown": r"\frown", "quad": r"\quad", "qquad": r"\qquad", "enspace": r"\enspace",
    "thinspace": r"\,", "cdots": r"\cdots", "vdots": r"\vdots", "ddots": r"\ddots",
    "diamond": r"\diamond", "square": r"\square", "|__": r"\lfloor", "__|": r"\rfloor",
    "|~": r"\lceil", "~|": r"\rceil", "CC": r"\mathbb{C}", "NN": r"\mathbb{N}",
    "QQ": r"\mathbb{Q}", "RR": r"\mathbb{R}", "ZZ": r"\mathbb{Z}", "hbar": r"\hbar",
    "int": r"\int", "oint": r"\oint", "dx": "dx", "dy": "dy", "dz": "dz", "dt": "dt",
    ",": ",", "%": r"\%", "dim": r"\dim", "mod": r"\bmod", "lub": r"\operatorname{lub}",
    "glb": r"\operatorname{glb}",
    # arrows
    "uarr": r"\uparrow", "darr": r"\downarrow", "rarr": r"\rightarrow", "->": r"\to",
    ">->": r"\rightarrowtail", "->>": r"\twoheadrightarrow", ">->>": r"\twoheadrightarrow",
    "|->": r"\mapsto", "larr": r"\leftarrow", "harr": r"\leftrightarrow",
    "rArr": r"\Rightarrow", "lArr": r"\Leftarrow", "hArr": r"\Leftrightarrow",
    "uArr": r"\Uparrow", "dArr": r"\Downarrow", "rightleftharpoons": r"\rightleftharpoons",
}
for _g in ("alpha beta chi delta Delta eta gamma Gamma iota kappa lambda Lambda mu nu omega "
           "Omega phi varphi Phi pi Pi psi Psi rho sigma Sigma tau theta vartheta Theta upsilon "
           "Upsilon xi Xi zeta varepsilon epsilon").split():
    _C[_g] = "\\" + _g
_C.update({"epsi": r"\epsilon", "lamda": r"\lambda", "Lamda": r"\Lambda"})

_SYMBOLS: dict[str, tuple[str, str]] = {k: ("c", v) for k, v in _C.items()}

_BIG = {"sum": r"\sum", "prod": r"\prod", "^^^": r"\bigwedge", "vvv": r"\bigvee",
        "nnn": r"\bigcap", "uuu": r"\bigcup", "lim": r"\lim", "Lim": r"\operatorname*{Lim}",
        "min": r"\min", "max": r"\max"}
_SYMBOLS.update({k: ("uo", v) for k, v in _BIG.items()})

for _f in "sin cos tan sinh cosh tanh cot coth sec csc arcsin arccos arctan log ln exp det gcd" \
        .split():
    _SYMBOLS[_f] = ("fn", "\\" + _f)
for _f in ("sech csch arcsec arccsc arccot lcm Sin Cos Tan Arcsin Arccos Arctan Sinh Cosh "
           "Tanh Cot Sec Csc Log Ln").split():
    _SYMBOLS[_f] = ("fn", r"\operatorname{%s}" % _f)
_SYMBOLS["f"] = ("fn", "f")
_SYMBOLS["g"] = ("fn", "g")

_SYMBOLS.update({
    "sqrt": ("sqrt", r"\sqrt"), "Sqrt": ("sqrt", r"\sqrt"),
    "root": ("bin", "root"), "frac": ("bin", r"\frac"), "stackrel": ("bin", r"\stackrel"),
    "overset": ("bin", r"\overset"), "underset": ("bin", r"\underset"),
    "color": ("bin", "color"),
    "text": ("txt", ""), "mbox": ("txt", ""),
    "hat": ("acc", r"\hat"), "bar": ("acc", r"\overline"), "vec": ("acc", r"\vec"),
    "tilde": ("acc", r"\tilde"), "dot": ("acc", r"\dot"), "ddot": ("acc", r"\ddot"),
    "ul": ("acc", r"\underline"), "ubrace": ("acc", r"\underbrace"),
    "obrace": ("acc", r"\overbrace"), "overarc": ("acc", r"\overparen"),
    "overparen": ("acc", r"\overparen"), "cancel": ("acc", r"\cancel"),
    "bb": ("acc", r"\mathbf"), "bold": ("acc", r"\mathbf"), "bbb": ("acc", r"\mathbb"),
    "cc": ("acc", r"\mathcal"), "tt": ("acc", r"\mathtt"), "fr": ("acc", r"\mathfrak"),
    "sf": ("acc", r"\mathsf"), "italic": ("acc", r"\mathit"), "sfit": ("acc", r"\mathsf"),
    "bbit": ("acc", r"\boldsymbol"),
    "abs": ("enc", "|\t|"), "Abs": ("enc", "|\t|"), "norm": ("enc", "\\|\t\\|"),
    "floor": ("enc", "\\lfloor\t\\rfloor"), "ceil": ("enc", "\\lceil\t\\rceil"),
    "(": ("lb", "("), "[": ("lb", "["), "{": ("lb", r"\{"), "(:": ("lb", r"\langle"),
    "<<": ("lb", r"\langle"), "{:": ("lb", ""), "|:": ("lb", "|"), "left(": ("lb", "("),
    "left[": ("lb", "["),
    ")": ("rb", ")"), "]": ("rb", "]"), "}": ("rb", r"\}"), ":)": ("rb", r"\rangle"),
    ">>": ("rb", r"\rangle"), ":}": ("rb", ""), ":|": ("rb", "|"), "right)": ("rb", ")"),
    "right]": ("rb", "]"),
    "|": ("bar", "|"), ":|:": ("c", "|"),
    "_": ("inf", "_"), "^": ("inf", "^"), "/": ("inf", "/"),
    "and": ("sp", r"\text{ and }"), "or": ("sp", r"\text{ or }"), "if": ("sp", r"\text{ if }"),
})
# Aliases that are other spellings of the same symbol.
for _alias, _target in (("divide", "-:"), ("implies", "=>"), ("iff", "<=>"), ("cong", "~="),
                        ("notsubset", "!sub"), ("notsupset", "!sup"), ("notsubseteq", "!sube"),
                        ("notsupseteq", "!supe"), ("notequiv", "!-="), ("lceiling", "|~"),
                        ("rceiling", "~|"), ("lbrace", "{"), ("rbrace", "}")):
    _SYMBOLS[_alias] = _SYMBOLS[_target]
# As in the reference implementation, a symbol can also be written with its TeX name
# ("times", "le", "infty", "mathbb" ...).
for _name, (_kind, _tex) in list(_SYMBOLS.items()):
    _m = re.fullmatch(r"\\([A-Za-z]+)", _tex) if _kind in ("c", "uo", "acc", "lb", "rb") else None
    if _m and _m.group(1) not in _SYMBOLS:
        _SYMBOLS[_m.group(1)] = (_kind, _tex)

# Candidate names by first character, longest first: the tokenizer tries them in order.
_BY_FIRST: dict[str, tuple[str, ...]] = {}
for _name in sorted(_SYMBOLS, key=len, reverse=True):
    _BY_FIRST.setdefault(_name[0], ())
    _BY_FIRST[_name[0]] += (_name,)

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_TEXT_ESCAPE = {ord(c): "\\" + c for c in "{}$%&#_"}
_TEXT_ESCAPE.update({ord("\\"): r"\backslash{}", ord("^"): r"\^{}", ord("~"): r"\~{}"})
_CHAR_ESCAPE = {"\\": r"\backslash", "#": r"\#", "$": r"\$", "&": r"\&", "%": r"\%",
                "{": r"\{", "}": r"\}"}
_CLOSE = {"(": ")", "[": "]", "{": "}"}
_TALL = ("\\frac", "\\begin{", "\\sum", "\\prod", "\\int", "\\lim")
_ENDS_IN_WORD = re.compile(r"\\[A-Za-z]+$")
_MAX_DEPTH = 120
_MAX_LEN = 20000


class _Fail(Exception):
    pass


# -- tokens ------------------------------------------------------------------------------------

def _tokenize(s: str) -> list[tuple[str, str, str, bool]]:
    """[(kind, tex, name, space_before)]."""
    out = []
    i, n = 0, len(s)
    space = False
    while i < n:
        ch = s[i]
        if ch.isspace():
            space = True
            i += 1
            continue
        if ch == "\\" and i + 1 < n and s[i + 1] not in " \\":
            i += 1  # a lone backslash only escapes: \alpha reads alpha
            continue
        if ch == '"':
            end = s.find('"', i + 1)
            end = n if end < 0 else end
            out.append(("txt", _text(s[i + 1:end]), '"', space))
            i, space = end + 1, False
            continue
        name = None
        for cand in _BY_FIRST.get(ch, ()):
            if s.startswith(cand, i):
                name = cand
                break
        if name is not None:
            kind, tex = _SYMBOLS[name]
            if kind == "txt":
                j = i + len(name)
                while j < n and s[j] == " ":
                    j += 1
                close = _CLOSE.get(s[j]) if j < n else None
                if close is not None:
                    end = s.find(close, j + 1)
                    end = n if end < 0 else end
                    out.append(("txt", _text(s[j + 1:end]), name, space))
                    i, space = end + 1, False
                    continue
                name = None  # "text" with no bracket: ordinary letters
            else:
                out.append((kind, tex, name, space))
                i += len(name)
                space = False
                continue
        m = _NUMBER.match(s, i) if ch.isdigit() else None
        if m:
            out.append(("c", m.group(0), m.group(0), space))
            i = m.end()
        else:
            out.append(("c", _CHAR_ESCAPE.get(ch, ch), ch, space))
            i += 1
        space = False
    return out


def _text(t: str) -> str:
    # Leading and trailing spaces in AsciiMath text are visible spaces.
    core = t.strip()
    if not core:
        return r"\ " if t else r"\text{}"
    tex = r"\text{%s}" % core.translate(_TEXT_ESCAPE)
    if t[0] == " ":
        tex = r"\ " + tex
    if t[-1] == " ":
        tex += r"\ "
    return tex


# -- nodes -------------------------------------------------------------------------------------

class _Node:
    """A parsed piece: its TeX, and for bracket groups what removing the brackets leaves."""

    __slots__ = ("tex", "inner", "lb", "rb", "kids", "space", "comma")

    def __init__(self, tex, space=False, inner=None, lb=None, rb=None, kids=None, comma=False):
        self.tex, self.space, self.inner = tex, space, inner
        self.lb, self.rb, self.kids, self.comma = lb, rb, kids, comma


def _bare(node: _Node) -> str:
    """TeX of `node` without one pair of (), [] or {} around it: arguments drop them."""
    return node.inner if node.inner is not None else node.tex


def _join(nodes) -> str:
    out: list[str] = []
    prev = ""
    for nd in nodes:
        t = nd.tex
        if not t:
            continue
        if out and (nd.space or (t[0].isalnum() and _ENDS_IN_WORD.search(prev))):
            out.append(" ")
        out.append(t)
        prev = t
    return "".join(out)


def _glue(a: str, b: str) -> str:
    """Concatenate two TeX strings, with a space where a control word would run on."""
    if a and b and b[0].isalnum() and _ENDS_IN_WORD.search(a):
        return a + " " + b
    return a + b


def _script(arg: str) -> str:
    return arg if len(arg) == 1 and arg.isalnum() else "{" + arg + "}"


def _wrap(left: str, right: str, body: str) -> str:
    """`body` between two delimiters ("" = invisible), \\left/\\right when the body is tall."""
    if any(t in body for t in _TALL):
        if not left and not right:
            return body
        return _glue("\\left" + (left or "."), body) + _glue("\\right", right or ".")
    return _glue(_glue(left, body), right)


# -- parser ------------------------------------------------------------------------------------

class _Parser:
    def __init__(self, tokens):
        self.t = tokens
        self.i = 0
        self.depth = 0
        self.next_bar = self._pair_bars()

    def _pair_bars(self) -> dict[int, int]:
        """For each `|`, the index of the next `|` inside the same brackets (if any)."""
        nxt: dict[int, int] = {}
        pending: list[int | None] = [None]
        for idx, tok in enumerate(self.t):
            kind = tok[0]
            if kind == "lb":
                pending.append(None)
            elif kind == "rb":
                if len(pending) > 1:
                    pending.pop()
            elif kind == "bar":
                if pending[-1] is not None:
                    nxt[pending[-1]] = idx
                pending[-1] = idx
        return nxt

    def peek(self):
        return self.t[self.i] if self.i < len(self.t) else None

    # E: a run of I's, with I/I making fractions, up to a closing bracket (or the end).
    def expr(self, in_group: bool, in_bars: bool) -> list[_Node]:
        nodes: list[_Node] = []
        while True:
            tok = self.peek()
            if tok is None:
                break
            kind = tok[0]
            if kind == "rb":
                if in_group or in_bars:
                    break
                self.i += 1  # a stray closing bracket is just a character
                nodes.append(_Node(tok[1] or tok[2], tok[3]))
                continue
            if kind == "bar" and in_bars:
                break
            node = self.inter()
            if node is None:
                break
            tok = self.peek()
            if tok is not None and tok[0] == "inf" and tok[2] == "/":
                self.i += 1
                den = self.inter()
                den_tex = _bare(den) if den is not None else ""
                node = _Node(r"\frac{%s}{%s}" % (_bare(node), den_tex), node.space)
            nodes.append(node)
        return nodes

    # I: S with optional sub- and superscripts.
    def inter(self) -> _Node | None:
        first = self.peek()
        node = self.simple()
        if node is None:
            return None
        used = ""
        scripted = False
        while True:
            tok = self.peek()
            if tok is None or tok[0] != "inf" or tok[2] == "/":
                break
            self.i += 1
            op = tok[2]
            sign = self.peek()
            if sign is not None and sign[2] == "-" and self.i + 1 < len(self.t):
                # x^-1: a minus right after a script sign belongs to the script
                self.i += 1
                arg = self.simple()
                arg = _Node("-" + (_bare(arg) if arg is not None else ""))
            else:
                arg = self.simple()
            arg_tex = _bare(arg) if arg is not None else ""
            base = node.tex
            if op in used:  # x^2^3: TeX needs the first power grouped
                base, used = "{" + base + "}", ""
            used += op
            node = _Node(base + op + _script(arg_tex), node.space)
            scripted = True
        # sin^2 x: a scripted function still takes its argument.
        if scripted and first is not None and first[0] == "fn":
            tok = self.peek()
            if tok is not None and tok[0] not in ("inf", "rb") and (
                    len(first[2]) > 1 or tok[0] == "lb"):
                arg = self.inter()
                if arg is not None:
                    node = _Node(_join((node, arg)), node.space)
        return node

    # S: one symbol, a bracket group, or a command with its arguments.
    def simple(self) -> _Node | None:
        tok = self.peek()
        if tok is None or tok[0] == "rb":
            return None
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise _Fail  # pathological nesting: the caller returns the input
        try:
            return self._simple(tok)
        finally:
            self.depth -= 1

    def _simple(self, tok) -> _Node | None:
        kind, tex, name, space = tok
        self.i += 1
        if kind in ("c", "uo", "txt", "sp"):
            return _Node(tex, space, comma=(name == ","))
        if kind == "inf":
            if name == "/":
                return _Node("/", space)
            self.i -= 1  # a script with nothing before it gets an empty base: {}^2
            return _Node("{}", space)
        if kind == "lb":
            return self.group(tex, name, space)
        if kind == "bar":
            if self.next_bar.get(self.i - 1) is not None:
                return self.group("|", "|", space, bars=True)
            return _Node("|", space)
        if kind == "fn":
            nxt = self.peek()
            if nxt is None or nxt[0] in ("inf", "rb", "bar") or nxt[2] == "," or (
                    len(name) == 1 and nxt[2] != "("):
                return _Node(tex, space)
            arg = self.simple()
            if arg is None:
                return _Node(tex, space)
            return _Node(_join((_Node(tex), arg)), space)
        if kind == "bin":
            return self.binary(tex, space)
        arg = self.simple()
        body = _bare(arg) if arg is not None else ""
        if kind == "sqrt":
            return _Node(r"\sqrt{%s}" % body, space)
        if kind == "enc":
            left, right = tex.split("\t")
            return _Node(_wrap(left, right, body), space)
        return _Node(tex + "{" + body + "}", space)  # accents, fonts, cancel

    def binary(self, tex: str, space: bool) -> _Node:
        if tex == "color":
            tok = self.peek()
            if tok is not None and tok[0] == "lb":
                # The colour name is a word, not math ("orange" holds "or").
                j = self.i + 1
                while j < len(self.t) and self.t[j][0] != "rb":
                    j += 1
                colour = "".join(t[2] for t in self.t[self.i + 1:j])
                self.i = min(j + 1, len(self.t))
                arg = self.simple()
                return _Node(r"{\color{%s}%s}" % (colour, _bare(arg) if arg else ""), space)
        a = self.simple()
        b = self.simple()
        ta = _bare(a) if a is not None else ""
        tb = _bare(b) if b is not None else ""
        if tex == "root":
            return _Node(r"\sqrt[%s]{%s}" % (ta, tb), space)
        if tex == "color":
            return _Node(r"{\color{%s}%s}" % (ta, tb), space)
        return _Node(r"%s{%s}{%s}" % (tex, ta, tb), space)

    def group(self, left: str, lname: str, space: bool, bars: bool = False) -> _Node:
        kids = self.expr(in_group=not bars, in_bars=bars)
        tok = self.peek()
        right, rname = "", None
        if tok is not None and (tok[0] == "rb" or (bars and tok[0] == "bar")):
            self.i += 1
            right, rname = tok[1], tok[2]
        matrix = self.matrix(lname, rname, kids)
        if matrix is not None:
            return _Node(matrix, space)
        body = _join(kids)
        inner = body if (lname in ("(", "[", "{", "left(", "left[")
                         and rname in (")", "]", "}", "right)", "right]")) else None
        return _Node(_wrap(left, right, body), space, inner=inner, lb=lname, rb=rname,
                     kids=kids)

    @staticmethod
    def matrix(lname: str, rname: str | None, kids: list[_Node]) -> str | None:
        """A matrix (or cases) when `kids` are >= 2 bracketed rows of equal width."""
        if len(kids) < 3:
            return None
        rows = kids[0::2]
        if any(not k.comma for k in kids[1::2]) or len(kids) % 2 == 0:
            return None
        pair = (rows[0].lb, rows[0].rb)
        if pair not in (("(", ")"), ("[", "]")) or (pair[0] == "(" and rname == "}"):
            return None
        table, width = [], None
        for row in rows:
            if (row.lb, row.rb) != pair or row.kids is None:
                return None
            cells, cell = [], []
            for k in row.kids:
                if k.comma:
                    cells.append(cell)
                    cell = []
                else:
                    cell.append(k)
            cells.append(cell)
            if width is None:
                width = len(cells)
            elif len(cells) != width:
                return None
            table.append(" & ".join(_join(c) for c in cells))
        body = " \\\\ ".join(table)
        env = {("(", ")"): "pmatrix", ("[", "]"): "bmatrix", ("{", "}"): "Bmatrix",
               ("|", "|"): "vmatrix", ("{:", ":}"): "matrix", ("{", ":}"): "cases"}.get(
            (lname, rname))
        if env is not None:
            return "\\begin{%s}%s\\end{%s}" % (env, body, env)
        left = _SYMBOLS.get(lname, ("", ""))[1]
        right = _SYMBOLS.get(rname, ("", ""))[1] if rname else ""
        return _wrap(left, right, "\\begin{matrix}%s\\end{matrix}" % body)


# -- entry point -------------------------------------------------------------------------------

def to_tex(asciimath: str) -> str:
    """LaTeX for an AsciiMath formula; the input itself when it cannot be converted."""
    if not isinstance(asciimath, str):
        return asciimath
    return _convert(asciimath)


@lru_cache(maxsize=8192)
def _convert(asciimath: str) -> str:
    try:
        s = asciimath
        if "&" in s:  # script bodies are not entity-decoded by the HTML parser
            s = _html.unescape(s)
        s = s.replace("\u00a0", " ")
        if not s.strip() or len(s) > _MAX_LEN:
            return asciimath.strip()
        p = _Parser(_tokenize(s))
        nodes = p.expr(in_group=False, in_bars=False)
        if p.i < len(p.t):  # cannot happen with this grammar; be safe anyway
            raise _Fail
        out = _join(nodes).strip()
        return out if out else asciimath
    except Exception:  # never let a formula break a page (RecursionError included)
        return asciimath
