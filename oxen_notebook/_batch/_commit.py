"""``Session.commit_results``: a result frame as Parquet in an Oxen repository, in one commit.

The commit message's first line is for people (the path, rows, errors, cost, model, template
hash, or the caller's own ``message``); its last line, ``oxen_notebook: {...}``, is one JSON object
for programs (:func:`read_commit_metadata`): ``models``, ``params``, ``template_sha256`` (the
first 12 hex digits of the template's sha256), ``rows``, ``errors``, ``cost_usd``, token sums,
``batch_id``, ``path`` and the ``json_columns``. The model, parameters and template are what
``map`` recorded in ``frame.attrs`` (:func:`record_run`); a frame without them commits with those
fields ``null``.

Parquet cannot hold Python objects: columns of dicts, lists, tuples, pydantic models or dataclasses
(``parsed``, ``params``, ...) are written as JSON text, as ``%oxen export`` writes them, and named
in ``json_columns``; any other column pyarrow cannot store is a one-line error before anything is
written.

Oxen needs an author. When none is configured (its ``user_config.toml``), the first commit sets one
with ``oxen.user.config_user``: git's ``user.name``/``user.email`` where both are set, else
``oxen-notebook`` / ``oxen-notebook@localhost``; ``oxen config --name ... --email ...`` changes it.
An identity already configured is never touched. Committing is local; ``oxen push`` sends it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import MissingDependencyError, ParameterError

if TYPE_CHECKING:
    import os

    import pandas as pd

__all__ = [
    "RUN_ATTRS",
    "commit_results",
    "commit_tables",
    "read_commit_metadata",
    "record_run",
    "recorded_params",
    "template_sha256",
]

#: The key of ``frame.attrs`` that holds the run a ``map`` result came from.
RUN_ATTRS = "oxen_notebook"
_PREFIX = "oxen_notebook: "
_DEFAULT_AUTHOR = ("oxen-notebook", "oxen-notebook@localhost")
_log = logging.getLogger("oxen_notebook")


def template_sha256(template: str) -> str:
    """The first 12 hex digits of the template's sha256 (UTF-8)."""
    return hashlib.sha256(template.encode("utf-8")).hexdigest()[:12]


