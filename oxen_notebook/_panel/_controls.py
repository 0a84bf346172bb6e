"""The chat panel's controls and their layout: settings, the message box (the front-end's, or
ipywidgets' own until the front-end says it is ready), buttons, the status line and notes.

Rows wrap, so nothing is clipped in a narrow panel (600 px): the settings row puts the slider on
a line of its own before it would squeeze it to its handle.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from .._math import escape_text
from ._compat import tooltip
from ._front import Front
from ._input import MessageBox
from ._transcript import CSS

__all__ = ["FALLBACK_NOTE", "Controls", "note_html"]

#: The one line the ipywidgets controls show: the front-end module did not load (until it does).
FALLBACK_NOTE = "Plain controls: the panel's front-end did not load (one-line box, no code buttons)."


def note_html(text: str, kind: str = "note") -> str:
    return f'<span class="oxen-{kind}">{escape_text(text)}</span>' if text else ""


def _wrap_row(children: list[widgets.Widget]) -> widgets.HBox:
    return widgets.HBox(
        children, layout=widgets.Layout(flex_flow="row wrap", align_items="center", width="100%")
    )


class Controls:
    """Every control of one panel and the ``VBox`` that holds them around ``transcript``.

    ``send(text)`` and ``on_front(content)`` are the panel's: Enter in either box, and what the
    front-end sends."""

    def __init__(
        self,
        session: Any,
        transcript: widgets.Widget,
        send: Callable[[], None],
        on_front: Callable[[dict[str, Any]], None],
        lock: threading.RLock,
    ) -> None:
        defaults = session.defaults
        self.temperature_default = float(defaults.get("temperature", 1.0))
        self.max_tokens_default = int(defaults.get("max_tokens") or 0)
        self.note_text = ""
        self.models_known = False  # the picker holds the server's list (not just the session's model)
        self.model = widgets.Combobox(
            value=session.model,
            options=("local", session.model) if session.model != "local" else ("local",),
            description="Model",
            ensure_option=False,
            layout=widgets.Layout(width="auto", flex="1 1 220px", min_width="200px"),
        )
        self.temperature = widgets.FloatSlider(
            value=self.temperature_default, min=0.0, max=2.0, step=0.05, description="Temperature",
            readout_format=".2f", style={"description_width": "initial"},
            layout=widgets.Layout(width="auto", flex="1 1 240px", min_width="240px"),
        )  # fmt: skip
        self.max_tokens = widgets.BoundedIntText(
            value=self.max_tokens_default, min=0, max=1_000_000, description="Max tokens",
            style={"description_width": "initial"}, layout=widgets.Layout(width="170px"),
            **tooltip(widgets.BoundedIntText, "0: the model's default"),
        )  # fmt: skip
        self.system = widgets.Textarea(
            value=session.system or "",
            placeholder="System prompt (optional)",
            continuous_update=False,
            rows=2,
            layout=widgets.Layout(width="100%"),
        )
        self.system.add_class("oxen-system")
        self.input = MessageBox(
            send,
            lock,
            placeholder="Message — Enter sends",
            layout=widgets.Layout(width="auto", flex="1 1 auto"),
        )
        self.front = Front(
            on_front,
            placeholder="Message — Enter sends, Shift+Enter adds a line",
            layout=widgets.Layout(display="none", width="100%"),
        )
        self.send_button = widgets.Button(description="Send", button_style="primary", icon="paper-plane")
        self.stop_button = widgets.Button(
            description="Stop", button_style="danger", icon="stop", layout=widgets.Layout(display="none")
        )
        compact = widgets.Layout(width="auto")
        self.clear_button = widgets.Button(
            description="Clear", icon="file", tooltip="New conversation", layout=compact
        )
        self.undo_button = widgets.Button(
            description="Undo", icon="undo", tooltip="Remove the last exchange", layout=compact
        )
        self.regenerate_button = widgets.Button(
            description="Regenerate", icon="refresh", tooltip="Resend the last message", layout=compact
        )
        self.export_button = widgets.Button(
            description="Export", icon="download", tooltip="CSV / JSON", layout=compact
        )
        for b in (self.clear_button, self.undo_button, self.regenerate_button, self.export_button):
            b.add_class("oxen-compact")
        self.status = widgets.HTML(layout=widgets.Layout(width="auto"))
        self.status.add_class("oxen-statusline")
        self.note = widgets.HTML(layout=widgets.Layout(width="auto"))
        self.links = widgets.HTML(layout=widgets.Layout(width="auto", flex="0 0 auto"))
        fallback_line = widgets.HTML(note_html(FALLBACK_NOTE, "status"), layout=widgets.Layout(width="100%"))
        self.fallback = widgets.VBox(
            [widgets.HBox([self.input, self.send_button, self.stop_button], layout=widgets.Layout(width="100%")),
             fallback_line],
            layout=widgets.Layout(width="100%"),
        )  # fmt: skip
        self.widget = widgets.VBox(
            [
                widgets.HTML(CSS, layout=widgets.Layout(display="none")),
                _wrap_row([self.model, self.temperature, self.max_tokens]),
                self.system,
                transcript,
                self.front,
                self.fallback,
                _wrap_row(
                    [
                        self.clear_button,
                        self.undo_button,
                        self.regenerate_button,
                        self.export_button,
                        self.links,
                    ]
                ),
                self.status,
                self.note,
            ],
            layout=widgets.Layout(width="100%"),
        )
        self.widget.add_class("oxen-panel")
        self.front.anchor = self.widget.model_id
        self.model.observe(lambda _: self.check_model(), "value")

    def use_front(self) -> None:
        """The front-end rendered: its box and button replace ipywidgets' ones (taken out of the
        page, not just hidden, so that no second Send or Stop is there)."""
        with self.widget.hold_sync():
            self.front.layout.display = None
            self.widget.children = tuple(c for c in self.widget.children if c is not self.fallback)
            self.front.note, self.note.value = self.note_text, ""

    def set_busy(self, busy: bool) -> None:
        # The message boxes and Send stay enabled (a disabled box loses the focus): they refuse.
        for button in (self.clear_button, self.undo_button, self.regenerate_button):
            button.disabled = busy
        self.stop_button.disabled = not busy
        self.stop_button.layout.display = None if busy else "none"
        if self.front.busy != busy:
            self.front.busy = busy
            self.show_note("")  # a note about the old state goes with it

    def show_note(self, text: str) -> None:
        """A note next to the message box (under the buttons with ipywidgets' controls)."""
        self.note_text = text
        if self.front.ready:
            self.front.note = text
        else:
            self.note.value = note_html(text)

    def set_status(self, text: str, error: bool = False) -> None:
        self.status.value = note_html(text, "error" if error else "status")

    def check_model(self) -> None:
        """A typed id not in the server's list is allowed (lists lag), with a note."""
        model = self.model.value.strip()
        if self.models_known and model and model not in self.model.options:
            self.show_note(f"{model} is not in the server's model list: it will be sent as typed.")
        elif "model list" in self.note_text:
            self.show_note("")

    def set_models(self, ids: list[str]) -> None:
        self.model.options = tuple(ids)
        self.models_known = True
        self.check_model()

    def model_choice(self, default: str) -> str:
        return self.model.value.strip() or default

    def params(self, session_defaults: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if "temperature" in session_defaults or self.temperature.value != self.temperature_default:
            params["temperature"] = round(float(self.temperature.value), 4)
        if self.max_tokens.value > 0 and self.max_tokens.value != self.max_tokens_default:
            params["max_tokens"] = int(self.max_tokens.value)
        return params
