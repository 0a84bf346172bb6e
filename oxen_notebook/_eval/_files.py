"""An evaluation on disk: its settings (what ran) and the JSON file ``EvalResult.save`` writes,
``EvalResult.load`` and ``oxen-notebook eval --baseline`` read."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._batch import template_sha256
from .._errors import ParameterError

if TYPE_CHECKING:
    import pandas as pd

    from ._result import EvalResult
    from ._scorers import Scorer
    from ._variants import Arm

__all__ = ["FORMAT", "ROW_DTYPES", "Settings", "commit_result", "read_result", "write_result"]

FORMAT = "oxen_notebook.evaluation/1"
#: The pandas dtypes of an evaluation's long rows (``EvalResult.rows``), as built and as read back.
ROW_DTYPES = {
    "prompt": "string",
    "reply": "string",
    "error": "string",
    "prompt_tokens": "Int64",
    "completion_tokens": "Int64",
    "cost_usd": "Float64",
    "latency_s": "Float64",
    "cached": "boolean",
    "scorer_error": "string",
}


@dataclass(frozen=True)
class Settings:
    """What an evaluation ran: its variants (templates and their sha256), models, parameters,
    scorers, target, repeats and seed. Written with the results, compared by ``diff``."""

    variants: dict[str, dict[str, Any]]
    scorers: list[dict[str, Any]]
    target: str | None
    repeats: int
    seed: int
    session: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls, session: Any, arms: list[Arm], scorers: list[Scorer], target: str | None, repeats: int, seed: int
    ) -> Settings:
        variants = {}
        for arm in arms:
            settings = arm.variant.settings()
            settings["model"] = arm.model or session.model
            settings["template_sha256"] = template_sha256(arm.variant.template)
            if arm.variant.schema is not None:
                settings["schema"] = getattr(
                    arm.variant.schema, "__name__", type(arm.variant.schema).__name__
                )
            variants[arm.name] = settings
        described = [{"name": s.name, "binary": s.binary, "target": s.target} for s in scorers]
        own = {"model": session.model, "system": session.system, **dict(session.defaults)}
        return cls(variants, described, target, repeats, seed, own)


def write_result(result: EvalResult, path: str | os.PathLike[str]) -> Path:
    """Write the data, the long rows (without ``parsed``, which may not be JSON) and the settings."""
    rows = result.rows.drop(columns=["parsed"]).astype(object)
    rows = rows.where(rows.notna(), None)
    data = result.data.astype(object).where(result.data.notna(), None)
    saved = {
        "format": FORMAT,
        "settings": asdict(result.settings),
        "batch_id": result.batch_id,
        "data": json.loads(data.to_json(orient="split", index=False, default_handler=str)),
        "rows": rows.to_dict(orient="list"),
    }
    path = Path(path)
    path.write_text(json.dumps(saved, ensure_ascii=False, default=str, allow_nan=False), encoding="utf-8")
    return path


def commit_result(result: EvalResult, repo: str | os.PathLike[str], path: str, message: str | None) -> str:
    """Commit ``data.parquet``, ``rows.parquet``, ``summary.parquet`` and ``evaluation.json`` (the
    settings) into the Oxen repository ``repo`` at the folder ``path``; return the commit id."""
    from .._batch import commit_tables

    summary = result.summary
    best = summary[summary["best"]]
    scorer = result.scorers[0]
    line = f"{path}: {len(result.variants)} variants × {len(result.data):,} rows"
    if len(best):
        top = best.iloc[0]
        line += f", best {top['variant']} {scorer} {top[scorer]:.3f} [{top[f'{scorer}_low']:.3f}, {top[f'{scorer}_high']:.3f}]"
    spent = summary["cost_usd"].dropna()
    if len(spent):
        line += f", ${spent.sum():.4f}"
    settings = {"format": FORMAT, "settings": asdict(result.settings), "batch_id": result.batch_id}
    metadata = {
        "path": path,
        "rows": len(result.data),
        "variants": result.variants,
        "scorer": scorer,
        "scores": {r["variant"]: r[scorer] for r in summary.to_dict(orient="records")},
        "templates_sha256": {n: v.get("template_sha256") for n, v in result.settings.variants.items()},
    }
    return commit_tables(
        repo,
        path,
        {"data": result.data, "rows": result.rows, "summary": summary},
        {"evaluation.json": json.dumps(settings, ensure_ascii=False, indent=1, default=str)},
        message.strip() if message else line,
        metadata,
    )


def _read_folder(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, Settings, str]:
    import pandas as pd

    try:
        saved = json.loads((folder / "evaluation.json").read_text(encoding="utf-8"))
        data = pd.read_parquet(folder / "data.parquet")
        rows = pd.read_parquet(folder / "rows.parquet")
    except (OSError, ValueError, ImportError) as exc:
        raise ParameterError(f"{folder} could not be read as an evaluation: {exc}.") from None
    if saved.get("format") != FORMAT:
        raise ParameterError(f"{folder} is not an evaluation written by oxen_notebook (format {FORMAT}).")
    if "parsed" in rows:
        rows["parsed"] = [json.loads(v) if isinstance(v, str) else None for v in rows["parsed"]]
    return data, rows, Settings(**saved["settings"]), saved.get("batch_id", "")


def read_result(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, pd.DataFrame, Settings, str]:
    """The data, rows, settings and batch id of a file :func:`write_result` wrote, or of a folder
    :func:`commit_result` wrote."""
    import pandas as pd

    if Path(path).is_dir():
        return _read_folder(Path(path))
    try:
        saved = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ParameterError(f"{path} could not be read as an evaluation: {exc}.") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise ParameterError(f"{path} is not an evaluation written by oxen_notebook (format {FORMAT}).")
    settings = Settings(**saved["settings"])
    data = pd.DataFrame(saved["data"]["data"], columns=saved["data"]["columns"])
    rows = pd.DataFrame(saved["rows"])
    rows["parsed"] = None
    for scorer in settings.scorers:
        rows[scorer["name"]] = rows[scorer["name"]].astype("Float64")
    rows["variant"] = pd.Categorical(rows["variant"], categories=list(settings.variants))
    for name, dtype in ROW_DTYPES.items():
        column = pd.to_numeric(rows[name]) if dtype == "Int64" else rows[name]
        rows[name] = column.astype(dtype)
    rows["shared"] = rows["shared"].astype(bool)
    if "judge_cost_usd" in rows:
        rows["judge_cost_usd"] = rows["judge_cost_usd"].astype("Float64")
    return data, rows, settings, saved.get("batch_id", "")
