"""Python functions as tools: a :class:`Tool` is a function with the JSON Schema of its
arguments (from the signature, the type hints and the docstring), a validator and a runner.
Running the model's calls is ``_toolbox.py``'s. pydantic is imported on first use.
"""

from __future__ import annotations

import functools
import inspect
import re
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ._annotations import pydantic_ready
from ._docstrings import parse_docstring
from ._errors import ParameterError

__all__ = ["DENIED", "MAX_TOOL_ROUNDS", "Tool", "exception_text", "one_line", "spec_tool"]

#: Rounds of tool calls one ``ask`` answers before it gives up (:class:`ToolLoopError`).
MAX_TOOL_ROUNDS = 8
#: What the model is told when ``approve`` refused a call.
DENIED = "denied by the user"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what OpenAI-compatible APIs accept as a tool name
_LIMIT = 300


def one_line(text: Any, limit: int = _LIMIT) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def exception_text(error: BaseException) -> str:
    message = one_line(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


# -- tools ----------------------------------------------------------------------------------------


def _drop_titles(node: Any) -> Any:
    """pydantic titles every schema ("City" for ``city``): tokens the model gains nothing from."""
    if isinstance(node, list):
        return [_drop_titles(item) for item in node]
    if not isinstance(node, dict):
        return node
    clean: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "$defs", "patternProperties") and isinstance(value, dict):
            clean[key] = {name: _drop_titles(schema) for name, schema in value.items()}
        elif key in ("default", "enum", "const", "examples"):  # values, not schemas
            clean[key] = value
        else:
            clean[key] = _drop_titles(value)
    return clean


