"""The SSE decoder alone, and its line-ending edge cases through a real exchange (loopback server)."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oxen_notebook import Session, StreamError
from oxen_notebook._sse import ServerSentEvent, SSEDecoder
from tests.fake_api import FakeAPI, Script, chunk_payload


def decode(*chunks: bytes) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    return events + decoder.end()


def test_events_split_on_blank_lines_and_multiline_data_joined():
    events = decode(b"data: a\ndata: b\n\ndata: c\n\n")
    assert [e.data for e in events] == ["a\nb", "c"]


def test_comments_unknown_fields_and_event_fields():
    events = decode(b": keep-alive\nfoo: bar\nevent: update\nid: 7\nretry: 300\ndata: x\n\n")
    assert events == [ServerSentEvent(data="x", event="update", id="7", retry=300)]


def test_crlf_and_lone_cr_line_endings():
    assert [e.data for e in decode(b"data: a\r\n\r\ndata: b\r\rdata: c\n\n")] == ["a", "b", "c"]


def test_cr_at_end_of_a_read_followed_by_lf():
    assert [e.data for e in decode(b"data: a\r", b"\n\r", b"\n")] == ["a"]


def test_one_space_after_colon_dropped_and_no_colon_field():
    events = decode(b"data:  two spaces\n\ndata\n\n")
    assert [e.data for e in events] == [" two spaces", ""]


def test_bom_dropped_and_unfinished_event_discarded():
    assert [e.data for e in decode(b"\xef\xbb", b"\xbfdata: a\n\ndata: cut")] == ["a"]


def test_utf8_split_inside_a_character():
    text = "data: héllo ✓ 🐂\n\n".encode()
    cut = text.index("🐂".encode()) + 2
    assert decode(text[:cut], text[cut:])[0].data == "héllo ✓ 🐂"


STREAM = (
    '\ufeff: comment\r\ndata: {"a": "é"}\r\n\r\nevent: x\ndata: 1\ndata: 2\n\n'
    "id: 5\rdata: [DONE]\r\rdata: 🐂\n\ndata: tail"
).encode()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_of_the_bytes_gives_the_same_events(cuts):
    bounds = [0, *sorted(cuts), len(STREAM)]
    chunks = [STREAM[a:b] for a, b in itertools.pairwise(bounds)]
    assert decode(*chunks) == decode(STREAM)
    assert [e.data for e in decode(STREAM)] == ['{"a": "é"}', "1\n2", "[DONE]", "🐂"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=20), max_size=6),
       st.data())  # fmt: skip
def test_arbitrary_payloads_round_trip_through_any_split(payloads, data):
    body = "".join(f"data: {p}\n\n" for p in payloads).encode()
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=8))
    bounds = [0, *sorted(cuts), len(body)]
    events = decode(*[body[a:b] for a, b in itertools.pairwise(bounds)])
    assert [e.data for e in events] == payloads


# -- a body whose last line ends in a lone CR, through Session, Reply and the loopback server ------


def cr_body(*events: object) -> bytes:
    """Each event's ``data:`` line ended by a lone CR, and the event by a second one."""
    return "".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\r\r" for e in events).encode()


CONTENT = ["Hello", " there,", " last words"]
FINISHING = cr_body(  # the last event carries text and the finish reason; no [DONE]
    chunk_payload("test-model", 0, {"role": "assistant", "content": ""}),
    *(chunk_payload("test-model", 0, {"content": text}) for text in CONTENT[:-1]),
    chunk_payload("test-model", 0, {"content": CONTENT[-1]}, "length"),
)
DONE = cr_body(  # Oxen's documented shape: content chunks, no finish reason, then [DONE]
    chunk_payload("test-model", 0, {"role": "assistant", "content": ""}),
    *(chunk_payload("test-model", 0, {"content": text}) for text in CONTENT),
    "[DONE]",
)
BODIES = {"finish_reason, no [DONE]": (FINISHING, "length"), "[DONE] last": (DONE, "stop")}


