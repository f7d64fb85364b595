"""A sans-I/O, incremental parser for ``text/event-stream`` (Server-Sent Events).

Bytes go in as they arrive, in chunks of any size; complete events come out.
It follows the WHATWG HTML "event stream interpretation" rules: lines end in
``\\r\\n``, ``\\n`` or ``\\r`` (even when split across chunks); lines starting
with ``:`` are comments; ``data`` lines accumulate, joined by ``\\n``; ``id``
sets the last event id (ignored if it contains NUL); ``retry`` sets the
reconnection delay when it is all ASCII digits; an empty line dispatches; an
event left incomplete when the stream ends is discarded. No I/O, no threads,
no clocks. It is vibesdk's one SSE decoder: the flag sources feed it bytes
(:meth:`SSEParser.feed`), the chat stream parser feeds it the lines httpx has
already split (:meth:`SSEParser.line`).
"""

from __future__ import annotations

import codecs
from typing import NamedTuple

__all__ = ["SSEEvent", "SSEParser"]


class SSEEvent(NamedTuple):
    """One dispatched event. ``id`` is the last event id when it was dispatched."""

    event: str
    data: str
    id: str


class SSEParser:
    """Feed bytes with :meth:`feed`; it returns the events completed by them.

    ``last_event_id`` is what a reconnect should send as ``Last-Event-ID``;
    ``retry_ms`` is the reconnection delay the server asked for, if any;
    ``comments`` counts comment lines (heartbeats such as ``: ping``).
    """

    def __init__(self, last_event_id: str = "") -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text = ""
        self._started = False
        self._data: list[str] = []
        self._event = ""
        self.last_event_id = last_event_id
        self.retry_ms: int | None = None
        self.comments = 0

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume ``chunk`` and return every event it completes, in order."""
        text = self._decoder.decode(chunk)
        if not self._started and text:
            self._started = True
            if text.startswith("\ufeff"):
                text = text[1:]
        buffer = self._text + text
        events: list[SSEEvent] = []
        start = 0
        length = len(buffer)
        while True:
            cr = buffer.find("\r", start)
            lf = buffer.find("\n", start)
            if cr == -1 and lf == -1:
                break
            if cr == -1 or (lf != -1 and lf < cr):
                end, nxt = lf, lf + 1
            elif cr == length - 1:
                # A trailing \r may be the first half of \r\n: wait for more input.
                break
            else:
                end = cr
                nxt = cr + 2 if buffer[cr + 1] == "\n" else cr + 1
            event = self.line(buffer[start:end])
            if event is not None:
                events.append(event)
            start = nxt
        self._text = buffer[start:]
        return events

    def end(self) -> list[SSEEvent]:
        """The stream ended: drop a partial line and any partial event.

        Returns the events still completed at the end, which is possible only
        when the stream ended on a lone ``\\r`` (a line ending held back in
        case ``\\n`` followed).
        """
        events: list[SSEEvent] = []
        rest = self._text + self._decoder.decode(b"", final=True)
        if rest.endswith("\r"):
            event = self.line(rest[:-1])
            if event is not None:
                events.append(event)
        self._text = ""
        self._data = []
        self._event = ""
        return events

    def line(self, line: str) -> SSEEvent | None:
        """Take one line (without its line ending); the event it completes, if any."""
        if not line:
            return self._dispatch()
        if line[0] == ":":
            self.comments += 1
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self.last_event_id = value
        elif name == "retry" and value and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        # Any other field name is ignored, as the specification says.
        return None

    def pending(self) -> SSEEvent | None:
        """Dispatch what has accumulated without the blank line that would end it, if anything.

        For a lenient reader at the end of a body (the specification discards it).
        """
        return self._dispatch()

    def _dispatch(self) -> SSEEvent | None:
        data, event = self._data, self._event
        self._data = []
        self._event = ""
        if not data:
            return None
        return SSEEvent(event or "message", "\n".join(data), self.last_event_id)
