"""``vibesdk.configure_telemetry``: the one explicit call that sets up OpenTelemetry export.

vibesdk never configures OpenTelemetry on its own: an app that already runs
an OpenTelemetry SDK gets vibesdk's spans and metrics through it with no call
at all. Apps and demos that have no setup of their own call this once at
start-up.

What happens to a provider the host already installed (OpenTelemetry lets a
process install each global provider only once, so nothing may replace it):

* an SDK ``TracerProvider`` / ``MeterProvider`` is kept, and the new exporter
  is *added* to it (a span processor / a metric reader; adding a reader needs
  opentelemetry-sdk >= 1.34). The host's pipeline keeps working and vibesdk's
  telemetry -- and the host's -- also goes to the new exporter. A warning is
  logged on ``vibesdk.telemetry`` saying so.
* any other provider (a vendor's, or a deliberate no-op) cannot take an
  exporter, so vibesdk's *own* telemetry is routed to a private SDK provider
  with the new exporter, and the host's provider is left untouched (warning
  logged).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias

from vibesdk._errors import ConfigError

from .instruments import _bind

if TYPE_CHECKING:
    # The SDK is imported only when configure_telemetry() runs: `import vibesdk` stays light.
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        HistogramDataPoint,
        MetricExporter,
        MetricReader,
        MetricsData,
        NumberDataPoint,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    DataPoint: TypeAlias = NumberDataPoint | HistogramDataPoint

__all__ = ["Exporter", "TelemetryHandle", "configure_telemetry"]

_logger = logging.getLogger("vibesdk.telemetry")

Exporter = Literal["console", "otlp", "memory", "file"]
_EXPORTERS = ("console", "otlp", "memory", "file")
DEFAULT_FILE = "vibesdk-spans.jsonl"
DEFAULT_SERVICE_NAME = "vibesdk-app"


class TelemetryHandle:
    """What :func:`vibesdk.configure_telemetry` set up.

    ``spans()`` / ``metrics()`` read the in-memory exporter (``"memory"``
    only; other exporters return empty results). ``force_flush()`` pushes
    buffered telemetry out now; ``shutdown()`` flushes and stops this export
    (call it at exit -- it also runs at interpreter exit for providers vibesdk
    installed). ``attached`` is true when the exporter was added to a provider
    the host had already installed.
    """

    def __init__(
        self,
        *,
        exporter: str,
        tracer_provider: TracerProvider,
        meter_provider: MeterProvider,
        span_processor: SpanProcessor,
        metric_reader: MetricReader,
        owns_tracer_provider: bool,
        owns_meter_provider: bool,
        memory_spans: InMemorySpanExporter | None = None,
        path: Path | None = None,
        metrics_path: Path | None = None,
    ) -> None:
        self.exporter = exporter
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.path = path
        self.metrics_path = metrics_path
        self._span_processor = span_processor
        self._metric_reader = metric_reader
        self._owns_tracer_provider = owns_tracer_provider
        self._owns_meter_provider = owns_meter_provider
        self._memory_spans = memory_spans
        self._shut_down = False

    @property
    def attached(self) -> bool:
        """True when this export was added to a provider the host had installed already."""
        return not (self._owns_tracer_provider and self._owns_meter_provider)

    def spans(self) -> tuple[ReadableSpan, ...]:
        """Finished spans held in memory (``exporter="memory"``), oldest first."""
        if self._memory_spans is None:
            return ()
        return tuple(self._memory_spans.get_finished_spans())

    def metrics_data(self) -> MetricsData | None:
        """The SDK's raw cumulative metrics (``exporter="memory"``), or ``None``."""
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        if not isinstance(self._metric_reader, InMemoryMetricReader):
            return None
        return self._metric_reader.get_metrics_data()

    def metrics(self) -> dict[str, list[DataPoint]]:
        """Current metric data points by metric name (``exporter="memory"``; else ``{}``)."""
        from opentelemetry.sdk.metrics.export import HistogramDataPoint, NumberDataPoint

        result: dict[str, list[DataPoint]] = {}
        data = self.metrics_data()
        if data is None:
            return result
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    points = result.setdefault(metric.name, [])
                    points.extend(
                        p
                        for p in metric.data.data_points
                        if isinstance(p, (NumberDataPoint, HistogramDataPoint))
                    )
        return result

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Export everything buffered now; False if an exporter did not finish in time."""
        millis = int(timeout_s * 1000)
        ok = True
        try:
            ok = self._span_processor.force_flush(millis) and ok
            ok = self._metric_reader.force_flush(millis) and ok
        except Exception as exc:  # telemetry never breaks the app
            _logger.warning("vibesdk telemetry: force_flush failed: %r", exc)
            return False
        return ok

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Flush and stop this export. Idempotent; never raises."""
        if self._shut_down:
            return
        self._shut_down = True
        # A reader with no export interval (console) only exports when flushed.
        self.force_flush(timeout_s)
        try:
            if self._owns_tracer_provider:
                self.tracer_provider.shutdown()
            else:
                self._span_processor.shutdown()
            if self._owns_meter_provider:
                self.meter_provider.shutdown(timeout_millis=timeout_s * 1000)
            else:
                remove = getattr(self.meter_provider, "remove_metric_reader", None)
                if remove is not None:
                    remove(self._metric_reader)
                self._metric_reader.shutdown(timeout_millis=timeout_s * 1000)
        except Exception as exc:
            _logger.warning("vibesdk telemetry: shutdown failed: %r", exc)


