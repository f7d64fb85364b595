"""FakeBackend: a scriptable OpenAI-compatible chat backend (httpx transport or loopback server).

It answers ``POST /v1/chat/completions`` (streaming and not) the way
llama.cpp's ``llama-server`` does -- ``reasoning_content``, ``timings``,
``usage``, ``data: [DONE]`` -- and can be told, reply by reply, to be slow,
to stall, to fail with an HTTP status, to send garbage, or to cut a stream
after N chunks. Use it as

* an httpx transport (``fake.transport()``, sync and async): no sockets, and
  delays go through an injectable ``sleep`` so tests never wait; a delay
  longer than the request's httpx read timeout raises ``httpx.ReadTimeout``
  just as a real socket would;
* a real HTTP server on ``127.0.0.1`` (``with fake.serve() as url:``), for
  tests that need real sockets, real timeouts and real disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import httpx

__all__ = ["FakeBackend", "FakeRequest", "Reply"]

TextSource = str | Callable[[Mapping[str, Any]], str]


@dataclass(frozen=True)
class Reply:
    """What the fake answers to one request.

    ``text`` is the answer (or a function of the request JSON returning it);
    ``reasoning`` goes into llama.cpp's ``reasoning_content``. Failures:

    * ``status`` -- an HTTP error status (e.g. 503, 429) with an OpenAI-style
      error body; ``headers`` adds headers (e.g. ``{"Retry-After": "1"}``).
    * ``delay_s`` -- wait this long before the response headers;
      ``stall=True`` -- never answer (until the fake is closed; as a
      transport, until the request's read timeout).
    * ``first_chunk_delay_s`` / ``chunk_delay_s`` -- stream pacing.
    * ``cut_after`` -- stop a stream after that many content chunks, with no
      ``finish_reason`` and no ``[DONE]``; ``cut="reset"`` drops the
      connection mid-response instead of ending it cleanly, and
      ``cut="error"`` sends llama-server's mid-stream error event
      (``data: {"error": {...}}``) first.
    * ``malformed=True`` -- 200 with a body that is not a chat completion.
    * ``disconnect=True`` -- close the connection without any response.
    """

    text: TextSource = "Hello! How can I help?"
    reasoning: str | None = None
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    stall: bool = False
    first_chunk_delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    cut_after: int | None = None
    cut: Literal["clean", "reset", "error"] = "clean"
    malformed: bool = False
    disconnect: bool = False
    finish_reason: str = "stop"
    model: str | None = None
    timings: bool = True
    usage: bool = True


@dataclass(frozen=True)
class FakeRequest:
    """One request the fake received."""

    method: str
    path: str
    headers: Mapping[str, str]
    json: Any

    @property
    def stream(self) -> bool:
        """Whether the request asked for a stream."""
        return isinstance(self.json, dict) and bool(self.json.get("stream"))

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat messages sent (system prompt included)."""
        if isinstance(self.json, dict) and isinstance(self.json.get("messages"), list):
            return list(self.json["messages"])
        return []


_TOKEN = re.compile(r"\s*\S+|\s+")


def _tokens(text: str) -> list[str]:
    """Split an answer into stream chunks: one word (with its leading space) per chunk."""
    return _TOKEN.findall(text) if text else []


class _Plan:
    """A reply rendered for one request: status, headers, and the body as timed pieces."""

    def __init__(self, reply: Reply, request: FakeRequest, default_model: str) -> None:
        self.reply = reply
        body = request.json if isinstance(request.json, dict) else {}
        self.model = reply.model or str(body.get("model") or default_model)
        self.stream = request.stream
        self.include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        text = reply.text(body) if callable(reply.text) else reply.text
        self.text = text
        self.prompt_tokens = sum(
            len(_tokens(str(m.get("content", "")))) for m in request.messages if isinstance(m, dict)
        )
        self.created = int(time.time())
        self.id = f"chatcmpl-fake{id(self) & 0xFFFFFF:06x}"

    # --- pieces --------------------------------------------------------------------

    def status_and_headers(self) -> tuple[int, dict[str, str]]:
        headers = dict(self.reply.headers)
        if self.reply.status != 200:
            headers.setdefault("Content-Type", "application/json")
            return self.reply.status, headers
        if self.stream:
            headers.setdefault("Content-Type", "text/event-stream")
            headers.setdefault("Cache-Control", "no-cache")
        else:
            headers.setdefault("Content-Type", "application/json")
        return 200, headers

    def error_body(self) -> bytes:
        message = {
            429: "too many requests",
            500: "internal server error",
            502: "bad gateway",
            503: "Loading model",
            504: "gateway timeout",
        }.get(self.reply.status, f"error {self.reply.status}")
        kind = "unavailable_error" if self.reply.status == 503 else "server_error"
        return json.dumps(
            {"error": {"code": self.reply.status, "message": message, "type": kind}}
        ).encode()

    def _timings(self, predicted: int) -> dict[str, float | int]:
        prompt_ms = 1.0 + 0.5 * self.prompt_tokens
        predicted_ms = 1.0 + 2.0 * predicted
        return {
            "prompt_n": self.prompt_tokens,
            "prompt_ms": prompt_ms,
            "prompt_per_token_ms": prompt_ms / max(1, self.prompt_tokens),
            "prompt_per_second": 1000.0 * self.prompt_tokens / prompt_ms,
            "predicted_n": predicted,
            "predicted_ms": predicted_ms,
            "predicted_per_token_ms": predicted_ms / max(1, predicted),
            "predicted_per_second": 1000.0 * predicted / predicted_ms,
        }

    def _usage(self, completion: int) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }

    def full_body(self) -> bytes:
        """The non-streaming chat completion."""
        if self.reply.malformed:
            return b'{"this is": "not a chat completion"'
        completion = len(_tokens(self.text)) + len(_tokens(self.reply.reasoning or ""))
        message: dict[str, Any] = {"role": "assistant", "content": self.text}
        if self.reply.reasoning is not None:
            message["reasoning_content"] = self.reply.reasoning
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "message": message, "finish_reason": self.reply.finish_reason}
            ],
        }
        if self.reply.usage:
            body["usage"] = self._usage(completion)
        if self.reply.timings:
            body["timings"] = self._timings(completion)
        return json.dumps(body).encode()

    def _chunk(
        self, delta: dict[str, Any] | None, finish: str | None = None, **extra: Any
    ) -> bytes:
        """One SSE event; ``delta=None`` makes the choice-less usage chunk."""
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fake",
            "choices": choices,
        }
        body.update(extra)
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    def stream_events(self) -> Iterator[tuple[float, bytes]]:
        """``(delay before it, bytes)`` for each SSE event; ends early when cut."""
        reply = self.reply
        if reply.malformed:
            yield reply.first_chunk_delay_s, b'data: {"choices": [{"delta": {"content": "hi"\n\n'
            yield 0.0, b"data: [DONE]\n\n"
            return
        pieces = [("reasoning_content", t) for t in _tokens(reply.reasoning or "")]
        pieces += [("content", t) for t in _tokens(self.text)]
        yield reply.first_chunk_delay_s, self._chunk({"role": "assistant", "content": None})
        for sent, (key, token) in enumerate(pieces):
            if reply.cut_after is not None and sent >= reply.cut_after:
                break
            yield (reply.chunk_delay_s if sent else 0.0), self._chunk({key: token})
        if reply.cut_after is not None:
            # A cut stream never finishes, however short the answer.
            if reply.cut == "error":
                error = {
                    "code": 500,
                    "message": "fake backend failed mid-stream",
                    "type": "server_error",
                }
                yield 0.0, b"data: " + json.dumps({"error": error}).encode() + b"\n\n"
            return
        # As llama-server does: the finish chunk, then (if asked for) a usage chunk with no
        # choices; `timings` ride on whichever of the two comes last.
        timings = {"timings": self._timings(len(pieces))} if reply.timings else {}
        if reply.usage and self.include_usage:
            yield reply.chunk_delay_s, self._chunk({}, reply.finish_reason)
            usage = {"usage": self._usage(len(pieces)), **timings}
            yield 0.0, self._chunk(None, None, **usage)
        else:
            yield reply.chunk_delay_s, self._chunk({}, reply.finish_reason, **timings)
        yield 0.0, b"data: [DONE]\n\n"


