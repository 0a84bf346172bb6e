"""Where a streamed reply goes: display outputs (one display id per ``StreamingMarkdown`` slot)
or stdout."""

from __future__ import annotations

import sys
import uuid
from typing import Any

from .._streaming import StreamingMarkdown, Update

__all__ = ["HTMLView", "TextView"]


class HTMLView:
    """Streams a reply into display outputs: one display id per slot of ``StreamingMarkdown``."""

    def __init__(self, metadata: dict[str, Any]) -> None:
        from IPython.display import display, update_display

        self._display = display
        self._update = update_display
        self.metadata = metadata
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

        if self.ids:
            clear_output(wait=True)
        self.ids = [self._new_id()]
        self._display(bundle, raw=True, metadata=self.metadata, display_id=self.ids[0])

    def _apply(self, updates: list[Update]) -> None:
        for update in updates:
            bundle = {"text/html": update.html}
            if update.kind == "new":
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
    """Prints deltas to stdout as they come (terminal IPython, and the ``text`` format)."""

    def __init__(self) -> None:
        self.ended_with_newline = True

    def feed(self, delta: str) -> None:
        sys.stdout.write(delta)
        sys.stdout.flush()
        self.ended_with_newline = delta.endswith("\n")

    def close(self) -> None:
        if not self.ended_with_newline:
            sys.stdout.write("\n")
        sys.stdout.flush()
