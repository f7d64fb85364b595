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

Routes:

- ``GET /``: the page. It asks ``/api/variant`` which variant the user is in as
  soon as it loads and whenever the user id changes (a canary user sees the notice
  before asking anything), streams the answer from ``/api/ask/stream``, marks an
  answer cut short by ``max_tokens``, and offers a labelled 1-5 rating with an
  optional comment. Model ids and fallback reasons stay out of the user's view;
  "Show details" (or ``/?debug=1``) shows them to developers.
- ``GET /api/variant?user_id=...``: the user's variant and notice
  (``client.assign``: no model call).
- ``POST /api/ask/stream``: the answer as server-sent events (``client.stream_chat``):
  ``start`` (variant, notice) with the first token, ``token`` (text), then ``done``
  (finish reason, trace id, fallback, checks, ...) or ``error`` (a sentence to show).
- ``POST /api/ask``: the same answer as one JSON object (``client.chat``).
- ``POST /api/feedback``: a 1-5 score and an optional comment for an answer's trace.
- ``POST /api/report``: the user reports an answer ("Report this answer"), with an
  optional reason (``client.report``).
- ``GET /api/flags``: the flag version the app is serving (for ops and the demo);
  ``GET /healthz``.

Bad input is answered with 422 and ``{"detail": "<one sentence saying what to fix>"}``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
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


class Report(BaseModel):
    trace_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    reason: str | None = Field(default=None, max_length=2000)


UNAVAILABLE = "The assistant is unavailable right now. Please try again in a moment."
INTERRUPTED = "The answer was interrupted. Please ask again."

# What to tell the user when a field is wrong, by field name.
_FIX = {
    "user_id": "Enter a user id (up to 200 characters).",
    "question": "Type a question (up to 4,000 characters).",
    "trace_id": "This answer can no longer be rated or reported. Ask again first.",
    "score": "Pick a rating from 1 to 5.",
    "comment": "Shorten the comment to 2,000 characters or fewer.",
    "reason": "Shorten the comment to 2,000 characters or fewer.",
}


def _sentence(exc: RequestValidationError) -> str:
    """One sentence for the first invalid field of a request."""
    for error in exc.errors():
        field = next((str(part) for part in reversed(error.get("loc", ())) if part in _FIX), None)
        if field is not None:
            return _FIX[field]
    return "The request could not be read. Reload the page and try again."


def _answer(r: vibesdk.ChatResult) -> dict[str, Any]:
    """The fields of an answer the page uses (model and fallback only in its debug view)."""
    return {
        "answer": r.text,
        "variant": r.variant,
        "assigned_variant": r.assignment.variant,
        "model": r.model,
        "notice": r.notice,
        "fallback": r.fallback,
        "fallback_reason": r.fallback_reason,
        "finish_reason": r.finish_reason,
        "truncated": r.finish_reason == "length",
        "trace_id": r.trace_id,
        "latency_s": r.latency_s,
        "quality_failures": list(r.quality.failures),
        "flag_version": r.assignment.flag_version,
    }


def _event(name: str, data: dict[str, Any]) -> str:
    """One server-sent event."""
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def _answer_events(chunks: Iterator[vibesdk.ChatChunk]) -> Iterator[str]:
    """A streamed answer as server-sent events: start, token..., then done or error."""
    started = False
    try:
        for chunk in chunks:
            if chunk.done and chunk.result is not None:
                yield _event("done", _answer(chunk.result))
            elif chunk.text:
                if not started:
                    started = True
                    yield _event("start", {"variant": chunk.variant, "notice": chunk.notice})
                yield _event("token", {"text": chunk.text})
    except (vibesdk.AllBackendsFailedError, vibesdk.FlagsNotReadyError):
        yield _event("error", {"message": UNAVAILABLE})
    except vibesdk.VibeError:
        # StreamInterruptedError: the model broke off after its first token.
        yield _event("error", {"message": INTERRUPTED})
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


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

    @app.exception_handler(RequestValidationError)
    async def readable_422(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _sentence(exc)}, status_code=422)

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

    @app.get("/api/variant")
    def variant(user_id: str = "") -> dict[str, Any]:
        if not user_id.strip() or len(user_id) > 200:
            raise HTTPException(422, _FIX["user_id"])
        a = the_client().assign(FLAG, user_id)
        return {"variant": a.variant, "notice": a.notice, "flag_version": a.flag_version}

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
            raise HTTPException(503, UNAVAILABLE) from exc
        return _answer(r)

    @app.post("/api/ask/stream")
    def ask_stream(q: Question) -> StreamingResponse:
        # A sync generator: Starlette iterates it in a worker thread, token by token.
        chunks = the_client().stream_chat(
            FLAG, user_id=q.user_id, messages=[{"role": "user", "content": q.question}]
        )

        return StreamingResponse(
            _answer_events(chunks),
            media_type="text/event-stream",
            headers={"cache-control": "no-store"},
        )

    @app.post("/api/feedback", status_code=202)
    def feedback(f: Feedback) -> dict[str, bool]:
        the_client().feedback(f.trace_id, score=f.score, comment=f.comment)
        return {"accepted": True}

    @app.post("/api/report", status_code=202)
    def report(r: Report) -> dict[str, bool]:
        the_client().report(r.trace_id, reason=r.reason)
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
