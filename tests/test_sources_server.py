"""Flag delivery against the real flag server on loopback (vibesdk_server's pytest plugin).

Each test gets a fresh environment and SDK key on one real ``vibe-server``
process; changes are published through the admin API, exactly as ops would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vibesdk_server.testing import FlagServer, FlagServerProcess

from tests import sources_harness
from tests.sources_harness import Driver, RecordingTransport, Sleeps, run_forked
from vibesdk import Reason, Settings
from vibesdk._sources import FlagSource, FlagState
from vibesdk.testing import make_flag

# The shared fixtures: each test body runs on both drivers; drivers are closed after it.
kind = sources_harness.kind
drivers = sources_harness.drivers

POLL = "vibesdk-flags-poll"
STREAM = "vibesdk-flags-stream"


def _settings(server: FlagServer, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "server_url": server.url,
        "sdk_key": server.sdk_key,
        "cache_dir": tmp_path / "cache",
        "poll_interval_s": 3600.0,
        "streaming": True,
    }
    values.update(overrides)
    return Settings(**values)


def _driver(
    drivers: list[Driver],
    kind: str,
    settings: Settings,
    sleeps: Sleeps | None = None,
    transport: RecordingTransport | None = None,
) -> Driver:
    driver = Driver(kind, settings, None, sleeps, transport)
    drivers.append(driver)
    return driver


def test_a_rollout_published_on_the_server_arrives_by_sse(
    kind: str, drivers: list[Driver], flag_server: FlagServer, tmp_path: Path
) -> None:
    """POST .../flags/vibethinker/rollout reaches a streaming source with no further poll."""
    flag_server.apply(make_flag(rollout_bps=0))
    d = _driver(drivers, kind, _settings(flag_server, tmp_path))
    d.start()
    assert d.wait_until_ready(30)
    version = d.store.version
    assert version is not None
    assert d.store.evaluate("vibethinker", "u42").variant == "stable"
    change = flag_server.rollout("vibethinker", 10000)
    d.wait_for_version(change["version"])
    assert d.store.origin == "stream"
    assert d.store.state is FlagState.READY
    assert d.store.evaluate("vibethinker", "u42").variant == "canary"
    assert len(d.sleeps.delays(POLL)) == 1  # one poll at start, none since


def test_polling_alone_picks_up_a_change_and_revalidates_with_304(
    kind: str, drivers: list[Driver], flag_server: FlagServer, tmp_path: Path
) -> None:
    """With streaming off, the next poll serves the new version; a poll after it is a 304."""
    flag_server.apply(make_flag(rollout_bps=0))
    transport = RecordingTransport()
    d = _driver(
        drivers, kind, _settings(flag_server, tmp_path, streaming=False), transport=transport
    )
    d.start()
    assert d.wait_until_ready(30)
    change = flag_server.set_enabled("vibethinker", False)
    d.sleeps.release(POLL)
    d.wait_for_version(change["version"])
    assert d.store.origin == "poll"
    assert d.store.evaluate("vibethinker", "u42").reason == Reason.DISABLED
    applied: list[int] = []
    d.store.add_listener(lambda doc: applied.append(doc.version))
    d.sleeps.release(POLL)
    d.sleeps.wait_calls(POLL, 3)
    assert applied == []
    assert d.store.state is FlagState.READY
    assert transport.answers == [("/v1/flags", 200), ("/v1/flags", 200), ("/v1/flags", 304)]


def test_a_restart_serves_the_disk_cache_then_confirms_it_with_the_server(
    kind: str, drivers: list[Driver], flag_server: FlagServer, tmp_path: Path
) -> None:
    """A second process starts from the cached document (STALE), then READY without a download."""
    flag_server.apply(make_flag(rollout_bps=2500))
    first = _driver(drivers, kind, _settings(flag_server, tmp_path, streaming=False))
    first.start()
    assert first.wait_until_ready(30)
    first.close()
    second = _driver(drivers, kind, _settings(flag_server, tmp_path, streaming=False))
    second.open()
    assert (second.store.origin, second.store.state) == ("cache", FlagState.STALE)
    second.poll_once()
    assert (second.store.origin, second.store.state) == ("cache", FlagState.READY)
    assert second.store.version == first.store.version


def test_a_stopped_server_turns_the_source_stale_and_it_keeps_serving(
    drivers: list[Driver],
    flag_server_factory: Callable[..., FlagServerProcess],
    tmp_path: Path,
) -> None:
    """Three failed polls after the server died: STALE, same document, still evaluating."""
    process = flag_server_factory()
    process.apply(make_flag(rollout_bps=10000))
    d = _driver(drivers, "sync", _settings(process, tmp_path, streaming=False))
    d.open()
    d.poll_once()
    assert d.store.state is FlagState.READY
    process.stop()
    for _ in range(3):
        d.poll_once()
    assert d.store.state is FlagState.STALE
    assert d.store.evaluate("vibethinker", "u42").variant == "canary"


def test_close_wakes_a_stream_blocked_on_a_real_socket(
    flag_server: FlagServer, tmp_path: Path
) -> None:
    """close() shuts the stream's socket down, so its thread ends before the next heartbeat."""
    flag_server.apply(make_flag())
    source = FlagSource(_settings(flag_server, tmp_path))
    source.start()
    assert source.wait_until_ready(30)
    flag_server.rollout("vibethinker", 5000)
    stream = next(t for t in threading.enumerate() if t.name == STREAM)
    while not source.core.stream_up:
        threading.Event().wait(0.01)
    source.close()
    stream.join(10)  # the session server's heartbeat comes every 15 s
    assert not stream.is_alive()


