"""The flag source for asyncio apps: two tasks on the app's event loop.

The twin of :mod:`.sync_driver`, differing only in ``await``: a poll task and,
when streaming is on, a stream task; ``aclose()`` cancels both, so it returns
at once. All decisions are in :mod:`.core`.

The tasks, the HTTP client's pooled connections and the change event belong to
one event loop. When that loop ends while the source is open (``asyncio.run()``
cancels every task before it closes its loop), the poll task closes the
connections while the loop still runs, and delivery restarts lazily in the next
loop that uses the source, as after ``fork``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import httpx

from vibesdk._settings import Settings
from vibesdk._sse import SSEEvent, SSEParser

from . import fork
from .core import DeliveryCore, make_cache
from .policy import STREAM_SILENCE_S, poll_delay
from .store import FlagStore

__all__ = ["AsyncFlagSource"]

logger = logging.getLogger("vibesdk.flags")


class AsyncFlagSource:
    """Keeps :attr:`store` up to date from bootstrap, disk cache and the flag server.

    Same arguments as :class:`FlagSource`, with an ``httpx.AsyncBaseTransport``
    and an async ``sleep`` (default ``asyncio.sleep``).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        rng: random.Random | None = None,
        stream_silence_s: float = STREAM_SILENCE_S,
    ) -> None:
        self.settings = settings
        self.store = FlagStore()
        self._changed: asyncio.Event | None = None
        self._core = DeliveryCore(
            settings,
            self.store,
            cache=make_cache(settings),
            clock=clock,
            on_change=self._notify,
        )
        self._transport = transport
        self._sleep = sleep if sleep is not None else asyncio.sleep
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 (jitter, not secrets)
        self._silence_s = stream_silence_s
        self._tasks: list[asyncio.Task[None]] = []
        self._saving: asyncio.Future[bool] | None = None
        self._client: httpx.AsyncClient | None = None
        self._started = False
        self._closed = False
        self._needs_restart = False
        fork.track(self)

    @property
    def core(self) -> DeliveryCore:
        """The delivery state (failures, ETag, stream status); read-only use."""
        return self._core

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Serve bootstrap / disk cache now and start fetching in background tasks."""
        if self._started or self._closed:
            return
        self._started = True
        self._core.start_local()
        self._spawn(loops=True)

    async def _open(self) -> None:
        """Load bootstrap / cache and open the HTTP client, without background tasks."""
        self._started = True
        self._core.start_local()
        self._spawn(loops=False)

    async def wait_until_ready(self, timeout: float | None = None) -> bool:
        """Wait until READY (or OFFLINE with a document); ``False`` on timeout. Never raises."""
        self._restart_if_forked()
        if self.store.is_ready():
            return True
        try:
            await asyncio.wait_for(self._until_ready(), timeout)
        except asyncio.TimeoutError:
            return False
        except Exception:
            logger.debug("vibesdk flags: wait_until_ready failed", exc_info=True)
            return False
        return True

    async def _until_ready(self) -> None:
        changed = self._event()
        while not self.store.is_ready():
            changed.clear()
            await changed.wait()

    async def aclose(self) -> None:
        """Cancel the background tasks and close connections; returns promptly."""
        if self._closed:
            return
        self._closed = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        saving, self._saving = self._saving, None
        if saving is not None:
            # A cache write in flight finishes (it is one small file), so the next
            # process starts from the newest document.
            await asyncio.wait([saving], timeout=5.0)
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def __aenter__(self) -> AsyncFlagSource:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- one request each (also what tests drive directly) -----------------

    async def poll_once(self) -> None:
        """Send one ``GET /v1/flags`` and apply its answer. Never raises (but can be cancelled)."""
        client, url = self._client, self._core.flags_url
        if client is None or url is None:
            return
        try:
            response = await client.get(url, headers=self._core.poll_headers())
        except Exception as exc:
            self._core.on_poll_failure(exc)
            return
        save = self._core.on_poll_response(response.status_code, response.headers, response.content)
        if save is not None:
            await self._save(save)

    async def stream_once(self) -> bool:
        """Hold one ``GET /v1/stream`` until it ends; ``True`` if it delivered anything."""
        client, url = self._client, self._core.stream_url
        if client is None or url is None:
            return False
        parser = SSEParser()
        lively = False
        reason = "the server closed it"
        timeout = httpx.Timeout(self.settings.fetch_timeout_s, read=self._silence_s)
        try:
            async with client.stream(
                "GET", url, headers=self._core.stream_headers(), timeout=timeout
            ) as response:
                if not self._core.on_stream_open(
                    response.status_code, response.headers.get("content-type")
                ):
                    return False
                async for chunk in response.aiter_bytes():
                    for event in parser.feed(chunk):
                        lively = True
                        await self._apply_event(event)
                    lively = lively or parser.comments > 0
                for event in parser.end():
                    await self._apply_event(event)
        except httpx.ReadTimeout:
            reason = self._core.on_stream_silent(self._silence_s)
        except Exception as exc:
            reason = self._core.on_stream_error(exc, closing=False)
        finally:
            self._core.on_stream_end(parser.retry_ms, reason, closed=self._closed)
        return lively

    # -- internals ---------------------------------------------------------

    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def _apply_event(self, event: SSEEvent) -> None:
        save = self._core.on_stream_event(event)
        if save is not None:
            await self._save(save)

    async def _save(self, document: Any) -> None:
        cache = self._core.cache
        if cache is not None:
            # fsync can take milliseconds: keep it off the event loop. Shielded so
            # that aclose() cancelling the loop still lets the write finish.
            saving = asyncio.ensure_future(asyncio.to_thread(cache.save, document, self._core.etag))
            self._saving = saving
            await asyncio.shield(saving)

    def _spawn(self, *, loops: bool = True) -> None:
        if self._core.flags_url is None:
            return
        self._client = httpx.AsyncClient(transport=self._transport, **self._core.http_options())
        if not loops:
            return
        targets: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = [
            ("vibesdk-flags-poll", self._poll_loop)
        ]
        if self.settings.streaming:
            targets.append(("vibesdk-flags-stream", self._stream_loop))
        for name, target in targets:
            self._tasks.append(asyncio.create_task(target(), name=name))

    async def _poll_loop(self) -> None:
        interval = self.settings.poll_interval_s
        try:
            while True:
                try:
                    await self.poll_once()
                except Exception:  # a bug here must not end flag delivery for good
                    logger.exception("vibesdk flags: unexpected error while polling")
                await self._sleep(poll_delay(interval, self._rng))
        finally:
            if not self._closed:
                await self._loop_ended()

    async def _loop_ended(self) -> None:
        # Cancelled while open: the event loop is ending (asyncio.run() cancels every
        # task before it closes the loop). Close this loop's connections now, while
        # the loop still runs, and restart in the next loop that uses the source.
        tasks, self._tasks = self._tasks, []
        current = asyncio.current_task()
        for task in tasks:
            if task is not current:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()
        self._saving = None
        self._changed = None
        if self._started:
            self._needs_restart = True
            self.store.run_before_next_evaluate(self._restart_if_forked)

    async def _stream_loop(self) -> None:
        attempt = 0
        while True:
            try:
                lively = await self.stream_once()
            except Exception:  # a bug here must not end flag delivery for good
                logger.exception("vibesdk flags: unexpected error while streaming")
                lively = False
            attempt = 0 if lively else attempt + 1
            await self._sleep(self._core.reconnect_delay(attempt, self._rng))

    def _after_fork_in_child(self) -> None:
        # The parent's tasks and loop are not ours to touch; forget them.
        self.store._after_fork_in_child()
        self._core.after_fork_in_child()
        if self._client is not None:
            fork.abandon(self._client)
        self._client = None
        self._tasks = []
        self._saving = None
        self._changed = None
        if self._started and not self._closed:
            self._needs_restart = True
            self.store.run_before_next_evaluate(self._restart_if_forked)

    def _restart_if_forked(self) -> None:
        if not self._needs_restart or self._closed:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            # Not inside the child's event loop yet: retry on the next evaluate.
            self.store.run_before_next_evaluate(self._restart_if_forked)
            return
        self._needs_restart = False
        logger.info("vibesdk flags: restarting flag delivery (forked process or new event loop)")
        self._spawn()
