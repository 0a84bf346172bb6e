"""Attachments as chat content parts: PDFs, images, audio and video, typed by their content.

:func:`attach` turns what a user hands over (a path, an ``https://`` URL, a ``data:`` URI, bytes, a
binary file object; for images also a PIL image, a matplotlib figure or axes, or a numpy array) into
an :class:`Attachment`: the content part to send, and a record without the bytes for the history.

The type is read from the content, never from the name: a PNG named ``report.pdf`` goes as an image,
and a text file named ``.pdf`` is refused before anything is sent. URLs are not fetched: their type
comes from the path's extension. Sizes are checked before anything is base64-encoded, and a path's
size comes from ``os.stat``, so a 2 GB file is refused after reading its first 4 KB.
numpy, PIL and matplotlib are never imported at module level: they are recognised by their methods.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import posixpath
import stat
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, unquote_to_bytes, urlsplit

from ._errors import ParameterError
from ._filetypes import ALIASES, EXTENSIONS, HEAD, REFUSED, TYPES, formats, sniff

__all__ = [
    "KINDS",
    "LIMITS",
    "Attachment",
    "attach",
    "attach_image",
    "describe",
    "image_url",
    "user_content",
]

#: What an attachment can be; ``file`` is a PDF (the only document type the API takes).
KINDS = ("image", "file", "audio", "video")
_MB = 2**20
#: The largest attachment of each kind, in bytes (before base64). Oxen documents 24 MB for PDFs
#: and 20 MB for audio and video; for images it names none, so they get 20 MB too (OpenAI's and
#: Gemini's inline limit): a larger data URI would be resent with every later turn.
LIMITS = {"image": 20 * _MB, "file": 24 * _MB, "audio": 20 * _MB, "video": 20 * _MB}

_SUPPORTED = f"PDF; {formats('image')} images; {formats('audio')} audio; {formats('video')} video"
_IMAGES = f"a {formats('image')} image"
_PLURAL = {"file": "PDFs", "image": "images", "audio": "audio files", "video": "videos"}
_SHRINK = {
    "file": "split or compress it",
    "image": "resize it, or save it as JPEG",
    "audio": "trim it, or compress it as MP3",
    "video": "trim it, or lower its resolution",
}


# -- the attachment ---------------------------------------------------------------------------
def _size(n: int) -> str:
    """Sizes in binary units (KB = 1024 bytes), the units of the API's 20 MB and 24 MB limits."""
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= scale:
            value = n / scale
            return (f"{value:.0f}" if value >= 10 else f"{value:.1f}".removesuffix(".0")) + f" {unit}"
    return f"{n} B"


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _part(kind: str, mime: str, payload: str, name: str | None, is_url: bool) -> dict[str, Any]:
    if kind == "file":
        if is_url:
            return {"type": "file", "file": {"file_url": payload}}
        filename = name if name and name.lower().endswith(".pdf") else f"{name or 'document'}.pdf"
        return {"type": "file", "file": {"filename": filename, "file_data": payload}}
    key = f"{kind}_url"
    return {"type": key, key: {"url": payload}}


@dataclass(frozen=True)
class Attachment:
    """One attached image, PDF, audio clip or video, ready to send.

    ``mime`` is read from the content (from the extension for a URL); ``size`` and ``sha256`` are
    those of the bytes (None for a URL); ``url`` is the URL when one was given (never a data URI);
    ``part`` is the content part to send, with the data (left out of ``repr``)."""

    kind: str
    mime: str
    name: str | None
    size: int | None
    sha256: str | None
    url: str | None
    part: dict[str, Any] = field(repr=False, compare=False)

    def record(self) -> dict[str, Any]:
        """What a message's record keeps: kind, type, name, size, sha256 and URL, never the bytes."""
        return {
            "kind": self.kind,
            "type": self.mime,
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "url": self.url,
        }


def _from_data(data: bytes, mime: str, name: str | None) -> Attachment:
    kind = TYPES[mime][0]
    part = _part(kind, mime, _data_uri(data, mime), name, False)
    return Attachment(kind, mime, name, len(data), hashlib.sha256(data).hexdigest(), None, part)


# -- errors -----------------------------------------------------------------------------------
def _quote(text: str, limit: int = 120) -> str:
    quoted = repr(text)
    return quoted if len(quoted) <= limit else quoted[: limit - 2] + "…'"


