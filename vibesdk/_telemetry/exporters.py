"""Exporters that write OpenTelemetry data as JSON lines, for `configure_telemetry("file")`."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ["JsonLinesMetricExporter", "JsonLinesSpanExporter"]


class JsonLinesSpanExporter(SpanExporter):
    """Append each finished span to a file as one line of JSON (``jq``-friendly).

    Each line is the SDK's own span JSON (``ReadableSpan.to_json``) on one
    line: ``name``, ``context.trace_id``/``span_id``, ``parent_id``,
    ``start_time``/``end_time`` (ISO 8601), ``status``, ``attributes``,
    ``events``, ``links`` and ``resource``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(span.to_json(indent=None) + "\n" for span in spans)
        with self._lock:
            if self._file is None:
                return SpanExportResult.FAILURE
            self._file.write(lines)
            self._file.flush()
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class JsonLinesMetricExporter(MetricExporter):
    """Append each metrics collection to a file as one line of JSON (the SDK's MetricsData JSON)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._lock = threading.Lock()
        self._file: IO[str] | None = path.open("a", encoding="utf-8")

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object
    ) -> MetricExportResult:
        line = metrics_data.to_json(indent=None)
        with self._lock:
            if self._file is None:
                return MetricExportResult.FAILURE
            self._file.write(line + "\n")
            self._file.flush()
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
