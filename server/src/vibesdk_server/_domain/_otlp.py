"""OTLP metrics in, per-(flag, variant, interval) measurement points out. Pure: no I/O.

An SDK (or an OpenTelemetry Collector's ``otlphttp`` exporter) POSTs an
``ExportMetricsServiceRequest`` to ``/v1/otlp/v1/metrics``, as protobuf or as
OTLP/JSON, gzip-compressed or not. What canary analysis needs is kept: the data
points of the metrics vibesdk records (:data:`KEPT_METRICS`) that name a flag and
a variant, each reduced to a count, a sum and, for histograms, the bucket
counts, with the few attributes analysis splits by (:data:`KEPT_LABELS`). Every
other metric and data point is ignored, not refused: a Collector may send this
server everything it receives.

Only **delta** temporality is taken (the SDK exports delta): a cumulative sum
or histogram cannot be turned into intervals without per-series state, so its
points are refused and reported in the response's ``partial_success``.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
)

__all__ = [
    "INTERVAL_S",
    "KEPT_LABELS",
    "KEPT_METRICS",
    "MAX_BODY",
    "Decoded",
    "OtlpError",
    "Point",
    "attributes",
    "decode_metrics",
    "parse_export",
]

#: Measurements are kept per 10 s interval (of the data point's end time).
INTERVAL_S = 10
#: Largest request body accepted, compressed or not, and largest once decompressed.
MAX_BODY = 4 * 1024 * 1024
MAX_DECOMPRESSED = 16 * 1024 * 1024

#: The metrics vibesdk records that canary analysis reads.
KEPT_METRICS = frozenset(
    {
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.time_to_first_chunk",
        "vibesdk.fallbacks",
        "vibesdk.quality.failures",
        "vibesdk.feedback.score",
        "vibesdk.reports",
        "vibesdk.exposures",
    }
)
#: The attributes a point keeps besides its flag and variant (what analysis splits by).
KEPT_LABELS = (
    "error.type",
    "gen_ai.token.type",
    "vibesdk.attempt.failed",
    "vibesdk.client.id",  # on vibesdk.exposures: which SDK client counted the users
    "vibesdk.fallback",
    "vibesdk.fallback.reason",
    "vibesdk.quality.check",
    "vibesdk.step",  # on vibesdk.exposures: the flag's step the users were counted in
)
_FLAG = "feature_flag.key"
_VARIANT = "feature_flag.result.variant"
_DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
_M = TypeVar("_M", bound=Message)


class OtlpError(Exception):
    """The request as a whole cannot be read; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Point:
    """One data point, reduced: a counter's value is ``count`` and ``total``."""

    flag_key: str
    variant: str
    interval_start: int  # unix seconds, a multiple of INTERVAL_S
    metric: str
    labels: str  # "k=v,k=v" of KEPT_LABELS present, sorted; "" for none
    count: float
    total: float
    bounds: tuple[float, ...] = ()
    buckets: tuple[int, ...] = ()


@dataclass(frozen=True)
class Decoded:
    points: list[Point]
    rejected: int  # data points of kept metrics refused (cumulative temporality)
    ignored: int  # data points not kept: other metrics, or no flag and variant
    message: str  # why points were rejected ("" when none were)


def read_body(body: bytes, encoding: str | None) -> bytes:
    """The request body, decompressed (``gzip``, ``deflate`` or none), within the limits."""
    coding = (encoding or "").strip().lower()
    if coding in ("", "identity"):
        return body
    if coding not in ("gzip", "deflate"):
        raise OtlpError(415, f"unsupported Content-Encoding {encoding!r}: send gzip or none")
    try:
        if coding == "gzip":
            decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        else:
            decompressor = zlib.decompressobj()
        data = decompressor.decompress(body, MAX_DECOMPRESSED + 1)
    except zlib.error as exc:
        raise OtlpError(400, f"the body is not valid {coding}: {exc}") from None
    if len(data) > MAX_DECOMPRESSED:
        raise OtlpError(413, f"the body decompresses to more than {MAX_DECOMPRESSED} bytes")
    return data


