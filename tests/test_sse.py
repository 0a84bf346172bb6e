from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from oxen_notebook._sse import ServerSentEvent, SSEDecoder


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