def recorded_params(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` as a run records them: ``extra_headers`` by name only, since a header's value
    may be a secret (a token) and the record goes to files, commits and the checkpoint."""
    recorded = dict(params)
    headers = recorded.get("extra_headers")
    if isinstance(headers, dict):
        recorded["extra_headers"] = sorted(str(name) for name in headers)
    return recorded


def record_run(
    frame: pd.DataFrame, *, template: str, model: str | None, params: dict[str, Any], batch_id: str
) -> None:
    """Note in ``frame.attrs`` what produced it, for :func:`commit_results`."""
    frame.attrs[RUN_ATTRS] = {
        "template": template,
        "model": model,
        "params": recorded_params(params),
        "batch_id": batch_id,
    }


def read_commit_metadata(message: str) -> dict[str, Any] | None:
    """The JSON object of a commit message written by :func:`commit_results` (``None`` if it has none)."""
    for line in reversed(message.splitlines()):
        if line.startswith(_PREFIX):
            try:
                value = json.loads(line[len(_PREFIX) :])
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None


def commit_results(
    frame: pd.DataFrame,
    *,
    repo: str | os.PathLike[str],
    path: str = "labels/classify.parquet",
    message: str | None = None,
) -> str:
    """Write ``frame`` to ``repo/path`` as Parquet, commit it, and return the commit id."""
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise ParameterError(
            f"commit_results takes a pandas DataFrame, not {type(frame).__name__} "
            "(a Dask DataFrame: .compute() it first)."
        )
    if message is not None and (not isinstance(message, str) or not message.strip()):
        raise ParameterError("message= must be a non-empty string, or None for the summary line.")
    oxen = _import_oxen()
    root = Path(repo).expanduser().resolve()
    target = _target(root, path)
    table, json_columns = _parquet_table(frame)
    metadata = _metadata(frame, target.relative_to(root).as_posix(), json_columns)
    text = f"{message.strip() if message else _summary(metadata)}\n\n{_PREFIX}{json.dumps(metadata, sort_keys=True)}"

    _ensure_author(oxen, root)
    repository = oxen.Repo(str(root)) if (root / ".oxen").is_dir() else oxen.init(str(root))
    import pyarrow.parquet as pq

    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, target)
    repository.add(str(target))
    return _commit(repository, text, metadata["path"], root)


def _commit(repository: Any, text: str, what: str, root: Path) -> str:
    """Commit what was added with message ``text``; return the commit id. Nothing new, or Oxen's own
    refusal, is a one-line :class:`ParameterError` naming ``what``."""
    try:
        return str(repository.commit(text).id)
    except ValueError as exc:
        if "no changes" in str(exc).lower():
            raise ParameterError(
                f"nothing to commit: {what} in {root.name} is the same as in the last commit."
            ) from None
        raise ParameterError(f"oxen could not commit {what}: {_first_line(exc)}") from None


def _import_oxen() -> Any:
    try:
        import oxen
    except ImportError:
        raise MissingDependencyError(
            'commit_results needs the oxenai package: pip install "oxen-notebook[oxen]".'
        ) from None
    return oxen


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _target(root: Path, path: str) -> Path:
    """``root/path``, refused in one line if it leaves the repository or is not a ``.parquet`` file."""
    if not isinstance(path, str) or not path.strip():
        raise ParameterError(
            "path= must be a file path inside the repository, such as 'labels/classify.parquet'."
        )
    relative = Path(path)
    target = (root / relative).resolve()
    if relative.is_absolute() or not target.is_relative_to(root) or target == root:
        raise ParameterError(f"path={path!r} is outside the repository {root.name}: give a path inside it.")
    if ".oxen" in target.relative_to(root).parts:
        raise ParameterError(f"path={path!r} is inside .oxen, Oxen's own folder: choose another path.")
    if target.suffix != ".parquet":
        raise ParameterError(f"path={path!r} should end in .parquet: the frame is written as Parquet.")
    return target


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):  # a pydantic model (schema=)
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _to_json(value: Any) -> str | None:
    import pandas as pd

    if pd.api.types.is_scalar(value) and pd.isna(value):
        return None
    return json.dumps(value, ensure_ascii=False, default=_jsonable)


def _is_structured(value: Any) -> bool:
    return (
        isinstance(value, (dict, list, tuple))
        or hasattr(value, "model_dump")
        or (dataclasses.is_dataclass(value) and not isinstance(value, type))
    )


def _parquet_table(frame: pd.DataFrame) -> tuple[Any, list[str]]:
    """The frame as a pyarrow Table, its structured columns as JSON text; names those columns."""
    try:
        import pyarrow as pa
    except ImportError:
        raise MissingDependencyError(
            'commit_results needs pyarrow: pip install "oxen-notebook[oxen]".'
        ) from None
    names = list(frame.columns)
    bad = [name for name in names if not isinstance(name, str)]
    if bad:
        raise ParameterError(f"column name {bad[0]!r} is not a string, which Parquet needs: rename it.")
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise ParameterError(f"column {duplicate!r} appears twice, which Parquet cannot store: rename one.")
    out = frame.copy()
    json_columns = []
    for name in names:
        column = out[name]
        if column.dtype != object or not any(_is_structured(v) for v in column):
            continue
        try:
            out[name] = column.map(_to_json)
        except (TypeError, ValueError) as exc:
            raise ParameterError(
                f"column {name!r} holds values Parquet cannot store and JSON cannot encode ({exc}): "
                f"convert it, e.g. frame[{name!r}].astype(str), or drop it."
            ) from None
        json_columns.append(name)
    try:
        return pa.Table.from_pandas(out), json_columns
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError):
        pass
    for name in names:  # name the column that failed
        try:
            pa.Table.from_pandas(out[[name]], preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError):
            kind = next(
                (type(v).__name__ for v in out[name] if not isinstance(v, (str, int, float, bool))), ""
            )
            raise ParameterError(
                f"column {name!r} holds {kind or 'values'} values, which Parquet cannot store: convert it, "
                f"e.g. frame[{name!r}].astype(str), or drop it."
            ) from None
    raise ParameterError("the frame's index cannot be stored in Parquet: reset_index() it first.")


def _known_sum(frame: pd.DataFrame, column: str) -> float | int | None:
    if column not in frame.columns:
        return None
    known = frame[column].dropna()
    if known.empty:
        return None
    total = known.sum()
    return int(total) if column.endswith("_tokens") else float(total)


def _metadata(frame: pd.DataFrame, path: str, json_columns: list[str]) -> dict[str, Any]:
    run = frame.attrs.get(RUN_ATTRS)
    run = run if isinstance(run, dict) else {}
    template = run.get("template")
    if run.get("model"):
        models: list[str] | None = [str(run["model"])]
    elif "model" in frame.columns:  # compare's result: one row per model
        models = sorted({str(m) for m in frame["model"].dropna()}) or None
    else:
        models = None
    params = run.get("params")
    return {
        "path": path,
        "rows": len(frame),
        "errors": int(frame["error"].notna().sum()) if "error" in frame.columns else None,
        "cost_usd": _known_sum(frame, "cost_usd"),
        "prompt_tokens": _known_sum(frame, "prompt_tokens"),
        "completion_tokens": _known_sum(frame, "completion_tokens"),
        "models": models,
        "params": json.loads(json.dumps(recorded_params(params), default=str))
        if isinstance(params, dict)
        else None,
        "template_sha256": template_sha256(template) if isinstance(template, str) else None,
        "batch_id": run.get("batch_id") or frame.attrs.get("batch_id") or None,
        "json_columns": json_columns,
        "oxen_notebook": _version(),
    }


def _version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("oxen-notebook")
    except PackageNotFoundError:
        return None


def _summary(metadata: dict[str, Any]) -> str:
    parts = [f"{metadata['rows']:,} rows"]
    if metadata["errors"] is not None:
        parts.append(f"{metadata['errors']:,} error{'s' if metadata['errors'] != 1 else ''}")
    if metadata["cost_usd"] is not None:
        parts.append(f"${metadata['cost_usd']:.4f}")
    if metadata["models"]:
        parts.append(", ".join(metadata["models"]))
    if metadata["template_sha256"]:
        parts.append(f"template {metadata['template_sha256']}")
    return f"{metadata['path']}: {', '.join(parts)}"


def _git_identity(folder: Path) -> tuple[str, str] | None:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    values = []
    for key in ("user.name", "user.email"):
        try:
            done = subprocess.run(
                ["git", "-C", str(folder), "config", "--get", key], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        if done.returncode != 0 or not done.stdout.strip():
            return None
        values.append(done.stdout.strip())
    return values[0], values[1]


def _ensure_author(oxen: Any, root: Path) -> None:
    """Configure an Oxen identity if there is none (never replacing one)."""
    config = Path(oxen.util.get_oxen_config_dir()) / "user_config.toml"
    if config.is_file():
        return
    name, email = _git_identity(root) or _DEFAULT_AUTHOR
    oxen.user.config_user(name, email)
    _log.info(
        "oxen_notebook: set the Oxen author to %s <%s> (oxen config --name/--email changes it)", name, email
    )


def commit_tables(
    repo: str | os.PathLike[str],
    folder: str,
    tables: dict[str, pd.DataFrame],
    texts: dict[str, str],
    message: str,
    metadata: dict[str, Any],
) -> str:
    """Write ``tables`` (name -> frame, as ``name.parquet``) and ``texts`` (file name -> text) into
    ``repo/folder``, commit them in one commit whose message ends with ``metadata``; return its id."""
    if not isinstance(folder, str) or not folder.strip() or folder.strip().startswith("/"):
        raise ParameterError(
            f"path={folder!r} is invalid: give a folder inside the repository, such as 'evals/x'."
        )
    oxen = _import_oxen()
    root = Path(repo).expanduser().resolve()
    target = (root / folder).resolve()
    if root != target and root not in target.parents:
        raise ParameterError(f"path={folder!r} leaves the repository {root.name}: give a folder inside it.")
    written = {name: _parquet_table(frame)[0] for name, frame in tables.items()}
    _ensure_author(oxen, root)
    repository = oxen.Repo(str(root)) if (root / ".oxen").is_dir() else oxen.init(str(root))
    import pyarrow.parquet as pq

    target.mkdir(parents=True, exist_ok=True)
    files = []
    for name, table in written.items():
        pq.write_table(table, target / f"{name}.parquet")
        files.append(target / f"{name}.parquet")
    for name, text in texts.items():
        (target / name).write_text(text, encoding="utf-8")
        files.append(target / name)
    for file in files:
        repository.add(str(file))
    text = f"{message}\n\n{_PREFIX}{json.dumps(metadata, sort_keys=True, default=str)}"
    return _commit(repository, text, folder, root)
