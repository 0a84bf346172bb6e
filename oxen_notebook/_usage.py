"""Usage and cost: tokens per model, priced by a ``price_of(model)`` function (the Session passes
its model catalogue's), so this module knows no Session.

A model without published prices has an unknown cost (``None`` / ``<NA>``), never zero. A reply answered from the
cache costs nothing (``cost_usd == 0.0``) and its tokens are not counted as spent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._pricing import Pricing, cost_of

if TYPE_CHECKING:
    import pandas as pd

    from ._records import Message

__all__ = ["USAGE_COLUMNS", "UsageLedger"]

USAGE_COLUMNS = [
    "model", "requests", "cache_hits", "errors", "no_usage", "prompt_tokens", "completion_tokens",
    "total_tokens", "cost_usd", "input_cost_per_token", "output_cost_per_token",
]  # fmt: skip
_log = logging.getLogger("oxen_notebook")


@dataclass
class _Totals:
    requests: int = 0
    cache_hits: int = 0
    errors: int = 0
    no_usage: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


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
        (``0.0`` for a cache hit, ``None`` when unknown)."""
        model = message.model or ""
        tokens = message.prompt_tokens is not None and message.completion_tokens is not None
        cost: float | None = None
        if cached:
            cost = 0.0
        elif tokens:
            cost = cost_of(message.prompt_tokens, message.completion_tokens, self.pricing(model))
        with self._lock:
            totals = self._totals.setdefault(model, _Totals())
            if cached:
                totals.cache_hits += 1
                return cost
            totals.requests += 1
            if message.finish_reason == "error":
                totals.errors += 1
            if not tokens:
                totals.no_usage += 1
                return cost
            totals.prompt_tokens += message.prompt_tokens or 0
            totals.completion_tokens += message.completion_tokens or 0
            if cost is not None:
                totals.cost_usd += cost
        return cost

    def rows(self) -> list[dict[str, Any]]:
        """One dict per model: counts, tokens spent, cost (``None`` when the model has no prices)."""
        with self._lock:
            items = [(model, _Totals(**vars(t))) for model, t in self._totals.items()]
        rows = []
        for model, totals in items:
            pricing = self._prices.get(model)
            spent = totals.prompt_tokens + totals.completion_tokens
            known = pricing is not None or (spent == 0 and totals.no_usage == 0)
            rows.append(
                {
                    "model": model,
                    **{k: v for k, v in vars(totals).items() if k != "cost_usd"},
                    "total_tokens": spent,
                    "cost_usd": totals.cost_usd if known else None,
                    "input_cost_per_token": pricing.input_cost_per_token if pricing else None,
                    "output_cost_per_token": pricing.output_cost_per_token if pricing else None,
                }
            )
        return rows

    def frame(self) -> pd.DataFrame:
        """:meth:`rows` as a DataFrame with nullable numbers."""
        import pandas as pd

        frame = pd.DataFrame(self.rows(), columns=USAGE_COLUMNS)
        for name in USAGE_COLUMNS[1:8]:
            frame[name] = frame[name].astype("Int64")
        for name in USAGE_COLUMNS[8:]:
            frame[name] = frame[name].astype("Float64")
        frame["model"] = frame["model"].astype("string")
        return frame

    def summary(self) -> str:
        """One line for a status bar: requests, cache hits, tokens, cost so far."""
        rows = self.rows()
        requests = sum(r["requests"] for r in rows)
        hits = sum(r["cache_hits"] for r in rows)
        tokens = sum(r["total_tokens"] for r in rows)
        parts = [f"{requests:,} request{'s' if requests != 1 else ''}"]
        if hits:
            parts[0] += f" ({hits:,} cached)"
        parts.append(f"{tokens:,} tokens")
        known = [r["cost_usd"] for r in rows if r["cost_usd"] is not None]
        unknown = [r["model"] for r in rows if r["cost_usd"] is None]
        if unknown and not known:
            parts.append("cost unknown")
        elif unknown:
            parts.append(f"${sum(known):.4f} + unknown ({', '.join(unknown)})")
        else:
            parts.append(f"${sum(known):.4f}")
        return " · ".join(parts)
