"""The ``%%oxen`` cell magic and the ``%oxen`` line magic.

Both are thin views on a :class:`~oxen_notebook.Session`: the cell magic turns a cell into
``session.stream(prompt, ...)`` and streams the reply into the output area through
:class:`~oxen_notebook._streaming.StreamingMarkdown` (finished blocks sent once, a throttled live tail,
an exact final render); in a terminal it prints the deltas. ``--schema`` and ``--tools`` make it a
``Turn``: names come from the notebook (``_typed``), tool calls are drawn as lines between the
requests' text (``_views.TurnLog``), and the parsed object replaces its JSON (``_objects``).
Failures are one line, no traceback.
"""

from __future__ import annotations

import argparse
import json
import keyword
import shlex
from collections import ChainMap
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Enum, Float, Integer, Unicode, observe

from .._ask import Ask
from .._attachments import describe
from .._errors import OxenError
from .._frontend import in_notebook
from .._records import message_facts
from .._registry import all_sessions, existing_session, named_session
from .._render import render_code
from .._retries import listen_for_retries
from .._turn import Turn, turn_facts
from ._context import dry_run, fix
from ._errors import OxenInterrupted, RetryNote, cell_error
from ._failures import CellFailures, check_references
from ._interpolate import interpolate
from ._objects import object_bundle, object_text
from ._typed import Approver, resolve_schema, resolve_tools
from ._views import TurnLog, TurnView, footnote, say, strip_fences

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from .._reply import Reply
    from .._schema import OutputSchema
    from .._session import Session

__all__ = ["FORMATS", "OxenMagics", "load_ipython_extension", "unload_ipython_extension"]

FORMATS = ("markdown", "text", "code", "json")


