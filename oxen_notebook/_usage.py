"""Usage and cost: tokens per model, priced from the model catalogue when it publishes prices.

A price is ``model_info(id)["pricing"]``'s ``input_cost_per_token`` and ``output_cost_per_token``;
a model without both has an unknown cost (``None`` / ``<NA>``), never zero. A reply answered from the
cache costs nothing (``cost_usd == 0.0``) and its tokens are not counted as spent.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from ._records import Message
    from ._session import Session

__all__ = ["USAGE_COLUMNS", "Pricing", "UsageLedger", "cost_of", "pricing_from_info"]

USAGE_COLUMNS = [
    "model", "requests", "cache_hits", "errors", "no_usage", "prompt_tokens", "completion_tokens",
    "total_tokens", "cost_usd", "input_cost_per_token", "output_cost_per_token",
]  # fmt: skip
_log = logging.getLogger("oxen_notebook")


@dataclass(frozen=True)
class Pricing:
    """US dollars per input (prompt) and output (completion) token."""

    input_cost_per_token: float
    output_cost_per_token: float


def _price(value: Any) -> float | None:
    try:
        price = float(value)
    except (TypeError, ValueError):
        return None
    return price if math.isfinite(price) and price >= 0 else None


def pricing_from_info(info: dict[str, Any] | None) -> Pricing | None:
    """The prices in a ``model_info`` dict, or ``None`` when either is missing."""
    pricing = (info or {}).get("pricing")
    if not isinstance(pricing, dict):
        return None
    prompt = _price(pricing.get("input_cost_per_token"))
    completion = _price(pricing.get("output_cost_per_token"))
    if prompt is None or completion is None:
        return None
    return Pricing(prompt, completion)


def cost_of(
    prompt_tokens: int | None, completion_tokens: int | None, pricing: Pricing | None
) -> float | None:
    """Dollars for one request; ``None`` when the price or the token counts are unknown."""
    if pricing is None or prompt_tokens is None or completion_tokens is None:
        return None
    return prompt_tokens * pricing.input_cost_per_token + completion_tokens * pricing.output_cost_per_token


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
    """Running totals per model for one session; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[str, _Totals] = {}
        self._prices: dict[str, Pricing | None] = {}

    def pricing(self, session: Session, model: str) -> Pricing | None:
        """The model's prices, fetched once per model (``None`` if unknown or unreachable)."""
        if model in self._prices:
            return self._prices[model]
        info = session._model_infos.get(model)
        if info is None:
            try:
                info = session.model_info(model)
            except Exception as exc:
                _log.info("no prices for model %r: %s", model, exc)
                info = None
        pricing = pricing_from_info(info)
        with self._lock:
            self._prices[model] = pricing
        return pricing

    def record(self, session: Session, message: Message, *, cached: bool) -> None:
        """Price ``message`` (sets ``cost_usd``) and add it to the totals."""
        model = message.model or session.model
        tokens = message.prompt_tokens is not None and message.completion_tokens is not None
        if cached:
            message.cost_usd = 0.0
        elif tokens:
            message.cost_usd = cost_of(
                message.prompt_tokens, message.completion_tokens, self.pricing(session, model)
            )
        with self._lock:
            totals = self._totals.setdefault(model, _Totals())
            if cached:
                totals.cache_hits += 1
                return
            totals.requests += 1
            if message.finish_reason == "error":
                totals.errors += 1
            if not tokens:
                totals.no_usage += 1
                return
            totals.prompt_tokens += message.prompt_tokens or 0
            totals.completion_tokens += message.completion_tokens or 0
            if message.cost_usd is not None:
                totals.cost_usd += message.cost_usd

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
