"""What a real call puts on its spans and metrics beyond the basics, for Client and AsyncClient.

``server.address`` / ``server.port`` of the URL actually called (attempt spans, the call span,
the ``gen_ai.*`` metrics), ``gen_ai.provider.name`` on every per-call metric, the GenAI
attributes on the feedback metric, and the opt-in ``feature_flag.evaluation`` span event.
Backends are real HTTP servers on loopback; telemetry goes to the real SDK via SpanCapture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

import vibesdk
from tests.client_harness import Driver
from tests.telemetry_harness import ASK, USER, canary_document, loopback_backends
from vibesdk._telemetry import semconv as sc
from vibesdk.testing import InMemoryFlagSource, SpanCapture, make_document, make_flag

PROVIDER = "llama.cpp"  # make_flag's provider for both variants


FLAGS = {
    "falls-back": ("good", "bad"),
    "all-fail": ("bad", "bad"),
    "empty": ("good", "empty"),
}


@pytest.fixture(scope="module")
def urls() -> Iterator[dict[str, str]]:
    with loopback_backends() as served:
        yield served


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def _server(url: str) -> dict[str, Any]:
    return {sc.SERVER_ADDRESS: "127.0.0.1", sc.SERVER_PORT: _port(url)}


@pytest.fixture
def make(kind: str, urls: dict[str, str]) -> Iterator[Any]:
    drivers: list[Driver] = []

    def build(**kwargs: Any) -> Driver:
        d = Driver(
            kind,
            flag_source=InMemoryFlagSource(canary_document(urls, FLAGS)),
            cache_dir="",
            **kwargs,
        )
        drivers.append(d)
        return d

    yield build
    for d in drivers:
        d.dispose()


# -- server.address / server.port ------------------------------------------------------------------


def test_attempt_and_call_spans_name_the_server_actually_called(
    make: Any, urls: dict[str, str]
) -> None:
    """Each attempt span names its URL's host and port; the call span the one that answered."""
    d = make()
    with SpanCapture() as capture:
        result = d.chat("falls-back", USER, ASK)
    assert result.fallback is True
    canary_attempt, stable_attempt = capture.find_all(sc.SPAN_ATTEMPT)
    assert canary_attempt.attributes is not None
    assert stable_attempt.attributes is not None
    assert dict(canary_attempt.attributes).items() >= _server(urls["bad"]).items()
    assert dict(stable_attempt.attributes).items() >= _server(urls["good"]).items()
    call = capture.find("chat")
    assert call.attributes is not None
    assert dict(call.attributes).items() >= _server(urls["good"]).items()


def test_a_failed_call_span_names_the_last_server_tried(make: Any, urls: dict[str, str]) -> None:
    """When every backend failed, the call span and its duration point name the last one tried."""
    d = make()
    with SpanCapture() as capture, pytest.raises(vibesdk.AllBackendsFailedError):
        d.chat("all-fail", USER, ASK)
    call = capture.find("chat")
    assert call.attributes is not None
    assert dict(call.attributes).items() >= _server(urls["bad"]).items()
    (point,) = capture.metric_points(sc.METRIC_OPERATION_DURATION)
    assert dict(point.attributes or {}).items() >= _server(urls["bad"]).items()
    assert point.attributes is not None
    assert point.attributes[sc.ERROR_TYPE] == "all_failed"


def test_gen_ai_metrics_carry_the_server_that_answered(make: Any, urls: dict[str, str]) -> None:
    """Duration, token usage and both time-to-first-token metrics carry server.address/port."""
    d = make()
    with SpanCapture() as capture:
        d.chat("falls-back", USER, ASK)
        d.stream("falls-back", USER, ASK)
    answered = _server(urls["good"])
    for metric in (
        sc.METRIC_OPERATION_DURATION,
        sc.METRIC_TOKEN_USAGE,
        sc.METRIC_TIME_TO_FIRST_CHUNK,
        sc.METRIC_SERVER_TIME_TO_FIRST_TOKEN,
    ):
        points = capture.metric_points(metric)
        assert points, metric
        for point in points:
            assert dict(point.attributes or {}).items() >= answered.items(), metric
    assert capture.metric_count(sc.METRIC_OPERATION_DURATION, answered) == 2


