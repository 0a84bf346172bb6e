"""Usage and cost: tokens per model, priced by a ``price_of(model)`` function (the Session passes
its model catalogue's), so this module knows no Session.

A model without a price that applies has an unknown cost (``None`` / ``<NA>``), never zero. A reply
answered from the cache costs nothing (``cost_usd == 0.0``) and its tokens are not counted as spent.
A cost is an estimate when the model is billed by time (priced from the request's duration) or
when the reply's tokens were counted here (``Message.usage_estimated``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from ._pricing import Pricing, cost_of
from ._records import token_count

if TYPE_CHECKING:
    import pandas as pd

    from ._records import Message

__all__ = ["USAGE_COLUMNS", "UsageLedger"]

USAGE_COLUMNS = [
    "model",
    "requests",
    "cache_hits",
    "errors",
    "no_usage",
    "estimated",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_usd",
    "cost_estimated",
    "pricing_method",
    "input_cost_per_token",
    "output_cost_per_token",
    "cost_per_second",
]
_COUNTS = [
    "requests",
    "cache_hits",
    "errors",
    "no_usage",
    "estimated",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
]
_PRICES = ["cost_usd", "input_cost_per_token", "output_cost_per_token", "cost_per_second"]
_UNFINISHED = ("error", "interrupted")  # no cost is made up for these: the server's share is unknown
_log = logging.getLogger("oxen_notebook")


@dataclass
class _Totals:
    requests: int = 0
    cache_hits: int = 0
    errors: int = 0
    no_usage: int = 0  # requests without token counts (failed, interrupted, or none to be had)
    estimated: int = 0  # requests whose token counts were made here
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0  # finished requests whose cost is unknown
    cost_estimated: bool = False


class UsageLedger:
    """Running totals per model for one session; thread-safe.

    ``price_of(model)`` gives the model's :class:`Pricing` or ``None``; it is asked once per model.
    """

    def __init__(self, price_of: Callable[[str], Pricing | None]) -> None:
        self._price_of = price_of
        self._lock = threading.Lock()
        self._totals: dict[str, _Totals] = {}
        self._prices: dict[str, Pricing | None] = {}

    def pricing(self, model: str) -> Pricing | None:
        """The model's prices, asked for once per model (``None`` if unknown or unreachable)."""
        if model in self._prices:
            return self._prices[model]
        try:
            pricing = self._price_of(model)
        except Exception as exc:
            _log.info("no prices for model %r: %s", model, exc)
            pricing = None
        with self._lock:
            self._prices[model] = pricing
        return pricing

    def record(self, message: Message, *, cached: bool) -> float | None:
        """Add ``message`` (a finished reply) to the totals; return its cost in dollars
        (``0.0`` for a cache hit, ``None`` when unknown).

        A failed or interrupted reply has no cost (the server's share of it is unknown); a
        time-billed model's reply is priced from ``message.duration_s``."""
        model = message.model or ""
        # Counts that are not counts are missing: a bookkeeping error must never lose a paid reply.
        prompt, completion = token_count(message.prompt_tokens), token_count(message.completion_tokens)
        tokens = prompt is not None and completion is not None
        finished = message.finish_reason not in _UNFINISHED
        cost: float | None = None
        pricing: Pricing | None = None
        if cached:
            cost = 0.0
        elif finished:
            pricing = self.pricing(model)
            cost = cost_of(prompt, completion, pricing, duration_s=message.duration_s)
        with self._lock:
            totals = self._totals.setdefault(model, _Totals())
            if cached:
                totals.cache_hits += 1
                return cost
            totals.requests += 1
            if message.finish_reason == "error":
                totals.errors += 1
            if finished and cost is None:
                totals.unpriced += 1
            if cost is not None:
                totals.cost_usd += cost
                if message.usage_estimated or (pricing is not None and pricing.estimated):
                    totals.cost_estimated = True
            if not tokens:
                totals.no_usage += 1
                return cost
            if message.usage_estimated:
                totals.estimated += 1
            totals.prompt_tokens += prompt or 0
            totals.completion_tokens += completion or 0
        return cost

    def rows(self) -> list[dict[str, Any]]:
        """One dict per model: counts, tokens spent, cost (``None`` when a finished request had
        no price that applies, or the model has no prices), how it is billed."""
        with self._lock:
            items = [(model, _Totals(**vars(t))) for model, t in self._totals.items()]
            prices = dict(self._prices)
        rows = []
        for model, totals in items:
            pricing = prices.get(model)
            known = totals.unpriced == 0 and (pricing is not None or totals.requests == 0)
            counts = {f.name: getattr(totals, f.name) for f in fields(totals) if f.name in _COUNTS}
            rows.append(
                {
                    "model": model,
                    **counts,
                    "total_tokens": totals.prompt_tokens + totals.completion_tokens,
                    "cost_usd": totals.cost_usd if known else None,
                    "cost_estimated": totals.cost_estimated if known else None,
                    "pricing_method": pricing.method if pricing else None,
                    "input_cost_per_token": pricing.input_cost_per_token if pricing else None,
                    "output_cost_per_token": pricing.output_cost_per_token if pricing else None,
                    "cost_per_second": pricing.cost_per_second if pricing else None,
                }
            )
        return rows

    def frame(self) -> pd.DataFrame:
        """:meth:`rows` as a DataFrame with nullable numbers."""
        import pandas as pd

        frame = pd.DataFrame(self.rows(), columns=USAGE_COLUMNS)
        for name in _COUNTS:
            frame[name] = frame[name].astype("Int64")
        for name in _PRICES:
            frame[name] = frame[name].astype("Float64")
        frame["cost_estimated"] = frame["cost_estimated"].astype("boolean")
        for name in ("model", "pricing_method"):
            frame[name] = frame[name].astype("string")
        return frame

    def summary(self) -> str:
        """One line for a status bar: requests, cache hits, tokens, cost so far; ``~`` marks
        estimates (tokens counted here, time-billed costs)."""
        rows = self.rows()
        requests = sum(r["requests"] for r in rows)
        hits = sum(r["cache_hits"] for r in rows)
        tokens = sum(r["total_tokens"] for r in rows)
        estimated = sum(r["estimated"] for r in rows)
        parts = [f"{requests:,} request{'s' if requests != 1 else ''}"]
        if hits:
            parts[0] += f" ({hits:,} cached)"
        if estimated:
            parts.append(f"~{tokens:,} tokens ({estimated:,} counted locally)")
        else:
            parts.append(f"{tokens:,} tokens")
        known = [r for r in rows if r["cost_usd"] is not None]
        unknown = [r["model"] for r in rows if r["cost_usd"] is None]
        approx = "~" if any(r["cost_estimated"] for r in known) else ""
        total = f"{approx}${sum(r['cost_usd'] for r in known):.4f}"
        if unknown and not known:
            parts.append("cost unknown")
        elif unknown:
            parts.append(f"{total} + unknown ({', '.join(unknown)})")
        else:
            parts.append(total)
        return " · ".join(parts)
