"""The soak's model backends: a stable and a canary OpenAI-compatible server, and an OTLP sink.

One asyncio process, run by soak.py as a child so that it works on the other
core, with three loopback listeners:

* **stable** answers every ``POST .../chat/completions`` with a llama.cpp-shaped
  completion (``usage``, ``timings``) after ``--latency-ms`` (uniform between
  half and 1.5 times it): the time a small model takes;
* **canary** does the same, with ``reasoning_content``, except that a share
  ``--canary-failure-rate`` of its requests fail, each in one of the ways in
  :data:`FAULTS`, taken in turn;
* **otlp** swallows OTLP/HTTP exports (``/v1/traces``, ``/v1/metrics``).

HTTP/1.1 with keep-alive, parsed by hand (no framework: the fakes must keep up
with 1,000 concurrent calls on one core; ``vibesdk.testing.FakeBackend``'s
thread-per-connection server has a listen backlog of 5). ``GET /stats`` on any
listener answers the counts so far. It prints one JSON line with the three
ports, and exits when its stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import sys
from collections import Counter
from typing import Any

#: How the canary fails, in turn: an error status as llama-server sends it, a
#: connection closed without an answer, a 200 whose body is not JSON, and a body
#: cut short of its Content-Length.
FAULTS = ("http_503", "http_500", "disconnect", "malformed", "truncated")

STABLE_TEXT = (
    "The sum of the first n odd numbers is n squared: 1 + 3 + ... + (2n - 1) = n^2, "
    "because each odd number adds one more layer to a square."
)
CANARY_TEXT = (
    "```python\ndef sum_odd(n: int) -> int:\n    return n * n\n```\n"
    "Each odd number 2k - 1 adds an L-shaped layer to a k-by-k square."
)
CANARY_REASONING = "The k-th odd number is 2k - 1; summing k from 1 to n gives n(n + 1) - n."


def _completion(model: str, text: str, reasoning: str | None) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    completion_tokens = len(text.split()) + len((reasoning or "").split())
    return json.dumps(
        {
            "id": "chatcmpl-soak",
            "object": "chat.completion",
            "created": 1764288000,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": 40,
                "completion_tokens": completion_tokens,
                "total_tokens": 40 + completion_tokens,
            },
            "timings": {
                "prompt_n": 40,
                "prompt_ms": 4.1,
                "predicted_n": completion_tokens,
                "predicted_ms": 2.0 * completion_tokens,
            },
        }
    ).encode()


def _response(status: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (
        b"HTTP/1.1 "
        + status.encode()
        + b"\r\ncontent-type: "
        + content_type
        + b"\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def _error(code: int, message: str, kind: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message, "type": kind}}).encode()
    reason = {500: "Internal Server Error", 503: "Service Unavailable"}[code]
    return _response(f"{code} {reason}", body)


CANARY_BODY = _completion("vibethinker-1.5b", CANARY_TEXT, CANARY_REASONING)
STABLE_OK = _response("200 OK", _completion("stable-model", STABLE_TEXT, None))
CANARY_OK = _response("200 OK", CANARY_BODY)
FAULT_BYTES = {
    "http_503": _error(503, "Loading model", "unavailable_error"),
    "http_500": _error(500, "internal server error", "server_error"),
    "disconnect": b"",
    "malformed": _response("200 OK", b'{"choices": [{"message": {"content": "hal'),
    # Promises 2 kB, sends the head of an answer, then closes.
    "truncated": b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    + b"content-length: 2048\r\n\r\n"
    + CANARY_BODY[:100],
}
OTLP_OK = _response("200 OK", b"", b"application/x-protobuf")


class Backend:
    """What one listener answers, and its counts."""

    def __init__(self, name: str, *, latency_s: float, failure_rate: float, seed: int) -> None:
        self.name = name
        self.latency_s = latency_s
        self.failure_rate = failure_rate
        self.rng = random.Random(seed)
        self.faults = itertools.cycle(FAULTS)
        self.counts: Counter[str] = Counter()

    def answer(self, transport: asyncio.Transport, path: str) -> None:
        """Answer one request on ``transport`` (now or after the model's latency)."""
        loop = asyncio.get_running_loop()
        if path == "/stats":
            transport.write(_response("200 OK", json.dumps(stats()).encode()))
            return
        if self.name == "otlp":
            self.counts[path] += 1
            transport.write(OTLP_OK)
            return
        if not path.endswith("/chat/completions"):
            transport.write(_response("404 Not Found", b'{"error": "not found"}'))
            return
        self.counts["requests"] += 1
        delay = self.latency_s * (0.5 + self.rng.random())
        if self.name == "canary" and self.rng.random() < self.failure_rate:
            fault = next(self.faults)
            self.counts[fault] += 1
            if fault in ("disconnect", "truncated"):
                loop.call_later(delay, _write_and_close, transport, FAULT_BYTES[fault])
            else:
                loop.call_later(delay, _write, transport, FAULT_BYTES[fault])
            return
        self.counts["ok"] += 1
        loop.call_later(delay, _write, transport, CANARY_OK if self.name == "canary" else STABLE_OK)


def _write(transport: asyncio.Transport, data: bytes) -> None:
    if not transport.is_closing():
        transport.write(data)


def _write_and_close(transport: asyncio.Transport, data: bytes) -> None:
    if not transport.is_closing():
        if data:
            transport.write(data)
        transport.close()


BACKENDS: dict[str, Backend] = {}


def stats() -> dict[str, Any]:
    return {name: dict(b.counts) for name, b in BACKENDS.items()}


class Http(asyncio.Protocol):
    """HTTP/1.1 requests with Content-Length bodies, answered in order on one connection."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length :]
            path = head.split(" ", 2)[1].split("?", 1)[0]
            self.backend.answer(self.transport, path)


async def listen(backends: list[Backend]) -> asyncio.StreamReader:
    """Serve each backend on a free loopback port, print the ports as one JSON line, and
    return a reader of this process's stdin (the parent's channel; EOF when it closes)."""
    loop = asyncio.get_running_loop()
    ports: dict[str, int] = {}
    for backend in backends:
        BACKENDS[backend.name] = backend
        server = await loop.create_server(
            lambda b=backend: Http(b),  # type: ignore[misc]
            "127.0.0.1",
            0,
            backlog=2048,
        )
        ports[backend.name] = server.sockets[0].getsockname()[1]
    print(json.dumps(ports), flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--canary-failure-rate", type=float, default=0.10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    backends = [
        Backend(
            name,
            latency_s=args.latency_ms / 1000,
            failure_rate=args.canary_failure_rate if name == "canary" else 0.0,
            seed=args.seed + i,
        )
        for i, name in enumerate(("stable", "canary", "otlp"))
    ]
    reader = await listen(backends)
    # Exit when the parent closes our stdin (or dies).
    await reader.read()


if __name__ == "__main__":
    asyncio.run(main())
