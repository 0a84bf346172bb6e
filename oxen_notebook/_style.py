"""The one stylesheet for everything we show as HTML: model Markdown, code, errors, panel, compare.

Code is highlighted with CSS classes, not inline colours: ``token_class`` maps a Pygments token type
to one of a few kinds (``TOKEN_KINDS``), and the sheet colours each kind twice, a light palette and
a dark one chosen by the frontend's own signal (JupyterLab and Notebook 7 set
``data-jp-theme-light`` on ``body``, VS Code ``vscode-dark``/``vscode-high-contrast`` classes, Colab
``theme="dark"`` on ``html``). The code background comes from the frontend's variables where they
exist; every kind reaches 4.5:1 (WCAG AA) against the backgrounds those variables take
(``LIGHT_BACKGROUNDS``, ``DARK_BACKGROUNDS``; ``tests/test_style.py`` computes it).

The code block's HTML (``_render`` builds it; front-ends add buttons in its actions slot)::

    <div class="oxen-code" data-lang="python">
      <div class="oxen-code-head"><span class="oxen-code-lang">python</span><span class="oxen-code-actions"></span></div>
      <pre><code class="language-python">…40 lines…</code></pre></div>
    <div class="oxen-code oxen-code-more" data-lang="python"><pre><code …>…the next 40…</code></pre></div>

A long block comes in parts of ``CODE_CHUNK_LINES`` lines (each streamed once); the code is the
text of the first part's ``code`` and of the ``oxen-code-more`` parts that follow it.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from pygments.token import Comment, Generic, Keyword, Name, Number, Operator, String

__all__ = [
    "CODE_BLOCK",
    "CODE_MORE",
    "DARK",
    "DARK_BACKGROUNDS",
    "DARK_SCOPES",
    "LIGHT",
    "LIGHT_BACKGROUNDS",
    "TOKEN_CLASSES",
    "TOKEN_KINDS",
    "style_tag",
    "stylesheet",
    "token_class",
]

CODE_BLOCK = "oxen-code"
CODE_MORE = "oxen-code-more"
_PREFIX = "ox-"

#: Token types we colour, most specific first within a family, and the class suffix of each.
TOKEN_KINDS: dict[Any, str] = {
    Operator.Word: "k",
    Keyword: "k",
    String: "s",
    Comment: "c",
    Number: "m",
    Name.Function: "nf",
    Name.Class: "nc",
    Name.Decorator: "nd",
    Name.Builtin: "nb",
    Name.Exception: "nc",
    Name.Tag: "nt",
    Name.Attribute: "na",
    Operator: "o",
    Generic.Deleted: "gd",
    Generic.Inserted: "gi",
    Generic.Heading: "gh",
    Generic.Subheading: "gh",
}
TOKEN_CLASSES = frozenset(_PREFIX + kind for kind in TOKEN_KINDS.values())

#: Text colour of code and of each kind, light theme (GitHub's light palette, darkened for #eee).
LIGHT = {
    "text": "#1f2328",
    "k": "#b8202b",
    "s": "#0a3069",
    "c": "#57606a",
    "m": "#0550ae",
    "nf": "#6639ba",
    "nc": "#953800",
    "nd": "#6639ba",
    "nb": "#8a4600",
    "nt": "#116329",
    "na": "#0550ae",
    "o": "#b8202b",
    "gd": "#82071e",
    "gi": "#116329",
    "gh": "#0550ae",
}
#: The same for dark themes (GitHub's dark palette).
DARK = {
    "text": "#e6edf3",
    "k": "#ff7b72",
    "s": "#a5d6ff",
    "c": "#9198a1",
    "m": "#79c0ff",
    "nf": "#d2a8ff",
    "nc": "#ffa657",
    "nd": "#d2a8ff",
    "nb": "#ffa657",
    "nt": "#7ee787",
    "na": "#79c0ff",
    "o": "#ff7b72",
    "gd": "#ffa198",
    "gi": "#7ee787",
    "gh": "#79c0ff",
}
#: Code backgrounds the sheet can end up on: ours, JupyterLab's cell editor, VS Code's code block
#: over its editor, white.
LIGHT_BACKGROUNDS = ("#f6f8fa", "#f5f5f5", "#f1f1f1", "#eeeeee", "#ffffff")
DARK_BACKGROUNDS = ("#1e1e1e", "#212121", "#161616", "#111111", "#2d2d2d")

#: Selectors of an ancestor that says the frontend shows a dark theme.
DARK_SCOPES = (
    'body[data-jp-theme-light="false"]',
    "body.vscode-dark",
    "body.vscode-high-contrast:not(.vscode-high-contrast-light)",
    'html[theme="dark"]',
)
#: Where model Markdown is shown: the magic's outputs, panel messages, compare, evaluation views.
_MD = (".oxen-md", ".oxen-msg", ".oxen-compare", ".oxen-eval")


@functools.lru_cache(maxsize=256)
def token_class(ttype: Any) -> str:
    """The class of a token type's span (``""``: not coloured, plain text)."""
    while ttype is not None:
        kind = TOKEN_KINDS.get(ttype)
        if kind:
            return _PREFIX + kind
        ttype = ttype.parent
    return ""