@pytest.mark.parametrize("byte_by_byte", [False, True])
@pytest.mark.parametrize("name", sorted(BODIES))
def test_stream_yields_the_event_ended_by_the_last_lone_cr(
    session: Session, fake_api: FakeAPI, name: str, byte_by_byte: bool
) -> None:
    body, reason = BODIES[name]
    assert body.endswith(b"\r\r")
    fake_api.enqueue(Script(raw=body, byte_by_byte=byte_by_byte))
    seen: list[str] = []
    session.on("delta", lambda e: seen.append(e.delta))
    reply = session.stream("hi")
    deltas = list(reply)
    assert deltas == CONTENT
    assert seen == CONTENT  # the views (magic, panel) get the last delta too
    assert reply.text == "Hello there, last words"
    assert reply.finish_reason == reason and reply.error is None
    assert session.messages[-1].content == "Hello there, last words"
    assert session.messages[-1].finish_reason == reason and session.messages[-1].error is None


@pytest.mark.parametrize("name", sorted(BODIES))
def test_ask_keeps_the_event_ended_by_the_last_lone_cr(session: Session, fake_api: FakeAPI, name: str):
    body, reason = BODIES[name]
    fake_api.enqueue(Script(raw=body))
    seen: list[str] = []
    session.on("delta", lambda e: seen.append(e.delta))
    reply = session.ask("hi")  # a lost last event would raise StreamError (or drop its text)
    assert seen == CONTENT
    assert reply.text == "Hello there, last words"
    assert reply.finish_reason == reason and reply.error is None


@pytest.mark.parametrize("name", sorted(BODIES))
def test_astream_yields_the_event_ended_by_the_last_lone_cr(
    session: Session, fake_api: FakeAPI, name: str
) -> None:
    body, reason = BODIES[name]
    fake_api.enqueue(Script(raw=body))

    async def run() -> tuple[list[str], str | None, str]:
        reply = session.astream("hi")
        deltas = [d async for d in reply]
        return deltas, reply.finish_reason, reply.text

    assert asyncio.run(run()) == (CONTENT, reason, "Hello there, last words")
    assert session.messages[-1].error is None


def test_a_body_cut_inside_its_last_event_is_still_an_error(session: Session, fake_api: FakeAPI):
    # The lone-CR flush must not dispatch an event the body never ended: one CR ends the line only.
    body = DONE[: -len(b"data: [DONE]\r\r")] + b"data: [DONE]\r"
    fake_api.enqueue(Script(raw=body))
    with pytest.raises(StreamError, match="closed before the reply was complete"):
        session.ask("hi")
    assert session.messages[-1].content == "Hello there, last words"


def test_a_line_split_over_many_reads_is_copied_once():
    """A line that arrives in thousands of reads is joined once when it ends: the bytes copied
    grow with its length, not with its length times the reads (quadratic: 5 s of CPU for 20 MB)."""
    decoder = SSEDecoder()
    payload = json.dumps(chunk_payload("m", 0, {"content": "x" * (8 * 2**20)}))
    wire = f"data: {payload}\n\n".encode()
    events = []
    for start in range(0, len(wire), 4096):
        events.extend(decoder.feed(wire[start : start + 4096]))
    assert [e.data for e in events] == [payload]
    assert decoder.copied <= 2 * len(wire)

    # reads that end on line boundaries are not copied at all; a line cut once is copied once
    decoder = SSEDecoder()
    for _ in range(1000):
        decoder.feed(b"data: abc\n\n")
    decoder.feed(b"data: ab")
    decoder.feed(b"c\n\n")
    assert decoder.copied == len(b"data: abc\n\n")


def test_a_line_over_the_bound_is_a_stream_error_as_soon_as_it_passes():
    decoder = SSEDecoder(max_line=1000)
    assert decoder.feed(b"data: a\n\n" + b"x" * 990) == [ServerSentEvent("a")]
    decoder.feed(b"x" * 10)  # 1,000 bytes: at the bound
    with pytest.raises(
        StreamError, match=r"^the stream sent a line of more than 1,000 bytes without ending it"
    ):
        decoder.feed(b"x")
    with pytest.raises(StreamError, match="more than 1,000 bytes"):
        SSEDecoder(max_line=1000).feed(b"data: b\n\n" + b"y" * 1001 + b"\r")
    assert SSEDecoder(max_line=1000).feed(b"data: " + b"z" * 994 + b"\n\n") == [ServerSentEvent("z" * 994)]
