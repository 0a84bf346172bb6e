"""``Session.estimate``: what a ``map`` of a template over data would cost, before anything is sent.

Each row's prompt is filled as ``map`` fills it and counted as :meth:`Session.preview` counts a
one-shot request (the system prompt and the filled prompt, with the chat format's per-message
overhead, ``_tokens.count_messages``; tools, a ``json_schema`` response format and the
attachments every row sends (``images=``/``files=``, estimated as ``_tokens.count_part`` says) too). Up to :data:`EXACT_ROWS` rows are all counted; more are counted on a seeded
random sample of :data:`AUTO_SAMPLE` rows and scaled, and ``sample=N`` asks for that at any size:
only the sampled rows are filled. The result says which it did.

A reply's length is not known before it is written, so the completion side follows one rule
(:func:`reply_rule`): ``expected_output_tokens=`` if given; else ``max_tokens`` (the request's, or
the session's default), an upper bound; else :data:`DEFAULT_REPLY_TOKENS` a row, a guess said as
such. The cost is the model's published per-token prices times those tokens; a model billed by time,
per image or with no published prices has no cost estimate (``None``), and the result says why.
Nothing is sent but, at most, the model's details (``GET /models/{id}``, once per session), and not
even that in replay mode.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .._ask import attachments
from .._errors import ParameterError
from .._params import validate_params
from .._pricing import Pricing, cost_of
from .._tokens import count_messages, count_text, counter_name
from ._templates import RowTemplate, table

if TYPE_CHECKING:
    from .._attachments import Attachment
    from ._types import BatchSession

__all__ = [
    "AUTO_SAMPLE",
    "DEFAULT_REPLY_TOKENS",
    "EXACT_ROWS",
    "Estimate",
    "PromptCounter",
    "ReplyRule",
    "estimate_map",
    "pricing_problem",
    "reply_rule",
]

EXACT_ROWS = 100_000  # about 3 s to fill and count on one core
AUTO_SAMPLE = 10_000
DEFAULT_REPLY_TOKENS = 256
_Z95 = 1.96


@dataclass(frozen=True)
class ReplyRule:
    """How many reply tokens a row is taken to cost, and where the number comes from:
    ``"expected_output_tokens"``, ``"max_tokens"`` (an upper bound) or ``"default"`` (a guess)."""

    tokens: int
    source: str
    max_tokens: int | None = None

    @property
    def bound(self) -> bool:
        """Whether :attr:`tokens` is an upper bound (the request's ``max_tokens``)."""
        return self.source == "max_tokens"

    def describe(self) -> str:
        if self.source == "max_tokens":
            return f"at most {self.tokens:,} a row (max_tokens)"
        if self.source == "expected_output_tokens":
            return f"{self.tokens:,} a row (expected_output_tokens)"
        return f"{self.tokens:,} a row (a guess: give max_tokens= for a bound or expected_output_tokens=)"


def _max_tokens(params: dict[str, Any]) -> int | None:
    value = params.get("max_tokens") or (params.get("extra_body") or {}).get("max_completion_tokens")
    return int(value) if value else None


def reply_rule(params: dict[str, Any], expected: int | None = None) -> ReplyRule:
    """The reply tokens a row of a request with ``params`` is taken to cost (see the module)."""
    if expected is not None and (not isinstance(expected, int) or isinstance(expected, bool) or expected < 0):
        raise ParameterError(f"expected_output_tokens={expected!r} is invalid: expected 0 or more.")
    bound = _max_tokens(params)
    if expected is not None:
        return ReplyRule(min(expected, bound) if bound else expected, "expected_output_tokens", bound)
    if bound:
        return ReplyRule(bound, "max_tokens", bound)
    return ReplyRule(DEFAULT_REPLY_TOKENS, "default")


class PromptCounter:
    """The prompt tokens of a one-shot request sending a prompt, as ``Session.preview`` counts
    them: ``count_messages`` of the system prompt and the prompt (with ``tools`` and the
    attachments every row sends, counted for ``model``), plus a ``json_schema`` response format.
    The part every row shares is counted once."""

    def __init__(
        self,
        system: str | None,
        params: dict[str, Any],
        attached: Sequence[Attachment] = (),
        model: str | None = None,
    ) -> None:
        messages = [{"role": "system", "content": system}] if system else []
        tools = params.get("tools")
        tools = tools if isinstance(tools, list) and all(isinstance(t, dict) for t in tools) else None
        # count_messages adds up per message, and an empty text counts 0: the prompt adds its own.
        user = {"role": "user", "content": [a.part for a in attached] if attached else ""}
        self.fixed = count_messages([*messages, user], tools, model=model)
        response_format = params.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
            self.fixed += count_text(json.dumps(response_format, separators=(",", ":")))

    def __call__(self, prompt: str) -> int:
        return self.fixed + count_text(prompt)


def pricing_problem(model: str, pricing: Pricing | None) -> str | None:
    """Why a text request to ``model`` cannot be priced before it runs, or ``None`` when it can."""
    if pricing is None:
        return f"{model} has no published prices"
    if pricing.method == "time":
        rate = f" (${pricing.cost_per_second:g} a second)" if pricing.cost_per_second is not None else ""
        return f"{model} is billed by time{rate}: its cost cannot be estimated before it runs"
    if pricing.method != "token":
        return f"{model} is billed {pricing.method}: no price applies to a text reply"
    return None


@dataclass(frozen=True)
class Estimate:
    """What a ``map`` would send and cost, counted before anything is sent (``Session.estimate``).

    Token totals cover every row (scaled from a sample when ``sampled``; ``prompt_tokens_margin``
    is then the 95 % half-width of the total); ``cost_usd`` is ``None`` with ``cost_note`` saying
    why when the model's prices do not allow one; ``max_cost_usd`` is the bound ``max_tokens`` gives."""

    model: str
    rows: int
    counted: int
    sampled: bool
    unfilled: int  # rows whose template could not be filled: map records them as errors, unsent
    prompt_tokens: int
    prompt_tokens_margin: int | None
    max_prompt_tokens: int  # the longest row counted
    completion_tokens: int
    completion_tokens_per_row: int
    completion_rule: str  # "expected_output_tokens", "max_tokens" (an upper bound) or "default"
    cost_usd: float | None
    max_cost_usd: float | None
    pricing: str | None  # the model's pricing method: token, time, per_image, ...
    cost_note: str | None
    token_counter: str  # o200k_base, or chars/4 without bpe-openai

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def counting(self) -> str:
        """How the prompts were counted, in words."""
        if not self.sampled:
            return f"every row counted ({self.token_counter})"
        return f"{self.counted:,} of {self.rows:,} rows counted and scaled ({self.token_counter})"

    def __str__(self) -> str:
        prompt = f"~{self.prompt_tokens:,} prompt tokens"
        if self.prompt_tokens_margin is not None:
            prompt += f" (±{self.prompt_tokens_margin:,})"
        rule = ReplyRule(self.completion_tokens_per_row, self.completion_rule)
        parts = [
            f"estimate, nothing sent · {self.model}",
            f"{self.rows:,} row{'s' if self.rows != 1 else ''}",
            prompt,
            f"{'≤ ' if rule.bound else '~'}{self.completion_tokens:,} reply tokens, {rule.describe()}",
        ]
        if self.unfilled:
            parts.append(f"{self.unfilled:,} rows not fillable")
        if self.cost_usd is not None:
            approx = "≤ " if rule.bound else "≈ "
            parts.append("free" if self.cost_usd == 0 else f"{approx}${self.cost_usd:,.4f}")
            if self.max_cost_usd is not None and not rule.bound:
                parts.append(f"at most ${self.max_cost_usd:,.4f} with max_tokens")
        else:
            parts.append(f"cost unknown: {self.cost_note}")
        parts.append(self.counting)
        return " · ".join(parts)

    def __repr__(self) -> str:
        return f"<Estimate {self}>"


def _sample(data: Any, sample: int | None) -> tuple[Any, int, bool]:
    """The rows to count (the data, or a seeded random sample of it), how many rows the data has,
    and whether it was sampled. Only frames, series and sequences are sampled before reading."""
    import pandas as pd

    if isinstance(data, (pd.DataFrame, pd.Series)) or (
        isinstance(data, Sequence) and not isinstance(data, (str, bytes))
    ):
        rows = len(data)
        size = sample if sample is not None else (AUTO_SAMPLE if rows > EXACT_ROWS else None)
        if size is None or size >= rows:
            return data, rows, False
        picked = sorted(random.Random(0).sample(range(rows), size))
        if isinstance(data, (pd.DataFrame, pd.Series)):
            return data.iloc[picked], rows, True
        return [data[i] for i in picked], rows, True
    return data, -1, False  # an iterable or a file: read whole by table(), sampled after


def estimate_map(
    session: BatchSession,
    data: Any,
    template: str,
    *,
    model: str | None = None,
    max_tokens: int | None = None,
    expected_output_tokens: int | None = None,
    sample: int | None = None,
    images: list[Any] | None = None,
    files: list[Any] | None = None,
    **params: Any,
) -> Estimate:
    """See :meth:`Session.estimate`."""
    if sample is not None and (not isinstance(sample, int) or isinstance(sample, bool) or sample < 1):
        raise ParameterError(f"sample={sample!r} is invalid: expected a number of rows, 1 or more.")
    model = model or session.model
    given = {"max_tokens": max_tokens} if max_tokens is not None else {}
    merged = validate_params({**session.defaults, **params, **given})
    rule = reply_rule(merged, expected_output_tokens)
    subset, rows, sampled = _sample(data, sample)
    frame, records, strings = table(subset)
    if rows < 0:  # read whole: sample the records
        rows = len(records)
        size = sample if sample is not None else (AUTO_SAMPLE if rows > EXACT_ROWS else None)
        if size is not None and size < rows:
            records = [records[i] for i in sorted(random.Random(0).sample(range(rows), size))]
            sampled = True
    filled = RowTemplate.checked(template, (frame.columns, strings), session, model=model, params=merged)
    counter = PromptCounter(session.system, merged, attachments(images, files), model)
    counts, unfilled = [], 0
    for record in records:
        prompt = filled.job(record).prompt  # None: the row could not be filled, as map records it
        counts.append(counter(prompt) if prompt is not None else 0)
        unfilled += prompt is None
    counted = len(counts)
    total = sum(counts)
    margin = None
    if sampled and counted:
        scale = rows / counted
        mean = total / counted
        spread = math.sqrt(sum((c - mean) ** 2 for c in counts) / max(counted - 1, 1))
        finite = math.sqrt(max(rows - counted, 0) / max(rows - 1, 1))
        margin = round(_Z95 * rows * spread / math.sqrt(counted) * finite)
        total, unfilled = round(total * scale), round(unfilled * scale)
    completion = (rows - unfilled) * rule.tokens
    replaying = session.cache is not None and session.cache.replaying
    pricing = None if replaying else session.ledger.pricing(model)
    problem = (
        "replay mode: the model's prices are not fetched" if replaying else pricing_problem(model, pricing)
    )
    cost = max_cost = None
    if problem is None:
        cost = cost_of(total, completion, pricing)
        if rule.max_tokens:
            max_cost = cost_of(total, (rows - unfilled) * rule.max_tokens, pricing)
    return Estimate(
        model=model,
        rows=rows,
        counted=counted,
        sampled=sampled,
        unfilled=unfilled,
        prompt_tokens=total,
        prompt_tokens_margin=margin,
        max_prompt_tokens=max(counts, default=0),
        completion_tokens=completion,
        completion_tokens_per_row=rule.tokens,
        completion_rule=rule.source,
        cost_usd=cost,
        max_cost_usd=max_cost,
        pricing=pricing.method if pricing else None,
        cost_note=problem,
        token_counter=counter_name(),
    )
