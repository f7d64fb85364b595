"""JSON-lines files for `configure_telemetry("file")`: the OTel SDK's console exporters, to a file.

Each span is one line of the SDK's own span JSON (``ReadableSpan.to_json``:
``name``, ``context.trace_id``/``span_id``, ``parent_id``, ``start_time``/
``end_time``, ``status``, ``attributes``, ``events``, ``links``, ``resource``);
each metrics collection one line of the SDK's ``MetricsData`` JSON. The console
exporters write with ``out=`` and ``formatter=``; these subclasses only own the
file, and close it at shutdown.
"""

from __future__ import annotations

from pathlib import Path

from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

__all__ = ["JsonLinesMetricExporter", "JsonLinesSpanExporter"]


def _span_line(span: ReadableSpan) -> str:
    return str(span.to_json(indent=None)) + "\n"


def _metrics_line(metrics_data: MetricsData) -> str:
    return metrics_data.to_json(indent=None) + "\n"


class JsonLinesSpanExporter(ConsoleSpanExporter):
    """Append each finished span to ``path`` as one line of JSON (``jq``-friendly)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = self.path.open("a", encoding="utf-8")
        super().__init__(out=self._file, formatter=_span_line)

    def shutdown(self) -> None:
        super().shutdown()
        self._file.close()


class JsonLinesMetricExporter(ConsoleMetricExporter):
    """Append each metrics collection to ``path`` as one line of JSON."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("a", encoding="utf-8")
        super().__init__(out=self._file, formatter=_metrics_line)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        super().shutdown(timeout_millis=timeout_millis, **kwargs)
        self._file.close()
