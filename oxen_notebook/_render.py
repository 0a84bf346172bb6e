"""Model output to safe HTML.

``render_markdown(text)`` turns Markdown into sanitized HTML, ``render_code(code, language)`` turns code
into highlighted, sanitized HTML; ``parse_markdown`` gives the tokens ``render_markdown`` renders, for
the streaming splitter (``_streaming.py``) to find block boundaries with the very same parser.

Model output is untrusted: markdown-it-py runs with raw HTML disabled (it is escaped), then nh3 keeps
only an allow-list of tags and attributes, http/https/mailto links (opening in a new tab with
``rel="noopener noreferrer"``), our own class names only (code blocks, token kinds: ``_style``) and
the table alignment styles. Code is highlighted with classes, coloured by the stylesheet. Images
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
from pygments import lex
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

from ._math import escape_text, math_as_text, math_plugin
from ._style import CODE_BLOCK, CODE_MORE, TOKEN_CLASSES, token_class

__all__ = [
    "CODE_CHUNK_LINES",
    "CONTINUED",
    "parse_markdown",
    "render_code",
    "render_markdown",
    "sanitize",
]

#: Fenced code is rendered in ``<pre>`` blocks of this many lines, so a long fence can be streamed
#: chunk by chunk and each chunk sent once, identical to its part of the full render.
CODE_CHUNK_LINES = 40


#: Marks a fence's opener as the rest of a long block (``_streaming`` cuts one in parts): its
#: parts after the first have no header (see ``_style``); U+E000 is a private-use character.
CONTINUED = "\ue000"


_ALIGN_STYLES = frozenset(f"text-align:{side}" for side in ("left", "right", "center"))
_LANGUAGE = r"[\w+#.-]{1,40}"
_CLASS_RE = re.compile(f"language-{_LANGUAGE}")
_LANG_RE = re.compile(_LANGUAGE)
_TAGS = frozenset(
    {"a", "blockquote", "br", "code", "del", "div", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr"}
    | {"li", "ol", "p", "pre", "s", "span", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul"}
)
_ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
    "code": {"class"},
    "div": {"class", "data-lang"},
    "span": {"class"},
    "th": {"style"},
    "td": {"style"},
}
#: The only classes a tag may carry: ours, never a name from model text.
_CLASSES = {
    "div": frozenset({CODE_BLOCK, CODE_MORE, "oxen-code-head"}),
    "span": TOKEN_CLASSES | {"oxen-code-lang", "oxen-code-actions"},
}


def _attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    if attribute == "style":
        return value if value in _ALIGN_STYLES else None
    if attribute == "data-lang":
        return value if not value or _LANG_RE.fullmatch(value) else None
    if attribute == "class":
        if tag == "code":
            return value if _CLASS_RE.fullmatch(value) else None
        kept = [name for name in value.split() if name in _CLASSES.get(tag, ())]
        return " ".join(kept) or None
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


def _code_html(code: str, language: str, *, continued: bool = False) -> str:
    """A code block (see ``_style``): a header naming the language and a slot for actions, then
    the code in ``<pre>`` parts of ``CODE_CHUNK_LINES`` lines; ``continued``: no header (the rest
    of a block whose first part was shown already)."""
    if not _LANG_RE.fullmatch(language):
        language = ""
    lang = html.escape(language)
    attrs = f' class="language-{lang}"' if language else ""
    lines = _split_lines(code) or [""]
    chunks = []
    for start in range(0, len(lines), CODE_CHUNK_LINES):
        piece = "".join(lines[start : start + CODE_CHUNK_LINES])
        pre = f"<pre><code{attrs}>{_highlight_text(piece, language)}</code></pre>"
        if start or continued:
            chunks.append(f'<div class="{CODE_BLOCK} {CODE_MORE}" data-lang="{lang}">{pre}</div>\n')
        else:
            head = (
                f'<div class="oxen-code-head"><span class="oxen-code-lang">{lang or "code"}</span>'
                '<span class="oxen-code-actions"></span></div>'
            )
            chunks.append(f'<div class="{CODE_BLOCK}" data-lang="{lang}">{head}{pre}</div>\n')
    return "".join(chunks)


def _highlight_text(code: str, language: str) -> str:
    """Escaped code, each run of tokens of one colour kind in a ``span`` of its class."""
    lexer = _lexer(language.lower()) if language else None
    if lexer is None:
        return html.escape(code, quote=False)
    runs: list[tuple[str, list[str]]] = []
    for ttype, value in lex(code, lexer):
        name = token_class(ttype)
        if runs and runs[-1][0] == name:
            runs[-1][1].append(value)
        else:
            runs.append((name, [value]))
    out = []
    for name, values in runs:
        text = html.escape("".join(values), quote=False)
        out.append(f'<span class="{name}">{text}</span>' if name else text)
    return "".join(out)


def _fence_rule(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    words = token.info.split()
    continued = bool(words) and words[-1] == CONTINUED
    if continued:
        words.pop()
    return _code_html(token.content, words[0] if words else "", continued=continued)


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

    Fenced code is a code block (``_style`` shows its HTML), highlighted with classes, in parts of
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
