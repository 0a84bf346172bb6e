"""What a file is, read from its first bytes: the types the chat API takes, and those it refuses.

:func:`sniff` names a MIME type from content (never from a name); :data:`TYPES` are the ones
the API takes, as ``mime -> (kind, format)``; :data:`REFUSED` the ones recognised but not taken,
with what they are and what to do; :data:`EXTENSIONS` maps a URL's extension to a type (URLs
are not fetched); :data:`ALIASES` folds other spellings of a type into ours.
"""

from __future__ import annotations

import codecs

__all__ = ["ALIASES", "EXTENSIONS", "HEAD", "REFUSED", "TYPES", "formats", "sniff"]

HEAD = 4096  # what sniffing reads before the size is checked

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
TYPES = {mime: (kind, fmt) for mime, (kind, fmt, _) in _TABLE.items()}
ALIASES = {
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
_REFUSED_ROWS = {
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
REFUSED = {mime: (what, advice) for mime, (what, advice, _) in _REFUSED_ROWS.items()}
EXTENSIONS = {
    f".{ext}": mime for mime, row in (*_TABLE.items(), *_REFUSED_ROWS.items()) for ext in row[2].split()
}


def formats(kind: str) -> str:
    """``PNG, JPEG, GIF, WebP or BMP``: the formats of a kind, for messages."""
    names = [fmt for k, fmt in TYPES.values() if k == kind]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


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
    head = bytes(data[:HEAD])
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