def _at_least(minimum: int) -> Any:
    """An argparse ``type`` for a whole number of at least ``minimum``."""

    def count(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is too small (at least {minimum})")
        return value

    return count


def _check_flags(args: Any) -> None:
    """Options that go only with another (``--approve`` with ``--tools``), or not with another."""
    needs = [
        ("--max-repairs", args.max_repairs is not None, args.schema, "--schema"),
        ("--approve", args.approve, args.tools, "--tools"),
        ("--max-tool-rounds", args.max_tool_rounds is not None, args.tools, "--tools"),
    ]
    for option, given, needed, name in needs:
        if given and not needed:
            raise UsageError(f"{option} goes with {name}, which is not given.")
    if (args.schema or args.tools) and args.compare:
        raise UsageError("--compare sends plain prompts: drop --schema/--tools, or --compare.")
    if args.schema and args.format in ("code", "json"):  # a configured default format gives way
        raise UsageError(f"--schema shows the parsed object: drop -f {args.format}.")


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
    context_rows = Integer(
        None,
        allow_none=True,
        help="Rows of a DataFrame (items of a list, ...) a {field} shows (None: the session's, 20).",
    ).tag(config=True)
    context_chars = Integer(
        None,
        allow_none=True,
        help="Characters a {field} shows at most, cut with a note (None: the session's, 4000).",
    ).tag(config=True)
    display = Enum(
        ("auto", "html", "text"),
        default_value="auto",
        help="auto: rendered HTML in a notebook, plain text in a terminal.",
    ).tag(config=True)

    def __init__(self, shell: InteractiveShell | None = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._api_key: str | None = None
        #: The notebook's failed cells: ``{Err}``, ``{Err[n]}``, ``%oxen fix``.
        self.failures = CellFailures()

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
        for name in ("context_rows", "context_chars"):
            if getattr(self, name) is not None:
                setattr(session, name, getattr(self, name))
        return session

    def fill(self, text: str, session: Session) -> str:
        """``text`` with its ``{fields}`` filled from the notebook (``{Err}``: the last failed cell)."""
        namespace = self.shell.user_ns
        if "Err" not in namespace:
            try:
                check_references(text, self.failures)
            except LookupError as exc:
                raise UsageError(str(exc)) from None
            namespace = ChainMap(namespace, {"Err": self.failures})
        return interpolate(text, namespace, rows=session.context_rows, chars=session.context_chars)

    def html_output(self) -> bool:
        """Whether replies are shown as HTML (``display``: auto is HTML in a notebook)."""
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
    @argument(
        "--file",
        action="append",
        metavar="PATH_OR_URL",
        help="Attach a PDF, audio, video or image file, its type told from its content (repeatable).",
    )
    @argument(
        "--dry-run",
        action="store_true",
        help="Show what would be sent (body, bytes, tokens, cost) and send nothing; -o gets it as a dict.",
    )
    @argument("--session", metavar="NAME", help="Use the named session (default: the shared one).")
    @argument("--no-interpolate", action="store_true", help="Send {braces} as written.")
    @argument(
        "--compare", metavar="MODELS", help="Send to each of these comma-separated models, side by side."
    )
    @argument(
        "--schema",
        metavar="NAME",
        help="Parse the reply into this notebook type: a pydantic model, dataclass, TypedDict or JSON "
        "Schema dict (list[NAME] for several). Shown as a table; -o gets the object.",
    )
    @argument(
        "--max-repairs", type=_at_least(0), metavar="N", help="With --schema: repair turns (default 1)."
    )
    @argument(
        "--tools",
        metavar="F,G",
        help="Let the model call these notebook functions (comma-separated); each call is shown.",
    )
    @argument("--approve", action="store_true", help="With --tools: ask y/N before each call runs.")
    @argument(
        "--max-tool-rounds",
        type=_at_least(1),
        metavar="N",
        help="With --tools: rounds of calls before the cell fails (default 8).",
    )
    @line_cell_magic
    def oxen(self, line: str, cell: str | None = None) -> Any:
        """Chat with an Oxen.ai model.

        Cell magic: the cell is the prompt; ``{name}``, ``{obj.attr}``, ``{obj[key]}``, ``{In[3]}``
        come from the notebook's variables (``{{`` for a literal brace). The reply streams in as
        rendered Markdown, with a footer (model, tokens, seconds).

        ``--schema Person`` (a pydantic model, dataclass, TypedDict or JSON Schema dict in the
        notebook; ``--schema 'list[Person]'`` for several): the JSON streams in, then a table of
        the validated object replaces it and ``-o VAR`` gets the object; a reply that still does
        not validate after ``--max-repairs`` repair turns fails the cell in one line.
        ``--tools get_weather,get_time`` (notebook functions): the model may call them; each call
        is shown as ``→ get_weather(city="Oslo") = {...}`` before the answer streams in, and the
        footer sums the turn (requests, tool calls, tokens, seconds). ``--approve`` asks
        ``run get_weather(city="Oslo")? [y/N]`` before each call; anything but y or yes denies it.

        Line magic: ``%oxen models [filter]``, ``model [NAME]``, ``history``, ``undo``, ``reset``,
        ``export PATH`` (.csv, .json, .parquet), ``fix [N]`` (explain the last failed cell, or
        In[N]'s, and offer the corrected code as the next cell), ``chat``, ``login``, ``config``.
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
        _check_flags(args)
        namespace = self.shell.user_ns
        # --schema / --tools name notebook objects: resolved before anything is sent.
        output_schema = resolve_schema(args.schema, namespace) if args.schema else None
        tools = resolve_tools(args.tools, namespace) if args.tools else None
        approver = Approver() if args.tools and args.approve else None
        session = self.session(args.session)
        prompt = cell if args.no_interpolate else self.fill(cell, session)
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
            ask = Ask.make(
                prompt,
                params={name: value for name, value in params.items() if value is not None},
                defaults=session.defaults,
                images=args.image or None,
                files=args.file or None,
                model=args.model,
                schema=output_schema,
                tools=tools,
                approve=approver,
                max_repairs=1 if args.max_repairs is None else args.max_repairs,
                max_tool_rounds=args.max_tool_rounds,
                # A dry run of --new previews a new conversation: the system prompt and the cell.
                history=not (args.no_history or (args.dry_run and args.new)),
                source="magic",
            )
        except OxenError as exc:
            raise cell_error(exc) from None
        if args.dry_run:
            dry_run(self, session, args, ask, output)
            return
        try:
            if args.new:
                session.reset()
            if args.system is not None:
                session.system = args.system
            reply = session.stream_ask(ask)
        except OxenError as exc:
            raise cell_error(exc) from None
        if approver is not None:
            approver.turn = reply
        self.show_reply(reply, fmt, output, session=session, schema=ask.output, approver=approver)

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

    def show_reply(
        self,
        reply: Reply | Turn,
        fmt: str,
        output: str | None,
        *,
        session: Session,
        schema: OutputSchema | None = None,
        approver: Approver | None = None,
    ) -> None:
        metadata = {"oxen": {"model": reply.model, "message_id": None}}
        turn = reply if isinstance(reply, Turn) else None
        # A turn's outputs share the cell with tool lines and what tools print: never cleared.
        view = TurnView(metadata, rich=self.html_output() and fmt != "text", shared=turn is not None)
        log = TurnLog(turn, view) if turn is not None else None
        error: OxenError | None = None
        interrupted = False
        if log is not None:
            session.on("start", log)
        note = RetryNote(rich=view.rich)
        try:
            with listen_for_retries(note.show):
                for delta in reply:
                    note.clear()
                    view.feed(delta)
        except KeyboardInterrupt:
            reply.close()  # closes the HTTP response now; history keeps the text as interrupted
            interrupted = True
        except OxenError as exc:
            error = exc
        finally:
            note.clear()
            if log is not None:
                session.on("start", log, remove=True)
        view.catch_up(reply.text)  # text that arrived but was not shown before the stop
        if log is not None:
            log.flush()  # a round no request followed (a stop at the approval prompt)
        stopped = approver is not None and approver.interrupted
        message = reply.message
        metadata["oxen"]["message_id"] = message.message_id if message else None
        complete = not interrupted and not stopped and error is None
        if schema is not None:
            value, note = self._show_parsed(reply, schema, view, complete=complete)
        else:
            value, note = self._show(reply, fmt, view, complete=complete)
        if approver is not None and approver.unavailable:
            note = approver.unavailable
        if output and (schema is None or value is not None):
            self.shell.user_ns[output] = value
        if reply.text or error is None or (turn is not None and len(turn.replies) > 1):
            parts = turn_facts(turn, log.repairs) if turn is not None and log is not None else None
            self._footer(reply, metadata, note, parts)
        if view.rich and reply.text and ("```" in reply.text or fmt == "code"):
            _code_tools()
        if interrupted and reply.finish_reason == "tool_calls":  # the request had ended: a tool ran
            raise OxenInterrupted(
                "stopped while the tools ran: their calls are answered 'not run: interrupted' in history."
            )
        if interrupted:
            raise OxenInterrupted(
                f"the reply was stopped; its {len(reply.text)} characters are kept in history as interrupted."
            )
        if stopped:
            raise OxenInterrupted(
                "stopped at the approval prompt: the calls were denied and nothing more was sent."
            )
        if error is not None:
            # A callout where a notebook shows it (not with -f text, nor in a terminal IPython).
            raise cell_error(error, rich=view.rich and in_notebook(self.shell)) from None

    def _show_parsed(
        self, turn: Reply | Turn, schema: OutputSchema, view: TurnView, *, complete: bool
    ) -> tuple[Any, str]:
        """The validated object instead of its JSON: a table (pretty JSON in a terminal). A turn
        that did not validate keeps its raw text on screen and gives no value."""
        parsed = turn.parsed if complete and isinstance(turn, Turn) else None
        if parsed is None:
            view.close()
            return None, ""
        plain = schema.dump(parsed)
        if view.rich:
            view.replace(object_bundle(plain))
        else:
            view.close()
            say(object_text(plain))
        return parsed, ""

    def _show(self, reply: Reply | Turn, fmt: str, view: TurnView, *, complete: bool) -> tuple[Any, str]:
        """Finish the output in its format; return the value for ``-o`` and a note, if any."""
        text = reply.text
        html_view = view.rich
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
            except RecursionError:
                view.close()
                return text, "the reply is JSON nested too deeply to read; shown as it came."
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

    def _footer(
        self, reply: Reply | Turn, metadata: dict[str, Any], note: str, parts: list[str] | None = None
    ) -> None:
        message = reply.message
        if parts is None:
            parts = message_facts(message, reply.model) if message is not None else [reply.model]
        if message is not None and message.finish_reason not in (None, "stop"):
            parts.append(message.finish_reason)
        user = reply.user_message
        if user is not None and user.attachments:
            parts.append(f"attached: {describe(user.attachments)}")
        footnote(
            " · ".join(parts) + (f" — {note}" if note else ""), rich=self.html_output(), metadata=metadata
        )

    # -- %oxen ----------------------------------------------------------------------------------

    def fix(self, index: int | None, session_name: str | None, model: str | None) -> None:
        """``%oxen fix [N]``: see :func:`~oxen_notebook._magics._context.fix`."""
        fix(self, index, session_name, model)

    def _line(self, line: str) -> Any:
        from ._commands import run_line

        return run_line(self, line)


def _code_tools() -> None:
    """Copy / Insert as cell on the reply's code blocks: a hidden widget of the panel's front-end
    that finds them in its own output area (the reply's HTML carries no script)."""
    from IPython.display import display

    from .._panel._front import code_tools

    display(code_tools())


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """Register the magics (once per shell) and create the shared default session."""
    registry = ipython.magics_manager.registry
    magics = registry.get("OxenMagics")
    if magics is None:
        magics = OxenMagics(ipython)
        ipython.register_magics(magics)
        magics.failures.register(ipython)
    magics.session()


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    """Remove the magics; the sessions stay (their history is the user's)."""
    magics = ipython.magics_manager.registry.pop("OxenMagics", None)
    if magics is not None:
        magics.failures.unregister(ipython)
        for kind in ("line", "cell"):
            ipython.magics_manager.magics[kind].pop("oxen", None)
