"""Backends that misbehave on a real socket: no crash, no hang past the deadlines, no leak.

A raw TCP server on 127.0.0.1 plays the canary: it closes mid-headers or
mid-body, sends a body larger than any answer, or trickles a byte at a time
(slowloris). The caller always gets stable's answer; the deadlines are read
from the injected clock, which the trickling server advances with each byte.
"""

from __future__ import annotations

import gc
import json
import socket
import threading
from typing import Any

import httpx
import pytest

from tests.client_harness import Driver, FakeClock, RawServer, Script, flag_source
from vibesdk._backends.reading import MAX_LINE_CHARS, BodyReader, LineSplitter
from vibesdk.testing import FakeBackend, make_document, make_flag

USER = [{"role": "user", "content": "2+2?"}]


def close_mid_headers(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Ty")
    conn.shutdown(socket.SHUT_WR)


def close_mid_body(conn: socket.socket) -> None:
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 999\r\n\r\n"
    )
    conn.sendall(b'{"choices": [{"message": {"content": "tru')
    conn.shutdown(socket.SHUT_WR)


def huge_body(conn: socket.socket) -> None:
    # More than any answer may be (64 MiB), sent as fast as the client reads.
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
    chunk = b"x" * 1024 * 1024
    for _ in range(80):
        conn.sendall(chunk)


def endless_line(conn: socket.socket) -> None:
    # A stream whose first line never ends.
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: ")
    chunk = b"x" * 1024 * 1024
    for _ in range(MAX_LINE_CHARS // len(chunk) + 4):
        conn.sendall(chunk)


def trickle(clock: FakeClock) -> Script:
    """Slowloris: one byte at a time, each one second later on the client's clock."""

    def script(conn: socket.socket) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 100000\r\n\r\n"
        )
        for _ in range(2000):
            clock.now += 1.0
            conn.sendall(b" ")
            threading.Event().wait(0.005)  # separate reads, not a timing assumption

    return script


def trickle_headers(clock: FakeClock) -> Script:
    """Slowloris before the body: header lines a byte at a time, each one clock second later."""

    def script(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for byte in b"X-Slow: y\r\n" * 200:
            clock.now += 1.0
            conn.sendall(bytes([byte]))
            threading.Event().wait(0.005)  # separate reads, not a timing assumption

    return script


def run(kind: str, stable: FakeBackend, script: Script, stream: bool, **kw: Any) -> Any:
    server = RawServer(script)
    doc = make_document(
        make_flag(
            stable_url=stable.url,
            canary_url=server.url,
            rollout_bps=10_000,
            fallback={"retries": 0, "first_token_timeout_s": 5, "total_timeout_s": 10},
        )
    )
    d = Driver(kind, flag_source=flag_source(doc), cache_dir="", **kw)
    try:
        if stream:
            result = d.stream("vibethinker", "u1", USER)[-1].result
        else:
            result = d.chat("vibethinker", "u1", USER)
        for t in server.threads:
            t.join(15)  # the handler ends when the client has closed the connection
        # Counted before the client is closed (which would close a leaked connection too).
        accepted, hung_up = server.accepted, server.hung_up
    finally:
        d.dispose()
        server.close()
    gc.collect()  # an unclosed socket or response would warn here (warnings are errors)
    assert (accepted, hung_up) == (1, 1)  # the call closed its connection before returning
    return result


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("script", "reasons"),
    [
        (close_mid_headers, {"connect", "stream_interrupted"}),
        (close_mid_body, {"connect", "stream_interrupted"}),
        (huge_body, {"malformed"}),
    ],
)
def test_broken_or_oversized_canary_answers_fall_back(
    kind: str, stable: FakeBackend, script: Script, reasons: set[str], stream: bool
) -> None:
    """A connection closed mid-headers or mid-body, or a body over the cap: stable answers."""
    r = run(kind, stable, script, stream)
    assert (r.text, r.variant, r.fallback) == ("stable answer", "stable", True)
    assert r.fallback_reason in reasons


