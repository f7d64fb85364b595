"""No OpenTelemetry failure ever reaches a caller, and the call's own outcome never changes.

Each test installs the real OpenTelemetry SDK (a TracerProvider and a MeterProvider routed to
vibesdk the way ``SpanCapture`` routes them) with one part that raises at one point: a span
processor's ``on_start`` or ``on_end``, a span method (set attribute(s), add event, record
exception, set status, end), a span exporter, or metric recording. Then Client and AsyncClient
run ``chat()`` and ``stream_chat()`` against real loopback backends in three outcomes -- the
assigned variant answers, it fails and stable answers, everything fails -- plus ``feedback()``
and ``report()``.
The caller must see exactly what it sees with healthy telemetry, the failure must be logged
once per kind on ``vibesdk.telemetry``, and whatever telemetry can still be kept is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import ExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util.types import Attributes

from tests.client_harness import Driver
from tests.telemetry_harness import ASK, USER, canary_document, loopback_backends
from vibesdk import AllBackendsFailedError
from vibesdk._telemetry import guard
from vibesdk._telemetry import semconv as sc
from vibesdk._telemetry.instruments import _bind
from vibesdk.testing import InMemoryFlagSource


class Boom(RuntimeError):
    """The failure every broken telemetry part raises."""


# -- broken parts of a real SDK pipeline ------------------------------------------------------


class _RaisesOnStart(SpanProcessor):
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        raise Boom("span processor on_start")


class _RaisesOnEnd(SpanProcessor):
    def on_end(self, span: ReadableSpan) -> None:
        raise Boom("span processor on_end")


class _BreaksSpanMethod(SpanProcessor):
    """Makes one method of every span it sees raise.

    The SDK's own span methods do not fail on demand; a vendor's span or a broken SDK
    build can, so this arms the real SDK span the tracer hands out.
    """

    def __init__(self, method: str) -> None:
        self.method = method

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        def broken(*args: Any, **kwargs: Any) -> None:
            raise Boom(f"span.{self.method}")

        setattr(span, self.method, broken)


class _RaisingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise Boom("span exporter")


class _RaisingExemplarFilter(ExemplarFilter):
    """Consulted by the SDK on every measurement, on the recording thread."""

    def should_sample(
        self, value: float, time_unix_nano: int, attributes: Attributes, context: Context
    ) -> bool:
        raise Boom("metric recording")


class Pipeline:
    """A real SDK tracer and meter provider, with an in-memory exporter first in line."""

    def __init__(
        self,
        fault: SpanProcessor | None = None,
        exemplar_filter: ExemplarFilter | None = None,
    ) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        # The exporter's processor runs before the broken one, so what the SDK hands it
        # before the fault shows what telemetry survived.
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        if fault is not None:
            self.tracer_provider.add_span_processor(fault)
        self.reader = InMemoryMetricReader()
        kwargs: dict[str, Any] = {}
        if exemplar_filter is not None:
            kwargs["exemplar_filter"] = exemplar_filter
        self.meter_provider = MeterProvider(metric_readers=[self.reader], **kwargs)

    def finished(self, name: str) -> list[ReadableSpan]:
        return [
            s
            for s in self.spans.get_finished_spans()
            if s.name == name or s.name.startswith(name + " ")
        ]


@contextmanager
def routed(pipeline: Pipeline) -> Iterator[Pipeline]:
    """vibesdk's telemetry goes to ``pipeline`` for the block (global providers untouched)."""
    previous = _bind(pipeline.tracer_provider, pipeline.meter_provider)
    try:
        yield pipeline
    finally:
        _bind(*previous)


FAULTS: dict[str, Callable[[], Pipeline]] = {
    "processor_on_start": lambda: Pipeline(_RaisesOnStart()),
    "processor_on_end": lambda: Pipeline(_RaisesOnEnd()),
    "set_attribute": lambda: Pipeline(_BreaksSpanMethod("set_attribute")),
    "set_attributes": lambda: Pipeline(_BreaksSpanMethod("set_attributes")),
    "add_event": lambda: Pipeline(_BreaksSpanMethod("add_event")),
    "record_exception": lambda: Pipeline(_BreaksSpanMethod("record_exception")),
    "set_status": lambda: Pipeline(_BreaksSpanMethod("set_status")),
    "end": lambda: Pipeline(_BreaksSpanMethod("end")),
    "is_recording": lambda: Pipeline(_BreaksSpanMethod("is_recording")),
    "get_span_context": lambda: Pipeline(_BreaksSpanMethod("get_span_context")),
    "span_exporter": lambda: Pipeline(SimpleSpanProcessor(_RaisingExporter())),
    "metric_recording": lambda: Pipeline(exemplar_filter=_RaisingExemplarFilter()),
}


# -- real loopback backends ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, str]]:
    with loopback_backends() as urls:
        yield urls


