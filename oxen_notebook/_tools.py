"""Python functions as tools: their JSON schema, the model's calls, running them, the answers.

Sans-I/O but for running the tools themselves: no requests and no Session here. A reply's
assembled ``tool_calls`` become :class:`ToolCall` values (:meth:`Toolbox.calls_from`), a
:class:`Toolbox` validates and runs them (concurrently when the model asks for several at once)
into :class:`ToolResult` values, and :func:`tool_messages` turns those into the ``tool`` messages
the next request sends. :class:`ToolLoop` counts the rounds of one ``ask``.

Nothing a tool does raises out of :meth:`Toolbox.run`: an unknown tool, arguments that are not
JSON or do not fit the signature, an exception inside the tool and a call the user denied all
become a result whose ``content`` tells the model what happened, so it can correct itself.
pydantic (schemas, validation, serializing results) is imported on first use.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
import re
import time
import warnings
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ._docstrings import parse_docstring
from ._errors import ParameterError, ToolLoopError

__all__ = [
    "DENIED",
    "MAX_TOOL_ROUNDS",
    "Tool",
    "ToolCall",
    "ToolLoop",
    "ToolResult",
    "Toolbox",
    "result_content",
    "tool_messages",
]

#: Rounds of tool calls one ``ask`` answers before it gives up (:class:`ToolLoopError`).
MAX_TOOL_ROUNDS = 8
#: What the model is told when ``approve`` refused a call.
DENIED = "denied by the user"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what OpenAI-compatible APIs accept as a tool name
_LIMIT = 300

Approver = Callable[["ToolCall"], bool | Awaitable[bool]]


def _one_line(text: Any, limit: int = _LIMIT) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _exception_text(error: BaseException) -> str:
    message = _one_line(error)
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
            raise ParameterError(f"tool {name}: its signature cannot be read ({_one_line(error)}).") from None
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
        annotation = Any if param.annotation is param.empty else param.annotation
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
        raise ParameterError(
            f"tool {name}: {_one_line(error).split(' For further information')[0]}"
        ) from None
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
        got = "" if item["type"] == "missing" else f" (got {_one_line(repr(item.get('input')), 60)})"
        parts.append(f"{where}: {item['msg']}{got}")
    return _one_line("; ".join(parts))


def _spec_tool(spec: dict[str, Any]) -> Tool:
    function = spec.get("function") if spec.get("type", "function") == "function" else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not name:
        raise ParameterError(
            'a tool spec is {"type": "function", "function": {"name": ..., "parameters": {...}}}, '
            f"not {_one_line(repr(spec), 80)}."
        )
    return Tool(
        name=name,
        description=function.get("description") or "",
        parameters=function.get("parameters") or {"type": "object", "properties": {}},
    )


# -- calls and results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    """One call the model asked for. ``arguments`` is ``raw_arguments`` parsed; when that is not
    a JSON object, ``arguments`` is ``{}`` and ``parse_error`` says why (running the call then
    tells the model so, instead of raising)."""

    id: str
    name: str
    arguments: dict[str, Any]
    raw_arguments: str
    parse_error: str | None = None

    def to_api(self) -> dict[str, Any]:
        """The call as the assistant message of the next request carries it."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.raw_arguments},
        }


@dataclass(frozen=True)
class ToolResult:
    """What running one call gave. ``content`` is the text sent back to the model: the return
    value as JSON (a string as it is), or the error text, or ``"denied by the user"``. ``value`` is
    the Python return value; ``duration_s`` is ``None`` when the tool did not run."""

    call: ToolCall
    content: str
    error: str | None = None
    duration_s: float | None = None
    denied: bool = False
    value: Any = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.denied

    def to_api(self) -> dict[str, Any]:
        """The ``tool`` message that answers the call."""
        return {"role": "tool", "tool_call_id": self.call.id, "content": self.content}


def tool_messages(results: Iterable[ToolResult]) -> list[dict[str, Any]]:
    """The ``tool`` messages that answer a round of calls, in the calls' order."""
    return [result.to_api() for result in results]


def result_content(value: Any) -> str:
    """A return value as the text a model reads: strings as they are, anything else as JSON
    (pydantic models, dataclasses, dates and sets included; what JSON cannot hold, as ``str``)."""
    if isinstance(value, str):
        return value
    from pydantic_core import to_jsonable_python

    try:
        return json.dumps(to_jsonable_python(value, fallback=str), ensure_ascii=False)
    except (TypeError, ValueError):  # a cycle, say
        return str(value)


# -- the toolbox ----------------------------------------------------------------------------------


@dataclass
class _Job:
    call: ToolCall
    tool: Tool
    values: dict[str, Any]