class FakeBackend:
    """A scriptable OpenAI-compatible chat backend (see the module docs).

    Replies are consumed in order from :meth:`script` (or the constructor);
    when none is left, ``default`` answers every request. ``requests`` records
    every chat request received. Strings are shorthand for ``Reply(text=...)``.

    ``sleep`` / ``async_sleep`` are used for delays in transport mode (inject
    no-op ones and tests never wait); the server mode always sleeps for real.
    """

    def __init__(
        self,
        *replies: Reply | str,
        default: Reply | str = Reply(),
        model: str = "fake-model",
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.default = _as_reply(default)
        self.model = model
        #: False: ``GET /health`` answers 503 "Loading model", as llama-server does while loading.
        self.healthy = True
        self.requests: list[FakeRequest] = []
        self._queue: deque[Reply] = deque(_as_reply(r) for r in replies)
        self._lock = threading.Lock()
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._closed = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- scripting ------------------------------------------------------------------

    def script(self, *replies: Reply | str) -> FakeBackend:
        """Queue replies for the next requests, in order. Returns self."""
        with self._lock:
            self._queue.extend(_as_reply(r) for r in replies)
        return self

    def _next(self, request: FakeRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            return self._queue.popleft() if self._queue else self.default

    @property
    def chat_requests(self) -> list[FakeRequest]:
        """The chat-completion requests received, oldest first."""
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    # --- transport mode ---------------------------------------------------------------

    def transport(self) -> _FakeTransport:
        """An httpx transport (sync *and* async) answering as this backend, without sockets."""
        return _FakeTransport(self)

    @staticmethod
    def router(routes: Mapping[str, FakeBackend]) -> _Router:
        """One httpx transport for several fakes, chosen by URL prefix (the longest that matches).

        ``Client(transport=FakeBackend.router({"http://canary.test/v1": canary,
        "http://stable.test/v1": stable}), ...)`` with those URLs in the flag
        document gives each variant its own fake, with no sockets. A URL no
        route matches fails with ``httpx.ConnectError``, as if nothing listened.
        """
        return _Router(routes)

    # --- server mode --------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL of the running server, ``http://127.0.0.1:PORT/v1``."""
        if self._server is None:
            raise RuntimeError("FakeBackend is not serving; use `with fake.serve():` first")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        """Serve on a free loopback port for the ``with`` block; yields the base URL."""
        self.start()
        try:
            yield self.url
        finally:
            self.close()

    def start(self) -> str:
        """Start serving on ``127.0.0.1`` (a free port); returns the base URL. Idempotent."""
        if self._server is None:
            self._closed.clear()
            server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
            server.daemon_threads = True
            server.block_on_close = False
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="vibesdk-fake-backend",
                daemon=True,
            )
            self._thread.start()
        return self.url

    def close(self) -> None:
        """Stop serving; stalled and delayed replies are released at once."""
        self._closed.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeBackend:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- shared ---------------------------------------------------------------------

    def _route(self, method: str, path: str) -> tuple[int, bytes] | None:
        """Answers for the non-chat endpoints (``/health``, ``/v1/models``), else None."""
        # Any prefix before the OpenAI paths is accepted (a base URL may carry a path).
        bare = path.split("?", 1)[0].rstrip("/")
        if method == "GET" and bare.endswith("/health"):
            if not self.healthy:
                loading = {
                    "error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}
                }
                return 503, json.dumps(loading).encode()
            return 200, b'{"status":"ok"}'
        if method == "GET" and bare.endswith("/models"):
            body = {"object": "list", "data": [{"id": self.model, "object": "model"}]}
            return 200, json.dumps(body).encode()
        if method == "POST" and bare.endswith("/chat/completions"):
            return None
        return (
            404,
            b'{"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}}',
        )


def _as_reply(reply: Reply | str) -> Reply:
    return Reply(text=reply) if isinstance(reply, str) else reply


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


# --- httpx transport -----------------------------------------------------------------


def _read_timeout(request: httpx.Request) -> float | None:
    timeout = request.extensions.get("timeout") or {}
    value = timeout.get("read")
    return float(value) if value is not None else None


class _SyncBody(httpx.SyncByteStream):
    def __init__(self, fake: FakeBackend, plan: _Plan, read_timeout: float | None) -> None:
        self._fake, self._plan, self._timeout = fake, plan, read_timeout

    def __iter__(self) -> Iterator[bytes]:
        for delay, data in self._plan.stream_events():
            if delay:
                if self._timeout is not None and delay > self._timeout:
                    self._fake._sleep(self._timeout)
                    raise httpx.ReadTimeout("fake backend: no chunk within the read timeout")
                self._fake._sleep(delay)
            yield data
        if self._plan.reply.cut_after is not None and self._plan.reply.cut == "reset":
            raise httpx.RemoteProtocolError("fake backend: connection reset mid-stream")


class _AsyncBody(httpx.AsyncByteStream):
    def __init__(self, fake: FakeBackend, plan: _Plan, read_timeout: float | None) -> None:
        self._fake, self._plan, self._timeout = fake, plan, read_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for delay, data in self._plan.stream_events():
            if delay:
                if self._timeout is not None and delay > self._timeout:
                    await self._fake._async_sleep(self._timeout)
                    raise httpx.ReadTimeout("fake backend: no chunk within the read timeout")
                await self._fake._async_sleep(delay)
            yield data
        if self._plan.reply.cut_after is not None and self._plan.reply.cut == "reset":
            raise httpx.RemoteProtocolError("fake backend: connection reset mid-stream")


class _FakeTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Both httpx transport interfaces over one FakeBackend."""

    def __init__(self, fake: FakeBackend) -> None:
        self.fake = fake

    def _prepare(
        self, request: httpx.Request, body: bytes
    ) -> tuple[_Plan | None, httpx.Response | None]:
        """(the plan for a chat request, or the immediate response to anything else)."""
        fake = self.fake
        routed = fake._route(request.method, request.url.raw_path.decode())
        if routed is not None:
            status, content = routed
            response = httpx.Response(
                status, content=content, headers={"Content-Type": "application/json"}
            )
            return None, response
        recorded = FakeRequest(
            request.method, request.url.path, dict(request.headers), _parse_json(body)
        )
        reply = fake._next(recorded)
        if reply.disconnect:
            raise httpx.RemoteProtocolError("fake backend: server disconnected without a response")
        return _Plan(reply, recorded, fake.model), None

    def _headers_response(
        self, plan: _Plan, stream: httpx.SyncByteStream | httpx.AsyncByteStream
    ) -> httpx.Response:
        status, headers = plan.status_and_headers()
        if status != 200:
            return httpx.Response(status, headers=headers, content=plan.error_body())
        if not plan.stream:
            return httpx.Response(200, headers=headers, content=plan.full_body())
        return httpx.Response(200, headers=headers, stream=stream)

    @staticmethod
    def _wait_before_headers(request: httpx.Request, plan: _Plan) -> tuple[float | None, bool]:
        """(seconds to sleep before the headers -- None: forever, timed out after it?)."""
        timeout = _read_timeout(request)
        wait = None if plan.reply.stall else plan.reply.delay_s
        if timeout is not None and (wait is None or wait > timeout):
            return timeout, True
        return wait, False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        plan, response = self._prepare(request, body)
        if response is not None:
            return response
        assert plan is not None
        wait, times_out = self._wait_before_headers(request, plan)
        if wait is None:
            # A sync caller cannot be interrupted: without a read timeout, fail as one would.
            raise httpx.ReadTimeout("fake backend stalled and the request has no read timeout")
        if wait:
            self.fake._sleep(wait)
        if times_out:
            raise httpx.ReadTimeout("fake backend: no response within the read timeout")
        return self._headers_response(plan, _SyncBody(self.fake, plan, _read_timeout(request)))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        plan, response = self._prepare(request, body)
        if response is not None:
            return response
        assert plan is not None
        wait, times_out = self._wait_before_headers(request, plan)
        if wait is None:
            # Async callers can cancel (asyncio.timeout / wait_for): stall until they do.
            await asyncio.Event().wait()
        if wait:
            await self.fake._async_sleep(wait)
        if times_out:
            raise httpx.ReadTimeout("fake backend: no response within the read timeout")
        return self._headers_response(plan, _AsyncBody(self.fake, plan, _read_timeout(request)))

    def close(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class _Router(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Dispatch each request to the fake whose URL prefix matches (longest first)."""

    def __init__(self, routes: Mapping[str, FakeBackend]) -> None:
        ordered = sorted(routes.items(), key=lambda item: len(item[0]), reverse=True)
        self._routes = [(prefix.rstrip("/"), fake.transport()) for prefix, fake in ordered]

    def _pick(self, request: httpx.Request) -> _FakeTransport:
        url = str(request.url)
        for prefix, transport in self._routes:
            if url == prefix or url.startswith(prefix + "/"):
                return transport
        raise httpx.ConnectError(f"fake router: nothing serves {url}", request=request)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._pick(request).handle_request(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._pick(request).handle_async_request(request)

    def close(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


# --- loopback server ---------------------------------------------------------------------


def _handler_for(fake: FakeBackend) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "vibesdk-fake-backend"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def _send(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {"Content-Type": "application/json"}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

        def _answer(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            routed = fake._route(method, self.path)
            if routed is not None:
                self._send(*routed)
                return
            recorded = FakeRequest(
                method, self.path.split("?", 1)[0], dict(self.headers.items()), _parse_json(raw)
            )
            reply = fake._next(recorded)
            if reply.disconnect:
                self.close_connection = True
                self.connection.shutdown(2)
                return
            plan = _Plan(reply, recorded, fake.model)
            if reply.stall:
                fake._closed.wait()
                self.close_connection = True
                return
            if reply.delay_s and fake._closed.wait(reply.delay_s):
                self.close_connection = True
                return
            status, headers = plan.status_and_headers()
            if status != 200:
                self._send(status, plan.error_body(), headers)
                return
            if not plan.stream:
                self._send(200, plan.full_body(), headers)
                return
            self._stream(plan, headers)

        def _stream(self, plan: _Plan, headers: Mapping[str, str]) -> None:
            self.send_response(200)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            try:
                for delay, data in plan.stream_events():
                    if delay and fake._closed.wait(delay):
                        self.close_connection = True
                        return
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()
                if plan.reply.cut_after is not None and plan.reply.cut == "reset":
                    # No terminating chunk: the client sees a broken response.
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    return Handler
