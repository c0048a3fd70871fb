"""AsciiMath -> TeX: the converter on its own, then as the extractor uses it (MathJax
`math/asciimath` scripts, and `backtick` math on pages that load an AsciiMath typesetter)."""
from __future__ import annotations

import pytest
from lxml import etree

from webinstruct.pipeline.text.asciimath import to_tex
from webinstruct.pipeline.text.fidelity import tex_commands
from webinstruct.pipeline.text.html_text import cheap_text, html_to_text
from webinstruct.pipeline.text.math_markup import convert_math

# -- the converter ---------------------------------------------------------------------------

CASES = [
    # symbols and operators
    ("alpha + beta xx gamma", r"\alpha + \beta \times \gamma"),
    ("a -: b", r"a \div b"),
    ("x +- y <= z >= w != v ~~ u", r"x \pm y \le z \ge w \ne v \approx u"),
    ("x -> oo", r"x \to \infty"),
    ("p => q", r"p \Rightarrow q"),
    ("x in A sub B sube C", r"x \in A \subset B \subseteq C"),
    ("AA x EE y", r"\forall x \exists y"),
    ("RR NN ZZ QQ CC", r"\mathbb{R} \mathbb{N} \mathbb{Z} \mathbb{Q} \mathbb{C}"),
    ("grad f", r"\nabla f"),
    ("1 lt 2 gt 0", "1 < 2 > 0"),
    ("x_1, x_2, ..., x_n", r"x_1, x_2, \ldots, x_n"),
    (r"\alpha + \beta", r"\alpha + \beta"),  # a backslash before a name is allowed
    ("a & b, 50%", r"a \& b, 50\%"),
    # fractions: grouping brackets dropped, juxtaposition binds looser than /
    ("a/b", r"\frac{a}{b}"),
    ("(a+b)/(c+d)", r"\frac{a+b}{c+d}"),
    ("2x/3", r"2\frac{x}{3}"),
    ("x^2/3", r"\frac{x^2}{3}"),
    ("dy/dx", r"\frac{dy}{dx}"),
    ("(del f)/(del x)", r"\frac{\partial f}{\partial x}"),
    ("x = (-b +- sqrt(b^2 - 4ac))/(2a)", r"x = \frac{-b \pm \sqrt{b^2 - 4ac}}{2a}"),
    ("f(x) = 1/(1+e^(-x))", r"f(x) = \frac{1}{1+e^{-x}}"),
    ("frac(a)(b)", r"\frac{a}{b}"),
    # roots, scripts, big operators
    ("sqrt x", r"\sqrt{x}"),
    ("sqrt(x+1)", r"\sqrt{x+1}"),
    ("root(3)(x)", r"\sqrt[3]{x}"),
    ("x_i^2", "x_i^2"),
    ("a_(n+1) = a_n + d", r"a_{n+1} = a_n + d"),
    ("x^-1", "x^{-1}"),
    ("x^2^3", "{x^2}^3"),
    ("sum_(i=1)^n i = (n(n+1))/2", r"\sum_{i=1}^n i = \frac{n(n+1)}{2}"),
    ("sum_(k=0)^oo 1/(k!)", r"\sum_{k=0}^{\infty} \frac{1}{k!}"),
    ("prod_(p in P) p", r"\prod_{p \in P} p"),
    ("int_0^1 f(x) dx", r"\int_0^1 f(x) dx"),
    ("oint_C F * dr", r"\oint_C F \cdot dr"),
    ("lim_(x->0) sin(x)/x", r"\lim_{x\to 0} \frac{\sin(x)}{x}"),
    # functions
    ("sin x + cos(y) + tan^2 theta", r"\sin x + \cos(y) + \tan^2 \theta"),
    ("log_2 x + ln x + exp(x)", r"\log_2 x + \ln x + \exp(x)"),
    ("sin^-1 x", r"\sin^{-1} x"),
    ("f(x)/2", r"\frac{f(x)}{2}"),
    ("1/sin x", r"\frac{1}{\sin x}"),
    # brackets
    ("abs(x) + |y|", "|x| + |y|"),
    ("floor(x/2) + ceil x", r"\left\lfloor\frac{x}{2}\right\rfloor + \lceil x\rceil"),
    ("norm(v)", r"\|v\|"),
    ("(: u, v :)", r"\langle u, v\rangle"),
    ("{: x+1 :}", "x+1"),
    ("{x | x > 0}", r"\{x | x > 0\}"),
    ("[0,1)", "[0,1)"),
    ("(sum_i x_i)^2", r"\left(\sum_i x_i\right)^2"),
    # matrices and cases
    ("[[a,b],[c,d]]", r"\begin{bmatrix}a & b \\ c & d\end{bmatrix}"),
    ("((1,0),(0,1))", r"\begin{pmatrix}1 & 0 \\ 0 & 1\end{pmatrix}"),
    ("|(a,b),(c,d)|", r"\begin{vmatrix}a & b \\ c & d\end{vmatrix}"),
    ("{(x, if x>=0),(-x, if x<0):}",
     r"\begin{cases}x & \text{ if } x\ge 0 \\ -x & \text{ if } x<0\end{cases}"),
    ("{(1,2),(3,4)}", r"\{(1,2),(3,4)\}"),  # a set of pairs, not a matrix
    # text, accents, fonts
    ("text(area) = pi r^2", r"\text{area} = \pi r^2"),
    ('"for all" x', r"\text{for all} x"),
    ("hat x + bar y + vec v + dot x + ddot x + ul x",
     r"\hat{x} + \overline{y} + \vec{v} + \dot{x} + \ddot{x} + \underline{x}"),
    ("bb A + bbb R + cc F + tt x + fr g + sf S",
     r"\mathbf{A} + \mathbb{R} + \mathcal{F} + \mathtt{x} + \mathfrak{g} + \mathsf{S}"),
    ("obrace(1+2+3)^(text(sum))", r"\overbrace{1+2+3}^{\text{sum}}"),
    ("color(red)(x)", r"{\color{red}x}"),
    # the script body of a page is not entity-decoded
    ("x &lt; y", "x < y"),
]


