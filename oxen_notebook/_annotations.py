"""Python type annotations as pydantic and pandas take them.

:func:`pydantic_ready` rebuilds every ``typing.TypedDict`` in an annotation as a
``typing_extensions.TypedDict`` (pydantic refuses ``typing``'s before Python 3.12, and users write
``from typing import TypedDict``); :func:`python_fields` and :func:`annotation_dtype` give a type's
fields and the pandas dtype of each (a ``schema=`` column).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import operator
import sys
import types
import typing
from typing import Any

from ._errors import ParameterError

__all__ = ["annotation_dtype", "pydantic_ready", "python_fields"]


def pydantic_ready(spec: Any, made: dict[Any, Any] | None = None) -> Any:
    """``spec`` with every ``typing.TypedDict`` in it rebuilt as a ``typing_extensions.TypedDict``
    (pydantic takes only those before Python 3.12); anything else as it is."""
    import typing_extensions

    if sys.version_info >= (3, 12):
        return spec
    made = {} if made is None else made
    if isinstance(spec, type) and spec in made:
        if made[spec] is None:  # a TypedDict that holds itself
            raise ParameterError(
                f"the recursive typing.TypedDict {spec.__name__} cannot be used on Python "
                f"{sys.version_info.major}.{sys.version_info.minor}: import TypedDict from "
                "typing_extensions instead."
            )
        return made[spec]
    if isinstance(spec, type) and typing.is_typeddict(spec) and type(spec).__module__ == "typing":
        made[spec] = None
        hints = typing.get_type_hints(spec, include_extras=True)
        fields = {}
        for name, hint in hints.items():
            hint = pydantic_ready(hint, made)
            if typing.get_origin(hint) not in (typing_extensions.Required, typing_extensions.NotRequired):
                wrap = (
                    typing_extensions.Required
                    if name in spec.__required_keys__
                    else typing_extensions.NotRequired
                )
                hint = wrap[hint]
            fields[name] = hint
        rebuilt: Any = typing_extensions.TypedDict(spec.__name__, fields)  # type: ignore[operator]
        rebuilt.__doc__, rebuilt.__module__, rebuilt.__qualname__ = (
            spec.__doc__,
            spec.__module__,
            spec.__qualname__,
        )
        made[spec] = rebuilt
        return rebuilt
    args = typing.get_args(spec)
    if not args or isinstance(spec, type):
        return spec
    new = tuple(pydantic_ready(a, made) for a in args)
    if new == args:
        return spec
    origin = typing.get_origin(spec)
    if origin is typing.Annotated:
        return typing.Annotated[(new[0], *spec.__metadata__)]  # type: ignore[name-defined]
    if origin is types.UnionType:
        return functools.reduce(operator.or_, new)
    try:
        return spec.copy_with(new)  # typing's generic aliases: Optional[X], List[X], Dict[K, V]
    except AttributeError:
        return origin[new]  # list[X], dict[K, V]


def python_fields(cls: type) -> dict[str, Any]:
    """Field name -> annotation, in declaration order."""
    fields = getattr(cls, "model_fields", None)
    if isinstance(fields, dict):  # a pydantic model
        return {name: info.annotation for name, info in fields.items()}
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # an annotation that does not resolve here: untyped columns
        hints = {}
    names = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else list(hints)
    return {name: hints.get(name, Any) for name in names}


def annotation_dtype(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return annotation_dtype(typing.get_args(tp)[0])
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return annotation_dtype(args[0]) if len(args) == 1 else "object"
    if origin is typing.Literal:
        return "category"
    if not isinstance(tp, type):
        return "object"
    if issubclass(tp, enum.Enum):
        return "category"
    for base, dtype in ((bool, "boolean"), (int, "Int64"), (float, "Float64"), (str, "string")):
        if issubclass(tp, base):
            return dtype
    return "object"