@dataclass(frozen=True)
class Tool:
    """A tool the model may call: its name, description and parameters' JSON Schema, and the
    Python function that answers it (``None`` for a tool given as a spec dict)."""

    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[..., Any] | None = field(default=None, repr=False, compare=False)
    _validator: Any = field(default=None, repr=False, compare=False)
    _positional: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def from_function(
        cls, func: Callable[..., Any], *, name: str | None = None, description: str | None = None
    ) -> Tool:
        """A tool from a function's name, docstring and signature (its type hints become the JSON
        Schema, via pydantic; defaults are kept). ``*args``/``**kwargs`` cannot be described."""
        if not callable(func) or isinstance(func, type):
            raise ParameterError(f"a tool is a function or a tool spec dict, not {func!r}.")
        name = name or getattr(func, "__name__", None)
        if not name or name == "<lambda>":
            raise ParameterError(f"{func!r} has no name: use def, or Tool.from_function(f, name=...).")
        if not _NAME.match(name):
            raise ParameterError(f"tool name {name!r} is invalid: use 1 to 64 letters, digits, _ or -.")
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise ParameterError(f"tool {name}: a generator cannot be a tool; return the value instead.")
        try:  # eval_str: hints written as strings (from __future__ import annotations) resolve here
            signature = inspect.signature(func, eval_str=True)
        except NameError as error:
            raise ParameterError(
                f"tool {name}: a type hint cannot be resolved ({error}); define its types at module level."
            ) from None
        except (TypeError, ValueError) as error:
            raise ParameterError(f"tool {name}: its signature cannot be read ({one_line(error)}).") from None
        documented = func.func if isinstance(func, functools.partial) else func
        doc_description, arg_docs = parse_docstring(inspect.getdoc(documented))
        validator, positional = _argument_model(name, signature)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a default that is not JSON is left out of the schema
            schema = _drop_titles(validator.model_json_schema(by_alias=True))
        for arg, prop in schema.get("properties", {}).items():
            if arg in arg_docs and arg_docs[arg] and "description" not in prop:
                prop["description"] = arg_docs[arg]
        schema.setdefault("properties", {})
        return cls(
            name=name,
            description=description if description is not None else doc_description,
            parameters=schema,
            function=func,
            _validator=validator,
            _positional=positional,
        )

    @property
    def is_async(self) -> bool:
        """The function is a coroutine function (or an object whose ``__call__`` is one)."""
        function = self.function
        call = type(function).__call__ if function is not None else None
        return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(call)

    def spec(self) -> dict[str, Any]:
        """The tool as a chat-completions request lists it."""
        function: dict[str, Any] = {"name": self.name}
        if self.description:
            function["description"] = self.description
        function["parameters"] = self.parameters
        return {"type": "function", "function": function}

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The arguments as the function takes them (nested models built, ``"3"`` to ``3`` where
        the hint says int, defaults filled in); :class:`ParameterError` naming the fields that do
        not fit."""
        if self._validator is None:
            return dict(arguments)
        import pydantic

        try:
            model = self._validator.model_validate(arguments)
        except pydantic.ValidationError as error:
            raise ParameterError(f"invalid arguments for {self.name}: {_validation_text(error)}") from None
        fields = type(model).model_fields
        return {info.alias or key: getattr(model, key) for key, info in fields.items()}

    def execute(self, values: dict[str, Any]) -> Any:
        """Call the function with validated ``values`` (a coroutine function runs to its end on a
        new event loop: call this where no loop is running, as :class:`Toolbox` does)."""
        if self.function is None:
            raise ParameterError(f"tool {self.name} is a spec with no function to run.")
        args, kwargs = self._split(values)
        result = self.function(*args, **kwargs)
        if inspect.isawaitable(result):
            import asyncio

            return asyncio.run(_awaited(result))
        return result

    async def aexecute(self, values: dict[str, Any]) -> Any:
        """The async twin of :meth:`execute`: coroutine functions are awaited on this loop, plain
        functions run in a worker thread."""
        if self.function is None:
            raise ParameterError(f"tool {self.name} is a spec with no function to run.")
        if not self.is_async:
            import asyncio

            return await asyncio.to_thread(self.execute, values)
        args, kwargs = self._split(values)
        return await self.function(*args, **kwargs)

    def _split(self, values: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        kwargs = dict(values)
        args = [kwargs.pop(name) for name in self._positional if name in kwargs]
        return args, kwargs


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _argument_model(name: str, signature: inspect.Signature) -> tuple[Any, tuple[str, ...]]:
    """A pydantic model of the parameters. Fields are named ``a0, a1, ...`` with the parameter's
    name as alias, so a parameter may be called ``json``, ``schema`` or ``_x``."""
    import pydantic

    fields: dict[str, Any] = {}
    positional: list[str] = []
    for i, param in enumerate(signature.parameters.values()):
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            star = "*" if param.kind == param.VAR_POSITIONAL else "**"
            raise ParameterError(
                f"tool {name}: {star}{param.name} cannot be described to a model; name each parameter."
            )
        if param.kind == param.POSITIONAL_ONLY:
            positional.append(param.name)
        annotation = Any if param.annotation is param.empty else pydantic_ready(param.annotation)
        default = ... if param.default is param.empty else param.default
        fields[f"a{i}"] = (annotation, pydantic.Field(default, alias=param.name))
    config = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=False)
    try:
        model = pydantic.create_model(name, __config__=config, **fields)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.model_json_schema(by_alias=True)
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticInvalidForJsonSchema):
        culprit = next((p for p in signature.parameters.values() if not _describable(p.annotation)), None)
        what = (
            f"parameter {culprit.name!r} has type {_type_name(culprit.annotation)}, which"
            if culprit
            else "a type"
        )
        raise ParameterError(
            f"tool {name}: {what} has no JSON Schema; "
            "use str, int, float, bool, Literal, list, dict, dataclasses or pydantic models."
        ) from None
    except (pydantic.PydanticUserError, TypeError) as error:
        raise ParameterError(f"tool {name}: {one_line(error).split(' For further information')[0]}") from None
    return model, tuple(positional)


def _describable(annotation: Any) -> bool:
    import pydantic

    if annotation is inspect.Parameter.empty:
        return True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pydantic.TypeAdapter(annotation).json_schema()
    except Exception:
        return False
    return True


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or repr(annotation)


def _validation_text(error: Any) -> str:
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or "arguments"
        got = "" if item["type"] == "missing" else f" (got {one_line(repr(item.get('input')), 60)})"
        parts.append(f"{where}: {item['msg']}{got}")
    return one_line("; ".join(parts))


def spec_tool(spec: dict[str, Any]) -> Tool:
    function = spec.get("function") if spec.get("type", "function") == "function" else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not name:
        raise ParameterError(
            'a tool spec is {"type": "function", "function": {"name": ..., "parameters": {...}}}, '
            f"not {one_line(repr(spec), 80)}."
        )
    return Tool(
        name=name,
        description=function.get("description") or "",
        parameters=function.get("parameters") or {"type": "object", "properties": {}},
    )