def _each(scopes: tuple[str, ...], selector: str) -> str:
    return ", ".join(f"{scope} {part.strip()}" for scope in scopes for part in selector.split(","))


def _palette(palette: dict[str, str], background: str) -> str:
    """The palette as custom properties of a code block (the colours per kind are set once)."""
    props = " ".join(f"--{_PREFIX}{kind}: {colour};" for kind, colour in palette.items())
    return f"--oxen-code-bg: {background}; {props}"


_BASE = """
.oxen-code { display: block; width: 100%; box-sizing: border-box; margin-top: 0.5em;
  background: var(--oxen-code-bg); border: 1px solid var(--jp-border-color2, rgba(128,128,128,0.25));
  border-radius: 6px; overflow: hidden; margin-bottom: 0.5em; }
.oxen-code:has(+ .oxen-code-more) { border-bottom: none; border-bottom-left-radius: 0;
  border-bottom-right-radius: 0; margin-bottom: 0; }
.oxen-code-more { margin-top: 0; border-top: none; border-top-left-radius: 0; border-top-right-radius: 0; }
.oxen-code-head { display: flex; align-items: center; gap: 0.5em; min-height: 1.6em;
  padding: 0.1em 0.6em; font-size: 0.8em; font-family: var(--jp-ui-font-family, sans-serif);
  border-bottom: 1px solid var(--jp-border-color2, rgba(128,128,128,0.25)); opacity: 0.85; }
.oxen-code-lang { flex: 1 1 auto; }
.oxen-code-actions { display: inline-flex; gap: 0.3em; }
div.oxen-code > pre { display: block; width: 100%; box-sizing: border-box; margin: 0;
  padding: 0.5em 0.75em; background: transparent; border: none; border-radius: 0; overflow-x: auto;
  line-height: 1.4; font-family: var(--jp-code-font-family, monospace); font-size: var(--jp-code-font-size, 0.9em); }
div.oxen-code > pre > code { background: none; padding: 0; color: inherit; white-space: pre; }
.oxen-code .ox-gh { font-weight: bold; }
"""

_LIGHT_BG = "var(--jp-cell-editor-background, var(--vscode-textCodeBlock-background, #f6f8fa))"
_DARK_BG = "var(--jp-cell-editor-background, var(--vscode-editor-background, #1e1e1e))"

_MARKDOWN = {
    "table": "border-collapse: collapse; margin: 0.5em 0; font-size: 0.95em; border: none;",
    "thead": "border-bottom: 1px solid var(--jp-border-color1, #888);",
    "th, td": "padding: 0.3em 0.75em; text-align: left; vertical-align: top; border: none;",
    "th": "font-weight: bold;",
    "tbody tr:nth-child(even)": "background: var(--jp-rendermime-table-row-background, rgba(128,128,128,0.08));",
    ":not(pre) > code": "background: var(--jp-layout-color2, rgba(128,128,128,0.15)); padding: 0.1em 0.35em;"
    " border-radius: 3px; font-size: 0.9em;",
    "pre": "background: var(--jp-layout-color2, rgba(128,128,128,0.12)); padding: 0.4em 0.6em; border-radius: 4px;"
    " overflow-x: auto;",
    "blockquote": "margin: 0.4em 0; padding: 0 0.8em; border-left: 3px solid var(--jp-border-color2, #ccc);",
}

