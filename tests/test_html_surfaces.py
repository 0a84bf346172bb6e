"""Every HTML surface vets model and server text for the notebook's math typesetter, as replies do.

JupyterLab, Notebook 7 and classic Notebook typeset ``$…$`` and ``\\(…\\)`` in any HTML output and
in ``HTMLMath`` widgets; with ``\\href`` (which their MathJax loads) a reply, a model name or an
error text becomes a link to wherever it says. Replies are vetted (``_math``): math that uses a
refused macro is shown as code, and every other ``$`` and ``\\`` of the text is in an element of
its own, so no typesetter reads delimiters in it. Each surface below shows hostile text through
the real component (the magic on an IPython shell, the panel's widgets as they reach the comm,
``compare``'s table, the batch progress bar) against the loopback API, and what it produced is
read as a typesetter would: text nodes outside code.

:data:`SURFACES` lists, per module, the surfaces that module draws; the structure tests fail when
a module builds HTML and is not listed (a new surface must come with its case here), or when
text is escaped for HTML with ``html.escape`` instead of ``_math.escape_text``.
"""

from __future__ import annotations

import ast
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

import comm
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from pydantic import BaseModel

import oxen_notebook
from oxen_notebook import ChatPanel, Session
from oxen_notebook._batch._compare import compare_html
from oxen_notebook._batch._progress import BatchProgress, make_progress
from oxen_notebook._magics._objects import object_bundle
from tests.conftest import TEST_KEY
from tests.fake_api import Script
from tests.helpers import is_stylesheet

PACKAGE = Path(oxen_notebook.__file__).parent
EVIL = "https://evil.example/"
HOSTILE = rf"costs $5 or $\href{{{EVIL}}}{{click}}$ and \(\href{{{EVIL}}}{{here}}\)"
#: HOSTILE inside a JSON string (its backslashes doubled).
IN_JSON = HOSTILE.replace("\\", "\\\\")

#: Modules that name an HTML widget class but show nothing themselves.
NOT_SURFACES = {
    "_panel/_compat.py": "the HTMLMath style class for ipywidgets 7 and 8",
    "_style.py": "the stylesheet (no text of a model or server in it)",
}
#: Modules whose _repr_html_ hands on another object's (already vetted) _repr_html_.
DELEGATES = {"_turn.py"}
#: module (relative to the package) -> the surfaces it draws, each checked by a test here.
SURFACES = {
    "_reply.py": ["a reply's _repr_html_"],
    "_turn.py": ["a turn's _repr_html_ (its reply's)"],
    "_render.py": ["replies (Markdown)", "code (--format code)"],
    "_math.py": ["the vetting itself"],
    "_streaming.py": ["a streamed reply in the magic and the panel"],
    "_batch/_compare.py": ["compare's table: replies, errors, variants (%%oxen --compare)"],
    "_batch/_progress.py": ["the batch progress bar's line and note"],
    "_magics/_views.py": ["tool-call and repair lines", "footnotes"],
    "_magics/_objects.py": ["--schema objects", "%oxen models", "%oxen history"],
    "_magics/_cell.py": ["the footer, --format code"],
    "_panel/_panel.py": ["status and notes"],
    "_panel/_controls.py": ["status and notes, the fallback line"],
    "_panel/_transcript.py": ["message headers, errors, the streaming header"],
    "_panel/_steps.py": ["tool steps, the parsed table of ChatPanel(schema=)"],
    "_callout.py": ["an error's callout (the magic's and the panel's), the retry note"],
    "_magics/_errors.py": ["a failed cell's callout, the retry note"],
    "_eval/_view.py": ["an evaluation's summary table (variant names, notes)"],
    "_eval/_grid.py": ["an evaluation's row grid: prompts, replies, targets, errors"],
    "_eval/_live.py": ["an evaluation's live per-variant lines"],
    "_eval/_result.py": ["a paired comparison's sentence"],
    "_eval/_run.py": ["a dry run's estimate table"],
}


