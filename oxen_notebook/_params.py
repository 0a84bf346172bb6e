"""Request parameters: names, validation, and the checks against a model's request schema."""

from __future__ import annotations

import math
from typing import Any

from ._errors import ParameterError

__all__ = ["PARAMETERS", "RANGES", "check_against_schema", "range_schema", "validate_params"]

#: Parameters a chat-completions request accepts, with a short description for error messages.
PARAMETERS: dict[str, str] = {
    "temperature": "number from 0 to 2",
    "max_tokens": "positive integer",
    "top_p": "number from 0 to 1",
    "frequency_penalty": "number from -2 to 2",
    "presence_penalty": "number from -2 to 2",
    "stop": "string or list of up to 4 strings",
    "seed": "integer",
    "response_format": 'dict such as {"type": "json_object"}',
    "tools": "list of tool dicts",
    "tool_choice": '"auto", "none", "required" or a tool dict',
    "parallel_tool_calls": "bool",
    "user": "string",
    "logit_bias": "dict of token id to bias",
    "extra_body": "dict merged into the request body",
    "extra_headers": "dict of extra HTTP headers",
}

#: The one source of the numeric parameters' ranges (the Session's checks, the local model's
#: request schema and its request parser all read it).
RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "frequency_penalty": (-2.0, 2.0),
    "presence_penalty": (-2.0, 2.0),
}


def range_schema() -> dict[str, dict[str, Any]]:
    """JSON Schema properties for the ranged parameters and ``max_tokens``."""
    props: dict[str, dict[str, Any]] = {
        name: {"type": "number", "minimum": low, "maximum": high} for name, (low, high) in RANGES.items()
    }
    props["max_tokens"] = {"type": "integer", "minimum": 1}
    return props


def _fail(name: str, value: Any) -> ParameterError:
    return ParameterError(f"{name}={value!r} is invalid: expected a {PARAMETERS[name]}.")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_params(params: dict[str, Any]) -> dict[str, Any]:
    """Check names and values; return the params without ``None`` values."""
    clean: dict[str, Any] = {}
    for name, value in params.items():
        if name not in PARAMETERS:
            known = ", ".join(sorted(PARAMETERS))
            raise ParameterError(f"unknown parameter {name!r}; known parameters: {known}.")
        if value is None:
            continue
        if name in RANGES:
            low, high = RANGES[name]
            if not _is_number(value) or not low <= value <= high:
                raise _fail(name, value)
        elif name == "max_tokens":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise _fail(name, value)
        elif name == "seed":
            if not isinstance(value, int) or isinstance(value, bool):
                raise _fail(name, value)
        elif name == "stop":
            ok = isinstance(value, str) or (
                isinstance(value, (list, tuple))
                and len(value) <= 4
                and all(isinstance(v, str) for v in value)
            )
            if not ok:
                raise _fail(name, value)
        elif name in ("response_format", "extra_body", "extra_headers", "logit_bias"):
            if not isinstance(value, dict):
                raise _fail(name, value)
        elif name == "tools":
            if not isinstance(value, (list, tuple)) or not all(isinstance(t, dict) for t in value):
                raise _fail(name, value)
            value = list(value)
        elif name == "parallel_tool_calls" and not isinstance(value, bool):
            raise _fail(name, value)
        clean[name] = value
    return clean


_JSON_TYPES = {
    "number": (int, float),
    "integer": (int,),
    "string": (str,),
    "boolean": (bool,),
    "array": (list, tuple),
    "object": (dict,),
}


def check_against_schema(params: dict[str, Any], schema: dict[str, Any] | None, model: str) -> None:
    """Check top-level parameter types, ranges and enums against a model's JSON request schema."""
    props = (schema or {}).get("properties")
    if not isinstance(props, dict):
        return
    for name, value in params.items():
        if name in ("extra_body", "extra_headers"):
            continue
        spec = props.get(name)
        if spec is None:
            if schema.get("additionalProperties") is False:
                raise ParameterError(f"model {model!r} does not accept the parameter {name!r}.")
            continue
        if not isinstance(spec, dict):
            continue
        types = spec.get("type")
        if isinstance(types, str):
            types = [types]
        if types:
            allowed = tuple(t for k in types for t in _JSON_TYPES.get(k, ()))
            if allowed and (
                not isinstance(value, allowed) or (isinstance(value, bool) and "boolean" not in types)
            ):
                raise ParameterError(
                    f"{name}={value!r} is invalid for model {model!r}: expected {' or '.join(types)}."
                )
        if _is_number(value):
            low, high = spec.get("minimum"), spec.get("maximum")
            if (low is not None and value < low) or (high is not None and value > high):
                raise ParameterError(
                    f"{name}={value!r} is out of range for model {model!r}: expected {low} to {high}."
                )
        if "enum" in spec and value not in spec["enum"]:
            raise ParameterError(
                f"{name}={value!r} is invalid for model {model!r}: expected one of {spec['enum']}."
            )
