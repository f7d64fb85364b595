"""Helpers for the client tests: one test body drives Client and AsyncClient alike,
and real llama.cpp servers run on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

import vibesdk
from vibesdk import ChatChunk, ChatResult, FlagDocument
from vibesdk.testing import InMemoryFlagSource


def llama_files() -> tuple[Path, Path]:
    """The llama-server binary and SmolLM2's GGUF, found the way ``vibe-serve`` finds them.

    Skips the test that asked when either is missing, saying how to get it (tests/conftest.py
    turns that skip into a failure under CI=true).
    """
    try:
        from vibesdk_server.serving import find_llama_server, models
    except ImportError:
        pytest.skip("needs vibesdk-server, which finds llama.cpp and the models (scripts/install)")
    try:
        return find_llama_server(), models.smollm2()
    except vibesdk.ConfigError as exc:
        pytest.skip(f"needs llama-server and SmolLM2 (scripts/install): {exc}")


Script = Callable[[socket.socket], None]


@contextlib.contextmanager
def drivers(kind: str) -> Iterator[Callable[..., Driver]]:
    """A maker of :class:`Driver` s of ``kind`` over a flag document; disposes of them at exit."""
    made: list[Driver] = []

    def build(doc: FlagDocument, **kw: Any) -> Driver:
        d = Driver(kind, flag_source=flag_source(doc), cache_dir="", **kw)
        made.append(d)
        return d

    try:
        yield build
    finally:
        for d in made:
            d.dispose()


def flag_source(document: FlagDocument) -> Any:
    """An in-memory flag source serving ``document``."""
    return InMemoryFlagSource(document)


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Driver:
    """Runs the same test body against Client (sync) or AsyncClient (on its own loop)."""

    def __init__(self, kind: str, **kwargs: Any) -> None:
        self.kind = kind
        self.slept: list[float] = []
        if kind == "sync":
            kwargs.setdefault("sleep", self.slept.append)
            self.client: Any = vibesdk.Client(**kwargs)
            self._loop: asyncio.AbstractEventLoop | None = None
        else:

            async def sleep(seconds: float) -> None:
                self.slept.append(seconds)

            kwargs.setdefault("sleep", sleep)
            self._loop = asyncio.new_event_loop()
            self.client = self._run(_construct(kwargs))

    def _run(self, awaitable: Any) -> Any:
        assert self._loop is not None
        return self._loop.run_until_complete(awaitable)

    def wait_until_ready(self, timeout: float) -> bool:
        if self._loop is None:
            return bool(self.client.wait_until_ready(timeout))
        return bool(self._run(self.client.wait_until_ready(timeout)))

    def run(self, awaitable: Any) -> Any:
        """Run a coroutine on the async driver's loop (gives the client's tasks turns)."""
        return self._run(awaitable)

    def assign(self, *args: Any, **kwargs: Any) -> vibesdk.Assignment:
        return self.client.assign(*args, **kwargs)  # type: ignore[no-any-return]

    def chat(self, *args: Any, **kwargs: Any) -> ChatResult:
        if self._loop is None:
            return self.client.chat(*args, **kwargs)  # type: ignore[no-any-return]
        return self._run(self.client.chat(*args, **kwargs))  # type: ignore[no-any-return]

    def chat_many(
        self,
        calls: list[tuple[tuple[Any, ...], dict[str, Any]]],
        on_result: Callable[[Any], None] = lambda result: None,
        concurrency: int = 2,
    ) -> list[Any]:
        """Run chat calls ``concurrency`` at a time; each result or the exception it raised.

        ``on_result`` sees every outcome as it arrives (e.g. to kill a backend mid-run).
        """
        if self._loop is None:
            from concurrent.futures import ThreadPoolExecutor

            def one(call: tuple[tuple[Any, ...], dict[str, Any]]) -> Any:
                try:
                    out: Any = self.client.chat(*call[0], **call[1])
                except Exception as exc:
                    out = exc
                on_result(out)
                return out

            with ThreadPoolExecutor(concurrency) as pool:
                return list(pool.map(one, calls))

        async def run_all() -> list[Any]:
            gate = asyncio.Semaphore(concurrency)

            async def one(call: tuple[tuple[Any, ...], dict[str, Any]]) -> Any:
                async with gate:
                    try:
                        out: Any = await self.client.chat(*call[0], **call[1])
                    except Exception as exc:
                        out = exc
                on_result(out)
                return out

            return list(await asyncio.gather(*(one(c) for c in calls)))

        return self._run(run_all())  # type: ignore[no-any-return]

    def stream(self, *args: Any, **kwargs: Any) -> list[ChatChunk]:
        """Every chunk of a stream (raises what the stream raises)."""
        chunks, exc = self.stream_until_error(*args, **kwargs)
        if exc is not None:
            raise exc
        return chunks

    def stream_until_error(
        self, *args: Any, **kwargs: Any
    ) -> tuple[list[ChatChunk], BaseException | None]:
        """The chunks a caller got, and the error that ended the stream (or None)."""
        chunks: list[ChatChunk] = []
        if self._loop is None:
            try:
                for chunk in self.client.stream_chat(*args, **kwargs):
                    chunks.append(chunk)
            except vibesdk.VibeError as exc:
                return chunks, exc
            return chunks, None

        async def consume() -> BaseException | None:
            try:
                async for chunk in self.client.stream_chat(*args, **kwargs):
                    chunks.append(chunk)
            except vibesdk.VibeError as exc:
                return exc
            return None

        return chunks, self._run(consume())

    def in_flight(self) -> dict[str, int]:
        """Requests in flight per backend URL, as the client counts them."""
        pools = self.client._core._pools.values()
        return {url: n for pool in pools for url, n in pool.outstanding().items()}

    def feedback(self, *args: Any, **kwargs: Any) -> None:
        if self._loop is None:
            self.client.feedback(*args, **kwargs)
        else:
            self._run(self.client.feedback(*args, **kwargs))

    def report(self, *args: Any, **kwargs: Any) -> None:
        if self._loop is None:
            self.client.report(*args, **kwargs)
        else:
            self._run(self.client.report(*args, **kwargs))

    def close(self) -> None:
        if self._loop is None:
            self.client.close()
        else:
            self._run(self.client.aclose())

    def dispose(self) -> None:
        """Close the client and the async driver's event loop."""
        self.close()
        if self._loop is not None:
            # As asyncio.run() does: finalize the async generators still suspended (a stream
            # left early) while the loop runs; Python 3.13 reports any left to the collector.
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()


