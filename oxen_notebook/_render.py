"""Model output to safe HTML.

``render_markdown(text)`` turns Markdown into sanitized HTML, ``render_code(code, language)`` turns code
into highlighted, sanitized HTML; ``parse_markdown`` gives the tokens ``render_markdown`` renders, for
the streaming splitter (``_streaming.py``) to find block boundaries with the very same parser.

Model output is untrusted: markdown-it-py runs with raw HTML disabled (it is escaped), then nh3 keeps
only an allow-list of tags and attributes, http/https/mailto links (opening in a new tab with
``rel="noopener noreferrer"``) and the exact inline styles Pygments and table alignment emit. Images
become links: a prompt-injected image URL would otherwise be fetched as soon as it is shown.

Math (``$…$``, ``$$…$$``, ``\\(…\\)``, ``\\[…\\]``) is parsed before Markdown touches it and left for the
frontend's typesetter, within the same guarantees: see ``_math.py``.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import MutableMapping
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.style import Style
from pygments.token import STANDARD_TYPES, Comment, Error, Generic, Keyword, Name, Number, String
from pygments.util import ClassNotFound

from ._math import escape_text, math_as_text, math_plugin

__all__ = [
    "CODE_CHUNK_LINES",
    "parse_markdown",
    "render_code",
    "render_markdown",
    "sanitize",
]

#: Fenced code is rendered in ``<pre>`` blocks of this many lines, so a long fence can be streamed
#: chunk by chunk and each chunk sent once, identical to its part of the full render.
CODE_CHUNK_LINES = 40


class _NotebookStyle(Style):
    """Few, mid-tone colours: readable on light and dark themes, and little markup per token."""

    background_color = ""
    styles = {  # noqa: RUF012 - Pygments reads this class attribute
        Comment: "#6a737d",
        Keyword: "#d73a49",
        Name.Builtin: "#8250df",
        Name.Function: "#8250df",
        Name.Class: "#8250df",
        Name.Decorator: "#8250df",
        String: "#1a7f37",
        Number: "#1f77d0",
        Generic.Deleted: "#d73a49",
        Generic.Inserted: "#1a7f37",
        Generic.Heading: "bold",
        Generic.Subheading: "bold",
        Error: "",
    }


_FORMATTER = HtmlFormatter(noclasses=True, nowrap=True, style=_NotebookStyle)


class _FakeLexer:
    """Emits one token of a given type, to learn which inline styles the formatter can produce."""

    def __init__(self, ttype: Any) -> None:
        self.ttype = ttype
        self.encoding = "utf-8"
        self.filters: list[Any] = []

    def get_tokens(self, text: str) -> list[tuple[Any, str]]:
        return [(self.ttype, text)]


_ALIGN_STYLES = frozenset(f"text-align:{side}" for side in ("left", "right", "center"))
_CLASS_RE = re.compile(r"language-[\w+#.-]{1,40}")
_TAGS = frozenset(
    {"a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "li"}
    | {"ol", "p", "pre", "s", "span", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul"}
)
_ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
    "code": {"class"},
    "span": {"style"},
    "th": {"style"},
    "td": {"style"},
}


@functools.lru_cache(maxsize=1)
def _allowed_styles() -> frozenset[str]:
    styles: set[str] = set(_ALIGN_STYLES)
    for ttype in STANDARD_TYPES:
        out = highlight("x", _FakeLexer(ttype), _FORMATTER)  # type: ignore[arg-type]
        styles.update(re.findall(r'style="([^"]*)"', out))
    return frozenset(styles)


def _attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    if attribute == "style":
        return value if value in _allowed_styles() else None
    if attribute == "class":
        return value if tag == "code" and _CLASS_RE.fullmatch(value) else None
    return value


def sanitize(fragment: str) -> str:
    """Keep only the allow-listed tags, attributes, URL schemes and inline styles."""
    return nh3.clean(
        fragment,
        tags=set(_TAGS),
        clean_content_tags={"script", "style"},
        attributes={tag: set(names) for tag, names in _ATTRIBUTES.items()},
        attribute_filter=_attribute_filter,
        url_schemes={"http", "https", "mailto"},
        url_relative="deny",
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
    )


@functools.lru_cache(maxsize=64)
def _lexer(language: str) -> Any:
    if not language:
        return None
    try:
        return get_lexer_by_name(language, stripnl=False, stripall=False, ensurenl=False)
    except ClassNotFound:
        return None


def _split_lines(text: str) -> list[str]:
    """Lines with their ``\\n``; only ``\\n`` separates lines (as markdown-it after normalizing)."""
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def _code_html(code: str, language: str) -> str:
    attrs = f' class="language-{html.escape(language)}"' if language else ""
    lines = _split_lines(code) or [""]
    chunks = []
    for start in range(0, len(lines), CODE_CHUNK_LINES):
        piece = "".join(lines[start : start + CODE_CHUNK_LINES])
        chunks.append(f"<pre><code{attrs}>{_highlight_text(piece, language)}</code></pre>\n")
    return "".join(chunks)


def _highlight_text(code: str, language: str) -> str:
    lexer = _lexer(language.lower()) if language else None
    if lexer is None:
        return html.escape(code, quote=False)
    return highlight(code, lexer, _FORMATTER)


def _fence_rule(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    info = token.info.strip().split(maxsplit=1)
    return _code_html(token.content, info[0] if info else "")


def _image_rule(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    alt = self.renderInlineAsText(math_as_text(token.children or []), options, env) or "image"
    src = html.escape(token.attrGet("src") or "")
    return f'<a href="{src}">image: {escape_text(alt)}</a>'


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    md.add_render_rule("fence", _fence_rule)
    md.add_render_rule("image", _image_rule)
    return math_plugin(md)


_MD = _parser()


def render_markdown(text: str) -> str:
    """Markdown (CommonMark, tables, strikethrough, math) to sanitized HTML; raw HTML is shown as text.

    Fenced code is highlighted with Pygments inline styles, in ``<pre>`` blocks of
    ``CODE_CHUNK_LINES`` lines.
    """
    return sanitize(_MD.render(text)) if text else ""


def parse_markdown(text: str, env: MutableMapping[str, Any] | None = None) -> list[Token]:
    """The tokens ``render_markdown(text)`` renders (the same parser and options).

    ``env`` collects what applies document-wide: ``env["references"]`` holds the link reference
    definitions found anywhere, in block quotes and list items too.
    """
    return _MD.parse(text, env)


def render_code(code: str, language: str = "") -> str:
    """Code to sanitized, highlighted HTML (``language`` is a Pygments name such as ``python``)."""
    return sanitize(_code_html(code, language))
