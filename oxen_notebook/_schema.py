"""Structured output: a Python type or a JSON Schema, as a request's ``response_format`` and as
the parser of the reply.

``OutputSchema.from_spec(spec)`` takes a pydantic model, a dataclass, a TypedDict, ``list[X]`` of
those, or a JSON Schema dict. It builds the strict JSON Schema that ``json_schema`` response
formats need (every object closes with ``additionalProperties: false`` and requires all its
properties; a list is wrapped as ``{"items": [...]}``, since strict schemas need an object root),
the instruction for models that only do ``json_object``, and parses and validates replies.

pydantic (and, for JSON Schema dicts, jsonschema) load only when a schema is built.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import functools
import importlib.util
import json
import re
import typing
from typing import Any

from ._annotations import annotation_dtype, pydantic_ready, python_fields
from ._errors import BadRequestError, MissingDependencyError, OxenError, ParameterError, SchemaError

__all__ = ["OutputSchema", "json_schema_support", "refuses_json_schema"]

_ACCEPTED = (
    "expected a pydantic model, a dataclass, a TypedDict, list[...] of one of those, or a JSON Schema dict"
)
_FENCE = re.compile(r"```[A-Za-z]*[ \t]*\r?\n(.*?)```", re.DOTALL)
_WRAPPER = "items"  # the property that carries a top-level list
_REPAIR_LINES = 5
_SCALARS = ("string", "integer", "number", "boolean")
# Error types whose input is the parent object or the whole reply: not worth quoting.
_NO_INPUT = {"missing", "required", "additionalProperties", "json_invalid", "empty"}


def _name(text: str) -> str:
    """A valid ``json_schema.name``: ``^[a-zA-Z0-9_-]{1,64}$``."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", text).strip("_")[:64] or "schema"


