"""The chat panel's transcript: message widgets, the streaming message, and the scrolling box.

Everything shown here is HTML built in Python: model and user text goes through
``_render.render_markdown`` (sanitized), everything else through ``_math.escape_text``. Tool records
are drawn as collapsed steps (``_steps``); a call waiting for approval is a step too, and becomes
its record's view when the record arrives.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from .._attachments import describe
from .._math import escape_text
from .._records import message_facts
from .._render import render_markdown
from .._streaming import StreamingMarkdown, Update
from .._style import style_tag
from ._compat import HTML_STYLE
from ._steps import Approval, calls_html, parsed_html, step_html

if TYPE_CHECKING:
    from .._records import Message

__all__ = ["CSS", "AppendBox", "LiveMessage", "Transcript", "finish_note", "message_html"]

#: Estimated bytes one widget update costs besides its HTML (the comm envelope, a new widget's
#: state, the children list); it steers ``StreamingMarkdown``'s byte budget.
WIDGET_OVERHEAD = 800

#: The panel's own rules besides the stylesheet: a resizable transcript, the empty-state hint,
#: the system prompt box.
_PANEL_CSS = """
.oxen-panel .oxen-transcript { resize: vertical; min-height: 160px; }
.oxen-panel .oxen-transcript .widget-html-content,
.oxen-panel .oxen-transcript .widget-htmlmath-content { flex: 1 1 auto; min-width: 0; width: 100%; }
.oxen-panel .oxen-empty { padding: 2em 1em; text-align: center; color: var(--jp-ui-font-color2, #666); }
.oxen-panel .oxen-system { margin-left: 0; margin-right: 0; }
.oxen-panel .oxen-system textarea { resize: vertical; min-height: 2.6em; }
.oxen-panel .oxen-callout .oxen-error { color: inherit; }
"""
#: The stylesheet (``_style``: model Markdown, code in both themes, steps, the panel), as the
#: panel's hidden HTML child loads it.
CSS = style_tag().replace("</style>", _PANEL_CSS.lstrip() + "</style>")  # one <style> element

_EMPTY_HINT = (
    '<div class="oxen-empty">Ask anything below: Enter sends, Shift+Enter adds a line. '
    "Replies stream here; code blocks get Copy and Insert as cell.</div>"
)
_ROLE_LABELS = {"user": "you", "assistant": "assistant", "tool": "tool", "system": "system"}


def finish_note(reason: str) -> str:
    """How the panel names a finish reason: ``stopped``, ``cut at max tokens``, or the reason."""
    return {"interrupted": "stopped", "length": "cut at max tokens"}.get(reason, reason)


def _meta(message: Message) -> str:
    parts = []
    if message.role == "assistant":
        parts = message_facts(message)
        if message.finish_reason and message.finish_reason not in ("stop", "error"):
            parts.append(finish_note(message.finish_reason))
        if message.cached:
            parts.append("cached")
    elif message.attachments:
        parts = [f"attached: {describe(message.attachments)}"]
    return escape_text(" · ".join(parts))


def role_html(message: Message) -> str:
    """The label line of a message: role, then model, tokens and seconds for replies."""
    label = escape_text(_ROLE_LABELS.get(message.role, message.role))
    meta = _meta(message)
    meta = f' <span class="oxen-meta">· {meta}</span>' if meta else ""
    return f'<div class="oxen-role">{label}{meta}</div>'


def error_sentence(error: str) -> str:
    """An error's first sentence: what happened, without the terminal advice and request id that
    follow it (the callout's action is the panel's)."""
    head = error.split(" — ", 1)[0].split(" (request id ", 1)[0].strip().rstrip(".")
    return f"{head[:1].upper()}{head[1:]}." if head else "The request failed."


def _panel_action(error: str) -> str:
    if " not found" in error and "model" in error:
        return "Pick a model from the Model list, then Retry."
    return "Retry, or change the settings above first."


def callout_html(error: str) -> str:
    """A failed request as one callout (``_style``'s, as ``_callout`` draws it), not attributed to
    the model: one sentence and one action; the front-end adds the Retry button (``data-retry``)."""
    return (
        '<div class="oxen-callout oxen-callout-error" role="alert" data-retry="1">'
        '<span class="oxen-callout-icon" aria-hidden="true">!</span><div class="oxen-callout-text">'
        f'<span class="oxen-callout-what"><span class="oxen-error">{escape_text(error_sentence(error))}</span></span> '
        f'<span class="oxen-callout-action">{escape_text(_panel_action(error))}</span></div></div>'
    )


def footer_html(message: Message) -> str:
    """The error callout (or tool calls) under a reply; empty when it finished normally."""
    if message.error:
        return callout_html(message.error)
    if message.tool_calls:
        return calls_html(message.tool_calls)
    return ""


def message_html(message: Message) -> str:
    """A whole finished message as one sanitized HTML fragment (a ``tool`` record as a step)."""
    if message.role == "tool":
        return f'<div class="oxen-msg oxen-tool">{step_html(message)}</div>'
    role = escape_text(message.role)
    if message.error and not message.content and message.parsed is None and not message.tool_calls:
        return callout_html(message.error)  # nothing the model said: no assistant message
    body = render_markdown(message.content or "")
    parsed = parsed_html(message.parsed) if message.parsed is not None else ""
    return f'<div class="oxen-msg oxen-{role}">{role_html(message)}{body}{parsed}{footer_html(message)}</div>'


class AppendBox:
    """A VBox that grows by appending, in groups of ``group`` children.

    Appending to a flat ``children`` tuple re-sends every child's id, so a long list would cost
    bytes in proportion to its length on each append; groups bound that to ``group`` ids.
    """

    def __init__(self, layout: widgets.Layout, group: int = 32, **kwargs: Any) -> None:
        self.layout = layout
        self.group = group
        self.box = widgets.VBox(layout=layout, **kwargs)
        self.items: list[widgets.Widget] = []

    def append(self, widget: widgets.Widget) -> None:
        self.items.append(widget)
        groups = self.box.children
        if not groups or len(groups[-1].children) >= self.group:
            self.box.children = (*groups, widgets.VBox([widget], layout=self.layout))
        else:
            last = groups[-1]
            last.children = (*last.children, widget)

    def replace(self, items: Iterable[widgets.Widget]) -> None:
        """Show ``items`` instead; groups whose children are unchanged are kept as they are."""
        items = list(items)
        old_groups = list(self.box.children)
        groups: list[widgets.VBox] = []
        for i in range(0, len(items), self.group):
            chunk = tuple(items[i : i + self.group])
            index = i // self.group
            if index < len(old_groups):
                group = old_groups[index]
                if group.children != chunk:
                    group.children = chunk
            else:
                group = widgets.VBox(chunk, layout=self.layout)
            groups.append(group)
        if tuple(groups) != tuple(old_groups):
            self.box.children = tuple(groups)
        for group in old_groups[len(groups) :]:
            group.close()
        self.items = items

    def close(self) -> None:
        for group in self.box.children:
            group.close()
        self.box.close()


class LiveMessage:
    """The streaming reply: a label, finished blocks sent once, and a live tail.

    ``feed`` (any thread) applies the updates ``StreamingMarkdown`` says are due; a small flusher
    thread shows text that arrived just before a pause; ``finish`` shows the final render.
    """

    def __init__(self, reply: Any, transcript: Transcript) -> None:
        self.reply = reply
        self._html = transcript.html
        self._fed = 0
        self._markdown = StreamingMarkdown(overhead=WIDGET_OVERHEAD, ratio=2.3, allowance=4096)
        self._lock = threading.Lock()
        self._dirty = False
        self._done = threading.Event()
        self._footer = ""  # the footer shown, and whether the parsed table is
        self._parsed = False
        self.header = self._html(
            f'<div class="oxen-role">assistant <span class="oxen-meta">· '
            f"{escape_text(reply.model)} · streaming…</span></div>"
        )
        self.slots = AppendBox(transcript.layout, group=6)
        self.widget = widgets.VBox(
            [self.header, self.slots.box],
            layout=transcript.layout,
            _dom_classes=("oxen-msg", "oxen-assistant"),
        )
        self._flusher = threading.Thread(target=self._flush_loop, name="oxen-panel-flush", daemon=True)
        self._flusher.start()

    def feed(self, delta: str) -> None:
        with self._lock:
            if self._done.is_set():
                return
            self._fed += len(delta)
            self._apply(self._markdown.feed(delta))
            self._dirty = True

    def _flush_loop(self) -> None:
        interval = self._markdown.throttle.interval
        while not self._done.wait(interval):
            with self._lock:
                if self._dirty and not self._done.is_set() and self._markdown.throttle.ready():
                    self._dirty = False
                    self._apply(self._markdown.flush())

    def finish(self, message: Message | None) -> None:
        """Show the final text, with the label's figures and any error."""
        with self._lock:
            self._done.set()
            if message is not None and len(message.content) > self._fed:
                # Text that came with an error in the same read never made it out as a delta.
                self._apply(self._markdown.feed(message.content[self._fed :]))
            self._apply(self._markdown.close())
            if message is not None:
                failed = bool(message.error and not message.content and not message.tool_calls)
                if failed:  # nothing the model said: a callout, not an assistant message
                    self.widget.remove_class("oxen-assistant")
                    self.widget.remove_class("oxen-msg")
                with self.header.hold_sync():
                    self.header.value = "" if failed else role_html(message)
                self._amend(message)
        if self._flusher is not threading.current_thread():
            self._flusher.join(timeout=1.0)

    def amend(self, message: Message) -> None:
        """Show what the record gained after it finished: the parsed table, a schema error."""
        with self._lock:
            self._amend(message)

    def _amend(self, message: Message) -> None:
        if message.parsed is not None and not self._parsed:
            self._parsed = True
            self.slots.append(self._html(parsed_html(message.parsed)))
        footer = footer_html(message)
        if footer and footer != self._footer:
            self._footer = footer
            self.slots.append(self._html(footer))

    def _apply(self, updates: list[Update]) -> None:
        for update in updates:
            if update.kind == "new":
                self.slots.append(self._html(update.html))
            elif update.kind == "set":
                self.slots.items[update.slot].value = update.html
            else:
                old = self.slots.items
                self.slots.replace([self._html(update.html)])
                for widget in old:
                    widget.close()

    @property
    def sent_updates(self) -> int:
        return self._markdown.updates

    def close(self) -> None:
        self._done.set()
        for widget in self.slots.items:
            widget.close()
        self.slots.close()
        self.header.close()
        self.widget.close()


class Transcript:
    """One widget per message in a fixed-height box that keeps the newest message in view.

    The box is a reversed flex column around one inner column: the browser then anchors the
    scroll position to the bottom, so a growing reply stays in view without any frontend code.
    Only the ``recent`` newest messages are drawn at first; a button above them shows the rest.
    """

    def __init__(self, height: str = "min(65vh, 640px)", recent: int | None = 200) -> None:
        self.recent = recent
        # No shrinking: in the fixed-height column, flex items would otherwise be squeezed and clipped.
        self.layout = widgets.Layout(width="100%", flex="0 0 auto")
        self.html_layout = widgets.Layout(width="100%", flex="0 0 auto")
        self.html_style = HTML_STYLE()
        self.messages = AppendBox(self.layout, group=32)
        self.earlier = widgets.Button(icon="angle-up", layout=widgets.Layout(display="none", width="auto"))
        self.hint = widgets.HTML(_EMPTY_HINT, layout=widgets.Layout(width="100%"))
        self.column = widgets.VBox([self.hint, self.earlier, self.messages.box], layout=self.layout)
        self.widget = widgets.Box(
            [self.column],
            layout=widgets.Layout(
                display="flex",
                flex_flow="column-reverse",
                overflow="auto",
                height=height,
                width="100%",
                border="1px solid var(--jp-border-color2, #ddd)",
                padding="4px",
            ),
            _dom_classes=("oxen-transcript",),
        )
        self._by_id: dict[str, widgets.Widget] = {}
        self._closers: dict[str, Any] = {}
        self._lives: dict[str, LiveMessage] = {}  # streamed views, by message id
        self._live: LiveMessage | None = None
        self._approvals: dict[str, Approval] = {}  # calls asked about, by call id, until their record

    def _show_hint(self) -> None:
        display = "none" if self.messages.items else None
        if self.hint.layout.display != display:
            self.hint.layout.display = display

    @staticmethod
    def shows(message: Message) -> bool:
        """The system prompt has its own field; everything else is shown."""
        return message.role != "system"

    def html(self, value: str) -> widgets.HTMLMath:
        """An HTMLMath widget (the frontend typesets the math ``_math`` vetted) sharing the transcript's layout and style (each would cost a widget)."""
        return widgets.HTMLMath(value, layout=self.html_layout, style=self.html_style)

    def _build(self, message: Message) -> widgets.Widget:
        return self.html(message_html(message))

    def add(self, message: Message, widget: widgets.Widget | None = None) -> None:
        """Show ``message`` at the end (or adopt ``widget`` as its view)."""
        if not self.shows(message) or message.message_id in self._by_id:
            return
        approval = self._approvals.get(message.tool_call_id or "") if message.role == "tool" else None
        if approval is not None and approval.answers(message):
            del self._approvals[approval.call.id]
            approval.show(message)
            widget = approval.widget
            self._closers[message.message_id] = approval.close
        if widget is None:
            widget = self._build(message)
            self.messages.append(widget)
            self._show_hint()
        self._by_id[message.message_id] = widget

    def ask(self, call: Any) -> Approval:
        """Show a call waiting for approval (``approve="ask"``) at the end."""
        approval = Approval(call, self)
        stale = self._approvals.pop(call.id, None)
        if stale is not None:
            self._remove(stale)
        self._approvals[call.id] = approval
        self.messages.append(approval.widget)
        self._show_hint()
        return approval

    def drop_approvals(self) -> None:
        """Remove the calls asked about whose record never came (the turn failed first)."""
        approvals, self._approvals = list(self._approvals.values()), {}
        for approval in approvals:
            self._remove(approval)

    def _remove(self, approval: Approval) -> None:
        self.messages.replace([w for w in self.messages.items if w is not approval.widget])
        self._show_hint()
        approval.close()

    def amend(self, message: Message) -> None:
        """Redraw what a finished record gained (its parsed value, a schema error)."""
        live = self._lives.get(message.message_id)
        widget = self._by_id.get(message.message_id)
        if live is not None:
            live.amend(message)
        elif isinstance(widget, (widgets.HTML, widgets.HTMLMath)):
            value = message_html(message)
            if widget.value != value:
                widget.value = value

    def start(self, reply: Any) -> LiveMessage:
        self._live = LiveMessage(reply, self)
        self.messages.append(self._live.widget)
        self._show_hint()
        return self._live

    @property
    def live(self) -> LiveMessage | None:
        return self._live

    def end(self, message: Message | None) -> None:
        live, self._live = self._live, None
        if live is None:
            return
        live.finish(message)
        if message is not None and self.shows(message) and message.message_id not in self._by_id:
            self._by_id[message.message_id] = live.widget
            self._closers[message.message_id] = live.close
            self._lives[message.message_id] = live

    def sync(self, messages: list[Message]) -> None:
        """Show exactly ``messages`` (plus a reply still streaming), reusing existing views."""
        shown = [m for m in messages if self.shows(m)]
        hidden = len(shown) - self.recent if self.recent is not None and len(shown) > self.recent else 0
        shown = shown[hidden:]
        with self.earlier.hold_sync():
            self.earlier.description = f"Show {hidden} earlier messages"
            self.earlier.layout.display = None if hidden else "none"
        keep = {m.message_id for m in shown}
        for message_id in [k for k in self._by_id if k not in keep]:
            widget = self._by_id.pop(message_id)
            self._lives.pop(message_id, None)
            self._closers.pop(message_id, widget.close)()
        items = [self._by_id.get(m.message_id) or self._build(m) for m in shown]
        for message, widget in zip(shown, items, strict=True):
            self._by_id[message.message_id] = widget
        items.extend(approval.widget for approval in self._approvals.values())
        if self._live is not None:
            items.append(self._live.widget)
        self.messages.replace(items)
        self._show_hint()

    def show_all(self, messages: list[Message]) -> None:
        """Draw every message, the earlier ones too."""
        self.recent = None
        self.sync(messages)

    def close(self) -> None:
        if self._live is not None:
            self._live.close()
        for approval in self._approvals.values():
            approval.close()
        self.earlier.close()
        self.hint.close()
        self.column.close()
        for message_id, widget in self._by_id.items():
            self._closers.get(message_id, widget.close)()
        self.messages.close()
        self.widget.close()
        for shared in (self.layout, self.html_layout, self.html_style):
            shared.close()
