"""Cutting an HTTP request in flight: when its owner closes, or when its deadline passes.

httpx has no total deadline, and a thread blocked reading a socket wakes neither
when its client is closed nor when a deadline passes: a server that accepts and
then says nothing, or that trickles its header lines a byte at a time, holds the
caller for up to a read timeout per byte.

The transports made here give every connection (new or pooled) a network stream
that, before each read, looks at the :class:`Watch` of the reading thread or
asyncio task (a context variable): a cut watch fails the read at once, a passed
deadline fails it as a read timeout (``httpx.ReadTimeout``), and otherwise the
read waits no longer than the time left. :meth:`Watch.cut` also shuts down the
socket being read, which wakes a thread blocked in ``recv``. A request without a
watch pays one context-variable lookup per read.

A chat call holds its attempt's watch (:func:`watching`) while it sends the
request and while it reads each chunk of the body, not across the chunks it
hands to its caller: so the deadline bounds the answer to its last byte,
including a backend that sends its headers and then goes silent, and a stream
left suspended between chunks never leaks its watch into the caller's context.

The transports are httpx transports over httpcore's connection pool, built with
its public ``network_backend`` argument (``httpx.HTTPTransport`` has no way to
pass one): a request is converted and httpcore's errors mapped to httpx's as
``httpx.HTTPTransport`` does. A transport may split its connections between
``shards`` pools (``_Shards``): httpcore's work per request grows with the
square of one pool's connections. Proxies from the environment are not theirs: an
``httpx.Client`` mounts its own transports for those.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    import httpcore

# httpcore is imported where it is needed: `import vibesdk` must not load it
# (httpx itself imports it only when a transport is made).

__all__ = [
    "AsyncWatchedTransport",
    "Watch",
    "WatchedTransport",
    "async_transport",
    "current",
    "sync_transport",
    "watching",
]

# httpx.HTTPTransport's default pool limits.
_DEFAULT_LIMITS = httpx.Limits(
    max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0
)

#: The watch over the requests of this thread / task, if any.
current: ContextVar[Watch | None] = ContextVar("vibesdk_watch", default=None)

_SocketOption = Iterable[Any]


class Watch:
    """What may cut the requests one thread or task makes: :meth:`cut`, or ``deadline``.

    ``deadline`` is on ``clock`` (monotonic seconds). Set it as
    ``token = current.set(watch)`` and undo with ``current.reset(token)``.
    """

    __slots__ = ("_cut", "clock", "deadline", "stream")

    def __init__(
        self, deadline: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.deadline = deadline
        self.clock = clock
        self.stream: Any = None
        self._cut = False

    def cut(self) -> None:
        """Fail the watched request now and every later one. Callable from any thread."""
        self._cut = True
        stream = self.stream
        if stream is not None:
            _shutdown(stream)

    def before_io(self, stream: Any, timeout: float | None) -> float | None:
        """Note ``stream`` as the one in use; raise if cut or late; the timeout to use."""
        # The stream is noted before the flag is read, and cut() sets the flag before
        # it reads the stream: one of the two always sees the other.
        self.stream = stream
        if self._cut:
            import httpcore

            raise httpcore.ReadError("the request was cut: its client is closing")
        if self.deadline is not None:
            left = self.deadline - self.clock()
            if left <= 0:
                import httpcore

                raise httpcore.ReadTimeout("the call's deadline passed")
            if timeout is None or left < timeout:
                return left
        return timeout


class watching:
    """Make ``watch`` the current one for the block: one request, or one read of its body."""

    # A class rather than @contextlib.contextmanager: a chat call enters three of these,
    # and a generator-based context manager costs several times as much per block.
    __slots__ = ("_token", "_watch")

    def __init__(self, watch: Watch) -> None:
        self._watch = watch

    def __enter__(self) -> None:
        self._token = current.set(self._watch)

    def __exit__(self, *exc: object) -> None:
        current.reset(self._token)


def _shutdown(stream: Any) -> None:
    # Closing a socket does not wake a thread blocked reading it; shutting it down does.
    with contextlib.suppress(Exception):
        sock = stream.get_extra_info("socket")
        if isinstance(sock, socket.socket):
            sock.shutdown(socket.SHUT_RDWR)


class _Stream:
    # Duck-typed httpcore.NetworkStream (subclassing would import httpcore at import time).
    __slots__ = ("_inner",)

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        watch = current.get()
        if watch is None:
            return self._inner.read(max_bytes, timeout)
        timeout = watch.before_io(self._inner, timeout)
        try:
            return self._inner.read(max_bytes, timeout)
        finally:
            watch.stream = None

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend:
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: _SocketOption | None = None,
    ) -> Any:
        watch = current.get()
        if watch is not None:
            timeout = _connect_timeout(watch, timeout)
        return _Stream(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: _SocketOption | None = None
    ) -> Any:
        return _Stream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _AsyncStream:
    __slots__ = ("_inner",)

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        watch = current.get()
        if watch is None:
            return await self._inner.read(max_bytes, timeout)
        timeout = watch.before_io(self._inner, timeout)
        try:
            return await self._inner.read(max_bytes, timeout)
        finally:
            watch.stream = None

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        return _AsyncStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _AsyncBackend:
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: _SocketOption | None = None,
    ) -> Any:
        watch = current.get()
        if watch is not None:
            timeout = _connect_timeout(watch, timeout)
        return _AsyncStream(
            await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: _SocketOption | None = None
    ) -> Any:
        return _AsyncStream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _connect_timeout(watch: Watch, timeout: float | None) -> float | None:
    import httpcore

    try:
        return watch.before_io(None, timeout)
    except httpcore.ReadError as exc:
        raise httpcore.ConnectError(str(exc)) from exc
    except httpcore.ReadTimeout as exc:
        raise httpcore.ConnectTimeout(str(exc)) from exc


# httpcore's errors as httpx's, most specific first (the table httpx.HTTPTransport uses).
@functools.cache
def _error_map() -> tuple[tuple[type[Exception], type[httpx.HTTPError]], ...]:
    import httpcore

    return (
        (httpcore.ConnectTimeout, httpx.ConnectTimeout),
        (httpcore.ReadTimeout, httpx.ReadTimeout),
        (httpcore.WriteTimeout, httpx.WriteTimeout),
        (httpcore.PoolTimeout, httpx.PoolTimeout),
        (httpcore.TimeoutException, httpx.TimeoutException),
        (httpcore.ConnectError, httpx.ConnectError),
        (httpcore.ReadError, httpx.ReadError),
        (httpcore.WriteError, httpx.WriteError),
        (httpcore.NetworkError, httpx.NetworkError),
        (httpcore.ProxyError, httpx.ProxyError),
        (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
        (httpcore.LocalProtocolError, httpx.LocalProtocolError),
        (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
        (httpcore.ProtocolError, httpx.ProtocolError),
    )


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core, mapped in _error_map():
            if isinstance(exc, core):
                raise mapped(str(exc)) from exc
        raise


def _core_request(request: httpx.Request) -> httpcore.Request:
    import httpcore

    url = request.url
    return httpcore.Request(
        method=request.method,
        url=httpcore.URL(
            scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
        ),
        headers=request.headers.raw,
        content=request.stream,
        extensions=request.extensions,
    )


@functools.lru_cache(maxsize=8)
def _ssl_context(verify: bool, cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    """httpx's TLS context for ``verify``, made once per process and CA setting (httpx reads
    ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``, hence their values in the key): loading the CA
    bundle takes ~16 ms, and every pool of every client shares the context, which none changes.
    """
    return httpx.create_ssl_context(verify=verify)


def _pool_options(limits: httpx.Limits, verify: bool, shards: int) -> list[dict[str, Any]]:
    """The options of each of ``shards`` pools that share ``limits`` between them."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    ssl_context = _ssl_context(
        verify, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    )

    def share(total: int | None, i: int) -> int | None:
        return None if total is None else total // shards + (i < total % shards)

    return [
        {
            "ssl_context": ssl_context,
            "max_connections": share(limits.max_connections, i),
            "max_keepalive_connections": share(limits.max_keepalive_connections, i),
            "keepalive_expiry": limits.keepalive_expiry,
        }
        for i in range(shards)
    ]


