"""Attachments: real files made here (a matplotlib PDF, a stdlib WAV, PNGs decoded back with PIL),
signature bytes for the other formats, and the exact parts, records and errors."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import wave
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from oxen_notebook import ParameterError
from oxen_notebook import _attachments as attachments_module
from oxen_notebook._attachments import (
    KINDS,
    LIMITS,
    Attachment,
    attach,
    attach_image,
    describe,
    image_url,
    user_content,
)
from oxen_notebook._filetypes import sniff
from oxen_notebook._local import LOCAL_BASE_URL
from oxen_notebook._local._transport import LocalTransport

SUPPORTED = (
    "PDF; PNG, JPEG, GIF, WebP or BMP images; WAV, MP3, M4A, AAC, OGG or FLAC audio; MP4, WebM or MOV video"
)
PDF_HEAD = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\0\0\0\0" + b"".join(compatible)
    return struct.pack(">I", 8 + len(body)) + b"ftyp" + body + b"\0\0\0\x08free"


def pdf_file(path: Path) -> Path:
    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    fig.savefig(path, format="pdf")
    return path


def wav_file(path: Path) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(struct.pack("<800h", *range(-400, 400)))
    return path


def decode_png(url: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    image = Image.open(io.BytesIO(base64.b64decode(url[len(prefix) :])))
    image.load()
    return image


# -- real files -------------------------------------------------------------------------------
def test_a_real_pdf_from_a_path_is_a_file_part(tmp_path):
    path = pdf_file(tmp_path / "report.pdf")
    data = path.read_bytes()
    a = attach(path)
    assert (a.kind, a.mime, a.name, a.size, a.url) == (
        "file",
        "application/pdf",
        "report.pdf",
        len(data),
        None,
    )
    assert a.sha256 == hashlib.sha256(data).hexdigest()
    assert a.part == {
        "type": "file",
        "file": {"filename": "report.pdf", "file_data": f"data:application/pdf;base64,{b64(data)}"},
    }


def test_pdf_bytes_are_named_document_pdf_and_a_name_gains_pdf(tmp_path):
    data = pdf_file(tmp_path / "x.pdf").read_bytes()
    assert attach(data).part == {
        "type": "file",
        "file": {"filename": "document.pdf", "file_data": f"data:application/pdf;base64,{b64(data)}"},
    }
    (tmp_path / "scan").write_bytes(data)
    assert attach(tmp_path / "scan").part["file"]["filename"] == "scan.pdf"


def test_a_real_wav_is_an_audio_url_part(tmp_path):
    path = wav_file(tmp_path / "call.wav")
    a = attach(str(path))
    assert (a.kind, a.mime, a.name, a.size) == ("audio", "audio/wav", "call.wav", path.stat().st_size)
    assert a.part == {
        "type": "audio_url",
        "audio_url": {"url": f"data:audio/wav;base64,{b64(path.read_bytes())}"},
    }


MP3_FRAME = b"\xff\xfb\x90\x64" + b"\0" * 60  # MPEG-1 layer III, 128 kbit/s, 44.1 kHz
ADTS = b"\xff\xf1\x50\x80\x02\x1f\xfc" + b"\0" * 60


@pytest.mark.parametrize(
    ("data", "mime", "kind"),
    [
        (b"ID3\x04\0\0\0\0\0\x00" + MP3_FRAME, "audio/mp3", "audio"),
        (MP3_FRAME, "audio/mp3", "audio"),
        (b"\xff\xf3\x84\x64" + b"\0" * 60, "audio/mp3", "audio"),  # MPEG-2 layer III
        (ADTS, "audio/aac", "audio"),
        (b"\xff\xf9\x50\x80" + b"\0" * 60, "audio/aac", "audio"),
        (b"ID3\x04\0\0\0\0\0\x00" + ADTS, "audio/aac", "audio"),
        (b"OggS\0\x02" + b"\0" * 60, "audio/ogg", "audio"),
        (b"fLaC\0\0\0\x22" + b"\0" * 60, "audio/flac", "audio"),
        (ftyp(b"M4A ", b"M4A ", b"mp42", b"isom"), "audio/m4a", "audio"),
        (ftyp(b"isom", b"isom", b"iso2", b"avc1", b"mp41"), "video/mp4", "video"),
        (ftyp(b"mp42", b"mp42", b"isom"), "video/mp4", "video"),
        (ftyp(b"dash", b"iso6"), "video/mp4", "video"),
        (ftyp(b"qt  ", b"qt  "), "video/quicktime", "video"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "video/webm", "video"),
        (b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82\x88matroska", "video/webm", "video"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 16, "image/png", "image"),
        (b"\xff\xd8\xff\xe0\0\x10JFIF", "image/jpeg", "image"),
        (b"GIF89a\x01\0\x01\0", "image/gif", "image"),
        (b"RIFF\0\0\0\0WEBPVP8 ", "image/webp", "image"),
        (b"BM" + b"\0" * 12 + b"\x28\0\0\0" + b"\0" * 40, "image/bmp", "image"),
        (b"RIFF\x24\0\0\0WAVEfmt ", "audio/wav", "audio"),
        (PDF_HEAD, "application/pdf", "file"),
    ],
)
def test_types_are_sniffed_from_the_content(data, mime, kind):
    a = attach(data)
    assert (a.kind, a.mime, a.size) == (kind, mime, len(data))
    key = {"image": "image_url", "audio": "audio_url", "video": "video_url", "file": "file"}[kind]
    assert a.part["type"] == key and kind in KINDS
    if kind != "file":
        assert a.part == {"type": key, key: {"url": f"data:{mime};base64,{b64(data)}"}}


def test_sniff_names_what_it_recognises_but_the_api_does_not_take():
    assert sniff(b"RIFF\0\0\0\0AVI LIST") == "video/x-msvideo"
    assert sniff(ftyp(b"heic", b"mif1", b"heic")) == "image/heic"
    assert sniff(ftyp(b"avif", b"avif", b"mif1")) == "image/avif"
    assert sniff(b"hello, world\n") == "text/plain"
    assert sniff(b"\x00\x01\x02\x03garbage") is None
    assert sniff(b"BMW quarterly report, see %PDF-1.7 for the format") == "text/plain"
    assert sniff(b"") == "application/x-empty"


def test_real_bmp_gif_webp_and_jpeg_from_pil_are_sniffed():
    for fmt, mime in (
        ("BMP", "image/bmp"),
        ("GIF", "image/gif"),
        ("WEBP", "image/webp"),
        ("JPEG", "image/jpeg"),
    ):
        buffer = io.BytesIO()
        Image.new("RGB", (4, 3), (200, 10, 10)).save(buffer, format=fmt)
        a = attach_image(buffer.getvalue())
        assert (a.mime, a.part["image_url"]["url"]) == (mime, f"data:{mime};base64,{b64(buffer.getvalue())}")


def test_a_misnamed_file_goes_by_its_content(tmp_path):
    path = tmp_path / "report.pdf"
    Image.new("RGB", (2, 2)).save(path, format="PNG")
    a = attach(path)
    assert (a.kind, a.mime, a.name) == ("image", "image/png", "report.pdf")
    assert a.part["type"] == "image_url"
    assert a.part["image_url"]["url"].startswith("data:image/png;base64,iVBORw0KGgo")


# -- images drawn by Python objects -----------------------------------------------------------
@pytest.mark.parametrize(("shape", "mode"), [((5, 7), "L"), ((5, 7, 3), "RGB"), ((5, 7, 4), "RGBA")])
def test_numpy_arrays_become_pngs_pil_decodes_pixel_for_pixel(shape, mode):
    pixels = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    a = attach_image(pixels)
    image = decode_png(a.part["image_url"]["url"])
    assert (image.mode, image.size) == (mode, (7, 5))
    assert np.array_equal(np.asarray(image), pixels)
    assert (a.kind, a.mime, a.name) == ("image", "image/png", None)


def test_float_int_and_bool_arrays_are_scaled_to_bytes():
    floats = np.linspace(0, 1, 12).reshape(3, 4)
    assert np.array_equal(np.asarray(decode_png(image_url(floats))), np.rint(floats * 255).astype(np.uint8))
    ints = np.arange(0, 240, 20).reshape(3, 4)  # int64, values within 0-255
    assert np.array_equal(np.asarray(decode_png(image_url(ints))), ints.astype(np.uint8))
    mask = np.eye(3, dtype=bool)
    assert np.array_equal(np.asarray(decode_png(image_url(mask))), mask.astype(np.uint8) * 255)
    column = np.full((2, 3, 1), 9, np.uint8)
    assert np.asarray(decode_png(image_url(column))).tolist() == [[9, 9, 9], [9, 9, 9]]


def test_the_png_encoder_needs_no_pil(monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    pixels = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    url = image_url(pixels)
    monkeypatch.undo()
    assert np.array_equal(np.asarray(decode_png(url)), pixels)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (
            np.zeros((2, 2, 2), np.uint8),
            "images[0]: an array of shape (2, 2, 2) is not an image: give H×W (gray), H×W×3 (RGB) or H×W×4 (RGBA).",
        ),
        (
            np.zeros(5, np.uint8),
            "images[0]: an array of shape (5,) is not an image: give H×W (gray), H×W×3 (RGB) or H×W×4 (RGBA).",
        ),
        (
            np.zeros((2, 2), np.complex64),
            "images[0]: an array of complex64 is not an image: give uint8 (0-255) or floats (0-1), shaped "
            "H×W (gray), H×W×3 (RGB) or H×W×4 (RGBA).",
        ),
        (
            np.array([[0.0, 2.5]]),
            "images[0]: an image array of float64 needs floats from 0 to 1; this one runs from 0 to 2.5: "
            "scale it, or give uint8.",
        ),
        (
            np.array([[0, 300]]),
            "images[0]: an image array of int64 needs integers from 0 to 255; this one runs from 0 to 300: "
            "scale it, or give uint8.",
        ),
        (
            np.array([[0.0, np.nan]]),
            "images[0]: an image array cannot hold NaN or infinity: replace them first.",
        ),
    ],
)
def test_arrays_that_are_not_images_are_one_line_errors(array, message):
    with pytest.raises(ParameterError) as info:
        attach_image(array)
    assert str(info.value) == message


def test_a_matplotlib_figure_and_its_axes_become_pngs():
    fig = Figure(figsize=(2, 1), dpi=50)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1])
    for obj in (fig, ax):
        a = attach_image(obj)
        image = decode_png(a.part["image_url"]["url"])
        assert a.mime == "image/png" and image.format == "PNG" and image.size[0] > 10


def test_a_pil_image_becomes_a_png_and_a_cmyk_one_says_how_to_fix_it():
    original = Image.new("RGB", (3, 2), (10, 20, 30))
    assert np.array_equal(np.asarray(decode_png(image_url(original))), np.asarray(original))
    with pytest.raises(
        ParameterError, match=r"^images\[0\]: cannot save the CMYK image as PNG .*image\.convert"
    ):
        image_url(Image.new("CMYK", (2, 2)))


def test_files_take_images_too_so_a_list_can_mix():
    parts = [attach(x, i).part["type"] for i, x in enumerate([Image.new("L", (2, 2)), PDF_HEAD, MP3_FRAME])]
    assert parts == ["image_url", "file", "audio_url"]


# -- file objects, bytes, URLs, data URIs -----------------------------------------------------
def test_a_binary_file_object_uses_its_name(tmp_path):
    path = wav_file(tmp_path / "memo.wav")
    with open(path, "rb") as f:
        a = attach(f)
    assert (a.mime, a.name, a.size) == ("audio/wav", "memo.wav", path.stat().st_size)
    b = attach(io.BytesIO(PDF_HEAD))
    assert (b.mime, b.name, b.part["file"]["filename"]) == ("application/pdf", None, "document.pdf")
    with open(path) as text_mode, pytest.raises(ParameterError) as info:
        attach(text_mode)
    assert str(info.value) == (
        f"files[0]: {path.name!r} is open in text mode: open it with open(path, 'rb')."
    )


def test_bytes_bytearray_and_memoryview_are_the_same_attachment():
    made = [attach(x) for x in (MP3_FRAME, bytearray(MP3_FRAME), memoryview(MP3_FRAME))]
    assert {(a.mime, a.size, a.sha256, a.part["audio_url"]["url"]) for a in made} == {
        (
            "audio/mp3",
            len(MP3_FRAME),
            hashlib.sha256(MP3_FRAME).hexdigest(),
            f"data:audio/mp3;base64,{b64(MP3_FRAME)}",
        )
    }


@pytest.mark.parametrize(
    ("url", "kind", "mime", "part"),
    [
        ("https://e.com/docs/report.pdf", "file", "application/pdf", {"type": "file", "file": {"file_url": "https://e.com/docs/report.pdf"}}),
        ("https://e.com/a/call.MP3?sig=1", "audio", "audio/mp3", {"type": "audio_url", "audio_url": {"url": "https://e.com/a/call.MP3?sig=1"}}),
        ("http://e.com/clip.mp4", "video", "video/mp4", {"type": "video_url", "video_url": {"url": "http://e.com/clip.mp4"}}),
        ("https://e.com/cat.png", "image", "image/png", {"type": "image_url", "image_url": {"url": "https://e.com/cat.png"}}),
    ],
)  # fmt: skip
def test_urls_are_typed_by_their_extension_and_not_fetched(url, kind, mime, part):
    a = attach(url)
    assert (a.kind, a.mime, a.url, a.size, a.sha256) == (kind, mime, url, None, None)
    assert a.part == part and a.name == url.split("/")[-1].split("?")[0]


def test_a_url_whose_type_cannot_be_told_is_an_error_but_an_image_url_is_sent_as_it_is():
    with pytest.raises(ParameterError) as info:
        attach("https://e.com/download?id=3", 2)
    assert str(info.value) == (
        "files[2]: cannot tell the type of 'https://e.com/download?id=3' from its URL (no known file "
        "extension): download it and pass the file or its bytes, or put an image URL in images=[...]."
    )
    a = attach_image("https://e.com/render?id=3")
    assert (a.kind, a.mime, a.part) == (
        "image",
        "image/*",
        {"type": "image_url", "image_url": {"url": "https://e.com/render?id=3"}},
    )
    with pytest.raises(ParameterError) as info:
        attach_image("https://e.com/report.pdf")
    assert str(info.value) == (
        "images[0]: 'https://e.com/report.pdf' is not an image file (it is a PDF: pass it in files=[...])."
    )


def test_data_uris_are_typed_by_their_mime_and_normalised():
    a = attach(f"data:application/pdf;base64,{b64(PDF_HEAD)}")
    assert (a.kind, a.size, a.url, a.sha256) == (
        "file",
        len(PDF_HEAD),
        None,
        hashlib.sha256(PDF_HEAD).hexdigest(),
    )
    assert a.part == {
        "type": "file",
        "file": {"filename": "document.pdf", "file_data": f"data:application/pdf;base64,{b64(PDF_HEAD)}"},
    }
    b = attach(f"data:audio/mpeg;base64,{b64(MP3_FRAME)}")
    assert b.part == {"type": "audio_url", "audio_url": {"url": f"data:audio/mp3;base64,{b64(MP3_FRAME)}"}}
    c = attach(f"data:application/octet-stream;base64,{b64(ADTS)}")  # a generic type is sniffed
    assert c.mime == "audio/aac"
    png = image_url(np.zeros((1, 1), np.uint8))
    assert image_url(png) == png
    with pytest.raises(ParameterError) as info:
        attach("data:application/pdf;base64,not base64!")
    assert str(info.value) == "files[0]: the data: URI is not valid: expected data:<type>;base64,<data>."
    with pytest.raises(ParameterError) as info:
        attach("data:text/plain,hello")
    assert str(info.value) == (
        f"files[0]: the data: URI is text, not a file the API takes ({SUPPORTED}): paste the text into the prompt."
    )  # fmt: skip


# -- refusals ---------------------------------------------------------------------------------
def test_unsupported_types_are_one_line_errors_naming_what_they_are(tmp_path):
    (tmp_path / "notes.pdf").write_text("Quarterly notes\nRevenue up.\n")
    with zipfile.ZipFile(tmp_path / "bundle.zip", "w") as z:
        z.writestr("a.csv", "x,y\n1,2\n")
    with zipfile.ZipFile(tmp_path / "memo.docx", "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document/>")
    (tmp_path / "clip.avi").write_bytes(b"RIFF\x10\0\0\0AVI LIST" + b"\0" * 32)
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01\x02\x03\x04\x05\x06\x07" + b"\xfe" * 32)
    expected = {
        "notes.pdf": "text, not a file the API takes ({}): paste the text into the prompt.",
        "bundle.zip": "a ZIP archive, not a file the API takes ({}): attach the files inside it.",
        "memo.docx": "an Office document (Word, Excel or PowerPoint), not a file the API takes ({}): export it as PDF.",
        "clip.avi": "AVI video, not a file the API takes ({}): convert it to MP4 or WebM.",
        "blob.bin": "of a type I cannot tell (it starts 00 01 02 03 04 05 06 07), not a file the API takes ({}): "
        "convert it to one of these.",
    }
    for name, tail in expected.items():
        path = str(tmp_path / name)
        with pytest.raises(ParameterError) as info:
            attach(path)
        assert str(info.value) == f"files[0]: {path!r} is {tail.format(SUPPORTED)}"
    with pytest.raises(ParameterError) as info:
        attach(b"")
    assert str(info.value) == "files[0]: the bytes are empty (0 bytes): give the file's content."


def test_images_keep_the_first_releases_error_texts(tmp_path):
    missing = tmp_path / "missing.png"
    cases = [
        (missing, f"images[0]: no such file {str(missing)!r}; give a path, URL or bytes."),
        (b"not an image", "images[0]: bytes are not a PNG, JPEG, GIF, WebP or BMP image (it is text: paste the text into the prompt)."),
        (b"\x00\x01\x02", "images[0]: bytes are not a PNG, JPEG, GIF, WebP or BMP image."),
        (PDF_HEAD, "images[0]: bytes are not a PNG, JPEG, GIF, WebP or BMP image (it is a PDF: pass it in files=[...])."),
        (3, "images[0]: expected a URL, a file path, bytes or a PIL image (or a matplotlib figure, a numpy array "
            "or a binary file), got int."),
    ]  # fmt: skip
    for given, message in cases:
        with pytest.raises(ParameterError) as info:
            image_url(given)
        assert str(info.value) == message
    (tmp_path / "song.png").write_bytes(MP3_FRAME)
    with pytest.raises(ParameterError) as info:
        attach_image(tmp_path / "song.png", 1)
    assert str(info.value) == (
        f"images[1]: {str(tmp_path / 'song.png')!r} is not an image file (it is MP3 audio: pass it in files=[...])."
    )


def test_image_url_keeps_the_contract_of_the_first_release(tmp_path):
    assert image_url("https://e.com/cat.jpg") == "https://e.com/cat.jpg"
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
    (tmp_path / "pic.png").write_bytes(png)
    assert image_url(tmp_path / "pic.png") == f"data:image/png;base64,{b64(png)}"
    assert image_url(b"\xff\xd8\xff\xe0rest").startswith("data:image/jpeg;base64,")


class _Counted:
    """A binary file that counts the bytes read from it."""

    def __init__(self, f, seekable=True):
        self.f, self.read_bytes, self._seekable = f, 0, seekable

    def read(self, n=-1):
        data = self.f.read(n)
        self.read_bytes += len(data)
        return data

    def seekable(self):
        return self._seekable

    def tell(self):
        return self.f.tell()

    def seek(self, *args):
        return self.f.seek(*args)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_an_oversize_pdf_path_is_refused_after_reading_only_its_first_bytes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open("big.pdf", "wb") as f:
        f.write(PDF_HEAD)
        f.truncate(25 * 2**20)  # sparse: 25 MB on paper, a few bytes on disk
    opened = []

    def counting_open(*args, **kwargs):
        opened.append(_Counted(open(*args, **kwargs)))  # noqa: SIM115 - _Counted closes it
        return opened[-1]

    monkeypatch.setattr(attachments_module, "open", counting_open, raising=False)
    with pytest.raises(ParameterError) as info:
        attach("big.pdf")
    assert str(info.value) == (
        "files[0]: 'big.pdf' is 25 MB (26,214,400 bytes); the API takes PDFs up to 24 MB: split or compress it."
    )
    assert len(opened) == 1 and opened[0].read_bytes <= 4096


def test_oversize_bytes_and_streams_are_refused_before_base64(monkeypatch):
    def no_base64(*args):
        raise AssertionError("base64-encoded before the size check")

    monkeypatch.setattr(base64, "b64encode", no_base64)
    audio = b"RIFF\0\0\0\0WAVEfmt " + bytes(LIMITS["audio"])
    with pytest.raises(ParameterError) as info:
        attach(audio)
    assert str(info.value) == (
        "files[0]: the bytes are 20 MB (20,971,536 bytes); the API takes audio files up to 20 MB: "
        "trim it, or compress it as MP3."
    )
    video = ftyp(b"isom", b"isom") + bytes(LIMITS["video"])
    with pytest.raises(
        ParameterError, match=r"the API takes videos up to 20 MB: trim it, or lower its resolution\.$"
    ):
        attach(video)
    stream = _Counted(io.BytesIO(PDF_HEAD + bytes(LIMITS["file"])), seekable=False)
    with pytest.raises(ParameterError) as info:
        attach(stream)
    assert str(info.value) == (
        "files[0]: the file object is more than 24 MB; the API takes PDFs up to 24 MB: split or compress it."
    )
    assert stream.read_bytes == LIMITS["file"] + 1  # never more than the limit and one byte


def test_a_pdf_at_the_limit_is_taken():
    data = PDF_HEAD + bytes(LIMITS["file"] - len(PDF_HEAD))
    assert attach(io.BytesIO(data)).size == LIMITS["file"] == 24 * 2**20


# -- records, summaries, descriptions ---------------------------------------------------------
def test_record_holds_no_bytes(tmp_path):
    path = pdf_file(tmp_path / "report.pdf")
    data = path.read_bytes()
    a = attach(path)
    digest = hashlib.sha256(data).hexdigest()
    assert a.record() == {
        "kind": "file",
        "type": "application/pdf",
        "name": "report.pdf",
        "size": len(data),
        "sha256": digest,
        "url": None,
    }
    assert b64(data)[:40] not in json.dumps(a.record())
    url = attach("https://e.com/r.pdf")
    assert url.record() == {"kind": "file", "type": "application/pdf", "name": "r.pdf", "size": None, "sha256": None, "url": "https://e.com/r.pdf"}  # fmt: skip
    assert "base64" not in repr(a) and isinstance(hash(a), int)


def test_describe_is_one_line_for_a_footer():
    records = [
        Attachment("file", "application/pdf", "report.pdf", 210_345, "ab", None, {}).record(),
        Attachment("audio", "audio/mp3", "call.mp3", 1_153_434, "cd", None, {}).record(),
        attach(np.zeros((4, 4), np.uint8)).record(),
        attach("https://e.com/clip.mp4").record(),
        {"kind": "file", "type": "application/pdf", "size": 900},
    ]
    png_size = records[2]["size"]
    assert describe(records) == (
        f"report.pdf (PDF, 205 KB) · call.mp3 (audio, 1.1 MB) · PNG image ({png_size} B) · "
        "clip.mp4 (video, URL) · PDF (900 B)"
    )
    assert describe([]) == ""


def test_user_content_is_text_or_text_and_parts():
    assert user_content("hi", []) == "hi"
    pdf = attach(PDF_HEAD)
    assert user_content("read", ["https://e.com/a.png", pdf.part, pdf]) == [
        {"type": "text", "text": "read"},
        {"type": "image_url", "image_url": {"url": "https://e.com/a.png"}},
        pdf.part,
        pdf.part,
    ]


def test_limits_and_kinds():
    assert KINDS == ("image", "file", "audio", "video")
    assert LIMITS == {"image": 20 * 2**20, "file": 24 * 2**20, "audio": 20 * 2**20, "video": 20 * 2**20}


def test_attaching_imports_no_numpy_pil_or_matplotlib(tmp_path):
    pdf_file(tmp_path / "r.pdf")
    code = (
        "import sys; from oxen_notebook._attachments import attach; "
        f"attach({str(tmp_path / 'r.pdf')!r}); attach(b'fLaC'); attach('https://e.com/a.mp4'); "
        "print(sorted(m for m in ('numpy', 'PIL', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=os.getcwd()
    )
    assert out.stdout.strip() == "[]"


# -- the local model's refusal ----------------------------------------------------------------
def _local_refusal(tmp_path: Path, *parts: dict) -> str:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"never loaded: the request is refused first")
    body = {"model": f"local:{model}", "messages": [{"role": "user", "content": [{"type": "text", "text": "Summarize"}, *parts]}]}  # fmt: skip
    with httpx.Client(transport=LocalTransport(), base_url=LOCAL_BASE_URL) as client:
        response = client.post("/chat/completions", json=body)
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_params"
    return response.json()["error"]["detail"]


def test_the_local_model_names_what_was_attached_and_what_to_do(tmp_path):
    pdf = attach(PDF_HEAD).part | {
        "file": {"filename": "report.pdf", "file_data": "data:application/pdf;base64,JVBE"}
    }
    assert _local_refusal(tmp_path, pdf) == (
        "the local model reads text only: it cannot read the PDF (report.pdf) attached; "
        "use a hosted model such as gpt-5-2-chat-latest, or paste the text."
    )
    audio = attach(MP3_FRAME).part
    video = attach("https://e.com/v/clip.mp4").part
    assert _local_refusal(tmp_path, audio, video, attach("https://e.com/v/b.mp4").part) == (
        "the local model reads text only: it cannot read the audio (audio/mp3 data) and the videos "
        "(clip.mp4, b.mp4) attached; use a hosted audio model such as gpt-audio, or paste a transcript; "
        "use a hosted model that reads video (a Gemini model), or describe it."
    )
    spoken = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    assert "cannot read the audio (wav data) attached" in _local_refusal(tmp_path, spoken)
    url_pdf = attach("https://e.com/q/report%202.pdf").part
    assert "cannot read the PDF (report 2.pdf) attached" in _local_refusal(tmp_path, url_pdf)
    image = attach_image("https://e.com/cat.png").part
    assert _local_refusal(tmp_path, image) == (
        "the local model reads text only: remove the images, or use a hosted model with image input "
        "(e.g. gpt-5-2-chat-latest)."
    )
    assert "the PDF (report.pdf) and the image (cat.png) attached" in _local_refusal(tmp_path, pdf, image)
