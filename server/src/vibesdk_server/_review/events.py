"""Review scores as OpenTelemetry ``gen_ai.evaluation.result`` events (the Logs API).

One event per stored score, on the answer's trace (the trace id the request log recorded; the
answer's span id is not logged, so the event's span id is 0), with the GenAI semantic
conventions' evaluation attributes plus the flag and the variant that was scored. The events go
to the server's logger provider: ``vibe-server --otlp-logs-endpoint`` configures one that
exports over OTLP/HTTP; otherwise the global one, which does nothing unless the process that
embeds the app set one. Emitting never fails a request: an error is logged and the score stays
stored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from opentelemetry._logs import LoggerProvider, LogRecord, SeverityNumber, get_logger_provider
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN_ID, NonRecordingSpan, SpanContext, set_span_in_context

from vibesdk_server._domain._urls import check_http_url

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider as SdkLoggerProvider

__all__ = [
    "EVENT_NAME",
    "GEN_AI_EVALUATION_EXPLANATION",
    "GEN_AI_EVALUATION_NAME",
    "GEN_AI_EVALUATION_SCORE_LABEL",
    "GEN_AI_EVALUATION_SCORE_VALUE",
    "LABELS",
    "REVIEW_EVALUATION_NAME",
    "check_otlp_endpoint",
    "emit_score",
    "otlp_logger_provider",
]

# OpenTelemetry GenAI semantic conventions (incubating); pinned by server/tests/test_review.py.
EVENT_NAME: Final = "gen_ai.evaluation.result"
GEN_AI_EVALUATION_NAME: Final = "gen_ai.evaluation.name"
GEN_AI_EVALUATION_SCORE_VALUE: Final = "gen_ai.evaluation.score.value"
GEN_AI_EVALUATION_SCORE_LABEL: Final = "gen_ai.evaluation.score.label"
GEN_AI_EVALUATION_EXPLANATION: Final = "gen_ai.evaluation.explanation"
FEATURE_FLAG_KEY: Final = "feature_flag.key"
FEATURE_FLAG_RESULT_VARIANT: Final = "feature_flag.result.variant"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
# Our own: who scored it (the admin token's name).
REVIEWER: Final = "vibesdk.review.reviewer"

REVIEW_EVALUATION_NAME: Final = "human_review"
LABELS: Final = {1: "bad", 2: "poor", 3: "fair", 4: "good", 5: "excellent"}
"""The label each score is sent with (``gen_ai.evaluation.score.label``)."""

SCOPE = "vibesdk_server.review"
log = logging.getLogger("vibesdk_server")


def emit_score(provider: LoggerProvider | None, score: Mapping[str, Any]) -> None:
    """One ``gen_ai.evaluation.result`` event for a stored ``score`` (a review-score row)."""
    try:
        logger = (provider or get_logger_provider()).get_logger(SCOPE)
        attributes: dict[str, Any] = {
            GEN_AI_EVALUATION_NAME: REVIEW_EVALUATION_NAME,
            GEN_AI_EVALUATION_SCORE_VALUE: float(score["score"]),
            GEN_AI_EVALUATION_SCORE_LABEL: LABELS[int(score["score"])],
            FEATURE_FLAG_KEY: score["flag"],
            FEATURE_FLAG_RESULT_VARIANT: score["variant"],
            REVIEWER: score["reviewer"],
        }
        if score.get("note"):
            attributes[GEN_AI_EVALUATION_EXPLANATION] = score["note"]
        if score.get("model"):
            attributes[GEN_AI_RESPONSE_MODEL] = score["model"]
        logger.emit(
            LogRecord(
                event_name=EVENT_NAME,
                context=_on_trace(str(score["trace_id"])),
                severity_number=SeverityNumber.INFO,
                attributes=attributes,
            )
        )
    except Exception:
        log.warning("could not emit the review score as an OpenTelemetry event", exc_info=True)


def _on_trace(trace_id: str) -> Context:
    """A context on the answer's trace: its id, no span (span ids are not logged)."""
    span = SpanContext(int(trace_id, 16), INVALID_SPAN_ID, is_remote=True)
    return set_span_in_context(NonRecordingSpan(span))


def check_otlp_endpoint(url: str) -> str:
    """``url`` if it is an http(s) URL with a host (an OTLP/HTTP logs endpoint); else ValueError."""
    rule = "the OTLP logs endpoint must be an http:// or https:// URL"
    return check_http_url(url, rule, "http://collector:4318/v1/logs")


def otlp_logger_provider(endpoint: str) -> SdkLoggerProvider:
    """A logger provider that exports to ``endpoint`` over OTLP/HTTP, in batches
    (``vibe-server --otlp-logs-endpoint``); shut it down on exit to send what is queued."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider as SdkProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    provider = SdkProvider(resource=Resource.create({"service.name": "vibe-server"}))
    provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=endpoint)))
    return provider
