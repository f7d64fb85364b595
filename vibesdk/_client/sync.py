"""The synchronous client: :class:`Client`."""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from vibesdk._backends import local
from vibesdk._errors import ClientClosedError
from vibesdk._flags.evaluation import Assignment, evaluator
from vibesdk._settings import Settings, load_settings
from vibesdk._telemetry.instruments import metrics
from vibesdk._telemetry.request_log import RequestLog
from vibesdk._telemetry.server_export import ServerMetrics
from vibesdk._watch import sync_transport

from .calls_sync import Calls
from .core import ClientCore, validate_chat
from .feedback import REPORT as _REPORT
from .feedback import FeedbackSender
from .gate import LIMITS as _LIMITS
from .gate import POOL_SHARDS as _POOL_SHARDS
from .results import ChatChunk, ChatResult

__all__ = ["Client"]

_clients: weakref.WeakSet[Client] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_clients):
        client._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


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

    ``redact`` runs on every call the request log selects (a variant's
    ``log_share`` in the flag document), in a background thread of this
    process, before anything is sent: it gets the record (a ``dict``: the
    messages, the answer, the outcome; see the guarded releases page) and
    returns it, changed or not, or ``None`` to drop it. If it raises, the record
    is dropped and counted in :attr:`request_log_counts`; the caller never sees it.

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
        server_metrics: bool | None = None,
        server_metrics_interval_s: float | None = None,
        request_log_queue_size: int | None = None,
        redact: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
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
            server_metrics=server_metrics,
            server_metrics_interval_s=server_metrics_interval_s,
            request_log_queue_size=request_log_queue_size,
        )
        self._settings = settings
        self._owns_source = flag_source is None
        if flag_source is None:
            from vibesdk._sources import FlagSource

            flag_source = FlagSource(settings, transport=server_transport)
        self._source = flag_source
        self._store = flag_source.store
        self._flags: Mapping[str, Any] = {}
        self._store.bind(self)  # keeps self._flags current for assign()
        self._clock = clock or time.monotonic
        self._sleep = sleep or time.sleep
        self._transport = transport
        http = httpx.Client(
            transport=_transport(transport),
            mounts=_mounts(),
            limits=_LIMITS,
            follow_redirects=False,
        )
        # A test's own server transport cannot carry the OTLP exporter's requests: off then.
        self._server_metrics = ServerMetrics(settings, metrics(), enabled=server_transport is None)
        self._request_log = RequestLog(settings, redact=redact, enabled=server_transport is None)
        self._core = ClientCore(
            settings,
            self._store,
            clock=self._clock,
            metrics=self._server_metrics.metrics,
            request_log=self._request_log,
        )
        self._calls = Calls(self._core, http, sleep=self._sleep)
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

        Never raises. Until a document arrives every assignment is the stable
        default, with ``error_code="PROVIDER_NOT_READY"``, and :meth:`chat`
        raises :class:`~vibesdk.FlagsNotReadyError`: pass ``bootstrap=`` (a
        flag document shipped with the app) to answer from the first request.
        """
        return bool(self._source.wait_until_ready(timeout))

    @evaluator  # evaluates in this frame, from the flags the store pushes to self._flags
    def assign(
        self, flag: str, user_id: str, attributes: Mapping[str, Any] | None = None
    ) -> Assignment:
        """The variant of ``flag`` for ``user_id`` (sticky, pure). Never raises."""
        raise NotImplementedError  # pragma: no cover - replaced by @evaluator

    def _evaluate_missing(
        self, flag: str, user_id: str, attributes: Mapping[str, Any] | None
    ) -> Assignment:
        # No document yet, an unknown flag, or a hook to run first: the store decides.
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
        :class:`~vibesdk.AllBackendsFailedError` only when stable fails too,
        and at once, without calling a backend,
        :class:`~vibesdk.FlagsNotReadyError` before the first flag document
        (see ``bootstrap``) or :class:`~vibesdk.FlagNotFoundError` for a flag
        the document does not have.
        """
        self._check_open()
        validate_chat(messages, overrides)
        return self._calls.chat(flag, user_id, messages, attributes, overrides)

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
        return self._calls.stream(flag, user_id, messages, attributes, overrides)

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

    def report(self, trace_id: str, reason: str | None = None) -> None:
        """Record that a user reported the answer ``trace_id`` (a "report this answer" button).

        Like :meth:`feedback`, never blocks: the report is queued and POSTed to the
        flag server's ``/v1/report`` by the same background thread, where ops read it with
        ``vibe feedback`` (counted per variant); and it is recorded at once as a
        ``vibesdk.report`` span in the answer's trace and in the ``vibesdk.reports``
        counter. ``reason`` is the user's words, at most 2000 characters. Raises
        :class:`~vibesdk.InvalidArgumentError` for a bad trace id or reason.
        """
        self._feedback.submit(self._core.report(trace_id, reason), _REPORT)

    @property
    def request_log_counts(self) -> dict[str, int]:
        """What the request log did with the calls it selected (see ``log_share``).

        ``logged``: sent on to the flag server; ``dropped_queue_full``: dropped because
        the queue (``request_log_queue_size``) was full; ``dropped_by_redact``: the
        ``redact`` hook returned ``None``; ``redact_errors``: the hook raised (or returned
        something that is not a dict), so the record was dropped.
        """
        return dict(self._request_log.counts)

    @property
    def feedback_dropped(self) -> int:
        """Feedback and report items dropped because the queue was full."""
        return self._feedback.dropped

    # -- lifecycle --------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("this vibesdk client is closed")

    def _after_fork_in_child(self) -> None:
        # Connections of the parent must not be shared with a child: drop (do not
        # close, that would shut the parent's sockets) the pool and start afresh.
        self._calls.http = httpx.Client(
            transport=_transport(self._transport), mounts=_mounts(), limits=_LIMITS
        )
        self._feedback.after_fork_in_child()

    def close(self) -> None:
        """Stop background work and close connections. Idempotent; returns promptly."""
        if self._closed:
            return
        self._closed = True
        _clients.discard(self)
        self._feedback.close()
        self._server_metrics.close()
        self._request_log.close()
        if self._owns_source:
            self._source.close()
        self._http.close()

    @property
    def _http(self) -> httpx.Client:
        return self._calls.http

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _mounts() -> dict[str, Any]:
    # Variants of provider llama-cpp-python run in this process (vibesdk._backends.local).
    return {f"{local.SCHEME}://": local.LocalTransport()}


def _transport(transport: httpx.BaseTransport | None) -> httpx.BaseTransport:
    # Real sockets by default, in a transport whose reads obey the call's Watch.
    return (
        transport if transport is not None else sync_transport(limits=_LIMITS, shards=_POOL_SHARDS)
    )
