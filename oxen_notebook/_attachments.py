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
import codecs
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

__all__ = [
    "KINDS",
    "LIMITS",
    "Attachment",
    "attach",
    "attach_image",
    "describe",
    "image_url",
    "sniff",
    "user_content",
]

#: What an attachment can be; ``file`` is a PDF (the only document type the API takes).
KINDS = ("image", "file", "audio", "video")
_MB = 2**20
#: The largest attachment of each kind, in bytes (before base64). Oxen documents 24 MB for PDFs
#: and 20 MB for audio and video; for images it names none, so they get 20 MB too (OpenAI's and
#: Gemini's inline limit): a larger data URI would be resent with every later turn.
LIMITS = {"image": 20 * _MB, "file": 24 * _MB, "audio": 20 * _MB, "video": 20 * _MB}

# The types the API takes: MIME type -> (kind, format, extensions). An audio type's subtype is
# the format name the providers use (OpenAI's ``input_audio.format`` is "wav"/"mp3", Gemini's
# types are audio/mp3, audio/aac, ...; Oxen's example is ``data:audio/mp3``): audio/mp3, not mpeg.
_TABLE = {
    "application/pdf": ("file", "PDF", "pdf"),
    "image/png": ("image", "PNG", "png"),
    "image/jpeg": ("image", "JPEG", "jpg jpeg"),
    "image/gif": ("image", "GIF", "gif"),
    "image/webp": ("image", "WebP", "webp"),
    "image/bmp": ("image", "BMP", "bmp"),
    "audio/wav": ("audio", "WAV", "wav"),
    "audio/mp3": ("audio", "MP3", "mp3"),
    "audio/m4a": ("audio", "M4A", "m4a"),
    "audio/aac": ("audio", "AAC", "aac"),
    "audio/ogg": ("audio", "OGG", "ogg oga opus"),
    "audio/flac": ("audio", "FLAC", "flac"),
    "video/mp4": ("video", "MP4", "mp4 m4v"),
    "video/webm": ("video", "WebM", "webm mkv"),
    "video/quicktime": ("video", "MOV", "mov"),
}
_TYPES = {mime: (kind, fmt) for mime, (kind, fmt, _) in _TABLE.items()}
_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/x-ms-bmp": "image/bmp",
    "audio/mpeg": "audio/mp3",
    "audio/x-mp3": "audio/mp3",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/mp4": "audio/m4a",
    "audio/x-m4a": "audio/m4a",
    "audio/x-aac": "audio/aac",
    "audio/x-flac": "audio/flac",
    "application/ogg": "audio/ogg",
    "video/x-m4v": "video/mp4",
    "video/x-matroska": "video/webm",
}
# Types recognised but not taken: what it is, what to do, and their extensions.
_REFUSED_TABLE = {
    "text/plain": ("text", "paste the text into the prompt", "txt md csv tsv json jsonl html htm xml py"),
    "application/rtf": ("an RTF document", "export it as PDF", "rtf"),
    "image/svg+xml": ("an SVG image", "convert it to PNG", "svg"),
    "image/heic": ("a HEIC image", "convert it to PNG or JPEG", "heic heif"),
    "image/avif": ("an AVIF image", "convert it to PNG or JPEG", "avif"),
    "image/tiff": ("a TIFF image", "convert it to PNG or JPEG", "tif tiff"),
    "audio/aiff": ("AIFF audio", "convert it to WAV or MP3", "aif aiff"),
    "video/x-msvideo": ("AVI video", "convert it to MP4 or WebM", "avi"),
    "application/zip": ("a ZIP archive", "attach the files inside it", "zip"),
    "application/epub+zip": ("an EPUB book", "convert it to PDF", "epub"),
    "application/vnd.openxmlformats": (
        "an Office document (Word, Excel or PowerPoint)",
        "export it as PDF",
        "docx xlsx pptx",
    ),
    "application/x-ole-storage": (
        "an old Office document (.doc, .xls or .ppt)",
        "export it as PDF",
        "doc xls ppt",
    ),
    "application/gzip": ("a gzip archive", "decompress it first", "gz"),
}
_REFUSED = {mime: (what, advice) for mime, (what, advice, _) in _REFUSED_TABLE.items()}
_EXTENSIONS = {
    f".{ext}": mime for mime, row in (*_TABLE.items(), *_REFUSED_TABLE.items()) for ext in row[2].split()
}


