"""Token counts made here when the server sends none: o200k_base (bpe-openai), else characters."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from oxen_notebook import Session
from oxen_notebook._records import message_facts
from oxen_notebook._tokens import (
    ENCODING,
    count_messages,
    count_reply,
    count_text,
    counter_name,
    fill_usage,
    image_tokens,
)
from tests.conftest import TEST_KEY
from tests.fake_api import FakeAPI, Script

ROOT = Path(__file__).resolve().parents[1]

# OpenAI's cookbook ("How to count tokens with tiktoken"): the API reported 124 prompt tokens for
# these messages on gpt-4o and gpt-4o-mini, the o200k_base family.
COOKBOOK = [
    {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
    {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
    {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
    {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."},
]  # fmt: skip


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_counts_match_what_openai_reports_for_the_o200k_family():
    assert counter_name() == ENCODING
    assert count_messages(COOKBOOK) == 124
    assert count_text("") == 0
    assert count_messages([]) == 3  # the reply priming alone


def test_text_past_the_tokenizers_input_limit_is_counted_in_pieces():
    # bpe-openai refuses 1,000,000 characters at once; pieces are cut at spaces, so the count
    # is the same as for the text's words one by one.
    text = "hello " * 200_000
    assert count_text(text) == count_text("hello " * 10) - 10 + 200_000 == 200_001


def test_tool_calls_and_tool_definitions_count():
    call = {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}
    assert count_reply("", [call]) == count_text("add") + count_text('{"a": 1, "b": 2}') > 0
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    plain = [{"role": "user", "content": "add"}]
    assert count_messages(plain, tools) > count_messages(plain)
    parts = [{"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "https://e.com/a.png"}}]}]  # fmt: skip
    # An image URL's size is unknown: it counts the largest image the providers' rules take.
    assert count_messages(parts) == count_messages([{"role": "user", "content": "look"}]) + image_tokens(
        None, None
    )


def test_fill_usage_keeps_what_the_server_sent():
    full = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    assert fill_usage(full, COOKBOOK, "whatever") == (full, False)
    half, estimated = fill_usage({"prompt_tokens": 5}, COOKBOOK, "two words")
    assert estimated and half == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}


def test_reply_without_usage_is_counted_here_and_marked(session: Session, fake_api: FakeAPI):
    fake_api.enqueue(Script(text="Plain words back", usage=None))
    reply = session.ask("Count these words, please")
    sent = fake_api.chat_requests()[-1]["messages"]
    message = reply.message
    assert message.usage_estimated is True
    assert (
        message.prompt_tokens == count_messages(sent) == 3 + 3 + 1 + count_text("Count these words, please")
    )
    assert message.completion_tokens == count_text("Plain words back") == 3
    assert message.total_tokens == message.prompt_tokens + message.completion_tokens
    assert message_facts(message)[1] == f"~{message.total_tokens} tokens"
    # The server's counts, when it sends them, are kept as they are (the fake counts words).
    reply = session.ask("again")
    assert reply.message.usage_estimated is False
    assert reply.message.completion_tokens == 2  # "Echo: again"
    assert message_facts(reply.message)[1] == f"{reply.message.total_tokens} tokens"


def test_tool_call_reply_without_usage_counts_its_arguments(session: Session, fake_api: FakeAPI):
    call = {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}
    fake_api.enqueue(Script(chunks=[], tool_calls=[call], finish_reason="tool_calls", usage=None))
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    message = session.ask("add 1 and 2", tools=tools).message
    assert message.usage_estimated
    assert message.completion_tokens == count_reply("", [call])
    assert message.prompt_tokens == count_messages(fake_api.chat_requests()[-1]["messages"], tools)


def test_failed_and_interrupted_replies_are_not_guessed(session: Session, fake_api: FakeAPI):
    fake_api.enqueue(Script(chunks=["partial ", "rest"], drop_after=1, usage=None))
    with pytest.raises(Exception, match="partial reply was kept"):
        session.ask("x")
    failed = session.messages[-1]
    assert (failed.finish_reason, failed.prompt_tokens, failed.usage_estimated) == ("error", None, False)
    fake_api.enqueue(Script(chunks=[f"w{i} " for i in range(50)], usage=None))
    with session.stream("y") as reply:
        for _ in reply:
            break
    stopped = session.messages[-1]
    assert (stopped.finish_reason, stopped.prompt_tokens, stopped.usage_estimated) == (
        "interrupted",
        None,
        False,
    )


def test_without_bpe_openai_characters_are_counted_and_still_marked():
    # A real missing package: the import of bpe_openai fails in a fresh interpreter.
    out = _run(
        f"""
        import sys
        sys.modules["bpe_openai"] = None  # import bpe_openai now raises ImportError
        from oxen_notebook import Session
        from oxen_notebook._tokens import counter_name
        from tests.fake_api import FakeAPI, Script

        with FakeAPI() as api:
            api.enqueue(Script(text="twelve chars", usage=None))
            s = Session(model="test-model", base_url=api.base_url, api_key={TEST_KEY!r})
            m = s.ask("abcdefgh").message
            print(counter_name(), m.usage_estimated, m.prompt_tokens, m.completion_tokens)
        """
    )
    # user (1) + "abcdefgh" (2) + 3 per message + 3 priming; "twelve chars" is 12 characters: 3.
    assert out == "chars/4 True 9 3"


def test_import_does_not_load_the_tokenizer():
    assert _run("import sys, oxen_notebook; print('bpe_openai' in sys.modules)") == "False"
