"""SpanCapture records vibesdk's telemetry for one block, nests, and leaves globals alone."""

from __future__ import annotations

import pytest
from opentelemetry import trace

from vibesdk._telemetry import semconv as sc
from vibesdk._telemetry.instruments import Metrics, tracer
from vibesdk.testing import SpanCapture


def _call(metrics: Metrics, variant: str, seconds: float) -> None:
    with tracer().start_as_current_span(sc.span_name("m")):
        metrics.record_call(
            flag_key="f", variant=variant, model="m", provider="p", duration_s=seconds,
            error_type=None, fallback=False,
        )  # fmt: skip


def test_spans_and_metrics_are_captured_for_the_block_only() -> None:
    """Inside the block telemetry is recorded; before and after it goes to the no-op default."""
    metrics = Metrics()
    _call(metrics, "stable", 1.0)
    with SpanCapture() as capture:
        _call(metrics, "canary", 2.0)
    _call(metrics, "stable", 1.0)
    assert [s.name for s in capture.spans] == ["chat m"]
    assert capture.metric_count(sc.METRIC_OPERATION_DURATION) == 1
    assert capture.metric_total(sc.METRIC_OPERATION_DURATION) == 2.0


def test_global_providers_are_untouched() -> None:
    """Entering and leaving a capture never installs a global provider."""
    before = trace.get_tracer_provider()
    with SpanCapture():
        assert trace.get_tracer_provider() is before
    assert trace.get_tracer_provider() is before


def test_captures_nest_and_restore_the_outer_one() -> None:
    """An inner capture takes over for its block; the outer one records again afterwards."""
    metrics = Metrics()
    with SpanCapture() as outer:
        _call(metrics, "a", 1.0)
        with SpanCapture() as inner:
            _call(metrics, "b", 1.0)
        _call(metrics, "c", 1.0)
    outer_variants = {
        p.attributes[sc.FEATURE_FLAG_RESULT_VARIANT]
        for p in outer.metric_points(sc.METRIC_OPERATION_DURATION)
    }
    assert outer_variants == {"a", "c"}
    assert (
        inner.metric_total(sc.METRIC_OPERATION_DURATION, {sc.FEATURE_FLAG_RESULT_VARIANT: "b"}) == 1
    )
    assert len(outer.spans) == 2
    assert len(inner.spans) == 1


def test_find_matches_the_name_prefix_and_explains_misses() -> None:
    """find("chat") finds "chat {model}"; a miss raises LookupError listing what was seen."""
    with SpanCapture() as capture:
        _call(Metrics(), "a", 1.0)
    assert capture.find("chat").name == "chat m"
    assert capture.find("chat m").name == "chat m"
    assert capture.find_all("cha") == []
    with pytest.raises(LookupError, match="chat m"):
        capture.find("vibesdk.attempt")


def test_spans_opened_by_the_test_parent_vibesdk_spans() -> None:
    """A span the test opens with its own tracer is the parent of vibesdk's span."""
    with SpanCapture() as capture:
        own = capture.tracer_provider.get_tracer("app")
        with own.start_as_current_span("request") as parent:
            _call(Metrics(), "a", 1.0)
    child = capture.find("chat")
    assert child.parent is not None
    assert child.parent.span_id == parent.get_span_context().span_id
    capture.clear()
    assert capture.spans == ()


def test_metric_filters_need_every_attribute_to_match() -> None:
    """metric_points keeps only points carrying all the given attribute values."""
    metrics = Metrics()
    with SpanCapture() as capture:
        _call(metrics, "canary", 1.0)
        _call(metrics, "stable", 3.0)
    assert len(capture.metric_points(sc.METRIC_OPERATION_DURATION)) == 2
    wanted = {sc.FEATURE_FLAG_RESULT_VARIANT: "stable", sc.GEN_AI_REQUEST_MODEL: "m"}
    assert capture.metric_total(sc.METRIC_OPERATION_DURATION, wanted) == 3.0
    assert capture.metric_points(sc.METRIC_OPERATION_DURATION, {"nope": 1}) == []
    assert capture.metric_points("no.such.metric") == []
