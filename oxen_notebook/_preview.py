"""What a request would send, without sending it: ``Session.preview`` and ``%%oxen --dry-run``.

The body is the one the exchange would post (history, system prompt, filled template, tools,
response format); attachments' base64 data is summarized as its type and size, and headers (the
key) are never part of it. ``bytes`` is the size of the JSON httpx would send, the real one, data
included. ``prompt_tokens`` is counted as :mod:`oxen_notebook._tokens` counts (``o200k_base``, the
tokenizer of OpenAI's gpt-4o and gpt-5 families, with the chat format's per-message overhead);
attachments are estimated as ``_tokens.count_part`` says. The cost is the model's published input price times those tokens;
what the reply costs depends on its length, so ``max_cost_usd`` is given only for a ``max_tokens``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from ._pricing import Pricing, cost_of
from ._request import PreparedRequest, build_body
from ._tokens import count_messages, count_text, counter_name

__all__ = ["preview_request", "preview_summary"]

_DATA_URI = re.compile(r"^data:([\w.+/-]+)?(;[\w=-]+)*;base64,")


def _summarize(value: Any) -> Any:
    """``value`` with every base64 data URI replaced by ``<mime, N bytes>``."""
    if isinstance(value, dict):
        return {key: _summarize(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_summarize(item) for item in value]
    if isinstance(value, str) and (match := _DATA_URI.match(value)):
        size = (len(value) - match.end()) * 3 // 4 - value.endswith("=") - value.endswith("==")
        return f"<{match.group(1) or 'data'}, {size:,} bytes>"
    return value


def preview_request(
    request: PreparedRequest, messages: list[dict[str, Any]], pricing: Pricing | None
) -> dict[str, Any]:
    """The preview of ``request`` sending ``messages``: nothing is sent, recorded or cached."""
    body = build_body(request, messages)
    url = f"{request.base_url}/chat/completions"
    size = len(httpx.Request("POST", url, json=body).content)
    tokens = count_messages(messages, body.get("tools"), model=request.model)
    response_format = body.get("response_format")
    if response_format and response_format.get("type") == "json_schema":
        tokens += count_text(json.dumps(response_format, separators=(",", ":")))
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    input_cost = cost_of(tokens, 0, pricing)
    max_cost = cost_of(tokens, int(max_tokens), pricing) if max_tokens else None
    per_1k = pricing.output_cost_per_token * 1000 if pricing and pricing.output_cost_per_token else None
    attachments = [a for m in messages for a in _attachments(m)]
    return {
        "model": request.model,
        "url": url,
        "body": _summarize(body),
        "messages": len(messages),
        "attachments": attachments,
        "bytes": size,
        "prompt_tokens": tokens,
        "token_counter": counter_name(),
        "max_tokens": max_tokens,
        "input_cost_usd": input_cost,
        "max_cost_usd": max_cost,
        "output_cost_per_1k_usd": per_1k,
        "pricing": pricing.method if pricing else None,
        "sent": False,
    }


def _attachments(message: dict[str, Any]) -> list[str]:
    content = message.get("content")
    if not isinstance(content, list):
        return []
    return [
        f"{part.get('type')}: {_summarize(_payload(part))}"
        for part in content
        if isinstance(part, dict) and part.get("type") != "text"
    ]


def _payload(part: dict[str, Any]) -> str:
    inner = part.get(str(part.get("type"))) or {}
    if isinstance(inner, dict):
        return str(inner.get("file_data") or inner.get("url") or inner.get("file_url") or "")
    return str(inner)


def preview_summary(preview: dict[str, Any]) -> str:
    """One line: ``dry run, nothing sent · 3 messages · 12,345 bytes · ~3,012 prompt tokens · …``."""
    parts = [
        f"dry run, nothing sent · {preview['model']}",
        f"{preview['messages']} message{'s' if preview['messages'] != 1 else ''}",
        f"{preview['bytes']:,} bytes",
        f"~{preview['prompt_tokens']:,} prompt tokens ({preview['token_counter']})",
    ]
    if preview["attachments"]:
        parts.append(f"{len(preview['attachments'])} attachments (estimated)")
    if preview["input_cost_usd"] == 0 and not preview["output_cost_per_1k_usd"]:
        parts.append("free")
    elif preview["input_cost_usd"] is not None:
        parts.append(f"input ≈ ${preview['input_cost_usd']:.4f}")
        if preview["max_cost_usd"] is not None:
            parts.append(
                f"at most ${preview['max_cost_usd']:.4f} with {preview['max_tokens']:,} reply tokens"
            )
        elif preview["output_cost_per_1k_usd"] is not None:
            parts.append(f"+ ${preview['output_cost_per_1k_usd']:.4f} per 1,000 reply tokens")
    elif preview["pricing"] == "time":
        parts.append("billed by time: no estimate before it runs")
    else:
        parts.append("no published prices")
    return " · ".join(parts)