class _Typeset(HTMLParser):
    """The text a math typesetter scans: text nodes outside code, pre, script, style, textarea."""

    SKIPPED: ClassVar[set[str]] = {"code", "pre", "script", "style", "textarea"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.depth += tag in self.SKIPPED

    def handle_endtag(self, tag: str) -> None:
        self.depth -= tag in self.SKIPPED

    def handle_data(self, data: str) -> None:
        if not self.depth:
            self.texts.append(data)


def typesettable(markup: str) -> list[str]:
    """Text nodes a typesetter could read math in: a ``$`` or ``\\`` with anything else in its node."""
    parser = _Typeset()
    parser.feed(markup)
    return [t for t in parser.texts if ("$" in t and t.strip() != "$") or ("\\" in t and t.strip() != "\\")]


def assert_vetted(markup: str, *, shows: str = "click") -> None:
    assert typesettable(markup) == [], markup
    assert shows in markup  # the text is there, only not as math


# -- the magic ------------------------------------------------------------------------------------


class Person(BaseModel):
    name: str
    age: int


def lookup(query: str) -> str:
    """Look something up."""
    return f"found: {query}"


@pytest.fixture
def ip(ip: InteractiveShell) -> InteractiveShell:
    """The shared shell (conftest), with a schema type and a tool in its namespace."""
    ip.user_ns.update(Person=Person, lookup=lookup)
    return ip


def cell(ip: InteractiveShell, line: str, text: str) -> list[str]:
    """Run a ``%%oxen`` cell; the HTML of the outputs a frontend ends with (updates applied)."""
    with capture_output() as captured:
        ip.run_cell_magic("oxen", line, text)
    shown: dict[str, str] = {}
    for n, out in enumerate(captured.outputs):
        display_id = (out.transient or {}).get("display_id") or f"output-{n}"
        if "text/html" in out.data and not is_stylesheet({"metadata": out.metadata}):
            shown[display_id] = out.data["text/html"]
    return list(shown.values())


def test_a_reply_streamed_into_a_cell_and_its_repr(ip, fake_api):
    fake_api.handler = lambda body: Script(chunks=[HOSTILE[:12], HOSTILE[12:40], HOSTILE[40:]])
    shown = cell(ip, "", "hi")
    assert len(shown) == 2  # the reply and its footer
    assert_vetted(shown[0])
    reply = Session(base_url=fake_api.base_url, api_key=TEST_KEY).ask("hi")
    assert_vetted(reply._repr_html_())


def test_format_code_and_a_hostile_model_name_in_the_footer(ip, fake_api):
    model = rf"evil-$\href{{{EVIL}}}{{click}}$"
    fake_api.models.append(model)
    fake_api.handler = lambda body: Script(text=f"```latex\n{HOSTILE}\n```")
    code, footer = cell(ip, f"-f code -m '{model}'", "hi")
    assert "<pre" in code and "click" in code and typesettable(code) == []
    assert_vetted(footer)


def test_a_failed_cell_shows_a_vetted_callout(ip, fake_api):
    from oxen_notebook._errors import status_error
    from oxen_notebook._magics._errors import RetryNote, cell_error

    error = status_error(
        400, {"error": {"type": "invalid_params", "title": HOSTILE, "detail": f"also {HOSTILE}"}}
    )
    with capture_output() as captured:
        failure = cell_error(error, rich=True)
        note = RetryNote(rich=True)
        note.show(error, 2.0, 1, 2)
    callout, retrying = (out.data["text/html"] for out in captured.outputs)
    assert "oxen-callout" in callout and callout.count("click") == 2
    assert_vetted(callout.split("</style>")[1])
    assert_vetted(retrying.split("</style>")[1], shows="retrying in 2 s (1/2)")
    assert "click" in failure._render_traceback_()[0]


def test_compare_errors_and_replies(ip, fake_api):
    def answer(body: dict[str, Any]) -> Script:
        if body["model"] == "cheap-model":
            return Script(status=400, error={"error": {"type": "invalid_params", "title": HOSTILE}})
        return Script(text=HOSTILE)

    fake_api.handler = answer
    (table,) = cell(ip, "--compare test-model,cheap-model", "hi")
    assert "oxen-compare" in table and table.count("click") == 2  # the reply and the error
    assert_vetted(table)
    s = Session(base_url=fake_api.base_url, api_key=TEST_KEY)
    assert_vetted(compare_html(s.compare("hi", models=["test-model", "cheap-model"], show=False)))


def test_oxen_models_and_history(ip, fake_api):
    fake_api.models.append(rf"evil-$\href{{{EVIL}}}{{click}}$")
    fake_api.handler = lambda body: Script(text=HOSTILE)
    cell(ip, "", "hi")
    models = ip.run_line_magic("oxen", "models")
    history = ip.run_line_magic("oxen", "history")
    for frame in (models, history):
        assert_vetted(frame._repr_html_(), shows="evil.example")  # pandas cuts long cells
        assert "<style scoped>" in frame._repr_html_()  # pandas' own notebook table, style sheet kept
    assert list(history["content"]) == ["hi", HOSTILE]  # the data itself is as it came


def test_schema_objects(ip, fake_api):
    fake_api.enqueue(Script(text=f'{{"name": "{IN_JSON}", "age": 1}}'))
    shown = cell(ip, "--schema Person", "who?")
    assert any("oxen-object" in markup and "click" in markup for markup in shown)
    for markup in shown:
        assert typesettable(markup) == [], markup
    for value in ({"name": HOSTILE}, [{"name": HOSTILE}], HOSTILE):
        assert_vetted(object_bundle(value)["text/html"])


def test_tool_call_lines(ip, fake_api):
    shown = cell(ip, "-m tool-model --tools lookup", f'CALL lookup {{"query": "{IN_JSON}"}}')
    lines = [markup for markup in shown if "lookup(" in markup]
    assert lines and all("click" in markup for markup in lines)
    for markup in shown:
        assert typesettable(markup) == [], markup


# -- the panel -----------------------------------------------------------------------------------


class _Recording(comm.base_comm.BaseComm):
    log: ClassVar[list[Any]]

    def publish_msg(
        self, msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None, **keys: Any
    ) -> None:
        self.log.append((self.comm_id, data or {}))


@pytest.fixture
def widget_html(monkeypatch: pytest.MonkeyPatch):
    """Every value HTML and HTMLMath widgets send to the frontend during the test (what a kernel
    would send)."""
    log: list[Any] = []
    monkeypatch.setattr(comm, "create_comm", type("Recording", (_Recording,), {"log": log}))

    def values() -> list[str]:
        html_widgets = {
            comm_id
            for comm_id, data in log
            if (data.get("state") or {}).get("_model_name") in ("HTMLModel", "HTMLMathModel")
        }
        return [
            data["state"]["value"]
            for comm_id, data in log
            if comm_id in html_widgets and isinstance((data.get("state") or {}).get("value"), str)
        ]

    return values


def test_the_panel_parsed_table_errors_model_names_and_tool_steps(fake_api, widget_html):
    model = rf"evil-$\href{{{EVIL}}}{{click}}$"  # a model name from the server's list
    fake_api.models.append(model)
    panel = ChatPanel(Session(model=model, base_url=fake_api.base_url, api_key=TEST_KEY), schema=Person)
    fake_api.enqueue(Script(text=f'{{"name": "{IN_JSON}", "age": 1}}'))
    assert panel.send("who?") and panel.wait(10)
    fake_api.enqueue(Script(status=400, error={"error": {"type": "invalid_params", "title": HOSTILE}}))
    assert panel.send("again") and panel.wait(10)
    tools = ChatPanel(
        Session(model="tool-model", base_url=fake_api.base_url, api_key=TEST_KEY), tools=[lookup]
    )
    assert tools.send(f'CALL lookup {{"query": "{IN_JSON}"}}') and tools.wait(10)
    values = widget_html()
    assert any("oxen-parsed" in v and "click" in v for v in values)  # ChatPanel(schema=)'s table
    assert any("oxen-error" in v and "click" in v for v in values)  # the error, inline and as the status
    assert any("oxen-role" in v and "evil-" in v for v in values)  # the model name in a header
    assert any("oxen-step" in v and "click" in v for v in values)  # the tool step
    for value in values:
        assert typesettable(value) == [], value
    panel.close()
    tools.close()


def test_the_batch_progress_line(fake_api, widget_html, monkeypatch):
    monkeypatch.setattr("oxen_notebook._batch._progress.in_notebook", lambda: True)  # as in a kernel
    with capture_output():
        bar = make_progress(True, 2)
    bar.close(BatchProgress(total=2, done=2, failed=1), HOSTILE)
    (line,) = [v for v in widget_html() if "click" in v]
    assert_vetted(line)


def test_an_evaluations_summary_grid_live_view_comparison_and_estimate(fake_api, widget_html, monkeypatch):
    import pandas as pd

    from oxen_notebook import scorers

    monkeypatch.setattr("oxen_notebook._eval._live.in_notebook", lambda: True)  # as in a kernel
    fake_api.handler = lambda body: Script(text=HOSTILE)
    s = Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY)
    data = pd.DataFrame({"text": [HOSTILE, "plain"], "want": [HOSTILE, "x"]})
    variants = {f"v {HOSTILE}": "A {text}", "plain": "B {text}"}
    with capture_output():
        ev = s.evaluate(data, variants, target="want", scorers=[scorers.exact()], progress=True)
    page = ev._repr_html_()
    assert_vetted(page)
    assert page.count("click") >= 4  # names, prompts, replies and targets are all there, as text
    lines = [v for v in widget_html() if "evaluating" in v]  # redrawn every half second, then at the end
    assert lines and "4/4" in lines[-1]
    for live in lines:
        assert_vetted(live)
    assert_vetted(ev.compare(f"v {HOSTILE}", "plain")._repr_html_())
    assert_vetted(s.evaluate(data, variants, target="want", dry_run=True)._repr_html_())


