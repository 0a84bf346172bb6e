"""Judges: a model grades the variants' replies, after they are all in.

A pointwise judge (``scorers.judge``) grades each answered reply against its rubric and target:
one request per distinct (prompt, reply, target), at temperature 0, with the verdict's schema.
A pairwise judge (``scorers.pairwise``) compares each variant's reply with the baseline's on the
same row, shown in both orders so that a preference for the first (or second) place cancels: a
variant scores 1 on a row where it is preferred in both orders, 0 where the baseline is, 0.5
otherwise, and the baseline 0.5 everywhere. Their requests go through the Session like every
other (cached, priced) and their cost is kept apart (``judge_cost_usd``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._batch import BatchSchema, Job, execute, outcome_values
from ._budget import judge_budget
from ._scorers import PREFERENCE, VERDICT, Scorer

if TYPE_CHECKING:
    from .._batch import BatchSession, Estimate
    from ._run import RunOptions

__all__ = ["Judged", "judge_estimate", "run_judge"]

Record = tuple[int, str, int, dict[str, Any], bool]


def run_judge(
    session: BatchSession,
    scorer: Scorer,
    rows: list[dict[str, Any]],
    records: list[tuple[int, str, int, dict[str, Any], bool]],
    options: RunOptions,
    left: float | None,
) -> Judged:
    """The judge's verdict on every answered record: one request per distinct (prompt, reply,
    target), at temperature 0, with the verdict's schema; its cost on the record that asked first."""
    judge = scorer.judge
    assert judge is not None
    if judge.pairwise:
        return _run_pairwise(session, scorer, records, options, left)
    jobs: list[Job] = []
    asks: list[int | None] = []
    seen: dict[str, int] = {}
    for index, _, _, values, _ in records:
        if values["error"] is not None or values["reply"] is None:
            asks.append(None)
            continue
        target = rows[index].get(scorer.target) if scorer.target is not None else None
        prompt = judge.prompt(values["prompt"] or "", values["reply"], target)
        if prompt not in seen:
            seen[prompt] = len(jobs)
            jobs.append(Job(prompt, judge.model, {"temperature": 0}))
        asks.append(seen[prompt])
    runner = _execute(session, jobs, judge.model, VERDICT, options, left)
    verdicts = [outcome_values(outcome) for outcome in runner.outcomes]
    judged = Judged([], [], [])
    charged: set[int] = set()
    for ask in asks:
        verdict = verdicts[ask] if ask is not None else None
        if verdict is None:
            judged.add(math.nan, None, None)
            continue
        cost = verdict["cost_usd"] if ask not in charged else 0.0
        charged.add(ask)
        parsed = verdict["parsed"]
        if verdict["error"] is not None or not isinstance(parsed, dict):
            judged.add(math.nan, cost, f"{scorer.name}: {verdict['error'] or 'no verdict'}")
        else:
            judged.add(float(bool(parsed.get("passed"))), cost, None)
    return judged


@dataclass
class Judged:
    """A judge's scores, costs and errors, one per record."""

    scores: list[float]
    costs: list[float | None]
    errors: list[str | None]

    def add(self, score: float, cost: float | None, error: str | None) -> None:
        self.scores.append(score)
        self.costs.append(cost)
        self.errors.append(error)