class _Shards:
    """Requests in flight per pool; a request goes to the pool with the fewest (ties: the first).

    httpcore's pool does work proportional to its connections, and for each idle one to all
    of them again, every time a request enters or leaves it (httpcore 1.0.9): one pool of n
    connections costs ~n² a request, k pools of n / k cost ~(n / k)². A client whose gate
    keeps its requests within the pools' connections in all never finds the least busy pool
    full. Thread-safe.
    """

    __slots__ = ("_busy", "_lock")

    def __init__(self, shards: int) -> None:
        self._busy = [0] * shards
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            busy = self._busy
            i = busy.index(min(busy))
            busy[i] += 1
            return i

    def give(self, i: int) -> None:
        with self._lock:
            self._busy[i] -= 1

    def busy(self) -> list[int]:
        """Requests in flight per pool (a snapshot)."""
        with self._lock:
            return list(self._busy)


class _Body(httpx.SyncByteStream):
    def __init__(self, inner: Iterable[bytes], done: Callable[[], None] | None = None) -> None:
        self._inner = inner
        self._done = done

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_errors():
            yield from self._inner

    def close(self) -> None:
        done, self._done = self._done, None
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                with _httpx_errors():
                    close()
        finally:
            if done is not None:
                done()


class WatchedTransport(httpx.BaseTransport):
    """An httpx transport whose requests a :class:`Watch` can cut (see the module)."""

    def __init__(
        self, *, limits: httpx.Limits = _DEFAULT_LIMITS, verify: bool = True, shards: int = 1
    ) -> None:
        import httpcore

        self.network_backend = _Backend(httpcore.SyncBackend())
        self._pools = [
            httpcore.ConnectionPool(
                **options,
                network_backend=self.network_backend,  # type: ignore[arg-type]  # duck-typed
            )
            for options in _pool_options(limits, verify, shards)
        ]
        self._shards = _Shards(shards)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        i = self._shards.take()
        try:
            with _httpx_errors():
                response = self._pools[i].handle_request(_core_request(request))
        except BaseException:
            self._shards.give(i)
            raise
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream, functools.partial(self._shards.give, i)),  # type: ignore[arg-type]
            extensions=response.extensions,
        )

    def close(self) -> None:
        for pool in self._pools:
            pool.close()


