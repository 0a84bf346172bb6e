"""The chat panel's message box: Enter sends the box's whole text, whatever order the front end's
messages come in.

The front end sends the ``submit`` event at once, while the box's value goes as a state update
that ipywidgets throttles (one per widget in flight), so the kernel can see ``submit`` before the
last keystrokes. The box therefore syncs its value only when the text is committed
(``continuous_update=False``: on Enter or blur), and the browser commits it on Enter right after
the key's ``submit`` event. So ``submit`` only arms the box, and the value update that follows
sends it: the whole text, every time. A blur's value update, with no ``submit`` before it, sends
nothing. When Enter changed nothing (the value was already synced, or the box is empty) no update
follows, and the text the kernel has is the box's: it is sent after :data:`ENTER_WAIT` seconds.

The box is never disabled, not even while a reply streams: a disabled box loses the focus, and
the keys typed next would reach the notebook's command mode (``d d`` deletes a cell). The panel
refuses to send instead, and the text stays in the box.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

__all__ = ["ENTER_WAIT", "MessageBox"]

#: Seconds that Enter waits for the box's value before it sends the text the kernel has. A value
#: update normally follows ``submit`` at once; it can trail by a round trip when an earlier update
#: of the box is still in flight. Only an Enter that changed nothing waits this long.
ENTER_WAIT = 0.5


class MessageBox(widgets.Text):
    """A ``Text`` whose Enter calls ``on_enter()`` once the text Enter committed is here.

    ``lock`` is the panel's: an Enter is armed, taken and sent under it."""

    def __init__(self, on_enter: Callable[[], None], lock: threading.RLock, **kwargs: Any) -> None:
        super().__init__(continuous_update=False, **kwargs)
        self._on_enter = on_enter
        self._lock = lock
        self._enter: threading.Timer | None = None  # Enter pressed, its value not yet here
        self._off = False
        self.on_msg(self._on_msg)

    @property
    def pending(self) -> threading.Timer | None:
        """The wait of an Enter whose value has not come yet (join it to wait for the send)."""
        return self._enter

    def set_state(self, sync_data: dict[str, Any]) -> None:
        # Called for each value update from the front end (not for the kernel's own changes,
        # and even when the value did not change).
        super().set_state(sync_data)
        if "value" in sync_data and self.take_enter():  # the value Enter committed: send it
            self._on_enter()
        # otherwise a blur (or Send's click) committed it: nothing to do

    def _on_msg(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        if content.get("event") == "submit":
            self.arm()

    def arm(self) -> None:
        """Send once the text the front end committed arrives (or after :data:`ENTER_WAIT`, when
        nothing is on its way): for an Enter, and for a Send click that overtook the blur's value."""
        with self._lock:
            if self._enter is not None or self._off:
                return  # a second Enter before the first one's value: one message
            timer = threading.Timer(ENTER_WAIT, self._on_wait)
            timer.name, timer.daemon = "oxen-panel-enter", True
            timer.start()  # it waits for the lock before it acts
            self._enter = timer

    def _on_wait(self) -> None:
        if self.take_enter(threading.current_thread()):  # Enter changed nothing: send what is here
            self._on_enter()

    def take_enter(self, timer: threading.Thread | None = None) -> bool:
        """Disarm a pending Enter (only ``timer``, if given); whether there was one."""
        with self._lock:
            enter = self._enter
            if enter is None or (timer is not None and enter is not timer):
                return False
            self._enter = None
        if enter is not threading.current_thread():
            enter.cancel()
        return True

    def turn_off(self) -> None:
        """The panel closes: drop a pending Enter and arm no more."""
        with self._lock:
            self._off = True
        self.take_enter()
