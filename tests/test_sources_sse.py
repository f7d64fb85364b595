"""The sans-I/O SSE parser: WHATWG event-stream rules, fed in chunks of any size."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from vibesdk._sse import SSEEvent, SSEParser

STREAM = (
    "retry: 1000\n\n"
    ": ping\n\n"
    'id: 7\nevent: flags\ndata: {"version": 7}\n\n'
    "data: line one\ndata: line two\n\n"
    "id: 8\r\nevent: flags\r\ndata: é中\r\n\r\n"
).encode()

EXPECTED = [
    SSEEvent("flags", '{"version": 7}', "7"),
    SSEEvent("message", "line one\nline two", "7"),
    SSEEvent("flags", "é中", "8"),
]


def _parse_all(chunks: list[bytes]) -> tuple[list[SSEEvent], SSEParser]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    events.extend(parser.end())
    return events, parser


def test_whole_stream_yields_events_ids_retry_and_comments() -> None:
    """One chunk: events with their type, joined data and last id; retry and comments noted."""
    events, parser = _parse_all([STREAM])
    assert events == EXPECTED
    assert parser.retry_ms == 1000
    assert parser.comments == 1
    assert parser.last_event_id == "8"


def test_byte_by_byte_gives_the_same_events() -> None:
    """Feeding one byte at a time (splitting \\r\\n and UTF-8 sequences) changes nothing."""
    events, _ = _parse_all([STREAM[i : i + 1] for i in range(len(STREAM))])
    assert events == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    """However the transport splits the bytes, the same events come out."""
    bounds = [0, *sorted(cuts), len(STREAM)]
    chunks = [STREAM[a:b] for a, b in itertools.pairwise(bounds)]
    assert _parse_all(chunks)[0] == EXPECTED


def test_lone_cr_ends_lines() -> None:
    """A bare \\r is a line ending too, also when it is the last byte of a chunk."""
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\r") == []
    assert parser.feed(b"data: b\r\r") == [SSEEvent("message", "a", "")]
    assert parser.end() == [SSEEvent("message", "b", "")]


def test_truncated_event_is_discarded() -> None:
    """An event cut before its blank line is never dispatched (no half documents)."""
    parser = SSEParser()
    assert parser.feed(b'id: 9\nevent: flags\ndata: {"ver') == []
    assert parser.end() == []
    assert parser.feed(b"data: next\n\n") == [SSEEvent("message", "next", "9")]


def test_field_rules() -> None:
    """One leading space is stripped; no colon means empty value; unknown fields are ignored."""
    parser = SSEParser()
    events = parser.feed(b"data\ndata:x\ndata:  y\nfoo: bar\n\n")
    assert events == [SSEEvent("message", "\nx\n y", "")]


def test_id_with_nul_and_bad_retry_are_ignored() -> None:
    """An id containing NUL and a non-numeric retry leave the previous values."""
    parser = SSEParser(last_event_id="3")
    parser.feed(b"id: 4\x005\nretry: 1s\nretry: 250\nretry: x\ndata: d\n\n")
    assert parser.last_event_id == "3"
    assert parser.retry_ms == 250


def test_event_without_data_is_not_dispatched_but_id_sticks() -> None:
    """A block with only id/event fields dispatches nothing and resets the event type."""
    parser = SSEParser()
    assert parser.feed(b"id: 5\nevent: flags\n\ndata: d\n\n") == [SSEEvent("message", "d", "5")]


def test_leading_bom_is_skipped() -> None:
    """A UTF-8 byte order mark at the start of the stream is not part of the first field."""
    parser = SSEParser()
    assert parser.feed(b"\xef\xbb") == []
    assert parser.feed(b"\xbfdata: x\n\n") == [SSEEvent("message", "x", "")]
