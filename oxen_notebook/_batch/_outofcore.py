"""``map(..., checkpoint=DIR)``: the data read lazily, each finished row stored and dropped.

The rows come from a ``_sources.Source`` one at a time, as the runner's workers free up; a row the
checkpoint has already (matched by its key, ``_rowkeys``) is skipped (never sent again); each
finished row goes to the checkpoint (``_checkpoint.py``), its key and batch-log records too, and
the result is read back once the run ends (also after a Ctrl-C: the rows finished so far, and the
earlier runs' rows matched to the data read so far). The Session's batch log keeps only a link to
the checkpoint's log, read when it is exported.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .._ask import request_params
from .._records import new_id
from ._budget import make_budget
from ._checkpoint import ROW, Checkpoint, fingerprint
from ._commit import record_run, recorded_params
from ._results import DTYPES, MAP_COLUMNS, row_values
from ._rowkeys import row_key
from ._runner import Runner, check_options, prefetch, run_blocking
from ._sources import Source, open_source
from ._templates import RowTemplate
from ._typed import PARSED, BatchSchema
from ._types import BatchSession, Job, MapOptions, Outcome

if TYPE_CHECKING:
    import pandas as pd

    from .._attachments import Attachment

__all__ = ["run_checkpointed"]


class _Stored:
    """The runner's sink for a checkpoint: each finished row's data, result and records."""

    def __init__(self, store: Checkpoint, batch_id: str, schema: BatchSchema | None) -> None:
        self.store = store
        self.batch_id = batch_id
        self.schema = schema
        self.sent = 0  # rows stored by this run
        self.due, self.flush, self.close = store.due, store.flush, store.close

    def add(self, index: int, job: Job, outcome: Outcome) -> None:
        if outcome.state not in ("done", "failed"):
            return  # cut short: not finished, so it runs again when the batch resumes
        result = dict(zip(MAP_COLUMNS, row_values(outcome), strict=True))
        if self.schema is not None:
            value = self.schema.output.dump(outcome.parsed) if outcome.state == "done" else None
            result[PARSED] = None if value is None else json.dumps(value, ensure_ascii=False)
        self.sent += 1
        assert job.key is not None
        self.store.add(index, job.key, job.data or {}, result, outcome.records, self.batch_id)


class _Latest:
    """``jobs[index]`` for a budget over lazy rows: the row it asks about is the last one taken."""

    def __init__(self) -> None:
        self.index, self.job = -1, Job(None, None, {})

    def __getitem__(self, index: int) -> Job:
        return self.job if index == self.index else Job(None, None, {})

    def __len__(self) -> int:
        return 0  # not known before the rows are read: the budget's total is set once it is


def run_checkpointed(
    session: BatchSession,
    data: Any,
    template: str,
    attached: list[Attachment],
    options: MapOptions,
    params: dict[str, Any],
) -> pd.DataFrame:
    """``run_map`` with ``options.checkpoint`` (and ``resume``, ``retry_errors``); ``params`` are
    the request parameters (``model`` among them)."""
    source = open_source(data)
    model = params.pop("model", None)
    filled = RowTemplate.checked(
        template, (source.columns, source.strings), session, model=model, params=params
    )
    schema = options.schema
    typed = BatchSchema(schema, options.max_repairs) if schema is not None else None
    if typed is not None:
        typed.check_names(source.columns, MAP_COLUMNS)
    check_options(options.concurrency, options.on_error, options.stream)
    request_params(
        params, session.defaults, typed.output if typed is not None else None
    )  # fail before sending
    manifest = {
        "template": template,
        "model": model or session.model,
        "params": recorded_params({**session.defaults, **params}),
        "schema": fingerprint(typed.output.json_schema) if typed is not None else None,
        "system": fingerprint(session.system),
        "attachments": [a.sha256 or a.url for a in attached],
        "data": source.description,
        "rows_total": source.total,
    }
    latest = _Latest()
    budget = make_budget(session, latest, model, options.max_cost_usd, params, attached)  # type: ignore[arg-type]
    prefetch(session, {model or session.model})
    limits = {"rows": session.context_rows, "chars": session.context_chars}
    # Everything that can refuse the call has: now the folder is opened (or cleared, resume=False).
    checkpoint = Checkpoint(
        options.checkpoint,
        manifest,
        key_of=lambda data: row_key(data, limits),
        resume=options.resume,
        retry_errors=options.retry_errors,
    )
    try:
        # Until the data is read, which finished rows answer it is not known: a guess, then the count.
        total = None if source.total is None else max(source.total - checkpoint.finished, 0)
        if budget is not None:
            budget.total = total or 0  # what its "rows not sent" counts from

        def rows() -> Iterator[tuple[int, Job]]:
            taken = 0
            for index, row in enumerate(source.rows()):
                data = source.stored(row)
                key = row_key(data, limits)
                if checkpoint.reuse(index, key):
                    continue
                job = filled.job(row)
                job.data, job.key = data, key
                latest.index, latest.job = index, job
                taken += 1
                yield index, job
            runner.stats.total = taken  # now it is known

        batch_id = new_id()
        sink = _Stored(checkpoint, batch_id, typed)
        runner = Runner(
            session,
            rows(),
            concurrency=options.concurrency,
            on_error=options.on_error,
            stream=options.stream,
            schema=typed,
            files=attached,
            budget=budget,
            total=total,
            models={model},
            sink=sink,
        )
        runner.batch_id = batch_id
        try:
            run_blocking(runner, options.progress)  # also when no row is sent: it reads the data
        finally:
            if sink.sent:  # the batch log stays in the checkpoint: read when it is exported
                session.batch_log.link(batch_id, checkpoint.log_reader(batch_id))
        if runner.failure is not None:
            raise runner.failure
        if runner.first_error is not None:
            raise runner.first_error
        out = _read_back(checkpoint.results(DTYPES), source, typed)
        out.attrs.update(
            batch_id=batch_id,
            interrupted=runner.interrupted,
            checkpoint=str(checkpoint.path),
            resumed_rows=checkpoint.reused,
            budget_stopped=budget is not None and budget.stopped,
        )
        spent = out["cost_usd"].dropna()
        out.attrs["cost_usd"] = float(spent.sum()) if len(spent) else None
        record_run(
            out, template=template, model=manifest["model"], params=manifest["params"], batch_id=batch_id
        )
        return out
    finally:
        checkpoint.release()  # another run may open the folder now


def _read_back(stored: dict[str, Any], source: Source, schema: BatchSchema | None) -> pd.DataFrame:
    """The result from a checkpoint's columns: the data's, the schema's, then :data:`MAP_COLUMNS`.
    Each column is moved over, not copied (the data's own frame is taken at the rows finished)."""
    import pandas as pd

    positions = stored.pop(ROW)
    rows = len(positions)
    if source.frame is not None:  # an in-memory frame: its own columns, dtypes and index
        out = source.frame.take(positions)
        index = out.index
    else:
        index = pd.RangeIndex(rows) if rows == 0 or positions[-1] == rows - 1 else pd.Index(positions)
        names = [str(c) for c in source.columns]
        names += [c for c in stored if c not in names and c not in (*MAP_COLUMNS, PARSED)]
        empty = pd.Series([None] * rows, dtype="object")
        data = {name: (stored.pop(name) if name in stored else empty).set_axis(index) for name in names}
        out = pd.DataFrame(data, index=index, copy=False)
    if schema is not None:
        texts = stored.pop(PARSED).tolist() if PARSED in stored else [None] * rows
        values = [None if text is None or text != text else schema.output.parse(text) for text in texts]
        for name, column in schema.frame_columns(values, index).items():
            out[name] = column
    for name in MAP_COLUMNS:
        column = stored.pop(name) if name in stored else pd.Series([None] * rows, dtype="object")
        column = column if column.dtype == DTYPES[name] else column.astype(DTYPES[name])
        out[name] = column.set_axis(index)
    return out
