"""Images as ``image_url`` content parts: URLs as they are, files and bytes as data URIs."""

from __future__ import annotations

import base64
import io
import mimetypes
import os
from typing import Any

from ._errors import ParameterError

__all__ = ["image_url", "user_content"]

_SIGNATURES = [
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
]


def _sniff(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for signature, mime in _SIGNATURES:
        if data.startswith(signature):
            return mime
    return None


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image_url(image: Any, index: int = 0) -> str:
    """An https URL, data URI, file path, bytes, or an object with ``save()`` (PIL) -> a URL."""
    where = f"images[{index}]"
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        mime = _sniff(data)
        if mime is None:
            raise ParameterError(f"{where}: bytes are not a PNG, JPEG, GIF, WebP or BMP image.")
        return _data_uri(data, mime)
    if isinstance(image, str) and image.startswith(("https://", "http://", "data:image/")):
        return image
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise ParameterError(f"{where}: no such file {path!r}; give a path, URL or bytes.") from None
        except OSError as exc:
            raise ParameterError(f"{where}: cannot read {path!r}: {exc.strerror}.") from None
        mime = _sniff(data) or mimetypes.guess_type(path)[0]
        if not mime or not mime.startswith("image/"):
            raise ParameterError(f"{where}: {path!r} is not an image file.")
        return _data_uri(data, mime)
    if hasattr(image, "save"):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return _data_uri(buffer.getvalue(), "image/png")
    raise ParameterError(
        f"{where}: expected a URL, a file path, bytes or a PIL image, got {type(image).__name__}."
    )


def user_content(text: str, images: list[str]) -> str | list[dict[str, Any]]:
    """The ``content`` of a user message: plain text, or text plus ``image_url`` parts."""
    if not images:
        return text
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    parts.extend({"type": "image_url", "image_url": {"url": url}} for url in images)
    return parts