def test_a_stream_line_that_never_ends_is_capped(kind: str, stable: FakeBackend) -> None:
    """A first line longer than MAX_LINE_CHARS is malformed; stable streams instead."""
    r = run(kind, stable, endless_line, True)
    assert (r.text, r.fallback, r.fallback_reason) == ("stable answer", True, "malformed")


@pytest.mark.parametrize(
    ("stream", "reason"), [(False, "timeout_total"), (True, "timeout_first_token")]
)
def test_a_trickling_canary_cannot_hold_the_call_past_its_deadline(
    kind: str, stable: FakeBackend, stream: bool, reason: str
) -> None:
    """Slowloris (a byte per clock second, never a line): the deadline ends it; stable answers."""
    clock = FakeClock()
    r = run(kind, stable, trickle(clock), stream, clock=clock)
    assert (r.text, r.fallback, r.fallback_reason) == ("stable answer", True, reason)


def test_unicode_line_separators_inside_a_streamed_answer_arrive_intact(kind: str) -> None:
    """U+2028, U+2029 and U+0085 in a raw-UTF-8 event are text, not line ends (httpx's are)."""
    text = "a\u2028b\u2029c\x85d"
    events = [
        {"choices": [{"index": 0, "delta": {"content": text}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    body = "".join(f"data: {json.dumps(e, ensure_ascii=False)}\n\n" for e in events)
    body += "data: [DONE]\n\n"

    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body.encode())

    doc = make_document(
        make_flag(stable_url="http://stable/v1", canary_url="http://canary/v1", rollout_bps=10_000)
    )
    d = Driver(
        kind, flag_source=flag_source(doc), cache_dir="", transport=httpx.MockTransport(reply)
    )
    try:
        chunks = d.stream("vibethinker", "u1", USER)
    finally:
        d.dispose()
    result = chunks[-1].result
    assert result is not None
    assert (result.text, result.fallback) == (text, False)


def test_line_splitter_matches_sse_line_ends_across_chunk_boundaries() -> None:
    """CRLF, LF and CR end lines wherever the chunks split them; nothing else does."""
    body = "a\r\nb\rc\nd\u2028e\r\n\r\nlast"
    for cut in range(len(body) + 1):
        for cut2 in range(cut, len(body) + 1):
            s = LineSplitter(backend="b")
            lines = s.feed(body[:cut]) + s.feed(body[cut:cut2]) + s.feed(body[cut2:]) + s.flush()
            assert lines == ["a", "b", "c", "d\u2028e", "", "last"], (cut, cut2)


def test_body_reader_refuses_past_its_limit_or_truncates_error_bodies() -> None:
    """An answer body over the limit is malformed; an error body is cut to its head."""
    import vibesdk

    reader = BodyReader(backend="b", limit=4)
    reader.feed(b"1234")
    with pytest.raises(vibesdk.MalformedResponseError):
        reader.feed(b"5")
    head = BodyReader(backend="b", limit=4, truncate=True)
    head.feed(b"123456")
    assert (head.full, head.body()) == (True, b"1234")


@pytest.mark.parametrize(
    ("stream", "reason"), [(False, "timeout_total"), (True, "timeout_first_token")]
)
def test_a_canary_trickling_its_headers_cannot_hold_the_call_past_its_deadline(
    kind: str, stable: FakeBackend, stream: bool, reason: str
) -> None:
    """Header lines a byte per clock second: the deadline cuts the wait; stable answers in time.

    Only the watched network backend (vibesdk._watch, handed to httpcore's pool through its
    public ``network_backend`` argument) can see this: httpx's own timeouts are per read. This
    test fails if the clients' transports stop using it.
    """
    clock = FakeClock()
    r = run(kind, stable, trickle_headers(clock), stream, clock=clock)
    assert (r.text, r.fallback, r.fallback_reason) == ("stable answer", True, reason)
    assert r.latency_s <= 10 + 2  # on the injected clock: the total deadline, not 2,200 s
