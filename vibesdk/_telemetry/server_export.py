"""A client's metrics to the flag server: the standard OTLP/HTTP exporter, on a provider of its own.

With ``server_url`` and ``sdk_key`` set (and the ``server_metrics`` setting on,
the default), a client records its metrics twice: as before, into whatever
OpenTelemetry setup the app has (nothing about it changes), and into a
MeterProvider that only this client uses, whose reader exports every
``server_metrics_interval_s`` to ``<server_url>/v1/otlp/v1/metrics`` with the
SDK key, as protobuf, gzip-compressed, in **delta** temporality. The flag server
keeps what its canary analysis needs from it.

The exporter (``opentelemetry-exporter-otlp-proto-http``) is imported only
when a client turns this on. Its export thread never touches the request path;
a failed export is retried and logged by the exporter, never raised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .guard import swallow
from .instruments import Metrics, TeeMetrics

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider

    from vibesdk._settings import Settings

__all__ = ["ROUTE", "ServerMetrics"]

#: Where a flag server takes OTLP metrics.
ROUTE = "/v1/otlp/v1/metrics"
_EXPORT_TIMEOUT_S = 5.0
_CLOSE_TIMEOUT_MS = 2000


class ServerMetrics:
    """The metrics one client records: the app's, plus the server's when it is on."""

    def __init__(self, settings: Settings, base: Metrics, *, enabled: bool = True) -> None:
        self.provider: MeterProvider | None = None
        self.metrics: Metrics = base
        key = settings.sdk_key
        if not (enabled and settings.server_metrics and settings.server_url and key):
            return
        self.provider = _provider(
            settings.server_url + ROUTE,
            key.get_secret_value(),
            interval_s=settings.server_metrics_interval_s,
        )
        self.metrics = TeeMetrics(base, self.provider)

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    def close(self) -> None:
        """Export what is left and stop the export thread (bounded by a couple of seconds)."""
        provider, self.provider = self.provider, None
        if provider is None:
            return
        try:
            provider.shutdown(timeout_millis=_CLOSE_TIMEOUT_MS)
        except Exception as exc:  # a failed last export must not break close()
            swallow("server metrics shutdown", exc)


def _provider(endpoint: str, key: str, *, interval_s: float) -> MeterProvider:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import (
        Counter,
        Histogram,
        MeterProvider,
        ObservableCounter,
        ObservableUpDownCounter,
        UpDownCounter,
    )
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.resources import Resource

    delta = AggregationTemporality.DELTA
    exporter = OTLPMetricExporter(
        endpoint=endpoint,
        headers={"Authorization": f"Bearer {key}"},
        compression=Compression.Gzip,
        timeout=_EXPORT_TIMEOUT_S,
        preferred_temporality={
            Counter: delta,
            Histogram: delta,
            ObservableCounter: delta,
            # Up-down counters stay cumulative, as the OTel spec recommends for delta exporters.
            UpDownCounter: AggregationTemporality.CUMULATIVE,
            ObservableUpDownCounter: AggregationTemporality.CUMULATIVE,
        },
    )
    reader = PeriodicExportingMetricReader(
        exporter, export_interval_millis=interval_s * 1000, export_timeout_millis=10_000
    )
    # An empty resource: what the server needs is on each point; the app's
    # OTEL_RESOURCE_ATTRIBUTES stay the app's.
    return MeterProvider(metric_readers=[reader], resource=Resource.get_empty())