def _what(mime: str | None, head: bytes) -> tuple[str, str]:
    if mime in REFUSED:
        return REFUSED[mime]
    if mime in TYPES:
        kind, fmt = TYPES[mime]
        return ("a PDF" if kind == "file" else f"{fmt} {kind}"), "pass it in files=[...]"
    start = head[:8].hex(" ")
    return f"of a type I cannot tell (it starts {start})", "convert it to one of these"


def _check_type(mime: str | None, where: str, subject: str, images_only: bool, head: bytes = b"") -> str:
    """The kind of ``mime``; a ParameterError when ``where`` does not take it."""
    kind = TYPES[mime][0] if mime in TYPES else None
    if kind == "image" or (kind is not None and not images_only):
        return kind
    if mime == "application/x-empty":
        verb = "are" if subject == "the bytes" else "is"
        raise ParameterError(f"{where}: {subject} {verb} empty (0 bytes): give the file's content.")
    what, advice = _what(mime, head)
    if images_only:  # the texts of images=[...] errors since the first release, plus what it is
        message = (
            f"{where}: bytes are not {_IMAGES}"
            if subject == "the bytes"
            else f"{where}: {subject} is not an image file"
        )
        raise ParameterError(message + (f" (it is {what}: {advice})." if mime is not None else "."))
    verb = "are" if subject == "the bytes" else "is"
    raise ParameterError(
        f"{where}: {subject} {verb} {what}, not a file the API takes ({_SUPPORTED}): {advice}."
    )


def _too_big(where: str, subject: str, kind: str, size: int | None) -> ParameterError:
    limit = LIMITS[kind]
    actual = f"{_size(size)} ({size:,} bytes)" if size is not None else f"more than {_size(limit)}"
    verb = "are" if subject == "the bytes" else "is"
    return ParameterError(
        f"{where}: {subject} {verb} {actual}; the API takes {_PLURAL[kind]} up to {_size(limit)}: {_SHRINK[kind]}."
    )


# -- sources ----------------------------------------------------------------------------------
def _read_up_to(f: Any, n: int) -> bytes | str:
    chunks: list[Any] = []
    while n > 0:
        chunk = f.read(n)
        if not chunk:
            break
        if isinstance(chunk, str):
            return chunk
        chunks.append(bytes(chunk))
        n -= len(chunk)
    return b"".join(chunks)


def _read(f: Any, where: str, subject: str, images_only: bool, size: int | None) -> tuple[bytes, str]:
    """Sniff the first bytes, check the size for that type, then read the rest (at most the limit)."""
    head = "" if isinstance(f, io.TextIOBase) else _read_up_to(f, HEAD)
    if isinstance(head, str):
        raise ParameterError(f"{where}: {subject} is open in text mode: open it with open(path, 'rb').")
    mime = sniff(head)
    kind = _check_type(mime, where, subject, images_only, head)
    if size is not None and size > LIMITS[kind]:
        raise _too_big(where, subject, kind, size)
    rest = _read_up_to(f, LIMITS[kind] + 1 - len(head)) if len(head) == HEAD else b""
    data = head + rest if isinstance(rest, bytes) else head
    if len(data) > LIMITS[kind]:
        raise _too_big(where, subject, kind, None)
    return data, str(mime)


def _from_path(obj: Any, where: str, images_only: bool) -> Attachment:
    path = os.fsdecode(os.fspath(obj))
    missing = f"{where}: no such file {_quote(path)}; give a path, URL or bytes."
    if "\0" in path:  # no path holds a NUL (os.stat would raise ValueError)
        raise ParameterError(missing)
    try:
        info = os.stat(path)
        with open(path, "rb") as f:
            size = info.st_size if stat.S_ISREG(info.st_mode) else None
            data, mime = _read(f, where, _quote(path), images_only, size)
    except FileNotFoundError:
        raise ParameterError(missing) from None
    except IsADirectoryError:
        raise ParameterError(f"{where}: {_quote(path)} is a folder: give a file's path.") from None
    except OSError as exc:
        raise ParameterError(f"{where}: cannot read {_quote(path)}: {exc.strerror}.") from None
    return _from_data(data, mime, os.path.basename(path) or None)


def _stream_name(f: Any) -> str | None:
    name = getattr(f, "name", None)
    if isinstance(name, (str, bytes, os.PathLike)):
        return os.path.basename(os.fsdecode(name)) or None
    return None


