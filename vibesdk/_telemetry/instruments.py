"""vibesdk's tracer and metric instruments, through ``opentelemetry-api`` only.

Nothing here configures OpenTelemetry. Until the host application (or
:func:`vibesdk.configure_telemetry`) installs a provider, every span and
measurement goes to the API's no-op implementation at almost no cost; once a
provider is installed, the same tracer and instruments start recording.

Telemetry must never break a model call: the tracer hands out
:class:`~vibesdk._telemetry.guard.SafeSpan` objects and never raises, and every
method of :class:`Metrics` and :func:`emit_feedback` swallows its own errors;
each failure is logged once per kind on the ``vibesdk.telemetry`` logger (see
:mod:`vibesdk._telemetry.guard`).

:func:`vibesdk.testing.SpanCapture` points vibesdk's telemetry at its own
in-memory providers for the length of a test, without touching the global
providers (which OpenTelemetry lets a process set only once); that is why the
tracer returned by :func:`tracer` and :class:`Metrics` re-resolve their target
when the binding changes instead of caching it forever.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.util._decorator import _agnosticcontextmanager
from opentelemetry.util.types import Attributes, AttributeValue

from . import semconv as sc
from .guard import SafeSpan, swallow

if TYPE_CHECKING:
    from vibesdk._flags.evaluation import Assignment

__all__ = [
    "Metrics",
    "TeeMetrics",
    "emit_feedback",
    "emit_report",
    "flag_attributes",
    "flag_evaluation_event",
    "metrics",
    "server_attributes",
    "tracer",
]

_SCOPE = "vibesdk"


def _version() -> str:
    # Imported late: vibesdk/__init__.py imports this module.
    from vibesdk import __version__

    return __version__


class _Binding:
    """Which providers vibesdk's telemetry goes to: the global ones (``None``) or a test's own.

    ``generation`` changes whenever the binding does, so cached tracers and
    instruments know to re-resolve.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tracer_provider: trace.TracerProvider | None = None
        self.meter_provider: otel_metrics.MeterProvider | None = None
        self.generation = 0


_binding = _Binding()


def _bind(
    tracer_provider: trace.TracerProvider | None,
    meter_provider: otel_metrics.MeterProvider | None,
) -> tuple[trace.TracerProvider | None, otel_metrics.MeterProvider | None]:
    """Route vibesdk's telemetry to these providers (``None``: the global ones).

    Returns the previous pair, for restoring.
    """
    with _binding.lock:
        old = (_binding.tracer_provider, _binding.meter_provider)
        _binding.tracer_provider = tracer_provider
        _binding.meter_provider = meter_provider
        _binding.generation += 1
        return old


# --- tracing ----------------------------------------------------------------