# -- the list of surfaces is complete ------------------------------------------------------------

_MARKUP = ("text/html", "<div", "<span", "<table", "<td", "<p>", "<pre", "<a ")
_HTML_NAMES = {"HTML", "HTMLMath", "to_html", "_repr_html_", "render_markdown", "render_code", "escape_text"}


def _builds_html(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and any(m in node.value for m in _MARKUP)
        ):
            return True
        if isinstance(node, ast.Attribute) and node.attr in _HTML_NAMES:
            return True
        if isinstance(node, ast.Name) and node.id in _HTML_NAMES:
            return True
        if isinstance(node, ast.FunctionDef) and node.name == "_repr_html_":
            return True
    return False


def test_every_module_that_builds_html_is_a_listed_surface():
    building = {
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if _builds_html(ast.parse(path.read_text()))
    }
    assert building == set(SURFACES) | set(NOT_SURFACES)


def test_text_reaches_html_only_through_the_vetting_functions():
    """``html.escape`` leaves ``$`` and ``\\``: only ``_math`` and ``_render`` may call it (their
    callers' text is vetted); a pandas table's HTML goes through ``vet_html``."""
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        vetted = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "vet_html"
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            where = f"{path.relative_to(PACKAGE)}:{node.lineno}"
            escapes = node.func.attr == "escape" and getattr(node.func.value, "id", None) == "html"
            if escapes and path.name not in ("_math.py", "_render.py"):
                offences.append(f"{where} html.escape: use _math.escape_text")
            delegates = str(path.relative_to(PACKAGE)) in DELEGATES
            if node.func.attr in ("to_html", "_repr_html_") and id(node) not in vetted and not delegates:
                offences.append(f"{where} {node.func.attr} outside vet_html")
    assert offences == []
