"""The ``%%oxen`` cell magic and the ``%oxen`` line magic.

Both are thin views on a :class:`~oxen_notebook.Session`: the cell magic turns a cell into
``session.stream(prompt, ...)`` and streams the reply into the output area through
:class:`~oxen_notebook._streaming.StreamingMarkdown` (finished blocks sent once, a throttled live tail,
an exact final render); in a terminal it prints the deltas. Failures are one line, no traceback.
"""

from __future__ import annotations

import html
import json
import keyword
import re
import shlex
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Enum, Float, Integer, Unicode, observe

from .._errors import OxenError
from .._frontend import in_notebook
from .._records import message_facts
from .._registry import all_sessions, existing_session, named_session
from .._render import render_code
from ._errors import OxenInterrupted, cell_error
from ._interpolate import interpolate
from ._views import HTMLView, TextView

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from .._reply import Reply
    from .._session import Session

__all__ = ["FORMATS", "OxenMagics", "load_ipython_extension", "strip_fences", "unload_ipython_extension"]

FORMATS = ("markdown", "text", "code", "json")
_FENCE_RE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+#.-]*)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.M | re.S)


# -- the magics ------------------------------------------------------------------------------------


@magics_class
class OxenMagics(Magics):
    """``%%oxen`` sends the cell to the model and streams the reply; ``%oxen`` manages the session.

    Defaults are settable with ``%config OxenMagics.<name> = value`` or in ``ipython_config.py``.
    """

    model = Unicode(
        None, allow_none=True, help="Model for the default session (None: the Session's default)."
    ).tag(config=True)
    system = Unicode(None, allow_none=True, help="System prompt for new conversations.").tag(config=True)
    temperature = Float(None, allow_none=True, help="Default temperature (0-2).").tag(config=True)
    max_tokens = Integer(None, allow_none=True, help="Default maximum reply tokens.").tag(config=True)
    format = Enum(FORMATS, default_value="markdown", help="Default output format.").tag(config=True)
    max_history_turns = Integer(
        None, allow_none=True, help="Send at most this many earlier turns with each prompt (None: all)."
    ).tag(config=True)
    display = Enum(
        ("auto", "html", "text"),
        default_value="auto",
        help="auto: rendered HTML in a notebook, plain text in a terminal.",
    ).tag(config=True)

    def __init__(self, shell: InteractiveShell | None = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._api_key: str | None = None

    def login(self, key: str) -> None:
        """Use ``key`` for every session of this kernel (kept in memory only)."""
        self._api_key = key
        for session in all_sessions():
            session.api_key = key

    @observe("model")
    def _model_changed(self, change: dict[str, Any]) -> None:
        session = existing_session()
        if change["new"] and session is not None:
            session.model = change["new"]

    # -- sessions -------------------------------------------------------------------------------

    def session(self, name: str | None = None) -> Session:
        """The session called ``name`` (default: the one the chat panel shares)."""
        kwargs: dict[str, Any] = {}
        if self.model:
            kwargs["model"] = self.model
        if self._api_key:
            kwargs["api_key"] = self._api_key
        try:
            session = named_session(name or "default", **kwargs)
        except OxenError as exc:
            raise cell_error(exc) from None
        if self.system and not session.messages:
            session.system = self.system
        if hasattr(session, "max_turns"):
            session.max_turns = self.max_history_turns
        return session

    def _html(self) -> bool:
        if self.display != "auto":
            return self.display == "html"
        return in_notebook(self.shell)

    # -- %%oxen ---------------------------------------------------------------------------------

    @magic_arguments()
    @argument("-m", "--model", help="Model for this prompt.")
    @argument("-s", "--system", help="Set the conversation's system prompt.")
    @argument("-t", "--temperature", type=float, help="Sampling temperature, 0 to 2.")
    @argument("--max-tokens", type=int, help="Maximum tokens in the reply.")
    @argument("--top-p", type=float, help="Nucleus sampling, 0 to 1.")
    @argument("--frequency-penalty", type=float, help="-2 to 2.")
    @argument("--presence-penalty", type=float, help="-2 to 2.")
    @argument("--new", action="store_true", help="Start a new conversation first.")
    @argument("--no-history", action="store_true", help="One-off prompt: not sent with or added to history.")
    @argument("-f", "--format", choices=FORMATS, help="markdown (default), text, code or json.")
    @argument("-o", "--output", metavar="VAR", help="Also store the reply in this variable.")
    @argument("--image", action="append", metavar="PATH_OR_URL", help="Attach an image (repeatable).")
    @argument("--session", metavar="NAME", help="Use the named session (default: the shared one).")
    @argument("--no-interpolate", action="store_true", help="Send {braces} as written.")
    @argument(
        "--compare", metavar="MODELS", help="Send to each of these comma-separated models, side by side."
    )
    @line_cell_magic
    def oxen(self, line: str, cell: str | None = None) -> Any:
        """Chat with an Oxen.ai model.

        Cell magic: the cell is the prompt; ``{name}``, ``{obj.attr}``, ``{obj[key]}``, ``{In[3]}``
        come from the notebook's variables (``{{`` for a literal brace). The reply streams in as
        rendered Markdown, with a footer (model, tokens, seconds).

        Line magic: ``%oxen models [filter]``, ``model [NAME]``, ``history``, ``undo``, ``reset``,
        ``export PATH`` (.csv, .json, .parquet), ``chat``, ``login``, ``config``.
        """
        if cell is None:
            return self._line(line)
        try:
            argv = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%%oxen: {exc} in the options.") from None
        args = self.oxen.parser.parse_args(argv)
        self._cell(args, cell)
        return None

    def _cell(self, args: Any, cell: str) -> None:
        fmt = args.format or self.format
        output = args.output
        if output and (not output.isidentifier() or keyword.iskeyword(output)):
            raise UsageError(f"-o {output!r}: give a variable name, such as -o answer.")
        session = self.session(args.session)
        prompt = cell if args.no_interpolate else interpolate(cell, self.shell.user_ns)
        if not prompt.strip():
            raise UsageError("the cell is empty: write the prompt under %%oxen.")
        params = {
            "temperature": args.temperature if args.temperature is not None else self.temperature,
            "max_tokens": args.max_tokens if args.max_tokens is not None else self.max_tokens,
            "top_p": args.top_p,
            "frequency_penalty": args.frequency_penalty,
            "presence_penalty": args.presence_penalty,
        }
        if args.compare:
            self._compare(session, args, prompt, params, output)
            return
        try:
            if args.new:
                session.reset()
            if args.system is not None:
                session.system = args.system
            reply = session.stream(
                prompt,
                images=args.image or None,
                history=not args.no_history,
                source="magic",
                model=args.model,
                **{name: value for name, value in params.items() if value is not None},
            )
        except OxenError as exc:
            raise cell_error(exc) from None
        self._run(reply, fmt, output)

    def _compare(self, session: Session, args: Any, prompt: str, params: dict, output: str | None) -> None:
        models = [m.strip() for m in args.compare.split(",") if m.strip()]
        if not models:
            raise UsageError("--compare needs model names, such as --compare gpt-5-2-chat-latest,local.")
        settings = {name: value for name, value in params.items() if value is not None}
        template = prompt.replace("{", "{{").replace("}", "}}")
        try:
            frame = session.compare(template, models=models, params=[settings])
        except OxenError as exc:
            raise cell_error(exc) from None
        if output:
            self.shell.user_ns[output] = frame

    def _run(self, reply: Reply, fmt: str, output: str | None) -> None:
        metadata = {"oxen": {"model": reply.model, "message_id": None}}
        view: HTMLView | TextView
        view = HTMLView(metadata) if self._html() and fmt != "text" else TextView()
        error: OxenError | None = None
        interrupted = False
        fed = 0
        try:
            for delta in reply:
                view.feed(delta)
                fed += len(delta)
        except KeyboardInterrupt:
            reply.close()  # closes the HTTP response now; history keeps the text as interrupted
            interrupted = True
        except OxenError as exc:
            error = exc
        if len(reply.text) > fed:  # text that arrived but was not shown before the stop
            view.feed(reply.text[fed:])
        message = reply.message
        metadata["oxen"]["message_id"] = message.message_id if message else None
        value, note = self._show(reply, fmt, view, complete=not interrupted and error is None)
        if output:
            self.shell.user_ns[output] = value
        if reply.text or error is None:
            self._footer(reply, metadata, note)
        if interrupted:
            raise OxenInterrupted(
                f"the reply was stopped; its {len(reply.text)} characters are kept in history as interrupted."
            )
        if error is not None:
            raise cell_error(error) from None

    def _show(self, reply: Reply, fmt: str, view: HTMLView | TextView, *, complete: bool) -> tuple[Any, str]:
        """Finish the output in its format; return the value for ``-o`` and a note, if any."""
        text = reply.text
        html_view = isinstance(view, HTMLView)
        if fmt == "code" and text:
            language, code = strip_fences(text)
            if html_view:
                view.replace({"text/html": render_code(code, language), "text/plain": code})
            else:
                view.close()
            if complete:
                self.shell.set_next_input(code, replace=False)
            return code, ""
        if fmt == "json" and text:
            try:
                value = json.loads(strip_fences(text)[1])
            except ValueError as exc:
                view.close()
                return text, f"the reply is not valid JSON ({exc}); shown as it came."
            if html_view:
                pretty = json.dumps(value, indent=2, ensure_ascii=False)
                view.replace({"application/json": value, "text/plain": pretty})
            else:
                view.close()
            return value, ""
        view.close()
        return text, ""

    def _footer(self, reply: Reply, metadata: dict[str, Any], note: str) -> None:
        message = reply.message
        parts = [reply.model]
        if message is not None:
            parts = message_facts(message, reply.model)
            if message.finish_reason not in (None, "stop"):
                parts.append(message.finish_reason)
        line = " · ".join(parts) + (f" — {note}" if note else "")
        if self._html():
            from IPython.display import display

            bundle = {
                "text/html": f'<div style="font-size:85%;opacity:0.65">{html.escape(line)}</div>',
                "text/plain": line,
            }
            display(bundle, raw=True, metadata=metadata)
        else:
            print(f"[{line}]")

    # -- %oxen ----------------------------------------------------------------------------------

    def _line(self, line: str) -> Any:
        from ._commands import run_line

        return run_line(self, line)


def strip_fences(text: str) -> tuple[str, str]:
    """``(language, code)`` of the first fenced block in ``text``, or ``("", text)`` if none."""
    match = _FENCE_RE.search(text)
    if match is None:
        return "", text.strip("\n")
    return match.group(2), match.group(3).rstrip("\n")


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """Register the magics (once per shell) and create the shared default session."""
    registry = ipython.magics_manager.registry
    magics = registry.get("OxenMagics")
    if magics is None:
        magics = OxenMagics(ipython)
        ipython.register_magics(magics)
    magics.session()


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    """Remove the magics; the sessions stay (their history is the user's)."""
    magics = ipython.magics_manager.registry.pop("OxenMagics", None)
    if magics is not None:
        for kind in ("line", "cell"):
            ipython.magics_manager.magics[kind].pop("oxen", None)