class Toolbox:
    """The tools of one request: functions (run here) and spec dicts (passed through, answered by
    the caller). Several calls in one round run concurrently, up to ``max_workers`` at a time
    (``max_workers=1`` runs them one after another); results keep the calls' order."""

    def __init__(self, tools: Iterable[Callable[..., Any] | Tool | dict[str, Any]], *, max_workers: int = 8):
        if isinstance(tools, (dict, str)) or callable(tools):
            raise ParameterError("tools is a list: tools=[get_weather], not tools=get_weather.")
        if not isinstance(max_workers, int) or max_workers < 1:
            raise ParameterError(f"max_workers={max_workers!r} is invalid: expected a positive integer.")
        self.max_workers = max_workers
        self.tools: dict[str, Tool] = {}
        for item in tools:
            if isinstance(item, Tool):
                tool = item
            elif isinstance(item, dict):
                tool = _spec_tool(item)
            else:
                tool = Tool.from_function(item)
            if tool.name in self.tools:
                raise ParameterError(f"two tools are named {tool.name!r}: give each tool its own name.")
            self.tools[tool.name] = tool

    def __len__(self) -> int:
        return len(self.tools)

    def __contains__(self, name: object) -> bool:
        return name in self.tools

    def specs(self) -> list[dict[str, Any]]:
        """Every tool as the request's ``tools`` lists it, in the order given."""
        return [tool.spec() for tool in self.tools.values()]

    @property
    def runnable(self) -> bool:
        """Every tool has a function: whatever the model calls, this toolbox can answer."""
        return bool(self.tools) and all(tool.function is not None for tool in self.tools.values())

    def can_run(self, calls: Iterable[ToolCall]) -> bool:
        """Can this toolbox answer the whole round? False when a call names a spec-only tool (the
        caller answers that round: a round is answered whole or not at all) or when the toolbox
        has no function at all (spec-only lists are never run). Unknown names are answered with
        an error the model can read."""
        calls = list(calls)
        if not calls or not any(tool.function is not None for tool in self.tools.values()):
            return False
        return all(call.name not in self.tools or self.tools[call.name].function for call in calls)

    @staticmethod
    def calls_from(tool_calls: Iterable[dict[str, Any]]) -> list[ToolCall]:
        """The assembled ``tool_calls`` of a reply (``{"id", "type", "function": {"name",
        "arguments"}}``) as :class:`ToolCall` values. A call without an id gets ``call_<i>``."""
        calls = []
        for i, item in enumerate(tool_calls):
            function = item.get("function") or {}
            raw = function.get("arguments") or ""
            arguments: Any = {}
            error = None
            if raw.strip():
                try:
                    arguments = json.loads(raw)
                except ValueError as exc:
                    error = f"the arguments are not valid JSON ({exc}); send one JSON object"
                    arguments = {}
                else:
                    if not isinstance(arguments, dict):
                        error = f"the arguments must be a JSON object, not {type(arguments).__name__}"
                        arguments = {}
            calls.append(
                ToolCall(
                    id=item.get("id") or f"call_{i}",
                    name=function.get("name") or "",
                    arguments=arguments,
                    raw_arguments=raw,
                    parse_error=error,
                )
            )
        return calls

    def _plan(self, call: ToolCall) -> _Job | ToolResult:
        """A job to run, or the result of a call that cannot run."""
        tool = self.tools.get(call.name)
        if tool is None:
            known = ", ".join(self.tools) or "none"
            text = f"unknown tool {call.name!r}: the tools are {known}."
            return ToolResult(call, text, error=text)
        if tool.function is None:
            text = f"tool {call.name} has no function here; the caller answers it."
            return ToolResult(call, text, error=text)
        if call.parse_error:
            text = _one_line(f"invalid arguments for {call.name}: {call.parse_error}.")
            return ToolResult(call, text, error=text)
        try:
            values = tool.validate(call.arguments)
        except ParameterError as error:
            return ToolResult(call, str(error), error=str(error))
        return _Job(call, tool, values)

    def run(self, calls: Iterable[ToolCall], approve: Approver | None = None) -> list[ToolResult]:
        """Answer a round of calls, in their order. ``approve(call) -> bool`` is asked (in this
        thread, in order, before any tool runs) about each call that could run; a refused call is
        answered ``"denied by the user"``. One call runs in this thread; several run in a thread
        pool. Coroutine functions run on a new event loop in a worker thread."""
        if inspect.iscoroutinefunction(approve):
            raise ParameterError(
                "approve is a coroutine function: use it with arun, or pass a plain function."
            )
        plans = [self._approved(self._plan(call), approve) for call in calls]
        jobs = [(i, plan) for i, plan in enumerate(plans) if isinstance(plan, _Job)]
        done: dict[int, ToolResult] = {}
        if len(jobs) == 1 and not jobs[0][1].tool.is_async:
            done[jobs[0][0]] = _execute(jobs[0][1])  # here, so its prints land where the caller's do
        elif jobs:
            workers = min(len(jobs), self.max_workers)
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(workers, thread_name_prefix="oxen-tool") as pool:
                futures = [(i, pool.submit(contextvars.copy_context().run, _execute, job)) for i, job in jobs]
                done = {i: future.result() for i, future in futures}
        return [done[i] if isinstance(plan, _Job) else plan for i, plan in enumerate(plans)]

    async def arun(self, calls: Iterable[ToolCall], approve: Approver | None = None) -> list[ToolResult]:
        """The async twin of :meth:`run`: coroutine functions are awaited on this loop, plain
        functions run in worker threads; ``approve`` may be a coroutine function."""
        plans = []
        for call in calls:
            plan = self._plan(call)
            if isinstance(plan, _Job) and approve is not None:
                verdict = approve(plan.call)
                if inspect.isawaitable(verdict):
                    verdict = await verdict
                if not verdict:
                    plan = ToolResult(plan.call, DENIED, denied=True)
            plans.append(plan)
        import asyncio

        limit = asyncio.Semaphore(self.max_workers)

        async def answer(plan: _Job | ToolResult) -> ToolResult:
            if isinstance(plan, ToolResult):
                return plan
            async with limit:
                return await _aexecute(plan)

        return list(await asyncio.gather(*(answer(plan) for plan in plans)))

    @staticmethod
    def _approved(plan: _Job | ToolResult, approve: Approver | None) -> _Job | ToolResult:
        if approve is None or isinstance(plan, ToolResult):
            return plan
        verdict = approve(plan.call)
        if inspect.isawaitable(verdict):
            getattr(verdict, "close", lambda: None)()  # never awaited: closed, not left to warn
            raise ParameterError("approve returned an awaitable: use it with arun, or return a bool.")
        return plan if verdict else ToolResult(plan.call, DENIED, denied=True)