_CALLOUT = """
.jp-OutputArea-child:has(> .jp-OutputArea-output > :is(style.oxen-style, .oxen-hidden):only-child),
.output_area:has(> .output_subarea > :is(style.oxen-style, .oxen-hidden):only-child) { display: none; }
.jp-OutputArea-child:has(.oxen-callout) + .jp-OutputArea-child:has(> [data-mime-type="application/vnd.jupyter.stderr"]),
.output_area:has(.oxen-callout) + .output_area:has(> .output_error) { display: none; }
.oxen-callout { display: flex; gap: 0.5em; align-items: baseline; margin: 0.3em 0; padding: 0.45em 0.75em;
  border: 1px solid var(--jp-error-color2, #e57373); border-left-width: 4px; border-radius: 4px;
  background: var(--jp-error-color3, rgba(244,67,54,0.08)); color: var(--jp-content-font-color1, inherit);
  white-space: normal; overflow-wrap: normal; word-break: normal; line-height: 1.45; }
.oxen-callout-icon { flex: 0 0 auto; font-weight: bold; color: var(--jp-error-color1, #c62828); }
.oxen-callout-warn { border-color: var(--jp-warn-color2, #ffb74d); background: var(--jp-warn-color3, rgba(255,152,0,0.1)); }
.oxen-callout-warn .oxen-callout-icon { color: var(--jp-warn-color1, #b26a00); }
.oxen-callout-action { opacity: 0.85; }
.oxen-retrying { font-size: 0.9em; opacity: 0.8; }
.oxen-step-failed, .oxen-step-denied, .oxen-tool-failed { color: var(--jp-warn-color1, #b26a00); }
.oxen-step-failed summary::before, .oxen-step-denied summary::before { content: "\\26A0\\FE0E  "; }
.oxen-models td:first-child, .oxen-models th:first-child { white-space: nowrap; }
.oxen-compare-wrap { container-type: inline-size; width: 100%; }
table.oxen-compare { width: 100%; table-layout: fixed; border-collapse: collapse; margin: 0.3em 0; }
table.oxen-compare > * > tr > * { vertical-align: top; text-align: left; padding: 0.35em 0.6em; overflow-wrap: break-word; }
table.oxen-compare > * > tr > :first-child { width: 4.5em; font-weight: normal; opacity: 0.75; }
table.oxen-compare > thead > tr > th { border-bottom: 1px solid var(--jp-border-color1, #888); font-weight: 600; }
.oxen-compare-error { color: var(--jp-error-color1, #c62828); }
@container (max-width: 700px) {
  table.oxen-compare { display: flex; flex-direction: column; table-layout: auto; }
  table.oxen-compare > thead, table.oxen-compare > tbody, table.oxen-compare > * > tr { display: contents; }
  table.oxen-compare > * > tr > * { display: block; width: auto; }
  table.oxen-compare > * > tr > :first-child { display: none; }
  table.oxen-compare > thead > tr > th { margin-top: 0.5em; }
  table.oxen-compare > * > tr > :nth-child(2) { order: 1; }
  table.oxen-compare > * > tr > :nth-child(3) { order: 2; }
  table.oxen-compare > * > tr > :nth-child(4) { order: 3; }
  table.oxen-compare > * > tr > :nth-child(5) { order: 4; }
  table.oxen-compare > * > tr > :nth-child(6) { order: 5; }
  table.oxen-compare > * > tr > :nth-child(7) { order: 6; }
  table.oxen-compare > * > tr > :nth-child(8) { order: 7; }
  table.oxen-compare > * > tr > :nth-child(9) { order: 8; }
  table.oxen-compare > * > tr > :nth-child(10) { order: 9; }
  table.oxen-compare > * > tr > :nth-child(11) { order: 10; }
  table.oxen-compare > * > tr > :nth-child(12) { order: 11; }
  table.oxen-compare > * > tr > :nth-child(13) { order: 12; }
  table.oxen-compare > * > tr > :nth-child(14) { order: 13; }
  table.oxen-compare > * > tr > :nth-child(15) { order: 14; }
  table.oxen-compare > * > tr > :nth-child(16) { order: 15; }
  table.oxen-compare > * > tr > :nth-child(17) { order: 16; }
}
.oxen-badge { display: inline-block; margin-left: 0.4em; padding: 0 0.4em; border-radius: 3px; font-size: 0.8em;
  font-weight: normal; background: var(--jp-brand-color3, rgba(33,150,243,0.15)); }
.oxen-spinner { display: inline-block; width: 0.8em; height: 0.8em; border: 2px solid rgba(128,128,128,0.4);
  border-top-color: transparent; border-radius: 50%; animation: oxen-spin 0.9s linear infinite; vertical-align: middle; }
@keyframes oxen-spin { to { transform: rotate(360deg); } }
"""

