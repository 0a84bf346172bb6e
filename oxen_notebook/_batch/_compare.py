"""``Session.compare``: one prompt, several models or settings, at once, shown side by side."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._errors import ParameterError
from .._frontend import ipython_shell
from .._math import escape_text
from .._records import is_missing
from .._style import style_tag
from ._map import execute
from ._results import MAP_COLUMNS, result_columns, row_values
from ._templates import check_template, fill
from ._typed import PARSED, BatchSchema
from ._types import BatchSession, EndedRows, Job

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["compare_html", "run_compare", "variants_html"]

_VARIANT_COLUMNS = ["variant", "model", "params"]


def _label(model: str, params: dict[str, Any]) -> str:
    settings = ", ".join(f"{k}={v!r}" for k, v in params.items())
    return f"{model} ({settings})" if settings else model


def run_compare(
    session: BatchSession,
    template: str,
    *,
    models: list[str] | None = None,
    params: list[dict[str, Any]] | None = None,
    show: bool = True,
    schema: Any = None,
    max_repairs: int = 1,
    **variables: Any,
) -> pd.DataFrame:
    """See :meth:`Session.compare`. ``schema=`` adds the same typed columns as in ``map``."""
    import pandas as pd

    if not models and not params:
        raise ParameterError("compare needs models=[...] and/or params=[{...}, ...] to compare.")
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",") if m.strip()]
    check_template(template, set(variables), False)
    typed = None
    if schema is not None:
        typed = BatchSchema(schema, max_repairs)
        typed.check_names((), [*_VARIANT_COLUMNS, *MAP_COLUMNS])
    prompt = fill(template, variables, False, rows=session.context_rows, chars=session.context_chars)
    jobs, labels, used = [], [], []
    for model in models or [None]:
        for settings in params or [{}]:
            settings = dict(settings)
            chosen = settings.pop("model", None) or model or session.model
            jobs.append(Job(prompt, chosen, settings))
            labels.append(_label(chosen, settings))
            used.append(settings)
    live = _LiveCompare(labels, typed is not None) if show and ipython_shell() is not None else None
    progress = live.tick if live is not None else False
    try:
        runner = execute(session, jobs, len(jobs), "record", progress, schema=typed, sink=live)
    except BaseException:
        if live is not None:
            live.drop()  # no spinners left turning for a compare that did not run
        raise
    frame = pd.DataFrame(
        {"variant": labels, "model": [j.model for j in jobs], "params": [repr(p) for p in used]}
    )
    frame = result_columns(frame, runner.outcomes, typed)
    frame = frame.astype({"variant": "string", "model": "string", "params": "string"})
    frame.attrs["batch_id"] = runner.batch_id
    if live is not None:
        live.finish(frame)
    elif show:
        _show(frame)
    return frame


def _render(text: str) -> str:
    try:
        from .._render import render_markdown
    except ImportError:
        return f"<pre>{escape_text(text)}</pre>"
    return render_markdown(text)


def _money(value: Any, cached: bool) -> str:
    if cached:
        return "$0 (cached)"
    return "unknown" if value is None or value != value else f"${value:.6f}"


def _na(value: Any) -> Any:
    return None if is_missing(value) else value


_FIELDS = ("reply", "latency", "tokens", "cost")
_SPINNER = '<span class="oxen-spinner" role="status" aria-label="running"></span>'


def _badge(text: str) -> str:
    return f' <span class="oxen-badge">{text}</span>'


def _best(rows: list[dict[str, Any] | None], column: str) -> int | None:
    """The variant with the least ``column`` among those that answered (two or more known)."""
    known = [
        (value, i)
        for i, r in enumerate(rows)
        if r is not None and not _na(r["error"]) and (value := _na(r[column])) is not None
    ]
    return min(known)[1] if len(known) >= 2 else None


def _cells(r: dict[str, Any] | None, typed: bool, fastest: bool, cheapest: bool) -> dict[str, str]:
    """One variant's cells; ``None``: still running (a spinner)."""
    if r is None:
        return {"reply": f"{_SPINNER} <em>running…</em>", "latency": "", "tokens": "", "cost": ""}
    reply, error = _na(r["reply"]), _na(r["error"])
    if reply and typed and "```" not in reply:
        reply = f"```json\n{reply}\n```"
    body = _render(reply) if reply else ""
    if error:
        body += f'<p class="oxen-compare-error">{escape_text(str(error))}</p>'
    latency = _na(r["latency_s"])
    prompt, completion = _na(r["prompt_tokens"]), _na(r["completion_tokens"])
    latency_text = f"{latency:.2f} s" if latency is not None else ""
    known = prompt is not None and completion is not None
    cost_text = escape_text(_money(_na(r["cost_usd"]), bool(_na(r["cached"]))))
    return {
        "reply": body,
        "latency": latency_text + (_badge("fastest") if fastest else ""),
        "tokens": f"{prompt} in, {completion} out" if known else "unknown",
        "cost": cost_text + (_badge("cheapest") if cheapest else ""),
    }