def _formats(kind: str) -> str:
    names = [fmt for k, fmt in _TYPES.values() if k == kind]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


_SUPPORTED = f"PDF; {_formats('image')} images; {_formats('audio')} audio; {_formats('video')} video"
_IMAGES = f"a {_formats('image')} image"
_HEAD = 4096  # what sniffing reads before the size is checked
_PLURAL = {"file": "PDFs", "image": "images", "audio": "audio files", "video": "videos"}
_SHRINK = {
    "file": "split or compress it",
    "image": "resize it, or save it as JPEG",
    "audio": "trim it, or compress it as MP3",
    "video": "trim it, or lower its resolution",
}
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}


# -- sniffing ---------------------------------------------------------------------------------
def _mpeg_audio(data: bytes, at: int = 0) -> str | None:
    """audio/mp3 for an MPEG layer III frame header at ``at``, audio/aac for an ADTS header."""
    b = data[at : at + 3]
    if len(b) < 2 or b[0] != 0xFF:
        return None
    if b[1] & 0xF6 == 0xF0:  # 12 sync bits, layer 00: ADTS (0xFFF1 MPEG-4, 0xFFF9 MPEG-2)
        return "audio/aac"
    version, layer = (b[1] >> 3) & 3, (b[1] >> 1) & 3
    frame = b[1] & 0xE0 == 0xE0 and layer == 1 and version != 1 and len(b) == 3
    if frame and b[2] >> 4 != 0xF and (b[2] >> 2) & 3 != 3:  # and a valid bitrate and sample rate
        return "audio/mp3"
    return None


def _iso_bmff(data: bytes) -> str:
    size = int.from_bytes(data[:4], "big")
    brands = [data[i : i + 4] for i in range(8, min(max(size, 12), len(data)), 4) if i != 12]
    major = brands[0] if brands else b""
    if major in (b"M4A ", b"M4B ", b"M4P "):
        return "audio/m4a"
    if major == b"qt  ":
        return "video/quicktime"
    if b"avif" in brands or b"avis" in brands:
        return "image/avif"
    if _HEIF_BRANDS.intersection(brands):
        return "image/heic"
    return "video/mp4"  # isom, iso2, mp41, mp42, avc1, dash, 3gp...: MPEG-4 video


def _is_text(data: bytes) -> bool:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return True
    if b"\0" in data:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
    except UnicodeDecodeError:
        return False
    return True


