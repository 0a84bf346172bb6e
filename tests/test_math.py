r"""Math in replies: each delimiter reaches the typesetter with its LaTeX untouched, prices and code
are not math, ordinary text never looks like math to a typesetter, refused macros are shown as code,
and streaming shows an unclosed ``$$`` as text and ends exactly as the one-shot render."""

from __future__ import annotations

import html
import itertools
import re
import time
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oxen_notebook._math import REFUSED_MACROS, escape_text, refused_macros
from oxen_notebook._render import render_markdown
from oxen_notebook._streaming import StreamingMarkdown
from tests.test_render import Clock, Screen, feeds, play, stream_final

# -- each delimiter, LaTeX untouched -----------------------------------------------------------

EXACT = {
    "dollar": (r"Let $a_1 * b_2$ be.", r"<p>Let <span>\(a_1 * b_2\)</span> be.</p>"),
    "paren": (r"Norm \(\|x\|\) here.", r"<p>Norm <span>\(\|x\|\)</span> here.</p>"),
    "braces": (r"The set $\{a\}$.", r"<p>The set <span>\(\{a\}\)</span>.</p>"),
    "bracket inline": (r"So \[x^2\] then.", r"<p>So <span>\[x^2\]</span> then.</p>"),
    "double inline": (r"So $$x_i$$ then.", r"<p>So <span>\[x_i\]</span> then.</p>"),
    "dollar block": ("$$\n\\frac{a}{b} = c_{*}\n$$", r"<p>\[\frac{a}{b} = c_{*}\]</p>"),
    "bracket block": ("\\[\na &= b \\\\\nc &= d\n\\]", "<p>\\[a &amp;= b \\\\\nc &amp;= d\\]</p>"),
    "one-line block": ("$$ e^{i\\pi} + 1 = 0 $$", r"<p>\[e^{i\pi} + 1 = 0\]</p>"),
    "emphasis chars": (r"$a*b*c$ and $x_1_2$", r"<p><span>\(a*b*c\)</span> and <span>\(x_1_2\)</span></p>"),
    "escaped dollar inside": (r"$\$5 + \text{tax}$", r"<p><span>\(\$5 + \text{tax}\)</span></p>"),
    "entities": (r"$a < b & c > d$", r"<p><span>\(a &lt; b &amp; c &gt; d\)</span></p>"),
    "in a heading": (r"# Energy $E = mc^2$", r"<h1>Energy <span>\(E = mc^2\)</span></h1>"),
    "in a link": (
        r"[\(x_1\)](https://a.example)",
        '<p><a href="https://a.example" target="_blank" rel="noopener noreferrer"><span>\\(x_1\\)</span></a></p>',
    ),
    "in emphasis": (
        r"**$a*b$** and *$c_d$*",
        r"<p><strong><span>\(a*b\)</span></strong> and <em><span>\(c_d\)</span></em></p>",
    ),
}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_each_delimiter_reaches_the_typesetter_untouched(name: str) -> None:
    text, expected = EXACT[name]
    assert render_markdown(text) == expected + "\n"


def test_a_display_block_may_interrupt_a_paragraph_and_keeps_markdown_out() -> None:
    # Lines that Markdown would read as a list item, a heading underline or a quote stay LaTeX.
    text = "The sum is\n$$\n\\begin{aligned}\na &= b\n- c &= d\n===\n> e\n\\end{aligned}\n$$\nafter"
    assert render_markdown(text) == (
        "<p>The sum is</p>\n"
        "<p>\\[\\begin{aligned}\na &amp;= b\n- c &amp;= d\n===\n&gt; e\n\\end{aligned}\\]</p>\n"
        "<p>after</p>\n"
    )


def test_blocks_in_containers() -> None:
    assert render_markdown("> $$\n> a_1\n> $$\n") == "<blockquote>\n<p>\\[a_1\\]</p>\n</blockquote>\n"
    assert render_markdown("1. \\[\n   x\n   \\]\n") == "<ol>\n<li>\n<p>\\[x\\]</p>\n</li>\n</ol>\n"
    # A closing delimiter outside the quote does not close math opened inside it.
    out = render_markdown("> $$\n> a\n\n$$\n")
    assert "\\[" not in out and out.count("<span>$</span>") == 4


def test_a_backslash_escapes_a_delimiter() -> None:
    assert render_markdown(r"\\(x\\) and \$y\$") == (
        "<p><span>\\</span>(x<span>\\</span>) and <span>$</span>y<span>$</span></p>\n"
    )
    # A TeX line break before a parenthesis does not close \( … \).
    assert render_markdown(r"\(a \\) b\)") == "<p><span>\\(a \\\\) b\\)</span></p>\n"


# -- not math: code, prices -----------------------------------------------------------------------


