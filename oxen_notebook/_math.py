r"""Math in replies: ``$…$``, ``$$…$$``, ``\(…\)`` and ``\[…\]`` kept away from Markdown and handed,
untouched, to the frontend's typesetter.

**Mechanism.** The delimiters are parsed by markdown-it rules that run before Markdown's escapes and
emphasis, so the LaTeX keeps its backslashes, ``_``, ``*``, ``|`` and braces. Each piece of math is
emitted as its own element, with LaTeX's own delimiters, for the frontend's MathJax (or KaTeX) to
typeset: ``<span>\(…\)</span>`` inline, ``<span>\[…\]</span>`` for display math inside a paragraph and
``<p>\[…\]</p>`` for a display block. In HTML outputs and ``ipywidgets.HTMLMath``, JupyterLab 4 and
Notebook 7 (MathJax 3) and classic Notebook 6.5 (MathJax 2.7) typeset ``$``, ``$$``, ``\(`` and ``\[``
alike (checked in Chromium); ``\(``/``\[`` because they are also MathJax's and KaTeX's default
delimiters, so more viewers of a saved notebook typeset them. MathML rendered in Python
(``latex2mathml``) was the alternative: it would show math where nothing typesets, but it covers a
fraction of what MathJax does, looks worse than the page's own typesetter (fonts, scaling, the
notebook's look), and needs MathML in the sanitizer's allow-list, a known source of sanitizer
bypasses. Where nothing typesets, the LaTeX stays readable.

**The typesetter sees only what this module vetted.** A typesetter scans every text node of the
output for delimiters, so text that is not math must not look like math to it: in ordinary text
(everything but code, which typesetters skip) each ``$`` and ``\`` is put in an element of its own
(``<span>$</span>``). Neither MathJax nor KaTeX joins text across elements, so ``$5 and $10``, a
bare ``\begin{equation}…`` or ``\ref{…}`` (Jupyter's MathJax 3 and 2 typeset both in any text) is
never typeset, whatever the frontend's settings.

**Delimiter rules.** Dollars inside a paragraph by ``mdit-py-plugins``' ``dollarmath`` inline rule;
the display-block and ``\(``/``\[`` rules are this module's (``dollarmath``'s block rule and
``texmath``'s ``\[`` rule take a block across blank lines, so an unclosed one would take the rest
of a streamed reply and change blocks already sent):

- ``$…$`` is math when the opening ``$`` is followed by a non-space and not preceded by a digit, and
  the first unescaped ``$`` after it is preceded by a non-space and not followed by a digit (so
  ``$5 and $10``, ``5$``, ``$ x $`` are text). ``\$`` is a dollar sign.
- ``$$…$$`` and ``\[…\]`` inside a paragraph are display math; ``\(…\)`` is inline math. A backslash
  escapes the next character (``\\(`` is text).
- A display block starts with ``$$`` or ``\[`` at the start of a line (it may interrupt a paragraph)
  and ends at the first line ending with ``$$`` / ``\]``; a blank line, a less indented line or
  another delimiter first makes it ordinary text (so an unclosed ``$$`` never takes the rest of the
  reply, and a streamed block shows as text until its closing line arrives).
- Nothing in code spans, fences or indented code is math, and inline math never holds a backtick
  (so ``costs $10, run `echo $HOME` `` stays a price and code). In tables, GFM turns ``\|`` into
  ``|`` before any inline rule runs, math included.

**Macro policy.** Math that uses any of :data:`REFUSED_MACROS` (or a macro whose name starts with
``html``) is not typeset: it is shown as its source in a ``<code>`` element, which typesetters skip.
These are the macros that make links (``\href``, ``\url``), set HTML attributes, CSS or raw MathML
(``\class``, ``\style``, ``\cssId``, ``\data``, ``\html…``, ``\mmlToken``, ``\bbox``), load something
(``\require``, ``\unicode``'s fonts, ``\includegraphics``), or define macros (``\def``,
``\newcommand``, ``\let``…; MathJax keeps definitions for the whole page, so a reply could change how
the user's own cells typeset). JupyterLab's MathJax loads every TeX package (``\href``, ``\class``,
``\style``, ``\require`` included) and classic Notebook's autoloads them; both drop ``javascript:``
URLs with MathJax's safe filter, but ``\href{https://…}`` still makes a link there, and a saved
notebook may be opened where no such filter runs: the policy does not depend on the viewer.
The LaTeX is HTML-escaped like any text (``<``, ``>``, ``&`` become entities): typesetters read the
text content, so they see the characters, and raw HTML in math is only ever text.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.rules_block import StateBlock
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from mdit_py_plugins.dollarmath.index import math_inline_dollar

__all__ = [
    "REFUSED_MACROS",
    "escape_text",
    "math_as_text",
    "math_html",
    "math_plugin",
    "opens_display",
    "refused_macros",
    "vet_html",
]

#: Macros that make math be shown as its source instead of typeset (and any macro named ``html…``).
REFUSED_MACROS = frozenset(
    {"href", "url"}  # links
    | {"class", "style", "cssId", "data", "mmlToken", "bbox"}  # attributes, CSS, raw MathML
    | {"require", "unicode", "includegraphics"}  # loads extensions, fonts, images
    | {"def", "gdef", "edef", "xdef", "global", "let", "futurelet"}  # definitions, page-wide
    | {"newcommand", "renewcommand", "providecommand", "newenvironment", "renewenvironment"}
    | {"DeclareMathOperator", "Newextarrow"}
)
_CONTROL_WORD = re.compile(r"\\([A-Za-z]+)")
_ESCAPED = re.compile(r"\\.", re.S)  # TeX reads a backslash and the character after it as one token
#: The delimiters of display math (``open``, ``close``) by the markup that opened it.
_DISPLAY = {"$$": ("$$", "$$"), "\\[": ("\\[", "\\]")}
_DELIMITER_RE = {
    "$$": (re.compile(r"\\.|\$\$", re.S), ("$$",)),
    "\\[": (_ESCAPED, ("\\[", "\\]")),
}
_INLINE_CLOSE = {"(": ")", "[": "]"}
_CLOSERS = {"$": "$", "$$": "$$", "\\(": "\\)", "\\[": "\\]"}
_OPENER_LINE = re.compile(r" {0,3}(?:\$\$|\\\[)")


def refused_macros(latex: str) -> set[str]:
    """The macros in ``latex`` that :data:`REFUSED_MACROS` refuses (empty when it may be typeset).

    Every backslash-letters run counts, even the ``href`` of ``\\\\href`` (a line break, then
    letters): refusing too much only shows math as source; refusing too little could run code.
    """
    names = set(_CONTROL_WORD.findall(latex))
    return {name for name in names if name in REFUSED_MACROS or name.startswith("html")}


def escape_text(text: str) -> str:
    """HTML-escape ordinary (non-math, non-code) text, each ``$`` and ``\\`` in an element of its own,
    so that no typesetter reads delimiters in it."""
    out = html.escape(text, quote=False)
    if "\\" in out:
        out = out.replace("\\", "<span>\\</span>")
    if "$" in out:
        out = out.replace("$", "<span>$</span>")
    return out


_TAG = re.compile(r"(<(?:style|script)\b.*?</(?:style|script)\s*>|<[^>]*>)", re.S | re.I)


def vet_html(markup: str) -> str:
    """HTML that a library built from escaped text (a pandas table), vetted like :func:`escape_text`:
    each ``$`` and ``\\`` of its text in an element of its own; tags and style sheets unchanged."""
    parts = _TAG.split(markup)
    for i in range(0, len(parts), 2):  # the text between tags
        if "\\" in parts[i] or "$" in parts[i]:
            parts[i] = parts[i].replace("\\", "<span>\\</span>").replace("$", "<span>$</span>")
    return "".join(parts)


def math_html(latex: str, *, display: bool, block: bool = False, source: str = "") -> str:
    """The HTML for one piece of math: ``latex`` between ``\\(…\\)`` (or ``\\[…\\]`` for ``display``) in
    its own ``<span>`` (``<p>`` for a ``block``), or, when it uses a refused macro, ``source`` (the
    math as written, delimiters and all) as code."""
    latex = latex.strip()
    if not latex:
        return escape_text(source)
    if refused_macros(latex):
        code = html.escape(source or latex, quote=False)
        return f"<pre><code>{code}</code></pre>\n" if block else f"<code>{code}</code>"
    text = html.escape(latex, quote=False)
    if block:
        return f"<p>\\[{text}\\]</p>\n"
    return f"<span>\\[{text}\\]</span>" if display else f"<span>\\({text}\\)</span>"


# -- inline rules ---------------------------------------------------------------------------------


def _first_closer(src: str, start: int, end: int, closer: str) -> int:
    """The index of the first backslash-``closer`` pair in ``src[start:end]`` that is not itself
    escaped, or -1."""
    for match in _ESCAPED.finditer(src, start, end):
        if match.group()[1] == closer:
            return match.start()
    return -1


def _bracket_inline(state: StateInline, silent: bool) -> bool:
    r"""``\(…\)`` (inline) and ``\[…\]`` (display) math inside a paragraph."""
    src, pos, end = state.src, state.pos, state.posMax
    if src[pos] != "\\" or pos + 1 >= end or src[pos + 1] not in _INLINE_CLOSE:
        return False
    opener = src[pos + 1]
    # Once a search found no closer, none is found from a later opener either: remember where the
    # search failed (for this end: a link's text is parsed with an earlier one), so a paragraph of
    # unclosed openers costs linear time. ``cache`` is the inline state's memo for backtracking;
    # its keys are positions, never negative.
    key = -1 - (2 * end + (opener == "["))
    if state.cache.get(key, end + 1) <= pos:
        return False
    close = _first_closer(src, pos + 2, end, _INLINE_CLOSE[opener])
    if close < 0:
        state.cache[key] = pos
        return False
    content = src[pos + 2 : close]
    if not content.strip() or "`" in content:
        return False  # empty, or reaching into a code span
    if not silent:
        token = state.push("math_inline" if opener == "(" else "math_inline_double", "math", 0)
        token.content = content
        token.markup = "\\" + opener
    state.pos = close + 2
    return True


# -- display blocks -------------------------------------------------------------------------------


def _delimiters(text: str, markup: str) -> list[tuple[int, str]]:
    """The unescaped delimiters of ``markup``'s kind in ``text``, as (index, delimiter)."""
    pattern, wanted = _DELIMITER_RE[markup]
    return [(m.start(), m.group()) for m in pattern.finditer(text) if m.group() in wanted]


