"""A loopback HTTP/1.1 server that answers every chat completion at once, with a fixed answer.

It exists to measure client overhead, not a model: one asyncio protocol, no
framework, keep-alive, run in its own process (so on the other core) by
run.py. It also swallows OTLP/HTTP exports (``/v1/traces``, ``/v1/metrics``)
and counts every request by path; ``GET /stats`` returns the counts.

Run alone: ``python benchmarks/chat_overhead/server.py`` prints
``PORT <n>`` once it listens on 127.0.0.1 (a free port).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter

ANSWER = (
    "We need the sum of the first n odd numbers. Each odd number is 2k - 1, so the sum is "
    "2 * n(n + 1) / 2 - n = n^2. Here is a function that checks it:\n\n"
    "```python\n"
    "def sum_odd(n: int) -> int:\n"
    "    return sum(2 * k - 1 for k in range(1, n + 1))\n\n"
    "assert all(sum_odd(n) == n * n for n in range(100))\n"
    "```\n\n"
    "So the sum of the first n odd numbers is n squared."
)

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1764288000,
        "model": "stable-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ANSWER},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 24, "completion_tokens": 96, "total_tokens": 120},
    }
).encode()


def _response(body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: "
        + content_type
        + b"\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


COMPLETION_RESPONSE = _response(COMPLETION)
OTLP_RESPONSE = _response(b"", b"application/x-protobuf")
counts: Counter[str] = Counter()


class Http(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buf = b""

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
            _method, path, _ = head.split(" ", 2)
            path = path.split("?", 1)[0]
            counts[path] += 1
            if path.endswith("/chat/completions"):
                self.transport.write(COMPLETION_RESPONSE)
            elif path in ("/v1/traces", "/v1/metrics", "/v1/logs"):
                self.transport.write(OTLP_RESPONSE)
            elif path == "/stats":
                self.transport.write(_response(json.dumps(dict(counts)).encode()))
            else:
                self.transport.write(_response(b"{}"))


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Http, "127.0.0.1", 0, backlog=256)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    # Exit when the parent closes our stdin (or dies).
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
