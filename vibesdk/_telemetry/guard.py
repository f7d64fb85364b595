"""The guard between vibesdk and OpenTelemetry: no telemetry failure ever reaches a caller.

OpenTelemetry's SDK does not catch what a span processor raises (``on_start``
raises out of ``start_span``, ``on_end`` out of ``span.end()``), and a vendor's
tracer or a broken build can fail in any span method. vibesdk's own code
therefore reaches spans only through vibesdk's tracer
(:func:`vibesdk._telemetry.instruments.tracer`), which never raises and hands
out :class:`SafeSpan` objects: each method forwards to the real span and
swallows what it raises.
Metric recording is guarded the same way inside
:class:`vibesdk._telemetry.instruments.Metrics`.

A swallowed failure is logged on the ``vibesdk.telemetry`` logger: a warning
with the traceback the first time for each kind (``"span end"``,
``"record_call"``, ...), at debug level afterwards, so a pipeline that fails on
every call does not flood the application's log. Only ``Exception`` is
swallowed: ``KeyboardInterrupt``, cancellation and ``SystemExit`` go on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.trace import SpanContext, Status, StatusCode
from opentelemetry.util.types import Attributes, AttributeValue

__all__ = ["SafeSpan", "swallow"]

_logger = logging.getLogger("vibesdk.telemetry")

# Kinds of failure already warned about (a set: adding is atomic under the GIL, and a
# race costs at most one extra warning).
_warned: set[str] = set()


def swallow(what: str, exc: BaseException) -> None:
    """Log a telemetry failure: a warning the first time per kind, debug afterwards."""
    if what in _warned:
        _logger.debug("vibesdk telemetry: %s failed: %r", what, exc)
        return
    _warned.add(what)
    _logger.warning(
        "vibesdk telemetry: %s failed (%r); the call goes on, telemetry may be incomplete",
        what,
        exc,
        exc_info=exc,
    )


class SafeSpan(trace.Span):
    """A span whose every method forwards to ``span`` and never raises.

    A failing attribute, event or status call loses that piece of data only:
    the span is still ended (and exported, as far as the processors get).
    ``is_recording()`` is ``False`` and ``get_span_context()`` the invalid
    context when the wrapped span cannot answer.
    """

    __slots__ = ("_span",)

    def __init__(self, span: trace.Span) -> None:
        self._span = span

    @property
    def wrapped(self) -> trace.Span:
        """The span this one forwards to."""
        return self._span

    def get_span_context(self) -> SpanContext:
        try:
            return self._span.get_span_context()
        except Exception as exc:
            swallow("span get_span_context", exc)
            return trace.INVALID_SPAN_CONTEXT

    def is_recording(self) -> bool:
        try:
            return self._span.is_recording()
        except Exception as exc:
            swallow("span is_recording", exc)
            return False

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        try:
            self._span.set_attributes(attributes)
        except Exception as exc:
            swallow("span set_attributes", exc)

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        try:
            self._span.set_attribute(key, value)
        except Exception as exc:
            swallow("span set_attribute", exc)

    def add_event(
        self, name: str, attributes: Attributes = None, timestamp: int | None = None
    ) -> None:
        try:
            self._span.add_event(name, attributes, timestamp)
        except Exception as exc:
            swallow("span add_event", exc)

    def add_link(self, context: SpanContext, attributes: Attributes = None) -> None:
        try:
            self._span.add_link(context, attributes)
        except Exception as exc:
            swallow("span add_link", exc)

    def update_name(self, name: str) -> None:
        try:
            self._span.update_name(name)
        except Exception as exc:
            swallow("span update_name", exc)

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        try:
            self._span.set_status(status, description)
        except Exception as exc:
            swallow("span set_status", exc)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        try:
            self._span.record_exception(exception, attributes, timestamp, escaped)
        except Exception as exc:
            swallow("span record_exception", exc)

    def end(self, end_time: int | None = None) -> None:
        try:
            self._span.end(end_time)
        except Exception as exc:
            # Typically a span processor's on_end: the span has ended, and the
            # processors ahead of the failing one have seen it.
            swallow("span end", exc)

    def __repr__(self) -> str:
        return f"SafeSpan({self._span!r})"