def _from_stream(f: Any, where: str, images_only: bool) -> Attachment:
    name = _stream_name(f)
    subject = _quote(name) if name else "the file object"
    size = None
    try:
        if f.seekable():
            position = f.tell()
            end = f.seek(0, io.SEEK_END)
            f.seek(position)
            size = end - position
    except (AttributeError, OSError, TypeError):
        size = None
    data, mime = _read(f, where, subject, images_only, size)
    return _from_data(data, mime, name)


def _from_url(url: str, where: str, images_only: bool) -> Attachment:
    path = unquote(urlsplit(url).path)
    name = posixpath.basename(path) or None
    mime = EXTENSIONS.get(posixpath.splitext(path)[1].lower())
    if images_only and mime is None:  # image URLs often have no extension: send it and let the API tell
        return Attachment("image", "image/*", name, None, None, url, _part("image", "", url, name, True))
    if mime is None:
        raise ParameterError(
            f"{where}: cannot tell the type of {_quote(url)} from its URL (no known file extension): "
            "download it and pass the file or its bytes, or put an image URL in images=[...]."
        )
    kind = _check_type(mime, where, _quote(url), images_only)
    return Attachment(kind, mime, name, None, None, url, _part(kind, mime, url, name, True))


def _from_data_uri(uri: str, where: str, images_only: bool) -> Attachment:
    header, comma, payload = uri[5:].partition(",")
    params = [p.strip().lower() for p in header.split(";")]
    try:
        if not comma:
            raise ValueError(uri)
        if "base64" in params[1:]:
            data = base64.b64decode("".join(payload.split()), validate=True)
        else:
            data = unquote_to_bytes(payload)
    except (ValueError, binascii.Error):
        raise ParameterError(
            f"{where}: the data: URI is not valid: expected data:<type>;base64,<data>."
        ) from None
    declared = ALIASES.get(params[0], params[0])
    # The URI's type decides; a generic or unknown one (application/octet-stream) is sniffed.
    mime = declared if declared in TYPES or declared in REFUSED else sniff(data)
    kind = _check_type(mime, where, "the data: URI", images_only, data[:8])
    if len(data) > LIMITS[kind]:
        raise _too_big(where, "the data: URI", kind, len(data))
    return _from_data(data, str(mime), None)


