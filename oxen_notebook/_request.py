"""A request ready to send: the user's record, the JSON body, and where it goes.

Built once by :func:`prepare_request` from a prompt and parameters; the Session fills in
``body["messages"]`` when the exchange starts (the history is read then, under its lock).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._errors import ParameterError
from ._images import image_url
from ._params import check_against_schema, validate_params
from ._records import Message

__all__ = ["PreparedRequest", "prepare_request"]


@dataclass
class PreparedRequest:
    """One chat-completions request. ``history=False`` sends the prompt alone (with the system
    prompt) and keeps it out of the conversation."""

    model: str
    user: Message
    body: dict[str, Any]
    base_url: str
    history: bool = True
    headers: dict[str, str] | None = None


def prepare_request(
    prompt: str,
    *,
    model: str,
    params: dict[str, Any],
    base_url: str,
    images: list[Any] | None = None,
    history: bool = True,
    source: str = "api",
    schema: dict[str, Any] | None = None,
) -> PreparedRequest:
    """Validate ``prompt`` and ``params`` (also against the model's request ``schema``, if any)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ParameterError("prompt is empty: give the text to send.")
    clean = validate_params(params)
    extra_body = clean.pop("extra_body", {})
    headers = clean.pop("extra_headers", None)
    check_against_schema(clean, schema, model)
    urls = [image_url(image, i) for i, image in enumerate(images or [])]
    user = Message(role="user", content=prompt, model=model, params=clean, images=urls, source=source)
    body = {"model": model, "stream": True, "stream_options": {"include_usage": True}, **clean}
    body.update(extra_body)
    return PreparedRequest(model, user, body, base_url, history, headers)
