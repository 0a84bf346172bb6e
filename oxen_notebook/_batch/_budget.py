"""``map(max_cost_usd=)``: the gate a batch's rows start through, so that it stops before its budget.

A row starts only if the cost so far (the finished rows' ``cost_usd``, from the ledger) plus the
estimates of the rows in flight plus its own estimate stays within the budget. A row that does
not fit while others are in flight waits for one of them to finish (its real cost replaces its
estimate) and looks again; when nothing is in flight and it still does not fit, no more rows start
and the rest are marked not sent. Rows start in order, so the ones sent are always a prefix.

A row's estimate is its prompt counted as ``Session.estimate`` counts it (attachments included),
taken :data:`PROMPT_MARGIN` higher, plus its reply. The server's own count may differ from ours
(``o200k_base`` is exact for OpenAI's models and 6-8 % low for Llama-family ones, up to 15 % on one
piece in ten; attachments are estimates): so the first row runs alone, and once rows have finished
with the server's counts, the prompt is taken at the highest ratio of the server's count to ours
seen so far, if that is higher than the margin. With ``max_tokens`` (an upper bound on the reply)
the spent total then passes the budget only if a row's prompt is counted by the server above both;
without it, the reply is taken as :data:`~._estimate.DEFAULT_REPLY_TOKENS`, or the longest reply
of the batch so far if that is longer, so rows in flight may cost more than estimated. A schema
row's repair request is not in its estimate; it is counted once the row finishes. Only a model
priced per token can be kept to a budget: anything else is a :class:`ParameterError` before
anything is sent.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import ParameterError
from .._params import validate_params
from ._estimate import PromptCounter, pricing_problem, reply_rule

if TYPE_CHECKING:
    from .._attachments import Attachment
    from .._pricing import Pricing
    from .._records import Message
    from ._types import BatchSession, Job

__all__ = ["PROMPT_MARGIN", "Budget", "Rate", "check_limit", "make_budget", "priced_rate"]

#: How much higher than counted a row's prompt is taken: a Llama-family tokenizer counts up to
#: 1/0.85 of o200k_base's count on one piece of code in ten (``benchmarks/bench_estimate.py``).
PROMPT_MARGIN = 0.20


@dataclass
class Rate:
    """What a kind of row costs: dollars a prompt and a reply token, and the reply tokens it is
    taken to cost (``bound``: ``max_tokens``, an upper bound; else a guess that grows to the
    longest reply seen)."""

    input: float
    output: float
    reply_tokens: int
    bound: bool

    @classmethod
    def of(cls, pricing: Pricing, reply_tokens: int, bound: bool) -> Rate:
        return cls(
            pricing.input_cost_per_token or 0.0, pricing.output_cost_per_token or 0.0, reply_tokens, bound
        )


class Budget:
    """The budget of one batch. ``prompt_tokens(index)`` is a row's prompt tokens (``None``: the
    row sends nothing). Used on the batch's event loop only: ``admit`` before a row starts,
    ``await wait()`` when it refused, ``finished`` when the row ended. Rows of several kinds
    (an evaluation's variants: their models and ``max_tokens``) give ``rates`` and ``kind_of(index)``
    instead of one ``pricing``."""

    def __init__(
        self,
        limit: float,
        pricing: Pricing | None,
        prompt_tokens: Callable[[int], int | None],
        reply_tokens: int,
        *,
        bound: bool,
        total: int,
        rates: list[Rate] | None = None,
        kind_of: Callable[[int], int] | None = None,
    ) -> None:
        self.limit = limit
        self.total = total
        self.spent = 0.0  # the finished rows' cost
        self.started = 0
        self.stopped = False  # a row did not fit with nothing in flight: no more start
        if rates is None:
            assert pricing is not None
            rates = [Rate.of(pricing, reply_tokens, bound)]
        self._rates = rates
        self._kind_of = kind_of or (lambda index: 0)
        self._prompt_tokens = prompt_tokens
        self._in_flight: dict[int, tuple[float, int]] = {}  # row -> its estimate and prompt tokens
        self._changed: asyncio.Event | None = None
        self._counted: tuple[int, int | None] = (-1, None)
        self.prompt_scale = 1 + PROMPT_MARGIN  # the margin, or the server's highest ratio to our count
        self._finished = 0

    @property
    def in_flight(self) -> float:
        """The estimates of the rows running."""
        return sum(cost for cost, _ in self._in_flight.values())

    @property
    def reason(self) -> str:
        """What the rows not sent say in their ``error``."""
        return f"not sent: the budget of ${self.limit:,.2f} would be passed"

    def note(self) -> str:
        """One line for the progress bar: what was spent, how many rows were not sent."""
        left = self.total - self.started
        return (
            f"stopped by the budget: ${self.spent:,.4f} of ${self.limit:,.2f} spent, "
            f"{left:,} row{'s' if left != 1 else ''} not sent"
        )

    def estimate(self, index: int) -> float:
        """Row ``index``'s estimated cost in dollars."""
        if self._counted[0] != index:  # a row that waits is looked at again: count it once
            self._counted = (index, self._prompt_tokens(index))
        tokens = self._counted[1]
        if tokens is None:
            return 0.0
        rate = self._rates[self._kind_of(index)]
        return tokens * self.prompt_scale * rate.input + rate.reply_tokens * rate.output

    def admit(self, index: int) -> bool:
        """Whether row ``index`` may start now; if so it counts as in flight at its estimate.
        Until a row has finished, one runs at a time: its server count calibrates the rest."""
        if self.stopped or (self._in_flight and not self._finished):
            return False
        cost = self.estimate(index)
        if self.spent + self.in_flight + cost > self.limit:
            return False
        self._in_flight[index] = (cost, self._counted[1] or 0)
        self.started += 1
        return True

    async def wait(self) -> bool:
        """After ``admit`` refused: wait until a row in flight finishes, then ``True`` (look
        again). With none in flight the budget cannot take the row: stop, and ``False``."""
        if not self.stopped and self._in_flight:
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()
            return not self.stopped
        self.stopped = True
        self._wake()
        return False

    def finished(self, index: int, replies: list[Message]) -> None:
        """Row ``index`` ended with ``replies``: their cost replaces its estimate."""
        _, counted = self._in_flight.pop(index, (0.0, 0))
        self._finished += 1
        self.spent += sum(m.cost_usd for m in replies if m.cost_usd is not None)
        first = replies[0] if replies else None  # the row's first request is the one estimated
        if first is not None and counted and first.prompt_tokens and not first.usage_estimated:
            self.prompt_scale = max(self.prompt_scale, first.prompt_tokens / counted)
        rate = self._rates[self._kind_of(index)]
        if not rate.bound:  # the guess grows to the longest reply seen
            longest = max((m.completion_tokens or 0 for m in replies), default=0)
            rate.reply_tokens = max(rate.reply_tokens, longest)
        self._wake()

    def mark_unsent(self, outcomes: list[Any]) -> None:
        """Give the rows the budget kept from starting their state and error."""
        if not self.stopped:
            return
        for outcome in outcomes:
            if outcome.state == "not sent":
                outcome.state, outcome.error = "interrupted", self.reason

    def _wake(self) -> None:
        event, self._changed = self._changed, None
        if event is not None:
            event.set()


def check_limit(limit: Any) -> None:
    """A budget must be a positive number of dollars: else a one-line :class:`ParameterError`."""
    if (
        not isinstance(limit, (int, float))
        or isinstance(limit, bool)
        or not math.isfinite(limit)
        or limit <= 0
    ):
        raise ParameterError(f"max_cost_usd={limit!r} is invalid: expected a positive number of dollars.")


def make_budget(
    session: BatchSession,
    jobs: list[Job],
    model: str | None,
    limit: Any,
    params: dict[str, Any],
    attached: Sequence[Attachment] = (),
) -> Budget | None:
    """The budget for ``map(max_cost_usd=limit)``, or ``None`` without one (and in replay mode,
    which sends nothing). A bad limit, or a model that cannot be priced per token before its rows
    run, is a one-line :class:`ParameterError`, raised before anything is sent."""
    if limit is None:
        return None
    check_limit(limit)
    if session.cache is not None and session.cache.replaying:
        return None
    model = model or session.model
    merged = validate_params({**session.defaults, **params})
    rate = priced_rate(session, model, merged, limit)
    counter = PromptCounter(session.system, merged, attached, model)

    def prompt_tokens(index: int) -> int | None:
        job = jobs[index]
        return counter(job.prompt) if job.prompt is not None and job.error is None else None

    return Budget(limit, None, prompt_tokens, 0, bound=True, total=len(jobs), rates=[rate])


def priced_rate(
    session: BatchSession, model: str, params: dict[str, Any], limit: float, who: str | None = None
) -> Rate:
    """What a request to ``model`` with ``params`` costs a token; a model that cannot be priced per
    token before it runs is a one-line :class:`ParameterError` (naming ``who`` sends it)."""
    pricing = session.ledger.pricing(model)
    problem = pricing_problem(model, pricing)
    if problem is not None or pricing is None:
        raise ParameterError(
            f"max_cost_usd={limit!r} cannot be kept: {f'{who}: ' if who else ''}{problem}; drop max_cost_usd, "
            "or use a model priced per token (oxen_notebook.list_models())."
        )
    rule = reply_rule(params)
    return Rate.of(pricing, rule.tokens, rule.bound)
