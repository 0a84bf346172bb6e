"""One prompt that takes as many requests as it needs: ``Turn`` (sync) and ``AsyncTurn``.

A turn starts with one :class:`~oxen_notebook._reply.Reply` and follows it while its plan asks:
the model called Python tools (they are run, their results recorded and sent back, up to
``max_tool_rounds``), or a ``schema=`` reply did not validate (the errors go back once per
``max_repairs``, then :class:`SchemaError`). Iterating yields the text deltas of every request
in order; ``parsed`` is the validated value when the turn ends. It reads like a Reply (``text``,
``message``, ``usage``, ``finish_reason``, ``error``) about its last request.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

from ._errors import OxenError, ReplyConsumedError, SchemaError, ToolLoopError

if TYPE_CHECKING:
    from ._ask import Ask
    from ._history import Turnstile
    from ._records import Message
    from ._reply import AsyncReply, Reply
    from ._request import PreparedRequest
    from ._schema import OutputSchema
    from ._toolbox import ToolCall, ToolLoop, ToolResult

__all__ = ["AsyncTurn", "Turn", "plan_for", "turn_facts"]


def plan_for(ask: Ask, record: Callable[..., Message], update: Callable[..., None]) -> _Plan | None:
    """What follows a reply to ``ask`` (its schema to validate, its Python tools to run), or
    ``None`` when nothing does (a plain request). ``record`` adds the turn's records (tool results,
    repair prompts); ``update`` marks one already made."""
    if not ask.plan_needed:
        return None
    loop = None
    if ask.tools is not None and ask.tools.runnable:
        from ._toolbox import ToolLoop  # loaded by the first request with tools
        from ._tools import MAX_TOOL_ROUNDS

        rounds = MAX_TOOL_ROUNDS if ask.max_tool_rounds is None else ask.max_tool_rounds
        loop = ToolLoop(ask.tools, approve=ask.approve, max_rounds=rounds)
    return _Plan(ask.output, loop, ask.max_repairs, record, update)


class _Plan:
    """What follows a finished request: the part both turn flavours share (no I/O but the tools)."""

    def __init__(
        self,
        output: OutputSchema | None,
        tools: ToolLoop | None,
        max_repairs: int,
        record: Callable[..., Message],
        update: Callable[..., None],
    ) -> None:
        self.output = output
        self.tools = tools
        self.max_repairs = max_repairs
        self.repairs = 0
        self.parsed: Any = None
        self.tool_results: list[ToolResult] = []
        #: The records this plan added (tool results, repair prompts), in order.
        self.records: list[Message] = []
        self._add = record
        self._update = update

    def _record(self, role: str, content: str, **fields: Any) -> Message:
        message = self._add(role, content, **fields)
        self.records.append(message)
        return message

    def wants_tools(self, reply: Reply | AsyncReply) -> bool:
        return self.tools is not None and bool(reply.tool_calls) and self.tools.wants(reply.tool_calls)

    def calls(self, reply: Reply | AsyncReply) -> list[ToolCall]:
        """The reply's calls. Calls the server sent without ids get ids here, and the record
        says so, since the results must answer the ids the next request carries."""
        from ._toolbox import Toolbox

        calls = Toolbox.calls_from(reply.tool_calls)
        if reply.message is not None and [c.id for c in calls] != [c.get("id") for c in reply.tool_calls]:
            self._update(reply.message, tool_calls=[call.to_api() for call in calls])
        return calls

    def unanswered(self, reply: Reply | AsyncReply, calls: list[ToolCall], error: BaseException) -> None:
        """Answer the calls a round did not run (the rounds ran out, or it was interrupted), so
        the history stays sendable: every call needs an answer in the next request."""
        if isinstance(error, ToolLoopError):
            rounds = self.tools.max_rounds if self.tools is not None else 0
            note = f"not run: max_tool_rounds ({rounds}) reached"
        else:
            note = "not run: interrupted"
        from ._toolbox import ToolResult

        self._answer_records(reply, [ToolResult(call, note, error=note) for call in calls])

    def after_tools(self, reply: Reply | AsyncReply, results: list[ToolResult]) -> PreparedRequest:
        """Record a round's results; the request that sends them back."""
        self.tool_results.extend(results)
        self._answer_records(reply, results)
        assistant = reply.message.to_api() if reply.message else {"role": "assistant", "content": ""}
        return reply.request.follow([assistant, *(result.to_api() for result in results)])

    def _answer_records(self, reply: Reply | AsyncReply, results: list[ToolResult]) -> None:
        turn = reply.user_message.turn
        for result in results:
            self._record(
                "tool",
                result.content,
                turn=turn,
                tool_call_id=result.call.id,
                tool_name=result.call.name,
                tool_arguments=result.call.arguments,
                duration_s=result.duration_s,
                error=result.error or ("denied by the user" if result.denied else None),
            )

    def after_text(self, reply: Reply | AsyncReply) -> PreparedRequest | None:
        """Validate a schema reply: ``None`` when the turn is done, else the repair request."""
        if self.output is None or reply.message is None:
            return None
        try:
            value = self.output.parse(reply.text)
        except SchemaError as error:
            self._update(reply.message, error=str(error))  # the raw reply stays, marked
            if self.repairs >= self.max_repairs:
                raise
            self.repairs += 1
            prompt = self.output.repair_prompt(error)
            self._record("user", prompt, turn=reply.user_message.turn, source="repair")
            return reply.request.follow([reply.message.to_api(), {"role": "user", "content": prompt}])
        self.parsed = value
        self._update(reply.message, parsed=self.output.dump(value))
        return None


