"""A request ready to send, and the one function that writes its wire body.

:func:`prepare_request` turns an :class:`~oxen_notebook._ask.Ask` into a frozen
:class:`PreparedRequest` (the user's record, the parameters, where it goes); the messages it sends
are the conversation's, read when the exchange starts, so the body is written then, by
:func:`build_body` from the request and those messages. Every body is written there: the one
posted (streamed or not), the ``json_object`` fallback's, the cache's key, the preview's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ._records import Message

if TYPE_CHECKING:
    from ._ask import Ask

__all__ = ["PreparedRequest", "build_body", "prepare_request"]


@dataclass(frozen=True)
class PreparedRequest:
    """One chat-completions request. ``history=False`` sends the prompt alone (with the system
    prompt) and keeps it out of the conversation. A change makes a new one (:meth:`follow`,
    ``dataclasses.replace``)."""

    model: str
    user: Message
    #: The body's parameters (``temperature``, ``response_format``, ``tools``, ...).
    params: Mapping[str, Any]
    base_url: str
    history: bool = True
    headers: Mapping[str, str] | None = None
    #: Merged into the body last (before the messages): ``extra_body=``.
    extra_body: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: A follow-up within a turn (tool results, a schema repair): the messages that came after the
    #: user's. It adds no user message; a history request sends the history, which holds them.
    follow_up: tuple[dict[str, Any], ...] | None = None
    #: For a schema: the instruction sent with ``response_format`` ``json_object`` instead of
    #: ``json_schema`` to a model that refuses it (``use_fallback``: it is sent so).
    fallback: str | None = None
    use_fallback: bool = False
    #: One request of a history turn that holds the session's turnstile for all its requests.
    in_turn: bool = False
    #: A one-shot request's own system prompt (``None``: the Session's).
    system: str | None = None

    def follow(self, messages: list[dict[str, Any]]) -> PreparedRequest:
        """The next request of this turn, after ``messages`` (appended to what came before)."""
        # tool_choice applies to the first request: kept, "required" would call tools forever.
        params = MappingProxyType({k: v for k, v in self.params.items() if k != "tool_choice"})
        return replace(self, params=params, follow_up=(*(self.follow_up or ()), *messages))


def build_body(
    request: PreparedRequest, messages: list[dict[str, Any]], *, stream: bool = True
) -> dict[str, Any]:
    """The JSON body of ``request`` sending ``messages``: the one place a body is written.

    With ``use_fallback`` the response format is ``json_object`` and the schema's instruction
    joins the system message (or opens the messages); ``stream=False`` asks for one
    ``chat.completion`` body (``stream_options`` is only valid on a streamed request)."""
    body: dict[str, Any] = {
        "model": request.model,
        "stream": True,
        "stream_options": {"include_usage": True},
        **request.params,
    }
    body.update(request.extra_body)
    if request.use_fallback and request.fallback is not None:
        messages = _with_instruction(messages, request.fallback)
        body["response_format"] = {"type": "json_object"}
    body["messages"] = messages
    if not stream:
        body.pop("stream_options", None)
        body["stream"] = False
    return body


def _with_instruction(messages: list[dict[str, Any]], instruction: str) -> list[dict[str, Any]]:
    messages = list(messages)
    if messages and messages[0].get("role") == "system" and isinstance(messages[0].get("content"), str):
        messages[0] = {**messages[0], "content": f"{messages[0]['content']}\n\n{instruction}"}
    else:
        messages.insert(0, {"role": "system", "content": instruction})
    return messages


def prepare_request(ask: Ask, *, model: str, base_url: str, source: str) -> PreparedRequest:
    """The request ``ask`` makes of ``model`` at ``base_url`` (its checks were made with it)."""
    attached = ask.attachments
    user = Message(
        role="user",
        content=ask.prompt,
        model=model,
        params=dict(ask.params),
        images=[a.part["image_url"]["url"] for a in attached if a.kind == "image"],
        attachments=[a.record() for a in attached],
        parts=[a.part for a in attached if a.kind != "image"],
        source=source,
    )
    return PreparedRequest(
        model,
        user,
        ask.params,
        base_url,
        history=ask.history,
        headers=ask.extra_headers,
        extra_body=ask.extra_body,
        fallback=ask.output.instruction() if ask.output is not None else None,
        system=ask.system,
    )
