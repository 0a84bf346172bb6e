"""The Session's prototyping methods: ``map``, ``estimate``, ``compare`` and ``commit_results``.

Façades over the batch layer (``_batch``), imported when first called: the one way up the layers
(``lint-imports`` lets this module, and only it, import ``_batch``). :class:`~oxen_notebook.Session`
inherits them; ``_batch`` sees the Session only through its ``BatchSession`` protocol.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from ._batch import Estimate

__all__ = ["Prototyping"]


class Prototyping:
    """``map``, ``estimate``, ``compare`` and ``commit_results``, for :class:`Session`."""

    def map(
        self,
        data: Any,
        template: str,
        *,
        concurrency: int = 8,
        on_error: str = "record",
        progress: bool | Callable[..., Any] = True,
        stream: bool = False,
        schema: Any = None,
        images: list[Any] | None = None,
        files: list[Any] | None = None,
        max_cost_usd: float | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        resume: bool = True,
        retry_errors: bool = False,
        **params: Any,
    ) -> pd.DataFrame:
        """Send ``template``, filled from each row of ``data`` (a DataFrame, a list of dicts, or a
        list of strings for ``{}``/``{text}``; also any iterable of those, or a Parquet file's
        path), as one-shot requests, ``concurrency`` at a time.

        Returns the data in its order with ``reply``, ``finish_reason``, token, ``latency_s``,
        ``cost_usd``, ``cached`` and ``error`` columns. ``on_error="raise"`` stops at the first
        failure; Ctrl-C cancels the requests in flight and returns the rows that finished. Rows are
        sent unstreamed (the body carries the server's token counts); ``stream=True`` streams them.
        ``schema=`` (as in :meth:`stream`) adds one typed column per field and ``parsed`` after the
        data's columns; a row that does not validate after its repair has NA there and its error.
        ``images=`` / ``files=`` (as in :meth:`stream`) go with every row, read once.
        ``max_cost_usd=`` starts no row that could pass the budget (the spent cost plus the rows in
        flight at their estimate, as :meth:`estimate` counts); the rows not sent say so in ``error``,
        and ``out.attrs`` has ``cost_usd`` and ``budget_stopped``.
        ``checkpoint="runs/x"`` reads the data lazily (a generator or a Parquet file in batches)
        and writes finished rows to Parquet parts in that folder as it goes, with their batch log;
        the result is read back from them. Run the same call again (after an error, a Ctrl-C or a
        dead kernel) and it goes on where it stopped, sending no finished row again; a changed
        template, model or parameters is an error, and ``resume=False`` clears the folder and
        starts over. Failed rows count as finished; ``retry_errors=True`` sends them again."""
        from ._batch import run_map

        return run_map(
            self, data, template, concurrency=concurrency, on_error=on_error, progress=progress,
            stream=stream, schema=schema, images=images, files=files, max_cost_usd=max_cost_usd,
            checkpoint=checkpoint, resume=resume, retry_errors=retry_errors, **params,
        )  # fmt: skip

    def estimate(
        self,
        data: Any,
        template: str,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        expected_output_tokens: int | None = None,
        sample: int | None = None,
        images: list[Any] | None = None,
        files: list[Any] | None = None,
        **params: Any,
    ) -> Estimate:
        """What :meth:`map` of ``template`` over ``data`` would send and cost; nothing is sent but
        the model's details (once). Each row is filled and counted as :meth:`preview` counts it
        (``images``/``files`` as :meth:`map` sends them with every row, estimated);
        over 100,000 rows (or with ``sample=N``) a seeded random sample is counted and scaled.
        Replies count ``expected_output_tokens`` a row, else ``max_tokens`` (a bound), else 256."""
        from ._batch import estimate_map

        return estimate_map(
            self, data, template, model=model, max_tokens=max_tokens,
            expected_output_tokens=expected_output_tokens, sample=sample, images=images, files=files,
            **params,
        )  # fmt: skip

    def compare(
        self,
        template: str,
        *,
        models: list[str] | None = None,
        params: list[dict[str, Any]] | None = None,
        show: bool = True,
        schema: Any = None,
        **variables: Any,
    ) -> pd.DataFrame:
        """Send one prompt (``template`` filled with ``variables``) to several ``models`` and/or
        parameter sets (``params=[{"temperature": 0}, {"temperature": 1}]``) at once; return one
        row per variant and, with ``show``, display the replies side by side. ``schema=`` adds
        the same typed columns as in :meth:`map`, per variant."""
        from ._batch import run_compare

        return run_compare(
            self, template, models=models, params=params, show=show, schema=schema, **variables
        )

    def commit_results(
        self,
        frame: pd.DataFrame,
        *,
        repo: str | os.PathLike[str],
        path: str = "labels/classify.parquet",
        message: str | None = None,
    ) -> str:
        """Write ``frame`` (a :meth:`map` or :meth:`compare` result) as Parquet to ``path`` inside
        the Oxen repository ``repo`` (``oxen init``-ed first if it is not one) and commit it; return
        the commit id. The message's first line is ``message`` or a summary; its last line,
        ``oxen_notebook: {...}``, is JSON with the model(s), parameters, the template's sha256 (12
        hex digits), rows, errors and cost (what ``map`` recorded in ``frame.attrs``; ``null`` where
        the frame does not say). Dict, list and model columns are stored as JSON text. Needs
        ``pip install "oxen-notebook[oxen]"``. Nothing is pushed: run ``oxen push`` for that."""
        from ._batch import commit_results

        return commit_results(frame, repo=repo, path=path, message=message)
