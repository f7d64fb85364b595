"""Reading a backend's body within bounds, sans I/O: size caps and SSE line splitting.

A backend may send anything: a body of gigabytes, one endless line, or a byte
every few seconds. The clients read bodies in chunks through these helpers,
each read waiting no longer than the attempt's deadline, and check the deadline
again after every chunk, so no backend can exhaust the app's memory or hold a
call past its deadline by trickling or by going silent.
"""

from __future__ import annotations

import re

from vibesdk._errors import MalformedResponseError

__all__ = ["MAX_BODY_BYTES", "MAX_ERROR_BYTES", "MAX_LINE_CHARS", "BodyReader", "LineSplitter"]

#: The most a non-streamed answer, or a whole stream, may carry (characters for streams).
MAX_BODY_BYTES = 64 * 1024 * 1024
#: The longest line a stream may send (one event's ``data:`` line).
MAX_LINE_CHARS = 4 * 1024 * 1024
#: How much of an error body is read to quote the server's message.
MAX_ERROR_BYTES = 64 * 1024

# SSE ends lines at CRLF, LF or CR only. str.splitlines() (and so httpx's
# iter_lines) also splits at U+2028, U+2029 and U+0085, which a model may emit
# and JSON carries unescaped: that would cut a data line in two.
_EOL = re.compile(r"\r\n|\r|\n")


class BodyReader:
    """Collects a body's chunks; raises :class:`~vibesdk.MalformedResponseError` past ``limit``.

    With ``truncate=True`` it keeps the first ``limit`` bytes instead and
    :attr:`full` says when to stop reading.
    """

    __slots__ = ("_parts", "_size", "backend", "limit", "truncate")

    def __init__(
        self, *, backend: str, limit: int = MAX_BODY_BYTES, truncate: bool = False
    ) -> None:
        self.backend = backend
        self.limit = limit
        self.truncate = truncate
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of the body."""
        self._size += len(chunk)
        if self._size > self.limit and not self.truncate:
            raise MalformedResponseError(
                f"{self.backend} sent a body larger than {self.limit} bytes", backend=self.backend
            )
        self._parts.append(chunk)

    @property
    def full(self) -> bool:
        """Whether ``limit`` bytes have arrived (stop reading a truncated body)."""
        return self._size >= self.limit

    def body(self) -> bytes:
        """The body read so far (at most ``limit`` bytes)."""
        return b"".join(self._parts)[: self.limit]


class LineSplitter:
    """Splits a stream's decoded text into lines at CRLF, LF or CR (the SSE line ends).

    Raises :class:`~vibesdk.MalformedResponseError` for a line longer than
    ``max_line`` characters or a stream longer than ``max_total``.
    """

    __slots__ = ("_pending", "_pending_size", "_total", "backend", "max_line", "max_total")

    def __init__(
        self, *, backend: str, max_line: int = MAX_LINE_CHARS, max_total: int = MAX_BODY_BYTES
    ) -> None:
        self.backend = backend
        self.max_line = max_line
        self.max_total = max_total
        self._pending: list[str] = []
        self._pending_size = 0
        self._total = 0

    def feed(self, text: str) -> list[str]:
        """The lines ``text`` completes (without their line ends)."""
        self._total += len(text)
        if self._total > self.max_total:
            raise MalformedResponseError(
                f"{self.backend} streamed more than {self.max_total} characters",
                backend=self.backend,
            )
        if "\n" not in text and "\r" not in text:
            # No line end: keep the piece (joined once a line end comes, so a long
            # line arriving in many small chunks costs linear time).
            self._hold(text)
            return []
        if self._pending:
            text = "".join(self._pending) + text
            self._pending.clear()
            self._pending_size = 0
        tail = ""
        if text[-1] == "\r":
            # Maybe the first half of a CRLF: decide when the next chunk comes.
            text, tail = text[:-1], "\r"
        lines = _EOL.split(text)
        self._hold(lines.pop() + tail)
        return lines

    def flush(self) -> list[str]:
        """The last line, if the body ended without a line end."""
        rest = "".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        if not rest:
            return []
        lines = _EOL.split(rest)
        if lines[-1] == "":
            lines.pop()  # the body ended with a line end (a lone CR held back)
        return lines

    def _hold(self, piece: str) -> None:
        if not piece:
            return
        self._pending.append(piece)
        self._pending_size += len(piece)
        if self._pending_size > self.max_line:
            raise MalformedResponseError(
                f"{self.backend} streamed a line longer than {self.max_line} characters",
                backend=self.backend,
            )
