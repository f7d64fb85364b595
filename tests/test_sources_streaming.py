"""Flag delivery over SSE on both drivers: pushes, resume with Last-Event-ID, backoff, bad input."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import sources_harness
from tests.sources_harness import Driver, Sleeps, fake_driver, sse_frame
from vibesdk import FlagState
from vibesdk.testing import make_document, make_flag

# The shared fixtures: each test body runs on both drivers; drivers are closed after it.
kind = sources_harness.kind
drivers = sources_harness.drivers

STREAM = "vibesdk-flags-stream"
POLL = "vibesdk-flags-poll"


def _driver(drivers: list[Driver], kind: str, tmp_path: Path, *args: Any, **kw: Any) -> Driver:
    """:func:`fake_driver` with streaming on."""
    return fake_driver(drivers, kind, tmp_path, *args, streaming=True, **kw)


def test_stream_document_is_applied_and_ready(
    kind: str, drivers: list[Driver], tmp_path: Path
) -> None:
    """The first flags event of a stream is applied at once and makes the source READY."""
    d = _driver(drivers, kind, tmp_path)
    doc = make_document(version=4)
    d.server.stream_script.append(d.server.stream_body(b"retry: 1000\n\n", sse_frame(doc)))
    d.open()
    assert d.stream_once()
    assert (d.store.version, d.store.origin, d.store.state) == (4, "stream", FlagState.READY)
    (request,) = d.server.wait_for("/v1/stream", 1)
    assert request.headers["accept"] == "text/event-stream"
    assert "last-event-id" not in request.headers


def test_reconnect_resumes_with_last_event_id_of_the_served_version(
    kind: str, drivers: list[Driver], tmp_path: Path
) -> None:
    """After a stream ends, the next one sends Last-Event-ID: the version being served."""
    d = _driver(drivers, kind, tmp_path)
    d.server.stream_script.append(d.server.stream_body(sse_frame(make_document(version=4))))
    d.server.stream_script.append(d.server.stream_body(sse_frame(make_document(version=6))))
    d.open()
    d.stream_once()
    d.stream_once()
    _, second = d.server.wait_for("/v1/stream", 2)
    assert second.headers["last-event-id"] == "4"
    assert d.store.version == 6


def test_resuming_at_the_current_version_is_ready_without_a_document(
    kind: str, drivers: list[Driver], tmp_path: Path
) -> None:
    """A cached document plus a stream opened with its Last-Event-ID is READY (nothing owed)."""
    seed = _driver(drivers, kind, tmp_path)
    seed.server.stream_script.append(seed.server.stream_body(sse_frame(make_document(version=8))))
    seed.open()
    seed.stream_once()
    d = _driver(drivers, kind, tmp_path)
    d.server.stream_script.append(d.server.stream_body(b"retry: 1000\n\n", b": ping\n\n"))
    d.open()
    assert d.store.state is FlagState.STALE
    assert d.stream_once()
    (request,) = d.server.wait_for("/v1/stream", 1)
    assert request.headers["last-event-id"] == "8"
    assert d.store.state is FlagState.READY


def test_truncated_event_is_not_applied(kind: str, drivers: list[Driver], tmp_path: Path) -> None:
    """A stream cut in the middle of an event applies nothing from it."""
    d = _driver(drivers, kind, tmp_path)
    frame = sse_frame(make_document(version=4))
    d.server.stream_script.append(d.server.stream_body(frame[: len(frame) // 2]))
    d.open()
    assert not d.stream_once()
    assert d.store.version is None


def test_stream_broken_by_an_error_mid_event_applies_nothing(
    kind: str, drivers: list[Driver], tmp_path: Path
) -> None:
    """A read error between the halves of an event drops the partial event."""
    d = _driver(drivers, kind, tmp_path)
    frame = sse_frame(make_document(version=4))
    d.server.stream_script.append(
        d.server.stream_body(sse_frame(make_document(version=2)), frame[:30], hold=True)
    )
    d.server.push(httpx.ReadError("connection reset"))
    d.open()
    assert d.stream_once()
    assert d.store.version == 2
    assert not d.source.core.stream_up


def test_invalid_and_older_documents_on_the_stream_are_refused(
    kind: str, drivers: list[Driver], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An invalid document is rejected and logged, an older one ignored, other events skipped."""
    d = _driver(drivers, kind, tmp_path)
    d.server.stream_script.append(
        d.server.stream_body(
            sse_frame(make_document(version=5)),
            sse_frame('{"version": 6, "flags": {"Bad Key": {}}}', 6),
            sse_frame(make_document(make_flag(rollout_bps=10000), version=3)),
            b"event: hello\ndata: {}\n\n",
        )
    )
    d.open()
    with caplog.at_level(logging.ERROR, logger="vibesdk.flags"):
        d.stream_once()
    assert d.store.version == 5
    assert d.store.evaluate("vibethinker", "u1").variant == "stable"
    assert "rejected a document from stream" in caplog.text