def _loc(parts: Any) -> str:
    """``("items", 0, "age")`` -> ``items[0].age``: the path in the JSON the model wrote."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)  # inputs come from JSON
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _line(error: dict[str, Any]) -> str:
    """``loc: msg (got input)``; the input only where it says more than the message."""
    shown = error["type"] not in _NO_INPUT and repr(error["input"]) not in error["msg"]
    got = f" (got {_short(error['input'])})" if shown else ""
    return f"{error['loc']}: {error['msg']}{got}" if error["loc"] else f"{error['msg']}{got}"


# -- strict JSON Schema ------------------------------------------------------------------------


def _resolve(root: dict[str, Any], ref: str) -> dict[str, Any]:
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        raise ParameterError(f"schema $ref {ref!r} is not supported: only local refs (#/$defs/...).")
    node: Any = root
    for key in ref[2:].split("/"):
        if not isinstance(node, dict) or key not in node:
            raise ParameterError(f"schema $ref {ref!r} points at nothing.")
        node = node[key]
    return node


def _is_nullable(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    return any(isinstance(v, dict) and _is_nullable(v) for v in node.get("anyOf", []))


def _nullable(node: dict[str, Any]) -> dict[str, Any]:
    if _is_nullable(node):
        return node
    # A plain scalar takes ["string", "null"] (clearer validation messages); anything with more
    # to say (enum, format, properties) an anyOf, which grammars keep whole.
    if node.get("type") in _SCALARS and set(node) <= {"type", "description", "title"}:
        return {**node, "type": [node["type"], "null"]}
    return {"anyOf": [node, {"type": "null"}]}


def _strict(
    node: Any, root: dict[str, Any], *, python: bool, close: bool = True, inside: frozenset[str] = frozenset()
) -> Any:
    """Make ``node`` (in place) what strict ``json_schema`` formats accept, as the openai SDK's
    ``to_strict_json_schema`` does. ``close=False`` only makes optional properties of a JSON
    Schema dict nullable: the schema a reply is validated against. ``inside`` holds the refs
    being inlined or defined around ``node``: one of them again is a recursive schema."""
    if not isinstance(node, dict):
        return node
    for key in ("$defs", "definitions"):
        if isinstance(node.get(key), dict):
            node[key] = {
                k: _strict(v, root, python=python, close=close, inside=inside | {f"#/{key}/{k}"})
                for k, v in node[key].items()
            }
    if python:
        node.pop("title", None)  # pydantic titles each field after its name: tokens, no meaning
    if "default" in node and node["default"] is None:
        node.pop("default")
    props = node.get("properties")
    if isinstance(props, dict):
        required = set(node.get("required", []))
        for key, value in props.items():
            value = _strict(value, root, python=python, close=close, inside=inside)
            # A Python field with a default validates a value of its own type; a JSON Schema's
            # optional property may be unknown, so it may be null rather than made up.
            props[key] = value if python or key in required else _nullable(value)
        if close:
            node["required"] = list(props)
    if close and (node.get("type") == "object" or isinstance(props, dict)):
        node.setdefault("additionalProperties", False)
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            node[key] = _strict(node[key], root, python=python, close=close, inside=inside)
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if isinstance(node.get(key), list):
            node[key] = [_strict(v, root, python=python, close=close, inside=inside) for v in node[key]]
    if close and isinstance(node.get("allOf"), list) and len(node["allOf"]) == 1:
        node.update(node.pop("allOf")[0])
    ref = node.get("$ref")
    if isinstance(ref, str) and len(node) > 1:
        if ref in inside:
            # A recursive schema (a tree): inlining would never end. A one-item anyOf holds the
            # $ref instead, and the siblings (a field's description) stay beside it.
            node.pop("$ref")
            if "anyOf" in node:
                node.clear()
                node["$ref"] = ref
            else:
                node["anyOf"] = [{"$ref": ref}]
            return node
        # Strict formats take no siblings beside a $ref (a description, or the root's $defs):
        # inline the target; the node's own keys win.
        merged = {**copy.deepcopy(_resolve(root, ref)), **node}
        merged.pop("$ref")
        node.clear()
        node.update(merged)
        return _strict(node, root, python=python, close=close, inside=inside | {ref})
    return node


def _refs(node: Any, found: set[str]) -> set[str]:
    if isinstance(node, dict) and isinstance(node.get("$ref"), str):
        found.add(node["$ref"])
    for value in node.values() if isinstance(node, dict) else node if isinstance(node, list) else ():
        _refs(value, found)
    return found


def _prune(root: dict[str, Any]) -> dict[str, Any]:
    """Drop the ``$defs`` that inlining left unused (each costs tokens in every request)."""
    defs = root.get("$defs")
    if not isinstance(defs, dict):
        return root
    keep: set[str] = set()
    todo = list(_refs({k: v for k, v in root.items() if k != "$defs"}, set()))
    while todo:
        name = todo.pop().removeprefix("#/$defs/")
        if name in defs and name not in keep:
            keep.add(name)
            todo.extend(_refs(defs[name], set()))
    root["$defs"] = {k: v for k, v in defs.items() if k in keep}
    if not root["$defs"]:
        del root["$defs"]
    return root


def _wrap(item_schema: dict[str, Any]) -> dict[str, Any]:
    """A top-level array as an object with one property (strict formats need an object root)."""
    root: dict[str, Any] = {
        "type": "object",
        "properties": {_WRAPPER: item_schema},
        "required": [_WRAPPER],
        "additionalProperties": False,
    }
    for key in ("$schema", "$defs", "definitions"):  # root keywords: "#/$defs/X" refs still resolve
        if key in item_schema:
            root[key] = item_schema.pop(key)
    return root


# -- column dtypes -----------------------------------------------------------------------------


def _dtype_of_schema(node: dict[str, Any], root: dict[str, Any]) -> str:
    if isinstance(node.get("$ref"), str):
        return _dtype_of_schema(_resolve(root, node["$ref"]), root)
    variants = [v for v in node.get("anyOf", node.get("oneOf", [])) if not _is_nullable(v)]
    if variants:
        return _dtype_of_schema(variants[0], root) if len(variants) == 1 else "object"
    if "enum" in node or "const" in node:
        return "category"
    kind = node.get("type")
    kinds = [k for k in kind if k != "null"] if isinstance(kind, list) else [kind]
    dtypes = {"integer": "Int64", "number": "Float64", "boolean": "boolean", "string": "string"}
    return dtypes.get(kinds[0], "object") if len(kinds) == 1 else "object"


# -- the schema --------------------------------------------------------------------------------


def _accepted(spec: Any) -> bool:
    """A pydantic model, a dataclass or a TypedDict (the types with named fields)."""
    import pydantic
    import typing_extensions

    if isinstance(spec, type) and (issubclass(spec, pydantic.BaseModel) or dataclasses.is_dataclass(spec)):
        return True
    return typing_extensions.is_typeddict(spec)


class OutputSchema:
    """What a reply must be: the request's ``response_format``, and the parser of the reply.

    Build one with :meth:`from_spec`, once per schema (building one costs a pydantic schema)."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self._is_list = False
        self._adapter: Any = None  # pydantic TypeAdapter, for Python types
        self._validator: Any = None  # jsonschema validator, for JSON Schema dicts
        self._item: Any = None  # the Python type of one object (for columns)
        if isinstance(spec, dict):
            self._init_dict(spec)
        else:
            self._init_python(spec)

    @classmethod
    def from_spec(cls, spec: Any) -> OutputSchema:
        """``spec``: a pydantic model class, a dataclass, a TypedDict, ``list[X]`` of those, or a
        JSON Schema dict (an object or an array). An ``OutputSchema`` is returned as it is."""
        return spec if isinstance(spec, OutputSchema) else cls(spec)

    def _init_python(self, spec: Any) -> None:
        import pydantic

        item = spec
        if typing.get_origin(spec) is list:
            (item,) = typing.get_args(spec) or (None,)
            self._is_list = True
        if not _accepted(item):
            raise ParameterError(f"schema={spec!r} is not supported: {_ACCEPTED}.")
        try:
            usable = pydantic_ready(item)
            self._adapter = pydantic.TypeAdapter(list[usable] if self._is_list else usable)
            schema = self._adapter.json_schema()
        except (pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise ParameterError(f"schema={spec!r} cannot be used: {first}") from None
        self._item = item
        self._label = f"list[{item.__name__}]" if self._is_list else item.__name__
        self.name = _name(f"list_of_{item.__name__}" if self._is_list else item.__name__)
        self._strict_schema = self._finish(schema, python=True)

    def _init_dict(self, spec: dict[str, Any]) -> None:
        if importlib.util.find_spec("jsonschema") is None:
            raise MissingDependencyError(
                "a JSON Schema dict is validated with jsonschema, which is not installed: "
                "pip install jsonschema (or pass a pydantic model, dataclass or TypedDict)."
            )
        import jsonschema

        kind = spec.get("type")
        if kind not in ("object", "array"):
            raise ParameterError(
                f"schema dict must describe an object or an array (type {kind!r}): {_ACCEPTED}."
            )
        cls = jsonschema.validators.validator_for(spec, default=jsonschema.Draft202012Validator)
        try:
            cls.check_schema(spec)
        except jsonschema.SchemaError as exc:
            raise ParameterError(f"schema dict is not a valid JSON Schema: {exc.message}") from None
        self._is_list = kind == "array"
        title = spec.get("title")
        self.name = _name(title) if isinstance(title, str) else "schema"
        self._label = title if isinstance(title, str) and title else "the schema"
        lenient = copy.deepcopy(spec)
        self._validator = cls(_strict(lenient, lenient, python=False, close=False, inside=frozenset({"#"})))
        self._strict_schema = self._finish(copy.deepcopy(spec), python=False)

    def _finish(self, schema: dict[str, Any], *, python: bool) -> dict[str, Any]:
        if self._is_list:
            schema = _wrap(schema)
        return _prune(_strict(schema, schema, python=python, inside=frozenset({"#"})))

    def __repr__(self) -> str:
        return f"OutputSchema({getattr(self, '_label', self.spec)!r})"

    @property
    def is_list(self) -> bool:
        """Whether the value is a list (a ``list[X]`` spec, or a JSON Schema of type array)."""
        return self._is_list

    # -- the request ---------------------------------------------------------------------------

    @functools.cached_property
    def _schema_text(self) -> str:
        """The strict JSON Schema as compact JSON, made once (a batch asks for it every row)."""
        return json.dumps(self._strict_schema, separators=(",", ":"), ensure_ascii=False)

    @property
    def json_schema(self) -> dict[str, Any]:
        """The strict JSON Schema (a fresh copy, so request bodies do not share it: read back from
        its JSON, several times cheaper than a deep copy)."""
        return json.loads(self._schema_text)

    def response_format(self) -> dict[str, Any]:
        """``response_format`` for models that do structured outputs (strict ``json_schema``)."""
        return {
            "type": "json_schema",
            "json_schema": {"name": self.name, "schema": self.json_schema, "strict": True},
        }

    def instruction(self) -> str:
        """The text to add to the prompt for models that only do ``{"type": "json_object"}``."""
        return f"Reply with one JSON object that matches this JSON Schema: {self._schema_text}"

    # -- the reply -----------------------------------------------------------------------------

    def parse(self, text: str) -> Any:
        """The reply's value: a model or dataclass instance, a dict (TypedDict, JSON Schema), or a
        list of those. Fenced (```json) or padded text is accepted. Raises :class:`SchemaError`."""
        if self._adapter is not None and not self._is_list and text[:1] == "{":
            try:  # the common case, a bare object: parsed and validated in one pass by pydantic
                return self._adapter.validate_json(text)
            except ValueError:  # pydantic's ValidationError: the path below says what is wrong
                pass
        data = _load_json(text, self._label)
        wrapped = self._is_list and isinstance(data, dict) and set(data) == {_WRAPPER}
        if wrapped:
            data = data[_WRAPPER]
        prefix = (_WRAPPER,) if wrapped else ()
        try:
            value, errors = (
                self._validate_python(data) if self._adapter is not None else self._validate_dict(data)
            )
        except RecursionError:  # jsonschema validates by recursion: a few hundred levels is its end
            raise _too_deep(text, self._label) from None
        if not errors:
            return value
        for error in errors:
            error["loc"] = _loc(prefix + error["loc"])
        more = f"; {len(errors)} errors" if len(errors) > 1 else ""
        message = f"the reply does not match {self._label}: {_line(errors[0])}{more}"
        raise SchemaError(message, errors=errors, text=text)

    def _validate_python(self, data: Any) -> tuple[Any, list[dict[str, Any]]]:
        import pydantic

        try:
            return self._adapter.validate_python(data), []
        except pydantic.ValidationError as exc:
            found = exc.errors(include_url=False)
        return None, [{k: e.get(k) for k in ("loc", "msg", "input", "type")} for e in found]  # loc: a tuple

    def _validate_dict(self, data: Any) -> tuple[Any, list[dict[str, Any]]]:
        errors = []
        for e in sorted(self._validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
            loc = tuple(e.absolute_path)
            if e.validator == "required":  # name the missing property, as pydantic does
                loc += tuple(p for p in e.validator_value if e.message == f"{p!r} is a required property")
            errors.append({"loc": loc, "msg": e.message, "input": e.instance, "type": str(e.validator)})
        return data, errors

    def repair_prompt(self, error: SchemaError) -> str:
        """A follow-up user message asking the model to correct its reply."""
        lines = [f"- {_line(e)}" for e in error.errors[:_REPAIR_LINES]]
        if len(error.errors) > _REPAIR_LINES:
            lines.append(f"- and {len(error.errors) - _REPAIR_LINES} more")
        return (
            "Your reply did not match the JSON Schema:\n"
            + "\n".join(lines)
            + "\nReply with the corrected JSON only, nothing else."
        )

    def dump(self, value: Any) -> Any:
        """JSON-able Python for ``value`` (for records): the shape the model writes, unwrapped."""
        if self._adapter is None:
            return copy.deepcopy(value)
        return self._adapter.dump_python(value, mode="json", by_alias=True)

    # -- columns -------------------------------------------------------------------------------

    def columns(self) -> dict[str, str]:
        """``{field: pandas dtype}`` of one object (of one item, for a list schema)."""
        if self._item is not None:
            return {name: annotation_dtype(tp) for name, tp in python_fields(self._item).items()}
        root = self._strict_schema
        node = root["properties"][_WRAPPER]["items"] if self._is_list else root
        node = _resolve(root, node["$ref"]) if "$ref" in node else node
        return {name: _dtype_of_schema(sub, root) for name, sub in node.get("properties", {}).items()}

    def frame_columns(self, values: list[Any], *, index: Any = None) -> dict[str, Any]:
        """``{field: pandas.Series}`` from parsed objects (items, for a list schema), typed by
        :meth:`columns`; a row whose value is None (it failed) gets NA in every column."""
        import pandas as pd

        out = {}
        for name, dtype in self.columns().items():
            cells = [_cell(value, name) for value in values]
            if dtype == "category":
                cells = [c.value if isinstance(c, enum.Enum) else c for c in cells]
            out[name] = pd.Series(cells, dtype=dtype, index=index, name=name)
        return out


def _cell(value: Any, name: str) -> Any:
    if value is None:
        return None
    return value.get(name) if isinstance(value, dict) else getattr(value, name, None)


def _too_deep(text: str, label: str) -> SchemaError:
    """The error for a reply nested deeper than Python's JSON reader (or the validator) can go."""
    message = "the JSON is nested too deeply to read"
    return SchemaError(
        f"the reply is not usable JSON for {label}: {message}; a reply that deep is not an answer.",
        errors=[{"loc": "", "msg": message, "input": None, "type": "json_invalid"}],
        text=text,
    )


def _load_json(text: str, label: str) -> Any:
    if not isinstance(text, str) or not text.strip():
        raise SchemaError(
            f"the reply is empty, not JSON for {label}: check finish_reason (raise max_tokens?).",
            errors=[{"loc": "", "msg": "empty reply", "input": text, "type": "empty"}],
            text=text if isinstance(text, str) else "",
        )
    fenced = _FENCE.search(text)
    body = (fenced.group(1) if fenced else text).strip()
    try:
        return json.loads(body)
    except RecursionError:
        raise _too_deep(text, label) from None
    except ValueError as exc:
        first = str(exc)  # the text, not the exception: keeping it would keep its frames alive
    # Prose around the JSON (models without json_object): the span from the first opening
    # bracket to the last closing one.
    start = min((i for i in (body.find("{"), body.find("[")) if i >= 0), default=-1)
    end = max(body.rfind("}"), body.rfind("]"))
    if 0 <= start < end:
        try:
            return json.loads(body[start : end + 1])
        except RecursionError:
            raise _too_deep(text, label) from None
        except ValueError:
            pass
    raise SchemaError(
        f"the reply is not valid JSON for {label}: {first}",
        errors=[{"loc": "", "msg": f"invalid JSON: {first}", "input": text, "type": "json_invalid"}],
        text=text,
    )


# -- fallback triggers -------------------------------------------------------------------------


def _get(node: Any, key: str) -> Any:
    return node.get(key) if isinstance(node, dict) else None


def _format_types(spec: Any) -> list[Any] | None:
    kind = _get(_get(spec, "properties"), "type")
    if isinstance(_get(kind, "enum"), list):
        return kind["enum"]
    if isinstance(kind, dict) and "const" in kind:
        return [kind["const"]]
    variants = _get(spec, "oneOf") or _get(spec, "anyOf")  # OpenAI's spec: one variant per type
    found = [_format_types(v) for v in variants] if isinstance(variants, list) else [None]
    return None if None in found else [t for types_ in found for t in types_ or []]


def json_schema_support(request_schema: dict[str, Any] | None) -> bool | None:
    """Whether a model's published request schema allows ``response_format`` type
    ``json_schema``: False when it lists the types without it, None when it does not say."""
    allowed = _format_types(_get(_get(request_schema, "properties"), "response_format"))
    return None if allowed is None else "json_schema" in allowed


def refuses_json_schema(error: OxenError) -> bool:
    """Whether a request failed because the model does not take a ``json_schema`` response format
    (then send ``{"type": "json_object"}`` with :meth:`OutputSchema.instruction`)."""
    if not isinstance(error, BadRequestError):
        return False
    text = " ".join(str(p) for p in (error.title, error.detail, error.message) if p).lower()
    return "response_format" in text or "json_schema" in text
