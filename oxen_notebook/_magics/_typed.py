"""``--schema`` and ``--tools`` in a cell: names from the notebook's namespace, and the ``--approve``
prompt. A bad name is a one-line ``UsageError`` that names it and says what is expected."""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from typing import Any

from IPython.core.error import StdinNotImplementedError, UsageError

from .._errors import ParameterError
from .._schema import OutputSchema
from ._views import call_text

__all__ = ["Approver", "resolve_schema", "resolve_tools"]

_LIST = re.compile(r"^list\[\s*(\w+)\s*\]$")
_KINDS = "a pydantic model, dataclass, TypedDict or JSON Schema dict"


def _a(value: Any) -> str:
    kind = "class" if isinstance(value, type) else type(value).__name__
    return f"{'an' if kind[0].lower() in 'aeiou' else 'a'} {kind}"


def resolve_schema(name: str, namespace: Mapping[str, Any]) -> OutputSchema:
    """``--schema Person`` or ``--schema 'list[Person]'``: the notebook's ``Person`` as the turn's
    schema (built here, so a type that cannot be one fails before anything is sent)."""
    match = _LIST.match(name.strip())
    key = match.group(1) if match else name.strip()
    if not key.isidentifier():
        raise UsageError(f"--schema {name}: give the name of {_KINDS} in the notebook, or list[Name].")
    if key not in namespace:
        raise UsageError(f"--schema {name}: nothing named {key!r} in the notebook; define {_KINDS} first.")
    value = namespace[key]
    if match and not isinstance(value, type):
        raise UsageError(
            f"--schema {name}: {key} is {_a(value)}; list[...] takes a model, dataclass or TypedDict."
        )
    if not isinstance(value, (type, dict)) and typing.get_origin(value) is not list:
        raise UsageError(f"--schema {name}: {key} is {_a(value)}, not {_KINDS}.")
    try:
        return OutputSchema.from_spec(list[value] if match else value)  # type: ignore[valid-type]
    except ParameterError as exc:
        if isinstance(value, dict):
            raise UsageError(f"--schema {name}: {exc}") from None
        reason = str(exc).split(": ", 1)[-1]  # after "schema=<repr> is not supported"
        raise UsageError(f"--schema {name}: {key} cannot be a schema: {reason}") from None


def resolve_tools(names: str, namespace: Mapping[str, Any]) -> list[Any]:
    """``--tools get_weather,get_time``: the notebook's functions of those names, in that order."""
    tools = []
    wanted = [part.strip() for part in names.split(",") if part.strip()]
    if not wanted:
        raise UsageError("--tools needs function names, such as --tools get_weather,get_time.")
    for name in wanted:
        if name not in namespace:
            raise UsageError(f"--tools: no function named {name!r} in the notebook; define it first.")
        value = namespace[name]
        if not callable(value) or isinstance(value, type):
            raise UsageError(f"--tools: {name} is {_a(value)}, not a function.")
        tools.append(value)
    return tools


class Approver:
    """``--approve``: asks ``run name(args)? [y/N]`` on stdin (kernels forward ``input()`` to the
    frontend). Only y or yes runs the call. Interrupting at the prompt denies this call and the
    rest, and stops the turn after the round (``interrupted``); a frontend that cannot answer
    ``input()`` denies every call (``unavailable`` says why)."""

    def __init__(self) -> None:
        self.turn: Any = None  # set once the turn exists; stopped on an interrupt at the prompt
        self.interrupted = False
        self.unavailable: str | None = None

    def __call__(self, call: Any) -> bool:
        if self.interrupted or self.unavailable:
            return False
        try:
            answer = input(f"run {call_text(call)}? [y/N] ")
        except KeyboardInterrupt:
            self.interrupted = True
            if self.turn is not None:
                self.turn.stop()  # the round is answered (denied), then nothing more is sent
            return False
        except (EOFError, StdinNotImplementedError):
            self.unavailable = "this frontend cannot answer input(), so --approve denied every call"
            return False
        return answer.strip().lower() in ("y", "yes")
