"""Tool steps in the chat panel: calls and their results as collapsed steps, the Approve / Deny
step of ``approve="ask"`` (:class:`ApprovalGate`), and a parsed object as a table.

Tool names, arguments and results come from the model or from tools, so every piece of HTML here
is built with ``_math.escape_text``: HTML-escaped, with no ``$`` or ``\\`` left for the notebook's
math typesetter to read (no Markdown, no sanitizer: nothing here needs markup of its own).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from .._math import escape_text

if TYPE_CHECKING:
    from .._records import Message
    from ._transcript import Transcript

__all__ = [
    "DENIED",
    "Approval",
    "ApprovalGate",
    "call_text",
    "calls_html",
    "parsed_html",
    "step_html",
]

#: What a denied call is answered (``_tools.DENIED``; that module is not loaded before tools are).
DENIED = "denied by the user"
_ARGUMENTS_LIMIT = 120
_SUMMARY_LIMIT = 160
_CELL_LIMIT = 200
_ROWS_LIMIT = 50


def _short(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def call_text(name: str | None, arguments: Any, limit: int | None = _ARGUMENTS_LIMIT) -> str:
    """``get_weather(city="Oslo")``: a call as the user reads it. ``arguments`` is a dict, or the
    raw text the model sent (shown as it is when it is not a JSON object)."""
    if isinstance(arguments, str):
        try:
            parsed = json.loads(arguments) if arguments.strip() else {}
        except (ValueError, RecursionError):  # not JSON, or nested past Python's reader
            parsed = None
        arguments = parsed if isinstance(parsed, dict) else arguments
    if isinstance(arguments, dict):
        args = ", ".join(f"{key}={_json(value)}" for key, value in arguments.items())
    else:
        args = str(arguments or "")
    if limit is not None:
        args = _short(args, limit)
    return f"{name or '?'}({args})"


def _tool_call_text(call: Any) -> str:
    """A :class:`~oxen_notebook._toolbox.ToolCall` (what ``approve`` is asked about)."""
    arguments = call.raw_arguments if getattr(call, "parse_error", None) else call.arguments
    return call_text(call.name, arguments)


def calls_html(tool_calls: list[dict[str, Any]]) -> str:
    """The line under a reply that called tools: ``calls get_weather(city="Oslo"), …``."""
    calls = [
        call_text((c.get("function") or {}).get("name"), (c.get("function") or {}).get("arguments") or "")
        for c in tool_calls
    ]
    return f'<div class="oxen-note oxen-calls">calls {escape_text(", ".join(calls))}</div>'


def _pretty(content: str) -> str:
    try:
        value = json.loads(content)
    except (ValueError, RecursionError):
        return content
    if isinstance(value, (dict, list)):
        return json.dumps(value, indent=2, ensure_ascii=False)
    return content


def step_html(message: Message) -> str:
    """A ``tool`` record as a collapsed step: the call and how it went in the summary, the result
    (the text the model got back) inside."""
    head = f"→ {call_text(message.tool_name, message.tool_arguments or {})}"
    kind = "ok"
    if message.error == DENIED:
        head, kind = f"{head} · denied", "denied"
    elif message.error:
        head, kind = f"{head} · failed: {_short(message.error, _SUMMARY_LIMIT)}", "failed"
    elif message.duration_s is not None:
        head = f"{head} · {message.duration_s:.2f} s"
    body = escape_text(_pretty(message.content or ""))
    return (
        f'<div class="oxen-step oxen-step-{kind}"><details><summary>{escape_text(head)}</summary>'
        f'<pre class="oxen-step-result">{body}</pre></details></div>'
    )


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else _json(value)
    return escape_text(_short(text, _CELL_LIMIT))


def parsed_html(value: Any) -> str:
    """A reply's parsed object (``schema=``; the record's JSON-able ``parsed``) as a compact table:
    field / value rows for an object, one row per item for a list of objects."""
    if isinstance(value, dict):
        rows = "".join(f"<tr><th>{_cell(k)}</th><td>{_cell(v)}</td></tr>" for k, v in value.items())
        table = f"<tbody>{rows}</tbody>"
    elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        keys = list(dict.fromkeys(key for item in value for key in item))
        head = "".join(f"<th>{_cell(k)}</th>" for k in keys)
        rows = "".join(
            "<tr>" + "".join(f"<td>{_cell(item.get(k, ''))}</td>" for k in keys) + "</tr>"
            for item in value[:_ROWS_LIMIT]
        )
        more = len(value) - _ROWS_LIMIT
        if more > 0:
            rows += f'<tr><td colspan="{len(keys)}">… {more} more</td></tr>'
        table = f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody>"
    elif isinstance(value, list):
        table = "<tbody>" + "".join(f"<tr><td>{_cell(v)}</td></tr>" for v in value[:_ROWS_LIMIT]) + "</tbody>"
    else:
        table = f"<tbody><tr><td>{_cell(value)}</td></tr></tbody>"
    return f'<div class="oxen-parsed"><div class="oxen-role">parsed</div><table>{table}</table></div>'


# -- approve="ask" ---------------------------------------------------------------------------------


class Approval:
    """One call waiting for the user: the call, and Approve / Deny buttons. Once decided, the
    buttons go; when the call's ``tool`` record arrives, the step shows it (:meth:`show`)."""

    def __init__(self, call: Any, transcript: Transcript) -> None:
        self.call = call
        self.verdict = False
        self.decided = threading.Event()
        self._lock = threading.Lock()
        text = escape_text(_tool_call_text(call))
        self.label = transcript.html(
            f'<div class="oxen-role">tool call · waiting for your approval</div>'
            f'<div class="oxen-step-call">→ {text}</div>'
        )
        self.approve_button = widgets.Button(description="Approve", button_style="success", icon="check")
        self.deny_button = widgets.Button(description="Deny", button_style="warning", icon="ban")
        self.buttons = widgets.HBox([self.approve_button, self.deny_button])
        self.widget = widgets.VBox(
            [self.label, self.buttons], layout=transcript.layout, _dom_classes=("oxen-msg", "oxen-approval")
        )
        self.approve_button.on_click(lambda _: self.decide(True))
        self.deny_button.on_click(lambda _: self.decide(False))

    def decide(self, verdict: bool, why: str = "") -> bool:
        """Approve or deny (once; later clicks change nothing); whether this call decided it."""
        with self._lock:
            if self.decided.is_set():
                return False
            self.verdict = verdict
            self.decided.set()
        said = "approved" if verdict else f"denied{f' ({why})' if why else ''}"
        self.label.value = (
            f'<div class="oxen-step-call">→ {escape_text(_tool_call_text(self.call))} · {said}</div>'
        )
        self.widget.children = (self.label,)
        for button in (self.approve_button, self.deny_button):
            button.close()
        self.buttons.close()
        return True

    def answers(self, message: Message) -> bool:
        """Is ``message`` this call's record? (Ids repeat across turns on some servers.)"""
        return (
            self.decided.is_set()
            and message.tool_call_id == self.call.id
            and message.tool_name == self.call.name
        )

    def show(self, message: Message) -> None:
        """The call's ``tool`` record arrived: show it as the step this approval becomes."""
        with self.widget.hold_sync():
            self.label.value = step_html(message)
            self.widget.remove_class("oxen-approval").add_class("oxen-tool")

    def close(self) -> None:
        for widget in (self.approve_button, self.deny_button, self.buttons, self.label, self.widget):
            widget.close()


