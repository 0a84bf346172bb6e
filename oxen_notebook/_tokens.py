"""Token counts made here, for finished replies whose server sent no usage.

Servers that ignore ``stream_options.include_usage`` (llama-cpp-python's, and Oxen's documented
stream) leave the counts unknown; :func:`fill_usage` counts them instead, and the record says so
(``Message.usage_estimated``).

The count follows OpenAI's chat format (its cookbook's rule for the gpt-4o family): each message
costs :data:`TOKENS_PER_MESSAGE` plus its role, text and name (a name one more), tool calls count
their name and arguments, tool definitions their JSON, and every reply is primed with
:data:`REPLY_PRIMING` tokens. Text is counted with ``o200k_base`` from bpe-openai (bundled,
offline), loaded once on first use (about 0.7 s; ``import oxen_notebook`` does not load it).
Without bpe-openai, or if it fails, a character heuristic stands in: one token per
:data:`CHARS_PER_TOKEN` characters, OpenAI's rule of thumb for English. Both are estimates: other
model families (Llama, Qwen, SmolLM, ...) have other vocabularies and chat templates, and images,
audio and files are not counted.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import warnings
from collections.abc import Callable
from typing import Any

__all__ = [
    "CHARS_PER_TOKEN",
    "ENCODING",
    "REPLY_PRIMING",
    "TOKENS_PER_MESSAGE",
    "count_messages",
    "count_reply",
    "count_text",
    "counter_name",
    "estimate_usage",
    "fill_usage",
]

ENCODING = "o200k_base"
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
CHARS_PER_TOKEN = 4
HEURISTIC = f"chars/{CHARS_PER_TOKEN}"
_PIECE = 100_000  # characters per call: bpe-openai refuses 1,000,000 characters or 200,000 tokens

_log = logging.getLogger("oxen_notebook")
_lock = threading.Lock()
_encoder: tuple[Callable[[str], list[int]] | None, str] | None = None  # (encode, name), once loaded


def _heuristic(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _load() -> tuple[Callable[[str], list[int]] | None, str]:
    """The text encoder (``None``: count characters) and its name, made once per process."""
    global _encoder
    with _lock:
        if _encoder is None:
            try:
                # bpe-openai 0.1 reads its vocabularies with importlib.resources.open_binary,
                # deprecated on Python 3.11 and 3.12: not the user's concern, nor an error under -W error.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    import bpe_openai

                    encoding = bpe_openai.get_encoding(ENCODING)
                _encoder = (encoding.encode_ordinary, ENCODING)
            except Exception as exc:  # ImportError, or a broken install: count characters instead
                _log.info("counting tokens by characters (bpe-openai unavailable: %s)", exc)
                _encoder = (None, HEURISTIC)
        return _encoder


def _pieces(text: str) -> list[str]:
    pieces = []
    while len(text) > _PIECE:
        cut = max(text.rfind(" ", 0, _PIECE), text.rfind("\n", 0, _PIECE))
        cut = cut if cut > _PIECE // 2 else _PIECE
        pieces.append(text[:cut])
        text = text[cut:]
    pieces.append(text)
    return pieces


def counter_name() -> str:
    """What counts the tokens: ``"o200k_base"``, or ``"chars/4"`` without bpe-openai."""
    return _load()[1]


def count_text(text: str) -> int:
    """Tokens in ``text`` (estimated, see the module's docstring)."""
    if not text:
        return 0
    encode, _ = _load()
    if encode is None:
        return _heuristic(text)
    try:
        return sum(len(encode(piece)) for piece in _pieces(text))
    except Exception as exc:
        _log.info("counting %d characters by characters: %s", len(text), exc)
        return _heuristic(text)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: only the text parts are counted
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _calls_text(tool_calls: list[dict[str, Any]] | None) -> str:
    texts = []
    for call in tool_calls or []:
        function = call.get("function") or {}
        texts.append(str(function.get("name") or ""))
        texts.append(str(function.get("arguments") or ""))
    return "".join(texts)


def count_messages(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> int:
    """The prompt tokens of a request's ``messages`` (and ``tools``), reply priming included."""
    total = REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE
        total += count_text(str(message.get("role") or ""))
        total += count_text(_content_text(message.get("content")))
        total += count_text(_calls_text(message.get("tool_calls")))
        if message.get("name"):
            total += TOKENS_PER_NAME + count_text(str(message["name"]))
    if tools:
        total += count_text(json.dumps(tools, separators=(",", ":"), ensure_ascii=False))
    return total


def count_reply(text: str, tool_calls: list[dict[str, Any]] | None = None) -> int:
    """The completion tokens of a reply's text and tool calls."""
    return count_text(text) + count_text(_calls_text(tool_calls))


def estimate_usage(
    messages: list[dict[str, Any]],
    reply_text: str,
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> dict[str, int]:
    """``usage`` as a server would send it, counted here."""
    prompt = count_messages(messages, tools)
    completion = count_reply(reply_text, tool_calls)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def fill_usage(
    usage: dict[str, Any] | None,
    messages: list[dict[str, Any]],
    reply_text: str,
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], bool]:
    """The server's ``usage`` with the counts it lacks counted here, and whether any was.

    Counts the server sent are kept; nothing is counted when it sent both."""
    usage = dict(usage or {})
    missing = [k for k in ("prompt_tokens", "completion_tokens") if usage.get(k) is None]
    if not missing:
        return usage, False
    if "prompt_tokens" in missing:
        usage["prompt_tokens"] = count_messages(messages, tools)
    if "completion_tokens" in missing:
        usage["completion_tokens"] = count_reply(reply_text, tool_calls)
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return usage, True