def test_dollars_in_code_are_not_math() -> None:
    assert render_markdown("`$x$` and `\\(y\\)`") == "<p><code>$x$</code> and <code>\\(y\\)</code></p>\n"
    fence = render_markdown("```\n$$\nz_1\n$$\n```\n")
    assert fence.endswith("<pre><code>$$\nz_1\n$$\n</code></pre></div>\n")
    assert render_markdown("    $x$ and \\[y\\]\n") == "<pre><code>$x$ and \\[y\\]\n</code></pre>\n"
    highlighted = render_markdown("```python\ncost = '$5' + \"$10\"\n```\n")
    assert "\\(" not in highlighted and "<span>$</span>" not in highlighted


PRICES = {
    "It costs $5 and $10.": "It costs <span>$</span>5 and <span>$</span>10.",
    "$5-$10, $5/$10, $5, $6 and $7": "<span>$</span>5-<span>$</span>10, <span>$</span>5/<span>$</span>10, "
    "<span>$</span>5, <span>$</span>6 and <span>$</span>7",
    "5$ or 6$": "5<span>$</span> or 6<span>$</span>",
    "$ x $ is not math": "<span>$</span> x <span>$</span> is not math",
    "echo $HOME and $PATH": "echo <span>$</span>HOME and <span>$</span>PATH",
    "from $5 to $x$": "from <span>$</span>5 to <span>\\(x\\)</span>",  # the first closer fails: text
    "$20,000 and $30,000": "<span>$</span>20,000 and <span>$</span>30,000",
    # Math never reaches into a code span (the browser test found this one).
    "It costs $10. Code: `$HOME`.": "It costs <span>$</span>10. Code: <code>$HOME</code>.",
    "\\(a `\\) b` \\)": "(a <code>\\) b</code> )",
}


@pytest.mark.parametrize("text", sorted(PRICES))
def test_prices_are_not_math(text: str) -> None:
    assert render_markdown(text) == f"<p>{PRICES[text]}</p>\n"


def test_ordinary_text_never_looks_like_math_to_a_typesetter() -> None:
    # Typesetters read \begin{…}, \ref{…}, \$ and \\ in any text node: each backslash and dollar
    # of ordinary text is an element of its own, which they do not read across.
    out = render_markdown(r"\begin{equation} \href{javascript:alert(1)}{x} \end{equation} \ref{a} C:\\dir")
    assert out == (
        "<p><span>\\</span>begin{equation} <span>\\</span>href{javascript:alert(1)}{x} "
        "<span>\\</span>end{equation} <span>\\</span>ref{a} C:<span>\\</span>dir</p>\n"
    )
    assert escape_text("a<$b>&\\") == "a&lt;<span>$</span>b&gt;&amp;<span>\\</span>"
    alt = render_markdown("![plot of $x$](https://e.example/p.png)")
    assert "image: plot of <span>$</span>x<span>$</span></a>" in alt
    for text in ("$5 and $10", r"\(", "\\[ x", "$$", "a $$ b"):
        visible = re.sub(r"<[^>]+>", "", render_markdown(text))
        assert html.unescape(visible).strip() == text.replace("\\[", "[").replace("\\(", "(")
        assert not re.search(r"[$\\](?!</span>)", re.sub(r"<span>[$\\]</span>", "", render_markdown(text)))


def test_unclosed_and_blank_line_math_is_text() -> None:
    assert render_markdown("$$\na\n\nb\n$$") == (
        "<p><span>$</span><span>$</span>\na</p>\n<p>b\n<span>$</span><span>$</span></p>\n"
    )
    assert render_markdown("\\[ x") == "<p>[ x</p>\n"
    assert render_markdown("$$ $$") == "<p><span>$</span><span>$</span> <span>$</span><span>$</span></p>\n"


# -- refused macros -------------------------------------------------------------------------------