def _otlp_base(endpoint: str | None) -> str | None:
    if endpoint is None:
        return None
    base = endpoint.rstrip("/")
    for suffix in ("/v1/traces", "/v1/metrics"):
        base = base.removesuffix(suffix)
    return base


def _make_exporters(
    exporter: str, endpoint: str | None, file_path: Path | None, headers: dict[str, str] | None
) -> tuple[SpanExporter, MetricExporter | None, bool]:
    """(span exporter, metric exporter or None for in-memory, batch spans?)."""
    if exporter == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(), ConsoleMetricExporter(), False
    if exporter == "memory":
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        return InMemorySpanExporter(), None, False
    if exporter == "file":
        from .exporters import JsonLinesMetricExporter, JsonLinesSpanExporter

        assert file_path is not None
        metrics_path = file_path.with_name(file_path.stem + ".metrics" + file_path.suffix)
        return JsonLinesSpanExporter(file_path), JsonLinesMetricExporter(metrics_path), True
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise ConfigError(
            "exporter='otlp' needs opentelemetry-exporter-otlp-proto-http, a dependency of vibesdk "
            "missing from this environment: pip install opentelemetry-exporter-otlp-proto-http"
        ) from exc
    base = _otlp_base(endpoint)
    # With no endpoint the exporters read OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]ENDPOINT
    # themselves (default http://localhost:4318), as every OpenTelemetry SDK does.
    spans = OTLPSpanExporter(
        endpoint=None if base is None else base + "/v1/traces", headers=headers
    )
    metric_exporter = OTLPMetricExporter(
        endpoint=None if base is None else base + "/v1/metrics", headers=headers
    )
    return spans, metric_exporter, True


