"""The ipywidgets chat panel: ``ChatPanel`` (controls, the background request, the Session's
events) and its transcript (message widgets, the streaming message, the scrolling box)."""

from __future__ import annotations

from ._panel import ChatPanel
from ._transcript import CSS, Transcript

__all__ = ["CSS", "ChatPanel", "Transcript"]
