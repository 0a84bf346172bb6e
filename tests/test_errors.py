"""Oxen's error shapes, through a real request: the class by credits, status, then type; one line
that says what to do; in-stream error events mapped the same way, with Oxen's title kept."""

from __future__ import annotations

import asyncio
import json

import pytest

from oxen_notebook import (
    APIStatusError,
    BadRequestError,
    InsufficientCreditsError,
    ServerError,
    Session,
)
from tests.conftest import TEST_KEY
from tests.fake_api import FakeAPI, Script

CREDITS = "add credits to your Oxen.ai account at https://www.oxen.ai, or use Session(model='local')."


def _session(fake_api: FakeAPI) -> Session:
    # No retries: a 5xx is retried by status, and these tests are about the error, not the retries.
    return Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY, max_retries=0)


@pytest.mark.parametrize(
    ("status", "body", "cls", "message"),
    [
        # Oxen documents no 402: the credits say so in the message, on whatever status.
        (400, {"error": {"type": "invalid_params", "title": "Bad Request", "detail": "Insufficient credits"}},
         InsufficientCreditsError, f"400 Bad Request: Insufficient credits — {CREDITS}"),
        (403, {"error": {"message": "Insufficient credits"}},
         InsufficientCreditsError, f"403 insufficient credits — {CREDITS}"),
        (500, {"error": {"type": "unknown_error", "detail": "Your credit balance is too low"}},
         InsufficientCreditsError, f"500 insufficient credits: Your credit balance is too low — {CREDITS}"),
        (400, {"status": "error", "status_message": "Insufficient credits"},
         InsufficientCreditsError, f"400 insufficient credits — {CREDITS}"),
        (402, {"error": {"message": "payment required"}},
         InsufficientCreditsError, f"402 insufficient credits: payment required — {CREDITS}"),
        # Not about credits: the status decides, then the type; each says what to do.
        (400, {"error": {"type": "invalid_file_input", "title": "Invalid file", "detail": "only PDF files"}},
         BadRequestError, "400 Invalid file: only PDF files — send a PDF (up to 24 MB) as a file part, or "
         "audio as wav/mp3 (up to 20 MB), as a data URL or an https URL."),
        (400, {"error": {"type": "invalid_params", "title": "Bad Request", "detail": "credit_card is not a parameter"}},
         BadRequestError, "400 Bad Request: credit_card is not a parameter — check the parameters and the "
         "model's request schema (oxen_notebook.model_info(model))."),
        (403, {"error": {"message": "forbidden"}},
         APIStatusError, "403 error: forbidden — this key may not do that: check the model id and your "
         "Oxen.ai plan or organisation access."),
        (418, {"error": {"message": "teapot"}},
         APIStatusError, "418 error: teapot — check the request, or try again later."),
    ],
)  # fmt: skip
def test_status_errors_map_by_credits_status_then_type(fake_api, status, body, cls, message):
    fake_api.enqueue(Script(status=status, error=body))
    s = _session(fake_api)
    with pytest.raises(APIStatusError) as info:
        s.ask("hello")
    error = info.value
    assert type(error) is cls
    assert error.message == message
    assert error.status == status
    assert "\n" not in str(error) and str(error) == f"{message} (request id {error.request_id})"
    assert s.messages[-1].error == str(error)


def test_credits_error_keeps_oxens_fields(fake_api):
    body = {"error": {"type": "invalid_params", "title": "Bad Request", "detail": "Insufficient credits"}}
    fake_api.enqueue(Script(status=400, error=body))
    with pytest.raises(InsufficientCreditsError) as info:
        _session(fake_api).ask("hello")
    error = info.value
    assert (error.type, error.title, error.detail) == (
        "invalid_params",
        "Bad Request",
        "Insufficient credits",
    )
    assert error.hint == CREDITS


