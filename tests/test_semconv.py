"""Our telemetry names are the real OpenTelemetry semantic-convention names, pinned in one place."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from opentelemetry.semconv._incubating.attributes import (
    error_attributes,
    feature_flag_attributes,
    gen_ai_attributes,
    server_attributes,
)
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics

from vibesdk._telemetry import semconv as sc

ROOT = Path(__file__).resolve().parent.parent

# The names other parts rely on (the flag server's guardrails, dashboards, the docs): span and
# metric attributes, and the duration metric with its 3 s boundary.
PINNED_NAMES = {
    "GEN_AI_OPERATION_NAME": "gen_ai.operation.name",
    "GEN_AI_PROVIDER_NAME": "gen_ai.provider.name",
    "GEN_AI_REQUEST_MODEL": "gen_ai.request.model",
    "GEN_AI_RESPONSE_MODEL": "gen_ai.response.model",
    "GEN_AI_USAGE_INPUT_TOKENS": "gen_ai.usage.input_tokens",
    "GEN_AI_USAGE_OUTPUT_TOKENS": "gen_ai.usage.output_tokens",
    "GEN_AI_RESPONSE_FINISH_REASONS": "gen_ai.response.finish_reasons",
    "ERROR_TYPE": "error.type",
    "SERVER_ADDRESS": "server.address",
    "SERVER_PORT": "server.port",
    "FEATURE_FLAG_KEY": "feature_flag.key",
    "FEATURE_FLAG_RESULT_VARIANT": "feature_flag.result.variant",
    "FEATURE_FLAG_RESULT_REASON": "feature_flag.result.reason",
    "FEATURE_FLAG_CONTEXT_ID": "feature_flag.context.id",
    "FEATURE_FLAG_VERSION": "feature_flag.version",
    "METRIC_OPERATION_DURATION": "gen_ai.client.operation.duration",
    "METRIC_TOKEN_USAGE": "gen_ai.client.token.usage",
    "METRIC_TIME_TO_FIRST_CHUNK": "gen_ai.client.operation.time_to_first_chunk",
    "METRIC_SERVER_TIME_TO_FIRST_TOKEN": "gen_ai.server.time_to_first_token",
    "METRIC_FALLBACKS": "vibesdk.fallbacks",
    "METRIC_QUALITY_FAILURES": "vibesdk.quality.failures",
    "METRIC_EXPOSURES": "vibesdk.exposures",
    "VIBESDK_CLIENT_ID": "vibesdk.client.id",
    "VIBESDK_STEP": "vibesdk.step",
    "VIBESDK_FALLBACK_REASON": "vibesdk.fallback.reason",
    "VIBESDK_BUCKET": "vibesdk.bucket",
    "VIBESDK_PROMPT_REF": "vibesdk.prompt.ref",
    "VIBESDK_QUALITY_FAILURES": "vibesdk.quality.failures",
}


def _upstream_names() -> set[str]:
    names: set[str] = set()
    for module in (
        gen_ai_attributes,
        feature_flag_attributes,
        error_attributes,
        server_attributes,
        gen_ai_metrics,
    ):
        names.update(v for k, v in vars(module).items() if k.isupper() and isinstance(v, str))
    return names


def _ours() -> dict[str, str]:
    return {k: v for k, v in vars(sc).items() if k.isupper() and isinstance(v, str)}


@pytest.mark.parametrize(("constant", "value"), sorted(PINNED_NAMES.items()))
def test_relied_on_names_are_pinned(constant: str, value: str) -> None:
    """Every name other parts rely on has its constant, with exactly that value."""
    assert getattr(sc, constant) == value


def test_every_otel_name_exists_upstream() -> None:
    """Each gen_ai.*, feature_flag.*, error.* and server.* name we emit is a real semconv name."""
    upstream = _upstream_names()
    ours = {
        k: v
        for k, v in _ours().items()
        if re.match(r"^(gen_ai|feature_flag|error|server)\.", v)
        and not k.startswith(("EVENT_", "SPAN_"))
    }
    assert ours, "no semconv names found"
    missing = {k: v for k, v in ours.items() if v not in upstream}
    assert missing == {}


def test_event_names_are_the_semconv_ones() -> None:
    """The evaluation and feature-flag event names are the ones the conventions define."""
    assert sc.EVENT_GEN_AI_EVALUATION_RESULT == "gen_ai.evaluation.result"
    assert sc.EVENT_FEATURE_FLAG_EVALUATION == "feature_flag.evaluation"


def test_our_own_names_live_under_vibesdk() -> None:
    """Names that are not OpenTelemetry's own live under vibesdk.*, never squatting on semconv."""
    for key, value in _ours().items():
        if key.startswith(("VIBESDK_", "SPAN_")) or key in {"METRIC_FALLBACKS"}:
            assert value.startswith("vibesdk."), key


def test_duration_buckets_have_a_3s_boundary_and_follow_semconv() -> None:
    """The duration histogram keeps semconv's advisory boundaries and adds 3.0 s."""
    assert 3.0 in sc.OPERATION_DURATION_BUCKETS
    assert list(sc.OPERATION_DURATION_BUCKETS) == sorted(sc.OPERATION_DURATION_BUCKETS)
    advisory = [
        0.01,
        0.02,
        0.04,
        0.08,
        0.16,
        0.32,
        0.64,
        1.28,
        2.56,
        5.12,
        10.24,
        20.48,
        40.96,
        81.92,
    ]
    assert [b for b in sc.OPERATION_DURATION_BUCKETS if b != 3.0] == advisory


def test_reasons_map_to_semconv_spelling() -> None:
    """OpenFeature reasons become feature_flag.result.reason's lower-case values."""
    assert sc.flag_reason("SPLIT") == "split"
    assert sc.flag_reason("TARGETING_MATCH") == "targeting_match"
    assert sc.flag_reason("DISABLED") == "disabled"
    assert sc.flag_reason("ERROR") == "error"
    assert sc.flag_reason("SOMETHING_NEW") == "unknown"


def test_span_name_and_prompt_ref_formats() -> None:
    """The call span is "chat {model}" and a prompt reference is "id@version"."""
    assert sc.span_name("vibethinker-1.5b") == "chat vibethinker-1.5b"
    assert sc.span_name(None) == "chat"
    assert sc.prompt_ref("math-solver", 3) == "math-solver@3"


def test_every_name_the_telemetry_page_quotes_is_one_we_emit() -> None:
    """Each gen_ai/feature_flag/error/server/vibesdk name in docs/concepts/telemetry.md is ours."""
    page = (ROOT / "docs" / "concepts" / "telemetry.md").read_text(encoding="utf-8")
    quoted = set(
        re.findall(r"`((?:gen_ai|feature_flag|error|server|vibesdk)\.[a-z_.]*[a-z_])`", page)
    )
    assert {"server.address", "feature_flag.evaluation", "vibesdk.fallbacks"} <= quoted
    # Settings and module paths the page names in the same spelling are not telemetry names.
    quoted -= {"vibesdk.telemetry", "vibesdk.testing", "vibesdk.configure_telemetry"}
    assert quoted <= set(_ours().values())
