"""Deadlines on real sockets and the real clock: a canary sends its headers, then goes silent.

``total_timeout_s`` bounds an attempt from sending the request to the last byte of
the answer, and ``first_token_timeout_s`` a stream until its first token. A raw
loopback server plays the canary; each test measures how long the caller waited
and asserts it is the deadline plus a margin, well below what a per-read timeout
that starts again once the headers are in would cost (about twice the deadline).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import pytest

from tests.client_harness import Driver, RawServer, Script, flag_source
from vibesdk import StreamInterruptedError
from vibesdk.testing import FakeBackend, make_document, make_flag

USER = [{"role": "user", "content": "2+2?"}]
MARGIN_S = 0.9  # scheduling and the fallback to stable on a busy machine; far below the overshoot


def pause(seconds: float) -> None:
    threading.Event().wait(seconds)


def headers_then_silence(after_s: float, content_type: str) -> Script:
    """Send the response headers ``after_s`` seconds after the request, then nothing more."""

    def script(conn: socket.socket) -> None:
        pause(after_s)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type.encode() + b"\r\n"
            b"Content-Length: 100000\r\n\r\n"
        )

    return script


def event(text: str) -> bytes:
    return b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}).encode()


def tokens_then_silence(gap_s: float) -> Script:
    """Headers and a first token at once, a second token ``gap_s`` later, then nothing more."""

    def script(conn: socket.socket) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Content-Length: 100000\r\n\r\n" + event("Two") + b"\n\n"
        )
        pause(gap_s)
        conn.sendall(event(" plus") + b"\n\n")

    return script


def driver(kind: str, stable: FakeBackend, canary: RawServer, **policy: float) -> Driver:
    doc = make_document(
        make_flag(
            stable_url=stable.url,
            canary_url=canary.url,
            rollout_bps=10_000,
            fallback={"retries": 0, **policy},
        )
    )
    return Driver(kind, flag_source=flag_source(doc), cache_dir="")


def timed(run: Any) -> tuple[Any, float]:
    started = time.monotonic()
    out = run()
    return out, time.monotonic() - started


@pytest.mark.parametrize(
    ("stream", "reason"), [(False, "timeout_total"), (True, "timeout_first_token")]
)
def test_headers_then_silence_falls_back_on_the_deadline(
    kind: str, stable: FakeBackend, stream: bool, reason: str
) -> None:
    """Headers at 1.6 s of a 2 s deadline, then no body: stable answers by 2 s, not by 3.6 s.

    The deadline is the total one for chat() and the first-token one for a stream.
    """
    canary = RawServer(
        headers_then_silence(1.6, "text/event-stream" if stream else "application/json")
    )
    # For a stream the first-token deadline is the one that must cut it.
    d = driver(kind, stable, canary, first_token_timeout_s=2, total_timeout_s=30 if stream else 2)
    try:
        if stream:
            result, waited = timed(lambda: d.stream("vibethinker", "u1", USER)[-1].result)
        else:
            result, waited = timed(lambda: d.chat("vibethinker", "u1", USER))
    finally:
        d.dispose()
        canary.close()
    assert (result.text, result.fallback, result.fallback_reason) == ("stable answer", True, reason)
    assert waited < 2 + MARGIN_S, waited


def test_stream_silent_after_its_tokens_is_cut_on_the_total_deadline(
    kind: str, stable: FakeBackend
) -> None:
    """Tokens at 0 s and 2 s, then silence: cut at the 4 s total deadline, not 2 + 3.5 s."""
    canary = RawServer(tokens_then_silence(2.0))
    d = driver(kind, stable, canary, first_token_timeout_s=3.5, total_timeout_s=4)
    try:
        (chunks, exc), waited = timed(lambda: d.stream_until_error("vibethinker", "u1", USER))
    finally:
        d.dispose()
        canary.close()
    assert "".join(c.text for c in chunks) == "Two plus"
    assert isinstance(exc, StreamInterruptedError)
    assert "timeout_total" in str(exc)
    assert waited < 4 + MARGIN_S, waited
