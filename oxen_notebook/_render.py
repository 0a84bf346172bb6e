"""Model output to safe HTML, all at once or streamed.

``render_markdown(text)`` turns Markdown into sanitized HTML. ``StreamingMarkdown`` turns a stream of
text deltas into a few display updates: finished top-level blocks are rendered and sent once, only
the unfinished tail is re-rendered (at most every ``interval`` seconds, within a byte budget), and
``close()`` makes what is shown exactly ``render_markdown(full_text)``. The magic maps its slots to
IPython display ids; the chat panel can map them to ``ipywidgets.HTML`` children.

Model output is untrusted: markdown-it-py runs with raw HTML disabled (it is escaped), then nh3 keeps
only an allow-list of tags and attributes, http/https/mailto links (opening in a new tab with
``rel="noopener noreferrer"``) and the exact inline styles Pygments and table alignment emit. Images
become links: a prompt-injected image URL would otherwise be fetched as soon as it is shown.
"""

from __future__ import annotations

import functools
import html
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import nh3
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.style import Style
from pygments.token import STANDARD_TYPES, Comment, Error, Generic, Keyword, Name, Number, String
from pygments.util import ClassNotFound

__all__ = [
    "CODE_CHUNK_LINES",
    "StreamingMarkdown",
    "Throttle",
    "Update",
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
    alt = self.renderInlineAsText(token.children or [], options, env) or "image"
    src = html.escape(token.attrGet("src") or "")
    return f'<a href="{src}">image: {html.escape(alt)}</a>'


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    md.add_render_rule("fence", _fence_rule)
    md.add_render_rule("image", _image_rule)
    return md


_MD = _parser()


def render_markdown(text: str) -> str:
    """Markdown (CommonMark, tables, strikethrough) to sanitized HTML; raw HTML is shown as text.

    Fenced code is highlighted with Pygments inline styles, in ``<pre>`` blocks of
    ``CODE_CHUNK_LINES`` lines.
    """
    return sanitize(_MD.render(text)) if text else ""


def render_code(code: str, language: str = "") -> str:
    """Code to sanitized, highlighted HTML (``language`` is a Pygments name such as ``python``)."""
    return sanitize(_code_html(code, language))


class Throttle:
    """Says when enough time has passed: ``ready()`` is true ``interval`` seconds after the last
    ``spend()``; ``spend(n)`` accounts for ``n`` messages, so bursts still average one per interval."""

    def __init__(self, interval: float = 0.05, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._next = float("-inf")

    def ready(self) -> bool:
        return self.clock() >= self._next

    def spend(self, messages: int = 1) -> None:
        self._next = self.clock() + self.interval * max(messages, 1)


@dataclass(frozen=True)
class Update:
    """One change to what is shown, as a list of HTML slots.

    ``new``: append slot ``slot`` showing ``html``; ``set``: replace slot ``slot``'s HTML;
    ``reset``: remove every slot, then show ``html`` as slot 0.
    """

    kind: Literal["new", "set", "reset"]
    slot: int
    html: str


_REFERENCE_RE = re.compile(r"^ {0,3}\[[^\]]+\]:", re.M)
_CLOSER_RE = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*")


class StreamingMarkdown:
    """Renders a streamed Markdown reply into slots of HTML, sending each finished block once.

    ``feed(delta)`` and ``close()`` return the :class:`Update` list to apply. Finished top-level
    blocks are rendered once into their own slot; the live tail (the unfinished block) is
    re-rendered at most once per ``interval``. Every update must fit the byte budget
    ``ratio * reply_bytes + allowance + inflation``, where ``inflation`` is how much bigger than
    their Markdown the committed blocks' HTML is (highlighted code, tables); what does not fit
    waits (finished blocks stay in the tail) until ``close()``. A long open block is committed in pieces: fenced code every
    ``CODE_CHUNK_LINES`` lines (identical to the full render), other blocks past ``soft_limit``
    characters at a list item, line or word boundary (approximate until ``close()``, whose final
    full render is then reserved in the budget). After ``close()`` the slots' HTML joined is exactly
    ``render_markdown(text)``, in a single slot when that fits in the budget. ``overhead`` is the
    estimated bytes each update costs besides its HTML (message envelope and metadata).
    """

    def __init__(
        self,
        *,
        interval: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        soft_limit: int = 2048,
        ratio: float = 2.5,
        allowance: int = 8192,
        overhead: int = 400,
    ) -> None:
        self.throttle = Throttle(interval, clock)
        self.soft_limit = soft_limit
        self.ratio = ratio
        self.allowance = allowance
        self.overhead = overhead
        self.slots: list[str] = []
        self.sent_bytes = 0
        self.updates = 0
        self._parts: list[str] = []
        self._in_bytes = 0
        self._pending = ""
        self._cr = False
        self._tail_open = False
        self._approximate = False
        self._inflation = 0
        self._scanned = ""
        self._open_table = False
        self._tail_inflation = 0.5
        self._closed = False

    @property
    def text(self) -> str:
        """The reply so far (``\\r\\n`` and ``\\r`` read as ``\\n``)."""
        return "".join(self._parts)

    @property
    def html(self) -> str:
        """What the slots show, joined."""
        return "".join(self.slots)

    def feed(self, delta: str) -> list[Update]:
        """Take a text delta; return the updates due now (often none)."""
        if self._closed:
            raise RuntimeError("this StreamingMarkdown is closed.")
        if self._cr:
            delta = "\r" + delta
        self._cr = delta.endswith("\r")
        if self._cr:
            delta = delta[:-1]
        delta = delta.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "\ufffd")
        if not delta:
            return []
        self._parts.append(delta)
        self._pending += delta
        self._in_bytes += len(delta.encode())
        return self.flush()

    def flush(self) -> list[Update]:
        """The updates due now: call it on a timer if deltas may pause for long."""
        if self._closed or not self.throttle.ready():
            return []
        if not self._approximate and _REFERENCE_RE.search(self._pending):
            self._approximate = True  # a reference definition applies to blocks sent already
        state = (self._pending, self._approximate)
        pieces = self._take_finished()
        updates: list[Update] = []
        if pieces:
            rendered = "".join(render_markdown(src) for src in pieces)
            source = sum(len(src.encode()) for src in pieces)
            # Source bytes count (HTML inflation is free); keep room to commit the rest at the end.
            reserve = len(self._pending.encode()) + 2 * self.overhead
            if rendered and not self._fits(source + reserve):
                self._pending, self._approximate = state
                self._scanned = ""
                self.throttle.spend(1)
                return []
            self._inflation += max(0, len(rendered.encode()) - source)
            if rendered:
                updates += self._commit_html(rendered)
        updates += self._tail_update()
        self.throttle.spend(len(updates))
        return updates

    def close(self) -> list[Update]:
        """The last updates: afterwards the slots show exactly ``render_markdown(self.text)``."""
        if self._closed:
            return []
        if self._cr:
            self._cr = False
            self._parts.append("\n")
            self._pending += "\n"
            self._in_bytes += 1
        self._closed = True
        text = self.text
        last = render_markdown(self._pending) if self._pending.strip() else ""
        committed = self.slots[:-1] if self._tail_open else list(self.slots)
        if self._pending == text:
            full = last  # nothing committed: the same render
        elif not self._approximate and not _REFERENCE_RE.search(text):
            # Whole top-level blocks render alone as they do in the document (a reference
            # definition is the exception: it applies document-wide), so skip a second render.
            full = "".join(committed) + last
        else:
            full = render_markdown(text)
        final = committed + ([last] if last else [])
        # Merging into one slot is optional: only when it fits without the inflation credit.
        spent = self.sent_bytes + self._cost(full)
        fits = spent <= self.ratio * self._in_bytes + self.allowance
        if "".join(final) != full or (len(final) > 1 and fits):
            if len(self.slots) <= 1:
                self._tail_open = False
                if not self.slots:
                    return [] if not full else self._commit_html(full)
                return [] if self.slots[0] == full else [self._set(0, full)]
            self.slots = [full]
            self._tail_open = False
            return [self._count(Update("reset", 0, full))]
        if last:
            return self._commit_html(last)
        if self._tail_open:
            self._tail_open = False
            self.slots.pop()
            return [self._count(Update("set", len(self.slots), ""))]
        return []

    # -- splitting ------------------------------------------------------------------------------

    def _take_finished(self) -> list[str]:
        """Cut finished blocks (and pieces of a long open block) off the pending text."""
        pieces: list[str] = []
        complete = self._pending[: self._pending.rfind("\n") + 1]
        if complete == self._scanned and len(self._pending) <= self.soft_limit:
            return pieces  # no new line since the last look: the blocks are the same
        if self._table_rows(complete):
            self._scanned = complete
            return pieces  # more rows of the open table: skip re-parsing it
        self._scanned = complete
        if not complete:
            return self._soft_cut(pieces, None, [])
        blocks = [t for t in _MD.parse(complete) if t.level == 0 and t.nesting >= 0 and t.map]
        lines = complete.split("\n")
        if len(blocks) >= 2:
            start = blocks[-1].map[0]
            offset = sum(len(line) + 1 for line in lines[:start])
            pieces.append(self._pending[:offset])
            self._pending = self._pending[offset:]
            lines = lines[start:]
            first_line = start
        else:
            first_line = 0
        last = blocks[-1] if blocks else None
        self._open_table = last is not None and last.type == "table_open"
        if last is None:
            return self._soft_cut(pieces, last, lines, first_line)
        a, b = last.map[0] - first_line, last.map[1] - first_line
        if len(lines) >= 2 and not lines[-2].strip() and self._ends_at_blank(last, lines, a, b):
            cut = sum(len(line) + 1 for line in lines[:-1])
            pieces.append(self._pending[:cut])
            self._pending = self._pending[cut:]
            self._open_table = False
            return pieces
        if last.type == "fence":
            return self._fence_cut(pieces, last, lines, a, b)
        return self._soft_cut(pieces, last, lines, first_line)

    @staticmethod
    def _fence_closed(fence: Any, lines: list[str], a: int, b: int) -> bool:
        closer = _CLOSER_RE.fullmatch(lines[b - 1]) if a < b - 1 < len(lines) else None
        return (
            closer is not None
            and closer.group(1)[0] == fence.markup[0]
            and len(closer.group(1)) >= len(fence.markup)
        )

    def _ends_at_blank(self, block: Any, lines: list[str], a: int, b: int) -> bool:
        """Whether a blank line after ``block`` finishes it (lists and indented code go on)."""
        if block.type == "fence":
            return self._fence_closed(block, lines, a, b)
        return block.type in ("paragraph_open", "heading_open", "blockquote_open", "table_open", "hr")

    def _fence_cut(self, pieces: list[str], fence: Any, lines: list[str], a: int, b: int) -> list[str]:
        closed = self._fence_closed(fence, lines, a, b)
        content = lines[a + 1 : b - 1 if closed else b]
        chunks = (len(content) - 1) // CODE_CHUNK_LINES if content else 0
        if chunks < 1:
            return pieces
        taken = chunks * CODE_CHUNK_LINES
        opener = lines[a] + "\n"
        body = "".join(line + "\n" for line in content[:taken])
        pieces.append(opener + body + fence.markup + "\n")
        skip = sum(len(line) + 1 for line in lines[: a + 1 + taken])
        self._pending = opener + self._pending[skip:]
        return pieces

    def _soft_cut(self, pieces: list[str], block: Any, lines: list[str], first_line: int = 0) -> list[str]:
        pending = self._pending
        if len(pending) <= self.soft_limit:
            return pieces
        cut = 0
        # List and table cuts need the block to start the pending text (no leading blank lines).
        kind = block.type if block is not None and block.map[0] == first_line else ""
        if kind in ("bullet_list_open", "ordered_list_open"):
            starts = self._item_starts(lines)
            if len(starts) >= 2:
                cut = sum(len(line) + 1 for line in lines[: starts[-1]])
        elif kind == "table_open":
            return pieces  # a table cut in pieces would cost its (large) HTML twice
        if not cut:
            cut = pending.rfind("\n", 0, len(pending) - 1) + 1
        if not cut:
            cut = max(pending.rfind(" "), pending.rfind("\t")) + 1
        if not cut:
            return pieces
        pieces.append(pending[:cut])
        self._pending = pending[cut:]
        self._approximate = True
        return pieces

    def _table_rows(self, complete: str) -> bool:
        if not self._open_table or not complete.startswith(self._scanned) or not self._scanned:
            return False
        new = complete[len(self._scanned) :].split("\n")[:-1]
        return all(line.strip() and "|" in line for line in new)

    @staticmethod
    def _item_starts(lines: list[str]) -> list[int]:
        tokens = _MD.parse("\n".join(lines))
        return [t.map[0] for t in tokens if t.type == "list_item_open" and t.level == 1 and t.map]

    # -- updates --------------------------------------------------------------------------------

    def _commit_html(self, rendered: str) -> list[Update]:
        if self._tail_open:
            self._tail_open = False
            index = len(self.slots) - 1
            if self.slots[index] == rendered:
                return []
            return [self._set(index, rendered)]
        self.slots.append(rendered)
        return [self._count(Update("new", len(self.slots) - 1, rendered))]

    def _tail_update(self) -> list[Update]:
        estimate = int(len(self._pending) * self._tail_inflation)
        if not self._fits(2 * (estimate + self.overhead)):
            return []  # the render would not fit either: skip its cost
        rendered = render_markdown(self._pending) if self._pending.strip() else ""
        self._tail_inflation = max(0.5, len(rendered) / max(len(self._pending), 1))
        shown = self.slots[-1] if self._tail_open else ""
        if rendered == shown:
            return []
        # Room for this update and for the commit the tail will need at the end.
        if not self._fits(2 * self._cost(rendered)):
            return []
        if self._tail_open:
            return [self._set(len(self.slots) - 1, rendered)]
        self.slots.append(rendered)
        self._tail_open = True
        return [self._count(Update("new", len(self.slots) - 1, rendered))]

    def _set(self, index: int, rendered: str) -> Update:
        self.slots[index] = rendered
        return self._count(Update("set", index, rendered))

    def _fits(self, cost: int) -> bool:
        budget = self.ratio * self._in_bytes + self.allowance + self._inflation
        if self._approximate:  # a soft cut makes the final full render mandatory: keep room for it
            cost += sum(len(html.encode()) for html in self.slots) + self.overhead
        return self.sent_bytes + cost <= budget

    def _cost(self, rendered: str) -> int:
        return len(rendered.encode()) + self.overhead

    def _count(self, update: Update) -> Update:
        self.updates += 1
        self.sent_bytes += self._cost(update.html)
        return update