class ApprovalGate:
    """``approve="ask"``: the panel's ``approve`` callable. Called in the thread running the turn,
    it shows the call with Approve / Deny in the transcript and blocks until one is clicked, or
    until :meth:`stop` denies it (and every call asked after it, until :meth:`reset`)."""

    def __init__(self, transcript: Transcript, lock: threading.RLock, status: Callable[[str], None]) -> None:
        self._transcript = transcript
        self._lock = lock  # the panel's: the transcript changes under it
        self._status = status
        self._stopped = threading.Event()
        self.pending: Approval | None = None

    def __call__(self, call: Any) -> bool:
        with self._lock:
            if self._stopped.is_set():
                return False
            approval = self.pending = self._transcript.ask(call)
            self._status(f"{_tool_call_text(call)}: Approve or Deny it")
        approval.decided.wait()
        with self._lock:
            if self.pending is approval:
                self.pending = None
        return approval.verdict

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def stop(self, why: str = "stopped") -> bool:
        """Deny the call waiting (if any) and every call asked from now on; whether one waited."""
        with self._lock:  # so a call being asked now either sees the flag or is the one denied
            self._stopped.set()
            approval = self.pending
        return approval is not None and approval.decide(False, why)

    def reset(self) -> None:
        """A new request: ask again."""
        self._stopped.clear()
