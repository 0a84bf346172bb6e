"""An evaluation's result: the long rows, the per-variant summary, paired comparisons, the rows
where two variants disagree, a plot, a JSON file and the difference between two runs.

The numbers come from ``_stats.py`` on a (rows x variants) matrix of per-row scores per scorer (the
mean of a row's repeats), so the summary of a million rows costs numpy operations, not a loop.
A row a variant did not answer (an error, or not sent) is missing for that variant: its mean and
interval are over the rows it answered, and a pair is compared on the rows both answered.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._errors import ParameterError
from . import _stats
from ._files import ROW_DTYPES, Settings, commit_result, read_result, write_result

if TYPE_CHECKING:
    import pandas as pd

    from ._run import Judged
    from ._scorers import Scorer

__all__ = ["Comparison", "EvalResult"]


@dataclass(frozen=True)
class Comparison:
    """``b`` against ``a`` on ``scorer``, over the rows both answered (see ``_stats.Paired``)."""

    a: str
    b: str
    scorer: str
    n: int
    wins: int  # rows where b scored higher
    losses: int
    ties: int
    difference: float  # mean(b) - mean(a)
    low: float
    high: float
    p_value: float
    test: str
    rows_needed: int | None

    @property
    def significant(self) -> bool:
        return self.p_value < 0.05

    def verdict(self) -> str:
        """One sentence: which is better, by how much, and whether the data can tell."""
        if self.n == 0:
            return f"{self.a} and {self.b} answered no row in common: nothing to compare."
        size = f"{self.difference:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"
        if self.significant:
            better = self.b if self.difference > 0 else self.a
            return f"{better} is better: {self.b} - {self.a} = {size}, p = {self.p_value:.3g} ({self.test}, n = {self.n})."
        needed = (
            f"; about {self.rows_needed:,} rows would tell a difference this size" if self.rows_needed else ""
        )
        return (
            f"no real difference shown: {self.b} - {self.a} = {size}, p = {self.p_value:.3g} "
            f"({self.test}, n = {self.n}){needed}."
        )

    def __str__(self) -> str:
        return (
            f"{self.b} vs {self.a} on {self.scorer}: {self.wins} wins, {self.losses} losses, {self.ties} ties. "
            + self.verdict()
        )

    def _repr_html_(self) -> str:
        from .._math import escape_text

        return f"<p>{escape_text(str(self))}</p>"


def _score_value(value: Any) -> float:
    if value is None or isinstance(value, str):
        return math.nan
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


class EvalResult:
    """What :meth:`Session.evaluate` returns. ``rows``: one row per (data row, variant, repeat);
    ``summary``: one row per variant; :meth:`compare`, :meth:`versus`, :meth:`disagreements`,
    :meth:`plot`, :meth:`save` / :meth:`load`, :meth:`diff`."""

    def __init__(
        self, data: pd.DataFrame, rows: pd.DataFrame, settings: Settings, batch_id: str = ""
    ) -> None:
        self.data = data
        self.rows = rows
        self.settings = settings
        self.batch_id = batch_id
        self.variants = list(settings.variants)
        self.scorers = [s["name"] for s in settings.scorers]
        self._summary: pd.DataFrame | None = None
        self._matrices: dict[str, np.ndarray] = {}
        #: ``(max_cost_usd, spent)`` when the evaluation had a budget.
        self.budget: tuple[float, float] | None = None
        self._binaries: dict[str, bool] = {}

    # -- building -------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        frame: pd.DataFrame,
        rows: list[dict[str, Any]],
        records: list[tuple[int, str, int, dict[str, Any], bool]],
        scorers: list[Scorer],
        settings: Settings,
        batch_id: str,
        judged: dict[str, Judged] | None = None,
    ) -> EvalResult:
        """Score each (row, variant, repeat) and lay the results out long; ``judged`` holds the
        judge scorers' verdicts, one per record."""
        import pandas as pd

        columns: dict[str, list[Any]] = {
            name: []
            for name in (
                "row",
                "variant",
                "model",
                "repeat",
                "prompt",
                "reply",
                "parsed",
                "error",
                "prompt_tokens",
                "completion_tokens",
                "cost_usd",
                "latency_s",
                "cached",
                "shared",
                "scorer_error",
            )
        }
        scores: dict[str, list[float]] = {s.name: [] for s in scorers}
        judged = judged or {}
        judge_costs: list[float | None] = []
        for position, (index, name, repeat, values, shared) in enumerate(records):
            answered = values["error"] is None and values["reply"] is not None
            problems = []
            spent = [j.costs[position] for j in judged.values() if j.costs[position] is not None]
            judge_costs.append(sum(spent) if spent else None)
            for scorer in scorers:
                score = math.nan
                if scorer.name in judged:
                    verdict = judged[scorer.name]
                    score = verdict.scores[position]
                    if verdict.errors[position]:
                        problems.append(verdict.errors[position][:300])
                elif answered:
                    try:
                        score = _score_value(scorer.grade(values["reply"], rows[index], values["parsed"]))
                    except Exception as exc:  # a scorer that raises marks this cell, not the run
                        problems.append(f"{scorer.name}: {type(exc).__name__}: {exc}"[:300])
                scores[scorer.name].append(score)
            columns["row"].append(index)
            columns["variant"].append(name)
            columns["model"].append(settings.variants[name]["model"])
            columns["repeat"].append(repeat)
            for key in (
                "prompt",
                "reply",
                "parsed",
                "error",
                "prompt_tokens",
                "completion_tokens",
                "latency_s",
                "cached",
            ):
                columns[key].append(values[key])
            columns["cost_usd"].append(
                0.0 if shared and values["cost_usd"] is not None else values["cost_usd"]
            )
            columns["shared"].append(shared)
            columns["scorer_error"].append("; ".join(problems) or None)
        long = pd.DataFrame(columns)
        if judged:
            long["judge_cost_usd"] = pd.array(judge_costs, dtype="Float64")
        long["variant"] = pd.Categorical(long["variant"], categories=list(settings.variants))
        for scorer in scorers:
            long[scorer.name] = pd.Series(scores[scorer.name], dtype="Float64")
        for name, dtype in ROW_DTYPES.items():
            long[name] = long[name].astype(dtype)
        if settings.target is not None:
            long.insert(4, "target", frame[settings.target].to_numpy()[long["row"].to_numpy()])
        return cls(frame, long, settings, batch_id)

    # -- the numbers ----------------------------------------------------------------------------

    def _scorer(self, scorer: str | None) -> str:
        if scorer is None:
            return self.scorers[0]
        if scorer not in self.scorers:
            raise ParameterError(
                f"no scorer {scorer!r} in this evaluation; scorers: {', '.join(self.scorers)}."
            )
        return scorer

    def _variant(self, name: str) -> int:
        if name not in self.variants:
            raise ParameterError(
                f"no variant {name!r} in this evaluation; variants: {', '.join(self.variants)}."
            )
        return self.variants.index(name)

    def matrix(self, scorer: str | None = None) -> np.ndarray:
        """Per-row scores, (data rows x variants), the mean of each row's repeats; NaN: unanswered."""
        scorer = self._scorer(scorer)
        if scorer not in self._matrices:
            self._matrices[scorer] = self._build_matrix(scorer)
        return self._matrices[scorer]

    def _build_matrix(self, scorer: str) -> np.ndarray:
        n_rows, n_arms = len(self.data), len(self.variants)
        values = self.rows[scorer].to_numpy(dtype=float, na_value=np.nan)
        flat = self.rows["row"].to_numpy(dtype=np.int64) * n_arms + self._codes()
        known = ~np.isnan(values)
        sums = np.bincount(flat[known], weights=values[known], minlength=n_rows * n_arms)
        counts = np.bincount(flat[known], minlength=n_rows * n_arms)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (sums / counts).reshape(n_rows, n_arms)

    def _binary(self, scorer: str, matrix: np.ndarray) -> bool:
        if scorer not in self._binaries:
            self._binaries[scorer] = _is_binary(self.settings, scorer, matrix)
        return self._binaries[scorer]

    def compare(self, a: str, b: str, *, scorer: str | None = None) -> Comparison:
        """``b`` against ``a``, paired on the rows both answered: wins, losses, ties, the difference
        of means with its 95 % interval, and the p-value (McNemar's exact test for pass/fail, a
        sign-flip permutation test for graded scores)."""
        scorer = self._scorer(scorer)
        matrix = self.matrix(scorer)
        return self._paired(matrix, self._variant(a), self._variant(b), scorer, self._binary(scorer, matrix))

    def _paired(self, matrix: np.ndarray, i: int, j: int, scorer: str, binary: bool) -> Comparison:
        both = ~np.isnan(matrix[:, i]) & ~np.isnan(matrix[:, j])
        result = _stats.paired(matrix[both, i], matrix[both, j], binary=binary, seed=self.settings.seed)
        return Comparison(self.variants[i], self.variants[j], scorer, **asdict(result))

    def versus(self, baseline: str, *, scorer: str | None = None) -> pd.DataFrame:
        """Every other variant against ``baseline``, with Holm-adjusted p-values (``p_holm``)."""
        import pandas as pd

        scorer = self._scorer(scorer)
        matrix = self.matrix(scorer)
        binary = self._binary(scorer, matrix)
        base = self._variant(baseline)
        found = [
            self._paired(matrix, base, j, scorer, binary) for j in range(len(self.variants)) if j != base
        ]
        adjusted = _stats.holm([c.p_value for c in found])
        frame = pd.DataFrame([asdict(c) for c in found])
        if len(frame):
            frame["p_holm"] = adjusted
            frame["verdict"] = [_verdict(c, p) for c, p in zip(found, adjusted, strict=True)]
        return frame

    @property
    def summary(self) -> pd.DataFrame:
        """One row per variant: rows answered (``n``), errors, each scorer's mean and 95 % interval,
        tokens, cost, cost per correct answer, p50/p95 latency, whether every row was answered,
        and, against the best variant (``best``), the Holm-adjusted p-value and a note."""
        if self._summary is None:
            self._summary = self._summarize()
        return self._summary

    def _codes(self) -> np.ndarray:
        """Each long row's variant as its position in :attr:`variants`."""
        import pandas as pd

        variant = self.rows["variant"]
        if not (
            isinstance(variant.dtype, pd.CategoricalDtype) and list(variant.cat.categories) == self.variants
        ):
            variant = pd.Series(pd.Categorical(variant, categories=self.variants))
        return variant.cat.codes.to_numpy(dtype=np.int64)

    def _summarize(self) -> pd.DataFrame:
        import pandas as pd

        rows = self.rows
        codes = self._codes()
        k = len(self.variants)
        answered = (rows["error"].isna() & rows["reply"].notna()).to_numpy(dtype=bool)
        per_variant = np.bincount(codes, minlength=k)
        unanswered = np.bincount(codes[~answered], minlength=k)

        def total(column: str) -> tuple[np.ndarray, np.ndarray]:
            values = rows[column].to_numpy(dtype=float, na_value=np.nan)
            known = ~np.isnan(values)
            return np.bincount(codes[known], weights=values[known], minlength=k), np.bincount(
                codes[known], minlength=k
            )

        prompt, _ = total("prompt_tokens")
        completion, _ = total("completion_tokens")
        cost, priced = total("cost_usd")
        judge_cost, judge_priced = total("judge_cost_usd") if "judge_cost_usd" in rows else (None, None)
        latency = rows["latency_s"].to_numpy(dtype=float, na_value=np.nan)
        timed = (
            ~np.isnan(latency)
            & ~rows["shared"].to_numpy(dtype=bool)
            & ~rows["cached"].to_numpy(dtype=bool, na_value=False)
        )
        matrices = {s: self.matrix(s) for s in self.scorers}
        binary = {s: self._binary(s, m) for s, m in matrices.items()}
        # The share of rows whose repeats did not all get the same score (the first scorer), per variant.
        flips: dict[str, float] = {}
        if self.settings.repeats > 1:
            agreement = self.agreement()
            flips = agreement.groupby("variant", observed=True)["flipped"].mean().astype(float).to_dict()
        records = []
        for j, name in enumerate(self.variants):
            record: dict[str, Any] = {"variant": name, "model": self.settings.variants[name]["model"]}
            record["n"] = int((~np.isnan(matrices[self.scorers[0]][:, j])).sum())
            record["errors"] = int(unanswered[j])
            record["complete"] = bool(per_variant[j]) and not unanswered[j]
            for scorer, matrix in matrices.items():
                values = matrix[:, j][~np.isnan(matrix[:, j])]
                if binary[scorer]:
                    interval = _stats.wilson(int(values.sum()), len(values))
                else:
                    interval = _stats.mean_interval(values, seed=self.settings.seed)
                record[scorer] = interval.mean
                record[f"{scorer}_low"] = interval.low
                record[f"{scorer}_high"] = interval.high
            if self.settings.repeats > 1:
                record["flip_rate"] = flips.get(name, math.nan)
            record["prompt_tokens"] = int(prompt[j])
            record["completion_tokens"] = int(completion[j])
            record["cost_usd"] = float(cost[j]) if priced[j] else math.nan
            if judge_cost is not None:
                record["judge_cost_usd"] = float(judge_cost[j]) if judge_priced[j] else math.nan
            correct = float(np.nansum(matrices[self.scorers[0]][:, j])) * self.settings.repeats
            record["cost_per_correct"] = record["cost_usd"] / correct if correct else math.nan
            mine = latency[timed & (codes == j)]
            record["latency_p50_s"] = float(np.percentile(mine, 50)) if len(mine) else math.nan
            record["latency_p95_s"] = float(np.percentile(mine, 95)) if len(mine) else math.nan
            records.append(record)
        frame = pd.DataFrame(records)
        self._mark_best(frame, matrices[self.scorers[0]])
        return frame

    def agreement(self, *, scorer: str | None = None) -> pd.DataFrame:
        """With ``repeats``: per data row and variant, the repeats scored, the most common score,
        the share of repeats that got it (``agreement``), and whether they disagreed (``flipped``)."""
        scorer = self._scorer(scorer)
        scored = self.rows[["row", "variant", scorer]].dropna(subset=[scorer])
        groups = scored.groupby(["row", "variant"], observed=True, sort=True)[scorer]

        def common(values: Any) -> float:
            return float(values.value_counts().index[0])

        out = groups.agg(repeats="count", score=common).reset_index()
        top = groups.agg(lambda values: values.value_counts().iloc[0]).to_numpy()
        out["agreement"] = top / out["repeats"].to_numpy()
        out["flipped"] = out["agreement"] < 1
        return out

    def _mark_best(self, frame: pd.DataFrame, matrix: np.ndarray) -> None:
        scorer = self.scorers[0]
        frame["best"] = False
        frame["p_vs_best"] = math.nan
        frame["note"] = ""
        if not len(frame) or frame[scorer].isna().all():
            return
        ranked = frame.assign(_cost=frame["cost_usd"].fillna(math.inf)).sort_values(
            [scorer, "_cost"], ascending=[False, True], na_position="last"
        )
        best = int(ranked.index[0])
        frame.loc[best, "best"] = True
        binary = self._binary(scorer, matrix)
        others = [j for j in range(len(frame)) if j != best]
        found = [self._paired(matrix, best, j, scorer, binary) for j in others]
        adjusted = _stats.holm([c.p_value for c in found])
        for j, comparison, p in zip(others, found, adjusted, strict=True):
            frame.loc[j, "p_vs_best"] = p
            frame.loc[j, "note"] = _note(comparison, p)
        if not frame.loc[best, "complete"]:
            frame.loc[best, "note"] = "incomplete: not every row was answered"

    # -- views ----------------------------------------------------------------------------------

    def disagreements(self, a: str, b: str, *, scorer: str | None = None) -> pd.DataFrame:
        """The data rows where ``a`` and ``b`` scored differently, with both replies and scores."""
        import pandas as pd

        scorer = self._scorer(scorer)
        i, j = self._variant(a), self._variant(b)
        matrix = self.matrix(scorer)
        differ = np.flatnonzero(
            ~np.isnan(matrix[:, i]) & ~np.isnan(matrix[:, j]) & (matrix[:, i] != matrix[:, j])
        )
        first = self.rows[self.rows["repeat"] == 0].set_index(["variant", "row"])
        out = self.data.iloc[differ].copy()
        for name, index in ((a, i), (b, j)):
            replies = first.loc[name, "reply"] if name in first.index.get_level_values(0) else pd.Series()
            out[f"reply_{name}"] = replies.reindex(differ).to_numpy()
            out[f"{scorer}_{name}"] = matrix[differ, index]
        return out

    def plot(self, *, scorer: str | None = None, ax: Any = None) -> Any:
        """Score against cost per variant, with the 95 % intervals (matplotlib); returns the Axes."""
        import matplotlib.pyplot as plt

        scorer = self._scorer(scorer)
        summary = self.summary
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        cost = summary["cost_usd"].fillna(0.0).to_numpy(dtype=float)
        mean = summary[scorer].to_numpy(dtype=float)
        errors = np.vstack([mean - summary[f"{scorer}_low"], summary[f"{scorer}_high"] - mean])
        ax.errorbar(cost, mean, yerr=errors, fmt="o", capsize=4)
        for x, y, name, best in zip(cost, mean, summary["variant"], summary["best"], strict=True):
            ax.annotate(("★ " if best else "") + name, (x, y), textcoords="offset points", xytext=(6, 4))
        ax.set_xlabel("cost (USD)")
        ax.set_ylabel(f"{scorer} (mean, 95 % interval)")
        ax.set_title("score against cost")
        return ax

    def __str__(self) -> str:
        from ._view import summary_text

        return summary_text(self)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        from ._grid import grid_html
        from ._view import summary_html

        return summary_html(self) + grid_html(self)

    # -- files ----------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the data, the long rows (without ``parsed``) and the settings as JSON."""
        return write_result(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EvalResult:
        """Read a file written by :meth:`save` (or ``oxen-notebook eval --json``), or a folder
        written by :meth:`commit`."""
        return cls(*read_result(path))

    def commit(self, *, repo: str | os.PathLike[str], path: str, message: str | None = None) -> str:
        """Write the data, the long rows, the summary (Parquet) and the settings (``evaluation.json``:
        variants, templates and their sha256, models, parameters, scorers, seed) to the folder
        ``path`` of the Oxen repository ``repo`` (``oxen init``-ed first if it is not one) and commit
        them; return the commit id. :meth:`load` reads the folder back. Needs
        ``pip install "oxen-notebook[oxen]"``; nothing is pushed."""
        return commit_result(self, repo, path, message)

    def diff(self, other: EvalResult, *, scorer: str | None = None) -> pd.DataFrame:
        """This run against ``other`` (an earlier one, say), per variant both have: the change in
        mean score with its paired interval and p-value, and the rows whose verdict changed."""
        import pandas as pd

        scorer = self._scorer(scorer)
        if len(other.data) != len(self.data):
            raise ParameterError(
                f"the two evaluations have {len(other.data):,} and {len(self.data):,} rows: diff compares runs on the same data."
            )
        mine, theirs = self.matrix(scorer), other.matrix(scorer)
        records = []
        for name in self.variants:
            if name not in other.variants:
                continue
            a, b = theirs[:, other.variants.index(name)], mine[:, self.variants.index(name)]
            both = ~np.isnan(a) & ~np.isnan(b)
            binary = self._binary(scorer, mine) and _is_binary(other.settings, scorer, theirs)
            paired = _stats.paired(a[both], b[both], binary=binary, seed=self.settings.seed)
            changed = np.flatnonzero(both & (a != b))
            records.append(
                {
                    "variant": name,
                    "before": float(np.nanmean(a)) if both.any() else math.nan,
                    "after": float(np.nanmean(b)) if both.any() else math.nan,
                    "difference": paired.difference,
                    "low": paired.low,
                    "high": paired.high,
                    "p_value": paired.p_value,
                    "n": paired.n,
                    "better": paired.wins,
                    "worse": paired.losses,
                    "changed_rows": changed.tolist(),
                    "regressed": paired.difference < 0 and paired.p_value < 0.05,
                }
            )
        return pd.DataFrame(records)


def _is_binary(settings: Settings, scorer: str, matrix: np.ndarray) -> bool:
    """Pass/fail scores: every known per-row score is 0 or 1 (a callable's bools included), and
    not a mean of repeats of a graded scorer."""
    declared = next(s for s in settings.scorers if s["name"] == scorer)["binary"]
    known = matrix[~np.isnan(matrix)]
    return bool(np.all((known == 0) | (known == 1))) and (declared or settings.repeats == 1)


def _note(comparison: Comparison, p_holm: float) -> str:
    if comparison.n == 0:
        return "no rows answered by both"
    if p_holm < 0.05:
        return f"worse than the best ({comparison.difference:+.3f})"
    if comparison.rows_needed:
        return f"not distinguishable from the best: about {comparison.rows_needed:,} rows would tell"
    return "not distinguishable from the best"


def _verdict(comparison: Comparison, p_holm: float) -> str:
    if comparison.n == 0:
        return "no rows answered by both"
    if p_holm < 0.05:
        return "better" if comparison.difference > 0 else "worse"
    return "no real difference shown"
