"""vibesdk's tracer and metrics: lazy, per-variant, and never raising into the caller."""

from __future__ import annotations

import logging
import subprocess
import sys
from typing import Any

import pytest
from opentelemetry import trace

from vibesdk._telemetry import guard
from vibesdk._telemetry import semconv as sc
from vibesdk._telemetry.instruments import (
    Metrics,
    emit_feedback,
    flag_attributes,
    server_attributes,
    tracer,
)
from vibesdk.testing import SpanCapture

VARIANT = {sc.FEATURE_FLAG_KEY: "vibethinker", sc.FEATURE_FLAG_RESULT_VARIANT: "canary"}


def test_tracer_without_a_provider_is_a_no_op() -> None:
    """With no provider installed (a fresh process), spans do not record and nothing is set up."""
    code = (
        "from opentelemetry import trace\n"
        "from vibesdk._telemetry.instruments import metrics, tracer\n"
        "with tracer().start_as_current_span('chat m') as span:\n"
        "    assert not span.is_recording()\n"
        "metrics().record_call(flag_key='f', variant='v', model='m', provider='p',\n"
        "                      duration_s=1.0, error_type=None, fallback=False)\n"
        "assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_tracer_follows_the_capture_even_when_cached() -> None:
    """A tracer fetched before a SpanCapture starts still records into it (safe to cache)."""
    cached = tracer()
    with SpanCapture() as capture:
        with cached.start_as_current_span("chat m", attributes={"a": 1}):
            pass
        span = cached.start_span("vibesdk.attempt")
        span.end()
    assert [s.name for s in capture.spans] == ["chat m", "vibesdk.attempt"]
    assert capture.spans[0].instrumentation_scope is not None
    assert capture.spans[0].instrumentation_scope.name == "vibesdk"
    with cached.start_as_current_span("after"):
        pass
    assert len(capture.spans) == 2


def test_record_call_splits_per_variant_with_a_3s_boundary() -> None:
    """The duration histogram carries flag key, variant, model and provider, with 3.0 a boundary."""
    metrics = Metrics()
    with SpanCapture() as capture:
        for variant, seconds in (("canary", 2.9), ("canary", 3.5), ("stable", 0.2)):
            metrics.record_call(
                flag_key="vibethinker",
                variant=variant,
                model="m",
                provider="llama.cpp",
                duration_s=seconds,
                error_type=None,
                fallback=False,
            )
    (canary,) = capture.metric_points(sc.METRIC_OPERATION_DURATION, VARIANT)
    assert canary.count == 2
    assert 3.0 in canary.explicit_bounds
    below_3 = sum(
        c for b, c in zip(canary.explicit_bounds, canary.bucket_counts, strict=False) if b <= 3.0
    )
    assert below_3 == 1
    assert canary.attributes[sc.GEN_AI_REQUEST_MODEL] == "m"
    assert canary.attributes[sc.GEN_AI_PROVIDER_NAME] == "llama.cpp"
    assert canary.attributes[sc.GEN_AI_OPERATION_NAME] == "chat"
    assert canary.attributes[sc.VIBESDK_FALLBACK] is False
    assert capture.metric_count(sc.METRIC_OPERATION_DURATION) == 3


def test_record_call_with_an_error_sets_error_type() -> None:
    """A failed call's duration point carries error.type (and fallback) so failures split out."""
    metrics = Metrics()
    with SpanCapture() as capture:
        metrics.record_call(
            flag_key="f", variant="canary", model=None, provider=None, duration_s=1.0,
            error_type="all_failed", fallback=True,
        )  # fmt: skip
    (point,) = capture.metric_points(sc.METRIC_OPERATION_DURATION)
    assert point.attributes[sc.ERROR_TYPE] == "all_failed"
    assert point.attributes[sc.VIBESDK_FALLBACK] is True
    assert sc.GEN_AI_REQUEST_MODEL not in point.attributes


def test_tokens_ttft_fallbacks_quality_and_feedback_metrics() -> None:
    """Every record_* method lands in its semconv (or vibesdk.*) metric, split per variant."""
    metrics = Metrics()
    with SpanCapture() as capture:
        metrics.record_tokens(
            flag_key="vibethinker", variant="canary", model="m", input_tokens=12, output_tokens=300
        )
        metrics.record_tokens(
            flag_key="vibethinker", variant="canary", model="m", input_tokens=None, output_tokens=5
        )
        metrics.record_ttft(
            flag_key="vibethinker", variant="canary", model="m", seconds=0.25, server_seconds=0.1
        )
        metrics.record_fallback(flag_key="vibethinker", variant="canary", reason="timeout_total")
        metrics.record_quality_failures(
            flag_key="vibethinker", variant="canary", failures=["empty", "too_long"]
        )
        metrics.record_quality_failures(flag_key="vibethinker", variant="canary", failures=[])
        metrics.record_feedback(flag_key="vibethinker", variant="canary", score=4)
        metrics.record_flag_rejected(origin="stream")
    output = {**VARIANT, sc.GEN_AI_TOKEN_TYPE: "output"}
    assert capture.metric_total(sc.METRIC_TOKEN_USAGE, output) == 305
    assert capture.metric_total(sc.METRIC_TOKEN_USAGE, {sc.GEN_AI_TOKEN_TYPE: "input"}) == 12
    assert capture.metric_total(sc.METRIC_TIME_TO_FIRST_CHUNK, VARIANT) == pytest.approx(0.25)
    assert capture.metric_total(sc.METRIC_SERVER_TIME_TO_FIRST_TOKEN) == pytest.approx(0.1)
    assert (
        capture.metric_total(
            sc.METRIC_FALLBACKS, {**VARIANT, sc.VIBESDK_FALLBACK_REASON: "timeout_total"}
        )
        == 1
    )
    assert capture.metric_total(sc.METRIC_QUALITY_FAILURES, VARIANT) == 2
    assert (
        capture.metric_total(sc.METRIC_QUALITY_FAILURES, {sc.VIBESDK_QUALITY_CHECK: "empty"}) == 1
    )
    assert capture.metric_total(sc.METRIC_FEEDBACK_SCORE, VARIANT) == 4
    assert capture.metric_total(sc.METRIC_FLAGS_REJECTED, {sc.VIBESDK_FLAGS_ORIGIN: "stream"}) == 1


class _Exploding:
    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("exporter on fire")


def test_record_methods_never_raise_and_warn_once(caplog: pytest.LogCaptureFixture) -> None:
    """A broken meter is logged once per method and never reaches the caller."""
    metrics = Metrics(meter_provider=_Exploding())  # type: ignore[arg-type]
    guard._warned.clear()
    with caplog.at_level(logging.DEBUG, logger="vibesdk.telemetry"):
        for _ in range(3):
            metrics.record_call(
                flag_key="f", variant="v", model="m", provider="p", duration_s=1,
                error_type=None, fallback=False,
            )  # fmt: skip
            metrics.record_tokens(
                flag_key="f", variant="v", model="m", input_tokens=1, output_tokens=1
            )
            metrics.record_ttft(flag_key="f", variant="v", model="m", seconds=1)
            metrics.record_fallback(flag_key="f", variant="v", reason="r")
            metrics.record_quality_failures(flag_key="f", variant="v", failures=["empty"])
            metrics.record_feedback(flag_key="f", variant="v", score=3)
            metrics.record_flag_rejected(origin="poll")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 7
    assert all("exporter on fire" in r.getMessage() for r in warnings)


def test_bad_values_are_swallowed() -> None:
    """Nonsense values (a string duration) are logged, not raised."""
    metrics = Metrics()
    with SpanCapture() as capture:
        metrics.record_call(
            flag_key="f", variant="v", model="m", provider="p",
            duration_s="slow",  # type: ignore[arg-type]
            error_type=None, fallback=False,
        )  # fmt: skip
    assert capture.metric_points(sc.METRIC_OPERATION_DURATION) == []


def test_flag_attributes_use_semconv_names_and_values() -> None:
    """An evaluation becomes feature_flag.* attributes with semconv reason spelling."""
    attrs = flag_attributes(
        flag_key="vibethinker", variant="canary", reason="SPLIT", user_id="u42",
        flag_version=7, bucket=123, rule_id=None, error_code=None,
    )  # fmt: skip
    assert attrs == {
        "feature_flag.key": "vibethinker",
        "feature_flag.result.variant": "canary",
        "feature_flag.provider.name": "vibesdk",
        "feature_flag.result.reason": "split",
        "feature_flag.context.id": "u42",
        "feature_flag.version": "7",
        "vibesdk.bucket": 123,
    }
    error = flag_attributes(
        flag_key="x", variant="stable", reason="ERROR", error_code="FLAG_NOT_FOUND"
    )
    assert error["error.type"] == "flag_not_found"


def test_feedback_joins_the_answer_trace_as_an_evaluation_event() -> None:
    """Feedback is a span in the answer's trace carrying a gen_ai.evaluation.result event."""
    with SpanCapture() as capture:
        with tracer().start_as_current_span("chat m") as answer:
            context = answer.get_span_context()
        trace_id = trace.format_trace_id(context.trace_id)
        span_id = trace.format_span_id(context.span_id)
        emit_feedback(
            trace_id=trace_id, span_id=span_id, score=4, comment="clear steps",
            flag_key="vibethinker", variant="canary", user_id="u42",
        )  # fmt: skip
        emit_feedback(trace_id=trace_id, score=2)
        emit_feedback(trace_id="not-a-trace-id", score=5)
    first, second, third = capture.find_all(sc.SPAN_FEEDBACK)
    assert first.context is not None
    assert first.parent is not None
    assert first.context.trace_id == context.trace_id
    assert first.parent.span_id == context.span_id
    assert first.attributes is not None
    assert first.attributes[sc.FEATURE_FLAG_RESULT_VARIANT] == "canary"
    (event,) = first.events
    assert event.name == "gen_ai.evaluation.result"
    assert event.attributes == {
        "gen_ai.evaluation.name": "user_feedback",
        "gen_ai.evaluation.score.value": 4.0,
        "gen_ai.evaluation.explanation": "clear steps",
    }
    assert second.context is not None
    assert second.context.trace_id == context.trace_id
    assert third.context is not None
    assert third.context.trace_id != context.trace_id


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8080/v1", {"server.address": "127.0.0.1", "server.port": 8080}),
        ("https://api.openai.com/v1", {"server.address": "api.openai.com", "server.port": 443}),
        ("http://Stable.Internal/v1", {"server.address": "stable.internal", "server.port": 80}),
        ("http://[::1]:9/v1", {"server.address": "::1", "server.port": 9}),
        ("http:///v1", {}),
        ("http://host:port/v1", {}),
    ],
)
def test_server_attributes_come_from_the_base_url(url: str, expected: dict[str, Any]) -> None:
    """server.address is the URL's host; server.port its port, else the scheme's default."""
    assert dict(server_attributes(url)) == expected