# -- gen_ai.provider.name and friends on vibesdk's own metrics ------------------------------------


def test_fallback_and_quality_metrics_carry_the_provider(make: Any) -> None:
    """vibesdk.fallbacks and vibesdk.quality.failures split by provider, model and operation."""
    d = make()
    with SpanCapture() as capture:
        d.chat("falls-back", USER, ASK)
        result = d.chat("empty", USER, ASK)
    assert result.quality is not None
    assert "empty" in result.quality.failures
    (fallback,) = capture.metric_points(sc.METRIC_FALLBACKS)
    assert fallback.attributes == {
        sc.FEATURE_FLAG_KEY: "falls-back",
        sc.FEATURE_FLAG_RESULT_VARIANT: "canary",
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.GEN_AI_REQUEST_MODEL: "vibethinker-1.5b",
        sc.GEN_AI_PROVIDER_NAME: PROVIDER,
        sc.VIBESDK_FALLBACK_REASON: "http_503",
    }
    quality = capture.metric_points(sc.METRIC_QUALITY_FAILURES, {sc.VIBESDK_QUALITY_CHECK: "empty"})
    assert quality
    for point in quality:
        assert point.attributes is not None
        assert point.attributes[sc.GEN_AI_PROVIDER_NAME] == PROVIDER
        assert point.attributes[sc.GEN_AI_OPERATION_NAME] == "chat"


def test_the_feedback_metric_carries_operation_model_and_provider(make: Any) -> None:
    """Feedback on a known answer splits by flag, variant, model and provider."""
    d = make()
    with SpanCapture() as capture:
        result = d.chat("falls-back", USER, ASK)
        d.feedback(result.trace_id, 5)
        d.feedback("0" * 31 + "1", 1)
    known = capture.metric_points(sc.METRIC_FEEDBACK_SCORE, {sc.FEATURE_FLAG_KEY: "falls-back"})
    assert [p.attributes for p in known] == [
        {
            sc.GEN_AI_OPERATION_NAME: "chat",
            sc.FEATURE_FLAG_KEY: "falls-back",
            sc.FEATURE_FLAG_RESULT_VARIANT: "stable",  # the variant that answered
            sc.GEN_AI_REQUEST_MODEL: "stable-model",
            sc.GEN_AI_PROVIDER_NAME: PROVIDER,
        }
    ]
    unknown = [
        p
        for p in capture.metric_points(sc.METRIC_FEEDBACK_SCORE)
        if sc.FEATURE_FLAG_KEY not in (p.attributes or {})
    ]
    assert [p.attributes for p in unknown] == [{sc.GEN_AI_OPERATION_NAME: "chat"}]


# -- the feature_flag.evaluation span event ------------------------------------------------------


def _evaluations(span: Any) -> list[dict[str, Any]]:
    return [dict(e.attributes) for e in span.events if e.name == sc.EVENT_FEATURE_FLAG_EVALUATION]


def test_no_flag_evaluation_event_by_default(make: Any) -> None:
    """By default the call span carries the evaluation as attributes only, without the event."""
    d = make()
    with SpanCapture() as capture:
        d.chat("falls-back", USER, ASK)
    assert _evaluations(capture.find("chat")) == []