class _AsyncBody(httpx.AsyncByteStream):
    def __init__(self, inner: AsyncIterable[bytes], done: Callable[[], None] | None = None) -> None:
        self._inner = inner
        self._done = done

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._inner:
                yield part

    async def aclose(self) -> None:
        done, self._done = self._done, None
        try:
            aclose = getattr(self._inner, "aclose", None)
            if aclose is not None:
                with _httpx_errors():
                    await aclose()
        finally:
            if done is not None:
                done()


class AsyncWatchedTransport(httpx.AsyncBaseTransport):
    """The asynchronous :class:`WatchedTransport`."""

    def __init__(
        self, *, limits: httpx.Limits = _DEFAULT_LIMITS, verify: bool = True, shards: int = 1
    ) -> None:
        import httpcore

        self.network_backend = _AsyncBackend(httpcore.AnyIOBackend())
        self._pools = [
            httpcore.AsyncConnectionPool(
                **options,
                network_backend=self.network_backend,  # type: ignore[arg-type]  # duck-typed
            )
            for options in _pool_options(limits, verify, shards)
        ]
        self._shards = _Shards(shards)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        i = self._shards.take()
        try:
            with _httpx_errors():
                response = await self._pools[i].handle_async_request(_core_request(request))
        except BaseException:
            self._shards.give(i)
            raise
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_AsyncBody(response.stream, functools.partial(self._shards.give, i)),  # type: ignore[arg-type]
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


def sync_transport(*, limits: httpx.Limits = _DEFAULT_LIMITS, shards: int = 1) -> WatchedTransport:
    """A transport whose requests a :class:`Watch` can cut, over ``shards`` pools."""
    return WatchedTransport(limits=limits, shards=shards)


def async_transport(
    *, limits: httpx.Limits = _DEFAULT_LIMITS, shards: int = 1
) -> AsyncWatchedTransport:
    """A transport whose requests a :class:`Watch` can end, over ``shards`` pools."""
    return AsyncWatchedTransport(limits=limits, shards=shards)
