"""What a model costs: the prices in a ``GET /models/{id}`` answer, and the cost of one request.

Oxen bills by ``pricing.method``: ``token`` (``input_cost_per_token``, ``output_cost_per_token``),
``time`` (``cost_per_second``: Llama, Qwen and custom models), ``per_image`` and
``per_video_output_second``. A time-billed request is priced from its wall-clock duration as the
client saw it (queueing and network included), so that cost is an estimate. A text reply makes no
image and no video, so a ``per_image`` or ``per_video_output_second`` model's chat reply has no
price that applies: its cost is unknown (``None``), as is any model without published prices —
never zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["METHODS", "Pricing", "cost_of", "pricing_from_info"]

METHODS = ("token", "time", "per_image", "per_video_output_second")
_UNIT_KEYS = {
    "per_image": ("cost_per_image", "cost_per_unit", "cost"),
    "per_video_output_second": ("cost_per_video_output_second", "cost_per_second", "cost_per_unit", "cost"),
}


@dataclass(frozen=True)
class Pricing:
    """How a model is billed, in US dollars: per input (prompt) and output (completion) token
    (``method="token"``), per second of a request (``"time"``), or per image or second of video
    made (``cost_per_unit``)."""

    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None
    method: str = "token"
    cost_per_second: float | None = None
    cost_per_unit: float | None = None

    @property
    def estimated(self) -> bool:
        """Whether a cost from these prices is an estimate (time billing: the server's time is
        not reported, the client's wall clock stands in for it)."""
        return self.method == "time"


def _price(value: Any) -> float | None:
    try:
        price = float(value)
    except (TypeError, ValueError):
        return None
    return price if math.isfinite(price) and price >= 0 else None


def pricing_from_info(info: dict[str, Any] | None) -> Pricing | None:
    """The prices in a ``model_info`` dict, or ``None`` when the method's prices are missing.

    A pricing without ``method`` is per token (the catalogue's older shape). A ``per_image`` or
    ``per_video_output_second`` method, or one this version does not know, gives a
    :class:`Pricing` that prices no text reply, so that the method still shows in the usage."""
    pricing = (info or {}).get("pricing")
    if not isinstance(pricing, dict):
        return None
    method = str(pricing.get("method") or "token").strip().lower()
    if method == "token":
        prompt = _price(pricing.get("input_cost_per_token"))
        completion = _price(pricing.get("output_cost_per_token"))
        if prompt is None or completion is None:
            return None
        return Pricing(prompt, completion)
    if method == "time":
        per_second = _price(pricing.get("cost_per_second"))
        return Pricing(method="time", cost_per_second=per_second) if per_second is not None else None
    unit = next(
        (p for key in _UNIT_KEYS.get(method, ()) if (p := _price(pricing.get(key))) is not None), None
    )
    return Pricing(method=method, cost_per_unit=unit)


def cost_of(
    prompt_tokens: int | None,
    completion_tokens: int | None,
    pricing: Pricing | None,
    *,
    duration_s: float | None = None,
) -> float | None:
    """Dollars for one request; ``None`` when no price applies or what it multiplies is unknown.

    Per token: the token counts. Per second: ``duration_s`` (an estimate, see
    :attr:`Pricing.estimated`). Per image or per second of video: ``None`` for a text reply."""
    if pricing is None:
        return None
    if pricing.method == "token":
        if prompt_tokens is None or completion_tokens is None:
            return None
        if pricing.input_cost_per_token is None or pricing.output_cost_per_token is None:
            return None
        return (
            prompt_tokens * pricing.input_cost_per_token + completion_tokens * pricing.output_cost_per_token
        )
    if pricing.method == "time":
        if duration_s is None or pricing.cost_per_second is None:
            return None
        return max(duration_s, 0.0) * pricing.cost_per_second
    return None
