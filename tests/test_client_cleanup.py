"""Every attempt ends cleanly, even when closing its response fails.

A response whose body read breaks and whose ``close()`` then raises too is a fault
no real server produces on demand, so an httpx transport plays it. Whatever the
close raises, the caller gets what the documentation promises (stable's answer
before the first token, :class:`~vibesdk.StreamInterruptedError` after it), the
attempt span ends, the URL's in-flight count returns to 0 and a half-open
breaker's probe permit comes back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

import vibesdk
from tests.client_harness import Backends, Driver, FakeClock, answer, flag_source, json_of, sse_body
from vibesdk import StreamInterruptedError
from vibesdk.testing import SpanCapture, make_document, make_flag

USER = [{"role": "user", "content": "2+2?"}]


class BreaksThenCloseRaises(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that sends ``head``, then fails the next read; closing it raises as well."""

    def __init__(self, head: bytes) -> None:
        self.head = head
        self.closes = 0

    def __iter__(self) -> Iterator[bytes]:
        if self.head:
            yield self.head
        raise httpx.ReadError("connection reset by peer")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.head:
            yield self.head
        raise httpx.ReadError("connection reset by peer")

    def close(self) -> None:
        self.closes += 1
        raise RuntimeError("close failed too")

    async def aclose(self) -> None:
        self.close()


def ok(request: httpx.Request) -> httpx.Response:
    if json_of(request).get("stream"):
        return httpx.Response(200, content=sse_body("four"))
    return httpx.Response(200, json=answer("four"))


class Canary:
    """The canary's handler: 503, healthy, or a body that breaks and cannot be closed."""

    def __init__(self) -> None:
        self.mode = "broken"
        self.head = b""
        self.bodies: list[BreaksThenCloseRaises] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.mode == "503":
            return httpx.Response(503)
        if self.mode == "ok":
            return ok(request)
        body = BreaksThenCloseRaises(self.head)
        self.bodies.append(body)
        kind = "text/event-stream" if json_of(request).get("stream") else "application/json"
        return httpx.Response(200, headers={"Content-Type": kind}, stream=body)


@pytest.fixture
def canary() -> Canary:
    return Canary()


@pytest.fixture
def make(kind: str, canary: Canary) -> Iterator[Any]:
    drivers: list[Driver] = []

    def build(**policy: Any) -> Driver:
        doc = make_document(
            make_flag(
                stable_url="http://stable/v1",
                canary_url="http://canary/v1",
                rollout_bps=10_000,
                fallback={"retries": 0, **policy},
            )
        )
        backends = Backends(canary=canary, stable=ok)
        d = Driver(
            kind,
            flag_source=flag_source(doc),
            transport=backends.transport(),
            clock=FakeClock(),
            cache_dir="",
        )
        drivers.append(d)
        return d

    yield build
    for d in drivers:
        d.dispose()


def attempt_errors(cap: SpanCapture) -> list[Any]:
    """(variant, error.type) of every ended attempt span, in order."""
    return [
        (
            (s.attributes or {}).get("feature_flag.result.variant"),
            (s.attributes or {}).get("error.type"),
        )
        for s in cap.find_all("vibesdk.attempt")
    ]


def test_stream_broken_after_its_first_token_with_a_failing_close_is_interrupted(
    make: Any, canary: Canary
) -> None:
    """Token, read error, raising close(): StreamInterruptedError, the attempt ended, none held."""
    canary.head = b'data: {"choices": [{"index": 0, "delta": {"content": "Two"}}]}\n\n'
    d = make()
    with SpanCapture() as cap:
        chunks, exc = d.stream_until_error("vibethinker", "u1", USER)
        assert attempt_errors(cap) == [("canary", "stream_interrupted")]
        assert (cap.find("chat").attributes or {})["error.type"] == "stream_interrupted"
    assert [c.text for c in chunks] == ["Two"]
    assert isinstance(exc, StreamInterruptedError)
    assert canary.bodies[0].closes >= 1
    assert d.in_flight() == {"http://canary/v1": 0}


@pytest.mark.parametrize("stream", [False, True])
def test_half_open_probe_whose_close_raises_falls_back_and_gives_its_permit_back(
    make: Any, canary: Canary, stream: bool
) -> None:
    """The probe's body breaks and close() raises: stable answers and a later probe is let in."""
    d = make(breaker_failures=1, breaker_cooldown_s=30)
    clock: FakeClock = d.client._clock

    def ask() -> vibesdk.ChatResult:
        if stream:
            result = d.stream("vibethinker", "u1", USER)[-1].result
            assert result is not None
            return result
        return d.chat("vibethinker", "u1", USER)

    canary.mode = "503"
    assert ask().fallback_reason == "http_503"  # opens the breaker
    clock.now += 30
    canary.mode = "broken"
    with SpanCapture() as cap:
        probe = ask()
        assert attempt_errors(cap)[0][0] == "canary"
        assert len(attempt_errors(cap)) == 2  # the probe's attempt ended, then stable's
    assert (probe.text, probe.variant, probe.fallback) == ("four", "stable", True)
    assert probe.fallback_reason in {"connect", "stream_interrupted"}
    assert canary.bodies[0].closes >= 1
    assert d.in_flight() == {"http://canary/v1": 0, "http://stable/v1": 0}
    assert ask().fallback_reason == "circuit_open"  # the failed probe opened it again
    clock.now += 30
    canary.mode = "ok"
    healed = ask()  # a new probe was admitted: the first one's permit came back
    assert (healed.variant, healed.fallback) == ("canary", False)
