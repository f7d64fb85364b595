"""The OTLP/HTTP metrics receiver: ``POST /v1/otlp/v1/metrics`` with an SDK key.

The SDK's OTLP exporter (or a Collector's ``otlphttp`` exporter with endpoint
``<server>/v1/otlp``) sends its metrics here; the environment is the key's,
never the payload's. Answers as OTLP/HTTP says: 200 with an
``ExportMetricsServiceResponse`` (``partial_success`` when data points were
refused), or 400/413/415 with a ``google.rpc.Status``, each in the request's own
encoding (protobuf or JSON). A refused request stores nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]  # no stubs published
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)

from vibesdk_server._domain._otlp import MAX_BODY, OtlpError, decode_metrics
from vibesdk_server._storage import SqlStore
from vibesdk_server._tokens import Principal

from ._auth import principal

__all__ = ["OtlpCounts", "router"]

router = APIRouter(prefix="/v1/otlp")

_JSON = "application/json"
_PROTOBUF = "application/x-protobuf"
# google.rpc.Code values for the statuses answered.
_CODES = {400: 3, 413: 8, 415: 3}  # INVALID_ARGUMENT, RESOURCE_EXHAUSTED


class OtlpCounts:
    """What this replica received: requests, points stored, points and requests refused."""

    def __init__(self) -> None:
        self.requests = 0
        self.points_stored = 0
        self.points_refused = 0
        self.requests_refused = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


def _encoded(message: Message, as_json: bool, status: int) -> Response:
    if as_json:
        return Response(json_format.MessageToJson(message), status_code=status, media_type=_JSON)
    return Response(message.SerializeToString(), status_code=status, media_type=_PROTOBUF)


_MESSAGE: dict[str, Any] = {"content": {_PROTOBUF: {}, _JSON: {}}}


@router.post(
    "/v1/metrics",
    summary="OpenTelemetry metrics from SDKs (OTLP/HTTP)",
    response_class=Response,
    responses={
        200: {"description": "ExportMetricsServiceResponse", **_MESSAGE},
        400: {"description": "not an OTLP metrics export (google.rpc.Status)", **_MESSAGE},
        413: {"description": "body too large (google.rpc.Status)", **_MESSAGE},
        415: {"description": "unsupported content type or encoding", **_MESSAGE},
    },
)
async def metrics(request: Request, who: Annotated[Principal, Depends(principal)]) -> Response:
    counts: OtlpCounts = request.app.state.otlp
    counts.requests += 1
    content_type = request.headers.get("content-type")
    as_json = (content_type or "").split(";")[0].strip().lower() == _JSON
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            break
    try:
        decoded = decode_metrics(body, content_type, request.headers.get("content-encoding"))
    except OtlpError as exc:
        counts.requests_refused += 1
        status = Status(code=_CODES.get(exc.status, 3), message=exc.message)
        return _encoded(status, as_json, exc.status)
    assert who.environment is not None  # only SDK keys reach this route
    store: SqlStore = request.app.state.store
    stored = await anyio.to_thread.run_sync(store.add_points, who.environment, decoded.points)
    counts.points_stored += stored
    counts.points_refused += decoded.rejected
    answer = ExportMetricsServiceResponse()
    if decoded.rejected:
        answer.partial_success.rejected_data_points = decoded.rejected
        answer.partial_success.error_message = decoded.message
    return _encoded(answer, as_json, 200)