def test_metrics_carry_server_provider_and_operation_where_given() -> None:
    """backend= adds server.* to the gen_ai metrics; provider/model reach vibesdk's own metrics."""
    metrics = Metrics()
    backend = "http://10.0.0.7:8081/v1"
    server = {sc.SERVER_ADDRESS: "10.0.0.7", sc.SERVER_PORT: 8081}
    with SpanCapture() as capture:
        metrics.record_call(
            flag_key="f", variant="canary", model="m", provider="p", duration_s=1.0,
            backend=backend,
        )  # fmt: skip
        metrics.record_tokens(
            flag_key="f", variant="canary", model="m", input_tokens=3, output_tokens=4,
            provider="p", backend=backend,
        )  # fmt: skip
        metrics.record_ttft(
            flag_key="f", variant="canary", model="m", seconds=0.1, server_seconds=0.05,
            provider="p", backend=backend,
        )  # fmt: skip
        metrics.record_fallback(
            flag_key="f", variant="canary", reason="http_503", model="m", provider="p"
        )
        metrics.record_quality_failures(
            flag_key="f", variant="canary", failures=["empty"], model="m", provider="p"
        )
        metrics.record_feedback(flag_key="f", variant="canary", score=3, model="m", provider="p")
        metrics.record_feedback(flag_key=None, variant=None, score=1)
    for name in (
        sc.METRIC_OPERATION_DURATION,
        sc.METRIC_TOKEN_USAGE,
        sc.METRIC_TIME_TO_FIRST_CHUNK,
        sc.METRIC_SERVER_TIME_TO_FIRST_TOKEN,
    ):
        assert capture.metric_points(name)
        for point in capture.metric_points(name):
            assert dict(point.attributes or {}).items() >= server.items(), name
    call = {sc.GEN_AI_OPERATION_NAME: "chat", sc.GEN_AI_REQUEST_MODEL: "m"}
    for name in (sc.METRIC_FALLBACKS, sc.METRIC_QUALITY_FAILURES, sc.METRIC_FEEDBACK_SCORE):
        assert capture.metric_count(name, {**call, sc.GEN_AI_PROVIDER_NAME: "p"}) == 1, name
    anonymous = [
        p.attributes
        for p in capture.metric_points(sc.METRIC_FEEDBACK_SCORE)
        if sc.FEATURE_FLAG_KEY not in (p.attributes or {})
    ]
    assert anonymous == [{sc.GEN_AI_OPERATION_NAME: "chat"}]
