"""A loopback OpenAI-style streaming chat server for the benchmarks: wire format and process.

A benchmark writes the connection handler (how fast, in what pieces); this module reads the
requests, frames the server-sent events as HTTP/1.1 chunks, and runs the server in a forked
process of its own, so that its CPU is not the measured client's.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import socket
from collections.abc import Awaitable, Callable
from multiprocessing.process import BaseProcess
from typing import Any

#: The response head: server-sent events, chunked.
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def chat_chunk(content: str | None, finish: str | None = None, **extra: Any) -> bytes:
    """One ``chat.completion.chunk`` event: ``content`` as its delta (none: an empty delta)."""
    choice = {"index": 0, "delta": {"content": content} if content else {}, "finish_reason": finish}
    body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [choice], **extra}  # fmt: skip
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def last_events(tokens: int, finish: str) -> bytes:
    """A stream's end: the finish reason with its usage (8 prompt tokens), then ``[DONE]``."""
    usage = {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": tokens + 8}
    return chat_chunk(None, finish, usage=usage) + b"data: [DONE]\n\n"


def frame(data: bytes, *, last: bool = False) -> bytes:
    """``data`` as one HTTP/1.1 chunk; ``last`` adds the chunk that ends the body."""
    return b"%x\r\n%s\r\n" % (len(data), data) + (b"0\r\n\r\n" if last else b"")


async def read_request(reader: asyncio.StreamReader) -> dict[str, Any]:
    """The JSON body of the connection's next request (``IncompleteReadError`` when it closed)."""
    request = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in request.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body: dict[str, Any] = json.loads(await reader.readexactly(length))
    return body


def serve(sock: socket.socket, handle: Handler, *background: Callable[[], Awaitable[None]]) -> None:
    """Answer connections on ``sock`` with ``handle`` until the process ends, ``background``
    tasks beside it."""

    async def main() -> None:
        tasks = [asyncio.ensure_future(task()) for task in background]
        server = await asyncio.start_server(handle, sock=sock)
        async with server:
            await server.serve_forever()
        for task in tasks:
            task.cancel()

    asyncio.run(main())


def start(target: Callable[..., None], *args: Any) -> tuple[str, BaseProcess]:
    """Listen on a free loopback port and run ``target(sock, *args)`` in a forked daemon
    process; the base URL (ending in ``/v1``) and the process. The child inherits the
    listening socket, so no request can come before it listens."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    process = multiprocessing.get_context("fork").Process(
        target=target, args=(sock, *args), daemon=True
    )
    process.start()
    return f"http://127.0.0.1:{sock.getsockname()[1]}/v1", process
