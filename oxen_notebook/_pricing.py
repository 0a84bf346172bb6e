"""What a model costs: the prices in a ``GET /models/{id}`` answer, and the cost of one request.

A model without published prices has an unknown cost (``None``), never zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Pricing", "cost_of", "pricing_from_info"]


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