def _run_pairwise(
    session: BatchSession, scorer: Scorer, records: list[Record], options: RunOptions, left: float | None
) -> Judged:
    judge = scorer.judge
    assert judge is not None
    arms = list(dict.fromkeys(name for _, name, _, _, _ in records))
    baseline = judge.baseline or arms[0]
    first = {(index, name): values for index, name, repeat, values, _ in records if repeat == 0}
    jobs: list[Job] = []
    pairs: dict[tuple[int, str], tuple[int, int]] = {}
    for (index, name), values in first.items():
        base = first.get((index, baseline))
        if name == baseline or base is None or not _answered(values) or not _answered(base):
            continue
        question = base["prompt"] or ""
        pairs[(index, name)] = (len(jobs), len(jobs) + 1)
        for one, two in ((base["reply"], values["reply"]), (values["reply"], base["reply"])):
            jobs.append(Job(judge.pair_prompt(question, one, two), judge.model, {"temperature": 0}))
    runner = _execute(session, jobs, judge.model, PREFERENCE, options, left)
    verdicts = [outcome_values(outcome) for outcome in runner.outcomes]
    judged = Judged([], [], [])
    charged: set[tuple[int, int]] = set()
    for index, name, _, values, _ in records:
        if name == baseline:
            judged.add(0.5 if _answered(values) else math.nan, None, None)
            continue
        pair = pairs.get((index, name))
        if pair is None:
            judged.add(math.nan, None, None)
            continue
        forward, backward = (verdicts[i] for i in pair)
        cost = sum(v["cost_usd"] for v in (forward, backward) if v["cost_usd"] is not None)
        if pair in charged:  # a repeat of the row reads the same pair: charged once
            cost = 0.0
        charged.add(pair)
        prefer = [_preferred(v) for v in (forward, backward)]
        if None in prefer:
            error = next(v["error"] for v in (forward, backward) if _preferred(v) is None) or "no verdict"
            judged.add(math.nan, cost, f"{scorer.name}: {error}")
            continue
        # forward shows (baseline, variant), backward (variant, baseline): 2 then 1 is the variant twice.
        variant_wins = (prefer[0] == 2) + (prefer[1] == 1)
        baseline_wins = (prefer[0] == 1) + (prefer[1] == 2)
        judged.add(1.0 if variant_wins == 2 else 0.0 if baseline_wins == 2 else 0.5, cost, None)
    return judged


def _execute(
    session: BatchSession,
    jobs: list[Job],
    model: str,
    schema: dict[str, Any],
    options: RunOptions,
    left: float | None,
) -> Any:
    """Run a judge's jobs in one pool, within what is left of the budget."""
    budget = judge_budget(session, model, jobs, left)
    runner = execute(
        session,
        jobs,
        options.concurrency,
        "record",
        options.progress,
        False,
        BatchSchema(schema),
        None,
        budget,
    )
    if budget is not None:
        budget.mark_unsent(runner.outcomes)
    return runner


def _answered(values: dict[str, Any]) -> bool:
    return values["error"] is None and values["reply"] is not None


def _preferred(verdict: dict[str, Any]) -> int | None:
    parsed = verdict["parsed"]
    if verdict["error"] is not None or not isinstance(parsed, dict) or parsed.get("better") not in (0, 1, 2):
        return None
    return int(parsed["better"])


#: Reply tokens a judge's verdict is taken to cost ({"passed": ..., "reason": one sentence}).
VERDICT_TOKENS = 40


def judge_estimate(
    session: BatchSession, scorer: Scorer, name: str, requests: int, estimate: Estimate, baseline: str
) -> dict:
    """A judge's requests for one variant: every answer judged, each sending the judge's template,
    the variant's prompt and its reply (as many tokens as the variant's estimate gives a reply); a
    pairwise judge sends two per row (both orders) with two replies, none for the baseline."""
    from .._tokens import count_text

    judge = scorer.judge
    assert judge is not None
    replies = 1
    if judge.pairwise:
        requests, replies = (0 if name == (judge.baseline or baseline) else 2 * estimate.rows), 2
    fixed = count_text(judge.pair_prompt("", "", "") if judge.pairwise else judge.prompt("", "", None))
    per_prompt = estimate.prompt_tokens / max(1, estimate.rows)
    prompt = round(requests * (fixed + per_prompt + replies * estimate.completion_tokens_per_row))
    completion = requests * VERDICT_TOKENS
    pricing = (
        None if session.cache is not None and session.cache.replaying else session.ledger.pricing(judge.model)
    )
    priced = pricing is not None and pricing.method == "token"
    cost = (
        prompt * (pricing.input_cost_per_token or 0.0) + completion * (pricing.output_cost_per_token or 0.0)
        if priced
        else None
    )
    return {
        "variant": f"{name} (judge {scorer.name})",
        "model": judge.model,
        "requests": requests,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cost_usd": cost,
        "note": f"an upper bound: every answer judged, {VERDICT_TOKENS} tokens a verdict"
        if priced
        else f"{judge.model} has no per-token prices",
    }
