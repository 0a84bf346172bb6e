"""The ``%oxen`` line magic's subcommands: models, model, history, undo, reset, export, chat,
login, config."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from .._errors import OxenError
from .._records import JSON_COLUMNS
from .._spreadsheet import spreadsheet_csv
from ._errors import cell_error
from ._objects import shown_frame
from ._views import say

if TYPE_CHECKING:
    import pandas as pd

    from ._cell import OxenMagics

__all__ = ["COMMANDS", "run_line"]

COMMANDS = {
    "models": "models [FILTER]      list the models (a DataFrame), optionally filtered by id or name",
    "model": "model [NAME]         show or set the default model",
    "history": "history              the conversation as a table",
    "undo": "undo                 remove the last exchange",
    "reset": "reset                start a new conversation (same system prompt)",
    "export": "export PATH          write the conversation to .csv, .json or .parquet",
    "fix": "fix [N] [-m MODEL]   explain the last failed cell (or In[N]'s) and offer the fix as the next cell",
    "chat": "chat                 open the chat panel on the same session",
    "login": "login                enter your API key (hidden; kept in memory only)",
    "config": "config               show the current defaults (never the key)",
}
_HISTORY_COLUMNS = ["turn", "role", "content", "model", "finish_reason", "total_tokens", "duration_s"]


def _usage() -> str:
    lines = "\n".join(f"  %oxen {text}" for text in COMMANDS.values())
    return f"%oxen commands (add --session NAME for a named session):\n{lines}"


def run_line(magics: OxenMagics, line: str) -> Any:
    """Run one ``%oxen`` line; return what the cell should show (or None)."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"%oxen: {exc}") from None
    name = None
    if "--session" in words:
        at = words.index("--session")
        if at + 1 >= len(words):
            raise UsageError("%oxen: --session needs a name.")
        name = words[at + 1]
        del words[at : at + 2]
    if not words or words[0] in ("help", "-h", "--help"):
        print(_usage())
        return None
    command, rest = words[0], words[1:]
    handler = _HANDLERS.get(command)
    if handler is None:
        raise UsageError(f"%oxen: unknown command {command!r}.\n{_usage()}")
    try:
        return handler(magics, name, rest)
    except OxenError as exc:
        raise cell_error(exc) from None


def _models(magics: OxenMagics, name: str | None, rest: list[str]) -> pd.DataFrame:
    frame = magics.session(name).list_models()
    if rest:
        needle = " ".join(rest).lower()
        mask = frame["id"].astype(str).str.lower().str.contains(needle, regex=False)
        if "name" in frame:
            mask |= frame["name"].astype(str).str.lower().str.contains(needle, regex=False)
        frame = frame[mask].reset_index(drop=True)
    return shown_frame(frame)


def _model(magics: OxenMagics, name: str | None, rest: list[str]) -> None:
    session = magics.session(name)
    if rest:
        session.model = rest[0]
        if name is None:
            magics.model = rest[0]
    say(f"model: {session.model}")


def _history(magics: OxenMagics, name: str | None, rest: list[str]) -> pd.DataFrame:
    frame = magics.session(name).to_dataframe()
    return shown_frame(frame[_HISTORY_COLUMNS])


def _undo(magics: OxenMagics, name: str | None, rest: list[str]) -> None:
    removed = magics.session(name).undo()
    if removed:
        print(f"removed the last exchange ({len(removed)} messages).")
    else:
        print("nothing to undo.")


def _reset(magics: OxenMagics, name: str | None, rest: list[str]) -> None:
    magics.session(name).reset()
    print("new conversation started.")


def _export(magics: OxenMagics, name: str | None, rest: list[str]) -> None:
    if len(rest) != 1:
        raise UsageError("%oxen export PATH: one path ending in .csv, .json or .parquet.")
    path = Path(os.path.expanduser(rest[0]))
    session = magics.session(name)
    suffix = path.suffix.lower()
    if suffix == ".json":
        session.save(path)
    elif suffix in (".csv", ".parquet"):
        frame = session.to_dataframe()
        for column in JSON_COLUMNS:
            frame[column] = frame[column].map(lambda v: None if v is None else json.dumps(v))
        if suffix == ".csv":  # text that looks like a formula is made inert for spreadsheets
            path.write_text(spreadsheet_csv(frame), encoding="utf-8")
        else:
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise UsageError(
                    "%oxen export: .parquet needs pyarrow (pip install pyarrow); or export to .csv or .json."
                ) from None
            frame.to_parquet(path, index=False)
    else:
        raise UsageError(f"%oxen export: {path.name!r} should end in .csv, .json or .parquet.")
    print(f"exported {len(session.messages)} messages to {path}.")


def _fix(magics: OxenMagics, name: str | None, rest: list[str]) -> None:
    model = None
    if "-m" in rest or "--model" in rest:
        at = rest.index("-m") if "-m" in rest else rest.index("--model")
        if at + 1 >= len(rest):
            raise UsageError("%oxen fix: -m needs a model name.")
        model = rest[at + 1]
        del rest[at : at + 2]
    if len(rest) > 1 or (rest and not rest[0].lstrip("-").isdigit()):
        raise UsageError("%oxen fix [N]: N is the number of the cell that failed, such as %oxen fix 12.")
    magics.fix(int(rest[0]) if rest else None, name, model)


def _chat(magics: OxenMagics, name: str | None, rest: list[str]) -> Any:
    try:
        from .._panel import ChatPanel
    except ImportError as exc:
        print(f"the chat panel is not available here ({exc}); use %%oxen cells instead.")
        return None
    return ChatPanel(magics.session(name))


def _login(magics: OxenMagics, name: str | None, rest: list[str]) -> None:
    from getpass import getpass

    key = getpass("Oxen API key (https://www.oxen.ai/settings/profile): ").strip()
    if not key:
        print("no key entered; nothing changed.")
        return
    magics.login(key)
    print("key set for this kernel (in memory only; not saved in the notebook).")


def _config(magics: OxenMagics, name: str | None, rest: list[str]) -> None:
    from .._auth import find_api_key

    session = magics.session(name)
    found = session.api_key is not None or find_api_key(session.base_url) is not None
    key = "set" if found else "missing (run %oxen login or set OXEN_API_KEY)"
    rows = {
        "session": name or "default",
        "model": session.model,
        "system": session.system,
        "temperature": magics.temperature,
        "max_tokens": magics.max_tokens,
        "format": magics.format,
        "max_history_turns": magics.max_history_turns,
        "session defaults": session.defaults or None,
        "base_url": session.base_url,
        "api key": key,
    }
    width = max(len(k) for k in rows)
    say("\n".join(f"{k.ljust(width)}  {v}" for k, v in rows.items()))


_HANDLERS = {
    "models": _models,
    "model": _model,
    "history": _history,
    "undo": _undo,
    "reset": _reset,
    "export": _export,
    "fix": _fix,
    "chat": _chat,
    "login": _login,
    "config": _config,
}