def _finished(job: _Job, started: float, value: Any = None, error: BaseException | None = None) -> ToolResult:
    duration = time.perf_counter() - started
    if error is not None:
        text = _exception_text(error)
        return ToolResult(job.call, text, error=text, duration_s=duration)
    return ToolResult(job.call, result_content(value), duration_s=duration, value=value)


def _execute(job: _Job) -> ToolResult:
    started = time.perf_counter()
    try:
        value = job.tool.execute(job.values)
    except Exception as error:  # the model reads what went wrong and may try again
        return _finished(job, started, error=error)
    return _finished(job, started, value)


async def _aexecute(job: _Job) -> ToolResult:
    started = time.perf_counter()
    try:
        value = await job.tool.aexecute(job.values)
    except Exception as error:
        return _finished(job, started, error=error)
    return _finished(job, started, value)


# -- one ask's rounds -----------------------------------------------------------------------------


class ToolLoop:
    """The rounds of one ``ask``: after each reply, :meth:`wants` says whether to answer its tool
    calls here, :meth:`answer` runs them (and refuses a round past ``max_rounds`` with
    :class:`ToolLoopError`), and ``results`` keeps every round's results."""

    def __init__(
        self, toolbox: Toolbox, *, approve: Approver | None = None, max_rounds: int = MAX_TOOL_ROUNDS
    ) -> None:
        if not isinstance(max_rounds, int) or isinstance(max_rounds, bool) or max_rounds < 1:
            raise ParameterError(f"max_tool_rounds={max_rounds!r} is invalid: expected a positive integer.")
        self.toolbox = toolbox
        self.approve = approve
        self.max_rounds = max_rounds
        self.rounds = 0
        self.results: list[ToolResult] = []

    def wants(self, tool_calls: Iterable[dict[str, Any]]) -> bool:
        """True when a reply's tool calls are this loop's to answer (see :meth:`Toolbox.can_run`)."""
        return self.toolbox.can_run(Toolbox.calls_from(tool_calls))

    def _next_round(self, tool_calls: Iterable[dict[str, Any]]) -> list[ToolCall]:
        calls = Toolbox.calls_from(tool_calls)
        if self.rounds >= self.max_rounds:
            names = ", ".join(sorted({call.name for call in calls}))
            raise ToolLoopError(
                f"the model still calls tools ({names}) after {self.max_rounds} rounds: "
                "raise max_tool_rounds, or ask for an answer without tools."
            )
        self.rounds += 1
        return calls

    def answer(self, tool_calls: Iterable[dict[str, Any]]) -> list[ToolResult]:
        """Run one round (a reply's assembled ``tool_calls``); return its results."""
        results = self.toolbox.run(self._next_round(tool_calls), self.approve)
        self.results.extend(results)
        return results

    async def aanswer(self, tool_calls: Iterable[dict[str, Any]]) -> list[ToolResult]:
        """The async twin of :meth:`answer`."""
        results = await self.toolbox.arun(self._next_round(tool_calls), self.approve)
        self.results.extend(results)
        return results