FLAGS = {
    "answers": ("good", "good"),
    "falls-back": ("good", "bad"),
    "all-fail": ("bad", "bad"),
}


@pytest.fixture
def driver(kind: str, backends: dict[str, str]) -> Iterator[Driver]:
    d = Driver(kind, flag_source=InMemoryFlagSource(canary_document(backends, FLAGS)), cache_dir="")
    try:
        yield d
    finally:
        d.dispose()


@pytest.fixture(autouse=True)
def _fresh_warnings() -> Iterator[None]:
    # "once per kind" is per process: forget earlier tests' kinds so each test sees its own.
    guard._warned.clear()
    yield
    guard._warned.clear()


def _exercise(d: Driver) -> None:
    """Every call path a user has, asserting the outcome a healthy pipeline gives."""
    result = d.chat("answers", USER, ASK)
    assert (result.text, result.variant, result.fallback) == ("391", "canary", False)
    chunks = d.stream("answers", USER, ASK)
    assert chunks[-1].result is not None
    assert chunks[-1].result.text == "391"

    fell_back = d.chat("falls-back", USER, ASK)
    assert (fell_back.text, fell_back.variant, fell_back.fallback) == ("391", "stable", True)
    assert fell_back.fallback_reason == "http_503"
    streamed = d.stream("falls-back", USER, ASK)[-1].result
    assert streamed is not None
    assert (streamed.text, streamed.fallback) == ("391", True)

    with pytest.raises(AllBackendsFailedError):
        d.chat("all-fail", USER, ASK)
    with pytest.raises(AllBackendsFailedError):
        d.stream("all-fail", USER, ASK)

    d.feedback(result.trace_id, 4, comment="clear")
    d.feedback("0" * 31 + "1", 2)
    d.report(result.trace_id, reason="wrong")
    d.report("0" * 31 + "1")


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_telemetry_failure_never_changes_what_the_caller_gets(
    fault: str, driver: Driver, caplog: pytest.LogCaptureFixture
) -> None:
    """Answers, fallbacks and errors are the same with a broken pipeline; the break is logged."""
    with caplog.at_level(logging.DEBUG, logger="vibesdk"), routed(FAULTS[fault]()):
        _exercise(driver)
    if fault != "span_exporter":  # the SDK's processor catches its exporter's errors itself
        warned = [
            r for r in caplog.records if r.name == "vibesdk.telemetry" and r.levelno >= logging.WARN
        ]
        assert warned, "the failure was swallowed without a word"
        assert all("Boom" in r.getMessage() for r in warned)
        # Once per kind: far fewer warnings than the dozens of failing calls made.
        kinds = {r.getMessage().split(" failed")[0] for r in warned}
        assert len(warned) == len(kinds)


@pytest.mark.parametrize(
    "fault", ["set_attribute", "set_attributes", "add_event", "record_exception", "set_status"]
)
def test_a_span_whose_method_fails_is_still_ended_and_exported(fault: str, driver: Driver) -> None:
    """A failing attribute, event or status call costs that data only: every span still ends."""
    with routed(FAULTS[fault]()) as pipeline:
        driver.chat("falls-back", USER, ASK)
        driver.stream("falls-back", USER, ASK)
        with pytest.raises(AllBackendsFailedError):
            driver.chat("all-fail", USER, ASK)
    assert len(pipeline.finished("chat")) == 3
    assert len(pipeline.finished(sc.SPAN_ATTEMPT)) == 6


def test_a_processor_failing_in_on_end_still_lets_the_spans_before_it_export(
    driver: Driver,
) -> None:
    """The span ends, the processors ahead of the broken one get it, the caller its answer."""
    with routed(FAULTS["processor_on_end"]()) as pipeline:
        result = driver.chat("falls-back", USER, ASK)
        last = driver.stream("answers", USER, ASK)[-1].result
    assert result.fallback is True
    assert last is not None
    (first, second) = pipeline.finished("chat")
    assert first.attributes is not None
    assert first.attributes[sc.VIBESDK_FALLBACK] is True
    assert format(first.context.trace_id, "032x") == result.trace_id  # type: ignore[union-attr]
    assert second.attributes is not None
    assert second.attributes[sc.GEN_AI_REQUEST_STREAM] is True


def test_metric_recording_failures_cost_only_metrics(driver: Driver) -> None:
    """With every measurement failing, spans are still complete and nothing is recorded."""
    with routed(FAULTS["metric_recording"]()) as pipeline:
        driver.chat("falls-back", USER, ASK)
    (span,) = pipeline.finished("chat")
    assert span.attributes is not None
    assert span.attributes[sc.VIBESDK_FALLBACK] is True
    data = pipeline.reader.get_metrics_data()
    points = [
        p
        for rm in (data.resource_metrics if data else [])
        for sm in rm.scope_metrics
        for m in sm.metrics
        for p in m.data.data_points
    ]
    assert points == []
