"""``%%oxen --dry-run`` and ``%oxen fix``: the notebook's context, previewed or sent.

``dry_run`` shows the request a cell would send (``Session.preview``) and sends nothing;
``fix`` sends the last failed cell (``_failures``) with an instruction to fix it, streams the
reply as any cell's, and offers the corrected code as the next cell.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .._errors import OxenError
from .._preview import preview_summary
from ._errors import cell_error
from ._failures import fix_prompt
from ._views import footnote, strip_fences

if TYPE_CHECKING:
    from .._ask import Ask
    from .._session import Session
    from ._cell import OxenMagics

__all__ = ["dry_run", "fix"]

_PYTHON = ("python", "py", "python3", "ipython")


def dry_run(magics: OxenMagics, session: Session, args: Any, ask: Ask, output: str | None) -> None:
    """``--dry-run``: the preview of the request ``ask`` makes, and nothing sent."""
    note = "(--system is not applied by a dry run)" if args.system is not None else ""
    try:
        preview = session.preview_ask(ask)
    except OxenError as exc:
        raise cell_error(exc) from None
    if output:
        magics.shell.user_ns[output] = preview
    line = preview_summary(preview) + (f" {note}" if note else "")
    body = json.dumps(preview["body"], indent=2, ensure_ascii=False)
    rich = magics.html_output()
    if rich:
        from IPython.display import display

        display({"application/json": preview["body"], "text/plain": body}, raw=True)
    else:
        print(body)
    footnote(line, rich=rich)


def fix(magics: OxenMagics, index: int | None, session_name: str | None, model: str | None) -> None:
    """``%oxen fix [N]``: send the last (or cell N's) failure and how to fix it; offer the
    corrected code as the next cell."""
    try:
        failure = magics.failures.last if index is None else magics.failures[index]
    except LookupError as exc:
        print(str(exc).strip("'\""))
        return
    if failure is None:
        print("no cell has failed yet in this kernel: run the failing cell, then %oxen fix.")
        return
    session = magics.session(session_name)
    try:
        reply = session.stream(fix_prompt(failure), source="magic", model=model)
    except OxenError as exc:
        raise cell_error(exc) from None
    magics.show_reply(reply, "markdown", None, session=session)
    language, code = strip_fences(reply.text)
    if code and language.lower() in _PYTHON and code != reply.text.strip():
        magics.shell.set_next_input(code, replace=False)
