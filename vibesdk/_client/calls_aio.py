"""The control flow of a chat call, for both clients: steps, retries, attempts, streams, bodies.

``calls_aio.py`` holds it for the asyncio client and is the file to edit;
``calls_sync.py``, for the blocking client, is generated from it by
``scripts/unasync.py``, which drops ``async`` and ``await`` and renames the
asyncio names to their blocking twins.
``tests/test_unasync.py`` fails while the two differ, so they cannot drift.

The decisions -- which variant, which URL and breaker, what a failure means,
what goes on the span -- are made by :class:`~vibesdk._client.core.ClientCore`;
this module only sequences the I/O around them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import httpx
from tenacity import AsyncRetrying

from vibesdk._backends import Completion, StreamParser, error_for_status, parse_completion
from vibesdk._backends.reading import MAX_BODY_BYTES, MAX_ERROR_BYTES, BodyReader, LineSplitter
from vibesdk._errors import BackendError, BackendTimeoutError
from vibesdk._resilience import Step, retry_strategy
from vibesdk._watch import watching

from .core import Attempt, Call, ClientCore, Opened, map_http_error
from .gate import AsyncGate
from .results import ChatChunk, ChatResult

__all__ = ["AsyncCalls"]

_T = TypeVar("_T")
_C = TypeVar("_C")
_Open = Opened[AsyncIterator[str]]
# One attempt at one step: (call, step, request body, headers, attempt number) -> its outcome.
_Attempt = Callable[[Call, Step, dict[str, Any], dict[str, str], int], Awaitable[_T]]


class AsyncCalls:
    """Runs the chat calls of one client over ``http``.

    ``prepare`` (if given) is awaited first in every call; ``sleep`` waits
    between retries. ``http`` may be replaced between calls (after a fork, or
    in a new event loop); its :class:`~vibesdk._client.gate.AsyncGate`, which
    keeps the requests in flight within the pool's connections, is replaced
    with it.
    """

    def __init__(
        self,
        core: ClientCore,
        http: httpx.AsyncClient,
        *,
        sleep: Callable[[float], Awaitable[None]],
        prepare: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.core = core
        self.http = http
        self._sleep = sleep
        self._prepare = prepare

    @property
    def http(self) -> httpx.AsyncClient:
        """The HTTP client the calls go through."""
        return self._http

    @http.setter
    def http(self, http: httpx.AsyncClient) -> None:
        self._http = http
        self.gate = AsyncGate()

    # -- calls ------------------------------------------------------------------

    async def chat(
        self,
        flag: str,
        user_id: str,
        messages: Sequence[Mapping[str, Any]],
        attributes: Mapping[str, Any] | None,
        overrides: Mapping[str, Any],
    ) -> ChatResult:
        """One answer: the first step that gives one, else the error of the last."""
        if self._prepare is not None:
            await self._prepare()
        core = self.core
        call = core.begin(flag, user_id, messages, attributes, overrides, stream=False)
        try:
            step, (completion, url) = await self._steps(call, self._post)
            return core.finish(call, step, completion, url, None)
        except BaseException as exc:
            core.abort(call, exc)
            raise

    async def stream(
        self,
        flag: str,
        user_id: str,
        messages: Sequence[Mapping[str, Any]],
        attributes: Mapping[str, Any] | None,
        overrides: Mapping[str, Any],
    ) -> AsyncIterator[ChatChunk]:
        """One streamed answer; it falls back only until its first token reached the caller."""
        if self._prepare is not None:
            await self._prepare()
        core = self.core
        call = core.begin(flag, user_id, messages, attributes, overrides, stream=True)
        opened: _Open | None = None
        try:
            opened = (await self._steps(call, self._open))[1]
            step, att, parser, lines = opened.step, opened.attempt, opened.parser, opened.lines
            response, ttft = opened.response, opened.ttft
            yield core.chunk(call, step, *opened.first)
            try:
                async for line in lines:
                    delta = parser.feed_line(line)
                    if delta is not None:
                        yield core.chunk(call, step, delta.text, delta.reasoning)
                completion = parser.finish()
            except BackendError as exc:
                raise core.interrupted(exc, att.url) from exc
            await self._end(att, response, None)
            result = core.finish(call, step, completion, att.url, ttft)
            yield core.last_chunk(call, step, result)
        except BaseException as exc:
            # The call's and the attempt's books are closed before anything is awaited.
            core.abort(call, exc)
            if opened is not None:
                await self._end(opened.attempt, opened.response, exc)
            raise

    # -- steps and retries ---------------------------------------------------------

    async def _steps(self, call: Call, attempt: _Attempt[_T]) -> tuple[Step, _T]:
        """Each step of the plan in turn, within its retry budget; the first that succeeds.

        When the last step fails, :meth:`ClientCore.step_failed` raises
        :class:`~vibesdk.AllBackendsFailedError`.
        """
        core = self.core
        primary: BaseException | None = None
        for i, step in enumerate(call.steps):
            try:
                body = core.request_body(call, step)
                headers = core.headers(step)
                return step, await self._attempts(call, attempt, step, body, headers)
            except BackendError as exc:
                primary = core.step_failed(call, i, exc, primary)
        raise AssertionError("a call always has a step")  # pragma: no cover

    async def _attempts(
        self,
        call: Call,
        attempt: _Attempt[_T],
        step: Step,
        body: dict[str, Any],
        headers: dict[str, str],
    ) -> _T:
        """``attempt`` within the call's retry policy; the last error if every one fails."""
        # Attempt 1 runs before any retrying object is built (most calls need no other);
        # a failure enters it as its attempt 1, so the strategy objects decide as always.
        try:
            return await attempt(call, step, body, headers, 1)
        except BackendError as exc:
            first = exc
        async for retry in AsyncRetrying(sleep=self._sleep, **retry_strategy(call.policy)):
            with retry:
                number = retry.retry_state.attempt_number
                if number == 1:
                    raise first
                return await attempt(call, step, body, headers, number)
        raise AssertionError("tenacity re-raises the last error")  # pragma: no cover

    # -- attempts ---------------------------------------------------------------------

    async def _post(
        self, call: Call, step: Step, body: dict[str, Any], headers: dict[str, str], number: int
    ) -> tuple[Completion, str]:
        """One non-streamed attempt: the whole answer, parsed, and the URL that gave it."""
        att = self.core.start_attempt(call, step, number)
        response: httpx.Response | None = None
        try:
            response = await self._send(call, att, body, headers)
            content = await self._read_body(response, call, att)
            if response.status_code >= 300:
                raise error_for_status(response.status_code, content, backend=att.url)
            completion = parse_completion(content, backend=att.url)
        except BaseException as exc:
            await self._end(att, response, exc)
            raise
        await self._end(att, response, None)
        return completion, att.url

    async def _open(
        self, call: Call, step: Step, body: dict[str, Any], headers: dict[str, str], number: int
    ) -> _Open:
        """One streamed attempt, up to its first token; the rest is left to read."""
        core = self.core
        att = core.start_attempt(call, step, number)
        response: httpx.Response | None = None
        try:
            response = await self._send(call, att, body, headers)
            if response.status_code >= 300:
                content = await self._read_body(response, call, att)
                raise error_for_status(response.status_code, content, backend=att.url)
            parser = StreamParser(backend=att.url)
            lines = _lines(response, core, call, att)
            async for line in lines:
                delta = parser.feed_line(line)
                if delta is not None:
                    first = (delta.text, delta.reasoning)
                    return _Open(step, att, response, lines, parser, first, core.first_token(att))
            parser.finish()  # raises: the stream ended before any token
            raise AssertionError("finish() raises on a stream without tokens")  # pragma: no cover
        except BaseException as exc:
            await self._end(att, response, exc)
            raise

    async def _send(
        self, call: Call, att: Attempt, body: dict[str, Any], headers: dict[str, str]
    ) -> httpx.Response:
        """POST the request; the response once its headers are in (the body still to read).

        The request first waits for a free connection (see :mod:`~vibesdk._client.gate`),
        under the attempt's deadline; the attempt gives its place back when it ends.
        """
        core = self.core
        gate = self.gate
        if not await gate.enter(att.watch):
            err = BackendTimeoutError(
                f"{att.url}: no free connection before the {att.phase} deadline"
                f" ({gate.limit} requests of this client in flight)",
                backend=att.url,
                phase="queue",
            )
            # The client is saturated, not the backend: trying again cannot help sooner.
            setattr(err, "permanent", True)  # noqa: B010 -- read by is_retryable
            raise err
        att.leave = gate.leave
        request = self.http.build_request(
            "POST",
            core.endpoint(att.url),
            json=body,
            headers=headers,
            timeout=core.timeout(call.policy, call.stream),
        )
        try:
            # httpx has no total deadline: the attempt's watch holds connect and headers to it.
            with watching(att.watch):
                return await self.http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise map_http_error(exc, att.url, phase=att.phase, stream=call.stream) from exc

    async def _read_body(self, response: httpx.Response, call: Call, att: Attempt) -> bytes:
        """The whole body within its size cap; of an error answer, only its head."""
        error = response.status_code >= 300
        reader = BodyReader(
            backend=att.url,
            limit=MAX_ERROR_BYTES if error else MAX_BODY_BYTES,
            truncate=error,
        )
        async for chunk in _read(response.aiter_bytes(), self.core, call, att):
            reader.feed(chunk)
            if reader.full:
                break
        return reader.body()

    async def _end(
        self, att: Attempt, response: httpx.Response | None, exc: BaseException | None
    ) -> None:
        """End the attempt, close its response, free its place; a failed close changes nothing."""
        self.core.end_attempt(att, exc)
        leave, att.leave = att.leave, None
        try:
            if response is not None:
                with contextlib.suppress(Exception):
                    await response.aclose()
        finally:
            if leave is not None:
                leave()


