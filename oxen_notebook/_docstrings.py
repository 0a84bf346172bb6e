"""Docstrings read for what a model needs: the description, and one line per argument.

Google style (``Args:``), NumPy style (``Parameters`` over dashes) and reST (``:param x:``).
"""

from __future__ import annotations

import inspect
import re

__all__ = ["parse_docstring"]

_SECTIONS = (
    "args|arguments|parameters|params|keyword args|keyword arguments|other parameters|returns?|yields?"
    "|raises|examples?|notes?|see also|attributes|warnings?|references|todo"
)
_GOOGLE_HEADER = re.compile(rf"^({_SECTIONS})\s*:\s*$", re.IGNORECASE)
_NUMPY_HEADER = re.compile(rf"^({_SECTIONS})\s*$", re.IGNORECASE)
_ARG_SECTIONS = {"args", "arguments", "parameters", "params", "keyword args", "keyword arguments"}
_GOOGLE_ARG = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_NUMPY_ARG = re.compile(r"^\*{0,2}(\w+)\s*(?::.*)?$")
_REST_PARAM = re.compile(r"^:param\s+(?:[^:]*\s)?\*{0,2}(\w+)\s*:\s*(.*)$")
_DASHES = re.compile(r"^-{3,}\s*$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _header(lines: list[str], i: int) -> tuple[str, bool] | None:
    """The section line ``i`` opens (lower case) and whether it is Google style, or None."""
    google = _GOOGLE_HEADER.match(lines[i])
    if google:
        return google.group(1).lower(), True
    numpy = _NUMPY_HEADER.match(lines[i])
    if numpy and i + 1 < len(lines) and _DASHES.match(lines[i + 1]):
        return numpy.group(1).lower(), False
    return None


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The description (the text before the first section, paragraphs kept) and the per-argument
    descriptions of a Google-style (``Args:``), NumPy-style (``Parameters``) or reST (``:param x:``)
    docstring."""
    lines = inspect.cleandoc(doc or "").splitlines()
    end = len(lines)
    for i, line in enumerate(lines):
        if _header(lines, i) or line.startswith((":", ">>>")):
            end = i
            break
    paragraphs = "\n".join(lines[:end]).strip().split("\n\n")
    description = "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())
    args: dict[str, str] = {}
    i = end
    while i < len(lines):
        line = lines[i]
        rest = _REST_PARAM.match(line)
        header = _header(lines, i)
        if rest:
            text, i = _continued(lines, i + 1, rest.group(2), _indent(line))
            args[rest.group(1)] = text
        elif header and header[0] in _ARG_SECTIONS:
            google = header[1]
            i = _read_arg_section(lines, i + (1 if google else 2), google, args)
        else:
            i += 1
    return description, args


def _continued(lines: list[str], i: int, first: str, indent: int) -> tuple[str, int]:
    """``first`` and the lines after it indented deeper than ``indent``, as one line."""
    parts = [first]
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > indent):
        if not lines[i].strip() and (i + 1 >= len(lines) or _indent(lines[i + 1]) <= indent):
            break
        parts.append(lines[i])
        i += 1
    return " ".join(" ".join(parts).split()), i


def _read_arg_section(lines: list[str], i: int, google: bool, args: dict[str, str]) -> int:
    entry_indent: int | None = None
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        indent = _indent(line)
        if google and indent == 0:  # the section ends where its entries' indentation does
            return i
        if not google and indent == 0 and _header(lines, i):
            return i
        entry_indent = indent if entry_indent is None else entry_indent
        match = (_GOOGLE_ARG if google else _NUMPY_ARG).match(line.strip())
        if indent != entry_indent or not match:
            i += 1
            continue
        first = match.group(2) if google else ""
        text, i = _continued(lines, i + 1, first, indent)
        args[match.group(1)] = text
    return i