@pytest.mark.parametrize("asciimath,tex", CASES)
def test_to_tex(asciimath, tex):
    assert to_tex(asciimath) == tex


@pytest.mark.parametrize("junk", [
    "", "   ", "(", ")", "(a+b", "a)", "/", "_", "^2", "sqrt", "root(3)", "text(abc", '"abc',
    "[[a,b],[c]]", "||", "\\", "x_", "{:", "`", "\x00", "((((", "sin sin sin",
])
def test_to_tex_never_raises_on_broken_input(junk):
    assert isinstance(to_tex(junk), str)


def test_to_tex_gives_pathological_input_back():
    deep = "(" * 400 + "x" + ")" * 400
    assert to_tex(deep) == deep
    chain = "sqrt " * 500 + "x"
    assert to_tex(chain) == chain
    assert to_tex(None) is None  # not a string: handed back, no exception


# -- MathJax scripts ---------------------------------------------------------------------------

def test_asciimath_scripts_inline_and_display():
    html = """<p>Given <span class="MathJax_Preview">y/2</span><span class="MathJax" id="MathJax-Element-1-Frame">
    <nobr>rendered</nobr></span><script type="math/asciimath" id="MathJax-Element-1">x &lt; y/2</script>
    we get</p><div class="MathJax_Display"><span class="MathJax">rendered</span></div>
    <script type="math/asciimath; mode=display">int_0^1 x^2 dx = 1/3</script><p>Done.</p>"""
    text = html_to_text(html)
    assert "Given $x < \\frac{y}{2}$ we get" in text
    assert "$$\\int_0^1 x^2 dx = \\frac{1}{3}$$" in text.split("\n")
    assert "rendered" not in text and "y/2" not in text