_PANEL = """
.oxen-panel .widget-html, .oxen-panel .widget-htmlmath { margin: 0; width: auto; height: auto; }
.oxen-panel .oxen-transcript .widget-html-content,
.oxen-panel .oxen-transcript .widget-htmlmath-content { line-height: 1.45; white-space: normal; }
.oxen-panel .oxen-transcript .widget-vbox { width: 100%; }
.oxen-panel .oxen-transcript p { margin: 0.3em 0; }
.oxen-panel .oxen-msg { padding: 0.35em 0.7em; margin: 0.25em 0; border-radius: 6px;
  border-left: 3px solid var(--jp-border-color1, #ccc); }
.oxen-panel .oxen-user { background: var(--jp-layout-color2, #f3f6fa);
  border-left-color: var(--jp-brand-color1, #1976d2); }
.oxen-panel .oxen-assistant { border-left-color: #1a7f37; }
.oxen-panel .oxen-role { font-size: 0.8em; font-weight: 600; color: var(--jp-ui-font-color2, #666); }
.oxen-panel .oxen-meta { font-weight: normal; }
.oxen-panel .oxen-error { color: var(--jp-error-color1, #c62828); }
.oxen-panel .oxen-note { color: var(--jp-warn-color1, #b26a00); }
.oxen-panel .oxen-status { font-size: 0.85em; color: var(--jp-ui-font-color2, #666); }
.oxen-panel .oxen-tool { padding: 0.15em 0.7em; }
.oxen-panel .oxen-step, .oxen-panel .oxen-step-call { font-family: var(--jp-code-font-family, monospace);
  font-size: 0.85em; color: var(--jp-ui-font-color1, #333); }
.oxen-panel .oxen-step summary { cursor: pointer; }
.oxen-panel .oxen-step pre { margin: 0.2em 0 0.3em 1em; white-space: pre-wrap; }
.oxen-panel .oxen-step-denied summary, .oxen-panel .oxen-step-failed summary {
  color: var(--jp-warn-color1, #b26a00); }
.oxen-panel .oxen-approval { border-left-color: var(--jp-warn-color1, #b26a00); }
.oxen-panel .oxen-parsed table { border-collapse: collapse; margin: 0.2em 0; font-size: 0.9em; }
.oxen-panel .oxen-parsed th, .oxen-panel .oxen-parsed td { padding: 0.1em 0.6em; text-align: left;
  border: 1px solid var(--jp-border-color2, #ddd); vertical-align: top; }
"""


@functools.lru_cache(maxsize=1)
def stylesheet() -> str:
    """The CSS text: code (both palettes), model Markdown, callouts, compare, the panel."""
    dark = f":is({', '.join(DARK_SCOPES)})"
    parts = [
        _BASE.strip(),
        f".{CODE_BLOCK} {{ {_palette(LIGHT, _LIGHT_BG)} }}",
        f"{dark} .{CODE_BLOCK} {{ {_palette(DARK, _DARK_BG)} }}",
        f".{CODE_BLOCK} {{ color: var(--{_PREFIX}text); }}",
    ]
    kinds = sorted(set(TOKEN_KINDS.values()))
    parts += [f".{CODE_BLOCK} .{_PREFIX}{kind} {{ color: var(--{_PREFIX}{kind}); }}" for kind in kinds]
    parts += [f"{_each(_MD, selector)} {{ {rule} }}" for selector, rule in _MARKDOWN.items()]
    parts += [_CALLOUT.strip(), _PANEL.strip()]
    return "\n".join(parts) + "\n"


@functools.lru_cache(maxsize=1)
def style_tag() -> str:
    """The stylesheet as a ``<style>`` element, for an HTML output (no script needed): its white
    space folded, since a notebook file keeps a copy per output that shows it."""
    css = re.sub(r"\s+", " ", stylesheet())
    css = re.sub(r" ?([{};]) ", r"\1", css).replace(": ", ":").replace(", ", ",")
    return f'<style class="oxen-style">{css}</style>'
