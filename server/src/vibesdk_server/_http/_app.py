"""The FastAPI application: routes, error mapping, the SSE hub and (PostgreSQL) the listener."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry._logs import LoggerProvider

from vibesdk_server import __version__
from vibesdk_server._domain._errors import ServerError
from vibesdk_server._eval.schedule import DEFAULT_EVAL_SCHEDULE_CHECK_S, Scheduler
from vibesdk_server._guard.loop import DEFAULT_GUARD_INTERVAL_S, Guard
from vibesdk_server._guard.sources import MetricsSource
from vibesdk_server._storage import SqlStore
from vibesdk_server._storage._measurements import (
    DEFAULT_MEASUREMENT_RETENTION,
    MeasurementRetention,
)
from vibesdk_server._storage._requestlog import DEFAULT_RETENTION, Retention
from vibesdk_server._ui import SESSION_TTL_S as UI_SESSION_TTL_S
from vibesdk_server._ui import install as install_ui

from ._admin import router as admin_router
from ._auth import AuthMiddleware
from ._eval import router as eval_router
from ._eval_schedule import router as eval_schedule_router
from ._hub import Hub
from ._otlp import OtlpCounts
from ._otlp import router as otlp_router
from ._releases import router as releases_router
from ._review import router as review_router
from ._sdk import flags_fast_path
from ._sdk import router as sdk_router
from ._yaml import YamlBodyMiddleware

__all__ = ["create_app"]

log = logging.getLogger("vibesdk_server")


def create_app(
    store: SqlStore,
    *,
    heartbeat_s: float = 15.0,
    refresh_s: float = 5.0,
    auth_cache_s: float = 5.0,
    allow_self_review: bool = False,
    guard_interval_s: float = DEFAULT_GUARD_INTERVAL_S,
    ui_session_ttl_s: float = UI_SESSION_TTL_S,
    request_log: Retention = DEFAULT_RETENTION,
    metrics_source: MetricsSource | None = None,
    logger_provider: LoggerProvider | None = None,
    eval_schedule_check_s: float = DEFAULT_EVAL_SCHEDULE_CHECK_S,
    measurements: MeasurementRetention = DEFAULT_MEASUREMENT_RETENTION,
    prune_interval_s: float = 3600.0,
) -> FastAPI:
    """The flag server app over ``store``.

    ``heartbeat_s``: SSE comment interval. ``refresh_s`` (PostgreSQL only): how
    often each replica re-reads the current versions, a safety net under
    LISTEN/NOTIFY. ``auth_cache_s``: how long a verified token is remembered
    (so how long a revoked one may still work). ``allow_self_review``: let an
    admin approve a prompt version they registered themselves (off: four-eyes
    review, another admin must approve; on: for single-operator setups).
    ``guard_interval_s``: how often the guard loop looks at running releases (one server
    looks: with PostgreSQL, the replica holding the guard's advisory lock).
    ``ui_session_ttl_s``: how long a dashboard (``/ui``) sign-in lasts.
    ``request_log``: how long, and how many entries per environment, the request log keeps.
    ``metrics_source``: where the guard reads the measurements it judges (default: the
    store's own, received over OTLP; or a ``PrometheusSource``).
    ``logger_provider``: where review scores go as ``gen_ai.evaluation.result`` events
    (default: OpenTelemetry's global one, which does nothing until one is set).
    ``eval_schedule_check_s``: how often the evaluation scheduler looks for due schedules (one
    server looks: with PostgreSQL, the replica holding the scheduler's advisory lock).
    ``measurements``: how long the 10 s measurements and their rollups are kept; rows past
    that are dropped at start and then every ``prune_interval_s``.
    """
    if not guard_interval_s > 0:
        raise ValueError(f"guard_interval_s must be > 0, got {guard_interval_s}")
    if not prune_interval_s > 0:
        raise ValueError(f"prune_interval_s must be > 0, got {prune_interval_s}")
    hub = Hub(store.current)
    guard = Guard(store, interval_s=guard_interval_s, source=metrics_source)
    scheduler = Scheduler(store, interval_s=eval_schedule_check_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub.attach(asyncio.get_running_loop())
        store.on_publish = hub.publish_threadsafe
        listener = None
        refresher = None
        if store.__class__.__name__ == "PostgresStore":
            listener, refresher = _start_replication(store, hub, refresh_s)
        guarding = asyncio.get_running_loop().create_task(guard.run(), name="vibesdk-guard")
        scheduler.start()
        pruning = asyncio.get_running_loop().create_task(
            _prune(store, measurements, prune_interval_s), name="vibesdk-prune"
        )
        try:
            yield
        finally:
            scheduler.stop()
            for task in (guarding, pruning):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            hub.close()
            if refresher is not None:
                refresher.cancel()
            if listener is not None:
                await anyio.to_thread.run_sync(listener.stop)
            store.on_publish = None

    app = FastAPI(
        title="vibesdk flag server",
        version=__version__,
        description="Versioned flag documents, prompt review, audit and instant rollback."
        " SDK routes take an SDK key, /v1/admin routes an admin token (Authorization: Bearer).",
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.hub = hub
    app.state.heartbeat_s = heartbeat_s
    app.state.allow_self_review = allow_self_review
    app.state.otlp = OtlpCounts()
    app.state.request_log = request_log
    app.state.guard = guard
    app.state.logger_provider = logger_provider
    app.state.scheduler = scheduler

    @app.get("/healthz", tags=["ops"], summary="Liveness (no auth)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    for router in (
        sdk_router,
        otlp_router,
        admin_router,
        releases_router,
        eval_router,
        review_router,
        eval_schedule_router,
    ):
        app.include_router(router)

    @app.exception_handler(ServerError)
    async def _server_error(request: Request, exc: ServerError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_response(exc.errors())

    # The dashboard (after the JSON error handler: it answers /ui's refusals in HTML).
    install_ui(app, session_ttl_s=ui_session_ttl_s)

    # Added last = runs first: authenticate before reading (and converting) any body.
    app.add_middleware(YamlBodyMiddleware)
    app.add_middleware(
        AuthMiddleware,
        authenticate=store.authenticate,
        fast_path=functools.partial(flags_fast_path, hub),
        cache_ttl_s=auth_cache_s,
    )
    return app


def _validation_response(errors: Any) -> JSONResponse:
    """One line for all of FastAPI's validation errors; malformed JSON is a 400."""
    parts = []
    status = 422
    for err in errors:
        loc = ".".join(_loc_part(p) for p in err.get("loc", ()) if p != "body") or "body"
        if err.get("type") == "json_invalid":
            status = 400
            ctx = err.get("ctx") or {}
            parts.append(f"malformed JSON body ({ctx.get('error', 'invalid')}); send valid JSON")
            continue
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    # One line, whatever a client put in a field's name ({"\n": 1} is named as '\n').
    return JSONResponse({"detail": " ".join("; ".join(parts).split())}, status_code=status)


def _loc_part(part: Any) -> str:
    text = str(part)
    return text if text.isprintable() and not any(c.isspace() for c in text) else repr(text)


async def _prune(store: SqlStore, retention: MeasurementRetention, interval_s: float) -> None:
    """Drop measurements past ``retention`` now and every ``interval_s`` until cancelled."""
    while True:
        try:
            raw, rolled = await anyio.to_thread.run_sync(store.prune_measurements, retention)
            if raw or rolled:
                log.info("dropped %d 10 s measurement rows and %d rollup rows", raw, rolled)
        except Exception:
            log.warning("could not drop old measurements", exc_info=True)
        await asyncio.sleep(interval_s)


def _start_replication(store: SqlStore, hub: Hub, refresh_s: float) -> tuple[Any, Any]:
    from vibesdk_server._storage._postgres import ChangeListener, PostgresStore

    assert isinstance(store, PostgresStore)

    def on_change(env: str, version: int) -> None:
        if (hub.latest_version(env) or -1) < version:
            hub.publish_threadsafe(store.current(env))

    def catch_up() -> None:
        for env in hub.known_environments():
            on_change(env, store.current_version(env))

    listener = ChangeListener(store, on_change, catch_up)
    listener.start()

    async def refresh() -> None:
        while True:
            await asyncio.sleep(refresh_s)
            try:
                await anyio.to_thread.run_sync(catch_up)
            except Exception:
                log.warning("could not refresh versions from PostgreSQL", exc_info=True)

    return listener, asyncio.get_running_loop().create_task(refresh())