def test_forked_worker_gets_pushes_on_its_own_stream(
    flag_server: FlagServer, tmp_path: Path
) -> None:
    """A source started before fork streams again in the child and sees the next rollout."""
    flag_server.apply(make_flag(rollout_bps=0))
    source = FlagSource(_settings(flag_server, tmp_path))
    source.start()
    assert source.wait_until_ready(30)

    def child(report: dict[str, Any]) -> None:  # pragma: no cover - runs in the child
        report["before"] = source.store.evaluate("vibethinker", "u42").variant
        arrived = threading.Event()
        source.store.add_listener(lambda doc: arrived.set())
        assert source.wait_until_ready(30)
        while not source.core.stream_up:
            threading.Event().wait(0.01)
        flag_server.rollout("vibethinker", 10000)
        report["arrived"] = arrived.wait(30)
        report["origin"] = source.store.origin
        report["after"] = source.store.evaluate("vibethinker", "u42").variant
        source.close()

    report, _ = run_forked(child, alarm_s=60, wait_s=90)
    assert report == {"before": "stable", "arrived": True, "origin": "stream", "after": "canary"}
    source.close()


def test_a_silent_real_stream_is_dropped_and_resumed_with_last_event_id(
    kind: str, flag_server: FlagServer, tmp_path: Path
) -> None:
    """No byte within stream_silence_s on a real socket: reconnect, resuming at our version."""
    flag_server.apply(make_flag())
    transport = RecordingTransport()
    d = Driver(
        kind,
        _settings(flag_server, tmp_path),
        None,
        Sleeps({STREAM: 1}),
        transport,
        stream_silence_s=0.5,  # the server's heartbeat is 15 s away
    )
    try:
        d.start()
        assert d.wait_until_ready(30)
        d.sleeps.wait_calls(STREAM, 2)
    finally:
        d.close()
    streams = [a for a in transport.answers if a[0] == "/v1/stream"]
    assert streams[:2] == [("/v1/stream", 200), ("/v1/stream", 200)]
    second = [r for r in transport.requests if r.url.path == "/v1/stream"][1]
    assert second.headers["last-event-id"] == str(d.store.version)
