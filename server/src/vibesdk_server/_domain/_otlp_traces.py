"""OTLP traces in, request-log entries out. Pure: no I/O.

An SDK sends one span per logged call (a variant's ``log_share`` in the flag
document selects the calls) to ``/v1/otlp/v1/traces``, on the instrumentation
scope :data:`SCOPE`. Each such span becomes an :class:`Entry`: the call's flag,
variant and trace id, its outcome, and the GenAI convention's content attributes
(``gen_ai.system_instructions``, ``gen_ai.input.messages``,
``gen_ai.output.messages``) decoded from their JSON. Spans of any other scope are
ignored, not refused (a Collector may send this server every span it receives);
a span of that scope without a flag and a variant is refused and reported in the
response's ``partial_success``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from ._otlp import attributes, parse_export

__all__ = ["CONTENT", "MAX_CONTENT_CHARS", "SCOPE", "DecodedSpans", "Entry", "decode_traces"]

#: The instrumentation scope of the SDK's request-log spans.
SCOPE = "vibesdk.request_log"
#: Each content attribute is kept up to this many characters; a longer one is cut, kept as text.
MAX_CONTENT_CHARS = 64 * 1024
#: Content attributes (GenAI semantic conventions) and the entry field each becomes.
CONTENT = {
    "gen_ai.system_instructions": "system_instructions",
    "gen_ai.input.messages": "input_messages",
    "gen_ai.output.messages": "output_messages",
}
_FLAG = "feature_flag.key"
_VARIANT = "feature_flag.result.variant"


@dataclass(frozen=True)
class Entry:
    """One logged call."""

    flag_key: str
    variant: str  # the variant the user was assigned
    trace_id: str  # 32 hex digits, as the app's tracing shows it
    ended_unix_nano: int  # when the call ended
    latency_s: float
    answered_by: str | None = None  # the variant that answered (stable after a fallback)
    model: str | None = None
    prompt_ref: str | None = None
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    error_type: str | None = None
    fallback_reason: str | None = None
    failed_checks: list[str] | None = None  # None: no answer was checked
    content: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DecodedSpans:
    entries: list[Entry]
    rejected: int  # request-log spans refused (no flag or variant)
    ignored: int  # spans of other scopes
    message: str  # why spans were rejected ("" when none were)


def decode_traces(body: bytes, content_type: str | None, encoding: str | None) -> DecodedSpans:
    """Parse an OTLP traces export; raise ``OtlpError`` for a body that cannot be read."""
    request = parse_export(ExportTraceServiceRequest(), "traces", body, content_type, encoding)
    entries: list[Entry] = []
    rejected = ignored = 0
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            if scope_spans.scope.name != SCOPE:
                ignored += len(scope_spans.spans)
                continue
            for span in scope_spans.spans:
                entry = _entry(span)
                if entry is None:
                    rejected += 1
                else:
                    entries.append(entry)
    message = (
        f"{rejected} span(s) of scope {SCOPE} refused: no {_FLAG} or {_VARIANT} attribute"
        if rejected
        else ""
    )
    return DecodedSpans(entries, rejected, ignored, message)


def _entry(span: Span) -> Entry | None:
    attrs = attributes(span.attributes)
    flag, variant = attrs.get(_FLAG), attrs.get(_VARIANT)
    if not isinstance(flag, str) or not isinstance(variant, str) or len(span.trace_id) != 16:
        return None
    end = span.end_time_unix_nano
    latency = max(0, end - span.start_time_unix_nano) / 1e9
    failed = attrs.get("vibesdk.quality.failures")
    reasons = attrs.get("gen_ai.response.finish_reasons")
    return Entry(
        flag_key=flag,
        variant=variant,
        trace_id=span.trace_id.hex(),
        ended_unix_nano=end,
        latency_s=latency,
        answered_by=_str(attrs.get("vibesdk.answered_by")),
        model=_str(attrs.get("gen_ai.request.model")),
        prompt_ref=_str(attrs.get("vibesdk.prompt.ref")),
        finish_reason=_str(reasons[0]) if isinstance(reasons, list) and reasons else None,
        input_tokens=_int(attrs.get("gen_ai.usage.input_tokens")),
        output_tokens=_int(attrs.get("gen_ai.usage.output_tokens")),
        error_type=_str(attrs.get("error.type")),
        fallback_reason=_str(attrs.get("vibesdk.fallback.reason")),
        failed_checks=[str(c) for c in failed] if isinstance(failed, list) else None,
        content={name: _content(attrs.get(key)) for key, name in CONTENT.items() if key in attrs},
    )


def _content(value: object) -> Any:
    """A content attribute's JSON decoded; text that is not JSON (or too long) stays text."""
    if not isinstance(value, str):
        return None
    if len(value) > MAX_CONTENT_CHARS:
        return value[:MAX_CONTENT_CHARS] + "…"
    try:
        return json.loads(value)
    except ValueError:
        return value


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