def parse_export(
    message: _M, what: str, body: bytes, content_type: str | None, encoding: str | None
) -> _M:
    """Fill ``message`` (an empty OTLP export request) from the body; :class:`OtlpError` if not.

    ``what`` names the export in the error (``metrics``, ``traces``).
    """
    if len(body) > MAX_BODY:
        raise OtlpError(413, f"the body is over {MAX_BODY} bytes: export more often")
    data = read_body(body, encoding)
    kind = (content_type or "").split(";")[0].strip().lower()
    try:
        if kind == "application/x-protobuf":
            message.ParseFromString(data)
        elif kind == "application/json":
            decoded = json.loads(data.decode("utf-8"))
            json_format.ParseDict(_ids_as_base64(decoded), message, ignore_unknown_fields=True)
        else:
            raise OtlpError(
                415,
                f"unsupported Content-Type {content_type!r}: "
                "send application/x-protobuf or application/json (OTLP/HTTP)",
            )
    except (DecodeError, json_format.ParseError, ValueError) as exc:
        raise OtlpError(400, f"the body is not an OTLP {what} export ({kind}): {exc}") from None
    return message


_ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId"})


def _ids_as_base64(value: Any) -> Any:
    """OTLP/JSON writes trace and span ids as hex, where protobuf's JSON mapping reads base64."""
    if isinstance(value, dict):
        return {
            key: _id(key, item)
            if key in _ID_FIELDS and isinstance(item, str)
            else _ids_as_base64(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_ids_as_base64(item) for item in value]
    return value


def _id(key: str, text: str) -> str:
    try:
        return base64.b64encode(bytes.fromhex(text)).decode("ascii")
    except ValueError:
        raise OtlpError(
            400, f"{key} {text[:40]!r} is not hex: OTLP/JSON writes ids as hex"
        ) from None


def decode_metrics(body: bytes, content_type: str | None, encoding: str | None) -> Decoded:
    """Parse an OTLP metrics export; raise :class:`OtlpError` for a body that cannot be read."""
    request = parse_export(ExportMetricsServiceRequest(), "metrics", body, content_type, encoding)
    return _points(request)


def _points(request: ExportMetricsServiceRequest) -> Decoded:
    points: list[Point] = []
    rejected = ignored = 0
    for resource_metrics in request.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                field = metric.WhichOneof("data")
                kept = metric.name in KEPT_METRICS
                data_points: list[NumberDataPoint] | list[HistogramDataPoint]
                if field == "sum":
                    data_points = list(metric.sum.data_points)
                    delta = metric.sum.aggregation_temporality == _DELTA
                elif field == "histogram":
                    data_points = list(metric.histogram.data_points)
                    delta = metric.histogram.aggregation_temporality == _DELTA
                else:
                    ignored += _count_points(metric)
                    continue
                if not kept:
                    ignored += len(data_points)
                    continue
                for dp in data_points:
                    attrs = attributes(dp.attributes)
                    flag, variant = attrs.get(_FLAG), attrs.get(_VARIANT)
                    if not isinstance(flag, str) or not isinstance(variant, str):
                        ignored += 1
                        continue
                    if not delta:
                        rejected += 1
                        continue
                    points.append(_point(metric.name, dp, flag, variant, attrs))
    message = (
        f"{rejected} data point(s) refused: cumulative temporality; export delta "
        "(OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta)"
        if rejected
        else ""
    )
    return Decoded(points, rejected, ignored, message)


def _point(
    name: str,
    dp: NumberDataPoint | HistogramDataPoint,
    flag: str,
    variant: str,
    attrs: dict[str, object],
) -> Point:
    interval = dp.time_unix_nano // 1_000_000_000 // INTERVAL_S * INTERVAL_S
    labels = ",".join(f"{k}={_text(attrs[k])}" for k in KEPT_LABELS if k in attrs)
    if isinstance(dp, NumberDataPoint):
        value = float(dp.as_double if dp.WhichOneof("value") == "as_double" else dp.as_int)
        return Point(flag, variant, interval, name, labels, value, value)
    return Point(
        flag,
        variant,
        interval,
        name,
        labels,
        float(dp.count),
        float(dp.sum),
        tuple(float(b) for b in dp.explicit_bounds),
        tuple(int(c) for c in dp.bucket_counts),
    )


def _count_points(metric: Metric) -> int:
    field = metric.WhichOneof("data")
    return len(getattr(getattr(metric, field), "data_points", ())) if field else 0


def attributes(pairs: Iterable[KeyValue]) -> dict[str, object]:
    """OTLP attributes as a dict: scalars, and arrays of scalars as lists (others ``None``)."""
    return {pair.key: _value(pair.value) for pair in pairs}


def _value(value: AnyValue) -> object:
    which = value.WhichOneof("value")
    if which in ("string_value", "bool_value", "int_value", "double_value"):
        return getattr(value, which)
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    return None


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).replace(",", " ").replace("=", " ")
