"""Sending user feedback and reports to the flag server in the background.

``client.feedback(...)`` and ``client.report(...)`` must never slow the request
path: each puts its payload on one bounded queue and returns. A daemon thread
(sync client) or an asyncio task (async client) POSTs each one to
``/v1/feedback`` or ``/v1/report``. When the queue is full
the feedback is dropped, counted, and logged (the first time, then every
100th). A failed POST is counted and logged at debug level; feedback is not
worth retrying at the cost of the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from typing import Any, TypeVar

import httpx

from vibesdk._settings import Settings

__all__ = ["FEEDBACK", "REPORT", "AsyncFeedbackSender", "FeedbackSender"]

FEEDBACK = "/v1/feedback"
REPORT = "/v1/report"

logger = logging.getLogger("vibesdk.feedback")

_STOP = object()
_POST_TIMEOUT_S = 5.0
_CLOSE_WAIT_S = 1.0

# typing.Self is Python 3.11+; a bound TypeVar says the same on 3.10.
_Sender = TypeVar("_Sender", bound="_SenderCore")


class _SenderCore:
    """What both senders share: the target, the queue discipline, the counts and their logs.

    No I/O: a subclass provides ``_worker_queue()`` (start its thread or task
    if needed; the queue it reads) and the loop that POSTs.
    """

    def __init__(
        self, server_url: str | None, sdk_key: str | None, *, maxsize: int, transport: Any
    ) -> None:
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._url = server_url
        self._headers = {} if sdk_key is None else {"Authorization": f"Bearer {sdk_key}"}
        self._maxsize = maxsize
        self._transport = transport
        self._closed = False

    @classmethod
    def for_settings(cls: type[_Sender], settings: Settings, *, transport: Any = None) -> _Sender:
        """The sender a client built with ``settings`` uses."""
        key = settings.sdk_key
        return cls(
            settings.server_url,
            None if key is None else key.get_secret_value(),
            maxsize=settings.feedback_queue_size,
            transport=transport,
        )

    @property
    def enabled(self) -> bool:
        """Whether feedback goes anywhere (a flag server is configured)."""
        return self._url is not None

    def submit(self, payload: dict[str, Any], route: str = FEEDBACK) -> bool:
        """Queue ``payload`` for ``route``; ``False`` if it was dropped (full, closed or no server).

        The async sender must be called from its event loop.
        """
        if self._url is None or self._closed:
            return False
        try:
            self._worker_queue().put_nowait((self._url + route, payload))
        except (queue.Full, asyncio.QueueFull):
            self.drop()
            return False
        return True

    def _worker_queue(self) -> queue.Queue[Any] | asyncio.Queue[Any]:
        raise NotImplementedError

    def drop(self) -> None:
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 100 == 0:
            logger.warning(
                "vibesdk: feedback queue is full; dropped %d feedback or report item(s) so far",
                self.dropped,
            )

    def result(self, response: httpx.Response | None, exc: BaseException | None) -> None:
        if exc is None and response is not None and response.status_code < 300:
            self.sent += 1
            return
        self.failed += 1
        logger.debug(
            "vibesdk: feedback was not accepted: %s",
            exc if exc is not None else (response.status_code if response else None),
        )


class FeedbackSender(_SenderCore):
    """Bounded queue + one named daemon thread, started on first use (and again after fork)."""

    def __init__(
        self,
        server_url: str | None,
        sdk_key: str | None,
        *,
        maxsize: int,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(server_url, sdk_key, maxsize=maxsize, transport=transport)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _worker_queue(self) -> queue.Queue[Any]:
        if self._thread is None or not self._thread.is_alive():
            self._start()
        return self._queue

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            thread = threading.Thread(target=self._run, name="vibesdk-feedback", daemon=True)
            thread.start()
            self._thread = thread

    def _run(self) -> None:
        assert self._url is not None
        with httpx.Client(transport=self._transport, timeout=_POST_TIMEOUT_S) as http:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                url, payload = item
                try:
                    response = http.post(url, json=payload, headers=self._headers)
                except Exception as exc:  # a lost feedback must not kill the sender
                    self.result(None, exc)
                else:
                    self.result(response, None)

    def after_fork_in_child(self) -> None:
        """The parent's thread and queue locks do not exist in a child; start afresh."""
        self._queue = queue.Queue(self._maxsize)
        self._thread = None
        self._lock = threading.Lock()

    def close(self) -> None:
        """Stop the thread; waits at most a second for queued feedback to go out."""
        self._closed = True
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=_CLOSE_WAIT_S)
        thread.join(_CLOSE_WAIT_S)


class AsyncFeedbackSender(_SenderCore):
    """Bounded asyncio queue + one task, created in the running loop on first use."""

    def __init__(
        self,
        server_url: str | None,
        sdk_key: str | None,
        *,
        maxsize: int,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(server_url, sdk_key, maxsize=maxsize, transport=transport)
        self._queue: asyncio.Queue[Any] | None = None
        self._task: asyncio.Task[None] | None = None

    def _worker_queue(self) -> asyncio.Queue[Any]:
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue(self._maxsize)
            self._task = asyncio.get_running_loop().create_task(
                self._run(self._queue), name="vibesdk-feedback"
            )
        assert self._queue is not None
        return self._queue

    async def _run(self, q: asyncio.Queue[Any]) -> None:
        assert self._url is not None
        async with httpx.AsyncClient(transport=self._transport, timeout=_POST_TIMEOUT_S) as http:
            while True:
                item = await q.get()
                if item is _STOP:
                    return
                url, payload = item
                try:
                    response = await http.post(url, json=payload, headers=self._headers)
                except Exception as exc:  # a lost feedback must not kill the sender
                    self.result(None, exc)
                else:
                    self.result(response, None)

    async def aclose(self) -> None:
        """Stop the task; waits at most a second for queued feedback to go out."""
        self._closed = True
        task, q = self._task, self._queue
        if task is None or task.done() or q is None:
            return
        try:
            q.put_nowait(_STOP)
            await asyncio.wait_for(asyncio.shield(task), _CLOSE_WAIT_S)
        except (asyncio.QueueFull, asyncio.TimeoutError):
            pass
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
