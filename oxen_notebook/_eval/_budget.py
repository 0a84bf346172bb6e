"""``evaluate(max_cost_usd=)``: one budget over every variant's requests, then the judges'.

The variants' requests start through one :class:`~oxen_notebook._batch.Budget` (as ``map``'s rows
do), each priced by its own variant's model and ``max_tokens`` and counted with its own system
prompt; the judges' requests, sent after, get what is left. A variant whose model cannot be priced
per token before it runs is refused in one line, naming the variant, before anything is sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._batch import Budget, PromptCounter, check_limit, priced_rate
from .._params import validate_params

if TYPE_CHECKING:
    from .._batch import BatchSession, Job
    from ._variants import Arm

__all__ = ["arm_budget", "judge_budget"]


def arm_budget(
    session: BatchSession, arms: list[Arm], jobs: list[Job], arm_of: list[int], limit: Any
) -> Budget | None:
    """The budget of the variants' ``jobs`` (``arm_of[i]``: job i's arm), or ``None``."""
    if limit is None:
        return None
    check_limit(limit)
    if session.cache is not None and session.cache.replaying:
        return None
    rates, counters = [], []
    for arm in arms:
        model = arm.model or session.model
        merged = validate_params({**session.defaults, **arm.variant.params})
        rates.append(priced_rate(session, model, merged, limit, f"variant {arm.name!r}"))
        counters.append(PromptCounter(arm.variant.system or session.system, merged, (), model))

    def prompt_tokens(index: int) -> int | None:
        job = jobs[index]
        return counters[arm_of[index]](job.prompt) if job.prompt is not None and job.error is None else None

    return Budget(
        limit, None, prompt_tokens, 0, bound=True, total=len(jobs), rates=rates, kind_of=arm_of.__getitem__
    )


def judge_budget(session: BatchSession, model: str, jobs: list[Job], left: float | None) -> Budget | None:
    """What is left of the budget, for a judge's ``jobs`` (``None``: no budget)."""
    if left is None or (session.cache is not None and session.cache.replaying):
        return None
    merged = validate_params({**session.defaults, "temperature": 0})
    rate = priced_rate(session, model, merged, left, f"the judge {model!r}")
    counter = PromptCounter(session.system, merged, (), model)

    def prompt_tokens(index: int) -> int | None:
        return counter(jobs[index].prompt) if jobs[index].prompt is not None else None

    return Budget(max(left, 1e-12), None, prompt_tokens, 0, bound=True, total=len(jobs), rates=[rate])