def sniff(data: bytes) -> str | None:
    """The MIME type of ``data`` (its first 4 KB are enough), read from its content; None if unknown.

    Also names types the API does not take (``text/plain``, ``application/zip``, ``video/x-msvideo``,
    ``application/x-empty`` for no bytes, ...), so an error can say what a file is."""
    head = bytes(data[:_HEAD])
    if not head:
        return "application/x-empty"
    riff = head[8:12] if head[:4] == b"RIFF" else b""
    simple = {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}
    if riff in simple:
        return simple[riff]
    for signature, mime in (
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"OggS", "audio/ogg"),
        (b"fLaC", "audio/flac"),
        (b"\x1a\x45\xdf\xa3", "video/webm"),  # EBML: WebM, or Matroska, its superset
        (b"II*\0", "image/tiff"),
        (b"MM\0*", "image/tiff"),
        (b"\x1f\x8b", "application/gzip"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "application/x-ole-storage"),
        (b"{\\rtf", "application/rtf"),
    ):
        if head.startswith(signature):
            return mime
    if head.lstrip(b"\xef\xbb\xbf\0 \t\r\n").startswith(b"%PDF-"):  # readers allow blanks before it
        return "application/pdf"
    # BM, then a DIB header size that Windows, OS/2 or later versions write (12, 40, ... 124)
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in (12, 16, 40, 52, 56, 64, 108, 124):
        return "image/bmp"
    if head[4:8] == b"ftyp":
        return _iso_bmff(head)
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "audio/aiff"
    if head.startswith(b"ID3") and len(head) >= 10:
        skip = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(head[6:10]))
        return "audio/aac" if _mpeg_audio(head, skip) == "audio/aac" else "audio/mp3"
    if mime := _mpeg_audio(head):
        return mime
    if head.startswith(b"PK\x03\x04"):
        if head[30:58] == b"mimetypeapplication/epub+zip":
            return "application/epub+zip"
        if any(s in head for s in (b"[Content_Types].xml", b"word/", b"xl/", b"ppt/")):
            return "application/vnd.openxmlformats"
        return "application/zip"
    if _is_text(head):
        start = head.lstrip()[:512].lower()
        if start.startswith(b"<svg") or (start.startswith(b"<?xml") and b"<svg" in start):
            return "image/svg+xml"
        return "text/plain"
    return None


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

    def summary_part(self) -> dict[str, Any]:
        """The content part with its data replaced by ``<type, N bytes, sha256 1a2b3c4d…>``."""
        if self.url is not None or self.size is None:
            return {
                key: dict(value) if isinstance(value, dict) else value for key, value in self.part.items()
            }
        text = f"<{self.mime}, {self.size:,} bytes, sha256 {(self.sha256 or '')[:8]}…>"
        return _part(self.kind, self.mime, text, self.part.get("file", {}).get("filename"), False)


def _from_data(data: bytes, mime: str, name: str | None) -> Attachment:
    kind = _TYPES[mime][0]
    part = _part(kind, mime, _data_uri(data, mime), name, False)
    return Attachment(kind, mime, name, len(data), hashlib.sha256(data).hexdigest(), None, part)


# -- errors -----------------------------------------------------------------------------------
def _quote(text: str, limit: int = 120) -> str:
    quoted = repr(text)
    return quoted if len(quoted) <= limit else quoted[: limit - 2] + "…'"


def _what(mime: str | None, head: bytes) -> tuple[str, str]:
    if mime in _REFUSED:
        return _REFUSED[mime]
    if mime in _TYPES:
        kind, fmt = _TYPES[mime]
        return ("a PDF" if kind == "file" else f"{fmt} {kind}"), "pass it in files=[...]"
    start = head[:8].hex(" ")
    return f"of a type I cannot tell (it starts {start})", "convert it to one of these"


def _check_type(mime: str | None, where: str, subject: str, images_only: bool, head: bytes = b"") -> str:
    """The kind of ``mime``; a ParameterError when ``where`` does not take it."""
    kind = _TYPES[mime][0] if mime in _TYPES else None
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
    head = "" if isinstance(f, io.TextIOBase) else _read_up_to(f, _HEAD)
    if isinstance(head, str):
        raise ParameterError(f"{where}: {subject} is open in text mode: open it with open(path, 'rb').")
    mime = sniff(head)
    kind = _check_type(mime, where, subject, images_only, head)
    if size is not None and size > LIMITS[kind]:
        raise _too_big(where, subject, kind, size)
    rest = _read_up_to(f, LIMITS[kind] + 1 - len(head)) if len(head) == _HEAD else b""
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
    mime = _EXTENSIONS.get(posixpath.splitext(path)[1].lower())
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
    declared = _ALIASES.get(params[0], params[0])
    # The URI's type decides; a generic or unknown one (application/octet-stream) is sniffed.
    mime = declared if declared in _TYPES or declared in _REFUSED else sniff(data)
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
        fmt = _TYPES.get(_ALIASES.get(record.get("type") or "", record.get("type") or ""), ("", ""))[1]
        described.append(f"{fmt} {label} ({amount})" if fmt and kind != "file" else f"{label} ({amount})")
    return " · ".join(described)