XSS = {
    "href": (r"$\href{javascript:alert(1)}{x}$", r"<p><code>$\href{javascript:alert(1)}{x}$</code></p>"),
    "url": (r"a \(\url{javascript:alert(1)}\)", r"<p>a <code>\(\url{javascript:alert(1)}\)</code></p>"),
    "unicode": (r"$\unicode[Arial]{x41}$", r"<p><code>$\unicode[Arial]{x41}$</code></p>"),
    "style": (r"$\style{color:red}{x}$", r"<p><code>$\style{color:red}{x}$</code></p>"),
    "class": (r"\[\class{x}{y}\]", r"<pre><code>\[\class{x}{y}\]</code></pre>"),
    "cssId": (r"$\cssId{main}{y}$", r"<p><code>$\cssId{main}{y}$</code></p>"),
    "require": (r"$$\require{html}\href{https://x.example}{y}$$", None),
    "html prefix": (r"$\htmlData{a=b}{y}$", r"<p><code>$\htmlData{a=b}{y}$</code></p>"),
    "mmlToken": (r"$\mmlToken{mi}[href='javascript:alert(1)']{x}$", None),
    "bbox css": (r"$\bbox[background:url(https://x.example/t.png)]{x}$", None),
    "definition": (r"$\def\x{\hr}\x ef$", r"<p><code>$\def\x{\hr}\x ef$</code></p>"),
    "newcommand": (r"$\newcommand{\frac}{\text{gotcha}}$", None),
    "script in math": (
        r"$<script>alert(1)</script>$",
        r"<p><span>\(&lt;script&gt;alert(1)&lt;/script&gt;\)</span></p>",
    ),
    "img in block": (
        "$$\n<img src=x onerror=alert(1)>\n$$",
        r"<p>\[&lt;img src=x onerror=alert(1)&gt;\]</p>",
    ),
    "href block": (
        "$$\n\\href{javascript:alert(1)}{x}\n$$",
        "<pre><code>$$\n\\href{javascript:alert(1)}{x}\n$$</code></pre>",
    ),
}
TYPESET = ("script in math", "img in block")  # harmless: the markup is text, typeset as symbols