def test_the_flag_evaluation_event_when_asked_for(make: Any) -> None:
    """flag_evaluation_events=True adds one feature_flag.evaluation event, semconv names only."""
    d = make(flag_evaluation_events=True)
    with SpanCapture() as capture:
        d.chat("falls-back", USER, ASK)
        d.stream("falls-back", USER, ASK)
    calls = capture.find_all("chat")
    assert len(calls) == 2
    for call in calls:
        assert _evaluations(call) == [
            {
                sc.FEATURE_FLAG_KEY: "falls-back",
                sc.FEATURE_FLAG_RESULT_VARIANT: "canary",
                sc.FEATURE_FLAG_PROVIDER_NAME: "vibesdk",
                sc.FEATURE_FLAG_RESULT_REASON: "split",
                sc.FEATURE_FLAG_CONTEXT_ID: USER,
                sc.FEATURE_FLAG_VERSION: "1",
            }
        ]


def test_the_flag_evaluation_event_of_an_unknown_flag_names_the_error(make: Any) -> None:
    """An evaluation that failed carries error.type with the OpenFeature code, lower-cased."""
    d = make(flag_evaluation_events=True)
    with SpanCapture() as capture, pytest.raises(vibesdk.VibeError):
        d.chat("no-such-flag", USER, ASK)
    (event,) = _evaluations(capture.find("chat"))
    assert event[sc.FEATURE_FLAG_KEY] == "no-such-flag"
    assert event[sc.FEATURE_FLAG_RESULT_REASON] == "error"
    assert event[sc.ERROR_TYPE] == "flag_not_found"


def test_the_flag_evaluation_event_setting_reads_the_environment(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """VIBESDK_FLAG_EVALUATION_EVENTS=true turns the event on like the keyword does."""
    monkeypatch.setenv("VIBESDK_FLAG_EVALUATION_EVENTS", "true")
    d = make()
    assert d.client.settings.flag_evaluation_events is True
    with SpanCapture() as capture:
        d.chat("falls-back", USER, ASK)
    assert len(_evaluations(capture.find("chat"))) == 1


# -- the call span's first attributes, built once per variant and document version ------------


def test_the_call_span_follows_a_flip_of_the_flag_document(kind: str, urls: dict[str, str]) -> None:
    """After a flip the call span names the new version, model and params; each call its own unit.

    The call span's flag and request attributes are built once per variant and document
    version: a new version must never reuse the old one's, and the unit id and bucket are
    the call's own.
    """

    def flag(version_marker: str, temperature: float) -> vibesdk.Flag:
        return make_flag(
            "flips",
            rollout_bps=10_000,
            fallback={"retries": 0},
            variants={
                "stable": {
                    "backend": {"urls": [urls["good"]], "provider": PROVIDER},
                    "model": "stable-model",
                },
                "canary": {
                    "backend": {"urls": [urls["good"]], "provider": PROVIDER},
                    "model": f"model-{version_marker}",
                    "params": {"temperature": temperature},
                },
            },
        )

    source = InMemoryFlagSource(make_document(flag("one", 0.5)))
    d = Driver(kind, flag_source=source, cache_dir="")
    try:
        with SpanCapture() as capture:
            d.chat("flips", "user-a", ASK)
            d.chat("flips", "user-b", ASK)
            source.update(flag("two", 0.25))
            d.chat("flips", "user-a", ASK)
        first_a, first_b, after = (s.attributes or {} for s in capture.find_all("chat"))
    finally:
        d.dispose()
    store = InMemoryFlagSource(make_document(flag("one", 0.5))).store
    for attrs, user, version, model, temperature in (
        (first_a, "user-a", "1", "model-one", 0.5),
        (first_b, "user-b", "1", "model-one", 0.5),
        (after, "user-a", "2", "model-two", 0.25),
    ):
        assert attrs[sc.FEATURE_FLAG_CONTEXT_ID] == user
        assert attrs[sc.VIBESDK_BUCKET] == store.evaluate("flips", user, None).bucket
        assert attrs[sc.FEATURE_FLAG_VERSION] == version
        assert attrs[sc.GEN_AI_REQUEST_MODEL] == model
        assert attrs[sc.GEN_AI_REQUEST_TEMPERATURE] == temperature
