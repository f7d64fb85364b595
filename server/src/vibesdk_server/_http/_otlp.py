"""The OTLP/HTTP receivers: ``POST /v1/otlp/v1/metrics`` and ``/v1/otlp/v1/traces``, SDK key.

The SDK's OTLP exporters (or a Collector's ``otlphttp`` exporter with endpoint
``<server>/v1/otlp``) send their metrics (canary analysis) and the spans of logged
calls (the request log) here; the environment is the key's, never the payload's.
Answers as OTLP/HTTP says: 200 with an ``Export*ServiceResponse``
(``partial_success`` when data points or spans were refused), or 400/413/415 with a
``google.rpc.Status``, each in the request's own encoding (protobuf or JSON). A
refused request stores nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]  # no stubs published
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from vibesdk_server._domain._otlp import MAX_BODY, Decoded, OtlpError, decode_metrics
from vibesdk_server._domain._otlp_traces import DecodedSpans, decode_traces
from vibesdk_server._storage import SqlStore
from vibesdk_server._tokens import Principal

from ._auth import principal

__all__ = ["OtlpCounts", "Signal", "router"]

router = APIRouter(prefix="/v1/otlp")

_JSON = "application/json"
_PROTOBUF = "application/x-protobuf"
# google.rpc.Code values for the statuses answered.
_CODES = {400: 3, 413: 8, 415: 3}  # INVALID_ARGUMENT, RESOURCE_EXHAUSTED


@dataclass
class Signal:
    """What one route received: requests, items (points or spans) stored and refused, and
    requests refused whole (unreadable bodies)."""

    requests: int = 0
    stored: int = 0
    refused: int = 0
    requests_refused: int = 0


class OtlpCounts:
    """What this replica received, per signal: metrics (points) and traces (spans)."""

    def __init__(self) -> None:
        self.metrics = Signal()
        self.traces = Signal()

    def as_dict(self) -> dict[str, int]:
        m, t = self.metrics, self.traces
        return {
            "requests": m.requests,
            "points_stored": m.stored,
            "points_refused": m.refused,
            "requests_refused": m.requests_refused,
            "trace_requests": t.requests,
            "spans_stored": t.stored,
            "spans_refused": t.refused,
            "trace_requests_refused": t.requests_refused,
        }


def _encoded(message: Message, as_json: bool, status: int) -> Response:
    if as_json:
        return Response(json_format.MessageToJson(message), status_code=status, media_type=_JSON)
    return Response(message.SerializeToString(), status_code=status, media_type=_PROTOBUF)


_MESSAGE: dict[str, Any] = {"content": {_PROTOBUF: {}, _JSON: {}}}


def _documented(what: str, answer: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {"description": answer, **_MESSAGE},
        400: {"description": f"not an OTLP {what} export (google.rpc.Status)", **_MESSAGE},
        413: {"description": "body too large (google.rpc.Status)", **_MESSAGE},
        415: {"description": "unsupported content type or encoding", **_MESSAGE},
    }


class _Decoded(Protocol):
    @property
    def rejected(self) -> int: ...
    @property
    def message(self) -> str: ...


_D = TypeVar("_D", bound=_Decoded)


async def _receive(
    request: Request,
    who: Principal,
    *,
    signal: Signal,
    decode: Callable[[bytes, str | None, str | None], _D],
    keep: Callable[[SqlStore, str, _D], int],
    answer: Message,
) -> Response:
    """Read, decode and keep one export; ``answer`` (its response message), filled in."""
    signal.requests += 1
    content_type = request.headers.get("content-type")
    as_json = (content_type or "").split(";")[0].strip().lower() == _JSON
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            break
    try:
        decoded = decode(body, content_type, request.headers.get("content-encoding"))
    except OtlpError as exc:
        signal.requests_refused += 1
        status = Status(code=_CODES.get(exc.status, 3), message=exc.message)
        return _encoded(status, as_json, exc.status)
    assert who.environment is not None  # only SDK keys reach these routes
    store: SqlStore = request.app.state.store
    signal.stored += await anyio.to_thread.run_sync(keep, store, who.environment, decoded)
    signal.refused += decoded.rejected
    if decoded.rejected:
        partial = answer.partial_success  # type: ignore[attr-defined]  # both responses have it
        if isinstance(answer, ExportMetricsServiceResponse):
            partial.rejected_data_points = decoded.rejected
        else:
            partial.rejected_spans = decoded.rejected
        partial.error_message = decoded.message
    return _encoded(answer, as_json, 200)


@router.post(
    "/v1/metrics",
    summary="OpenTelemetry metrics from SDKs (OTLP/HTTP)",
    response_class=Response,
    responses=_documented("metrics", "ExportMetricsServiceResponse"),
)
async def metrics(request: Request, who: Annotated[Principal, Depends(principal)]) -> Response:
    def keep(store: SqlStore, environment: str, decoded: Decoded) -> int:
        return store.add_points(environment, decoded.points)

    counts: OtlpCounts = request.app.state.otlp
    return await _receive(
        request,
        who,
        signal=counts.metrics,
        decode=decode_metrics,
        keep=keep,
        answer=ExportMetricsServiceResponse(),
    )


@router.post(
    "/v1/traces",
    summary="Logged calls from SDKs, as OpenTelemetry spans (OTLP/HTTP): the request log",
    response_class=Response,
    responses=_documented("traces", "ExportTraceServiceResponse"),
)
async def traces(request: Request, who: Annotated[Principal, Depends(principal)]) -> Response:
    retention = request.app.state.request_log

    def keep(store: SqlStore, environment: str, decoded: DecodedSpans) -> int:
        return store.add_requests(environment, decoded.entries, retention)

    counts: OtlpCounts = request.app.state.otlp
    return await _receive(
        request,
        who,
        signal=counts.traces,
        decode=decode_traces,
        keep=keep,
        answer=ExportTraceServiceResponse(),
    )
