"""The chat panel's own front-end: an anywidget (``front.js``) and its Python half.

In the panel (``role="panel"``) it is the multi-line message box with one Send/Stop button and a
note next to the box, and it adds Copy / Insert as cell to the transcript's code blocks, Copy to
each message, Regenerate to the last reply and Retry to an error callout. Under a ``%%oxen`` reply
(``role="code"``) it adds Copy / Insert as cell to the code blocks of its own output area.

The module never sees raw model text: it adds controls around HTML that Python sanitized and reads
code with ``textContent``. It sends ``ready`` when it renders; a panel that never hears it keeps
the ipywidgets controls (a frontend without anywidget, or with JavaScript off).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import traitlets

__all__ = ["FRONT_CSS", "Front", "code_tools"]

#: Styles of the controls the module makes (anywidget adds them to the page once).
FRONT_CSS = """
.oxen-front { width: 100%; }
.oxen-front-code { display: none; }
.oxen-compose { display: flex; gap: 6px; align-items: flex-end; width: 100%; }
.oxen-compose .oxen-box { flex: 1 1 auto; min-width: 0; resize: none; box-sizing: border-box;
  font: inherit; font-size: var(--jp-content-font-size1, 14px); line-height: 1.4; padding: 5px 8px;
  border: 1px solid var(--jp-border-color1, #bbb); border-radius: 4px; overflow-y: auto;
  color: var(--jp-content-font-color1, inherit); background: var(--jp-layout-color0, #fff); }
.oxen-compose .oxen-box:focus { outline: 1px solid var(--jp-brand-color1, #1976d2); }
.oxen-action { flex: 0 0 auto; min-width: 64px; height: 30px; border: 0; border-radius: 4px;
  cursor: pointer; color: #fff; background: var(--jp-brand-color1, #1976d2); font: inherit; }
.oxen-action.oxen-stop { background: var(--jp-error-color1, #c62828); }
.oxen-box-note { font-size: 0.85em; color: var(--jp-warn-color1, #b26a00); padding: 2px 2px 0; }
div.oxen-code-tools { display: flex; gap: 4px; justify-content: flex-end; margin: 0.3em 0 -0.2em;
  font-size: 0.8em; }
.oxen-code-actions .oxen-tool-button { font-size: 0.9em; }
.oxen-msg-tools { display: flex; gap: 4px; justify-content: flex-end; font-size: 0.75em; opacity: 0.55; }
.oxen-msg:hover .oxen-msg-tools { opacity: 1; }
.oxen-tool-button { border: 1px solid var(--jp-border-color2, #ccc); border-radius: 3px;
  background: var(--jp-layout-color1, #fff); color: var(--jp-ui-font-color1, #333);
  padding: 1px 7px; cursor: pointer; font: inherit; line-height: 1.5; }
.oxen-tool-button:hover { background: var(--jp-layout-color2, #eee); }
.oxen-retry { margin-left: 0.6em; }
"""


class Front(anywidget.AnyWidget):
    """The panel's front-end widget; ``on_message(content)`` gets what the browser sends:
    ``ready``, ``send`` (with ``text``), ``stop``, ``regenerate``."""

    _esm = Path(__file__).with_name("front.js")
    _css = FRONT_CSS

    role = traitlets.Unicode("panel", help="panel: the message box and more; code: a reply's code").tag(
        sync=True
    )
    busy = traitlets.Bool(False, help="a reply streams: the button is Stop, Enter refuses").tag(sync=True)
    placeholder = traitlets.Unicode("", help="the message box's placeholder").tag(sync=True)
    note = traitlets.Unicode("", help="a note next to the box (plain text)").tag(sync=True)
    anchor = traitlets.Unicode("", help="model id of the widget whose output holds this one").tag(sync=True)

    def __init__(self, on_message: Callable[[dict[str, Any]], None] | None = None, **kwargs: Any) -> None:
        with warnings.catch_warnings():
            # ipywidgets 7's add_traits (which anywidget calls) reads trait metadata the way
            # traitlets 4.1 deprecated: its warning, not ours.
            warnings.filterwarnings("ignore", "Deprecated in traitlets 4.1", DeprecationWarning)
            super().__init__(**kwargs)
        self.ready = False
        self._on_message = on_message
        self.on_msg(self._handle)

    def _handle(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        if content.get("event") == "ready":
            self.ready = True
        if self._on_message is not None:
            self._on_message(content)


def code_tools() -> Front:
    """A hidden widget that adds Copy / Insert as cell to the code blocks of the output area it
    is displayed in (the magic shows one after a reply with code)."""
    front = Front(role="code")
    front.anchor = front.model_id
    return front
