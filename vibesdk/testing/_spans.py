"""SpanCapture: vibesdk's spans and metrics, in memory, for one test."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from vibesdk._telemetry.instruments import _bind

__all__ = ["SpanCapture"]

DataPoint = NumberDataPoint | HistogramDataPoint


class SpanCapture:
    """Record what vibesdk emits -- spans and metrics -- in memory, for the length of a ``with``.

    ::

        with SpanCapture() as capture:
            client.chat("vibethinker", user_id="u42", messages=[...])
        span = capture.find("chat")  # "chat {model}"
        assert span.attributes["feature_flag.result.variant"] == "canary"
        assert capture.metric_points("gen_ai.client.operation.duration")

    It installs its own SDK ``TracerProvider`` (with an in-memory exporter and
    a synchronous processor, so a span is visible as soon as it ends) and
    ``MeterProvider`` (with an in-memory reader), and routes *vibesdk's*
    telemetry to them. The process's global providers are left alone
    (OpenTelemetry lets a process set those only once, and the host's own
    spans keep going wherever they went), so captures can follow each other
    and nest freely; the previous routing is restored on exit. Spans the test
    itself opens still parent vibesdk's spans, since context is not
    per-provider. ``tracer_provider`` / ``meter_provider`` are exposed for
    code of your own that you want captured too.
    """

    def __init__(self) -> None:
        resource = Resource.create({"service.name": "vibesdk-test"})
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader], resource=resource)
        self._previous: (
            tuple[trace.TracerProvider | None, otel_metrics.MeterProvider | None] | None
        ) = None

    def __enter__(self) -> SpanCapture:
        self._previous = _bind(self.tracer_provider, self.meter_provider)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._previous is not None:
            _bind(*self._previous)
            self._previous = None

    # --- spans ---------------------------------------------------------------

    @property
    def spans(self) -> tuple[ReadableSpan, ...]:
        """Every finished span, oldest first."""
        return tuple(self.exporter.get_finished_spans())

    def find_all(self, name: str) -> list[ReadableSpan]:
        """Finished spans named ``name``, or ``name`` + a space + anything (``"chat"`` finds
        ``"chat qwen2"``)."""
        prefix = name + " "
        return [s for s in self.spans if s.name == name or s.name.startswith(prefix)]

    def find(self, name: str) -> ReadableSpan:
        """The first finished span :meth:`find_all` matches; ``LookupError`` naming the
        spans seen when there is none."""
        found = self.find_all(name)
        if not found:
            seen = sorted({s.name for s in self.spans})
            raise LookupError(f"no finished span named {name!r}; spans seen: {seen}")
        return found[0]

    def clear(self) -> None:
        """Forget the spans finished so far (metrics are cumulative and stay)."""
        self.exporter.clear()

    # --- metrics --------------------------------------------------------------

    def metric_points(
        self, name: str, attributes: Mapping[str, Any] | None = None
    ) -> list[DataPoint]:
        """The current data points of metric ``name`` (cumulative since the capture began).

        ``attributes`` keeps only the points whose attributes include all
        those key/value pairs, e.g. ``{"feature_flag.result.variant": "canary"}``.
        """
        data = self.reader.get_metrics_data()
        points: list[DataPoint] = []
        if data is None:
            return points
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        if isinstance(point, (NumberDataPoint, HistogramDataPoint)) and _matches(
                            point, attributes
                        ):
                            points.append(point)
        return points

    def metric_total(self, name: str, attributes: Mapping[str, Any] | None = None) -> float:
        """A counter's total, or a histogram's sum of recorded values, over matching points."""
        total = 0.0
        for point in self.metric_points(name, attributes):
            total += point.sum if isinstance(point, HistogramDataPoint) else point.value
        return total

    def metric_count(self, name: str, attributes: Mapping[str, Any] | None = None) -> int:
        """How many values a histogram recorded over matching points (counters: their total)."""
        count = 0
        for point in self.metric_points(name, attributes):
            count += point.count if isinstance(point, HistogramDataPoint) else int(point.value)
        return count


def _matches(point: DataPoint, wanted: Mapping[str, Any] | None) -> bool:
    if not wanted:
        return True
    have = point.attributes or {}
    return all(key in have and have[key] == value for key, value in wanted.items())