async def _construct(kwargs: dict[str, Any]) -> vibesdk.AsyncClient:
    return vibesdk.AsyncClient(**kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """One real ``llama-server`` process with SmolLM2 on 127.0.0.1 (small and 1 thread)."""

    def __init__(self, port: int | None = None) -> None:
        self.binary, self.model = llama_files()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> LlamaServer:
        self.proc = subprocess.Popen(
            [
                str(self.binary),
                *("-m", str(self.model), "--host", "127.0.0.1", "--port", str(self.port)),
                *("-c", "2048", "-np", "2", "-t", "1", "--no-webui"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.proc.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("llama-server did not become healthy")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def sse_body(*contents: str, finish: str | None = "stop", done: bool = True) -> bytes:
    """A streamed chat completion with one delta per content."""
    import json

    lines = [
        "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": c}}]}) + "\n\n"
        for c in contents
    ]
    if finish is not None:
        lines.append(
            "data: "
            + json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
            + "\n\n"
        )
    if done:
        lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


def answer(text: str = "ok", **extra: Any) -> dict[str, Any]:
    """A non-streamed chat completion."""
    return {
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "model": "served",
        "usage": {"prompt_tokens": 5, "completion_tokens": 1},
        **extra,
    }


class Backends:
    """A scriptable MockTransport: one handler per host, every request recorded."""

    def __init__(self, **handlers: Callable[[httpx.Request], httpx.Response]) -> None:
        self.handlers = handlers
        self.requests: list[httpx.Request] = []

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handlers[request.url.host](request)

    def to(self, host: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.host == host]


def json_of(request: httpx.Request) -> Mapping[str, Any]:
    import json

    return json.loads(request.content)  # type: ignore[no-any-return]


def chunks_text(chunks: Iterator[ChatChunk] | list[ChatChunk]) -> str:
    return "".join(c.text for c in chunks)


class Router(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """One transport for the client, dispatching by host to per-backend transports (FakeBackend)."""

    def __init__(self, **by_host: Any) -> None:
        self.by_host = by_host

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.by_host[request.url.host].handle_request(request)  # type: ignore[no-any-return]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self.by_host[request.url.host]
        return await transport.handle_async_request(request)  # type: ignore[no-any-return]


class RawServer:
    """Accepts connections, reads one request head, then runs ``script`` on the socket."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.threads: list[threading.Thread] = []
        self.accepted = 0
        self.hung_up = 0
        self._thread = threading.Thread(target=self._serve, name="raw-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            t = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(65536)
                if not data:
                    return
                head += data
            with contextlib.suppress(OSError):  # the client hung up (a timeout or a size cap)
                self.script(conn)
            # The client must close the connection: read until it does (EOF or reset).
            conn.settimeout(10)
            try:
                while conn.recv(65536):
                    pass
            except TimeoutError:
                return  # still open: a leaked connection
            except OSError:
                pass
            self.hung_up += 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        self.sock.close()
        self._thread.join(5)
        for t in self.threads:
            t.join(5)
