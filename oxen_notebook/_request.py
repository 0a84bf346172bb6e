"""A request ready to send: the user's record, the JSON body, and where it goes.

Built once by :func:`prepare_request` from a prompt and parameters; the Session fills in
``body["messages"]`` when the exchange starts (the history is read then, under its lock).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ._attachments import Attachment, attach, attach_image
from ._errors import ParameterError
from ._params import check_against_schema, validate_params
from ._records import Message

__all__ = ["PreparedRequest", "attachments", "prepare_request", "with_fallback"]


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
    #: A follow-up within a turn (tool results, a schema repair): the messages that came after the
    #: user's. It adds no user message; a history request sends the history, which holds them.
    follow_up: list[dict[str, Any]] | None = None
    #: For a schema: ``{"response_format": {"type": "json_object"}, "instruction": text}``, sent
    #: instead of ``json_schema`` to a model that refuses it (``use_fallback``: known beforehand).
    fallback: dict[str, Any] | None = None
    use_fallback: bool = False
    #: One request of a history turn that holds the session's turnstile for all its requests.
    in_turn: bool = False
    #: A one-shot request's own system prompt (``None``: the Session's).
    system: str | None = None

    def follow(self, messages: list[dict[str, Any]]) -> PreparedRequest:
        """The next request of this turn, after ``messages`` (appended to what came before)."""
        # tool_choice applies to the first request: kept, "required" would call tools forever.
        body = {k: v for k, v in self.body.items() if k not in ("messages", "tool_choice")}
        if self.use_fallback and self.fallback:
            body["response_format"] = self.fallback["response_format"]
        return replace(self, body=body, follow_up=[*(self.follow_up or []), *messages])


def with_fallback(body: dict[str, Any], fallback: dict[str, Any]) -> dict[str, Any]:
    """``body`` with the fallback's response format and its instruction in the system message."""
    messages = list(body.get("messages") or [])
    instruction = fallback["instruction"]
    if messages and messages[0].get("role") == "system" and isinstance(messages[0].get("content"), str):
        messages[0] = {**messages[0], "content": f"{messages[0]['content']}\n\n{instruction}"}
    else:
        messages.insert(0, {"role": "system", "content": instruction})
    return {**body, "response_format": fallback["response_format"], "messages": messages}


def attachments(images: list[Any] | None, files: list[Any] | None) -> list[Attachment]:
    """``images=`` and ``files=`` as attachments (ones made already are taken as they are)."""
    for name, given in (("images", images), ("files", files)):
        if given is not None and (isinstance(given, (str, bytes)) or not isinstance(given, (list, tuple))):
            raise ParameterError(
                f"{name}= takes a list, such as {name}=[{'fig' if name == 'images' else 'path'}]."
            )
    made = [a if isinstance(a, Attachment) else attach_image(a, i) for i, a in enumerate(images or [])]
    return made + [a if isinstance(a, Attachment) else attach(a, i) for i, a in enumerate(files or [])]


def prepare_request(
    prompt: str,
    *,
    model: str,
    params: dict[str, Any],
    base_url: str,
    images: list[Any] | None = None,
    files: list[Any] | None = None,
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
    attached = attachments(images, files)
    user = Message(
        role="user",
        content=prompt,
        model=model,
        params=clean,
        images=[a.part["image_url"]["url"] for a in attached if a.kind == "image"],
        attachments=[a.record() for a in attached],
        parts=[a.part for a in attached if a.kind != "image"],
        source=source,
    )
    body = {"model": model, "stream": True, "stream_options": {"include_usage": True}, **clean}
    body.update(extra_body)
    return PreparedRequest(model, user, body, base_url, history, headers)
