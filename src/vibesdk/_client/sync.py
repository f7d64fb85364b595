"""The synchronous client: :class:`Client`."""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
from tenacity import Retrying

from vibesdk._backends import Completion, StreamParser, error_for_status, parse_completion
from vibesdk._backends.reading import MAX_BODY_BYTES, MAX_ERROR_BYTES, BodyReader, LineSplitter
from vibesdk._errors import BackendError, ClientClosedError
from vibesdk._flags.evaluation import Assignment
from vibesdk._resilience import Step, retry_strategy
from vibesdk._settings import Settings, load_settings
from vibesdk._telemetry.instruments import metrics
from vibesdk._watch import Watch, current, sync_transport

from .core import Attempt, Call, ClientCore, Opened, map_http_error, validate_chat
from .feedback import FeedbackSender
from .results import ChatChunk, ChatResult

_T = TypeVar("_T")

__all__ = ["Client"]

_LIMITS = httpx.Limits(max_connections=512, max_keepalive_connections=64)
_clients: weakref.WeakSet[Client] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_clients):
        client._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


_Open = Opened[Iterator[str]]


class Client:
    """Assign users to model variants and call the model, falling back to stable.

    Give ``server_url`` and ``sdk_key`` to follow a flag server, ``bootstrap``
    (a flag document file) to run offline, or ``flag_source`` (e.g.
    :class:`vibesdk.testing.InMemoryFlagSource`) to bring your own; every
    other :class:`~vibesdk.Settings` field is a keyword too, and unset ones
    come from ``VIBESDK_*`` environment variables. Bad settings raise
    :class:`~vibesdk.ConfigError` here; nothing later does.

    ``transport`` is the httpx transport for model calls, ``server_transport``
    the one for the flag server (both default to real sockets). ``clock``
    (monotonic seconds) drives breakers, deadlines and latencies; ``sleep``
    waits between retries. Tests inject both.

    The client starts its flag source without blocking; :meth:`wait_until_ready`
    waits for the first document. A ``flag_source`` passed in is started and
    closed by its owner, not by the client. Use it as a context manager or call
    :meth:`close`.
    """

    def __init__(
        self,
        server_url: str | None = None,
        sdk_key: str | None = None,
        bootstrap: str | Path | None = None,
        *,
        cache_dir: str | Path | None = None,
        poll_interval_s: float | None = None,
        streaming: bool | None = None,
        fetch_timeout_s: float | None = None,
        api_keys: Mapping[str, str] | None = None,
        feedback_queue_size: int | None = None,
        flag_evaluation_events: bool | None = None,
        flag_source: Any = None,
        transport: httpx.BaseTransport | None = None,
        server_transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        settings = load_settings(
            require_source=flag_source is None,
            server_url=server_url,
            sdk_key=sdk_key,
            bootstrap=bootstrap,
            cache_dir=cache_dir,
            poll_interval_s=poll_interval_s,
            streaming=streaming,
            fetch_timeout_s=fetch_timeout_s,
            api_keys=api_keys,
            feedback_queue_size=feedback_queue_size,
            flag_evaluation_events=flag_evaluation_events,
        )
        self._settings = settings
        self._owns_source = flag_source is None
        if flag_source is None:
            from vibesdk._sources import FlagSource

            flag_source = FlagSource(settings, transport=server_transport)
        self._source = flag_source
        self._store = flag_source.store
        self._clock = clock or time.monotonic
        self._sleep = sleep or time.sleep
        self._transport = transport
        self._http = httpx.Client(
            transport=_transport(transport), limits=_LIMITS, follow_redirects=False
        )
        self._core = ClientCore(settings, self._store, clock=self._clock, metrics=metrics())
        self._feedback = FeedbackSender.for_settings(settings, transport=server_transport)
        self._closed = False
        _clients.add(self)
        if self._owns_source:
            flag_source.start()

    # -- flags ----------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The settings this client was built with."""
        return self._settings

    @property
    def flag_source(self) -> Any:
        """The flag source (its ``store.state`` says READY / STALE / OFFLINE / NOT_READY)."""
        return self._source

    def wait_until_ready(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for a flag document; ``True`` once one is served.

        Never raises: until a document arrives every assignment is the stable
        default, with ``error_code="PROVIDER_NOT_READY"``.
        """
        return bool(self._source.wait_until_ready(timeout))

    def assign(
        self, flag: str, user_id: str, attributes: Mapping[str, Any] | None = None
    ) -> Assignment:
        """The variant of ``flag`` for ``user_id`` (sticky, pure). Never raises."""
        return self._store.evaluate(flag, user_id, attributes)  # type: ignore[no-any-return]

    # -- chat -----------------------------------------------------------------

    def chat(
        self,
        flag: str,
        user_id: str,
        messages: Sequence[Mapping[str, Any]],
        attributes: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> ChatResult:
        """Call the model of ``user_id``'s variant of ``flag`` and return its answer.

        The variant's reviewed prompt template and generation parameters are
        applied (``overrides`` may set any :class:`~vibesdk.GenerationParams`
        field for this call). A failing variant is retried within its budget,
        then stable answers instead (``result.fallback``). Raises
        :class:`~vibesdk.AllBackendsFailedError` only when stable fails too.
        """
        self._check_open()
        validate_chat(messages, overrides)
        core = self._core
        call = core.begin(flag, user_id, messages, attributes, overrides, stream=False)
        try:
            primary: BaseException | None = None
            for i, step in enumerate(call.steps):
                try:
                    completion, url = self._run_step(call, step)
                except BackendError as exc:
                    primary = core.step_failed(call, i, exc, primary)
                    continue
                return core.finish(call, step, completion, url, None)
            raise AssertionError("a call always has a step")  # pragma: no cover
        except BaseException as exc:
            core.abort(call, exc)
            raise

    def _run_step(self, call: Call, step: Step) -> tuple[Completion, str]:
        body = self._core.request_body(call, step)
        headers = self._core.headers(step)
        return self._attempts(call, lambda n: self._post(call, step, body, headers, n))

    def _attempts(self, call: Call, attempt: Callable[[int], _T]) -> _T:
        """Run ``attempt(number)`` within the call's retry policy; the last error if all fail."""
        # Attempt 1 runs before any Retrying is built (most calls need no other); a failure
        # enters Retrying as its attempt 1, so the strategy objects decide as they always do.
        try:
            return attempt(1)
        except BackendError as exc:
            first = exc
        for retry in Retrying(sleep=self._sleep, **retry_strategy(call.policy)):
            with retry:
                number = retry.retry_state.attempt_number
                if number == 1:
                    raise first
                return attempt(number)
        raise AssertionError("tenacity re-raises the last error")  # pragma: no cover

    def _post(
        self, call: Call, step: Step, body: dict[str, Any], headers: dict[str, str], number: int
    ) -> tuple[Completion, str]:
        core = self._core
        att = core.start_attempt(call, step, number)
        url = att.url
        try:
            request = self._http.build_request(
                "POST",
                core.endpoint(url),
                json=body,
                headers=headers,
                timeout=core.timeout(call.policy, False),
            )
            # httpx has no total deadline: the watch holds the wait for the headers to it.
            watch = current.set(Watch(att.started + call.policy.total_timeout_s, self._clock))
            try:
                try:
                    response = self._http.send(request, stream=True)
                finally:
                    current.reset(watch)
                try:
                    content = _read_body(response, core, call, att)
                finally:
                    response.close()
            except httpx.HTTPError as exc:
                raise map_http_error(exc, url, phase="total") from exc
            if response.status_code >= 300:
                raise error_for_status(response.status_code, content, backend=url)
            completion = parse_completion(content, backend=url)
        except BaseException as exc:
            core.end_attempt(att, exc)
            raise
        core.end_attempt(att, None)
        return completion, url

    def stream_chat(
        self,
        flag: str,
        user_id: str,
        messages: Sequence[Mapping[str, Any]],
        attributes: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> Iterator[ChatChunk]:
        """Like :meth:`chat`, streamed: an iterator of :class:`ChatChunk`.

        Nothing is sent until iteration starts. The stream falls back to stable
        only while no token has reached the caller; once one has, a broken
        stream raises :class:`~vibesdk.StreamInterruptedError`. The last chunk
        has ``done=True`` and the whole :class:`ChatResult`. Closing the
        iterator early (``break``) closes the connection.
        """
        self._check_open()
        validate_chat(messages, overrides)
        return self._stream(flag, user_id, messages, attributes, overrides)

    def _stream(
        self,
        flag: str,
        user_id: str,
        messages: Sequence[Mapping[str, Any]],
        attributes: Mapping[str, Any] | None,
        overrides: Mapping[str, Any],
    ) -> Iterator[ChatChunk]:
        core = self._core
        call = core.begin(flag, user_id, messages, attributes, overrides, stream=True)
        opened: _Open | None = None
        try:
            opened = self._open_stream(call)
            step, att, parser = opened.step, opened.attempt, opened.parser
            yield core.chunk(call, step, *opened.first)
            try:
                for line in opened.lines:
                    delta = parser.feed_line(line)
                    core.check_deadlines(call, att, True)
                    if delta is not None:
                        yield core.chunk(call, step, delta.text, delta.reasoning)
                completion = parser.finish()
            except (BackendError, httpx.HTTPError) as exc:
                raise core.broken(exc, att) from exc
            opened.response.close()
            core.end_attempt(att, None)
            result = core.finish(call, step, completion, att.url, opened.ttft)
            yield core.last_chunk(call, step, result)
        except BaseException as exc:
            if opened is not None:
                opened.response.close()
                core.end_attempt(opened.attempt, exc)
            core.abort(call, exc)
            raise

    def _open_stream(self, call: Call) -> _Open:
        core = self._core
        primary: BaseException | None = None
        for i, step in enumerate(call.steps):
            try:
                body = core.request_body(call, step)
                headers = core.headers(step)
                return self._open_step(call, step, body, headers)
            except BackendError as exc:
                primary = core.step_failed(call, i, exc, primary)
        raise AssertionError("a call always has a step")  # pragma: no cover

    def _open_step(
        self, call: Call, step: Step, body: dict[str, Any], headers: dict[str, str]
    ) -> _Open:
        return self._attempts(call, lambda n: self._open_once(call, step, body, headers, n))

    def _open_once(
        self, call: Call, step: Step, body: dict[str, Any], headers: dict[str, str], number: int
    ) -> _Open:
        core = self._core
        att = core.start_attempt(call, step, number)
        url = att.url
        response: httpx.Response | None = None
        try:
            request = self._http.build_request(
                "POST",
                core.endpoint(url),
                json=body,
                headers=headers,
                timeout=core.timeout(call.policy, True),
            )
            policy = call.policy
            deadline = att.started + min(policy.first_token_timeout_s, policy.total_timeout_s)
            watch = current.set(Watch(deadline, self._clock))
            try:
                try:
                    response = self._http.send(request, stream=True)
                finally:
                    current.reset(watch)
                if response.status_code >= 300:
                    content = _read_body(response, core, call, att)
                    raise error_for_status(response.status_code, content, backend=url)
                parser = StreamParser(backend=url)
                lines = _lines(response, core, call, att)
                for line in lines:
                    delta = parser.feed_line(line)
                    if delta is not None:
                        first = (delta.text, delta.reasoning)
                        return _Open(
                            step, att, response, lines, parser, first, core.first_token(att)
                        )
                    core.check_deadlines(call, att, False)
            except httpx.HTTPError as exc:
                raise map_http_error(exc, url, phase="first_token", stream=True) from exc
            parser.finish()  # raises: the stream ended before any token
            raise AssertionError("finish() raises on a stream without tokens")  # pragma: no cover
        except BaseException as exc:
            if response is not None:
                response.close()
            core.end_attempt(att, exc)
            raise

    # -- feedback -------------------------------------------------------------

    def feedback(self, trace_id: str, score: int, comment: str | None = None) -> None:
        """Record a user's 1..5 ``score`` (and ``comment``) for the answer ``trace_id``.

        Never blocks: the feedback is queued and POSTed to the flag server by a
        background thread (dropped, counted and logged if the queue is full),
        and recorded at once as a ``gen_ai.evaluation.result`` event in the
        answer's trace. Raises :class:`~vibesdk.InvalidArgumentError` (a ``ValueError``)
        for a bad trace id or score.
        """
        self._feedback.submit(self._core.feedback(trace_id, score, comment))

    @property
    def feedback_dropped(self) -> int:
        """Feedback items dropped because the queue was full."""
        return self._feedback.dropped

    # -- lifecycle --------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("this vibesdk client is closed")

    def _after_fork_in_child(self) -> None:
        # Connections of the parent must not be shared with a child: drop (do not
        # close, that would shut the parent's sockets) the pool and start afresh.
        self._http = httpx.Client(transport=_transport(self._transport), limits=_LIMITS)
        self._feedback.after_fork_in_child()

    def close(self) -> None:
        """Stop background work and close connections. Idempotent; returns promptly."""
        if self._closed:
            return
        self._closed = True
        _clients.discard(self)
        self._feedback.close()
        if self._owns_source:
            self._source.close()
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _transport(transport: httpx.BaseTransport | None) -> httpx.BaseTransport:
    # Real sockets by default, in a transport whose reads obey the call's Watch.
    return transport if transport is not None else sync_transport(limits=_LIMITS)


def _read_body(response: httpx.Response, core: ClientCore, call: Call, att: Attempt) -> bytes:
    # In chunks, so that neither a huge body nor a trickle of bytes outlives the
    # caps and the call's total deadline. An error body is only quoted: its head is enough.
    error = response.status_code >= 300
    reader = BodyReader(
        backend=att.url,
        limit=MAX_ERROR_BYTES if error else MAX_BODY_BYTES,
        truncate=error,
    )
    for chunk in response.iter_bytes():
        reader.feed(chunk)
        if reader.full:
            break
        core.check_deadlines(call, att, True)
    return reader.body()


def _lines(response: httpx.Response, core: ClientCore, call: Call, att: Attempt) -> Iterator[str]:
    # The stream's lines, checking the deadlines after every chunk (a backend that
    # trickles bytes without ending a line must still time out) and capping sizes.
    splitter = LineSplitter(backend=att.url)
    for text in response.iter_text():
        core.check_deadlines(call, att, att.got_token)
        yield from splitter.feed(text)
    yield from splitter.flush()
