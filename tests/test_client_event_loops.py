"""One AsyncClient used by several event loops in turn (two ``asyncio.run()`` calls).

A module-level client is common under pytest-asyncio: each test runs in a loop
of its own. The client's connections, feedback task and flag-source tasks
belong to one loop; they are closed when it ends and made again in the next.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import vibesdk
from vibesdk.testing import FakeBackend, make_document, make_flag

USER = [{"role": "user", "content": "2+2?"}]


class FlagServer:
    """A loopback ``GET /v1/flags`` + ``POST /v1/feedback`` with a fixed document."""

    def __init__(self, document: vibesdk.FlagDocument) -> None:
        self.body = document.model_dump_json().encode()
        self.polls = 0
        self.feedback: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.polls += 1
                self._send(200, outer.body, {"ETag": '"1"', "Content-Type": "application/json"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                outer.feedback.append(json.loads(self.rfile.read(length)))
                self._send(202, b"{}", {"Content-Type": "application/json"})

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def servers() -> Iterator[tuple[FlagServer, str]]:
    with FakeBackend(default="four") as backend:
        doc = make_document(
            make_flag(stable_url=backend.url, canary_url=backend.url, rollout_bps=10_000)
        )
        flags = FlagServer(doc)
        try:
            yield flags, backend.url
        finally:
            flags.close()


def test_one_async_client_serves_two_asyncio_run_calls(servers: tuple[FlagServer, str]) -> None:
    """A client made outside any loop answers in two asyncio.run() calls without leaking sockets."""
    flags, _ = servers
    client = vibesdk.AsyncClient(
        server_url=flags.url, sdk_key="k", cache_dir="", streaming=False, poll_interval_s=3600
    )

    async def use() -> tuple[str, str, bool]:
        assert await client.wait_until_ready(timeout=10)
        r = await client.chat("vibethinker", "u1", USER)
        chunks = [c async for c in client.stream_chat("vibethinker", "u1", USER)]
        sent = len(flags.feedback)
        await client.feedback(r.trace_id, 5)
        for _ in range(500):  # the background task posts it to the loopback server
            if len(flags.feedback) > sent:
                break
            await asyncio.sleep(0.01)
        return r.text, chunks[-1].result.text if chunks[-1].result else "", r.fallback

    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        first = asyncio.run(use())
        polls = flags.polls
        second = asyncio.run(use())
        asyncio.run(client.aclose())
        gc.collect()
    assert first == second == ("four", "four", False)
    assert flags.polls > polls  # flag delivery restarted in the second loop
    assert len(flags.feedback) == 2


def test_client_made_inside_a_loop_still_answers_in_the_next(
    servers: tuple[FlagServer, str],
) -> None:
    """A client built in one asyncio.run() and closed in a later one answers in both."""
    flags, _ = servers
    holder: list[vibesdk.AsyncClient] = []

    async def first() -> str:
        client = vibesdk.AsyncClient(
            server_url=flags.url, sdk_key="k", cache_dir="", streaming=False
        )
        holder.append(client)
        assert await client.wait_until_ready(timeout=10)
        return (await client.chat("vibethinker", "u1", USER)).text

    async def second() -> str:
        client = holder[0]
        try:
            return (await client.chat("vibethinker", "u1", USER)).text
        finally:
            await client.aclose()

    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        assert asyncio.run(first()) == "four"
        assert asyncio.run(second()) == "four"
        gc.collect()