class Elements(HTMLParser):
    def __init__(self, fragment: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.feed(fragment)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


@pytest.mark.parametrize("name", sorted(XSS))
def test_refused_macros_and_raw_html_in_math_are_never_typeset_or_run(name: str) -> None:
    text, expected = XSS[name]
    out = render_markdown(text)
    if expected is not None:
        assert out == expected + "\n"
    for tag, attrs in Elements(out).found:
        assert tag in {"p", "span", "code", "pre"}, tag
        assert attrs == {}, attrs
    typeset = re.findall(r"<span>\\[(\[]|<p>\\\[", out)
    assert len(typeset) == (name in TYPESET), out
    if name not in TYPESET:
        assert re.fullmatch(r"<p>(a )?<code>.*</code></p>\n|<pre><code>.*</code></pre>\n", out, re.S), out


def test_refused_macros() -> None:
    assert refused_macros(r"\frac{a}{b} + \mathbf{x}") == set()
    assert refused_macros(r"\href{u}{x} \url{v} \htmlClass{a}{b}") == {"href", "url", "htmlClass"}
    # A line break followed by letters is refused too: refusing too much only shows the source.
    assert refused_macros(r"a \\href b") == {"href"}
    assert refused_macros(r"\hrefx") == set()  # another macro's name
    assert {"href", "unicode", "class", "style", "cssId", "require", "def", "newcommand"} <= REFUSED_MACROS


# -- streaming ------------------------------------------------------------------------------------


def snapshots(pieces: list[str], dt: float = 0.06) -> tuple[list[str], StreamingMarkdown]:
    """What the screen shows after each piece, and the stream (closed)."""
    clock = Clock()
    stream = StreamingMarkdown(clock=clock)
    screen = Screen()
    shown = []
    for piece in pieces:
        clock.now += dt
        screen.apply(stream.feed(piece))
        shown.append(screen.html)
    screen.apply(stream.close())
    assert screen.html == stream.html == render_markdown(stream.text)
    return shown, stream


def test_unclosed_display_math_streams_as_text_and_does_not_swallow_what_follows() -> None:
    pieces = ["Intro.\n\n", "$$\n", "\\sum_i x_i\n", "\nLater text.\n\n", "More.\n"]
    shown, stream = snapshots(pieces)
    assert shown[2] == "<p>Intro.</p>\n<p><span>$</span><span>$</span>\n<span>\\</span>sum_i x_i</p>\n"
    assert shown[3].endswith("<p>Later text.</p>\n")
    assert stream.html == (
        "<p>Intro.</p>\n<p><span>$</span><span>$</span>\n<span>\\</span>sum_i x_i</p>\n"
        "<p>Later text.</p>\n<p>More.</p>\n"
    )


def test_display_math_is_typeset_once_closed_and_sent_whole() -> None:
    body = [f"a_{i} &= {i} \\\\\n" for i in range(200)]  # longer than the soft limit
    pieces = ["Sum:\n", "$$\n", "\\begin{aligned}\n", *body, "\\end{aligned}\n", "$$\n", "Then text"]
    shown, stream = snapshots(pieces)
    assert "\\[" not in shown[-3]  # open: text
    latex = "\\begin{aligned}\n" + "".join(body).replace("&", "&amp;") + "\\end{aligned}"
    assert shown[-2] == f"<p>Sum:</p>\n<p>\\[{latex}\\]</p>\n"
    assert stream.slots[:2] == ["<p>Sum:</p>\n", f"<p>\\[{latex}\\]</p>\n"]
    assert stream.slots[2] == "<p>Then text</p>\n"


def test_latex_in_a_fence_streams_in_chunks_like_any_code() -> None:
    # Lines starting with \[ inside a fence open nothing: the fence is sent chunk by chunk.
    code = "```latex\n" + "".join(f"\\[\nx_{i}\n\\]\n" for i in range(60)) + "```\n"
    shown, stream = snapshots([*code.splitlines(keepends=True), "\nafter\n"])
    assert len(stream.slots) >= 4
    assert stream.slots[0].startswith('<div class="oxen-code" data-lang="latex"><div class="oxen-code-head">')
    more = '<div class="oxen-code oxen-code-more" data-lang="latex"><pre><code class="language-latex">'
    assert all(slot.startswith(more) for slot in stream.slots[1:-1])  # one header, parts after it
    assert shown[50].startswith(stream.slots[0])  # the first chunk was final while it streamed


MATH_TEXT = (
    "Intro with $a_1 * b_2$ and \\(\\|x\\|\\), costs $5 and $10.\n\n"
    "$$\n\\frac{\\{a\\}}{b}\n$$\n"
    "Then\n\\[\na \\\\\nb\n\\]\n\n"
    "- item $x$\n- item \\[y\\]\n\n"
    "`$code$` and $$ z $$ and $\\href{javascript:alert(1)}{x}$\n\n"
    "$$\nunclosed\n\nlater paragraph\n"
)


@pytest.mark.parametrize("how", ["whole", "by char", "by line", "by 3"])
def test_math_streams_exactly(how: str) -> None:
    full = render_markdown(MATH_TEXT)
    for dt in (0.0001, 0.06):
        assert stream_final(feeds(MATH_TEXT)[how], dt) == full
    screen, _ = play(MATH_TEXT * 40, dt=0.0001)
    assert screen.html == render_markdown(MATH_TEXT * 40)


fragment = st.sampled_from(
    ["$a_1$", "$$", "$", "\\(", "\\)", "\\[", "\\]", "$5", "x", "*b*", "`$c$`", "\\\\", "\\$", " ", "_", "|"]
)
math_line = st.lists(fragment, min_size=1, max_size=6).map("".join)
math_doc = st.lists(
    st.one_of(math_line, st.just("$$"), st.just("\\["), st.just("\\]"), st.just(""), st.just("> $$")),
    min_size=1,
    max_size=12,
).map("\n".join)


@settings(max_examples=300, deadline=None)
@given(
    math_doc, st.lists(st.integers(min_value=0, max_value=120), max_size=8), st.sampled_from([0.0001, 0.06])
)
def test_streamed_math_equals_one_shot_render(text: str, cuts: list[int], dt: float) -> None:
    bounds = [0, *sorted(c for c in cuts if c < len(text)), len(text)]
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    full = render_markdown(text)
    assert stream_final(pieces, dt) == full
    assert stream_final(text.splitlines(keepends=True), dt) == full
    # Whatever the input, no text outside our math elements and code holds a bare delimiter.
    outside = re.sub(
        r"<code>.*?</code>|<span>\\[(\[].*?\\[)\]]</span>|<p>\\\[.*?\\\]</p>", "", full, flags=re.S
    )
    assert not re.search(r"[$\\]", re.sub(r"<span>[$\\]</span>", "", outside))


# -- cost -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "\\(" * 20_000,  # every opener unclosed
        "\\[ a " * 20_000,
        "$$ a\n" * 5_000,  # every line opens a block that never closes
        "\\[\n" * 5_000,
        "$a " * 20_000,
    ],
)
def test_pathological_math_renders_in_linear_time(text: str) -> None:
    started = time.perf_counter()
    render_markdown(text)
    assert time.perf_counter() - started < 2.0


def test_the_panel_typesets_vetted_math_and_tables_guard_model_text(session) -> None:
    import ipywidgets as widgets

    from oxen_notebook import ChatPanel
    from oxen_notebook._magics._objects import object_bundle

    panel = ChatPanel(session)
    shown = panel._transcript.html(render_markdown(r"Euler: \(e^{i\pi} + 1 = 0\) costs $5"))
    assert isinstance(shown, widgets.HTMLMath)  # the frontend's MathJax typesets it
    assert r"\(e^{i\pi} + 1 = 0\)" in shown.value and "<span>$</span>5" in shown.value
    table = object_bundle({"note": r"$\href{https://x.example}{a}$", "rows": [{"c": "$1 and $2"}]})
    assert "<span>$</span>" in table["text/html"] and "$\\" not in table["text/html"]
    listed = object_bundle([{"c": r"$\unicode{x}$"}])["text/html"]
    assert "$" not in listed.replace("<span>$</span>", "") and "\\" not in listed.replace(
        "<span>\\</span>", ""
    )
    panel.close()
