"""The stylesheet's palettes (WCAG contrast), the token kinds, error callouts and the retry hook."""

from __future__ import annotations

import re

import pytest
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES, Token

from oxen_notebook import Session
from oxen_notebook._callout import error_callout, error_parts
from oxen_notebook._errors import NotFoundError, status_error
from oxen_notebook._retries import listen_for_retries
from oxen_notebook._style import (
    DARK,
    DARK_BACKGROUNDS,
    LIGHT,
    LIGHT_BACKGROUNDS,
    TOKEN_CLASSES,
    TOKEN_KINDS,
    stylesheet,
    token_class,
)
from tests.conftest import TEST_KEY
from tests.fake_api import FakeAPI, Script


def luminance(colour: str) -> float:
    """WCAG 2.x relative luminance of ``#rrggbb``."""
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize(("palette", "backgrounds"), [(LIGHT, LIGHT_BACKGROUNDS), (DARK, DARK_BACKGROUNDS)])
def test_every_token_kind_reaches_aa_contrast_on_every_code_background(palette, backgrounds):
    assert set(palette) == {"text", *TOKEN_KINDS.values()}
    worst = {kind: min(contrast(colour, bg) for bg in backgrounds) for kind, colour in palette.items()}
    assert min(worst.values()) >= 4.5, {kind: round(c, 2) for kind, c in worst.items() if c < 4.5}


def test_the_stylesheet_colours_each_kind_in_both_themes():
    sheet = stylesheet()
    for kind in TOKEN_KINDS.values():
        assert f".oxen-code .ox-{kind} {{ color: var(--ox-{kind}); }}" in sheet
        assert f"--ox-{kind}: {LIGHT[kind]};" in sheet and f"--ox-{kind}: {DARK[kind]};" in sheet
    dark = re.search(r":is\(([^)]*\([^)]*\)[^)]*)\) \.oxen-code \{", sheet)
    assert dark is not None
    for signal in ('body[data-jp-theme-light="false"]', "body.vscode-dark", 'html[theme="dark"]'):
        assert signal in dark.group(1)
    assert "var(--jp-cell-editor-background" in sheet  # the frontend's own code background


def test_token_classes_come_from_our_map_only():
    lexer = get_lexer_by_name("python")
    seen = {
        token_class(t) for t, _ in lexer.get_tokens("@d\nclass A(B):\n def f(x): return len(x) + 1  # c\n")
    }
    assert seen - {""} <= TOKEN_CLASSES
    assert {"ox-k", "ox-nc", "ox-nf", "ox-nb", "ox-nd", "ox-c", "ox-m", "ox-o"} <= seen
    assert all(token_class(t) in TOKEN_CLASSES | {""} for t in STANDARD_TYPES)
    assert token_class(Token.Name) == "" and token_class(Token.Operator.Word) == "ox-k"


def test_a_repeated_server_detail_is_said_once():
    body = {"error": {"type": "resource_not_found", "title": "Not found", "detail": "Model not found: gpt-6"}}
    error = status_error(404, body, model="gpt-6")
    assert str(error).startswith("404 model 'gpt-6' not found — ")
    assert str(error).count("not found") == 1
    kept = status_error(400, {"error": {"title": "Bad request", "detail": "temperature must be <= 2"}})
    assert "Bad request: temperature must be <= 2 — " in str(kept)


def test_an_error_callout_is_one_sentence_and_one_action():
    body = {"error": {"type": "resource_not_found", "detail": "Model not found: gpt-6"}}
    error = status_error(404, body, model="gpt-6", request_id="req-1")
    assert isinstance(error, NotFoundError)
    what, action = error_parts(error)
    assert what == "404 model 'gpt-6' not found (request id req-1)."
    assert action == "Run %oxen models to see the model ids you can use."  # a notebook's, no shell
    html = error_callout(error)
    assert html.count("not found") == 1 and "oxen-callout-action" in html and 'role="alert"' in html
    assert "`" not in error_callout(status_error(401, {"error": {"type": "unauthenticated"}}))


def test_the_retry_hook_hears_each_retry_of_a_rate_limited_request(fake_api: FakeAPI):
    fake_api.enqueue(
        Script(status=429, error={"error": {"message": "slow down"}}, headers={"Retry-After": "0.2"}),
        Script(status=429, error={"error": {"message": "slow down"}}, headers={"Retry-After": "0.1"}),
        Script(text="finally"),
    )
    heard: list[tuple[str, float, int, int]] = []
    session = Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY, max_retries=2)
    with listen_for_retries(lambda e, s, a, n: heard.append((type(e).__name__, s, a, n))):
        assert session.ask("hi").text == "finally"
    assert heard == [("RateLimitError", 0.2, 1, 2), ("RateLimitError", 0.1, 2, 2)]
    session.ask("again")  # no listener outside the block: nothing heard
    assert len(heard) == 2


def test_a_reply_shown_alone_brings_the_stylesheet(fake_api: FakeAPI):
    from oxen_notebook._style import style_tag

    fake_api.enqueue(Script(text="```python\nx = 1\n```"))
    session = Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY)
    html = session.ask("x")._repr_html_()
    assert html.startswith(style_tag()) and '<span class="ox-m">1</span>' in html


def test_failed_and_denied_steps_get_the_warning_colour_and_an_icon():
    sheet = stylesheet()
    assert ".oxen-step-failed summary::before, .oxen-step-denied summary::before" in sheet
    assert ".oxen-step-failed, .oxen-step-denied, .oxen-tool-failed { color: var(--jp-warn-color1" in sheet


def test_map_puts_the_reply_next_to_the_data_and_bookkeeping_after(fake_api: FakeAPI):
    import pandas as pd

    fake_api.handler = lambda body: Script(text="ok")
    session = Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY)
    out = session.map(
        pd.DataFrame({"city": ["Oslo"], "country": ["NO"]}), "Weather in {city}?", progress=False
    )
    assert list(out.columns)[:3] == ["city", "country", "reply"]


@pytest.mark.parametrize(
    ("status", "body", "action"),
    [
        (402, {"error": {"type": "insufficient_credits"}}, "Add credits to your Oxen.ai account"),
        (429, {"error": {"message": "slow down"}}, "Wait a moment, then run the cell again."),
        (503, {"error": {"message": "down"}}, "Run the cell again shortly."),
    ],
)
def test_a_notebook_callout_gives_one_action(status, body, action):
    what, given = error_parts(status_error(status, body))
    assert given.startswith(action) and given.endswith(".") and ". " not in given and " or " not in given
    assert what.endswith(".") and " — " not in what


def test_a_missing_key_callout_says_what_and_how():
    from oxen_notebook._errors import MissingAPIKeyError

    assert error_parts(MissingAPIKeyError()) == (
        "No Oxen API key found.",
        "Run %oxen login, then run the cell again.",
    )
