"""``Session.map``: a template filled from each row of the data, the rows run concurrently by
``_runner.py``, the replies (and the schema's typed columns) back as a DataFrame in the data's
order. A Dask DataFrame goes to ``_dask.py``; ``checkpoint=`` to ``_outofcore.py``, which reads the
data lazily and keeps finished rows in Parquet parts. ``execute`` is also ``compare``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._ask import attachments, request_params
from .._records import new_id
from ._budget import Budget, make_budget
from ._commit import record_run
from ._progress import BatchProgress
from ._results import MAP_COLUMNS, result_columns
from ._runner import Runner, check_options, prefetch, run_blocking
from ._templates import RowTemplate, table
from ._typed import BatchSchema
from ._types import BatchSession, Job, MapOptions, RowSink

if TYPE_CHECKING:
    import pandas as pd

    from .._attachments import Attachment

__all__ = ["execute", "run_map"]


def _log_batch(session: BatchSession, runner: Runner) -> str:
    batch_id = new_id()
    entries = [(row, message) for row, outcome in enumerate(runner.outcomes) for message in outcome.records]
    session.batch_log.add(batch_id, entries)
    return batch_id


def execute(
    session: BatchSession,
    jobs: list[Job],
    concurrency: int,
    on_error: str,
    progress: bool | Callable[[BatchProgress], Any],
    stream: bool = False,
    schema: BatchSchema | None = None,
    files: list[Attachment] | None = None,
    budget: Budget | None = None,
    sink: RowSink | None = None,
) -> Runner:
    check_options(concurrency, on_error, stream)
    output = schema.output if schema is not None else None
    checked: set[int] = set()
    for job in jobs:  # a bad parameter fails the batch before any row is sent (once per set of them)
        if job.error is None and id(job.params) not in checked:
            checked.add(id(job.params))
            request_params(job.params, session.defaults, output)
    prefetch(session, {job.model or session.model for job in jobs if job.error is None})
    runner = Runner(session, jobs, concurrency, on_error, stream, schema, files, budget, sink=sink)
    if jobs:
        try:
            run_blocking(runner, progress)
        finally:
            runner.batch_id = _log_batch(session, runner)
    if runner.first_error is not None:
        raise runner.first_error
    return runner


# -- map ----------------------------------------------------------------------------------------


def run_map(
    session: BatchSession,
    data: Any,
    template: str,
    *,
    concurrency: int = 8,
    on_error: str = "record",
    progress: bool | Callable[[BatchProgress], Any] = True,
    stream: bool = False,
    schema: Any = None,
    max_repairs: int = 1,
    images: list[Any] | None = None,
    files: list[Any] | None = None,
    max_cost_usd: float | None = None,
    checkpoint: Any = None,
    resume: bool = True,
    retry_errors: bool = False,
    **params: Any,
) -> pd.DataFrame:
    """See :meth:`Session.map`. ``stream=True`` streams each row (SSE) instead of reading one
    ``chat.completion`` body per row. ``schema=`` adds a column per field, and ``parsed``, after
    the data's (``_typed.py``); ``max_repairs`` is each row's, as in :meth:`Session.astream`.
    ``images=`` / ``files=`` go with every row: read and encoded once, before any row is sent.
    ``checkpoint=DIR`` reads the data lazily and keeps finished rows in ``DIR`` (``_checkpoint.py``);
    ``resume=False`` clears it first, ``retry_errors=True`` sends its failed rows again."""
    options = MapOptions(
        concurrency=concurrency,
        on_error=on_error,
        progress=progress,
        stream=stream,
        schema=schema,
        max_repairs=max_repairs,
        max_cost_usd=max_cost_usd,
        checkpoint=checkpoint,
        resume=resume,
        retry_errors=retry_errors,
    )
    if type(data).__module__.startswith("dask") and hasattr(data, "map_partitions"):
        from ._dask import map_dask  # a Dask DataFrame: its partitions, on dask.distributed workers

        return map_dask(session, data, template, options, attachments(images, files), params)
    attached = attachments(images, files)
    if checkpoint is not None:
        from ._outofcore import run_checkpointed  # it builds on this module's runner

        return run_checkpointed(session, data, template, attached, options, params)
    frame, rows, strings = table(data)
    model = params.pop("model", None)
    filled = RowTemplate.checked(template, (frame.columns, strings), session, model=model, params=params)
    typed = None
    if schema is not None:
        typed = BatchSchema(schema, max_repairs)
        typed.check_names(frame.columns, MAP_COLUMNS)
    jobs = filled.jobs(rows)
    budget = make_budget(session, jobs, model, max_cost_usd, params, attached)
    runner = execute(session, jobs, concurrency, on_error, progress, stream, typed, attached, budget)
    if budget is not None:
        budget.mark_unsent(runner.outcomes)
    out = result_columns(frame, runner.outcomes, typed)
    out.attrs["batch_id"] = runner.batch_id
    out.attrs["interrupted"] = runner.interrupted
    spent = out["cost_usd"].dropna()  # the rows' costs, as the ledger priced them
    out.attrs["cost_usd"] = float(spent.sum()) if len(spent) else None
    out.attrs["budget_stopped"] = budget is not None and budget.stopped
    recorded = {**session.defaults, **params}
    record_run(
        out, template=template, model=model or session.model, params=recorded, batch_id=runner.batch_id
    )
    return out
