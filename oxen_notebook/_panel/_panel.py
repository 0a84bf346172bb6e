"""``ChatPanel``: an ipywidgets chat UI on a :class:`~oxen_notebook.Session`.

The panel is a view: it turns clicks into ``Session`` calls and draws what the Session's events
say, so exchanges made by ``%%oxen`` cells, ``session.ask()`` or another panel show up here too.
Replies stream in a background thread, so Stop works at once and other cells run meanwhile; with
``approve="ask"`` that thread also waits there for an Approve or Deny click (``_steps``).

The message box (``_input``) sends its whole text on Enter, and stays enabled while a reply
streams: Send and Enter refuse then, keeping the text.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from .._ask import Ask, check_tools
from .._errors import OxenError, ParameterError
from .._events import EVENTS
from .._records import message_facts
from .._spreadsheet import spreadsheet_csv
from .._turn import Turn, turn_facts
from ._compat import WidgetDisplay
from ._controls import Controls
from ._steps import ApprovalGate
from ._transcript import Transcript, finish_note

if TYPE_CHECKING:
    import os

    import pandas as pd

    from .._events import Event
    from .._session import Session

__all__ = ["ChatPanel"]

_FAILED = "the request failed: see the note in the transcript"
_BUSY_NOTE = "A reply is still streaming: wait for it, or press Stop."
_APPROVAL_NOTE = "A tool call waits for your approval: Approve or Deny it, or press Stop."


class ChatPanel(WidgetDisplay):
    """A chat panel on ``session`` (default: :func:`oxen_notebook.default_session`).

    Type a message and press Enter (or Send); the reply streams in the background. Stop keeps the
    partial reply (``interrupted``). Model, temperature and max tokens apply to this panel's
    requests; the system prompt is the session's. Clear starts a new conversation, Undo removes
    the last exchange, Regenerate resends the last message, Export offers the conversation as CSV
    and JSON downloads and sets :attr:`dataframe`. ``close()`` detaches the panel from the session.
    The panel displays itself as its last expression in a cell; :attr:`widget` is its ``VBox``.

    ``tools``, ``approve`` and ``schema`` go with every request the panel sends, as in
    :meth:`Session.stream`; ``approve="ask"`` shows each call with Approve / Deny buttons and waits
    for a click (Stop denies it and sends nothing more). Tool calls and results show as collapsed
    steps, a parsed reply as a table under its JSON.
    """

    def __init__(
        self,
        session: Session | None = None,
        *,
        height: str = "min(65vh, 640px)",
        tools: list[Any] | None = None,
        approve: Callable[[Any], bool] | str | None = None,
        schema: Any = None,
    ) -> None:
        if approve is not None and not callable(approve) and approve != "ask":
            raise ParameterError(
                f"approve={approve!r} is invalid: give None, 'ask' or a function(call) -> bool."
            )
        check_tools(tools, approve)
        if session is None:
            from .._registry import default_session

            session = default_session()
        self.session: Session = session
        #: Sent with every request this panel sends (``Session.stream``'s ``tools``, ``approve``,
        #: ``schema``); ``approve="ask"`` asks in the panel.
        self.tools: list[Any] | None = list(tools) if tools else None
        self.approve: Callable[[Any], bool] | str | None = approve
        self.schema: Any = schema
        #: The conversation as a DataFrame, as of the last Export.
        self.dataframe: pd.DataFrame | None = None
        self._lock = threading.RLock()
        self._worker: threading.Thread | None = None
        self._reply: Any = None  # the reply this panel sent, while it streams
        self._streaming: Any = None  # any history reply streaming on the session
        self._closed = False
        self._stop_early = False

        self._transcript = Transcript(height)
        self._gate = ApprovalGate(self._transcript, self._lock, self._set_status)
        controls = Controls(session, self._transcript.widget, self.send, self._on_front, self._lock)
        self._controls = controls
        self.widget = controls.widget
        self._model, self._temperature, self._max_tokens = (
            controls.model,
            controls.temperature,
            controls.max_tokens,
        )
        self._system, self._input, self._front = controls.system, controls.input, controls.front
        self._send_button, self._stop_button = controls.send_button, controls.stop_button
        self._clear_button, self._undo_button = controls.clear_button, controls.undo_button
        self._regenerate_button, self._export_button = controls.regenerate_button, controls.export_button
        self._status, self._note, self._links = controls.status, controls.note, controls.links

        self._send_button.on_click(lambda _: self._on_send_click())
        self._stop_button.on_click(lambda _: self.stop())
        self._clear_button.on_click(lambda _: self.clear())
        self._undo_button.on_click(lambda _: self.undo())
        self._regenerate_button.on_click(lambda _: self.regenerate())
        self._export_button.on_click(lambda _: self.export())
        self._transcript.earlier.on_click(lambda _: self._show_all())
        self._system.observe(self._on_system, "value")

        with self._lock:
            for event in EVENTS:
                session.on(event, self._on_event)
            self._transcript.sync(session.messages)
        self._set_status(f"{session.model} · ready")
        if session.busy:
            self._set_busy(True)
        threading.Thread(target=self._load_models, name="oxen-panel-models", daemon=True).start()

    # -- what users (and tests) call --------------------------------------------------------------

    @property
    def streaming(self) -> bool:
        """Whether a reply on this panel's session is streaming."""
        return self._streaming is not None or self._reply is not None or self.session.busy

    def send(self, text: str | None = None) -> bool:
        """Send ``text`` (default: the input box) in the background; False if it was refused."""
        self._input.take_enter()  # Send (or a call) takes over an Enter whose value is not here
        text = self._input.value if text is None else text
        if self._closed:
            return False
        if self._busy():
            self._show_note(_APPROVAL_NOTE if self._gate.pending is not None else _BUSY_NOTE)
            return False  # the text stays in the box
        if not text.strip():
            self._show_note("Type a message first.")
            return False
        self._input.value = ""
        self._apply_system()
        return self._start(text, None)

    def stop(self) -> None:
        """Stop the streaming reply now; its partial text is kept as ``interrupted``. A tool call
        waiting for approval is denied, and the turn sends nothing more."""
        with self._lock:
            reply = self._reply or self._streaming
            # Send turns into Stop at once: a Stop before the request is out stops it when it is.
            self._stop_early = reply is None and self._worker is not None and self._worker.is_alive()
        if reply is not None:
            reply.stop()  # first: the turn is stopped when the denied call returns
        if self._worker is not None and self._worker.is_alive():
            self._gate.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until this panel's request is done; False if ``timeout`` passed first.

        A message that Enter is about to send (see ``_input.ENTER_WAIT``) counts as a request."""
        deadline = None if timeout is None else time.monotonic() + timeout
        enter = self._input.pending
        if enter is not None:
            enter.join(timeout)
            if enter.is_alive():
                return False
        worker = self._worker
        if worker is not None:
            worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            return not worker.is_alive()
        return True

    def clear(self) -> None:
        """Start a new conversation (same system prompt)."""
        self._guarded(self.session.reset)

    def undo(self) -> None:
        """Remove the last exchange from the conversation."""
        self._guarded(self.session.undo)

    def regenerate(self) -> bool:
        """Remove the last exchange and send its message again (with this panel's settings)."""
        users = [m for m in self.session.messages if m.role == "user"]
        if not users:
            self._show_note("Nothing to regenerate yet.")
            return False
        if not self._guarded(self.session.undo):
            return False
        self._apply_system()
        return self._start(users[-1].content, users[-1].images)

    def export(self, path: str | os.PathLike[str] | None = None) -> pd.DataFrame:
        """The conversation as a DataFrame (also :attr:`dataframe`), offered as CSV and JSON
        download links in the panel; ``path`` (``.csv`` or ``.json``) also writes it to a file."""
        frame = self.session.to_dataframe()
        self.dataframe = frame
        csv = spreadsheet_csv(frame)  # text that looks like a formula is made inert
        records = frame.to_json(orient="records", date_format="iso", force_ascii=False)
        if path is not None:
            target = Path(path)
            target.write_text(records if target.suffix.lower() == ".json" else csv, encoding="utf-8")
        stem = f"oxen-chat-{self.session.conversation_id[:8]}"
        links = []
        for kind, mime, data in (("csv", "text/csv", csv), ("json", "application/json", records)):
            encoded = base64.b64encode(data.encode("utf-8")).decode("ascii")
            links.append(
                f'<a class="oxen-export" download="{stem}.{kind}" '
                f'href="data:{mime};charset=utf-8;base64,{encoded}">{kind.upper()}</a>'
            )
        self._links.value = f"{len(frame)} rows: " + " · ".join(links)
        return frame

    def close(self) -> None:
        """Stop listening to the session and remove the panel's widgets."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._input.turn_off()
            self._gate.stop("the panel was closed")
            for event in EVENTS:
                self.session.on(event, self._on_event, remove=True)
            self._transcript.close()
            for child in self._descendants():
                for part in (getattr(child, "layout", None), getattr(child, "style", None)):
                    if isinstance(part, widgets.Widget):
                        part.close()
                child.close()

    # -- the session's events (on whatever thread streams) ------------------------------------------

    def _on_event(self, event: Event) -> None:
        reply = event.reply
        if reply is not None and not reply.request.history:
            return  # one-shot requests are not part of the conversation
        with self._lock:
            if self._closed:
                return
            live = self._transcript.live
            if event.type == "delta":
                if live is not None and live.reply is reply:
                    live.feed(event.delta or "")
            elif event.type == "message":
                message = event.message
                if message is not None and not (live is not None and live.reply.message is message):
                    self._transcript.add(message)
            elif event.type == "start":
                self._streaming = reply
                self._set_busy(True)
                self._set_status(f"{reply.model} · streaming…")
                self._transcript.start(reply)
            elif event.type == "finish":
                self._transcript.end(event.message)
                if self._streaming is reply:
                    self._streaming = None
                if event.message is not None:
                    self._finished_status(event.message)
                if self._reply is None:
                    self._set_busy(False)
            elif event.type == "update" and event.message is not None:
                self._transcript.amend(event.message)  # a parsed table, a schema error
            elif event.type == "history":
                self._transcript.sync(self.session.messages)
                system = self.session.system or ""
                if self._system.value != system and not self.streaming:
                    self._system.value = system

    # -- the background request ---------------------------------------------------------------------

    def _on_send_click(self) -> None:
        # The click can overtake the blur's value update (another widget's message): with nothing
        # here yet, wait for the text the click committed, as for an Enter.
        if not self._input.value.strip() and not self._busy() and not self._closed:
            self._input.arm()
            return
        self.send()

    def _busy(self) -> bool:
        return self.streaming or (self._worker is not None and self._worker.is_alive())

    def _start(self, text: str, images: list[str] | None) -> bool:
        with self._lock:
            if self._busy():
                self._show_note(_BUSY_NOTE)
                return False
            self._show_note("")
            self._set_busy(True)
            self._gate.reset()
            model, params = self._model_choice(), self._params()
            self._stop_early = False
            self._worker = threading.Thread(
                target=self._run, args=(text, model, params, images), name="oxen-panel-stream", daemon=True
            )
            self._worker.start()
            return True

    def _run(self, text: str, model: str, params: dict[str, Any], images: list[str] | None) -> None:
        reply = None
        failed = False
        try:
            reply = self.session.stream_ask(self._ask(text, model, params, images))
            with self._lock:
                self._reply = reply
                if self._stop_early:
                    reply.stop()
            for _ in reply:
                pass
        except OxenError as exc:
            failed = True
            # A request that was sent has its error on its record, shown once in the transcript.
            self._set_status(str(exc) if reply is None else f"{reply.model} · {_FAILED}", error=True)
            if reply is None and not self._input.value:  # refused before sending: nothing was recorded
                self._input.value = text
        except Exception as exc:
            failed = True
            self._set_status(f"{type(exc).__name__}: {exc}", error=True)
        finally:
            with self._lock:
                self._reply = None
                if not self._closed and isinstance(reply, Turn):
                    self._transcript.drop_approvals()
                    for request in reply.replies:  # records gain parsed values or errors after they end
                        if request.message is not None:
                            self._transcript.amend(request.message)
                    if not failed:
                        self._turn_status(reply)
                if self._streaming is None and not self._closed:
                    self._set_busy(False)

    # -- helpers ------------------------------------------------------------------------------------

    def _show_all(self) -> None:
        with self._lock:
            self._transcript.show_all(self.session.messages)

    def _on_system(self, change: dict[str, Any]) -> None:
        if not self.streaming:
            self._apply_system()

    def _apply_system(self) -> None:
        text = self._system.value.strip() or None
        if text != self.session.system:
            self.session.system = text

    def _ask(self, text: str, model: str, params: dict[str, Any], images: list[str] | None) -> Ask:
        """What a send asks: the text, model and parameters, and the panel's ``tools`` /
        ``approve`` / ``schema``."""
        return Ask.make(
            text,
            params=params,
            defaults=self.session.defaults,
            images=images or None,
            model=model,
            schema=self.schema,
            tools=list(self.tools) if self.tools else None,
            approve=self._gate if self.approve == "ask" else self.approve,
            source="panel",
        )

    def _turn_status(self, turn: Any) -> None:
        message = turn.message
        if message is not None and message.error:
            self._set_status(f"{message.model or self.session.model} · {_FAILED}", error=True)
            return
        parts = turn_facts(turn)
        if message is not None and message.finish_reason in ("interrupted", "length"):
            parts.append(finish_note(message.finish_reason))
        elif self._gate.stopped and turn.tool_results and turn.tool_results[-1].denied:
            parts.append("stopped at the approval: the call was denied and nothing more was sent")
        self._set_status(" · ".join(parts))

    def _model_choice(self) -> str:
        return self._controls.model_choice(self.session.model)

    def _params(self) -> dict[str, Any]:
        return self._controls.params(self.session.defaults)

    def _guarded(self, action: Any) -> bool:
        if self._busy():
            self._show_note(_BUSY_NOTE)
            return False
        try:
            action()
        except OxenError as exc:
            self._show_note(str(exc))
            return False
        self._show_note("")
        return True

    def _set_busy(self, busy: bool) -> None:
        self._controls.set_busy(busy)

    def _set_status(self, text: str, error: bool = False) -> None:
        self._controls.set_status(text, error)

    def _finished_status(self, message: Any) -> None:
        if message.error:
            self._set_status(f"{message.model or self.session.model} · {_FAILED}", error=True)
            return
        parts = message_facts(message, self.session.model)
        if message.finish_reason in ("interrupted", "length"):
            parts.append(finish_note(message.finish_reason))
        self._set_status(" · ".join(parts))

    def _show_note(self, text: str) -> None:
        self._controls.show_note(text)

    def _on_front(self, content: dict[str, Any]) -> None:
        """What the front-end sends: it rendered, Enter or Send (the text comes with it), Stop,
        Regenerate or Retry."""
        event = content.get("event")
        if event == "ready":
            with self._lock:
                self._controls.use_front()
        elif event == "send" and isinstance(content.get("text"), str):
            text = content["text"]
            if not self.send(text) and self._busy():  # refused: the text goes back to the box
                self._front.send({"event": "refused", "text": text})
        elif event == "stop":
            self.stop()
        elif event == "regenerate":
            self.regenerate()

    def _load_models(self) -> None:
        try:
            ids = [str(i) for i in self.session.list_models()["id"].tolist()]
        except Exception:  # unreachable, no key, offline: the box takes free entry
            return
        if not self._closed:
            self._controls.set_models(list(dict.fromkeys([*ids, "local", self.session.model])))

    def _descendants(self) -> list[widgets.Widget]:
        found: list[widgets.Widget] = []
        stack: list[widgets.Widget] = [self.widget, self._controls.fallback]  # shown or not
        while stack:
            widget = stack.pop()
            if any(widget is seen for seen in found):
                continue
            found.append(widget)
            stack.extend(getattr(widget, "children", ()))
        return found
