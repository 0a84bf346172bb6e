"""``Session.evaluate`` on a Dask DataFrame: each variant's requests run on the cluster as
``map`` runs them there (``_batch/_dask.py``: the workers' own sessions and keys, ``concurrency``
in flight across the cluster, a 429 pausing every worker), one variant after another; the labelled
rows and the replies come back to score (statistics need every row's score in one place, and a
labelled set is small beside what it costs to answer).

What ``map`` cannot do on a cluster, an evaluation there cannot either, and says so in one line
before anything is sent: a budget, a checkpoint, a variant's own system prompt (the workers use
the Session's), repeats.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._batch import MAP_COLUMNS, run_map
from .._errors import ParameterError

if TYPE_CHECKING:
    from .._batch import BatchSession
    from ._variants import Arm

__all__ = ["cluster_values", "refuse_on_cluster"]


def refuse_on_cluster(arms: list[Arm], repeats: int, options: Any) -> None:
    """The options a cluster run cannot keep: a one-line :class:`ParameterError` each."""
    if options.max_cost_usd is not None or options.checkpoint is not None:
        raise ParameterError(
            "max_cost_usd= and checkpoint= are for an evaluation on one machine, as for map: "
            "leave them out with a Dask DataFrame, or .compute() it."
        )
    if repeats != 1:
        raise ParameterError(
            "repeats= is for an evaluation on one machine: leave it out with a Dask DataFrame."
        )
    for arm in arms:
        if arm.variant.system is not None:
            raise ParameterError(
                f"variant {arm.name!r} has its own system prompt, which the cluster's workers cannot "
                "use (they send the Session's): set Session.system, or .compute() the data."
            )


def cluster_values(
    session: BatchSession, data: Any, arms: list[Arm], schema: Any, concurrency: int, progress: Any
) -> dict[str, list[dict[str, Any]]]:
    """Each arm's values per data row (as ``outcome_values`` gives them), sent from the cluster."""
    values: dict[str, list[dict[str, Any]]] = {}
    for arm in arms:
        out = run_map(
            session,
            data,
            arm.variant.template,
            concurrency=concurrency,
            progress=bool(progress),
            schema=schema,
            model=arm.model,
            **dict(arm.variant.params),
        ).compute()
        parsed = out["parsed"].tolist() if "parsed" in out.columns else [None] * len(out)
        rows = out[MAP_COLUMNS].astype(object).where(out[MAP_COLUMNS].notna(), None).to_dict(orient="records")
        for row, value in zip(rows, parsed, strict=True):
            row["parsed"] = value if row["error"] is None else None
        values[arm.name] = rows
    return values
