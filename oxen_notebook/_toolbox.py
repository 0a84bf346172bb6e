"""The model's tool calls: parsing them, running them, the answers, and one ask's rounds.

Sans-I/O but for running the tools themselves: no requests and no Session here. A reply's
assembled ``tool_calls`` become :class:`ToolCall` values (:meth:`Toolbox.calls_from`), a
:class:`Toolbox` validates and runs them (concurrently when the model asks for several at once)
into :class:`ToolResult` values, and :func:`tool_messages` turns those into the ``tool`` messages
the next request sends. :class:`ToolLoop` counts the rounds of one ``ask``.

Nothing a tool does raises out of :meth:`Toolbox.run`: an unknown tool, arguments that are not
JSON or do not fit the signature, an exception inside the tool and a call the user denied all
become a result whose ``content`` tells the model what happened, so it can correct itself.
"""

from __future__ import annotations

import contextvars
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ._errors import ParameterError, ToolLoopError
from ._tools import DENIED, MAX_TOOL_ROUNDS, Tool, exception_text, one_line, spec_tool

__all__ = [
    "MAX_ARGUMENT_DEPTH",
    "Approver",
    "ToolCall",
    "ToolLoop",
    "ToolResult",
    "Toolbox",
    "result_content",
    "tool_messages",
]


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


#: ``approve(call) -> bool`` (or an awaitable of it, for :meth:`Toolbox.arun`).
Approver = Callable[[ToolCall], bool | Awaitable[bool]]


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


#: How deeply a call's arguments may nest. Deeper arguments are answered as invalid, so that no
#: later step (validation, the journal, the panel) walks them by recursion.
MAX_ARGUMENT_DEPTH = 64
_TOO_DEEP = f"the arguments are nested more than {MAX_ARGUMENT_DEPTH} levels deep; send a flatter JSON object"


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether JSON ``value`` nests more than ``limit`` lists and objects deep (no recursion)."""
    level = [value]
    for _ in range(limit + 1):
        level = [
            child
            for item in level
            if isinstance(item, (dict, list))
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return False
    return True


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
                tool = spec_tool(item)
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
                except RecursionError:  # Python's JSON reader stops near 1,000 levels
                    error = _TOO_DEEP
                    arguments = {}
                else:
                    if not isinstance(arguments, dict):
                        error = f"the arguments must be a JSON object, not {type(arguments).__name__}"
                        arguments = {}
                    elif _deeper_than(arguments, MAX_ARGUMENT_DEPTH):
                        error, arguments = _TOO_DEEP, {}
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
            text = one_line(f"invalid arguments for {call.name}: {call.parse_error}.")
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

        import asyncio  # only async turns need it: import oxen_notebook stays light

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
        text = exception_text(error)
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
