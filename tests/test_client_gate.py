"""A client keeps its requests in flight within its pool; the rest wait, under their deadline.

httpcore scans every queued request against every connection each time a request
enters or leaves its pool, so a client with far more calls in flight than
connections spends its CPU there and starves its own event loop (the soak
benchmark's 1,000-in-flight run). The client's gate lets at most as many
requests into the pool as it has connections. These tests shrink the gate to
one or two places and watch, on a real loopback server, how many requests
arrive at once, what a call that finds no place in time gets, and that the
canary's breaker is not blamed for the client's own saturation.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.client_harness import Driver, answer, flag_source
from vibesdk._client.gate import MAX_CONNECTIONS, POOL_SHARDS, AsyncGate, Gate
from vibesdk._watch import Watch, async_transport, sync_transport
from vibesdk.testing import make_document, make_flag

USER = [{"role": "user", "content": "2+2?"}]


class _Listener(ThreadingHTTPServer):
    request_queue_size = 256  # the default backlog of 5 drops connects made all at once


class CountingServer:
    """A loopback chat backend that answers after ``delay_s`` and counts requests at once."""

    def __init__(self, delay_s: float, together: int = 0) -> None:
        self.delay_s = delay_s
        # Requests answered only once this many are in flight at once (0: each on its own).
        self.together = threading.Barrier(together, timeout=10) if together else None
        self.now = 0
        self.most = 0
        self.served = 0
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    server.now += 1
                    server.most = max(server.most, server.now)
                if server.together is not None:
                    server.together.wait()
                time.sleep(server.delay_s)
                with lock:
                    server.now -= 1
                    server.served += 1
                body = json.dumps(answer("four")).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._http = _Listener(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


@pytest.fixture
def slow() -> Iterator[CountingServer]:
    server = CountingServer(delay_s=0.6)
    yield server
    server.close()


@pytest.fixture
def quick() -> Iterator[CountingServer]:
    server = CountingServer(delay_s=0.0)
    yield server
    server.close()


def _shrink_gate(driver: Driver, places: int) -> None:
    calls = driver.client._calls
    calls.gate = Gate(places) if driver.kind == "sync" else AsyncGate(places)


def test_requests_beyond_the_gate_wait_for_a_place_and_all_are_answered(
    kind: str, slow: CountingServer
) -> None:
    flag = make_flag("ask", stable_url=slow.url, canary_url=slow.url, rollout_bps=0)
    driver = Driver(kind, flag_source=flag_source(make_document(flag)))
    try:
        _shrink_gate(driver, 2)
        calls = [(("ask", f"user-{i}", USER), {}) for i in range(6)]
        results = driver.chat_many(calls, concurrency=6)
    finally:
        driver.dispose()
    assert [getattr(r, "text", r) for r in results] == ["four"] * 6
    assert slow.served == 6
    assert slow.most == 2  # never more than the gate's places at once


def test_requests_in_flight_are_spread_over_the_pools(kind: str) -> None:
    # httpcore's bookkeeping per request grows with the square of one pool's connections, so
    # the client's connections are split into POOL_SHARDS pools, each request to the least busy.
    share = MAX_CONNECTIONS // POOL_SHARDS
    n = share + share // 2  # more calls at once than one pool's share
    server = CountingServer(delay_s=0.0, together=n)  # answers once all n are in flight
    flag = make_flag("ask", stable_url=server.url, canary_url=server.url, rollout_bps=0)
    driver = Driver(kind, flag_source=flag_source(make_document(flag)))
    try:
        calls = [(("ask", f"user-{i}", USER), {}) for i in range(n)]
        results = driver.chat_many(calls, concurrency=n)
        transport = driver.client._calls.http._transport
        pools = getattr(transport, "_pools", None) or [transport._pool]
        connections = sorted((len(pool.connections) for pool in pools), reverse=True)
        busy = transport._shards.busy() if hasattr(transport, "_shards") else []
    finally:
        driver.dispose()
        server.close()
    assert [getattr(r, "text", r) for r in results] == ["four"] * n
    assert server.most == n
    assert sum(connections) == n  # one connection per request in flight, all kept
    assert connections[0] <= share, connections  # no pool holds more than its share
    assert len(connections) == POOL_SHARDS
    assert busy == [0] * POOL_SHARDS  # every answer, once closed, gave its pool's place back


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_request_that_fails_gives_its_pools_place_back(kind: str) -> None:
    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1/chat/completions"
    if kind == "sync":
        transport: Any = sync_transport(shards=2)
        with httpx.Client(transport=transport) as http:
            for _ in range(3):
                with pytest.raises(httpx.ConnectError):
                    http.post(url, json={})
    else:

        async def scenario() -> Any:
            transport = async_transport(shards=2)
            async with httpx.AsyncClient(transport=transport) as http:
                for _ in range(3):
                    with pytest.raises(httpx.ConnectError):
                        await http.post(url, json={})
            return transport

        transport = asyncio.run(scenario())
    assert transport._shards.busy() == [0, 0]


def test_no_place_before_the_deadline_falls_back_as_a_queue_timeout_and_spares_the_breaker(
    kind: str, slow: CountingServer, quick: CountingServer
) -> None:
    # "busy" holds the client's only place for 0.6 s. "ask" sends every user to the
    # canary, with a 0.25 s deadline and a breaker that opens after one failure.
    busy = make_flag("busy", stable_url=slow.url, canary_url=slow.url, rollout_bps=0)
    policy = {"total_timeout_s": 0.25, "retries": 0, "breaker_failures": 1}
    ask = make_flag(
        "ask", stable_url=quick.url, canary_url=quick.url, rollout_bps=10000, fallback=policy
    )
    driver = Driver(kind, flag_source=flag_source(make_document(busy, ask)))
    try:
        _shrink_gate(driver, 1)
        calls = [(("busy", "user-1", USER), {}), (("ask", "user-2", USER), {})]
        if kind == "sync":
            # Start "busy" first; "ask" arrives while it holds the place.
            results: list[Any] = [None, None]

            def run(i: int) -> None:
                try:
                    results[i] = driver.client.chat(*calls[i][0])
                except Exception as exc:
                    results[i] = exc

            first = threading.Thread(target=run, args=(0,))
            first.start()
            time.sleep(0.15)
            run(1)
            first.join()
        else:

            async def both() -> list[Any]:
                first = asyncio.ensure_future(driver.client.chat(*calls[0][0]))
                await asyncio.sleep(0.15)
                try:
                    second: Any = await driver.client.chat(*calls[1][0])
                except Exception as exc:
                    second = exc
                return [await first, second]

            results = driver.run(both())
        held, starved = results
        assert held.text == "four"
        # The canary's attempt found no place within 0.25 s; stable's, 0.25 s later, did.
        assert starved.fallback is True, starved
        assert starved.fallback_reason == "timeout_queue"
        assert starved.assignment.variant == "canary"
        assert quick.served == 1  # only stable's attempt reached a backend

        # The canary's breaker was not blamed: with the place free, the canary answers.
        again = driver.chat("ask", "user-2", USER)
    finally:
        driver.dispose()
    assert again.text == "four"
    assert again.fallback is False
    assert again.assignment.variant == "canary"


def test_a_place_handed_to_a_cancelled_waiter_goes_to_the_next() -> None:
    async def scenario() -> tuple[bool, bool]:
        gate = AsyncGate(1)
        watch = Watch(None)
        assert await gate.enter(watch)
        cancelled = asyncio.ensure_future(gate.enter(watch))
        waiting = asyncio.ensure_future(gate.enter(watch))
        await asyncio.sleep(0)
        gate.leave()  # hands the place to ``cancelled`` ...
        cancelled.cancel()  # ... which is cancelled before it runs again
        await asyncio.sleep(0)
        got = await asyncio.wait_for(waiting, 1.0)
        # The place is held once, by ``waiting``: after it leaves, the gate is free.
        gate.leave()
        return got, await asyncio.wait_for(gate.enter(Watch(None)), 1.0)

    assert asyncio.run(scenario()) == (True, True)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_waiter_whose_deadline_passes_gets_no_place_and_takes_none(kind: str) -> None:
    late = Watch(time.monotonic() + 0.1)
    if kind == "sync":
        gate: Any = Gate(1)
        assert gate.enter(Watch(None))
        assert gate.enter(late) is False
        gate.leave()
        assert gate.enter(Watch(None))
        return

    async def scenario() -> tuple[bool, bool]:
        gate = AsyncGate(1)
        assert await gate.enter(Watch(None))
        got_late = await gate.enter(late)
        gate.leave()
        return got_late, await asyncio.wait_for(gate.enter(Watch(None)), 1.0)

    assert asyncio.run(scenario()) == (False, True)


def test_clients_share_one_tls_context_per_ca_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the CA bundle takes ~16 ms: every client's pools share one TLS context, made
    once per process and CA setting; a changed SSL_CERT_FILE (read by httpx) gets its own."""
    import certifi

    from vibesdk import _watch

    made: list[bool] = []
    create = httpx.create_ssl_context

    def counting(verify: Any = True, **kwargs: Any) -> Any:
        made.append(verify)
        return create(verify, **kwargs)

    monkeypatch.setattr(httpx, "create_ssl_context", counting)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    _watch._ssl_context.cache_clear()
    try:
        for make in (async_transport, sync_transport, async_transport):
            make(shards=2)
        assert made == [True]
        monkeypatch.setenv("SSL_CERT_FILE", certifi.where())
        async_transport()
        _watch.AsyncWatchedTransport(verify=False)
        assert made == [True, True, False]
    finally:
        _watch._ssl_context.cache_clear()