# -- images drawn by Python objects -----------------------------------------------------------
def _png(width: int, height: int, channels: int, pixels: bytes) -> bytes:
    """A PNG of 8-bit gray, RGB or RGBA ``pixels`` (rows top to bottom), filter type 0 on every row."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    color = {1: 0, 3: 2, 4: 6}[channels]
    stride = width * channels
    rows = b"".join(b"\0" + pixels[y * stride : (y + 1) * stride] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


_SHAPES = "H×W (gray), H×W×3 (RGB) or H×W×4 (RGBA)"


def _array_png(obj: Any, where: str) -> bytes:
    import numpy as np  # only ever here, when given an array (numpy is then installed)

    a = np.asarray(obj)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))) or 0 in a.shape:
        raise ParameterError(f"{where}: an array of shape {a.shape} is not an image: give {_SHAPES}.")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer):
        floats = np.issubdtype(a.dtype, np.floating)
        if not np.isfinite(a).all():
            raise ParameterError(f"{where}: an image array cannot hold NaN or infinity: replace them first.")
        low, high = float(a.min()), float(a.max())
        if not (low >= 0 and high <= (1 if floats else 255)):
            wanted = "floats from 0 to 1" if floats else "integers from 0 to 255"
            raise ParameterError(
                f"{where}: an image array of {a.dtype} needs {wanted}; this one runs from {low:g} to "
                f"{high:g}: scale it, or give uint8."
            )
        a = np.rint(a * 255).astype(np.uint8) if floats else a.astype(np.uint8)
    else:
        raise ParameterError(
            f"{where}: an array of {a.dtype} is not an image: give uint8 (0-255) or floats (0-1), shaped {_SHAPES}."
        )
    channels = 1 if a.ndim == 2 else a.shape[2]
    return _png(a.shape[1], a.shape[0], channels, np.ascontiguousarray(a).tobytes())


def _drawn_png(obj: Any, where: str) -> bytes | None:
    """PNG bytes of a matplotlib figure or axes, a PIL image or an array; None for anything else."""
    figure = obj if hasattr(obj, "savefig") else getattr(obj, "figure", None)
    if hasattr(figure, "savefig"):
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()
    if hasattr(obj, "save") and hasattr(obj, "mode"):
        buffer = io.BytesIO()
        try:
            obj.save(buffer, format="PNG")
        except (OSError, ValueError, KeyError) as exc:
            raise ParameterError(
                f"{where}: cannot save the {obj.mode} image as PNG ({exc}): convert it first, "
                "e.g. image.convert('RGB')."
            ) from None
        return buffer.getvalue()
    if hasattr(obj, "shape") and (hasattr(obj, "__array_interface__") or hasattr(obj, "__array__")):
        return _array_png(obj, where)
    return None


# -- the public functions ---------------------------------------------------------------------
def _attach(obj: Any, where: str, images_only: bool) -> Attachment:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
        mime = sniff(data)
        kind = _check_type(mime, where, "the bytes", images_only, data[:8])
        if len(data) > LIMITS[kind]:
            raise _too_big(where, "the bytes", kind, len(data))
        return _from_data(data, str(mime), None)
    if isinstance(obj, str) and obj[:8].lower().startswith(("https://", "http://")):
        return _from_url(obj, where, images_only)
    if isinstance(obj, str) and obj[:5].lower() == "data:":
        return _from_data_uri(obj, where, images_only)
    if isinstance(obj, (str, os.PathLike)):
        return _from_path(obj, where, images_only)
    if hasattr(obj, "read"):
        return _from_stream(obj, where, images_only)
    png = _drawn_png(obj, where)
    if png is not None:
        if len(png) > LIMITS["image"]:
            raise _too_big(where, "the image", "image", len(png))
        return _from_data(png, "image/png", None)
    if images_only:
        raise ParameterError(
            f"{where}: expected a URL, a file path, bytes or a PIL image (or a matplotlib figure, "
            f"a numpy array or a binary file), got {type(obj).__name__}."
        )
    raise ParameterError(
        f"{where}: expected a file path, URL, data: URI, bytes, a binary file object or an image "
        f"(PIL, matplotlib figure, numpy array), got {type(obj).__name__}."
    )


def attach(obj: Any, index: int = 0, *, where: str = "files") -> Attachment:
    """An entry of ``files=[...]``: a PDF, image, audio clip or video, as an :class:`Attachment`.

    Takes a path, an ``https://`` URL (typed by its extension, not fetched), a ``data:`` URI, bytes,
    a binary file object, or an image object (PIL image, matplotlib figure or axes, numpy array).
    Errors name the entry as ``{where}[{index}]``."""
    return _attach(obj, f"{where}[{index}]", images_only=False)


def attach_image(obj: Any, index: int = 0, *, where: str = "images") -> Attachment:
    """An entry of ``images=[...]``: like :func:`attach`, but only images, and any http(s) URL is
    sent as it is (image URLs often have no extension)."""
    return _attach(obj, f"{where}[{index}]", images_only=True)


def image_url(image: Any, index: int = 0) -> str:
    """An image (URL, data URI, path, bytes, file object, PIL image, figure, array) -> its URL."""
    return str(attach_image(image, index).part["image_url"]["url"])


def user_content(text: str, parts: Sequence[dict[str, Any] | str | Attachment]) -> str | list[dict[str, Any]]:
    """The ``content`` of a user message: plain text, or text plus the parts (image URLs and
    attachments are taken too, as their parts)."""
    if not parts:
        return text
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    for part in parts:
        if isinstance(part, Attachment):
            content.append(part.part)
        elif isinstance(part, str):
            content.append({"type": "image_url", "image_url": {"url": part}})
        else:
            content.append(part)
    return content


def describe(records: Sequence[dict[str, Any]]) -> str:
    """One line for a footer: ``report.pdf (PDF, 205 KB) · call.mp3 (audio, 1.1 MB)``."""
    described = []
    for record in records:
        kind = record.get("kind") or "file"
        label = "PDF" if kind == "file" else kind
        size = record.get("size")
        amount = _size(size) if isinstance(size, int) else "URL"
        if record.get("name"):
            described.append(f"{record['name']} ({label}, {amount})")
            continue
        fmt = TYPES.get(ALIASES.get(record.get("type") or "", record.get("type") or ""), ("", ""))[1]
        described.append(f"{fmt} {label} ({amount})" if fmt and kind != "file" else f"{label} ({amount})")
    return " · ".join(described)
