r"""What reaches a terminal: model and server text with its control characters shown, not run,
and the printer that streams a reply to stdout.

A reply, a model name or a server's error text may hold escape sequences that a terminal would
act on: clear the screen (``ESC [2J``), set the window title (``ESC ]0;…``), write the clipboard
(OSC 52), make a link that hides its address (OSC 8), end a bracketed paste (``ESC [201~``) so that
what follows runs as typed. On a terminal every control character but newline and tab is shown
instead, as ``\x1b`` (C0, DEL and the 8-bit C1 controls alike; a CR before a newline is dropped,
so Windows line ends stay line ends). Piped or redirected output stays byte-exact: a program or a
file reading it gets what the model sent. Peers: rich's ``Text`` strips BEL, BS, VT, FF and CR
but keeps ESC; simonw/llm's ``click.echo`` writes text as it is to a terminal (and strips only CSI
sequences when piped).
"""

from __future__ import annotations

import re
import signal
from typing import Any, TextIO

__all__ = ["Printer", "for_stream", "is_terminal", "visible"]

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """``text`` with every control character but newline and tab written as ``\\xNN``."""
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal (a closed or odd stream is not)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def for_stream(stream: Any, text: str) -> str:
    """``text`` as it may be written to ``stream``: :func:`visible` on a terminal, else unchanged."""
    return visible(text) if is_terminal(stream) else text


class Printer:
    """Writes deltas to ``out`` as they come (flushed: a pipe sees each one) and ends the last line;
    on a terminal, control characters are shown (:func:`visible`), a CR held back until the next
    delta shows whether a newline follows it.

    As a context manager it holds Ctrl-C back while a delta is written and counted, so that
    :meth:`catch_up` after a stop writes exactly what is missing: never a delta twice, or none."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.at_line_start = True
        self.written = 0  # characters of the reply written (as received)
        self._terminal = is_terminal(out)
        self._held = ""  # a CR at the end of the last delta, on a terminal
        self._holding = False
        self._pending = False
        self._previous: Any = None

    def __enter__(self) -> Printer:
        # Only over Python's own handler: an ignored SIGINT (a background job) stays ignored.
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._interrupt)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _interrupt(self, signum: int, frame: Any) -> None:
        if self._holding:
            self._pending = True
            return
        raise KeyboardInterrupt

    def write(self, text: str) -> None:
        if not text:
            return
        self._holding = True
        try:
            self.out.write(self._shown(text))
            self.out.flush()
            self.written += len(text)
            self.at_line_start = text.endswith("\n")
        finally:
            self._holding = False
        if self._pending:
            self._pending = False
            raise KeyboardInterrupt

    def _shown(self, text: str) -> str:
        if not self._terminal:
            return text
        text, self._held = self._held + text, ""
        if text.endswith("\r"):
            text, self._held = text[:-1], "\r"
        return visible(text)

    def catch_up(self, text: str) -> None:
        """Write what of ``text`` arrived but was not written (Ctrl-C came in between)."""
        self.write(text[self.written :])

    def end(self) -> None:
        if self._held:
            self._held = ""
            self.out.write(visible("\r"))
        if not self.at_line_start:
            self.write("\n")