def opens_display(line: str) -> bool:
    """Whether ``line`` starts with ``$$`` or ``\\[`` (at most three spaces in): it may open a
    display block."""
    return _OPENER_LINE.match(line) is not None


def _display_block(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
    r"""A display block: ``$$`` or ``\[`` at the start of a line, to a line ending with ``$$``/``\]``."""
    begin = state.bMarks[start_line] + state.tShift[start_line]
    markup = state.src[begin : begin + 2]
    if markup not in _DISPLAY or state.is_code_block(start_line):
        return False
    close = _DISPLAY[markup][1]
    line, text = start_line, state.src[begin + 2 : state.eMarks[start_line]].rstrip()
    parts: list[str] = []
    # Each line up to the first with a delimiter of this kind, which must be one closer ending it.
    while not (found := _delimiters(text, markup)):
        parts.append(text)
        line += 1
        if line >= end_line or state.isEmpty(line) or state.sCount[line] < state.blkIndent:
            return False  # unclosed: a blank line, the end, or a line outside this container first
        first = state.bMarks[line] + state.tShift[line]
        text = state.src[first : state.eMarks[line]].rstrip()
    if len(found) != 1 or found[0] != (len(text) - 2, close):
        return False
    parts.append(text[:-2])
    content = "\n".join(parts)
    if not content.strip():
        return False
    if silent:
        return True
    state.line = line + 1
    token = state.push("math_block", "math", 0)
    token.block = True
    token.content = content
    token.markup = markup
    token.map = [start_line, state.line]
    return True


# -- rendering ------------------------------------------------------------------------------------


def _source(token: Token) -> str:
    """The math as written: its delimiters and content."""
    return f"{token.markup}{token.content}{_CLOSERS[token.markup]}"


def math_as_text(tokens: Sequence[Token]) -> list[Token]:
    """``tokens`` with each math token made a text token of its source (for an image's alt text)."""
    return [
        Token("text", "", 0, content=_source(t)) if t.type in ("math_inline", "math_inline_double") else t
        for t in tokens
    ]


def _render_inline(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    display = token.type == "math_inline_double"
    return math_html(token.content, display=display, source=_source(token))


def _render_block(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    return math_html(token.content, display=True, block=True, source=_source(token))


def _render_text(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    return escape_text(tokens[idx].content)


_DOLLARS = math_inline_dollar(allow_space=False, allow_digits=False, allow_double=True)


def _dollar_inline(state: StateInline, silent: bool) -> bool:
    """``$…$`` and ``$$…$$`` inside a paragraph, by ``dollarmath``'s rule, but not into a code span:
    math that would hold a backtick is text (``$10, run `echo $HOME` `` has a price and code)."""
    if state.src[state.pos] != "$":
        return False
    start = state.pos
    if not _DOLLARS(state, True):
        return False
    if "`" in state.src[start : state.pos]:
        state.pos = start
        return False
    if silent:
        return True
    state.pos = start
    return _DOLLARS(state, False)


def math_plugin(md: MarkdownIt) -> MarkdownIt:
    """Add the math rules and their renderers to ``md`` (and the text renderer that keeps ordinary
    text from looking like math to a typesetter)."""
    md.inline.ruler.before("escape", "math_inline", _dollar_inline)
    md.inline.ruler.before("escape", "math_inline_bracket", _bracket_inline)
    md.block.ruler.before(
        "fence", "math_block", _display_block, {"alt": ["paragraph", "reference", "blockquote", "list"]}
    )
    md.add_render_rule("math_inline", _render_inline)
    md.add_render_rule("math_inline_double", _render_inline)
    md.add_render_rule("math_block", _render_block)
    md.add_render_rule("text", _render_text)
    return md