def variants_html(labels: list[str], rows: list[dict[str, Any] | None], *, typed: bool = False) -> str:
    """The side-by-side table: a column per variant (``rows[i]`` its result's columns, ``None``
    while it runs), the fastest and cheapest marked. Wide, a table; below 700 px of width the
    variants stack, each with its cells (see ``_style``)."""
    fastest, cheapest = _best(rows, "latency_s"), _best(rows, "cost_usd")
    columns = [_cells(r, typed, i == fastest, i == cheapest) for i, r in enumerate(rows)]
    head = "".join(f"<th>{escape_text(label)}</th>" for label in labels)
    body = "".join(
        f'<tr class="oxen-compare-{name}"><th>{name}</th>'
        + "".join(f"<td>{c[name]}</td>" for c in columns)
        + "</tr>"
        for name in _FIELDS
    )
    return (
        f'<div class="oxen-compare-wrap"><table class="oxen-compare"><thead><tr><th></th>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def compare_html(frame: pd.DataFrame) -> str:
    """The side-by-side table of a :meth:`Session.compare` result: replies rendered and sanitized."""
    rows = frame.to_dict(orient="records")
    typed = PARSED in frame.columns  # a schema's replies are JSON: shown as code
    return variants_html([str(r["variant"]) for r in rows], rows, typed=typed)


class _LiveCompare(EndedRows):
    """The table shown at once, a spinner per variant, each column filled as its variant ends.

    A :class:`RowSink` for the runner (``add`` runs on the batch's loop: it only notes the row) and
    its progress callback (``tick``, on the caller's thread every 0.1 s: it redraws when a row
    ended), so the display is only ever touched from the cell's thread."""

    def __init__(self, labels: list[str], typed: bool) -> None:
        import uuid

        super().__init__()
        self.labels = labels
        self.typed = typed
        self.rows: list[dict[str, Any] | None] = [None] * len(labels)
        self.display_id = f"oxen-compare-{uuid.uuid4().hex}"
        self._show(display_new=True)

    def _show(self, *, display_new: bool = False) -> None:
        from IPython.display import display, update_display

        bundle = {
            "text/html": style_tag() + variants_html(self.labels, self.rows, typed=self.typed),
            "text/plain": f"compare: {sum(r is not None for r in self.rows)}/{len(self.rows)} variants done",
        }
        if display_new:
            display(bundle, raw=True, display_id=self.display_id)
        else:
            update_display(bundle, raw=True, display_id=self.display_id)

    def tick(self, stats: Any) -> None:
        ended = self.take()
        for index, outcome in ended:
            self.rows[index] = dict(zip(MAP_COLUMNS, row_values(outcome), strict=True))
        if ended:
            self._show()

    def drop(self) -> None:
        from IPython.display import update_display

        hidden = {"text/html": '<div class="oxen-hidden"></div>', "text/plain": ""}
        update_display(hidden, raw=True, display_id=self.display_id)

    def finish(self, frame: pd.DataFrame) -> None:
        from IPython.display import update_display

        update_display(_bundle(frame), raw=True, display_id=self.display_id)


def _bundle(frame: pd.DataFrame) -> dict[str, str]:
    plain = frame[["variant", "reply", "latency_s", "completion_tokens", "cost_usd"]].to_string()
    return {"text/html": style_tag() + compare_html(frame), "text/plain": plain}


def _show(frame: pd.DataFrame) -> None:
    if ipython_shell() is not None:
        from IPython.display import display

        display(_bundle(frame), raw=True)
