"""Flag sources as background workers: named daemon threads, prompt close, fork, metrics."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.sources_harness import (
    Driver,
    FakeFlagServer,
    flags_response,
    run_forked,
    settings,
    sse_frame,
)
from vibesdk import ConfigError
from vibesdk._sources import AsyncFlagSource, FlagSource, FlagState
from vibesdk.testing import SpanCapture, make_document, make_flag


def _flag_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("vibesdk-flags-")]


def test_start_runs_named_daemon_threads_and_close_stops_them(tmp_path: Path) -> None:
    """start() runs vibesdk-flags-poll and -stream as daemons; close() ends both promptly."""
    server = FakeFlagServer("sync", make_document(version=1))
    server.stream_script.append(server.stream_body(b"retry: 1000\n\n", hold=True))
    source = FlagSource(
        settings(tmp_path, streaming=True), transport=httpx.MockTransport(server.handler)
    )
    source.start()
    assert source.wait_until_ready(20)
    server.wait_for("/v1/stream", 1)
    threads = _flag_threads()
    assert sorted(t.name for t in threads) == ["vibesdk-flags-poll", "vibesdk-flags-stream"]
    assert all(t.daemon for t in threads)
    source.close()
    server.push(b": ping\n\n")  # a mock stream cannot be shut down; the next byte wakes it
    for thread in threads:
        thread.join(20)
        assert not thread.is_alive()
    source.close()  # idempotent


def test_start_does_not_block_even_when_the_server_hangs(tmp_path: Path) -> None:
    """start() returns while the first poll is still waiting on the server."""
    entered, release = threading.Event(), threading.Event()

    def hang(request: httpx.Request) -> httpx.Response:
        entered.set()
        release.wait(20)
        return flags_response(make_document(version=1))

    source = FlagSource(settings(tmp_path), transport=httpx.MockTransport(hang))
    source.start()
    assert entered.wait(20)
    assert source.store.state is FlagState.NOT_READY
    assert not source.wait_until_ready(0)
    release.set()
    assert source.wait_until_ready(20)
    source.close()


def test_invalid_bootstrap_file_is_a_config_error_at_construction(tmp_path: Path) -> None:
    """A bootstrap file that is not a valid document fails fast, naming the file and field."""
    boot = tmp_path / "flags.json"
    boot.write_text('{"version": 1, "flags": {"x": {"key": "x", "rollout_bps": -1}}}')
    with pytest.raises(ConfigError, match=r"flags\.json.*rollout_bps"):
        FlagSource(settings(tmp_path, bootstrap=boot))


def test_rejected_documents_are_counted_on_the_hosts_meter(tmp_path: Path) -> None:
    """Each distinct invalid document adds 1 to vibesdk.flags.rejected, labelled by origin."""
    with SpanCapture() as capture:
        d = Driver("sync", settings(tmp_path, streaming=True), FakeFlagServer("sync"))
        try:
            d.server.poll_script.append(lambda r: httpx.Response(200, content=b'{"version": -1}'))
            d.server.stream_script.append(
                d.server.stream_body(sse_frame('{"version": 2, "flags": 7}', 2))
            )
            d.open()
            d.poll_once()
            d.stream_once()
        finally:
            d.close()
        for origin in ("poll", "stream"):
            assert (
                capture.metric_total("vibesdk.flags.rejected", {"vibesdk.flags.origin": origin})
                == 1
            )
        assert capture.metric_total("vibesdk.flags.rejected") == 2


def test_forked_child_keeps_the_document_and_restarts_delivery_on_first_use(
    tmp_path: Path,
) -> None:
    """After os.fork() the child serves the parent's document, then fetches with fresh threads."""
    server = FakeFlagServer("sync", make_document(make_flag(rollout_bps=0), version=1))
    source = FlagSource(settings(tmp_path), transport=httpx.MockTransport(server.handler))
    source.start()
    assert source.wait_until_ready(20)
    parent_client = source._client

    def child(report: dict[str, Any]) -> None:  # pragma: no cover - runs in the child
        report["version_after_fork"] = source.store.version
        report["threads_after_fork"] = [t.name for t in _flag_threads()]
        arrived = threading.Event()
        source.store.add_listener(lambda d: arrived.set())
        server.document = make_document(make_flag(rollout_bps=10000), version=2)
        source.store.evaluate("vibethinker", "u1")  # first use: delivery restarts
        report["arrived"] = arrived.wait(20)
        report["variant"] = source.store.evaluate("vibethinker", "u1").variant
        report["threads"] = sorted(t.name for t in _flag_threads())
        report["new_client"] = source._client is not None and source._client is not parent_client
        source.close()

    report, _ = run_forked(child, alarm_s=30, wait_s=60)
    assert report == {
        "version_after_fork": 1,
        "threads_after_fork": [],
        "arrived": True,
        "variant": "canary",
        "threads": ["vibesdk-flags-poll"],
        "new_client": True,
    }
    # The parent is untouched: same document, its own thread still running.
    assert source.store.version == 1
    assert [t.name for t in _flag_threads()] == ["vibesdk-flags-poll"]
    source.close()


def test_forked_child_restarts_the_async_source_in_its_own_event_loop(tmp_path: Path) -> None:
    """An AsyncFlagSource started before fork resumes on the child's loop at first evaluate."""
    server = FakeFlagServer("async", make_document(make_flag(rollout_bps=0), version=1))
    source = AsyncFlagSource(settings(tmp_path), transport=httpx.MockTransport(server.handler))
    loop = asyncio.new_event_loop()
    loop.run_until_complete(source.start())
    assert loop.run_until_complete(source.wait_until_ready(20))

    def child(report: dict[str, Any]) -> None:  # pragma: no cover - runs in the child
        async def main() -> None:
            arrived = asyncio.Event()
            source.store.add_listener(lambda d: arrived.set())
            server.document = make_document(make_flag(rollout_bps=10000), version=2)
            report["before"] = source.store.evaluate("vibethinker", "u1").flag_version
            await asyncio.wait_for(arrived.wait(), 20)
            report["after"] = source.store.evaluate("vibethinker", "u1").variant
            await source.aclose()

        asyncio.run(main())

    report, _ = run_forked(child, alarm_s=30, wait_s=60)
    assert report == {"before": 1, "after": "canary"}
    loop.run_until_complete(source.aclose())
    loop.close()


def test_close_before_start_and_start_after_close_do_nothing(tmp_path: Path) -> None:
    """close() on a never-started source is fine, and a closed source does not start."""
    source = FlagSource(
        settings(tmp_path), transport=httpx.MockTransport(lambda r: httpx.Response(500))
    )
    source.close()
    source.start()
    assert _flag_threads() == []
    assert source.store.state is FlagState.NOT_READY
