"""The flag source for synchronous apps: two named daemon threads.

``vibesdk-flags-poll`` polls ``GET /v1/flags`` (ETag, ±10% jitter);
``vibesdk-flags-stream`` holds ``GET /v1/stream`` open when streaming is on and
reconnects with backoff. Both sleep on one ``threading.Event`` so ``close()``
returns at once; a request in flight, even one still waiting for its response
headers, is cut by shutting its socket down (:mod:`vibesdk._watch`). All
decisions are in :mod:`.core`.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from vibesdk._settings import Settings
from vibesdk._sse import SSEEvent, SSEParser
from vibesdk._watch import Watch, current, sync_transport

from . import fork
from .core import DeliveryCore, make_cache
from .policy import STREAM_SILENCE_S, poll_delay
from .store import FlagStore

__all__ = ["FlagSource"]

logger = logging.getLogger("vibesdk.flags")


class FlagSource:
    """Keeps :attr:`store` up to date from bootstrap, disk cache and the flag server.

    ``transport`` replaces httpx's network transport (tests pass
    ``httpx.MockTransport``); ``clock`` is a monotonic clock; ``sleep(seconds)``
    replaces the wait between requests (by default an ``Event.wait`` that
    ``close()`` interrupts); ``rng`` drives the jitter.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
        stream_silence_s: float = STREAM_SILENCE_S,
    ) -> None:
        self.settings = settings
        self.store = FlagStore()
        self._core = DeliveryCore(settings, self.store, cache=make_cache(settings), clock=clock)
        self._transport = transport
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 (jitter, not secrets)
        self._silence_s = stream_silence_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watches: list[Watch] = []
        self._client: httpx.Client | None = None
        self._response: httpx.Response | None = None
        self._started = False
        self._closed = False
        fork.track(self)

    @property
    def core(self) -> DeliveryCore:
        """The delivery state (failures, ETag, stream status); read-only use."""
        return self._core

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Serve bootstrap / disk cache now and start fetching in the background. Never blocks."""
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True
            self._core.start_local()
            self._spawn(loops=True)

    def _open(self) -> None:
        """Load bootstrap / cache and open the HTTP client, without background threads.

        Tests drive :meth:`poll_once` and :meth:`stream_once` by hand after it.
        """
        with self._lock:
            self._started = True
            self._core.start_local()
            self._spawn(loops=False)

    def wait_until_ready(self, timeout: float | None = None) -> bool:
        """Wait until READY (or OFFLINE with a document); ``False`` on timeout. Never raises."""
        self._restart_if_forked()
        return self.store.wait_until_ready(timeout)

    def close(self) -> None:
        """Stop the background threads and close connections; returns promptly."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
            for watch in self._watches:
                watch.cut()
            self._interrupt_stream()
            threads, self._threads = self._threads, []
        current = threading.current_thread()
        for thread in threads:
            if thread is not current:
                # Both threads wake at once from the stop event, and a request in
                # flight was cut above; the bound is for a thread busy elsewhere.
                thread.join(timeout=0.5)
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def __enter__(self) -> FlagSource:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- one request each (also what tests drive directly) -----------------

    def poll_once(self) -> None:
        """Send one ``GET /v1/flags`` and apply its answer. Never raises."""
        client, url = self._client, self._core.flags_url
        if client is None or url is None:
            return
        try:
            response = client.get(url, headers=self._core.poll_headers())
        except Exception as exc:  # any transport failure is just a failed poll
            if not self._stop.is_set():  # close() cut it: not a failure
                self._core.on_poll_failure(exc)
            return
        save = self._core.on_poll_response(response.status_code, response.headers, response.content)
        if save is not None:
            self._save(save)

    def stream_once(self) -> bool:
        """Hold one ``GET /v1/stream`` until it ends; ``True`` if it delivered anything.

        Never raises. A stream silent for ``stream_silence_s`` (heartbeats
        included) is dead and is dropped.
        """
        client, url = self._client, self._core.stream_url
        if client is None or url is None:
            return False
        parser = SSEParser()
        lively = False
        reason = "the server closed it"
        timeout = httpx.Timeout(self.settings.fetch_timeout_s, read=self._silence_s)
        try:
            with client.stream(
                "GET", url, headers=self._core.stream_headers(), timeout=timeout
            ) as response:
                if not self._core.on_stream_open(
                    response.status_code, response.headers.get("content-type")
                ):
                    return False
                self._response = response
                for chunk in response.iter_bytes():
                    if self._stop.is_set():
                        break
                    for event in parser.feed(chunk):
                        lively = True
                        self._apply_event(event)
                    lively = lively or parser.comments > 0
                else:
                    for event in parser.end():
                        self._apply_event(event)
        except httpx.ReadTimeout:
            reason = self._core.on_stream_silent(self._silence_s)
        except Exception as exc:
            reason = self._core.on_stream_error(exc, closing=self._stop.is_set())
        finally:
            self._response = None
            self._core.on_stream_end(parser.retry_ms, reason, closed=self._stop.is_set())
        return lively

    # -- internals ---------------------------------------------------------

    def _apply_event(self, event: SSEEvent) -> None:
        save = self._core.on_stream_event(event)
        if save is not None:
            self._save(save)

    def _save(self, document: Any) -> None:
        cache = self._core.cache
        if cache is not None:
            cache.save(document, self._core.etag)

    def _spawn(self, *, loops: bool = True) -> None:
        if self._core.flags_url is None:
            return
        self._stop = threading.Event()
        transport = self._transport if self._transport is not None else sync_transport()
        self._client = httpx.Client(transport=transport, **self._core.http_options())
        if not loops:
            return
        targets: list[tuple[str, Callable[[], None]]] = [("vibesdk-flags-poll", self._poll_loop)]
        if self.settings.streaming:
            targets.append(("vibesdk-flags-stream", self._stream_loop))
        for name, target in targets:
            watch = Watch()
            self._watches.append(watch)
            thread = threading.Thread(target=_watched, args=(watch, target), name=name, daemon=True)
            self._threads.append(thread)
            thread.start()

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds``; ``True`` when the source was closed meanwhile."""
        if self._sleep is None:
            return self._stop.wait(seconds)
        if self._stop.is_set():
            return True
        self._sleep(seconds)
        return self._stop.is_set()

    def _poll_loop(self) -> None:
        interval = self.settings.poll_interval_s
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # a bug here must not end flag delivery for good
                logger.exception("vibesdk flags: unexpected error while polling")
            if self._wait(poll_delay(interval, self._rng)):
                return

    def _stream_loop(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                lively = self.stream_once()
            except Exception:  # a bug here must not end flag delivery for good
                logger.exception("vibesdk flags: unexpected error while streaming")
                lively = False
            attempt = 0 if lively else attempt + 1
            if self._wait(self._core.reconnect_delay(attempt, self._rng)):
                return

    def _interrupt_stream(self) -> None:
        # Closing a socket does not wake a thread blocked reading it; shutting it down does.
        response = self._response
        if response is None:
            return
        with contextlib.suppress(Exception):
            stream = response.extensions.get("network_stream")
            sock = None if stream is None else stream.get_extra_info("socket")
            if isinstance(sock, socket.socket):
                sock.shutdown(socket.SHUT_RDWR)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self.store._after_fork_in_child()
        self._core.after_fork_in_child()
        if self._client is not None:
            fork.abandon(self._client)
        self._client = None
        self._response = None
        self._threads = []
        self._watches = []
        self._stop = threading.Event()
        if self._started and not self._closed:
            self._needs_restart = True
            self.store.run_before_next_evaluate(self._restart_if_forked)

    _needs_restart = False

    def _restart_if_forked(self) -> None:
        if not self._needs_restart:
            return
        with self._lock:
            if not self._needs_restart or self._closed:
                return
            self._needs_restart = False
            logger.info("vibesdk flags: restarting flag delivery in forked process")
            self._spawn()


def _watched(watch: Watch, target: Callable[[], None]) -> None:
    # The thread's requests can be cut by close(): see vibesdk._watch.
    current.set(watch)
    target()
