"""Every telemetry name vibesdk emits, as our own constants.

The ``gen_ai.*``, ``feature_flag.*``, ``error.type`` and ``server.*`` names are
OpenTelemetry semantic conventions (GenAI conventions, now maintained in
open-telemetry/semantic-conventions-genai; feature-flag conventions in
open-telemetry/semantic-conventions). They are copied here rather than
imported from ``opentelemetry-semantic-conventions`` because that package
marks them incubating and moves them between releases; a test pins every
value so a typo or an upstream rename is caught in one place.

``vibesdk.*`` names are our own extras; nothing upstream defines them.
"""

# ruff: noqa: S105  -- "token" in a metric name is not a password

from __future__ import annotations

from typing import Final

# --- GenAI attributes (spans and metrics) ------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_TOP_K: Final = "gen_ai.request.top_k"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_SEED: Final = "gen_ai.request.seed"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
GEN_AI_PROMPT_NAME: Final = "gen_ai.prompt.name"
# Message content, as JSON per the GenAI convention: only on the request log's spans, which go to
# the flag server alone, never on the spans the app's own OpenTelemetry setup receives.
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"

# Evaluation results (user feedback, output checks) -- the gen_ai.evaluation.result event.
GEN_AI_EVALUATION_NAME: Final = "gen_ai.evaluation.name"
GEN_AI_EVALUATION_SCORE_VALUE: Final = "gen_ai.evaluation.score.value"
GEN_AI_EVALUATION_SCORE_LABEL: Final = "gen_ai.evaluation.score.label"
GEN_AI_EVALUATION_EXPLANATION: Final = "gen_ai.evaluation.explanation"

# Well-known values.
GEN_AI_OPERATION_CHAT: Final = "chat"
GEN_AI_TOKEN_TYPE_INPUT: Final = "input"
GEN_AI_TOKEN_TYPE_OUTPUT: Final = "output"

# --- General attributes -------------------------------------------------------
ERROR_TYPE: Final = "error.type"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
# error.type's value when the error has no better label (semconv's fallback value).
ERROR_TYPE_OTHER: Final = "_OTHER"

# --- Feature-flag attributes ----------------------------------------------------
FEATURE_FLAG_KEY: Final = "feature_flag.key"
FEATURE_FLAG_RESULT_VARIANT: Final = "feature_flag.result.variant"
FEATURE_FLAG_RESULT_REASON: Final = "feature_flag.result.reason"
FEATURE_FLAG_CONTEXT_ID: Final = "feature_flag.context.id"
FEATURE_FLAG_VERSION: Final = "feature_flag.version"
FEATURE_FLAG_PROVIDER_NAME: Final = "feature_flag.provider.name"
FEATURE_FLAG_ERROR_MESSAGE: Final = "feature_flag.error.message"
# error.type on a flag evaluation carries the OpenFeature error code, lower-cased.
FEATURE_FLAG_PROVIDER_VALUE: Final = "vibesdk"

# --- vibesdk extras -----------------------------------------------------------
VIBESDK_BUCKET: Final = "vibesdk.bucket"  # the unit's bucket, 0..9999
VIBESDK_RULE_ID: Final = "vibesdk.rule.id"  # the targeting rule that matched, if any
VIBESDK_FALLBACK: Final = "vibesdk.fallback"  # bool: stable answered for the assigned variant
# bool, only when true: an attempt on the assigned variant failed (retried, fallen back from or
# raised), whatever answered in the end (metric attribute of the call's duration)
VIBESDK_ATTEMPT_FAILED: Final = "vibesdk.attempt.failed"
VIBESDK_FALLBACK_REASON: Final = "vibesdk.fallback.reason"  # BackendError.kind: timeout_first_token
VIBESDK_FALLBACK_FROM: Final = "vibesdk.fallback.from"  # the variant that failed
VIBESDK_FALLBACK_TO: Final = "vibesdk.fallback.to"  # the variant that answered instead
VIBESDK_ANSWERED_BY: Final = "vibesdk.answered_by"  # request log: the variant that answered
VIBESDK_PROMPT_REF: Final = "vibesdk.prompt.ref"  # "<template id>@<version>"
VIBESDK_QUALITY_FAILURES: Final = "vibesdk.quality.failures"  # string[] of failed check names
VIBESDK_QUALITY_CHECK: Final = "vibesdk.quality.check"  # one check name (metric attribute)
VIBESDK_QUALITY_PASSED: Final = "vibesdk.quality.passed"  # bool
VIBESDK_ATTEMPT: Final = "vibesdk.attempt"  # 1-based attempt number on an attempt span
VIBESDK_BACKEND_URL: Final = "vibesdk.backend.url"  # base URL of the backend tried
VIBESDK_BREAKER_STATE: Final = "vibesdk.breaker.state"  # closed | open | half_open
# provider llama-cpp-python (a model in the app's process), on the call span:
VIBESDK_LOCAL_QUEUE_WAIT: Final = "vibesdk.local.queue_wait"  # s waited for the model's turn
VIBESDK_LOCAL_QUEUED_BEHIND: Final = "vibesdk.local.queued_behind"  # calls ahead on arrival
VIBESDK_LOCAL_LOAD_TIME: Final = "vibesdk.local.load_time"  # s this call waited for the load
VIBESDK_FEEDBACK_SCORE: Final = "vibesdk.feedback.score"  # 1..5 (attribute on the feedback span)
VIBESDK_REPORT_REASON: Final = "vibesdk.report.reason"  # the user's words (on the report span)
# random per client, on vibesdk.exposures only: which client counted the users (two clients
# may count one user; the server's sample-ratio test reads one client's counts)
VIBESDK_CLIENT_ID: Final = "vibesdk.client.id"
# on vibesdk.exposures only: the flag's step (Flag.step_id) the users were counted in
VIBESDK_STEP: Final = "vibesdk.step"

