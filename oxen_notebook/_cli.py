"""The ``oxen-notebook`` command line (also ``python -m oxen_notebook``): ``ask``, ``chat``, ``models``
(and ``eval``, in ``_cli_eval.py``).

A front end like the magic and the panel: every request goes through a :class:`Session`. stdout
gets only replies, so they pipe; notes and errors go to stderr, one line each, as
``oxen-notebook: ...``. Without a key (``OXEN_API_KEY``, then the Oxen CLI's config) and without
``--model``, it uses the embedded local model and says so. This module is imported only by the
console script and ``-m``: ``import oxen_notebook`` does not load it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ._auth import find_api_key, host_of
from ._cli_eval import add_eval_parser
from ._errors import MissingAPIKeyError, MissingDependencyError, OxenError, ParameterError
from ._session import Session
from ._terminal import Printer, for_stream

if TYPE_CHECKING:
    from ._reply import Reply
    from ._turn import Turn

__all__ = ["main"]

PROG = "oxen-notebook"
LOCAL = "local"
#: Exit codes: a usage error (as argparse's), an API or other error, Ctrl-C (128 + SIGINT).
USAGE, FAILED, INTERRUPTED = 2, 1, 130
_NO_KEY_NOTE = (
    "no Oxen API key found (OXEN_API_KEY, or `oxen config --auth`): using the embedded local model "
    "(SmolLM2-135M-Instruct), offline."
)

_DESCRIPTION = """\
Chat with Oxen.ai's models from the terminal. Replies stream to stdout; notes and errors go to
stderr. With no API key (OXEN_API_KEY, or the Oxen CLI's `oxen config --auth hub.oxen.ai TOKEN`)
and no --model, the embedded local model answers, offline.

examples:
  oxen-notebook ask "Explain a hash table in two sentences."
  cat notes.md | oxen-notebook ask "Summarize this"
  oxen-notebook ask --json -m gpt-5-2-chat-latest "Name three primes."
  oxen-notebook chat --save chat.json
  oxen-notebook models gpt

exit codes: 0 done; 1 the request failed (API, connection, key, file); 2 bad usage (an option
argparse rejects, or a value rejected before anything is sent); 130 stopped with Ctrl-C."""

_ASK_HELP = """\
Send one prompt; the reply streams to stdout as it arrives.

When stdin is piped, it is read and sent too: `cat notes.md | oxen-notebook ask "Summarize this"`
sends the argument, a blank line, then the text of notes.md; with no argument, stdin alone.
Ctrl-C stops the reply (the request is closed) and exits 130."""

_CHAT_HELP = """\
A conversation, one line per message (prompt `you> ` on a terminal); replies stream to stdout.

commands:
  /undo         remove the last exchange (your message and its reply)
  /reset        start a new conversation (the system prompt stays)
  /save [PATH]  write the conversation now (default: the --save path)
  /exit         end (as Ctrl-D does)
  /help         list these commands
A line starting with // sends the line from its second character (//undo sends "/undo").

Ctrl-C during a reply stops it (the partial reply stays in the conversation) and returns to the
prompt; Ctrl-D at the prompt ends with exit code 0 (1 if a reply failed), Ctrl-C with 130.
--save writes the conversation on the way out, however it ends; --load continues a saved one
(a file written by --save, /save, Session.save or a journal)."""


# -- output ----------------------------------------------------------------------------------------


def _print(text: str) -> None:
    sys.stdout.write(for_stream(sys.stdout, text) + "\n")
    sys.stdout.flush()


def _note(text: str) -> None:
    _stderr(f"{PROG}: {text}")


def _stderr(line: str) -> None:
    """A line to stderr; a model's or server's text in it is shown, not run, on a terminal."""
    print(for_stream(sys.stderr, line), file=sys.stderr, flush=True)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _error_line(exc: BaseException) -> str:
    return f"{PROG}: {type(exc).__name__}: {_one_line(exc) or 'failed'}"


def _play(reply: Reply | Turn, *, show: bool = True) -> bool:
    """Stream ``reply`` to stdout (``show``) or just run it; whether Ctrl-C stopped it (then the
    request is closed, what arrived is written, and the record says interrupted)."""
    with Printer(sys.stdout) as printer:
        try:
            for delta in reply:
                if show:
                    printer.write(delta)
        except KeyboardInterrupt:
            reply.close()
            if show:
                printer.catch_up(reply.text)
            return True
        finally:
            printer.end()  # an error line starts on a line of its own
    return False


# -- arguments -------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--base-url", metavar="URL", help="The API to talk to (default: $OXEN_BASE_URL, else Oxen.ai's)."
    )
    common.add_argument(
        "--traceback", action="store_true", help="Show the full traceback of an error (for bug reports)."
    )
    request = argparse.ArgumentParser(add_help=False)
    request.add_argument("-m", "--model", help="Model id (default: gpt-5-2-chat-latest; local with no key).")
    request.add_argument("-s", "--system", metavar="TEXT", help="The system prompt.")
    request.add_argument("-t", "--temperature", type=float, help="Sampling temperature, 0 to 2.")
    request.add_argument("--max-tokens", type=int, metavar="N", help="Maximum tokens in a reply.")

    parser = argparse.ArgumentParser(prog=PROG, description=_DESCRIPTION, formatter_class=formatter)
    commands = parser.add_subparsers(dest="command", metavar="{ask,chat,models,eval}", required=True)

    ask = commands.add_parser(
        "ask",
        parents=[request, common],
        help="Send one prompt; stream the reply.",
        description=_ASK_HELP,
        formatter_class=formatter,
    )
    ask.add_argument("prompt", nargs="?", help="The prompt (or stdin, when piped; or both).")
    ask.add_argument(
        "--json",
        action="store_true",
        help="Print the reply's record as JSON instead of its text: text (content), model, tokens, "
        "timing, finish reason, cost.",
    )
    ask.add_argument(
        "--schema",
        metavar="FILE_OR_JSON",
        help="Structured output: a JSON Schema file, or inline JSON. Prints the parsed JSON.",
    )
    ask.add_argument(
        "--file",
        action="append",
        metavar="PATH",
        help="Attach a PDF, audio, video or image file, its type told from its content (repeatable).",
    )
    ask.add_argument("--image", action="append", metavar="PATH", help="Attach an image (repeatable).")
    ask.set_defaults(run=_ask)

    chat = commands.add_parser(
        "chat",
        parents=[request, common],
        help="A line-based conversation.",
        description=_CHAT_HELP,
        formatter_class=formatter,
    )
    chat.add_argument("--save", metavar="PATH", help="Write the conversation (JSON) here on exit.")
    chat.add_argument("--load", metavar="PATH", help="Continue a saved conversation.")
    chat.set_defaults(run=_chat)

    models = commands.add_parser(
        "models",
        parents=[common],
        help="List the models and their prices.",
        description="List the models the API offers: id, name, and US dollars per million input and "
        "output tokens. FILTER keeps those whose id, name or developer contains it.",
    )
    models.add_argument("filter", nargs="?", help="Only models whose id, name or developer contain this.")
    models.set_defaults(run=_models)
    add_eval_parser(commands, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = _parser().parse_args(argv)  # a usage error exits 2 here, as argparse does
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        _note("interrupted (Ctrl-C).")
        return INTERRUPTED
    except BrokenPipeError:  # `... | head`: the reader left; say nothing more
        _silence_stdout()
        return FAILED
    except Exception as exc:
        if args.traceback:
            raise
        _stderr(_error_line(exc))
        if isinstance(exc, ParameterError):
            return USAGE
        return FAILED


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


# -- sessions --------------------------------------------------------------------------------------


def _is_local(model: str) -> bool:
    return model == LOCAL or model.startswith(f"{LOCAL}:")


def _params(args: argparse.Namespace) -> dict[str, Any]:
    values = {"temperature": args.temperature, "max_tokens": args.max_tokens}
    return {name: value for name, value in values.items() if value is not None}


def _open_session(args: argparse.Namespace, load: str | None = None) -> Session:
    """The session for ``ask``/``chat``: the model given, else the default one, else (no key) the
    local one. Parameters become the session's defaults, so they are checked before anything runs."""
    kwargs: dict[str, Any] = {"base_url": args.base_url, "source": "cli", **_params(args)}
    if args.model:
        kwargs["model"] = args.model
    session = Session.load(load, **kwargs) if load else Session(**kwargs)
    if not args.model and not _is_local(session.model) and find_api_key(session.base_url) is None:
        session.model = LOCAL
        _note(_NO_KEY_NOTE)
    if args.system is not None:
        session.system = args.system
    return session


# -- ask -------------------------------------------------------------------------------------------


def _read_prompt(argument: str | None, stdin: TextIO) -> str:
    """The argument, a blank line, and stdin when it is piped; either alone when the other is not."""
    piped = stdin.read() if stdin is not None and not stdin.isatty() else ""
    if argument and piped:
        return f"{argument}\n\n{piped}"
    if argument or piped:
        return argument or piped
    raise ParameterError('no prompt: give one (oxen-notebook ask "...") or pipe text into stdin.')


def _read_schema(value: str) -> dict[str, Any]:
    """``--schema``: inline JSON when it starts with ``{``, else the path of a JSON Schema file."""
    text = value
    if not value.lstrip().startswith("{"):
        try:
            text = Path(value).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ParameterError(f"--schema {value}: cannot read the file ({reason}).") from None
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise ParameterError(f"--schema: not valid JSON ({exc}).") from None
    if not isinstance(schema, dict):
        raise ParameterError('--schema: a JSON Schema is an object, such as {"type": "object", ...}.')
    return schema


def _ask(args: argparse.Namespace) -> int:
    schema = _read_schema(args.schema) if args.schema is not None else None
    prompt = _read_prompt(args.prompt, sys.stdin)
    session = _open_session(args)
    reply = session.stream(prompt, files=args.file, images=args.image, schema=schema)
    if _play(reply, show=not args.json and schema is None):  # a record or a value comes whole
        _note(f"interrupted (Ctrl-C): the reply was stopped after {len(reply.text)} characters.")
        return INTERRUPTED
    message = reply.message
    if args.json:
        record = message.to_dict() if message is not None else {}
        _print(json.dumps(record, indent=2, ensure_ascii=False, default=str))
    elif schema is not None:
        _print(json.dumps(message.parsed if message is not None else None, indent=2, ensure_ascii=False))
    if message is not None and message.finish_reason == "length":
        _note("the reply reached the token limit (finish reason: length); raise --max-tokens for more.")
    return 0


# -- chat ------------------------------------------------------------------------------------------


def _chat(args: argparse.Namespace) -> int:
    session = _open_session(args, load=args.load)
    interactive = sys.stdin.isatty()
    if args.load:
        turns = sum(1 for m in session.messages if m.role == "user")
        _note(f"continuing {args.load}: {turns} earlier turn{'s' * (turns != 1)}.")
    if interactive:
        _note(f"chatting with {session.model}: /help lists the commands; Ctrl-D or /exit ends.")
    try:
        code = _converse(session, args, interactive)
    except KeyboardInterrupt:  # between a reply and the prompt: as at the prompt
        code = INTERRUPTED
    except BaseException:  # a missing key: the conversation is still saved
        if args.save:
            _save(session, args.save)
        raise
    if args.save and not _save(session, args.save):
        return code or FAILED
    return code


def _save(session: Session, path: str) -> bool:
    try:
        written = session.save(path)
    except (OSError, OxenError) as exc:
        _stderr(_error_line(exc))
        return False
    _note(f"saved the conversation to {written}.")
    return True


def _converse(session: Session, args: argparse.Namespace, interactive: bool) -> int:
    """The prompt loop; the exit code (0 at the end, 1 if a reply failed, 130 on Ctrl-C)."""
    failed = False
    while True:
        try:
            line = _read_line(interactive)
        except EOFError:
            if interactive:
                sys.stderr.write("\n")
            return FAILED if failed else 0
        except KeyboardInterrupt:
            if interactive:
                sys.stderr.write("\n")
            return INTERRUPTED
        if not line.strip():
            continue
        if line.startswith("/") and not line.startswith("//"):
            if _command(session, line, args) == "exit":
                return FAILED if failed else 0
            continue
        try:
            _chat_reply(session, line[1:] if line.startswith("//") else line)
        except (MissingAPIKeyError, MissingDependencyError):
            raise  # every later message would fail the same way
        except OxenError as exc:
            _stderr(_error_line(exc))
            failed = True


def _read_line(interactive: bool) -> str:
    if interactive and sys.stdout.isatty():
        with contextlib.suppress(ImportError):  # not on Windows
            import readline  # noqa: F401  (line editing and history for input())
        return input("you> ")
    if interactive:
        sys.stderr.write("you> ")
        sys.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\r\n")


def _chat_reply(session: Session, text: str) -> None:
    reply = session.stream(text)
    if _play(reply):
        _note(f"stopped after {len(reply.text)} characters; the partial reply stays in the conversation.")


def _command(session: Session, line: str, args: argparse.Namespace) -> str | None:
    """Run a ``/command``; ``"exit"`` ends the conversation."""
    name, _, rest = line.strip().partition(" ")
    rest = rest.strip()
    if name in ("/exit", "/quit"):
        return "exit"
    if name == "/undo":
        removed = session.undo()
        asked = next((m.content for m in removed if m.role == "user"), None)
        _note(f"removed: {_one_line(asked)[:60]!r} and its reply." if asked else "nothing to undo.")
    elif name == "/reset":
        session.reset()
        _note("a new conversation (the system prompt stays).")
    elif name == "/save":
        target = rest or args.save
        if not target:
            _note("/save needs a path (or start with --save PATH).")
            return None
        _save(session, target)
    elif name == "/help":
        _stderr(_CHAT_HELP.split("commands:\n", 1)[1].split("\n\n", 1)[0])
    else:
        _note(f"unknown command {name}: /help lists them; start the line with // to send it.")
    return None


# -- models ----------------------------------------------------------------------------------------


def _per_million(value: Any) -> str:
    try:
        price = float(value) * 1e6
    except (TypeError, ValueError):
        return "-"
    if price != price:  # NaN: not published
        return "-"
    return f"{price:.2f}" if price == 0 or price >= 0.01 else f"{price:.2g}"


def _models(args: argparse.Namespace) -> int:
    session = Session(base_url=args.base_url, source="cli")
    if find_api_key(session.base_url) is None:
        try:  # the hosted catalogue needs a key; the embedded model is there without one
            rows = [_local_row(session)]
        except MissingDependencyError:
            raise MissingAPIKeyError(host_of(session.base_url)) from None
        _note("no Oxen API key found: listing the embedded local model only (set OXEN_API_KEY for the rest).")
    else:
        frame = session.list_models()
        rows = [
            (
                str(r["id"]),
                str(r["name"] or ""),
                str(r["developer"] or ""),
                _per_million(r["input_cost_per_token"]),
                _per_million(r["output_cost_per_token"]),
            )
            for r in frame.to_dict(orient="records")
        ]
    if args.filter:
        needle = args.filter.lower()
        rows = [row for row in rows if any(needle in cell.lower() for cell in row[:3])]
        if not rows:
            _note(f"no model matches {args.filter!r}.")
            return 0
    table = [("id", "name", "input $/1M", "output $/1M"), *[(r[0], r[1], r[3], r[4]) for r in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        cells = [
            row[0].ljust(widths[0]),
            row[1].ljust(widths[1]),
            row[2].rjust(widths[2]),
            row[3].rjust(widths[3]),
        ]
        _print("  ".join(cells).rstrip())
    return 0


def _local_row(session: Session) -> tuple[str, str, str, str, str]:
    info = session.model_info(LOCAL)
    pricing = info.get("pricing") or {}
    developer = (info.get("developer") or {}).get("name") or ""
    return (
        LOCAL,
        str(info.get("display_name") or LOCAL),
        str(developer),
        _per_million(pricing.get("input_cost_per_token")),
        _per_million(pricing.get("output_cost_per_token")),
    )
