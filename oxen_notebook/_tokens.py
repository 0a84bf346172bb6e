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
model families (Llama, Qwen, SmolLM, ...) have other vocabularies and chat templates.

Attachments are counted by :func:`count_part`, as estimates that err high. An image counts the
most that the providers' published rules give for its size (read from its header): OpenAI's tiles
(85 + 170 per 512-px tile, after fitting 2048 px and a 768-px short side), Anthropic's
pixels / 750 (after fitting 1568 px; at most 1,600), Gemini's 258 per 768-px tile (after fitting
3072 px); OpenAI's small models that
count images apart (gpt-4o-mini's tiles, the 32-px patches of gpt-4.1/gpt-5 mini and nano,
o4-mini) by their own rule. An image whose size is unknown (a URL) counts the largest of those
rules at the largest image they take. A PDF counts :data:`PDF_PAGE_TOKENS` a page (the pages its
bytes declare, else one per :data:`PDF_PAGE_BYTES`); audio :data:`AUDIO_TOKENS_PER_SECOND` a second
(a WAV's length from its header, anything else at :data:`AUDIO_BYTES_PER_SECOND`); video
:data:`VIDEO_TOKENS_PER_SECOND` a second at :data:`VIDEO_BYTES_PER_SECOND`. A URL's PDF, audio or
video counts :data:`URL_PAGES` pages or :data:`URL_SECONDS` seconds: a guess.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import math
import re
import struct
import threading
import warnings
from collections.abc import Callable
from typing import Any

__all__ = [
    "AUDIO_BYTES_PER_SECOND",
    "AUDIO_TOKENS_PER_SECOND",
    "CHARS_PER_TOKEN",
    "ENCODING",
    "PDF_PAGE_BYTES",
    "PDF_PAGE_TOKENS",
    "REPLY_PRIMING",
    "TOKENS_PER_MESSAGE",
    "URL_PAGES",
    "URL_SECONDS",
    "VIDEO_BYTES_PER_SECOND",
    "VIDEO_TOKENS_PER_SECOND",
    "count_messages",
    "count_part",
    "count_reply",
    "count_text",
    "counter_name",
    "estimate_usage",
    "fill_usage",
    "image_size",
    "image_tokens",
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


# -- attachments --------------------------------------------------------------------------------

PDF_PAGE_TOKENS = 1_500  # a dense page's text (~700) and its picture (~800): OpenAI sends both
PDF_PAGE_BYTES = 20_000  # a page, when the file does not say how many it has
AUDIO_TOKENS_PER_SECOND = 32  # Gemini's published rate; OpenAI's audio models count about 10
AUDIO_BYTES_PER_SECOND = 8_000  # 64 kbit/s: MP3, AAC and OGG speech are seldom smaller
VIDEO_TOKENS_PER_SECOND = 300  # Gemini: 258 a frame at one frame a second, and the sound track
VIDEO_BYTES_PER_SECOND = 125_000  # 1 Mbit/s
URL_PAGES = 10
URL_SECONDS = 60
_HEAD_CHARS = 400_000  # base64 characters decoded to find an image's size (a JPEG's EXIF comes first)
_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")
# Models that count images by their own rule: (name piece, rule, numbers).
_IMAGE_RULES = [
    ("gpt-4o-mini", "tiles", (2833, 5667)),
    ("gpt-4.1-nano", "patches", 2.46),
    ("gpt-5-nano", "patches", 2.46),
    ("gpt-4.1-mini", "patches", 1.62),
    ("gpt-5-mini", "patches", 1.62),
    ("o4-mini", "patches", 1.72),
]
_LARGEST = ((768, 2048), (1092, 1092), (2048, 2048))  # the images that count most under some rule


def image_size(data: bytes) -> tuple[int, int] | None:
    """An image's width and height from its first bytes (PNG, GIF, JPEG, WebP, BMP), or None."""
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n"):
            return struct.unpack(">II", data[16:24])
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", data[6:10])
        if data.startswith(b"BM"):
            width, height = struct.unpack("<ii", data[18:26])
            return width, abs(height)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            chunk = data[12:16]
            if chunk == b"VP8X":
                return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
            if chunk == b"VP8L":
                bits = int.from_bytes(data[21:25], "little")
                return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
            if chunk == b"VP8 ":
                width, height = struct.unpack("<HH", data[26:30])
                return width & 0x3FFF, height & 0x3FFF
        if data.startswith(b"\xff\xd8"):
            i = 2
            while i + 9 < len(data):
                if data[i] != 0xFF:
                    return None
                marker = data[i + 1]
                length = struct.unpack(">H", data[i + 2 : i + 4])[0]
                if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a frame header
                    height, width = struct.unpack(">HH", data[i + 5 : i + 9])
                    return width, height
                i += 2 + length
    except struct.error:
        return None
    return None


def _fit(width: float, height: float, limit: float) -> tuple[float, float]:
    scale = min(1.0, limit / max(width, height))
    return width * scale, height * scale


def _openai_tiles(width: int, height: int, base: int = 85, tile: int = 170) -> int:
    w, h = _fit(width, height, 2048)
    if min(w, h) > 768:
        w, h = w * 768 / min(w, h), h * 768 / min(w, h)
    return base + tile * math.ceil(w / 512) * math.ceil(h / 512)


def _patches(width: int, height: int) -> int:
    patches = math.ceil(width / 32) * math.ceil(height / 32)
    if patches > 1536:  # scaled down to fit 1,536 patches of 32 px
        scale = math.sqrt(1536 * 32 * 32 / (width * height))
        patches = min(1536, math.ceil(width * scale / 32) * math.ceil(height * scale / 32))
    return patches


def image_tokens(
    width: int | None, height: int | None, model: str | None = None, detail: str = "auto"
) -> int:
    """The prompt tokens an image of ``width`` x ``height`` pixels is taken to cost (None: its
    size is unknown, and the largest image counts). See the module's docstring."""
    if not width or not height:
        return max(image_tokens(w, h, model, detail) for w, h in _LARGEST)
    name = (model or "").lower()
    for piece, rule, numbers in _IMAGE_RULES:
        if piece in name:
            if rule == "tiles":
                base, tile = numbers  # type: ignore[misc]
                return base if detail == "low" else _openai_tiles(width, height, base, tile)
            return math.ceil(_patches(width, height) * numbers)  # type: ignore[operator]
    anthropic = min(1600, math.ceil(math.prod(_fit(width, height, 1568)) / 750))
    w, h = _fit(width, height, 3072)
    gemini = 258 if max(w, h) <= 384 else 258 * math.ceil(w / 768) * math.ceil(h / 768)
    return max(_openai_tiles(width, height), anthropic, gemini)


def _data(url: str) -> tuple[bytes, int] | None:
    """The first bytes of a base64 ``data:`` URI and the size of the whole; None for a URL."""
    if not url.startswith("data:") or ";base64," not in url[:200]:
        return None
    payload = url[url.index(";base64,") + 8 :]
    size = len(payload) * 3 // 4 - payload.endswith("=") - payload.endswith("==")
    head = payload[:_HEAD_CHARS]
    try:
        return base64.b64decode(head[: len(head) // 4 * 4]), size
    except (binascii.Error, ValueError):
        return b"", size


def _wav_seconds(head: bytes, size: int) -> float | None:
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE" or len(head) < 32:
        return None
    byte_rate = struct.unpack("<I", head[28:32])[0]
    return max(size - 44, 0) / byte_rate if byte_rate else None  # 44: the header


def count_part(part: dict[str, Any], model: str | None = None) -> int:
    """The prompt tokens a content part is taken to cost: a text part its text, an image, a PDF,
    audio or video its estimate (see the module's docstring)."""
    kind = part.get("type")
    if kind == "text":
        return count_text(str(part.get("text") or ""))
    inner = part.get(kind) if isinstance(kind, str) else None
    inner = inner if isinstance(inner, dict) else {}
    url = str(inner.get("url") or inner.get("file_data") or inner.get("file_url") or inner.get("data") or "")
    return _attachment_tokens(str(kind), url, model, str(inner.get("detail") or "auto"))


@functools.lru_cache(maxsize=64)  # history sends the same parts again: the same strings, hashed once
def _attachment_tokens(kind: str, url: str, model: str | None, detail: str) -> int:
    found = _data(url)
    if kind == "image_url":
        size = image_size(found[0]) if found else None
        return image_tokens(*(size or (None, None)), model=model, detail=detail)
    if kind == "file":
        if found is None:
            return URL_PAGES * PDF_PAGE_TOKENS
        size = found[1]
        pages = len(_PAGE.findall(base64.b64decode(url[url.index(",") + 1 :]))) if size < 2**25 else 0
        return max(1, pages or math.ceil(size / PDF_PAGE_BYTES)) * PDF_PAGE_TOKENS
    if kind in ("audio_url", "input_audio"):
        if found is None:
            return URL_SECONDS * AUDIO_TOKENS_PER_SECOND
        seconds = _wav_seconds(*found) or found[1] / AUDIO_BYTES_PER_SECOND
        return math.ceil(seconds * AUDIO_TOKENS_PER_SECOND)
    if kind == "video_url":
        seconds = URL_SECONDS if found is None else found[1] / VIDEO_BYTES_PER_SECOND
        return math.ceil(seconds * VIDEO_TOKENS_PER_SECOND)
    return 0


def _calls_text(tool_calls: list[dict[str, Any]] | None) -> str:
    texts = []
    for call in tool_calls or []:
        function = call.get("function") or {}
        texts.append(str(function.get("name") or ""))
        texts.append(str(function.get("arguments") or ""))
    return "".join(texts)


def count_messages(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, *, model: str | None = None
) -> int:
    """The prompt tokens of a request's ``messages`` (and ``tools``), reply priming included;
    attachments as :func:`count_part` counts them (for ``model``, where its rule differs)."""
    total = REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE
        total += count_text(str(message.get("role") or ""))
        content = message.get("content")
        total += count_text(_content_text(content))
        if isinstance(content, list):
            parts = [p for p in content if isinstance(p, dict) and p.get("type") != "text"]
            total += sum(count_part(p, model) for p in parts)
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