class _TurnState:
    """What both turn flavours share: reading a turn (what its last request says), stopping it,
    and starting the request that follows one."""

    def __init__(
        self,
        first: Any,
        follow: Callable[[PreparedRequest], Any],
        plan: _Plan,
        turnstile: Turnstile | None = None,
    ) -> None:
        self.replies: list[Any] = [first]
        self.error: OxenError | None = None
        self._follow = follow
        self._plan = plan
        self._turnstile = turnstile  # a history turn holds it for all its requests
        self._marks: list[int] = []  # per request: how many plan records there were once followed
        self._started = False
        self._stop = threading.Event()

    def _check_fresh(self) -> None:
        if self._started:
            raise ReplyConsumedError("this turn was already consumed; read turn.text and turn.parsed.")
        self._started = True

    def _next(self, reply: Any, follow: PreparedRequest | None) -> Any:
        """The request after ``reply`` (sent the same way), or ``None`` when the turn is done."""
        self._marks.append(len(self._plan.records))
        if follow is None or self._stop.is_set():
            return None
        following = self._follow(follow)
        following.streamed = reply.streamed
        self.replies.append(following)
        return following

    def stop(self) -> None:
        """Stop from any thread or task: the request streaming stops, and no further one is sent."""
        self._stop.set()
        self.reply.stop()

    @property
    def reply(self) -> Reply | AsyncReply:
        """The turn's latest request."""
        return self.replies[-1]

    @property
    def parsed(self) -> Any:
        """The validated structured output (``schema=``), once the turn ended; else ``None``."""
        return self._plan.parsed

    @property
    def tool_results(self) -> list[ToolResult]:
        """Every tool call this turn ran (or refused), in order."""
        return list(self._plan.tool_results)

    @property
    def messages(self) -> list[Message]:
        """Every record of the turn in order: the prompt, each reply, the tool results and repair
        prompts between them (also for a one-shot turn, whose records join no history)."""
        out, start = [self.user_message], 0
        for i, reply in enumerate(self.replies):
            if reply.message is not None:
                out.append(reply.message)
            end = self._marks[i] if i < len(self._marks) else len(self._plan.records)
            out += self._plan.records[start:end]
            start = end
        return out

    @property
    def streamed(self) -> bool:
        """Whether the turn's requests stream (SSE); set it before the turn starts."""
        return self.replies[0].streamed

    @streamed.setter
    def streamed(self, value: bool) -> None:
        self.replies[0].streamed = value

    @property
    def text(self) -> str:
        """The last request's text."""
        return self.reply.text

    @property
    def message(self) -> Message | None:
        """The last request's record."""
        return self.reply.message

    @property
    def user_message(self) -> Message:
        """The prompt's record."""
        return self.replies[0].user_message

    @property
    def model(self) -> str:
        return self.replies[0].model

    @property
    def request(self) -> PreparedRequest:
        """The turn's first request."""
        return self.replies[0].request

    @property
    def usage(self) -> dict[str, Any] | None:
        """The last request's usage."""
        return self.reply.usage

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """The last request's tool calls."""
        return self.reply.tool_calls

    @property
    def finish_reason(self) -> str | None:
        return self.reply.finish_reason

    @property
    def finished(self) -> bool:
        """Whether the last request finished and no other follows."""
        return self.reply.finished and self._done

    @property
    def cached(self) -> bool:
        """Whether every request was answered from the response cache."""
        return all(r.cached for r in self.replies)

    _done = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {len(self.replies)} request(s): {self.reply!r}>"

    def _repr_html_(self) -> str:
        return self.reply._repr_html_()


