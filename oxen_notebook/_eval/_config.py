"""An evaluation file (TOML) for ``oxen-notebook eval FILE``: the data, target, variants, models,
scorers and budget, read into the values :func:`evaluate` takes. An unknown key is an error that
names it and its line, so a typo never silently drops a setting.

```toml
data = "reviews.csv"          # CSV, JSON Lines (.jsonl) or Parquet; relative to this file
target = "label"
models = ["gpt-5-2-chat-latest"]
scorers = ["exact", {name = "numeric", tol = 0.5}]
budget = 2.0                  # max_cost_usd
repeats = 1
concurrency = 8

[variants.terse]
template = "Classify the sentiment of: {review}. Answer positive, negative or mixed."

[variants.steps]
template = "Think briefly, then give one word: {review}"
max_tokens = 200
```
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import ParameterError
from . import _scorers
from ._scorers import Scorer
from ._variants import Variant

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["EvalFile", "read_eval_file"]

_TOP = {"data", "target", "models", "scorers", "variants", "repeats", "concurrency", "seed", "budget"}
_VARIANT = {
    "template",
    "model",
    "system",
    "temperature",
    "max_tokens",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "stop",
    "seed",
}
_SCORERS = {
    "exact": (_scorers.exact, {"normalize", "target"}),
    "contains": (_scorers.contains, {"normalize", "target"}),
    "choice": (_scorers.choice, {"choices", "target"}),
    "regex": (_scorers.regex, {"pattern", "flags"}),
    "numeric": (_scorers.numeric, {"tol", "relative", "target"}),
    "f1": (_scorers.f1, {"target"}),
    "field": (_scorers.field, {"field", "target", "tol", "normalize"}),
}


@dataclass(frozen=True)
class EvalFile:
    """What an evaluation file asks for, checked."""

    path: Path
    data: Any
    target: str | None
    models: list[str] | None
    scorers: list[Scorer] | None
    variants: dict[str, Variant]
    repeats: int
    concurrency: int
    seed: int
    budget: float | None  # max_cost_usd


def _line_of(text: str, key: str, table: str | None = None) -> int | None:
    start = 0
    if table is not None:
        header = re.search(rf"^\s*\[\s*{re.escape(table)}\s*\]", text, re.MULTILINE)
        start = header.end() if header else 0
    found = re.compile(rf"^\s*\"?{re.escape(key)}\"?\s*=", re.MULTILINE).search(text, start)
    return text.count("\n", 0, found.start()) + 1 if found else None


def _unknown(
    path: Path, text: str, key: str, where: str, allowed: set[str], table: str | None = None
) -> ParameterError:
    line = _line_of(text, key, table)
    at = f"{path.name}:{line}" if line else path.name
    return ParameterError(
        f"{at}: unknown key {key!r} in {where}; expected one of: {', '.join(sorted(allowed))}."
    )


def _scorer(entry: Any, index: int) -> Scorer:
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or entry["name"] not in _SCORERS:
        raise ParameterError(
            f"scorers[{index}] is {entry!r}: expected one of {', '.join(_SCORERS)} "
            '(a name, or a table such as {name = "numeric", tol = 0.5}).'
        )
    make, allowed = _SCORERS[entry["name"]]
    options = {k: v for k, v in entry.items() if k != "name"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ParameterError(
            f"scorers[{index}] ({entry['name']}): unknown option {unknown[0]!r}; expected: {', '.join(sorted(allowed))}."
        )
    if entry["name"] == "choice":
        return make(options.pop("choices", []), **options)
    if entry["name"] == "regex":
        return make(options.pop("pattern", ""), **options)
    if entry["name"] == "field":
        return make(options.pop("field", ""), **options)
    return make(**options)


def _data(path: Path, value: Any) -> Any:
    import pandas as pd

    if not isinstance(value, str) or not value:
        raise ParameterError(f"{path.name}: data must be a file's path (CSV, JSON Lines or Parquet).")
    source = (path.parent / value).resolve()
    if not source.exists():
        raise ParameterError(
            f"{path.name}: the data file {value} does not exist (paths are relative to {path.name})."
        )
    suffix = source.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(source, keep_default_na=False, na_values=[""])
    if suffix in (".jsonl", ".ndjson"):
        return pd.read_json(source, lines=True)
    if suffix in (".parquet", ".pq"):
        return str(source)
    raise ParameterError(f"{path.name}: data {value} is not .csv, .jsonl or .parquet.")


def read_eval_file(path: str | Path) -> EvalFile:
    """Read and check an evaluation file; every problem is one line naming the file (and line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text)
    except OSError as exc:
        raise ParameterError(f"{path}: cannot be read ({exc.strerror or exc}).") from None
    except tomllib.TOMLDecodeError as exc:
        raise ParameterError(f"{path.name}: not valid TOML: {exc}.") from None
    for key in raw:
        if key not in _TOP:
            raise _unknown(path, text, key, "the file", _TOP)
    variants_raw = raw.get("variants")
    if not isinstance(variants_raw, dict) or not variants_raw:
        raise ParameterError(f"{path.name}: no [variants.NAME] tables: give at least one, with a template.")
    variants = {}
    for name, table in variants_raw.items():
        if not isinstance(table, dict) or "template" not in table:
            raise ParameterError(f'{path.name}: [variants.{name}] needs a template = "...".')
        for key in table:
            if key not in _VARIANT:
                raise _unknown(path, text, key, f"[variants.{name}]", _VARIANT, f"variants.{name}")
        options = dict(table)
        variants[name] = Variant(options.pop("template"), **options)
    scorers = raw.get("scorers")
    if scorers is not None and not isinstance(scorers, list):
        raise ParameterError(f'{path.name}: scorers must be a list, such as scorers = ["exact"].')
    return EvalFile(
        path=path,
        data=_data(path, raw.get("data")),
        target=raw.get("target"),
        models=raw.get("models"),
        scorers=[_scorer(entry, i) for i, entry in enumerate(scorers)] if scorers is not None else None,
        variants=variants,
        repeats=raw.get("repeats", 1),
        concurrency=raw.get("concurrency", 8),
        seed=raw.get("seed", 0),
        budget=raw.get("budget"),
    )
