"""The SDK routes: the document with ETag/304, the SSE stream, feedback and reports.

These are ``async``: the hot path (a 304 for an unchanged document) touches no
database and no thread. The SDK key alone selects the environment.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Header, Request, Response, Security
from fastapi.responses import StreamingResponse

from vibesdk_server._storage import SqlStore
from vibesdk_server._tokens import Principal

from ._auth import bearer, principal
from ._hub import Hub
from ._responses import ERRORS
from ._schemas import FeedbackBody, ReportBody

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["sdk"], dependencies=[Security(bearer)], responses=ERRORS)

_STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    # Tell reverse proxies (nginx) not to buffer the stream.
    "X-Accel-Buffering": "no",
}


def _env(who: Principal) -> str:
    assert who.environment is not None  # SDK keys always carry one
    return who.environment


def _parse_version(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip().removeprefix("W/").strip('"')
    return int(text) if text.isdigit() and len(text) < 16 else None


def _etag_matches(etag: str, if_none_match: str) -> bool:
    tags = {t.strip() for t in if_none_match.split(",")}
    return etag in tags or f"W/{etag}" in tags or "*" in tags


async def flags_fast_path(hub: Hub, who: Principal, scope: Any, send: Any) -> bool:
    """Answer ``GET /v1/flags`` straight from memory when the document is loaded.

    The same answer as the route below, minus FastAPI's routing and dependency
    work: the 304 that SDKs poll for most is the server's hottest path.
    Returns False (and sends nothing) when the route must handle the request.
    """
    if scope["method"] != "GET" or scope["path"] != "/v1/flags" or who.environment is None:
        return False
    published = hub.peek(who.environment)
    if published is None:
        return False
    etag = f'"{published.version}"'
    headers = [(b"etag", etag.encode()), (b"cache-control", b"no-cache")]
    if_none_match = next((v for k, v in scope["headers"] if k == b"if-none-match"), None)
    if if_none_match is not None and _etag_matches(etag, bytes(if_none_match).decode("latin-1")):
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return True
    body = published.document_json.encode()
    headers += [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return True


@router.get(
    "/flags",
    summary="The environment's current flag document",
    responses={
        200: {"description": 'The FlagDocument; ETag: "<version>"'},
        304: {"description": "If-None-Match matched the current version"},
    },
)
async def flags(
    request: Request,
    who: Annotated[Principal, Depends(principal)],
    if_none_match: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    hub: Hub = request.app.state.hub
    published, _ = await hub.current(_env(who))
    etag = f'"{published.version}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if if_none_match is not None and _etag_matches(etag, if_none_match):
        return Response(status_code=304, headers=headers)
    return Response(published.document_json, media_type="application/json", headers=headers)


@router.get(
    "/stream",
    summary="Server-sent events: every new document version",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream(
    request: Request,
    who: Annotated[Principal, Depends(principal)],
    last_event_id: Annotated[str | None, Header(max_length=40)] = None,
) -> StreamingResponse:
    hub: Hub = request.app.state.hub
    env = _env(who)
    heartbeat_s: float = request.app.state.heartbeat_s
    await hub.current(env)  # load before streaming, so a bad environment fails here
    seen = _parse_version(last_event_id)

    async def events() -> AsyncIterator[bytes]:
        sent = -1 if seen is None else seen
        # Subscribe before reading the current version: a version published in
        # between is then in the queue, and `sent` filters the duplicate.
        sub = hub.subscribe(env)
        try:
            yield b"retry: 1000\n\n"
            published, event = await hub.current(env)
            if published.version > sent:
                yield event
                sent = published.version
            while True:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), heartbeat_s)
                except asyncio.TimeoutError:
                    yield b": ping\n\n"
                    continue
                if item is None:
                    return
                version, event = item
                if version > sent:
                    yield event
                    sent = version
        finally:
            hub.unsubscribe(sub)

    return StreamingResponse(events(), media_type="text/event-stream", headers=_STREAM_HEADERS)


@router.post("/feedback", status_code=202, summary="A user's feedback on one answer")
async def feedback(
    request: Request, body: FeedbackBody, who: Annotated[Principal, Depends(principal)]
) -> dict[str, Any]:
    store: SqlStore = request.app.state.store
    await anyio.to_thread.run_sync(store.add_feedback, _env(who), who.name, body.model_dump())
    return {"accepted": True}


@router.post("/report", status_code=202, summary="A user's report of one answer")
async def report(
    request: Request, body: ReportBody, who: Annotated[Principal, Depends(principal)]
) -> dict[str, Any]:
    store: SqlStore = request.app.state.store
    await anyio.to_thread.run_sync(store.add_report, _env(who), who.name, body.model_dump())
    return {"accepted": True}