def test_failed_connects_back_off_exponentially_with_full_jitter(
    kind: str, drivers: list[Driver], tmp_path: Path
) -> None:
    """Refused stream connects wait uniformly under 2, 4, 8... s (capped), then reconnect."""
    d = _driver(drivers, kind, tmp_path, sleeps=Sleeps({STREAM: 5}))
    d.start()
    d.server.wait_for("/v1/stream", 6)
    # The sixth delay is recorded just after the sixth request: wait for it, not the request.
    d.sleeps.wait_calls(STREAM, 6)
    d.close()
    delays = d.sleeps.delays(STREAM)
    assert len(delays) >= 6
    for attempt, delay in enumerate(delays[:6], start=1):
        assert 0.0 <= delay <= min(30.0, 2.0**attempt)


def test_server_retry_field_sets_the_backoff_base(
    kind: str, drivers: list[Driver], tmp_path: Path
) -> None:
    """retry: 100 from the server makes reconnect delays scale from 0.1 s."""
    d = _driver(drivers, kind, tmp_path, sleeps=Sleeps({STREAM: 3}))
    for _ in range(4):
        d.server.stream_script.append(d.server.stream_body(b"retry: 100\n\n: ping\n\n"))
    d.start()
    d.server.wait_for("/v1/stream", 4)
    d.close()
    assert all(delay <= 0.1 for delay in d.sleeps.delays(STREAM)[:3])


def test_pushes_on_an_open_stream_apply_immediately_while_polling_continues(
    kind: str, drivers: list[Driver], tmp_path: Path
) -> None:
    """With the stream up, each pushed version is served at once; polls still run as a net."""
    d = _driver(drivers, kind, tmp_path, make_document(version=1), Sleeps({POLL: 1}))
    applied: list[int] = []
    d.store.add_listener(lambda doc: applied.append(doc.version))
    d.server.stream_script.append(d.server.stream_body(b"retry: 1000\n\n", hold=True))
    d.start()
    d.server.wait_for("/v1/flags", 2)
    d.server.wait_for("/v1/stream", 1)
    d.server.push(sse_frame(make_document(make_flag(rollout_bps=10000), version=2)))
    d.wait_for_version(2)
    assert d.store.evaluate("vibethinker", "u1").variant == "canary"
    for version in (3, 4):
        d.server.push(sse_frame(make_document(version=version)))
    d.wait_for_version(4)
    assert d.store.origin == "stream"
    d.close()
    assert applied == [1, 2, 3, 4]


def test_silent_stream_is_dropped_and_reconnected(
    kind: str, drivers: list[Driver], tmp_path: Path
) -> None:
    """A read timeout (no heartbeat in time) ends the stream; the loop connects again."""
    d = _driver(drivers, kind, tmp_path, sleeps=Sleeps({STREAM: 1}))
    d.server.stream_script.append(
        d.server.stream_body(sse_frame(make_document(version=3)), hold=True)
    )
    d.server.push(httpx.ReadTimeout("no bytes for 45 s"))
    d.start()
    second = d.server.wait_for("/v1/stream", 2)[1]
    d.close()
    assert second.headers["last-event-id"] == "3"


def test_stale_when_stream_is_down_and_polls_fail(
    kind: str, drivers: list[Driver], tmp_path: Path
) -> None:
    """A dead stream with three failing polls reports STALE while serving the last document."""
    d = _driver(drivers, kind, tmp_path)
    d.server.stream_script.append(d.server.stream_body(sse_frame(make_document(version=3))))
    d.open()
    d.stream_once()
    assert d.store.state is FlagState.READY
    d.server.poll_script.extend([lambda r: httpx.Response(503)] * 3)
    for _ in range(3):
        d.poll_once()
    assert d.store.state is FlagState.STALE
    assert d.store.version == 3
