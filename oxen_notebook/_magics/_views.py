"""Where a streamed reply goes: display outputs (one display id per ``StreamingMarkdown`` slot)
or stdout; a turn's requests in segments with a line per tool call between them; a parsed
object as a table."""

from __future__ import annotations

import json
import re
import sys
import uuid
from typing import Any

from .._math import escape_text
from .._streaming import StreamingMarkdown, Update
from .._style import style_tag
from .._terminal import Printer, for_stream

__all__ = [
    "HTMLView",
    "TextView",
    "TurnLog",
    "TurnView",
    "call_text",
    "footnote",
    "result_line",
    "say",
    "show_stylesheet",
    "strip_fences",
]

_FENCE_RE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+#.-]*)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.M | re.S)


def show_stylesheet() -> None:
    """Display the stylesheet (code colours in both themes, code blocks, tables) as an output of
    its own, before a reply's: its slots are then exactly the rendered Markdown, and the sheet is
    sent once, not with every update. The sheet hides the output it sits in where it can."""
    from IPython.display import display

    display({"text/html": style_tag(), "text/plain": ""}, raw=True, metadata={"oxen": {"stylesheet": True}})


#: JupyterLab's warning colour, with a fallback that reads on light and dark backgrounds.
_WARN = "var(--jp-warn-color1, #b26a00)"


class HTMLView:
    """Streams a reply into display outputs: one display id per slot of ``StreamingMarkdown``,
    after the stylesheet's output (:func:`show_stylesheet`).

    ``shared``: other outputs share the cell (tool lines, what a tool printed), so :meth:`replace`
    rewrites this view's own outputs in place instead of clearing the cell."""

    rich = True

    def __init__(self, metadata: dict[str, Any], *, shared: bool = False) -> None:
        from IPython.display import display, update_display

        self._display = display
        self._update = update_display
        self.metadata = metadata
        self.shared = shared
        # 60 ms between updates leaves room in any second for the final render and the footer.
        self.stream = StreamingMarkdown(interval=0.06)
        self.ids: list[str] = []

    def feed(self, delta: str) -> None:
        self._apply(self.stream.feed(delta))

    def close(self) -> None:
        self._apply(self.stream.close())

    def replace(self, bundle: dict[str, Any]) -> None:
        """Show ``bundle`` instead of everything streamed so far."""
        from IPython.display import clear_output

        if self.shared and self.ids:
            first, *rest = self.ids
            self._update(bundle, raw=True, metadata=self.metadata, display_id=first)
            for display_id in rest:  # emptied, not removed: only clear_output removes, and it clears all
                self._update({"text/html": "", "text/plain": ""}, raw=True, display_id=display_id)
            self.ids = [first]
            return
        if self.ids:
            clear_output(wait=True)
        if "text/html" in bundle:
            show_stylesheet()  # cleared with the rest, or not shown yet
        self.ids = [self._new_id()]
        self._display(bundle, raw=True, metadata=self.metadata, display_id=self.ids[0])

    def _apply(self, updates: list[Update]) -> None:
        for update in updates:
            bundle = {"text/html": update.html}
            if update.kind == "new":
                if not self.ids:
                    show_stylesheet()
                self.ids.append(self._new_id())
                self._display(bundle, raw=True, metadata=self.metadata, display_id=self.ids[-1])
            elif update.kind == "set":
                self._update(bundle, raw=True, metadata=self.metadata, display_id=self.ids[update.slot])
            else:
                self.replace(bundle)

    @staticmethod
    def _new_id() -> str:
        return f"oxen-{uuid.uuid4().hex}"


class TextView:
    """Prints deltas to stdout as they come (terminal IPython, and the ``text`` format); on a
    terminal, control characters are shown, not run (see ``_terminal``)."""

    rich = False

    def __init__(self) -> None:
        self.printer = Printer(sys.stdout)

    def feed(self, delta: str) -> None:
        self.printer.write(delta)

    def close(self) -> None:
        self.printer.end()
        sys.stdout.flush()


def say(text: str) -> None:
    """Print ``text`` (a model's or server's, in part) to stdout; on a terminal, its control
    characters are shown, not run."""
    print(for_stream(sys.stdout, text))


