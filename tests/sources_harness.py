"""Drive FlagSource and AsyncFlagSource through one synchronous interface, for shared test bodies.

``FakeFlagServer`` is a scriptable ``/v1/flags`` + ``/v1/stream`` behind
``httpx.MockTransport`` for the edge cases the real server cannot produce on
demand. ``Sleeps`` replaces the wait between requests: each background loop
gets an allowance of instant sleeps, after which it blocks until close, so a
test decides exactly how many requests happen.

The ``kind`` and ``drivers`` fixtures are shared by the source test modules
(import them by name); :func:`fake_driver` builds a driver of the fake server
and :func:`run_forked` runs a check in a forked child and returns its report.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import random
import select
import signal
import threading
import warnings
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from vibesdk import FlagDocument, Settings
from vibesdk._sources import AsyncFlagSource, FlagSource, FlagStore

URL = "http://flags.test"
KEY = "sdk-test-key"
END = object()

Answer = Callable[[httpx.Request], httpx.Response]


def flags_response(document: FlagDocument) -> httpx.Response:
    """A 200 answer to ``GET /v1/flags`` as docs/reference/http-api.md describes it."""
    return httpx.Response(
        200,
        content=document.model_dump_json().encode(),
        headers={"ETag": f'"{document.version}"', "Content-Type": "application/json"},
    )


def sse_frame(document: FlagDocument | str, version: int | None = None) -> bytes:
    """One ``flags`` event carrying ``document`` (or raw data text)."""
    if isinstance(document, FlagDocument):
        version = document.version if version is None else version
        data = document.model_dump_json()
    else:
        data = document
    head = f"id: {version}\n" if version is not None else ""
    return f"{head}event: flags\ndata: {data}\n\n".encode()


class FakeFlagServer:
    """Answers polls with the current document (ETag / 304) unless a scripted answer is queued."""

    def __init__(self, kind: str, document: FlagDocument | None = None) -> None:
        self.kind = kind
        self.document = document
        self.poll_script: deque[Answer] = deque()
        self.stream_script: deque[Answer] = deque()
        self.requests: list[httpx.Request] = []
        self._seen = threading.Condition()
        self.open_streams: list[queue.Queue[Any]] = []

    # -- scripting ---------------------------------------------------------

    def handler(self, request: httpx.Request) -> httpx.Response:
        with self._seen:
            self.requests.append(request)
            self._seen.notify_all()
        assert request.headers.get("authorization") == f"Bearer {KEY}"
        if request.url.path == "/v1/flags":
            if self.poll_script:
                return self.poll_script.popleft()(request)
            return self._current(request)
        if request.url.path == "/v1/stream":
            if self.stream_script:
                return self.stream_script.popleft()(request)
            return httpx.Response(503, json={"detail": "no stream scripted"})
        return httpx.Response(404)

    def _current(self, request: httpx.Request) -> httpx.Response:
        if self.document is None:
            return httpx.Response(500, json={"detail": "nothing"})
        etag = f'"{self.document.version}"'
        if request.headers.get("if-none-match") == etag:
            return httpx.Response(304, headers={"ETag": etag})
        return flags_response(self.document)

    def stream_body(self, *frames: bytes, hold: bool = False) -> Answer:
        """A stream answer writing ``frames``; with ``hold`` it stays open for :meth:`push`."""
        feed: queue.Queue[Any] = queue.Queue()
        for frame in frames:
            feed.put(frame)
        if not hold:
            feed.put(END)
        self.open_streams.append(feed)
        headers = {"Content-Type": "text/event-stream"}

        def answer(request: httpx.Request) -> httpx.Response:
            if self.kind == "sync":
                return httpx.Response(200, headers=headers, content=_sync_feed(feed))
            return httpx.Response(200, headers=headers, content=_async_feed(feed))

        return answer

    def push(self, frame: bytes | BaseException) -> None:
        """Write to the newest held stream (an exception breaks it)."""
        self.open_streams[-1].put(frame)

    def end_streams(self) -> None:
        for feed in self.open_streams:
            feed.put(END)

    # -- observing ---------------------------------------------------------

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]

    def wait_for(self, path: str, count: int, timeout: float = 20.0) -> list[httpx.Request]:
        """Block until ``count`` requests to ``path`` arrived; return them."""

        def matching() -> list[httpx.Request]:
            return [r for r in self.requests if r.url.path == path]

        with self._seen:
            if not self._seen.wait_for(lambda: len(matching()) >= count, timeout):
                raise AssertionError(f"expected {count} requests to {path}, saw {self.paths()}")
            return matching()


def _sync_feed(feed: queue.Queue[Any]) -> Iterator[bytes]:
    while True:
        item = feed.get(timeout=60)
        if item is END:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


async def _async_feed(feed: queue.Queue[Any]) -> AsyncIterator[bytes]:
    while True:
        item = await asyncio.to_thread(feed.get, True, 60)
        if item is END:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


class Sleeps:
    """Injected sleep: records (loop, seconds); past its allowance a loop blocks.

    A blocked loop resumes when the test calls :meth:`release` for it, or at close.
    """

    def __init__(self, allowance: dict[str, int] | None = None) -> None:
        self.allowance = dict(allowance or {})
        self.calls: list[tuple[str, float]] = []
        self._cond = threading.Condition()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self.closed = False

    def _try_take(self, name: str) -> bool:
        # Called with self._cond held.
        left = self.allowance.get(name, 0)
        if left > 0:
            self.allowance[name] = left - 1
            return True
        return self.closed

    def sync(self, seconds: float) -> None:
        name = threading.current_thread().name
        with self._cond:
            self.calls.append((name, seconds))
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._try_take(name), 60)

    async def async_(self, seconds: float) -> None:
        task = asyncio.current_task()
        name = task.get_name() if task is not None else "?"
        with self._cond:
            self.calls.append((name, seconds))
            self._cond.notify_all()
        while True:
            with self._cond:
                if self._try_take(name):
                    break
                wake = asyncio.Event()
                self._waiters.append((asyncio.get_running_loop(), wake))
            await wake.wait()
        await asyncio.sleep(0)

    def release(self, name: str, count: int = 1) -> None:
        """Let loop ``name`` sleep ``count`` more times without blocking."""
        with self._cond:
            self.allowance[name] = self.allowance.get(name, 0) + count
            self._wake()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._wake()

    def _wake(self) -> None:
        self._cond.notify_all()
        waiters, self._waiters = self._waiters, []
        for loop, wake in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(wake.set)

    def wait_calls(self, name: str, count: int, timeout: float = 30.0) -> None:
        """Block until loop ``name`` went to sleep ``count`` times (finished that many rounds)."""
        with self._cond:
            if not self._cond.wait_for(
                lambda: sum(n == name for n, _ in self.calls) >= count, timeout
            ):
                raise AssertionError(f"{name} slept {len(self.delays(name))} times, not {count}")

    def delays(self, name: str) -> list[float]:
        with self._cond:
            return [s for n, s in self.calls if n == name]


class Driver:
    """One synchronous face over either flag source. ``kind`` is ``sync`` or ``async``."""

    def __init__(
        self,
        kind: str,
        settings: Settings,
        server: FakeFlagServer | None,
        sleeps: Sleeps | None = None,
        transport: Any = None,
        **kwargs: Any,
    ) -> None:
        """``server=None`` talks to the real server in ``settings`` (through ``transport``)."""
        self.kind = kind
        self.server = server
        self.sleeps = sleeps or Sleeps()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        if server is not None:
            transport = httpx.MockTransport(server.handler)
        rng = random.Random(7)
        if kind == "sync":
            self.source: Any = FlagSource(
                settings, transport=transport, sleep=self.sleeps.sync, rng=rng, **kwargs
            )
        else:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
            self._thread.start()
            self.source = AsyncFlagSource(
                settings, transport=transport, sleep=self.sleeps.async_, rng=rng, **kwargs
            )

        self._applied = threading.Condition()
        self.source.store.add_listener(self._on_applied)

    def _on_applied(self, document: FlagDocument) -> None:
        with self._applied:
            self._applied.notify_all()

    def wait_for_version(self, version: int, timeout: float = 20.0) -> None:
        """Block until the store serves ``version`` or newer."""

        def reached() -> bool:
            served = self.store.version
            return served is not None and served >= version

        with self._applied:
            if not self._applied.wait_for(reached, timeout):
                raise AssertionError(f"version {version} never arrived; at {self.store.version}")

    @property
    def store(self) -> FlagStore:
        store: FlagStore = self.source.store
        return store

    def _run(self, value: Any) -> Any:
        if self._loop is None:
            return value
        coro: Coroutine[Any, Any, Any] = value
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def start(self) -> None:
        self._run(self.source.start())

    def open(self) -> None:
        """Load bootstrap/cache and open the client, with no background loops."""
        self._run(self.source._open())

    def poll_once(self) -> None:
        self._run(self.source.poll_once())

    def stream_once(self) -> bool:
        return bool(self._run(self.source.stream_once()))

    def wait_until_ready(self, timeout: float | None) -> bool:
        return bool(self._run(self.source.wait_until_ready(timeout)))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.sleeps.close()
        if self.server is not None:
            self.server.end_streams()
        if self._loop is None:
            self.source.close()
            return
        self._run(self.source.aclose())
        # As asyncio.run() does before closing a loop (see client_harness.Driver.dispose).
        self._run(self._loop.shutdown_asyncgens())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


class RecordingTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """httpx's real network transports (sync and async), noting (path, status) of each answer."""

    def __init__(self) -> None:
        self.answers: list[tuple[str, int]] = []
        self.requests: list[httpx.Request] = []
        self._sync = httpx.HTTPTransport()
        self._async = httpx.AsyncHTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = self._sync.handle_request(request)
        self.answers.append((request.url.path, response.status_code))
        return response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = await self._async.handle_async_request(request)
        self.answers.append((request.url.path, response.status_code))
        return response

    def close(self) -> None:
        self._sync.close()

    async def aclose(self) -> None:
        await self._async.aclose()


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a source of the fake server, caching under ``tmp_path``."""
    values: dict[str, Any] = {
        "server_url": URL,
        "sdk_key": KEY,
        "cache_dir": tmp_path / "cache",
        "poll_interval_s": 30.0,
        "streaming": False,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    """Each test body runs against FlagSource (threads) and AsyncFlagSource (asyncio)."""
    return str(request.param)


@pytest.fixture
def drivers() -> Iterator[list[Driver]]:
    """The drivers a test made; each is closed when the test ends."""
    made: list[Driver] = []
    yield made
    for driver in made:
        driver.close()


def fake_driver(
    drivers: list[Driver],
    kind: str,
    tmp_path: Path,
    document: FlagDocument | None = None,
    sleeps: Sleeps | None = None,
    **overrides: Any,
) -> Driver:
    """A ``kind`` driver of a fresh FakeFlagServer serving ``document``; ``drivers`` closes it."""
    server = FakeFlagServer(kind, document)
    driver = Driver(kind, settings(tmp_path, **overrides), server, sleeps)
    drivers.append(driver)
    return driver


def run_forked(
    child: Callable[[dict[str, Any]], None], *, alarm_s: int = 30, wait_s: float = 60
) -> tuple[dict[str, Any], int]:
    """Run ``child(report)`` in a forked child; the JSON report it filled and its wait status.

    The child is killed by SIGALRM after ``alarm_s``; an exception there is
    reported as ``report["error"]``. Asserts the report arrives within ``wait_s``.
    """
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a process with threads: that is the point here.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        report: dict[str, Any] = {}
        try:
            signal.alarm(alarm_s)
            child(report)
        except BaseException as exc:
            report["error"] = repr(exc)
        os.write(write_end, json.dumps(report).encode())
        os._exit(0)
    os.close(write_end)
    status = -1
    try:
        ready, _, _ = select.select([read_end], [], [], wait_s)
        assert ready, "the forked child did not report"
        data = b""
        while chunk := os.read(read_end, 65536):
            data += chunk
        result: dict[str, Any] = json.loads(data or b"{}")
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    return result, status
