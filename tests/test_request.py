"""A request is one value built once, and one function writes its body (``_ask``, ``_request``)."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import BaseModel

from oxen_notebook import ParameterError, Session
from oxen_notebook._ask import Ask
from tests.conftest import TEST_KEY
from tests.fake_api import NO_JSON_SCHEMA_MODEL, Script


class Person(BaseModel):
    name: str
    age: int


def make(fake_api, **kwargs) -> Session:
    return Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY, timeout=5.0, **kwargs)


def test_an_ask_is_frozen_and_holds_its_checked_parts(fake_api):
    s = make(fake_api, temperature=0.3)
    ask = Ask.make(
        "hi", params={"max_tokens": 9, "extra_headers": {"X-A": "1"}}, defaults=s.defaults, schema=Person
    )
    assert dict(ask.params) == {
        "temperature": 0.3,
        "max_tokens": 9,
        "response_format": ask.output.response_format(),
    }
    assert dict(ask.extra_headers) == {"X-A": "1"} and not ask.extra_body
    with pytest.raises(dataclasses.FrozenInstanceError):
        ask.prompt = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        ask.params["temperature"] = 2  # type: ignore[index]
    # None drops a default, as a keyword of stream() does.
    assert "temperature" not in Ask.make("hi", params={"temperature": None}, defaults=s.defaults).params
    with pytest.raises(ParameterError, match=r"^prompt is empty"):
        Ask.make("  ")


def test_the_request_is_frozen_and_the_preview_is_the_body_sent(fake_api):
    s = make(fake_api, validate_schema=False)
    preview = s.preview("Ada, 36", schema=Person, history=False, params={"temperature": 0})
    fake_api.enqueue(Script(text='{"name": "Ada", "age": 36}'))
    turn = s.stream("Ada, 36", schema=Person, history=False, temperature=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        turn.request.use_fallback = True  # type: ignore[misc]
    turn.consume()
    assert fake_api.chat_requests() == [preview["body"]]
    follow = turn.request.follow([{"role": "user", "content": "again"}])
    assert follow is not turn.request and turn.request.follow_up is None
    assert follow.follow_up == ({"role": "user", "content": "again"},)


def test_the_json_object_fallback_is_written_by_the_same_function(fake_api):
    # The model refuses json_schema: the 400's retry, and the preview once it is known, agree.
    s = make(fake_api, validate_schema=False)
    fake_api.enqueue(Script(text='{"name": "Ada", "age": 36}'))
    s.ask("Ada", schema=Person, model=NO_JSON_SCHEMA_MODEL, history=False, system="Be brief.")
    refused, retried = fake_api.chat_requests()
    assert refused["response_format"]["type"] == "json_schema"
    assert retried["response_format"] == {"type": "json_object"}
    assert retried["messages"][0]["content"].startswith("Be brief.\n\n")  # the instruction joins the system
    preview = s.preview("Ada", schema=Person, model=NO_JSON_SCHEMA_MODEL, history=False)
    assert preview["body"]["response_format"] == {"type": "json_object"}
    assert preview["body"]["messages"][0] == {
        "role": "system",
        "content": retried["messages"][0]["content"][11:],
    }
