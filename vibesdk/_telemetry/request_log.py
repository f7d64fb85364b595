"""The request log: whole requests and answers of a share of calls, to the flag server.

A variant's ``log_share`` in the flag document (e.g. 1.0 for a canary, 0.01 for
stable) says which share of its calls is logged in full. Whether one call is
logged is decided by its trace id (:func:`sampled`), so the decision is the
same wherever it is made and a test can predict it. A logged call becomes a
**record** (a plain ``dict``, see :func:`make_record`), handed to a bounded
queue; a daemon thread runs the client's ``redact`` hook on it and turns what
the hook returns into one span, on a TracerProvider that only this client
uses, whose ``BatchSpanProcessor`` exports to
``<server_url>/v1/otlp/v1/traces`` with the SDK key, as protobuf, gzip-compressed.

The span carries the GenAI semantic convention's content attributes
(``gen_ai.input.messages``, ``gen_ai.system_instructions``,
``gen_ai.output.messages``, JSON) and the call's outcome; its trace id is the
call's, the one on the app's own span and on ``ChatResult.trace_id``. None of
this touches the app's OpenTelemetry setup: the app's spans never carry message
content.

The caller never waits: making the record is a few dict operations, and when
the queue is full the record is dropped and counted. A hook that raises drops
its record, is counted and logged (without the record), and never reaches the
caller. It is on when server metrics are (the ``server_metrics`` setting, with
``server_url`` and ``sdk_key``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from . import semconv as sc
from .guard import swallow

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

    from vibesdk._settings import Settings

__all__ = ["ROUTE", "Redact", "RequestLog", "make_record", "sampled"]

logger = logging.getLogger("vibesdk.request_log")

#: Where a flag server takes OTLP traces.
ROUTE = "/v1/otlp/v1/traces"
#: A record, once the hook has seen it: changed, or ``None`` to drop it.
Redact = Callable[[dict[str, Any]], "dict[str, Any] | None"]

_EXPORT_TIMEOUT_S = 5.0
_CLOSE_TIMEOUT_S = 2.0
_SCHEDULE_DELAY_MS = 1000
_BOUNDS = 2**64
_STOP = object()


def sampled(trace_id: str, share: float) -> bool:
    """Whether the call ``trace_id`` (32 hex digits) is among ``share`` (0 to 1) of calls.

    The rule of OpenTelemetry's ``TraceIdRatioBased`` sampler: the trace id's
    lower 64 bits below ``share * 2**64``. 0 logs nothing, 1 everything.
    """
    if share <= 0:
        return False
    if share >= 1:
        return True
    try:
        low = int(trace_id[-16:], 16)
    except ValueError:
        return False
    return low < round(share * _BOUNDS)


def make_record(
    *,
    trace_id: str,
    flag: str,
    variant: str,
    answered_by: str | None,
    model: str,
    prompt_ref: str | None,
    request: Sequence[Mapping[str, Any]],
    text: str | None,
    reasoning: str | None,
    finish_reason: str | None,
    latency_s: float,
    input_tokens: int | None,
    output_tokens: int | None,
    error_type: str | None,
    fallback_reason: str | None,
    failed_checks: Sequence[str] | None,
) -> dict[str, Any]:
    """One logged call, as the ``redact`` hook sees it.

    ``request`` is the messages as sent to the model (the variant's prompt
    applied); its system messages become ``system_instructions`` and the rest
    ``input_messages``, each in the GenAI convention's shape
    (``{"role": ..., "parts": [{"type": "text", "content": ...}]}``).
    ``output_messages`` is the answer (``[]`` when every backend failed);
    ``failed_checks`` the output checks that failed (``None`` without an
    answer). ``variant`` is the variant the user was assigned, ``answered_by``
    the one that answered (stable after a fallback; ``None`` when none did).
    """
    system: list[dict[str, Any]] = []
    inputs: list[dict[str, Any]] = []
    for message in request:
        parts = _parts(message.get("content"))
        if message.get("role") == "system":
            system.extend(parts)
        else:
            inputs.append({"role": message.get("role"), "parts": parts})
    outputs: list[dict[str, Any]] = []
    if text is not None:
        answer: list[dict[str, Any]] = []
        if reasoning:
            answer.append({"type": "reasoning", "content": reasoning})
        answer.append({"type": "text", "content": text})
        outputs.append(
            {"role": "assistant", "parts": answer, "finish_reason": finish_reason or "stop"}
        )
    return {
        "trace_id": trace_id,
        "flag": flag,
        "variant": variant,
        "answered_by": answered_by,
        "model": model,
        "prompt_ref": prompt_ref,
        "system_instructions": system,
        "input_messages": inputs,
        "output_messages": outputs,
        "finish_reason": finish_reason,
        "latency_s": latency_s,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "error_type": error_type,
        "fallback_reason": fallback_reason,
        "failed_checks": None if failed_checks is None else list(failed_checks),
    }


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, Mapping) and part.get("type") == "text":
            parts.append({"type": "text", "content": part.get("text", "")})
        elif isinstance(part, Mapping):
            parts.append({"type": str(part.get("type", "unknown"))})
    return parts


class RequestLog:
    """One client's request log: a bounded queue, a thread, a TracerProvider of its own.

    ``enabled`` False (or ``server_metrics`` off, or no ``server_url``/``sdk_key``)
    makes it a no-op whose :meth:`offer` always declines.
    """

    def __init__(self, settings: Settings, *, redact: Redact | None, enabled: bool = True) -> None:
        self._redact = redact
        self._provider: TracerProvider | None = None
        self._tracer: Tracer | None = None
        self._ids: _TraceIds | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._size = settings.request_log_queue_size
        self._queue: queue.Queue[Any] = queue.Queue(self._size)
        self._closed = False
        self._warned = False
        self.counts = {
            "logged": 0,
            "dropped_queue_full": 0,
            "dropped_by_redact": 0,
            "redact_errors": 0,
        }
        key = settings.sdk_key
        if not (enabled and settings.server_metrics and settings.server_url and key):
            self._closed = True
            return
        self._endpoint = settings.server_url + ROUTE
        self._key = key.get_secret_value()

    @property
    def enabled(self) -> bool:
        return not self._closed

    def offer(self, trace_id: str, share: float, build: Callable[[], dict[str, Any]]) -> None:
        """Queue ``build()``'s record if the call is sampled; never blocks, never raises."""
        if self._closed or not sampled(trace_id, share):
            return
        try:
            record = build()
            self._start()
            self._queue.put_nowait((trace_id, time.time_ns(), record))
        except queue.Full:
            with self._lock:
                self.counts["dropped_queue_full"] += 1
        except Exception as exc:  # a record we could not build must not fail the call
            swallow("request log", exc)

    # -- the thread -------------------------------------------------------------------------
    def _start(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            if self._pid != os.getpid():
                # A forked child: the parent's thread and queue did not come along.
                self._pid = os.getpid()
                self._queue = queue.Queue(self._size)
                self._provider = None
            if self._provider is None:
                self._provider, self._ids = _provider(self._endpoint, self._key)
                self._tracer = self._provider.get_tracer(sc.SCOPE_REQUEST_LOG)
            self._thread = threading.Thread(
                target=self._run, name="vibesdk-request-log", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                self._export(*item)
            except Exception as exc:  # the thread must outlive any one record
                swallow("request log export", exc)

    def _export(self, trace_id: str, end_ns: int, record: dict[str, Any]) -> None:
        if self._redact is not None:
            try:
                redacted = self._redact(record)
            except Exception as exc:
                self._redact_failed(f"raised {type(exc).__name__}")
                return
            if redacted is None:
                self.counts["dropped_by_redact"] += 1
                return
            if not isinstance(redacted, dict):
                self._redact_failed(f"returned a {type(redacted).__name__}, not a dict or None")
                return
            record = redacted
        try:
            attributes = span_attributes(record)
            latency = float(record.get("latency_s") or 0.0)
        except (TypeError, ValueError) as exc:
            # The type only: the message may quote the value, which may be content.
            self._redact_failed(f"left a record that cannot be sent ({type(exc).__name__})")
            return
        assert self._tracer is not None
        assert self._ids is not None
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._ids.next = int(trace_id, 16)
        span = self._tracer.start_span(
            sc.span_name(str(record.get("model") or "") or None),
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=end_ns - int(max(latency, 0.0) * 1e9),
        )
        self._ids.next = 0
        if record.get("error_type"):
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=end_ns)
        self.counts["logged"] += 1

    def _redact_failed(self, what: str) -> None:
        self.counts["redact_errors"] += 1
        # Never the record or the exception's message: either may hold what was to be redacted.
        level = logging.DEBUG if self._warned else logging.WARNING
        self._warned = True
        logger.log(level, "vibesdk: the request log's redact hook %s; the record is dropped", what)

    def close(self) -> None:
        """Send what is queued and stop the thread (bounded by a few seconds)."""
        if self._closed:
            return
        self._closed = True
        thread, provider = self._thread, self._provider
        if thread is None or provider is None or self._pid != os.getpid():
            return
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:
            # Make room for the stop: the oldest record waiting is dropped (and counted).
            with contextlib.suppress(queue.Empty):
                self._queue.get_nowait()
                with self._lock:
                    self.counts["dropped_queue_full"] += 1
            self._queue.put_nowait(_STOP)
        thread.join(_CLOSE_TIMEOUT_S)
        try:
            provider.shutdown()
        except Exception as exc:  # a failed last export must not break close()
            swallow("request log shutdown", exc)


def span_attributes(record: Mapping[str, Any]) -> dict[str, Any]:
    """The span attributes of a (redacted) record; ``TypeError``/``ValueError`` if malformed."""
    attrs: dict[str, Any] = {sc.GEN_AI_OPERATION_NAME: sc.GEN_AI_OPERATION_CHAT}
    text = {
        "flag": sc.FEATURE_FLAG_KEY,
        "variant": sc.FEATURE_FLAG_RESULT_VARIANT,
        "model": sc.GEN_AI_REQUEST_MODEL,
        "prompt_ref": sc.VIBESDK_PROMPT_REF,
        "answered_by": sc.VIBESDK_ANSWERED_BY,
        "error_type": sc.ERROR_TYPE,
        "fallback_reason": sc.VIBESDK_FALLBACK_REASON,
    }
    for field, name in text.items():
        value = record.get(field)
        if value is not None:
            attrs[name] = str(value)
    for field, name in (
        ("input_tokens", sc.GEN_AI_USAGE_INPUT_TOKENS),
        ("output_tokens", sc.GEN_AI_USAGE_OUTPUT_TOKENS),
    ):
        value = record.get(field)
        if value is not None:
            attrs[name] = int(value)
    if record.get("finish_reason") is not None:
        attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = [str(record["finish_reason"])]
    failed = record.get("failed_checks")
    if failed is not None:
        attrs[sc.VIBESDK_QUALITY_FAILURES] = [str(c) for c in failed]
        attrs[sc.VIBESDK_QUALITY_PASSED] = not failed
    for field, name in (
        ("system_instructions", sc.GEN_AI_SYSTEM_INSTRUCTIONS),
        ("input_messages", sc.GEN_AI_INPUT_MESSAGES),
        ("output_messages", sc.GEN_AI_OUTPUT_MESSAGES),
    ):
        value = record.get(field)
        if value is not None:
            attrs[name] = json.dumps(value, ensure_ascii=False)
    return attrs


class _TraceIds(Protocol):
    """The id generator of the request log's provider (see :func:`_provider`)."""

    next: int


def _provider(endpoint: str, key: str) -> tuple[TracerProvider, _TraceIds]:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    class TraceIds(RandomIdGenerator):
        """Span ids at random; the trace id the worker names, so a span joins its call's trace."""

        next = 0

        def generate_trace_id(self) -> int:
            return self.next or super().generate_trace_id()

    exporter = OTLPSpanExporter(
        endpoint=endpoint,
        headers={"Authorization": f"Bearer {key}"},
        compression=Compression.Gzip,
        timeout=_EXPORT_TIMEOUT_S,
    )
    ids = TraceIds()
    # An empty resource and always-on sampling: the app's OTEL_* settings stay the app's.
    provider = TracerProvider(
        sampler=ALWAYS_ON,
        resource=Resource.get_empty(),
        id_generator=ids,
    )
    provider.add_span_processor(
        BatchSpanProcessor(exporter, schedule_delay_millis=_SCHEDULE_DELAY_MS)
    )
    return provider, ids