def test_cheap_text_converts_asciimath_scripts():
    html = '<p>So <script type="math/asciimath">a &lt; sqrt b</script> ends.</p>'
    assert cheap_text(html) == "So $a < \\sqrt{b}$ ends."


# -- backtick math -----------------------------------------------------------------------------

BODY = """<body><article><h1>Roots</h1>
<p>The roots of `ax^2+bx+c=0` are `x = (-b +- sqrt(b^2-4ac))/(2a)` when <em>`a != 0`</em>.</p>
<p>In a shell, <code>`pwd`</code> prints the directory:</p>
<pre>cd `dirname $0`</pre>
<p class="asciimath2jax_ignore">Literally `a/b`.</p>
<ul><li>`x_1` and `x_2`</li></ul>
</article></body>"""
CONFIGS = {
    "v2 combined config": '<script src="https://cdn.example.org/MathJax.js?config=TeX-MML-AM_CHTML">'
                          "</script>",
    "v2 inline config": '<script type="text/x-mathjax-config">MathJax.Hub.Config({extensions: '
                        '["asciimath2jax.js"], jax: ["input/AsciiMath", "output/CommonHTML"]});'
                        "</script>",
    "v3 loader": "<script>window.MathJax = {loader: {load: ['input/asciimath']}};</script>"
                 '<script src="https://cdn.example.org/mathjax@3/es5/startup.js"></script>',
    "ASCIIMathML.js": '<script src="/js/ASCIIMathML.js"></script>',
}


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_backtick_math_on_pages_that_load_asciimath(config):
    text = html_to_text(f"<html><head>{CONFIGS[config]}</head>{BODY}</html>")
    assert ("The roots of $ax^2+bx+c=0$ are $x = \\frac{-b \\pm \\sqrt{b^2-4ac}}{2a}$ "
            "when $a \\ne 0$.") in text
    assert "- $x_1$ and $x_2$" in text
    # Code keeps its backticks, and so does text MathJax is told to ignore.
    assert "In a shell, `pwd` prints the directory:" in text
    assert "```\ncd `dirname $0`\n```" in text
    assert "Literally `a/b`." in text


@pytest.mark.parametrize("head", [
    "",
    '<script src="https://cdn.example.org/MathJax.js?config=TeX-AMS_CHTML"></script>',
    '<script src="https://cdn.example.org/mathjax@3/es5/tex-chtml.js"></script>',
    "<script>const s = `template ${literal}`;</script>",
])
def test_backticks_stay_text_without_an_asciimath_typesetter(head):
    text = html_to_text(f"<html><head>{head}</head>{BODY}</html>")
    assert "The roots of `ax^2+bx+c=0` are `x = (-b +- sqrt(b^2-4ac))/(2a)` when `a != 0`." \
        in text
    assert "$" not in text.replace("$0", "")


def test_backtick_math_without_source_decides_from_the_tree():
    root = etree.fromstring(f"<html><head>{CONFIGS['v2 combined config']}</head>{BODY}</html>",
                            etree.HTMLParser())
    assert convert_math(root) == 5
    plain = etree.fromstring(f"<html><head></head>{BODY}</html>", etree.HTMLParser())
    assert convert_math(plain) == 0


def test_asciimath_page_tex_recall():
    # What a reader of the rendered page would write in TeX.
    reference = (r"$\sum_{i=1}^n i^2 = \frac{n(n+1)(2n+1)}{6}$ and "
                 r"$\int_0^\infty e^{-x} dx = 1$, $\alpha \in \mathbb{R}$")
    html = (f"<html><head>{CONFIGS['v2 combined config']}</head><body><p>"
            "`sum_(i=1)^n i^2 = (n(n+1)(2n+1))/6` and `int_0^oo e^(-x) dx = 1`, "
            "`alpha in RR`</p></body></html>")
    assert tex_commands(html_to_text(html)) == tex_commands(reference)
