"""The Session's prototyping methods: ``preview``, ``map``, ``estimate``, ``compare`` and
``commit_results``.

``preview`` is what one request would send (``_preview``), from the Session's own ``_prepare``.
The others are façades over the batch layer (``_batch``), imported when first called: the one way
up the layers (``lint-imports`` lets this module, and only it, import ``_batch``).
:class:`~oxen_notebook.Session` inherits them; ``_batch`` sees the Session only through its
``BatchSession`` protocol.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._ask import Ask
from ._values import fill

if TYPE_CHECKING:
    import pandas as pd

    from ._batch import Estimate

__all__ = ["Prototyping"]


class Prototyping:
    """``preview``, ``map``, ``estimate``, ``compare`` and ``commit_results``, for :class:`Session`."""

    def preview(
        self,
        prompt: str,
        *,
        images: list[Any] | None = None,
        files: list[Any] | None = None,
        history: bool = True,
        model: str | None = None,
        schema: Any = None,
        tools: list[Any] | None = None,
        params: dict[str, Any] | None = None,
        **variables: Any,
    ) -> dict[str, Any]:
        """What :meth:`stream` would send, as a dict; nothing is sent, recorded or cached.

        ``variables`` fill ``{name}`` fields in ``prompt`` as templates do (a DataFrame becomes
        its shape, dtypes, missing counts and head/tail rows, within ``context_rows`` and
        ``context_chars``); ``params`` are request parameters. The dict has the ``body``
        (attachments summarized as type and size; never the key), its size in ``bytes``, an
        estimate of ``prompt_tokens``, and ``input_cost_usd`` / ``max_cost_usd`` from the model's
        published prices (its details may be read once, ``GET /models/{id}``)."""
        if variables:
            prompt = fill(prompt, variables, rows=self.context_rows, chars=self.context_chars, strict=True)
        ask = Ask.make(
            prompt,
            params=params,
            defaults=self.defaults,
            images=images,
            files=files,
            model=model,
            schema=schema,
            tools=tools,
            history=history,
        )
        return self.preview_ask(ask)

    def preview_ask(self, ask: Ask) -> dict[str, Any]:
        """:meth:`preview` for an :class:`~oxen_notebook._ask.Ask` made already (``%%oxen --dry-run``)."""
        from ._preview import preview_request

        request, _ = self._prepare(ask)
        return preview_request(request, self._outgoing(request), self.catalog.pricing(request.model))

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

    def evaluate(
        self,
        data: Any,
        variants: Any,
        *,
        target: str | None = None,
        scorers: list[Any] | None = None,
        models: list[str] | None = None,
        repeats: int = 1,
        concurrency: int = 8,
        dry_run: bool = False,
        progress: bool | Callable[..., Any] = True,
        seed: int = 0,
        checkpoint: str | os.PathLike[str] | None = None,
        resume: bool = True,
        retry_errors: bool = False,
        max_cost_usd: float | None = None,
    ) -> Any:
        """Run every variant on every row of ``data`` (as :meth:`map` reads it) and score the
        replies: which prompt or model is right on these rows, by how much, whether the difference
        is real, and at what cost.

        ``variants``: a dict of name -> template or ``Variant(template, model=, system=, schema=,
        **params)``; those naming no model run once per model of ``models`` (default: the
        Session's). ``target`` is the column with the expected answer; ``scorers`` (default:
        ``[scorers.exact()]``) grade each reply: ``exact``, ``contains``, ``choice``, ``regex``, ``numeric``,
        ``f1``, ``field`` (a ``schema=`` field), ``judge`` (a model grades) or a function
        ``(reply, row) -> bool | float``.
        ``repeats=N`` sends each (row, variant) N times. All requests share one pool
        (``concurrency`` in flight in all), interleaved row by row across the variants; identical
        requests are sent once. Returns an ``EvalResult`` (``summary``, ``compare(a, b)``,
        ``disagreements(a, b)``, ``rows``, ``plot()``, ``save()``); ``dry_run=True`` sends nothing
        and returns what each variant would send and cost. ``checkpoint="runs/eval"`` keeps every
        finished request in that folder: the same call again (after an error, Ctrl-C or a dead
        kernel) sends only what is not there, matched by what each request sends, so edited rows
        are sent again and no reply lands next to a row it did not answer; ``resume=False`` starts
        over, ``retry_errors=True`` sends failed requests again. ``max_cost_usd=`` starts no request
        that could pass the budget (each priced by its variant's model and ``max_tokens``; judges
        get what is left); the summary says which variants are complete."""
        from ._eval import evaluate

        return evaluate(
            self, data, variants, target=target, scorers=scorers, models=models, repeats=repeats,
            concurrency=concurrency, dry_run=dry_run, progress=progress, seed=seed, checkpoint=checkpoint,
            resume=resume, retry_errors=retry_errors, max_cost_usd=max_cost_usd,
        )  # fmt: skip

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