async def _read(
    chunks: AsyncIterator[_C], core: ClientCore, call: Call, att: Attempt
) -> AsyncIterator[_C]:
    """A body's chunks, each read under the attempt's deadline; httpx failures as BackendErrors.

    The watch is held for one read at a time, so a silent backend is cut when
    the deadline passes, not one httpx read timeout after it, and nothing is
    left set while the caller holds a chunk. The deadline is also checked after
    every chunk, not every line: a backend that trickles bytes times out too.
    """
    try:
        while True:
            try:
                with watching(att.watch):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except httpx.HTTPError as exc:
                raise map_http_error(exc, att.url, phase=att.phase, stream=call.stream) from exc
            core.check_deadlines(att)
            yield chunk
    finally:
        # httpx's own iterator is closed here, not left to the garbage collector, when the
        # caller stops early: an unclosed generator of the event loop is reported at exit.
        close = getattr(chunks, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()


async def _lines(
    response: httpx.Response, core: ClientCore, call: Call, att: Attempt
) -> AsyncIterator[str]:
    """A stream's lines, split at the SSE line ends only, within the size caps."""
    splitter = LineSplitter(backend=att.url)
    async for text in _read(response.aiter_text(), core, call, att):
        for line in splitter.feed(text):
            yield line
    for line in splitter.flush():
        yield line
