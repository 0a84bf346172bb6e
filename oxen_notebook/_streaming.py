"""A stream of Markdown text deltas to a few display updates.

``StreamingMarkdown`` renders finished top-level blocks once, each into its own slot, and re-renders
only the unfinished tail (at most every ``interval`` seconds, within a byte budget); ``close()`` makes
what is shown exactly ``render_markdown(full_text)``. The magic maps its slots to IPython display
ids; the chat panel maps them to ``ipywidgets.HTML`` children. Sans-I/O: the clock is injectable.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ._math import opens_display
from ._render import CODE_CHUNK_LINES, CONTINUED, parse_markdown, render_markdown

__all__ = ["StreamingMarkdown", "Throttle", "Update"]


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


_CLOSER_RE = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*")
#: An open display block is kept whole in the live tail up to this many times ``soft_limit``.
_MATH_PROTECTED = 8
#: Tokens whose lines never open a display block: closed ones, and code.
_NOT_OPENERS = ("math_block", "fence", "code_block")


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
    full render is then reserved in the budget). A link reference definition, at any depth (block
    quotes, list items), applies to blocks sent before it: it too makes the final full render
    mandatory and reserved. A line that may open a display math block (``$$``, ``\\[``) keeps what
    follows it in the tail until a blank line or its closing line decides (its closing line could
    make the blocks after it one block of math); a closed one is sent at once, whole. After
    ``close()`` the slots' HTML joined is exactly
    ``render_markdown(text)``, in a single slot when that fits in the budget. ``overhead`` is the
    estimated bytes each update costs besides its HTML (message envelope and metadata).

    The budget also grows by ``pace`` bytes per second of streaming: a model that writes 200 bytes a
    second would otherwise earn one re-render of a growing paragraph (its tail and the overhead) only
    every second or three, and the reply would arrive in bursts. Traffic stays linear: in the
    reply's size and in its duration (8 KB/s by default, a few tail updates a second).
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
        pace: int = 8192,
    ) -> None:
        self.throttle = Throttle(interval, clock)
        self.pace = pace
        self._started: float | None = None
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
        self._references = False
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
        if self._started is None:
            self._started = self.throttle.clock()
        self._parts.append(delta)
        self._pending += delta
        self._in_bytes += len(delta.encode())
        return self.flush()

    def flush(self) -> list[Update]:
        """The updates due now: call it on a timer if deltas may pause for long."""
        if self._closed or not self.throttle.ready():
            return []
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
        elif not self._approximate and not self._references and not _defines_references(self._pending):
            # Whole top-level blocks render alone as they do in the document, so skip a second
            # render. A reference definition is the exception: it applies document-wide, also to
            # blocks before it. The committed text was parsed for definitions when it was cut off.
            full = "".join(committed) + last
        else:
            full = render_markdown(text)
        final = committed + ([last] if last else [])
        # Merging into one slot is optional: only when it fits without the inflation credit, and
        # when the update rate has room for it (a reset is two messages: clear, then display).
        spent = self.sent_bytes + self._cost(full)
        fits = spent <= self.ratio * self._in_bytes + self.allowance
        if "".join(final) != full or (len(final) > 1 and fits and self.throttle.ready()):
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
        env: dict[str, Any] = {}
        tokens = parse_markdown(complete, env)
        if env.get("references"):
            # A definition (at any depth) applies to blocks sent already and to blocks rendered
            # alone later: the final full render becomes mandatory.
            self._references = True
        blocks = [t for t in tokens if t.level == 0 and t.nesting >= 0 and t.map]
        lines = complete.split("\n")
        opener = _open_display(tokens, blocks, lines)
        keep = len(blocks) - 1 if opener is None else opener[0]
        if keep >= 1:
            start = blocks[keep].map[0]
            offset = sum(len(line) + 1 for line in lines[:start])
            pieces.append(self._pending[:offset])
            self._pending = self._pending[offset:]
            lines = lines[start:]
            first_line = start
        else:
            first_line = 0
        if opener is not None:
            # Until a blank line or its closing line, what follows may still join the display
            # block: keep all of it in the tail.
            self._open_table = False
            hold = sum(len(line) + 1 for line in lines[: opener[1] - first_line])
            return self._soft_cut(pieces, None, lines, first_line, hold=hold)
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
        if last.type == "math_block":
            # Only a closed display block is one, and no later line changes it: send it now, whole
            # (a soft cut would show its halves as text).
            cut = sum(len(line) + 1 for line in lines[:b])
            pieces.append(self._pending[:cut])
            self._pending = self._pending[cut:]
            return pieces
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
        return block.type in (
            "paragraph_open",
            "heading_open",
            "blockquote_open",
            "table_open",
            "hr",
            "math_block",
        )

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
        # The rest is rendered as a fence of its own: marked as the block's continuation (no header).
        rest = opener if opener.rstrip().endswith(CONTINUED) else f"{lines[a]} {CONTINUED}\n"
        self._pending = rest + self._pending[skip:]
        return pieces

    def _soft_cut(
        self, pieces: list[str], block: Any, lines: list[str], first_line: int = 0, hold: int | None = None
    ) -> list[str]:
        """Cut a long open block at a list item, line or word boundary; ``hold`` is the offset of a
        line that may open a display block: cut before it, not inside what it may take (up to
        ``_MATH_PROTECTED`` times ``soft_limit``, so its pieces are not shown as text until the end)."""
        pending = self._pending
        if len(pending) <= self.soft_limit:
            return pieces
        if hold is None and not lines and opens_display(pending):
            hold = 0
        if hold is not None and len(pending) <= _MATH_PROTECTED * self.soft_limit:
            if not hold:
                return pieces
            pieces.append(pending[:hold])
            self._pending = pending[hold:]
            self._approximate = True
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
        tokens = parse_markdown("\n".join(lines))
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
        if self._started is not None:  # a slow reply still gets a few updates a second
            budget += self.pace * (self.throttle.clock() - self._started)
        if self._approximate or self._references:
            # A soft cut or a reference definition makes the final full render mandatory: keep room.
            cost += sum(len(html.encode()) for html in self.slots) + self.overhead
        return self.sent_bytes + cost <= budget

    def _cost(self, rendered: str) -> int:
        return len(rendered.encode()) + self.overhead

    def _count(self, update: Update) -> Update:
        self.updates += 1
        self.sent_bytes += self._cost(update.html)
        return update


def _open_display(tokens: list[Any], blocks: list[Any], lines: list[str]) -> tuple[int, int] | None:
    """The first line after the last blank one that starts like a display block but is none yet
    (``$$``/``\\[``, not in a closed one, nor in code), as (the index of its top-level block, the
    line): a closing line may still make it and the blocks after it one display block."""
    start = len(lines) - 1
    while start > 0 and lines[start - 1].strip():
        start -= 1
    taken = [t.map for t in tokens if t.type in _NOT_OPENERS and t.map and t.map[1] > start]
    for index in range(start, len(lines) - 1):
        if opens_display(lines[index]) and not any(a <= index < b for a, b in taken):
            owner = max((k for k, t in enumerate(blocks) if t.map[0] <= index), default=0)
            return owner, index
    return None


def _defines_references(text: str) -> bool:
    """Whether ``text`` has a link reference definition anywhere (in block quotes and lists too)."""
    if "]:" not in text:  # a definition's label is followed at once by its colon
        return False
    env: dict[str, Any] = {}
    parse_markdown(text, env)
    return bool(env.get("references"))
