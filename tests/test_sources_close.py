"""close() of a flag source is immediate even while a request waits on a silent server.

A real loopback server accepts each connection, reads the request and never
answers. The source's poll (and stream) request is in flight when close() is
called; right after close() returns, the background threads or tasks are over.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sources_harness import settings
from vibesdk._sources import AsyncFlagSource, FlagSource


class SilentServer:
    """Accepts connections and reads requests, but never answers; counts requests received."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests = threading.Semaphore(0)
        self.conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        head = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in head:
                data = conn.recv(65536)
                if not data:
                    return
                head += data
            self.requests.release()

    def wait_for_requests(self, n: int) -> None:
        for _ in range(n):
            assert self.requests.acquire(timeout=10), "the source sent no request"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(5)
        for conn in self.conns:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("streaming", [False, True])
def test_sync_close_cuts_requests_waiting_for_headers(
    silent: SilentServer, tmp_path: Path, streaming: bool
) -> None:
    """FlagSource.close() ends its threads at once while poll and stream wait on a silent server."""
    source = FlagSource(
        settings(tmp_path, server_url=silent.url, fetch_timeout_s=30, streaming=streaming)
    )
    source.start()
    silent.wait_for_requests(2 if streaming else 1)
    threads = [t for t in threading.enumerate() if t.name.startswith("vibesdk-flags-")]
    assert threads
    source.close()
    assert [t.name for t in threads if t.is_alive()] == []
    assert source.core.failures == 0  # a cut request is not a failed poll


@pytest.mark.parametrize("streaming", [False, True])
def test_async_aclose_ends_requests_waiting_for_headers(
    silent: SilentServer, tmp_path: Path, streaming: bool
) -> None:
    """AsyncFlagSource.aclose() ends its tasks at once though they wait on a silent server."""

    async def scenario() -> list[str]:
        source = AsyncFlagSource(
            settings(tmp_path, server_url=silent.url, fetch_timeout_s=30, streaming=streaming)
        )
        await source.start()
        await asyncio.to_thread(silent.wait_for_requests, 2 if streaming else 1)
        tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith("vibesdk-flags-")]
        assert tasks
        await source.aclose()
        return [t.get_name() for t in tasks if not t.done()]

    assert asyncio.run(scenario()) == []
