"""``Session.evaluate``: every variant on every row, through one pool, scored, as an :class:`EvalResult`.

Everything that can be wrong with the call is refused in one line before anything is sent. The
requests are ``map``'s jobs (``_batch``): one runner, so ``concurrency`` is the total in flight,
and the jobs interleaved row by row across the variants, so a stopped run has comparable partial
results for every variant. Identical requests (the same filled prompt, model, system prompt and
parameters, and repeat) are sent once and their reply shared: a data set with repeated texts pays
for each text once per variant.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._batch import BatchProgress, BatchSchema, Job, RowTemplate, execute, outcome_values, read_table
from .._errors import ParameterError
from .._schema import OutputSchema
from ._budget import arm_budget
from ._cluster import cluster_values, refuse_on_cluster
from ._files import Settings
from ._judges import judge_estimate, run_judge
from ._live import Live
from ._result import EvalResult
from ._scorers import Scorer, as_scorer, exact
from ._store import RequestLog, Sinks
from ._variants import Arm, expand

if TYPE_CHECKING:
    import pandas as pd

    from .._batch import BatchSession, Estimate

__all__ = ["EvalEstimate", "evaluate"]


@dataclass(frozen=True)
class _Plan:
    """What an evaluation sends, decided before anything is: the arms, the scorers, the data and
    the unique jobs (``slots[i]`` is the job each (row, arm, repeat) reads)."""

    arms: list[Arm]
    scorers: list[Scorer]
    frame: pd.DataFrame
    rows: list[dict[str, Any]]
    keys: list[tuple[int, str, int]]  # (row, arm, repeat) in the order sent
    jobs: list[Job]
    slots: list[int]
    schema: Any
    job_keys: list[str | None]  # what each job sends, as a key (None: it sends nothing)
    job_arm: list[int]  # the arm each job was made for (the first, for a shared one)
    repeats: int


def _scorers(given: Any, target: str | None, columns: set[str], schema: Any) -> list[Scorer]:
    if given is None:
        if target is None:
            raise ParameterError(
                "give target= (the column with the expected answer) or scorers= (how to grade a reply)."
            )
        given = [exact(normalize=True)]
    if isinstance(given, Scorer) or callable(given):
        given = [given]
    if not isinstance(given, (list, tuple)) or not given:
        raise ParameterError("scorers= takes a list, such as scorers=[scorers.exact()].")
    made = [as_scorer(value, i).with_target(target) for i, value in enumerate(given)]
    names = [s.name for s in made]
    for scorer in made:
        if names.count(scorer.name) > 1:
            raise ParameterError(
                f"two scorers are named {scorer.name!r}: give one of them name=... or drop it."
            )
        if scorer.needs_target and scorer.target is None:
            raise ParameterError(f"the {scorer.name} scorer needs a target column: give target=.")
        if scorer.target is not None and scorer.target not in columns:
            raise ParameterError(
                f"the target column {scorer.target!r} is not in the data; columns: {', '.join(sorted(columns))}."
            )
        if scorer.schema_field is not None:
            fields = set(OutputSchema.from_spec(schema).columns()) if schema is not None else set()
            if scorer.schema_field not in fields:
                raise ParameterError(
                    f"field({scorer.schema_field!r}) names no field of the variants' schema= "
                    f"({', '.join(sorted(fields)) or 'no schema given'})."
                )
    return made


def _one_schema(arms: list[Arm]) -> Any:
    schemas = {id(arm.variant.schema): arm.variant.schema for arm in arms}
    if len(schemas) > 1:
        raise ParameterError(
            "the variants give different schema= values: one evaluation takes one schema (or none) "
            "for all its variants; evaluate the others separately."
        )
    return next(iter(schemas.values()))


def _request_key(job: Job, model: str, system: str | None, repeat: int) -> str:
    return json.dumps([job.prompt, model, system, repeat, job.params], sort_keys=True, default=repr)


def _plan(
    session: BatchSession,
    data: Any,
    variants: Any,
    target: str | None,
    scorers: Any,
    models: list[str] | None,
    repeats: int,
) -> _Plan:
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise ParameterError(f"repeats={repeats!r} is invalid: expected a positive integer.")
    arms = expand(variants, models)
    frame, rows, strings = read_table(data)
    columns = {str(c) for c in frame.columns}
    if target is not None and target not in columns:
        raise ParameterError(
            f"target={target!r} is not a column of the data; columns: {', '.join(sorted(columns)) or 'none'}."
        )
    schema = _one_schema(arms)
    made = _scorers(scorers, target, columns, schema)
    names = [arm.name for arm in arms]
    for scorer in made:
        if scorer.judge is not None and scorer.judge.pairwise:
            if len(arms) < 2:
                raise ParameterError(f"the {scorer.name} scorer compares variants: give at least two.")
            if scorer.judge.baseline is not None and scorer.judge.baseline not in names:
                raise ParameterError(
                    f"pairwise(baseline={scorer.judge.baseline!r}) names no variant; variants: {', '.join(names)}."
                )
    filled = {
        arm.name: RowTemplate.checked(
            arm.variant.template,
            (frame.columns, strings),
            session,
            model=arm.model,
            params=dict(arm.variant.params),
            system=arm.variant.system,
        ).jobs(rows)
        for arm in arms
    }
    keys: list[tuple[int, str, int]] = []
    jobs: list[Job] = []
    slots: list[int] = []
    seen: dict[str, int] = {}
    job_keys: list[str | None] = []
    job_arm: list[int] = []
    for index in range(len(rows)):
        for position, arm in enumerate(arms):
            job = filled[arm.name][index]
            for repeat in range(repeats):
                keys.append((index, arm.name, repeat))
                if job.error is not None:
                    slots.append(len(jobs))
                    jobs.append(job)
                    job_keys.append(None)
                    job_arm.append(position)
                    continue
                key = _request_key(job, arm.model or session.model, arm.variant.system, repeat)
                if key not in seen:
                    seen[key] = len(jobs)
                    jobs.append(job)
                    job_keys.append(key)
                    job_arm.append(position)
                slots.append(seen[key])
    return _Plan(arms, made, frame, rows, keys, jobs, slots, schema, job_keys, job_arm, repeats)


@dataclass(frozen=True)
class RunOptions:
    """How an evaluation's requests are sent: at most ``concurrency`` in flight, within
    ``max_cost_usd``, kept in ``checkpoint`` (``resume``, ``retry_errors``), progress drawn or called."""

    concurrency: int = 8
    progress: bool | Callable[[BatchProgress], Any] = True
    max_cost_usd: float | None = None
    checkpoint: Any = None
    resume: bool = True
    retry_errors: bool = False


def evaluate(
    session: BatchSession,
    data: Any,
    variants: Any,
    *,
    target: str | None = None,
    scorers: Any = None,
    models: list[str] | None = None,
    repeats: int = 1,
    concurrency: int = 8,
    dry_run: bool = False,
    progress: bool | Callable[[BatchProgress], Any] = True,
    seed: int = 0,
    checkpoint: Any = None,
    resume: bool = True,
    retry_errors: bool = False,
    max_cost_usd: float | None = None,
) -> EvalResult | EvalEstimate:
    """See :meth:`Session.evaluate`."""
    on_cluster = type(data).__module__.startswith("dask") and hasattr(data, "map_partitions")
    plan = _plan(session, data.compute() if on_cluster else data, variants, target, scorers, models, repeats)
    if dry_run:
        return _estimate(session, plan, repeats)
    options = RunOptions(concurrency, progress, max_cost_usd, checkpoint, resume, retry_errors)
    if on_cluster:
        refuse_on_cluster(plan.arms, repeats, options)
        per_arm = cluster_values(session, data, plan.arms, plan.schema, concurrency, progress)
        records = [
            (index, arm.name, 0, {**per_arm[arm.name][index], "prompt": plan.jobs[slot].prompt}, False)
            for (index, name, _), slot in zip(plan.keys, plan.slots, strict=True)
            for arm in plan.arms
            if arm.name == name
        ]
        batch_id, spent = "", 0.0
    else:
        values, batch_id, spent = _send(session, plan, options)
        first_use: set[int] = set()
        records = []
        for (index, name, repeat), slot in zip(plan.keys, plan.slots, strict=True):
            shared = slot in first_use
            first_use.add(slot)
            records.append((index, name, repeat, values[slot], shared))
    # The rows show the target the scorers compare with: target=, else the first scorer's own.
    target = target or next((s.target for s in plan.scorers if s.target is not None), None)
    settings = Settings.of(session, plan.arms, plan.scorers, target, repeats, seed)
    judged = {}
    for scorer in plan.scorers:
        if scorer.judge is not None:
            left = None if max_cost_usd is None else max_cost_usd - spent
            judged[scorer.name] = run_judge(session, scorer, plan.rows, records, options, left)
            spent += sum(c for c in judged[scorer.name].costs if c is not None)
    result = EvalResult.build(plan.frame, plan.rows, records, plan.scorers, settings, batch_id, judged)
    if max_cost_usd is not None:
        result.budget = (max_cost_usd, spent)
    return result


def _send(session: BatchSession, plan: _Plan, options: RunOptions) -> tuple[list[dict[str, Any]], str, float]:
    """Every job's values (sent now through one runner, or read from the checkpoint's log), the
    batch id, and what the requests sent now cost."""
    todo = list(range(len(plan.jobs)))
    log = None
    if options.checkpoint is not None:
        log = RequestLog(options.checkpoint, [], resume=options.resume, retry_errors=options.retry_errors)
        todo = [i for i in todo if plan.job_keys[i] is None or log.stored(plan.job_keys[i]) is None]
        log.keys = [plan.job_keys[i] for i in todo]
    owners: list[list[tuple[str, dict[str, Any]]]] = [[] for _ in plan.jobs]
    for (index, name, _), slot in zip(plan.keys, plan.slots, strict=True):
        owners[slot].append((name, plan.rows[index]))

    def estimate() -> str:
        try:  # a preview of the run: never a reason for the run to fail
            line = str(_estimate(session, plan, plan.repeats)).splitlines()[0]
        except Exception:
            return ""
        return line.replace("estimate, nothing sent", "estimate, before sending")

    replaying = session.cache is not None and session.cache.replaying

    live = Live(
        options.progress,
        [arm.name for arm in plan.arms],
        [owners[i] for i in todo],
        plan.scorers[0],
        None if replaying else estimate,
    )
    schema = BatchSchema(plan.schema) if plan.schema is not None else None
    jobs = [plan.jobs[i] for i in todo]
    budget = arm_budget(session, plan.arms, jobs, [plan.job_arm[i] for i in todo], options.max_cost_usd)
    sink = Sinks(live, log, values=outcome_values)
    try:
        runner = execute(
            session, jobs, options.concurrency, "record", live.update, False, schema, None, budget, sink=sink
        )
    finally:
        if log is not None:
            log.close()
    if budget is not None:
        budget.mark_unsent(runner.outcomes)
    note = budget.note() if budget is not None and budget.stopped else None
    live.end(runner.stats, "interrupted" if runner.interrupted else note)
    values: list[dict[str, Any] | None] = [None] * len(plan.jobs)
    for position, i in enumerate(todo):
        values[i] = outcome_values(runner.outcomes[position])
    for i, value in enumerate(values):
        if value is None:  # answered in an earlier run
            assert log is not None
            stored = log.stored(plan.job_keys[i])
            values[i] = {**stored, "cached": True} if stored is not None else {}
    done = [v for v in values if v is not None]
    for job, value in zip(plan.jobs, done, strict=True):
        value["prompt"] = job.prompt
    spent = sum(m.cost_usd for o in runner.outcomes for m in o.replies if m.cost_usd is not None)
    return done, runner.batch_id, spent


class EvalEstimate:
    """What an evaluation would send and cost, per variant (``Session.evaluate(dry_run=True)``)."""

    def __init__(self, frame: pd.DataFrame, estimates: dict[str, Estimate]) -> None:
        self.summary = frame
        self.estimates = estimates

    @property
    def cost_usd(self) -> float | None:
        costs = self.summary["cost_usd"]
        return None if costs.isna().any() else float(costs.sum())

    def __str__(self) -> str:
        total = self.cost_usd
        head = f"estimate, nothing sent · {int(self.summary['requests'].sum()):,} requests"
        head += f" · ${total:,.4f}" if total is not None else " · cost unknown for some variants"
        return head + "\n" + self.summary.to_string(index=False)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        from .._math import escape_text, vet_html

        head = f"<p>{escape_text(str(self).splitlines()[0])}</p>"
        return head + vet_html(self.summary.to_html(index=False, escape=True))


def _estimate(session: BatchSession, plan: _Plan, repeats: int) -> EvalEstimate:
    import pandas as pd

    from .._batch import estimate_map

    estimates: dict[str, Estimate] = {}
    rows = []
    for arm in plan.arms:
        unique = len({plan.slots[i] for i, key in enumerate(plan.keys) if key[1] == arm.name})
        estimate = estimate_map(
            session, plan.frame, arm.variant.template, model=arm.model, **dict(arm.variant.params)
        )
        estimates[arm.name] = estimate
        share = unique / max(1, len(plan.rows) * repeats)
        cost = None if estimate.cost_usd is None else estimate.cost_usd * repeats * share
        rows.append(
            {
                "variant": arm.name,
                "model": estimate.model,
                "requests": unique,
                "prompt_tokens": round(estimate.prompt_tokens * repeats * share),
                "completion_tokens": round(estimate.completion_tokens * repeats * share),
                "cost_usd": cost,
                "note": estimate.cost_note or estimate.completion_rule,
            }
        )
        rows.extend(
            judge_estimate(session, scorer, arm.name, unique, estimate, plan.arms[0].name)
            for scorer in plan.scorers
            if scorer.judge is not None
        )
    return EvalEstimate(pd.DataFrame(rows), estimates)