class Turn(_TurnState):
    """A prompt's requests, sync. Iterate for text deltas; ``consume()`` runs it to the end."""

    def __iter__(self) -> Iterator[str]:
        self._check_fresh()
        return self._run()

    def _run(self) -> Iterator[str]:
        # A history turn holds the turnstile for all its requests: nothing else lands between a
        # reply's tool calls and their answers.
        if self._turnstile is not None:
            self._turnstile.enter()
        try:
            yield from self._requests()
        finally:
            if self._turnstile is not None:
                self._turnstile.leave()

    def _requests(self) -> Iterator[str]:
        reply = self.replies[0]
        try:
            while True:
                yield from reply
                if self._stop.is_set() or reply.finish_reason == "interrupted":
                    break
                if self._plan.wants_tools(reply):
                    assert self._plan.tools is not None
                    calls = self._plan.calls(reply)
                    try:
                        results = self._plan.tools.answer([c.to_api() for c in calls])
                    except BaseException as error:  # the rounds ran out, or Ctrl-C while tools ran
                        self._plan.unanswered(reply, calls, error)
                        raise
                    follow = self._plan.after_tools(reply, results)
                else:
                    follow = self._plan.after_text(reply)
                reply = self._next(reply, follow)
                if reply is None:
                    break
        except OxenError as error:
            self.error = error
            raise
        self._done = True

    def consume(self) -> Turn:
        """Run every request; return the turn. Raises the turn's error, after recording it."""
        if not self._started:
            for _ in self:
                pass
        elif self.error is not None:
            raise self.error
        return self

    def close(self) -> None:
        """Close the request that is open now; send no more."""
        self._stop.set()
        self.reply.close()

    def __enter__(self) -> Turn:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncTurn(_TurnState):
    """The async twin of :class:`Turn`: ``async for delta in turn``; ``await turn.aconsume()``."""

    def __aiter__(self) -> AsyncIterator[str]:
        self._check_fresh()
        return self._run()

    async def _run(self) -> AsyncIterator[str]:
        if self._turnstile is not None:
            await self._turnstile.aenter()
        try:
            async for delta in self._requests():
                yield delta
        finally:
            if self._turnstile is not None:
                self._turnstile.leave()

    async def _requests(self) -> AsyncIterator[str]:
        reply = self.replies[0]
        try:
            while True:
                async for delta in reply:
                    yield delta
                if self._stop.is_set() or reply.finish_reason == "interrupted":
                    break
                if self._plan.wants_tools(reply):
                    assert self._plan.tools is not None
                    calls = self._plan.calls(reply)
                    try:
                        results = await self._plan.tools.aanswer([c.to_api() for c in calls])
                    except BaseException as error:  # the rounds ran out, or Ctrl-C while tools ran
                        self._plan.unanswered(reply, calls, error)
                        raise
                    follow = self._plan.after_tools(reply, results)
                else:
                    follow = self._plan.after_text(reply)
                reply = self._next(reply, follow)
                if reply is None:
                    break
        except OxenError as error:
            self.error = error
            raise
        self._done = True

    async def aconsume(self) -> AsyncTurn:
        """Run every request; return the turn. Raises the turn's error, after recording it."""
        if not self._started:
            async for _ in self:
                pass
        elif self.error is not None:
            raise self.error
        return self

    async def aclose(self) -> None:
        """Close the request that is open now; send no more."""
        self._stop.set()
        await self.reply.aclose()

    async def __aenter__(self) -> AsyncTurn:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def turn_facts(turn: Turn | AsyncTurn, repairs: int = 0) -> list[str]:
    """``[model, "3 requests", "2 tool calls (1 denied)", "1 repair", "N tokens", "S.s s"]`` (the
    parts that apply): how the magic's footer and the panel's status line sum a turn over its
    requests. Seconds are the requests' and the tools' own (not the time an approval waited)."""
    messages = [reply.message for reply in turn.replies if reply.message is not None]
    last = turn.message
    parts = [(last.model if last is not None else None) or turn.model]
    if len(turn.replies) > 1:
        parts.append(f"{len(turn.replies)} requests")
    results = turn.tool_results
    if results:
        denied = sum(1 for r in results if r.denied)
        failed = sum(1 for r in results if r.error and not r.denied)
        extra = [f"{failed} failed"] * bool(failed) + [f"{denied} denied"] * bool(denied)
        calls = f"{len(results)} tool call{'s' * (len(results) != 1)}"
        parts.append(calls + (f" ({', '.join(extra)})" if extra else ""))
    if repairs:
        parts.append(f"{repairs} repair{'s' * (repairs != 1)}")
    counted = [m for m in messages if m.total_tokens is not None]
    if counted:
        estimated = "~" if any(m.usage_estimated for m in counted) else ""
        parts.append(f"{estimated}{sum(m.total_tokens for m in counted)} tokens")
    seconds = [m.duration_s for m in messages] + [r.duration_s for r in results]
    if any(s is not None for s in seconds):
        parts.append(f"{sum(s for s in seconds if s is not None):.1f} s")
    return parts