@pytest.mark.parametrize(
    ("event", "cls", "message"),
    [
        ({"error": {"type": "invalid_params", "title": "Payment Required", "detail": "Insufficient credits"}},
         InsufficientCreditsError, f"Payment Required: Insufficient credits — {CREDITS}"),
        ({"error": {"message": "Insufficient credits"}}, InsufficientCreditsError, f"insufficient credits — {CREDITS}"),
        ({"error": {"type": "unknown_error", "title": "Upstream failed", "detail": "model crashed"}},
         ServerError, "Upstream failed: model crashed — the model failed mid-reply and the partial reply was "
         "kept: try again."),
        ({"error": {"type": "invalid_params", "title": "Bad Request", "detail": "max_tokens too large"}},
         BadRequestError, "Bad Request: max_tokens too large — check the parameters and the model's request "
         "schema (oxen_notebook.model_info(model))."),
    ],
)  # fmt: skip
def test_in_stream_error_events_map_the_same_way_and_keep_the_title(fake_api, event, cls, message):
    fake_api.enqueue(Script(chunks=["partial", " more"], error_event_after=1, error_event=event))
    s = _session(fake_api)
    with pytest.raises(APIStatusError) as info:
        s.ask("hello")
    error = info.value
    assert type(error) is cls and str(error) == message
    assert error.title == event["error"].get("title") and error.status is None
    last = s.messages[-1]
    assert (last.content, last.finish_reason, last.error) == ("partial", "error", message)


def test_async_in_stream_credits_error(fake_api):
    event = {"error": {"message": "Insufficient credits"}}
    fake_api.enqueue(Script(chunks=["a", "b"], error_event_after=1, error_event=event))
    s = _session(fake_api)
    with pytest.raises(InsufficientCreditsError, match="add credits"):
        asyncio.run(s.aask("hello"))
    assert s.messages[-1].finish_reason == "error"


def test_out_of_credits_is_not_retried_whatever_the_status(fake_api):
    s = Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY, max_retries=2)
    body = {"error": {"type": "unknown_error", "title": "Error", "detail": "Insufficient credits"}}
    fake_api.enqueue(Script(status=500, error=body), Script(status=500, error=body), Script(text="never"))
    with pytest.raises(InsufficientCreditsError):
        s.ask("hi")
    assert len(fake_api.chat_requests()) == 1


# A title that poses as a traceback, and the controls a terminal obeys: clear screen, window title
# (OSC 0), clipboard write (OSC 52), a carriage return that overwrites the line, a bidi override.
FORGED = (
    'Traceback (most recent call last):\n  File "/srv/app.py", line 3, in <module>\r\n'
    "\x1b[2J\x1b]0;pwned\x07\x1b]52;c;ZWNobyBoaQ==\x07\x85RuntimeError:\u2028\u202eevil\x00"
)
CONTROLS = ["\n", "\r", "\x1b", "\x07", "\x00", "\x85", "\u2028", "\u202e"]
FOLDED = (
    'Traceback (most recent call last): File "/srv/app.py", line 3, in <module> '
    "[2J ]0;pwned ]52;c;ZWNobyBoaQ== RuntimeError: evil"
)


@pytest.mark.parametrize("where", ["status", "stream", "unstreamed"])
def test_server_text_is_folded_into_one_line_without_control_characters(fake_api, where, tmp_path):
    detail = f"line one\r\n\tline two {FORGED}"
    error = {"error": {"type": "invalid\nparams", "title": FORGED, "detail": detail}}
    script = {
        "status": Script(status=400, error=error),
        "stream": Script(chunks=["partial", " more"], error_event_after=1, error_event=error),
        "unstreamed": Script(text="x", error_event_after=0, error_event=error),
    }[where]
    fake_api.enqueue(script)
    journal = tmp_path / "j.jsonl"
    s = Session(
        model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY, max_retries=0, journal=journal
    )
    reply = s.stream("hello")
    if where == "unstreamed":
        reply.streamed = False
    with pytest.raises(APIStatusError) as info:
        reply.consume()
    e = info.value
    assert e.title == FOLDED and e.type == "invalid params"
    assert e.detail == f"line one line two {FOLDED}"
    journaled = json.loads(journal.read_text().splitlines()[-1])
    for text in (str(e), e.title, e.detail, e.type, s.messages[-1].error, journaled["error"]):
        assert not [c for c in CONTROLS if c in text], text
    assert str(e).startswith(f"{'400 ' if where == 'status' else ''}{FOLDED}: line one line two Traceback")
