"""``evaluate(max_cost_usd=)``: one budget over every variant's requests, then the judges'.

The variants' requests start through one :class:`~oxen_notebook._batch.Budget` (as ``map``'s rows
do), each priced by its own variant's model and ``max_tokens`` and counted with its own system
prompt; the judges' requests, sent after, get what is left. A variant whose model cannot be priced
per token before it runs is refused in one line, naming the variant, before anything is sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._batch import Budget, PromptCounter, Rate, check_limit, pricing_problem, reply_rule
from .._errors import ParameterError
from .._params import validate_params

if TYPE_CHECKING:
    from .._batch import BatchSession, Job
    from ._variants import Arm

__all__ = ["arm_budget", "judge_budget"]


def _rate(session: BatchSession, model: str, params: dict[str, Any], limit: float, who: str) -> Rate:
    pricing = session.ledger.pricing(model)
    problem = pricing_problem(model, pricing)
    if problem is not None or pricing is None:
        raise ParameterError(
            f"max_cost_usd={limit!r} cannot be kept: {who}: {problem}; drop max_cost_usd, or use a model "
            "priced per token (oxen_notebook.list_models())."
        )
    rule = reply_rule(params)
    return Rate.of(pricing, rule.tokens, rule.bound)


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
        rates.append(_rate(session, model, merged, limit, f"variant {arm.name!r}"))
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
    rate = _rate(session, model, merged, left, f"the judge {model!r}")
    counter = PromptCounter(session.system, merged, (), model)

    def prompt_tokens(index: int) -> int | None:
        return counter(jobs[index].prompt) if jobs[index].prompt is not None else None

    return Budget(max(left, 1e-12), None, prompt_tokens, 0, bound=True, total=len(jobs), rates=[rate])
