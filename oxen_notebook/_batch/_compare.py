"""``Session.compare``: one prompt, several models or settings, at once, shown side by side."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._errors import ParameterError
from .._frontend import ipython_shell
from .._math import escape_text
from .._records import is_missing
from ._map import execute
from ._results import MAP_COLUMNS, result_columns
from ._templates import check_template, fill
from ._typed import PARSED, BatchSchema
from ._types import BatchSession, Job

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["compare_html", "run_compare"]

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
    runner = execute(session, jobs, len(jobs), "record", False, schema=typed)
    frame = pd.DataFrame(
        {"variant": labels, "model": [j.model for j in jobs], "params": [repr(p) for p in used]}
    )
    frame = result_columns(frame, runner.outcomes, typed)
    frame = frame.astype({"variant": "string", "model": "string", "params": "string"})
    frame.attrs["batch_id"] = runner.batch_id
    if show:
        _show(compare_html(frame), frame)
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


def compare_html(frame: pd.DataFrame) -> str:
    """The side-by-side table of a :meth:`Session.compare` result: replies rendered and sanitized."""
    rows = frame.to_dict(orient="records")
    typed = PARSED in frame.columns  # a schema's replies are JSON: shown as code
    head = "".join(f"<th>{escape_text(str(r['variant']))}</th>" for r in rows)
    cells: dict[str, list[str]] = {"reply": [], "latency": [], "tokens": [], "cost": []}
    for r in rows:
        reply, error = _na(r["reply"]), _na(r["error"])
        if reply and typed and "```" not in reply:
            reply = f"```json\n{reply}\n```"
        body = _render(reply) if reply else ""
        if error:
            body += f'<p style="color:#b00020">{escape_text(str(error))}</p>'
        cells["reply"].append(body)
        latency = _na(r["latency_s"])
        cells["latency"].append(f"{latency:.2f} s" if latency is not None else "")
        prompt, completion = _na(r["prompt_tokens"]), _na(r["completion_tokens"])
        cells["tokens"].append(
            f"{prompt} in, {completion} out" if prompt is not None and completion is not None else "unknown"
        )
        cells["cost"].append(escape_text(_money(_na(r["cost_usd"]), bool(_na(r["cached"])))))
    style = 'style="vertical-align:top;text-align:left"'
    body = "".join(
        f"<tr><th {style}>{name}</th>" + "".join(f"<td {style}>{c}</td>" for c in values) + "</tr>"
        for name, values in cells.items()
    )
    return f'<table class="oxen-compare"><thead><tr><th></th>{head}</tr></thead><tbody>{body}</tbody></table>'


def _show(markup: str, frame: pd.DataFrame) -> None:
    if ipython_shell() is not None:
        from IPython.display import display

        plain = frame[["variant", "reply", "latency_s", "completion_tokens", "cost_usd"]].to_string()
        display({"text/html": markup, "text/plain": plain}, raw=True)