class TurnView:
    """A cell's output: each request's text in a segment of its own (a view made at its first
    delta), with a line per tool call, or a note per repair, between them. The last segment is the
    answer, which ``close()`` finishes and ``replace()`` swaps for a rendered view.

    ``rich``: HTML display outputs (else stdout); ``shared``: other outputs share the cell (see
    :class:`HTMLView`), which is so for a turn, whose tools may print."""

    def __init__(self, metadata: dict[str, Any], *, rich: bool, shared: bool = False) -> None:
        self.metadata = metadata
        self.rich = rich
        self.shared = shared
        self.segment: HTMLView | TextView | None = None
        self.fed = 0  # characters of the current request shown

    def feed(self, delta: str) -> None:
        if self.segment is None:
            self.segment = HTMLView(self.metadata, shared=self.shared) if self.rich else TextView()
        self.segment.feed(delta)
        self.fed += len(delta)

    def catch_up(self, text: str) -> None:
        """Show what of the current request's ``text`` arrived but was not shown (a stop)."""
        if len(text) > self.fed:
            self.feed(text[self.fed :])

    def next_request(self) -> None:
        """The turn sent another request: its text goes below what is shown."""
        self._end_segment()
        self.fed = 0

    def line(self, text: str, metadata: dict[str, Any] | None = None, *, failed: bool = False) -> None:
        """One line below the text so far (a tool call and its result, a repair); ``failed``: a
        call that failed or was denied, in the warning colour with an icon (inline: the line may
        come before any output that brings the stylesheet)."""
        self._end_segment()
        if not self.rich:
            say(text)
            return
        from IPython.display import display

        style = "font-family:monospace;font-size:85%;opacity:0.8"
        if failed:
            style = f"font-family:monospace;font-size:85%;color:{_WARN}"
            text_html = f'<span aria-hidden="true">⚠ </span>{escape_text(text)}'
            div = f'<div class="oxen-tool-failed" style="{style}">{text_html}</div>'
        else:
            div = f'<div style="{style}">{escape_text(text)}</div>'
        display({"text/html": div, "text/plain": text}, raw=True, metadata=metadata or {})

    def close(self) -> None:
        if self.segment is not None:
            self.segment.close()

    def replace(self, bundle: dict[str, Any]) -> None:
        """Show ``bundle`` instead of the current request's text (rich views only)."""
        if self.segment is None:
            self.segment = HTMLView(self.metadata, shared=self.shared)
        assert isinstance(self.segment, HTMLView)
        self.segment.replace(bundle)

    def _end_segment(self) -> None:
        if self.segment is not None:
            self.segment.close()
            self.segment = None


# -- lines and objects ---------------------------------------------------------------------------


def footnote(line: str, *, rich: bool, metadata: dict[str, Any] | None = None) -> None:
    """A cell's last line, small and dimmed (``[line]`` in a terminal): a reply's footer, a note."""
    if not rich:
        say(f"[{line}]")
        return
    from IPython.display import display

    bundle = {
        "text/html": f'<div style="font-size:85%;opacity:0.65">{escape_text(line)}</div>',
        "text/plain": line,
    }
    display(bundle, raw=True, metadata=metadata)


def _short(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def call_text(call: Any, limit: int | None = None) -> str:
    """``get_weather(city="Oslo")``: a tool call as the user reads it (``call.name``,
    ``call.arguments``; the raw arguments when they did not parse)."""
    if getattr(call, "parse_error", None):
        args = str(call.raw_arguments)
    else:
        args = ", ".join(f"{name}={_json(value)}" for name, value in call.arguments.items())
    if limit is not None:
        args = _short(args, limit)
    return f"{call.name}({args})"


def result_line(result: Any) -> str:
    """``→ get_weather(city="Oslo") = {"temp": 4}``, ``… failed: <error>`` or ``… denied``."""
    head = f"→ {call_text(result.call, limit=80)}"
    if result.denied:
        return f"{head} denied"
    if result.error:
        return f"{head} failed: {_short(result.error, 160)}"
    return f"{head} = {_short(result.content, 160)}"


class TurnLog:
    """Draws a turn's progress from the Session's ``start`` events (subscribe it with
    ``session.on("start", log)``): when the turn sends another request, the tool calls answered
    since go into the view, one line each, or, when there were none, the repair note."""

    def __init__(self, turn: Any, view: TurnView) -> None:
        self.turn = turn
        self.view = view
        self.shown = 0  # tool results drawn
        self.repairs = 0
        self._seen: list[Any] = []

    def __call__(self, event: Any) -> None:
        replies = self.turn.replies
        at = next((i for i, reply in enumerate(replies) if reply is event.reply), 0)
        if at == 0 or any(reply is event.reply for reply in self._seen):
            return  # another session user's reply, the turn's first, or one seen (a resend)
        self._seen.append(event.reply)
        self.view.next_request()
        if not self.flush():
            self.repairs += 1
            failed = replies[at - 1].message
            reason = failed.error if failed is not None and failed.error else "the reply did not validate"
            self.view.line(f"↻ {_short(reason, 200)}; asking again")

    def flush(self) -> int:
        """Draw the tool results not drawn yet; return how many."""
        results = self.turn.tool_results[self.shown :]
        for result in results:
            failed = bool(result.error or result.denied)
            self.view.line(result_line(result), {"oxen": {"tool_call_id": result.call.id}}, failed=failed)
        self.shown += len(results)
        return len(results)


def strip_fences(text: str) -> tuple[str, str]:
    """``(language, code)`` of the first fenced block in ``text``, or ``("", text)`` if none."""
    match = _FENCE_RE.search(text)
    if match is None:
        return "", text.strip("\n")
    return match.group(2), match.group(3).rstrip("\n")