# --- Span and event names -----------------------------------------------------
# The call span is named "chat {model}" (semconv: "{gen_ai.operation.name} {gen_ai.request.model}").
SPAN_ATTEMPT: Final = "vibesdk.attempt"  # one child span per backend attempt
SPAN_FEEDBACK: Final = "vibesdk.feedback"  # a short span, in the answer's trace, per feedback
SPAN_REPORT: Final = "vibesdk.report"  # a short span, in the answer's trace, per report
# The instrumentation scope of the request log's spans (one per logged call, sent to the flag
# server only); the server keeps the spans of this scope and ignores any other.
SCOPE_REQUEST_LOG: Final = "vibesdk.request_log"
EVENT_FALLBACK: Final = "vibesdk.fallback"  # span event on the call span, per fallback
EVENT_FEATURE_FLAG_EVALUATION: Final = "feature_flag.evaluation"
EVENT_GEN_AI_EVALUATION_RESULT: Final = "gen_ai.evaluation.result"

# --- Metric names ---------------------------------------------------------------
METRIC_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"  # histogram, s
METRIC_TOKEN_USAGE: Final = "gen_ai.client.token.usage"  # histogram, {token}
# Client-side time to first token: the name semconv gives a *client* measuring it.
METRIC_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"  # histogram, s
# The model *server's* own measure; vibesdk records it only from llama.cpp `timings`.
METRIC_SERVER_TIME_TO_FIRST_TOKEN: Final = "gen_ai.server.time_to_first_token"  # histogram, s
METRIC_FALLBACKS: Final = "vibesdk.fallbacks"  # counter, {fallback}
METRIC_QUALITY_FAILURES: Final = "vibesdk.quality.failures"  # counter, {failure}
METRIC_FEEDBACK_SCORE: Final = "vibesdk.feedback.score"  # histogram, 1..5
METRIC_REPORTS: Final = "vibesdk.reports"  # counter, {report}: answers users reported
# counter, {user}: users a client met for the first time in a flag's current rollout step,
# per variant (the flag server's sample-ratio test counts these; see _telemetry/exposures.py)
METRIC_EXPOSURES: Final = "vibesdk.exposures"
METRIC_LOCAL_QUEUE_WAIT: Final = "vibesdk.local.queue_wait"  # histogram, s: llama-cpp-python
METRIC_FLAGS_REJECTED: Final = "vibesdk.flags.rejected"  # counter: invalid flag documents
VIBESDK_FLAGS_ORIGIN: Final = "vibesdk.flags.origin"  # where a rejected document came from

# Explicit bucket boundaries (seconds): semconv's advisory for operation duration, plus 3.0 so
# "slower than 3 s" is one bucket query -- the guardrail the flag server watches.
OPERATION_DURATION_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 3.0,
    5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TOKEN_USAGE_BUCKETS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
TIME_TO_FIRST_TOKEN_BUCKETS: Final = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
FEEDBACK_SCORE_BUCKETS: Final = (1, 2, 3, 4, 5)

# OpenFeature reasons (vibesdk.Reason, upper case) -> feature_flag.result.reason values.
_REASONS: Final = {
    "TARGETING_MATCH": "targeting_match",
    "SPLIT": "split",
    "DISABLED": "disabled",
    "ERROR": "error",
    "DEFAULT": "default",
    "STATIC": "static",
    "CACHED": "cached",
    "STALE": "stale",
}


def flag_reason(reason: str) -> str:
    """Map an OpenFeature reason (``"SPLIT"``) to its semconv value (``"split"``).

    Reasons semconv does not know map to ``"unknown"``.
    """
    return _REASONS.get(reason, "unknown")


def span_name(model: str | None, operation: str = GEN_AI_OPERATION_CHAT) -> str:
    """The semconv span name for a GenAI call: ``"chat {model}"`` (``"chat"`` without a model)."""
    return f"{operation} {model}" if model else operation


def prompt_ref(template_id: str, version: int) -> str:
    """The ``vibesdk.prompt.ref`` value for a prompt template: ``"<id>@<version>"``."""
    return f"{template_id}@{version}"