def configure_telemetry(
    exporter: Exporter = "console",
    *,
    endpoint: str | None = None,
    path: str | Path | None = None,
    service_name: str | None = None,
    headers: dict[str, str] | None = None,
    metric_interval_s: float | None = None,
) -> TelemetryHandle:
    """Install an OpenTelemetry SDK tracer and meter provider that export vibesdk's telemetry.

    ``exporter``:

    * ``"console"`` -- spans printed to stdout as they end; metrics printed at
      ``force_flush()``/``shutdown()`` (and every ``metric_interval_s`` if given).
    * ``"file"`` -- one JSON line per span appended to ``path`` (default
      ``vibesdk-spans.jsonl``), metrics every 10 s to ``<stem>.metrics<suffix>``
      beside it; read them with ``jq``.
    * ``"otlp"`` -- OTLP over HTTP/protobuf to ``endpoint`` (the collector's
      base URL, e.g. ``http://127.0.0.1:4318``; ``/v1/traces`` and
      ``/v1/metrics`` are appended), or where ``OTEL_EXPORTER_OTLP_ENDPOINT``
      says; the exporter (opentelemetry-exporter-otlp-proto-http) comes with
      vibesdk and is imported only here. Spans are batched.
    * ``"memory"`` -- kept in memory for :meth:`TelemetryHandle.spans` /
      :meth:`TelemetryHandle.metrics`.

    ``service_name`` sets the ``service.name`` resource attribute; without it,
    ``OTEL_SERVICE_NAME`` (or ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``)
    applies, else ``"vibesdk-app"``. Other ``OTEL_RESOURCE_ATTRIBUTES`` are
    kept, and the SDK's own variables (sampler, OTLP endpoint/headers) work
    as usual.

    Raises :class:`vibesdk.ConfigError` for a bad argument combination or a
    missing OTLP package, before anything is installed. If the host already
    installed providers, see the module notes: the exporter is added to
    them, never replacing them.
    """
    if exporter not in _EXPORTERS:
        raise ConfigError(f"exporter must be one of {', '.join(_EXPORTERS)}; got {exporter!r}")
    if endpoint is not None and exporter != "otlp":
        raise ConfigError("endpoint= applies only to exporter='otlp'")
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise ConfigError(
            f"endpoint must be an http:// or https:// URL (the collector's OTLP/HTTP base URL, "
            f"e.g. http://127.0.0.1:4318); got {endpoint!r}"
        )
    if path is not None and exporter != "file":
        raise ConfigError("path= applies only to exporter='file'")
    if headers is not None and exporter != "otlp":
        raise ConfigError("headers= applies only to exporter='otlp'")
    if metric_interval_s is not None and not metric_interval_s > 0:
        raise ConfigError("metric_interval_s must be a positive number of seconds")
    if service_name is not None and not service_name.strip():
        raise ConfigError("service_name must not be empty")
    file_path = Path(path if path is not None else DEFAULT_FILE) if exporter == "file" else None
    if file_path is not None and not file_path.parent.exists():
        raise ConfigError(f"path {str(file_path)!r}: directory {str(file_path.parent)!r} not found")

    from opentelemetry.sdk.metrics.export import (
        InMemoryMetricReader,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    span_exporter, metric_exporter, batch = _make_exporters(exporter, endpoint, file_path, headers)
    processor: SpanProcessor = (
        BatchSpanProcessor(span_exporter, schedule_delay_millis=1000)
        if batch
        else SimpleSpanProcessor(span_exporter)
    )
    reader: MetricReader
    if metric_exporter is None:
        reader = InMemoryMetricReader()
    else:
        default_interval = math.inf if exporter == "console" else 10.0
        interval_s = metric_interval_s if metric_interval_s is not None else default_interval
        reader = PeriodicExportingMetricReader(
            metric_exporter, export_interval_millis=interval_s * 1000
        )
    # The SDK merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; an explicit
    # service_name beats them, and "vibesdk-app" replaces the SDK's "unknown_service".
    resource = Resource.create({} if service_name is None else {"service.name": service_name})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": DEFAULT_SERVICE_NAME}))

    tracer_provider, owns_tracer = _install_tracer_provider(processor, resource)
    meter_provider, owns_meter = _install_meter_provider(reader, resource)
    return TelemetryHandle(
        exporter=exporter,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        span_processor=processor,
        metric_reader=reader,
        owns_tracer_provider=owns_tracer,
        owns_meter_provider=owns_meter,
        memory_spans=span_exporter if isinstance(span_exporter, InMemorySpanExporter) else None,
        path=file_path,
        metrics_path=getattr(metric_exporter, "path", None),
    )


def _install_tracer_provider(
    processor: SpanProcessor, resource: Resource
) -> tuple[TracerProvider, bool]:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        _logger.warning(
            "vibesdk.configure_telemetry: a TracerProvider is already installed; "
            "adding the exporter to it instead of replacing it"
        )
        current.add_span_processor(processor)
        return current, False
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(processor)
    # Succeeds unless the host installed a non-SDK provider (then OpenTelemetry logs why).
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is provider:
        return provider, True
    _logger.warning(
        "vibesdk.configure_telemetry: the installed TracerProvider (%s) cannot take an "
        "exporter; vibesdk's own spans go to the new exporter, the host's provider is untouched",
        type(trace.get_tracer_provider()).__name__,
    )
    _bind_vibesdk(tracer_provider=provider)
    return provider, True


def _install_meter_provider(reader: MetricReader, resource: Resource) -> tuple[MeterProvider, bool]:
    from opentelemetry import metrics as otel_metrics
    from opentelemetry.sdk.metrics import MeterProvider

    current = otel_metrics.get_meter_provider()
    if isinstance(current, MeterProvider) and hasattr(current, "add_metric_reader"):
        _logger.warning(
            "vibesdk.configure_telemetry: a MeterProvider is already installed; "
            "adding the reader to it instead of replacing it"
        )
        current.add_metric_reader(reader)
        return current, False
    provider = MeterProvider(metric_readers=[reader], resource=resource)
    otel_metrics.set_meter_provider(provider)
    if otel_metrics.get_meter_provider() is provider:
        return provider, True
    _logger.warning(
        "vibesdk.configure_telemetry: the installed MeterProvider (%s) cannot take a reader; "
        "vibesdk's own metrics go to the new exporter, the host's provider is untouched",
        type(otel_metrics.get_meter_provider()).__name__,
    )
    _bind_vibesdk(meter_provider=provider)
    return provider, True


def _bind_vibesdk(
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: otel_metrics.MeterProvider | None = None,
) -> None:
    """Route only vibesdk's telemetry to a private provider, keeping the other current binding."""
    from .instruments import _binding

    _bind(
        tracer_provider if tracer_provider is not None else _binding.tracer_provider,
        meter_provider if meter_provider is not None else _binding.meter_provider,
    )