class _VibeTracer(trace.Tracer):
    """A tracer that always forwards to vibesdk's current target (global provider or a test's).

    It never raises, and its spans are :class:`~vibesdk._telemetry.guard.SafeSpan`
    objects whose methods never raise either.
    """

    def __init__(self) -> None:
        self._generation = -1
        self._tracer: trace.Tracer = trace.NoOpTracer()

    def _current(self) -> trace.Tracer:
        generation = _binding.generation
        if generation != self._generation:
            # With no explicit provider this is the API's ProxyTracer, which itself starts
            # recording as soon as the host sets a global TracerProvider.
            self._tracer = trace.get_tracer(
                _SCOPE,
                _version(),
                tracer_provider=_binding.tracer_provider,
                schema_url=None,
            )
            self._generation = generation
        return self._tracer

    def start_span(  # noqa: PLR0917 -- opentelemetry's Tracer.start_span signature
        self,
        name: str,
        context: Any = None,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[trace.Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        try:
            span = self._current().start_span(name, context, kind, attributes, links, start_time)
        except Exception as exc:
            # A processor's on_start, or a broken provider: the span is lost, the
            # invalid span (which records nothing) stands in.
            swallow("span start", exc)
            return trace.INVALID_SPAN
        return SafeSpan(span)

    @_agnosticcontextmanager
    def start_as_current_span(  # noqa: PLR0917 -- opentelemetry's Tracer signature
        self,
        name: str,
        context: Any = None,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[trace.Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        span = self.start_span(name, context, kind, attributes, links, start_time)
        with trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current


_tracer = _VibeTracer()


def tracer() -> trace.Tracer:
    """vibesdk's tracer (scope ``vibesdk``). Safe to cache: it follows provider changes."""
    return _tracer


def flag_attributes(
    *,
    flag_key: str,
    variant: str,
    reason: str | None = None,
    user_id: str | None = None,
    flag_version: int | None = None,
    bucket: int | None = None,
    rule_id: str | None = None,
    error_code: str | None = None,
) -> dict[str, AttributeValue]:
    """The ``feature_flag.*`` (+ ``vibesdk.bucket``, ``vibesdk.rule.id``) attributes of one call.

    ``reason`` is an OpenFeature reason (``vibesdk.Reason``) and is mapped to
    its semconv spelling; ``error_code`` (OpenFeature, e.g.
    ``FLAG_NOT_FOUND``) becomes ``error.type``. ``None`` values are left out.
    Works with an :class:`vibesdk.Assignment`:
    ``flag_attributes(flag_key=a.flag_key, variant=a.variant, ...)``.
    """
    attrs: dict[str, AttributeValue] = {
        sc.FEATURE_FLAG_KEY: flag_key,
        sc.FEATURE_FLAG_RESULT_VARIANT: variant,
        sc.FEATURE_FLAG_PROVIDER_NAME: sc.FEATURE_FLAG_PROVIDER_VALUE,
    }
    if reason is not None:
        attrs[sc.FEATURE_FLAG_RESULT_REASON] = sc.flag_reason(reason)
    if user_id is not None:
        attrs[sc.FEATURE_FLAG_CONTEXT_ID] = user_id
    if flag_version is not None:
        attrs[sc.FEATURE_FLAG_VERSION] = str(flag_version)
    if bucket is not None:
        attrs[sc.VIBESDK_BUCKET] = bucket
    if rule_id is not None:
        attrs[sc.VIBESDK_RULE_ID] = rule_id
    if error_code is not None:
        attrs[sc.ERROR_TYPE] = error_code.lower()
    return attrs


def flag_evaluation_event(assignment: Assignment) -> dict[str, AttributeValue]:
    """The attributes of the ``feature_flag.evaluation`` event for ``assignment``.

    Only the feature-flag conventions' own attributes (``feature_flag.key``,
    ``.result.variant``, ``.provider.name``, ``.result.reason``,
    ``.context.id``, ``.version``, and ``error.type`` when evaluation failed):
    :func:`flag_attributes` without vibesdk's extras.
    """
    a = assignment
    return flag_attributes(
        flag_key=a.flag_key,
        variant=a.variant,
        reason=a.reason,
        user_id=a.user_id,
        flag_version=a.flag_version,
        error_code=a.error_code,
    )


_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


@functools.lru_cache(maxsize=1024)
def server_attributes(url: str) -> Mapping[str, AttributeValue]:
    """``server.address`` and ``server.port`` of a backend's base URL (read-only).

    The port is the URL's own, else its scheme's default: the conventions want
    ``server.port`` whenever ``server.address`` is set. A URL without a host
    gives no attributes.
    """
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number
        return MappingProxyType({})
    if not host or parts.scheme.lower() not in _DEFAULT_PORTS:
        # No network peer: e.g. llama-cpp-python://local/..., a model in the app's process.
        return MappingProxyType({})
    attrs: dict[str, AttributeValue] = {sc.SERVER_ADDRESS: host}
    if port is None:
        port = _DEFAULT_PORTS.get(parts.scheme.lower())
    if port is not None:
        attrs[sc.SERVER_PORT] = port
    return MappingProxyType(attrs)


# --- metrics ----------------------------------------------------------------


@dataclass(frozen=True)
class _Instruments:
    duration: otel_metrics.Histogram
    tokens: otel_metrics.Histogram
    ttfc: otel_metrics.Histogram
    server_ttft: otel_metrics.Histogram
    fallbacks: otel_metrics.Counter
    quality_failures: otel_metrics.Counter
    feedback: otel_metrics.Histogram
    reports: otel_metrics.Counter
    exposures: otel_metrics.Counter
    flags_rejected: otel_metrics.Counter
    local_queue_wait: otel_metrics.Histogram


def _create_instruments(meter: otel_metrics.Meter) -> _Instruments:
    return _Instruments(
        duration=meter.create_histogram(
            sc.METRIC_OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=sc.OPERATION_DURATION_BUCKETS,
        ),
        tokens=meter.create_histogram(
            sc.METRIC_TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=sc.TOKEN_USAGE_BUCKETS,
        ),
        ttfc=meter.create_histogram(
            sc.METRIC_TIME_TO_FIRST_CHUNK,
            unit="s",
            description="Time from sending a streaming request to receiving its first chunk.",
            explicit_bucket_boundaries_advisory=sc.TIME_TO_FIRST_TOKEN_BUCKETS,
        ),
        server_ttft=meter.create_histogram(
            sc.METRIC_SERVER_TIME_TO_FIRST_TOKEN,
            unit="s",
            description="Time the model server took to its first token (llama.cpp timings).",
            explicit_bucket_boundaries_advisory=sc.TIME_TO_FIRST_TOKEN_BUCKETS,
        ),
        fallbacks=meter.create_counter(
            sc.METRIC_FALLBACKS,
            unit="{fallback}",
            description="Calls answered by the stable variant because the assigned one failed.",
        ),
        quality_failures=meter.create_counter(
            sc.METRIC_QUALITY_FAILURES,
            unit="{failure}",
            description="Answers that failed an output check, one count per failed check.",
        ),
        feedback=meter.create_histogram(
            sc.METRIC_FEEDBACK_SCORE,
            unit="{score}",
            description="User feedback scores, 1 (bad) to 5 (good).",
            explicit_bucket_boundaries_advisory=sc.FEEDBACK_SCORE_BUCKETS,
        ),
        reports=meter.create_counter(
            sc.METRIC_REPORTS,
            unit="{report}",
            description="Answers users reported as wrong or harmful (client.report).",
        ),
        exposures=meter.create_counter(
            sc.METRIC_EXPOSURES,
            unit="{user}",
            description="Users met for the first time in the flag's current rollout step.",
        ),
        flags_rejected=meter.create_counter(
            sc.METRIC_FLAGS_REJECTED,
            unit="{document}",
            description="Flag documents rejected because they failed validation.",
        ),
        local_queue_wait=meter.create_histogram(
            sc.METRIC_LOCAL_QUEUE_WAIT,
            unit="s",
            description="Time a call waited for its in-process model (provider llama-cpp-python).",
            explicit_bucket_boundaries_advisory=sc.TIME_TO_FIRST_TOKEN_BUCKETS,
        ),
    )


def _base(
    flag_key: str | None,
    variant: str | None,
    model: str | None,
    provider: str | None,
    backend: str | None = None,
) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {sc.GEN_AI_OPERATION_NAME: sc.GEN_AI_OPERATION_CHAT}
    if flag_key is not None:
        attrs[sc.FEATURE_FLAG_KEY] = flag_key
    if variant is not None:
        attrs[sc.FEATURE_FLAG_RESULT_VARIANT] = variant
    if model is not None:
        attrs[sc.GEN_AI_REQUEST_MODEL] = model
    if provider is not None:
        attrs[sc.GEN_AI_PROVIDER_NAME] = provider
    if backend is not None:
        attrs.update(server_attributes(backend))
    return attrs


# The attribute sets of one (flag, variant, model, ...) are the same on every call: built
# once and shared, read-only (the SDK copies what it keeps). Bounded: response models
# come from backends.
@functools.lru_cache(maxsize=1024)
def _call_attributes(  # noqa: PLR0917 -- positional: lru_cache keys keyword calls slower
    flag_key: str,
    variant: str,
    model: str | None,
    provider: str | None,
    fallback: bool,
    error_type: str | None,
    response_model: str | None,
    backend: str | None,
    attempt_failed: bool = False,
) -> Mapping[str, AttributeValue]:
    attrs = _base(flag_key, variant, model, provider, backend)
    attrs[sc.VIBESDK_FALLBACK] = fallback
    if attempt_failed:  # only when true: a healthy call's series stay as they were
        attrs[sc.VIBESDK_ATTEMPT_FAILED] = True
    if error_type is not None:
        attrs[sc.ERROR_TYPE] = error_type
    if response_model is not None:
        attrs[sc.GEN_AI_RESPONSE_MODEL] = response_model
    return attrs


@functools.lru_cache(maxsize=1024)
def _token_attributes(  # noqa: PLR0917 -- positional: lru_cache keys keyword calls slower
    flag_key: str,
    variant: str,
    model: str | None,
    provider: str | None,
    kind: str,
    backend: str | None,
) -> Mapping[str, AttributeValue]:
    attrs = _base(flag_key, variant, model, provider, backend)
    attrs[sc.GEN_AI_TOKEN_TYPE] = kind
    return attrs


_base_attributes = functools.lru_cache(maxsize=1024)(_base)


class Metrics:
    """vibesdk's metric instruments. Every ``record_*`` method never raises.

    Every measurement of a call carries ``feature_flag.key`` and
    ``feature_flag.result.variant`` (so every metric splits per cohort),
    ``gen_ai.operation.name`` and, when known, ``gen_ai.request.model`` and
    ``gen_ai.provider.name``; the ``gen_ai.*`` metrics also carry
    ``server.address`` and ``server.port`` of ``backend``, the base URL of the
    backend that answered (or was tried last). ``variant`` is the variant the
    unit was *assigned*; whether stable answered instead is ``vibesdk.fallback``.

    ``meter_provider`` pins the instruments to one provider (benchmarks, tests);
    by default they follow the global provider, or a
    :class:`vibesdk.testing.SpanCapture` while one is active.
    """

    def __init__(self, meter_provider: otel_metrics.MeterProvider | None = None) -> None:
        self._pinned = meter_provider
        self._generation = -1
        self._lock = threading.Lock()
        self._instruments: _Instruments | None = None

    def _get(self) -> _Instruments:
        instruments = self._instruments
        if instruments is not None and (
            self._pinned is not None or self._generation == _binding.generation
        ):
            return instruments
        with self._lock:
            generation = _binding.generation
            provider = self._pinned or _binding.meter_provider
            meter = otel_metrics.get_meter(_SCOPE, _version(), meter_provider=provider)
            instruments = _create_instruments(meter)
            self._instruments = instruments
            self._generation = generation
            return instruments

    def record_call(
        self,
        *,
        flag_key: str,
        variant: str,
        model: str | None,
        provider: str | None,
        duration_s: float,
        error_type: str | None = None,
        fallback: bool = False,
        response_model: str | None = None,
        backend: str | None = None,
        attempt_failed: bool = False,
    ) -> None:
        """Record one call (all attempts, any fallback) in ``gen_ai.client.operation.duration``.

        ``error_type`` is set only when the caller got an error (e.g.
        ``all_failed``); ``fallback`` when stable answered for the variant;
        ``attempt_failed`` when an attempt on the assigned variant failed, even if a
        retry then answered.
        """
        try:
            attrs = _call_attributes(
                flag_key,
                variant,
                model,
                provider,
                bool(fallback),
                error_type,
                response_model,
                backend,
                bool(attempt_failed) or bool(fallback) or error_type is not None,
            )
            self._get().duration.record(max(0.0, float(duration_s)), attrs)
        except Exception as exc:  # telemetry never breaks the call
            swallow("record_call", exc)

    def record_tokens(
        self,
        *,
        flag_key: str,
        variant: str,
        model: str | None,
        input_tokens: int | None,
        output_tokens: int | None,
        provider: str | None = None,
        backend: str | None = None,
    ) -> None:
        """Record token counts in ``gen_ai.client.token.usage`` (``gen_ai.token.type`` in/out).

        A count of ``None`` (the backend did not report it) is skipped.
        """
        try:
            histogram = self._get().tokens
            for kind, count in (
                (sc.GEN_AI_TOKEN_TYPE_INPUT, input_tokens),
                (sc.GEN_AI_TOKEN_TYPE_OUTPUT, output_tokens),
            ):
                if count is None:
                    continue
                attrs = _token_attributes(flag_key, variant, model, provider, kind, backend)
                histogram.record(max(0, int(count)), attrs)
        except Exception as exc:
            swallow("record_tokens", exc)

    def record_ttft(
        self,
        *,
        flag_key: str,
        variant: str,
        model: str | None,
        seconds: float | None,
        provider: str | None = None,
        server_seconds: float | None = None,
        backend: str | None = None,
    ) -> None:
        """Record time to first token.

        ``seconds`` (measured by the client, streaming calls) goes to
        ``gen_ai.client.operation.time_to_first_chunk``; ``server_seconds``
        (what the model server reports, e.g. llama.cpp ``timings.prompt_ms`` /
        1000) goes to ``gen_ai.server.time_to_first_token``. ``None`` skips one.
        """
        try:
            instruments = self._get()
            attrs = _base_attributes(flag_key, variant, model, provider, backend)
            if seconds is not None:
                instruments.ttfc.record(max(0.0, float(seconds)), attrs)
            if server_seconds is not None:
                instruments.server_ttft.record(max(0.0, float(server_seconds)), attrs)
        except Exception as exc:
            swallow("record_ttft", exc)

    def record_queue_wait(
        self,
        *,
        flag_key: str,
        variant: str,
        model: str | None,
        seconds: float,
        provider: str | None = None,
    ) -> None:
        """Record how long a call waited for its in-process model (``vibesdk.local.queue_wait``)."""
        try:
            attrs = _base_attributes(flag_key, variant, model, provider, None)
            self._get().local_queue_wait.record(max(0.0, float(seconds)), attrs)
        except Exception as exc:
            swallow("record_queue_wait", exc)

    def record_fallback(
        self,
        *,
        flag_key: str,
        variant: str,
        reason: str,
        model: str | None = None,
        provider: str | None = None,
    ) -> None:
        """Count one fallback in ``vibesdk.fallbacks``; ``variant`` is the one that failed
        (``model`` and ``provider`` are its), ``reason`` its ``BackendError.kind``
        (``vibesdk.fallback.reason``)."""
        try:
            attrs = _base(flag_key, variant, model, provider)
            attrs[sc.VIBESDK_FALLBACK_REASON] = reason
            self._get().fallbacks.add(1, attrs)
        except Exception as exc:
            swallow("record_fallback", exc)

    def record_quality_failures(
        self,
        *,
        flag_key: str,
        variant: str,
        failures: Sequence[str],
        model: str | None = None,
        provider: str | None = None,
    ) -> None:
        """Count each failed check in ``vibesdk.quality.failures`` (``vibesdk.quality.check``).

        ``variant`` should be the variant that produced the answer. An empty
        ``failures`` records nothing (the call count is the duration histogram's).
        """
        try:
            if not failures:
                return
            counter = self._get().quality_failures
            for name in failures:
                attrs = _base(flag_key, variant, model, provider)
                attrs[sc.VIBESDK_QUALITY_CHECK] = str(name)
                counter.add(1, attrs)
        except Exception as exc:
            swallow("record_quality_failures", exc)

    def record_feedback(
        self,
        *,
        flag_key: str | None,
        variant: str | None,
        score: float,
        model: str | None = None,
        provider: str | None = None,
    ) -> None:
        """Record a user's 1..5 score in ``vibesdk.feedback.score``.

        Carries ``gen_ai.operation.name`` always, and the flag, variant, model
        and provider of the answer when they are known (``None`` leaves one out).
        """
        try:
            attrs = _base(flag_key, variant, model, provider)
            self._get().feedback.record(float(score), attrs)
        except Exception as exc:
            swallow("record_feedback", exc)

    def record_report(
        self,
        *,
        flag_key: str | None,
        variant: str | None,
        model: str | None = None,
        provider: str | None = None,
    ) -> None:
        """Count one reported answer in ``vibesdk.reports``, with the attributes of feedback."""
        try:
            self._get().reports.add(1, _base(flag_key, variant, model, provider))
        except Exception as exc:
            swallow("record_report", exc)

    def record_exposure(
        self,
        *,
        flag_key: str,
        variant: str,
        client_id: str,
        step: str,
        model: str | None = None,
        provider: str | None = None,
    ) -> None:
        """Count one user met for the first time in the flag's step (``vibesdk.exposures``).

        ``variant`` is the one the user was assigned; the attributes are those of
        :meth:`record_report`, ``vibesdk.client.id``: ``client_id``, the counting client's
        (:attr:`~.exposures.Exposures.client_id`), and ``vibesdk.step``: ``step``, the flag's
        :attr:`~vibesdk.Flag.step_id`. Which users are new is :class:`~.exposures.Exposures`'
        call.
        """
        try:
            base = _base_attributes(flag_key, variant, model, provider)  # cached: not to mutate
            extra = {sc.VIBESDK_CLIENT_ID: client_id, sc.VIBESDK_STEP: step}
            self._get().exposures.add(1, {**base, **extra})
        except Exception as exc:
            swallow("record_exposure", exc)

    def record_flag_rejected(self, *, origin: str) -> None:
        """Count one flag document that failed validation (``vibesdk.flags.rejected``).

        ``origin`` (``poll``, ``stream``, ...) goes to ``vibesdk.flags.origin``.
        """
        try:
            self._get().flags_rejected.add(1, {sc.VIBESDK_FLAGS_ORIGIN: origin})
        except Exception as exc:
            swallow("record_flag_rejected", exc)


class TeeMetrics(Metrics):
    """:class:`Metrics` that record into ``primary``'s instruments and into ``provider``'s too.

    ``primary`` follows the app's OpenTelemetry setup as usual (the app's providers receive
    exactly what they would without the tee); ``provider`` is one vibesdk owns, e.g. the
    one that exports to the flag server. A failure of either is swallowed like any other.
    """

    def __init__(self, primary: Metrics, provider: otel_metrics.MeterProvider) -> None:
        super().__init__(provider)
        self._primary = primary
        self._joined: tuple[_Instruments, _Instruments, _Instruments] | None = None

    def _get(self) -> _Instruments:
        first, second = self._primary._get(), super()._get()
        joined = self._joined
        if joined is None or joined[0] is not first or joined[1] is not second:
            tees: dict[str, Any] = {
                f.name: _Tee(getattr(first, f.name), getattr(second, f.name)) for f in fields(first)
            }
            both = _Instruments(**tees)
            joined = self._joined = (first, second, both)
        return joined[2]


class _Tee:
    """One instrument recorded into two: ``add`` and ``record`` go to both."""

    def __init__(self, first: Any, second: Any) -> None:
        self._first, self._second = first, second

    def add(self, value: float, attributes: Attributes = None) -> None:
        try:
            self._first.add(value, attributes)
        finally:
            self._second.add(value, attributes)

    def record(self, value: float, attributes: Attributes = None) -> None:
        try:
            self._first.record(value, attributes)
        finally:
            self._second.record(value, attributes)


_metrics: Metrics | None = None


def metrics() -> Metrics:
    """The process-wide :class:`Metrics` (one set of instruments for every client)."""
    global _metrics  # noqa: PLW0603 -- one lazily built instance per process
    if _metrics is None:
        _metrics = Metrics()
    return _metrics


# --- feedback as an evaluation event -----------------------------------------

_HEX = frozenset("0123456789abcdef")


def _parent_context(trace_id: str, span_id: str | None) -> Any:
    """A context whose (remote) parent is the answer's span: feedback joins the answer's trace."""
    if len(trace_id) != 32 or not set(trace_id) <= _HEX or int(trace_id, 16) == 0:
        return None
    if span_id is None or len(span_id) != 16 or not set(span_id) <= _HEX or int(span_id, 16) == 0:
        # Unknown span: any non-zero id keeps the feedback in the same trace.
        span_int = int.from_bytes(os.urandom(8), "big") or 1
    else:
        span_int = int(span_id, 16)
    parent = trace.SpanContext(
        trace_id=int(trace_id, 16),
        span_id=span_int,
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(parent))


def emit_feedback(
    *,
    trace_id: str,
    score: int,
    comment: str | None = None,
    flag_key: str | None = None,
    variant: str | None = None,
    user_id: str | None = None,
    span_id: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> None:
    """Record a user's feedback on an answer as an OpenTelemetry evaluation event. Never raises.

    Emits a short span ``vibesdk.feedback`` in the answer's trace (child of
    ``span_id`` when known) carrying one ``gen_ai.evaluation.result`` event with
    ``gen_ai.evaluation.name = "user_feedback"``,
    ``gen_ai.evaluation.score.value = score`` and
    ``gen_ai.evaluation.explanation = comment``; the span also carries
    ``feature_flag.key`` / ``feature_flag.result.variant`` /
    ``feature_flag.context.id`` so feedback splits per cohort.
    """
    try:
        event: dict[str, AttributeValue] = {
            sc.GEN_AI_EVALUATION_NAME: "user_feedback",
            sc.GEN_AI_EVALUATION_SCORE_VALUE: float(score),
        }
        if comment:
            event[sc.GEN_AI_EVALUATION_EXPLANATION] = comment
        own: dict[str, AttributeValue] = {sc.VIBESDK_FEEDBACK_SCORE: int(score)}
        _emit_evaluation(
            sc.SPAN_FEEDBACK,
            own,
            event,
            trace_id=trace_id,
            span_id=span_id,
            flag_key=flag_key,
            variant=variant,
            user_id=user_id,
            attributes=attributes,
        )
    except Exception as exc:
        swallow("emit_feedback", exc)


def emit_report(
    *,
    trace_id: str,
    reason: str | None = None,
    flag_key: str | None = None,
    variant: str | None = None,
    user_id: str | None = None,
    span_id: str | None = None,
) -> None:
    """Record a user's report of an answer, as :func:`emit_feedback` does a score. Never raises.

    The span is ``vibesdk.report``; its ``gen_ai.evaluation.result`` event has
    ``gen_ai.evaluation.name = "user_report"``, ``gen_ai.evaluation.score.label =
    "reported"`` and the reason as ``gen_ai.evaluation.explanation``.
    """
    try:
        event: dict[str, AttributeValue] = {
            sc.GEN_AI_EVALUATION_NAME: "user_report",
            sc.GEN_AI_EVALUATION_SCORE_LABEL: "reported",
        }
        own: dict[str, AttributeValue] = {}
        if reason:
            event[sc.GEN_AI_EVALUATION_EXPLANATION] = reason
            own[sc.VIBESDK_REPORT_REASON] = reason
        _emit_evaluation(
            sc.SPAN_REPORT,
            own,
            event,
            trace_id=trace_id,
            span_id=span_id,
            flag_key=flag_key,
            variant=variant,
            user_id=user_id,
            attributes=None,
        )
    except Exception as exc:
        swallow("emit_report", exc)


def _emit_evaluation(
    name: str,
    own: dict[str, AttributeValue],
    event: dict[str, AttributeValue],
    *,
    trace_id: str,
    span_id: str | None,
    flag_key: str | None,
    variant: str | None,
    user_id: str | None,
    attributes: Mapping[str, AttributeValue] | None,
) -> None:
    """A short span ``name`` in the answer's trace, with the cohort's attributes and ``event``."""
    span_attrs = dict(own)
    if flag_key is not None:
        span_attrs[sc.FEATURE_FLAG_KEY] = flag_key
    if variant is not None:
        span_attrs[sc.FEATURE_FLAG_RESULT_VARIANT] = variant
    if user_id is not None:
        span_attrs[sc.FEATURE_FLAG_CONTEXT_ID] = user_id
    if attributes:
        span_attrs.update(attributes)
    span = _tracer.start_span(
        name, context=_parent_context(trace_id, span_id), attributes=span_attrs
    )
    try:
        span.add_event(sc.EVENT_GEN_AI_EVALUATION_RESULT, event)
    finally:
        span.end()
