"""The one exception tree of vibesdk.

Everything vibesdk raises derives from :class:`VibeError`; errors from httpx,
pydantic and friends are mapped at the boundary (``raise ... from exc``) so the
original stays on ``__cause__``::

    VibeError
    ├── ConfigError              bad local settings; raised at construction only
    ├── FlagDocumentError        a flag document failed validation (never raised by assign())
    ├── FlagsNotReadyError       chat() before any flag document was loaded
    ├── FlagNotFoundError        chat() for a flag the served document does not have
    ├── ClientClosedError        the client was used after close()
    ├── InvalidArgumentError     a bad argument to a public call (also a ``ValueError``)
    └── BackendError             one model backend failed one attempt
        ├── BackendConnectError  could not connect (refused, DNS, TLS)
        ├── BackendTimeoutError  a connect, first-token or total deadline passed
        ├── BackendStatusError   HTTP 4xx/5xx; ``status_code`` says which
        ├── MalformedResponseError  not a chat completion, or an empty answer
        ├── StreamInterruptedError  a stream ended before ``[DONE]``/finish_reason
        ├── CircuitOpenError     the backend's circuit breaker is open
        └── AllBackendsFailedError  the variant *and* its stable fallback failed;
                                    ``primary`` and ``fallback`` hold both causes

Flag evaluation (``assign``) never raises: it returns the stable variant with a
reason and an error code as data. ``chat()`` and ``stream_chat()`` need a
variant's backend to call, so without one they raise :class:`FlagsNotReadyError`
or :class:`FlagNotFoundError` before sending anything.
"""

from __future__ import annotations

__all__ = [
    "AllBackendsFailedError",
    "BackendConnectError",
    "BackendError",
    "BackendStatusError",
    "BackendTimeoutError",
    "CircuitOpenError",
    "ClientClosedError",
    "ConfigError",
    "FlagDocumentError",
    "FlagNotFoundError",
    "FlagsNotReadyError",
    "InvalidArgumentError",
    "MalformedResponseError",
    "StreamInterruptedError",
    "VibeError",
]


class VibeError(Exception):
    """Base class of every error vibesdk raises."""


class ConfigError(VibeError):
    """Local settings are invalid; the message says which one and how to fix it."""


class FlagDocumentError(VibeError):
    """A flag document failed validation; the last good document keeps serving."""


class FlagsNotReadyError(VibeError):
    """``chat()`` / ``stream_chat()`` was called before any flag document was loaded.

    Raised at once, without contacting a backend: with no document there is no
    variant, and so no backend URL, to call. Ship a bootstrap document
    (``bootstrap=``) to serve answers from the first request, or wait for the
    flag server with ``wait_until_ready()``.
    """

    def __init__(self, flag_key: str) -> None:
        super().__init__(
            f"no flag document yet, so flag {flag_key!r} has no backend to call: pass "
            "bootstrap=... (a flag document file) to answer from the first request, "
            "or call wait_until_ready() first"
        )
        self.flag_key = flag_key


class FlagNotFoundError(VibeError):
    """``chat()`` / ``stream_chat()`` named a flag that the served document does not have.

    Raised at once, without contacting a backend. ``flag_key`` is the name
    asked for and ``version`` the served document's version.
    """

    def __init__(self, flag_key: str, version: int | None) -> None:
        super().__init__(
            f"flag {flag_key!r} is not in the flag document (version {version}): "
            "check the flag key, or add the flag to the document"
        )
        self.flag_key = flag_key
        self.version = version


class ClientClosedError(VibeError):
    """The client was used after ``close()``."""


class InvalidArgumentError(VibeError, ValueError):
    """A public call got an argument it cannot take (a bad trace id or score, text
    with no UTF-8 form, an invalid generation parameter).

    Also a :class:`ValueError`, so ``except ValueError`` keeps catching it.
    Raised before the call does any work.
    """


class BackendError(VibeError):
    """One attempt against one model backend failed.

    ``backend`` is the base URL that failed and ``kind`` a short, stable label
    (``connect``, ``timeout``, ``http_503``, ``malformed``, ...) that is used as
    the fallback reason and as ``error.type`` on spans.
    """

    kind = "backend_error"

    def __init__(self, message: str, *, backend: str | None = None) -> None:
        super().__init__(message)
        self.backend = backend


class BackendConnectError(BackendError):
    """The backend could not be reached."""

    kind = "connect"


class BackendTimeoutError(BackendError):
    """A deadline passed: connect, first token or the whole answer."""

    kind = "timeout"

    def __init__(self, message: str, *, backend: str | None = None, phase: str = "total") -> None:
        super().__init__(message, backend=backend)
        self.phase = phase
        self.kind = f"timeout_{phase}"


class BackendStatusError(BackendError):
    """The backend answered with an HTTP error status."""

    def __init__(self, message: str, *, backend: str | None = None, status_code: int) -> None:
        super().__init__(message, backend=backend)
        self.status_code = status_code
        self.kind = f"http_{status_code}"


class MalformedResponseError(BackendError):
    """The answer was not a valid chat completion, or it was empty."""

    kind = "malformed"


class StreamInterruptedError(BackendError):
    """A stream stopped before its end.

    Raised to the caller only when the first token had already been delivered;
    before that, the client falls back to stable instead.
    """

    kind = "stream_interrupted"


class CircuitOpenError(BackendError):
    """The backend's circuit breaker is open, so no request was sent."""

    kind = "circuit_open"


class AllBackendsFailedError(BackendError):
    """The assigned variant failed and so did the stable fallback."""

    kind = "all_failed"

    def __init__(self, primary: BaseException, fallback: BaseException | None) -> None:
        detail = f"primary: {primary!r}"
        if fallback is not None:
            detail += f"; fallback: {fallback!r}"
        super().__init__(f"no backend could answer ({detail})")
        self.primary = primary
        self.fallback = fallback
