"""A small product app that answers math and code questions through vibesdk.

Everything model-specific -- which model a user gets, its reviewed prompt, its
sampling, the notice canary users see -- comes from the flag server; the app only
names the flag and the user. Run it with a flag server around:

    VIBESDK_SERVER_URL=http://127.0.0.1:8700 VIBESDK_SDK_KEY=... \\
        python examples/product_app/app.py --port 8000

It answers from its first request even while the flag server is down or slow: it
ships ``bootstrap.json``, a flag document that puts everyone on stable, at version 0
so that any document from the flag server replaces it (``--bootstrap FILE`` names
another one).

Optional: ``--traces FILE`` writes OpenTelemetry spans and metrics as JSON lines
(vibesdk.configure_telemetry(exporter="file")).

Routes: ``GET /`` a page with a question box, the variant's notice and a 1-5
feedback control; ``POST /api/ask``; ``POST /api/feedback``; ``GET /api/flags``
(the flag version the app is serving, for ops and the demo); ``GET /healthz``.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

import vibesdk

FLAG = "vibethinker"
BOOTSTRAP = Path(__file__).with_name("bootstrap.json")


class Question(BaseModel):
    user_id: str = Field(min_length=1, max_length=200)
    question: str = Field(min_length=1, max_length=4000)


class Feedback(BaseModel):
    trace_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    score: int = Field(ge=1, le=5)
    comment: str | None = Field(default=None, max_length=2000)


def create_app(
    client: vibesdk.Client | None = None,
    *,
    ready_timeout_s: float = 10.0,
    bootstrap: str | Path | None = BOOTSTRAP,
) -> FastAPI:
    """The app; without ``client`` it builds ``vibesdk.Client(bootstrap=bootstrap)``."""
    owned = client is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        c = client if client is not None else vibesdk.Client(bootstrap=bootstrap)
        # Not ready in time is fine: the bootstrap document answers until the flags arrive.
        c.wait_until_ready(timeout=ready_timeout_s)
        app.state.client = c
        try:
            yield
        finally:
            if owned:
                c.close()

    app = FastAPI(title="Ask the assistant", lifespan=lifespan)

    def the_client() -> vibesdk.Client:
        c: vibesdk.Client = app.state.client
        return c

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/flags")
    def flags() -> dict[str, Any]:
        store = the_client().flag_source.store
        flag = store.flag(FLAG)
        return {
            "version": store.version,
            "state": store.state.value,
            "rollout_bps": None if flag is None else flag.rollout_bps,
        }

    @app.post("/api/ask")
    def ask(q: Question) -> dict[str, Any]:
        # A plain `def` route: FastAPI runs it in a worker thread, where the sync
        # client may block while the model answers.
        try:
            r = the_client().chat(
                FLAG, user_id=q.user_id, messages=[{"role": "user", "content": q.question}]
            )
        except (vibesdk.AllBackendsFailedError, vibesdk.FlagsNotReadyError) as exc:
            # FlagsNotReadyError: started without a bootstrap document, before the flags came.
            raise HTTPException(503, "the assistant is unavailable, please retry") from exc
        return {
            "answer": r.text,
            "variant": r.variant,
            "assigned_variant": r.assignment.variant,
            "model": r.model,
            "notice": r.notice,
            "fallback": r.fallback,
            "fallback_reason": r.fallback_reason,
            "trace_id": r.trace_id,
            "latency_s": r.latency_s,
            "quality_failures": list(r.quality.failures),
            "flag_version": r.assignment.flag_version,
        }

    @app.post("/api/feedback", status_code=202)
    def feedback(f: Feedback) -> dict[str, bool]:
        the_client().feedback(f.trace_id, score=f.score, comment=f.comment)
        return {"accepted": True}

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return (Path(__file__).parent / "index.html").read_text(encoding="utf-8")

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--traces", help="write spans and metrics as JSON lines to this file")
    parser.add_argument(
        "--bootstrap",
        type=Path,
        default=BOOTSTRAP,
        help="the flag document served until the flag server's arrives (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    handle = None
    if args.traces:
        handle = vibesdk.configure_telemetry(
            exporter="file", path=args.traces, service_name="product-app"
        )
    try:
        uvicorn.run(
            create_app(bootstrap=args.bootstrap),
            host=args.host,
            port=args.port,
            log_level="warning",
        )
    finally:
        if handle is not None:
            handle.shutdown()


if __name__ == "__main__":
    main()
