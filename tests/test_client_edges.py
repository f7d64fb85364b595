"""Client and AsyncClient on edge cases a real server can't produce on demand (httpx.MockTransport).

Every test body runs against both clients through tests.client_harness.Driver.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import vibesdk
from tests.client_harness import (
    Backends,
    Driver,
    FakeClock,
    answer,
    chunks_text,
    flag_source,
    json_of,
    sse_body,
)
from vibesdk import (
    AllBackendsFailedError,
    ClientClosedError,
    ConfigError,
    StreamInterruptedError,
)
from vibesdk.testing import SpanCapture, make_document, make_flag

USER = [{"role": "user", "content": "Solve 2+2."}]
CANARY_USER = "u1"  # every user is in the canary at rollout 10000


def document(**fields: Any) -> vibesdk.FlagDocument:
    fields.setdefault("rollout_bps", 10_000)
    fields.setdefault("fallback", {"retries": 1, "retry_backoff_s": 0.1})
    return make_document(
        make_flag(stable_url="http://stable/v1", canary_url="http://canary/v1", **fields)
    )


def ok(request: httpx.Request) -> httpx.Response:
    if json_of(request).get("stream"):
        return httpx.Response(200, content=sse_body("fine", " answer"))
    return httpx.Response(200, json=answer("fine answer"))


@pytest.fixture
def make(kind: str) -> Iterator[Any]:
    drivers: list[Driver] = []

    def build(backends: Backends, doc: vibesdk.FlagDocument | None = None, **kw: Any) -> Driver:
        kw.setdefault("cache_dir", "")
        d = Driver(
            kind,
            flag_source=flag_source(doc or document()),
            transport=backends.transport(),
            **kw,
        )
        drivers.append(d)
        return d

    yield build
    for d in drivers:
        d.dispose()


@pytest.mark.parametrize(
    ("canary", "reason", "attempts"),
    [
        (lambda r: httpx.Response(200, content=b"<html>oops"), "malformed", 2),
        (lambda r: httpx.Response(200, json=answer("   ")), "malformed", 2),
        (lambda r: httpx.Response(429, json={"error": {"message": "busy"}}), "http_429", 2),
        (lambda r: httpx.Response(503, json={"error": {"message": "loading"}}), "http_503", 2),
        (lambda r: httpx.Response(400, json={"error": {"message": "bad"}}), "http_400", 1),
        (lambda r: httpx.Response(404), "http_404", 1),
    ],
)
def test_failing_canary_falls_back_to_stable_after_its_retry_budget(
    make: Any, canary: Any, reason: str, attempts: int
) -> None:
    """Malformed/empty/429/5xx are retried then fall back; other 4xx fall back at once."""
    backends = Backends(canary=canary, stable=ok)
    d = make(backends)
    r = d.chat("vibethinker", CANARY_USER, USER)
    assert (r.text, r.variant, r.model, r.fallback, r.fallback_reason) == (
        "fine answer", "stable", "stable-model", True, reason,
    )  # fmt: skip
    assert r.assignment.variant == "canary"
    assert r.notice is None  # stable has no notice; the canary's is not shown
    assert len(backends.to("canary")) == attempts
    assert len(backends.to("stable")) == 1
    assert len(d.slept) == attempts - 1  # backoff went through the injected sleep


def test_canary_answer_carries_notice_usage_and_no_fallback(make: Any) -> None:
    """A healthy canary answers with its notice, usage, finish reason and model."""
    backends = Backends(canary=ok, stable=ok)
    r = make(backends).chat("vibethinker", CANARY_USER, USER)
    assert (r.variant, r.model, r.fallback, r.fallback_reason) == (
        "canary", "vibethinker-1.5b", False, None,
    )  # fmt: skip
    assert r.notice == "You are trying the new assistant."
    assert r.usage == vibesdk.Usage(5, 1)
    assert r.usage.total_tokens == 6
    assert r.finish_reason == "stop"
    assert r.quality.passed
    assert len(r.trace_id) == 32
    assert r.backend == "http://canary/v1"


def test_reviewed_prompt_and_params_reach_the_backend(make: Any) -> None:
    """The canary gets the template's system prompt instead of the app's, and its params."""
    backends = Backends(canary=ok, stable=ok)
    d = make(backends)
    messages = [{"role": "system", "content": "app prompt"}, *USER]
    d.chat("vibethinker", CANARY_USER, messages, max_tokens=8)
    body = json_of(backends.to("canary")[0])
    assert body["messages"][0]["role"] == "system"
    assert body["messages"][0]["content"].startswith("You are a programming assistant")
    assert body["messages"][1:] == USER
    assert (body["temperature"], body["top_p"], body["top_k"], body["max_tokens"]) == (
        0.6, 0.95, 64, 8,
    )  # fmt: skip
    assert body["model"] == "vibethinker-1.5b"


def test_bad_arguments_raise_at_the_call(make: Any) -> None:
    """Unknown overrides, bad override values and bad messages are caller errors."""
    d = make(Backends(canary=ok, stable=ok))
    with pytest.raises(vibesdk.InvalidArgumentError, match="unknown chat"):
        d.chat("vibethinker", CANARY_USER, USER, temprature=1.0)
    with pytest.raises(ValueError, match="override"):
        d.chat("vibethinker", CANARY_USER, USER, temperature=9.0)
    for bad, problem in [
        ([], "messages must be a non-empty list"),
        ("hello", "messages must be a non-empty list"),
        (["hello"], "each message must be a mapping with a 'role' string"),
        ([{"role": 1, "content": "x"}], "each message must be a mapping with a 'role' string"),
        ([{"content": "x"}], "each message must be a mapping with a 'role' string"),
        ([{"role": "user", "content": 5}], "a message's 'content' must be a string"),
    ]:
        with pytest.raises(vibesdk.InvalidArgumentError, match=problem):
            d.chat("vibethinker", CANARY_USER, bad)


def test_both_variants_failing_raise_all_backends_failed_naming_both(make: Any) -> None:
    """Canary and stable down: AllBackendsFailedError with primary and fallback causes."""
    down = Backends(
        canary=lambda r: httpx.Response(503), stable=lambda r: httpx.Response(500, text="boom")
    )
    d = make(down)
    with pytest.raises(AllBackendsFailedError) as info:
        d.chat("vibethinker", CANARY_USER, USER)
    assert info.value.primary.kind == "http_503"  # type: ignore[attr-defined]
    assert info.value.fallback is not None
    assert info.value.fallback.kind == "http_500"  # type: ignore[attr-defined]
    assert "boom" in str(info.value)


def test_stable_user_with_stable_down_gets_all_backends_failed_without_fallback(
    make: Any,
) -> None:
    """A stable user has no second variant: primary is stable's error, fallback None."""
    d = make(Backends(stable=lambda r: httpx.Response(502)), document(rollout_bps=0))
    with pytest.raises(AllBackendsFailedError) as info:
        d.chat("vibethinker", CANARY_USER, USER)
    assert info.value.primary.kind == "http_502"  # type: ignore[attr-defined]
    assert info.value.fallback is None


def refused_url() -> str:
    """A loopback URL where nothing listens: connections are refused."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def call(d: Driver, stream: bool, flag: str) -> Any:
    return d.stream(flag, "u1", USER) if stream else d.chat(flag, "u1", USER)


@pytest.mark.parametrize("stream", [False, True])
def test_a_flag_not_in_the_document_raises_flag_not_found_without_calling_a_backend(
    make: Any, stream: bool
) -> None:
    """assign() answers stable; chat()/stream_chat() raise FlagNotFoundError, naming the flag."""
    backends = Backends()
    d = make(backends)
    a = d.assign("nope", "u1")
    assert (a.variant, a.reason, a.error_code) == ("stable", "ERROR", "FLAG_NOT_FOUND")
    with pytest.raises(vibesdk.FlagNotFoundError) as info:
        call(d, stream, "nope")
    message = str(info.value)
    assert "'nope' is not in the flag document (version 1)" in message
    assert "\n" not in message
    assert isinstance(info.value, vibesdk.VibeError)
    assert not isinstance(info.value, AllBackendsFailedError)
    assert backends.requests == []


@pytest.mark.parametrize("stream", [False, True])
def test_before_any_document_chat_raises_flags_not_ready_at_once(kind: str, stream: bool) -> None:
    """No document yet (flag server unreachable): FlagsNotReadyError at once, nothing sent."""
    import time

    refused = refused_url()
    backends = Backends()
    d = Driver(kind, server_url=refused, sdk_key="k", cache_dir="", transport=backends.transport())
    try:
        assert d.assign("vibethinker", "u1").error_code == "PROVIDER_NOT_READY"
        started = time.monotonic()
        with pytest.raises(vibesdk.FlagsNotReadyError) as info:
            call(d, stream, "vibethinker")
        assert time.monotonic() - started < 1.0  # nothing was waited for
    finally:
        d.dispose()
    message = str(info.value)
    assert "no flag document yet" in message
    assert "bootstrap=" in message
    assert "wait_until_ready()" in message
    assert "\n" not in message
    assert not isinstance(info.value, AllBackendsFailedError)
    assert backends.requests == []


def test_a_bootstrap_document_serves_chat_from_the_first_call(kind: str, tmp_path: Any) -> None:
    """With bootstrap= and an unreachable flag server, the very first chat() is answered."""
    refused = refused_url()
    path = tmp_path / "flags.json"
    path.write_text(document(rollout_bps=0).model_dump_json())
    backends = Backends(stable=ok)
    d = Driver(
        kind,
        server_url=refused,
        sdk_key="k",
        bootstrap=str(path),
        cache_dir="",
        transport=backends.transport(),
    )
    try:
        r = d.chat("vibethinker", CANARY_USER, USER)
    finally:
        d.dispose()
    assert (r.text, r.variant, r.fallback) == ("fine answer", "stable", False)


def test_api_key_is_sent_and_a_missing_one_falls_back(make: Any) -> None:
    """api_key_name resolves through the api_keys setting; missing -> fallback, no retry."""
    flag = make_flag(
        stable_url="http://stable/v1", canary_url="http://canary/v1", rollout_bps=10_000
    )
    canary = flag.variants["canary"].model_copy(
        update={
            "backend": flag.variants["canary"].backend.model_copy(update={"api_key_name": "hosted"})
        }
    )
    doc = make_document(flag.model_copy(update={"variants": {**flag.variants, "canary": canary}}))
    backends = Backends(canary=ok, stable=ok)
    r = make(backends, doc, api_keys={"hosted": "sk-test"}).chat("vibethinker", "u1", USER)
    assert not r.fallback
    assert backends.to("canary")[0].headers["authorization"] == "Bearer sk-test"
    r = make(backends, doc).chat("vibethinker", "u1", USER)
    assert (r.fallback, r.fallback_reason) == (True, "missing_api_key")


def test_stream_delivers_deltas_and_a_final_chunk_with_the_result(make: Any) -> None:
    """Chunks carry deltas and metadata; the last one is done with the whole ChatResult."""
    d = make(Backends(canary=ok, stable=ok))
    chunks = d.stream("vibethinker", CANARY_USER, USER)
    assert [c.text for c in chunks] == ["fine", " answer", ""]
    assert all(c.variant == "canary" and not c.fallback for c in chunks)
    last = chunks[-1]
    assert last.done
    assert last.result is not None
    assert last.result.text == "fine answer"
    assert last.result.time_to_first_token_s is not None
    assert last.trace_id == last.result.trace_id


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (sse_body(finish=None, done=False), "stream_interrupted"),
        (sse_body(finish="stop"), "malformed"),
        (b"data: {broken\n\n", "malformed"),
    ],
)
def test_stream_broken_before_first_token_falls_back(make: Any, body: bytes, reason: str) -> None:
    """Cut, empty or garbled before any token: the caller gets stable's stream instead."""
    backends = Backends(canary=lambda r: httpx.Response(200, content=body), stable=ok)
    chunks = make(backends).stream("vibethinker", CANARY_USER, USER)
    assert chunks_text(chunks) == "fine answer"
    assert all(c.variant == "stable" and c.fallback for c in chunks)
    assert chunks[-1].fallback_reason == reason
    assert len(backends.to("canary")) == 2


def test_stream_cut_after_first_token_raises_stream_interrupted(make: Any) -> None:
    """Once a token reached the caller there is no fallback: StreamInterruptedError."""
    cut = sse_body("partial", " answer", finish=None, done=False)
    backends = Backends(canary=lambda r: httpx.Response(200, content=cut), stable=ok)
    with SpanCapture() as cap:
        chunks, exc = make(backends).stream_until_error("vibethinker", CANARY_USER, USER)
    assert chunks_text(chunks) == "partial answer"
    assert isinstance(exc, StreamInterruptedError)
    assert backends.to("stable") == []
    span = cap.find("chat")
    assert span.attributes is not None
    assert span.attributes["error.type"] == "stream_interrupted"


def test_breaker_opens_then_lets_one_probe_through_after_cooldown(make: Any) -> None:
    """After breaker_failures failures canary gets no traffic; after cooldown one probe."""
    clock = FakeClock()
    healthy = threading.Event()

    def canary(request: httpx.Request) -> httpx.Response:
        return ok(request) if healthy.is_set() else httpx.Response(503)

    backends = Backends(canary=canary, stable=ok)
    doc = document(fallback={"retries": 0, "breaker_failures": 2, "breaker_cooldown_s": 30})
    d = make(backends, doc, clock=clock)
    reasons = [d.chat("vibethinker", f"u{i}", USER).fallback_reason for i in range(4)]
    assert reasons == ["http_503", "http_503", "circuit_open", "circuit_open"]
    assert len(backends.to("canary")) == 2
    clock.now += 30
    assert d.chat("vibethinker", "u9", USER).fallback_reason == "http_503"  # the probe failed
    assert len(backends.to("canary")) == 3
    assert d.chat("vibethinker", "u9", USER).fallback_reason == "circuit_open"
    clock.now += 30
    healthy.set()
    r = d.chat("vibethinker", "u9", USER)  # the probe succeeds and closes the breaker
    assert (r.variant, r.fallback) == ("canary", False)
    assert d.chat("vibethinker", "u9", USER).variant == "canary"
    assert len(backends.to("canary")) == 5


def test_fallback_reason_is_the_root_cause_when_a_retry_meets_the_open_breaker(
    make: Any,
) -> None:
    """A 503 that opens the breaker is the reason, not the circuit_open its retry then met."""
    backends = Backends(canary=lambda request: httpx.Response(503), stable=ok)
    doc = document(fallback={"retries": 1, "breaker_failures": 1, "breaker_cooldown_s": 30})
    d = make(backends, doc, clock=FakeClock())
    with SpanCapture() as cap:
        first = d.chat("vibethinker", CANARY_USER, USER)
        second = d.chat("vibethinker", CANARY_USER, USER)
    assert (first.variant, first.fallback_reason) == ("stable", "http_503")
    assert len(backends.to("canary")) == 1  # the retry was refused by the breaker
    event = next(e for e in cap.find_all("chat")[0].events if e.name == "vibesdk.fallback")
    assert event.attributes is not None
    assert event.attributes["vibesdk.fallback.reason"] == "http_503"
    assert second.fallback_reason == "circuit_open"  # nothing reached the canary this time


def test_several_canary_urls_share_the_load(make: Any) -> None:
    """Sequential calls to a two-URL backend alternate between the URLs."""
    backends = Backends(c1=ok, c2=ok, stable=ok)
    doc = make_document(
        make_flag(
            stable_url="http://stable/v1",
            canary_url=["http://c1/v1", "http://c2/v1"],
            rollout_bps=10_000,
        )
    )
    d = make(backends, doc)
    used = [d.chat("vibethinker", "u1", USER).backend for _ in range(4)]
    assert sorted(used) == ["http://c1/v1", "http://c1/v1", "http://c2/v1", "http://c2/v1"]


def test_span_attempts_fallback_event_and_metrics(make: Any) -> None:
    """One `chat {model}` span with cohort attributes, fallback event, attempt children, metrics."""
    backends = Backends(canary=lambda r: httpx.Response(503), stable=ok)
    with SpanCapture() as cap:
        r = make(backends).chat("vibethinker", CANARY_USER, USER)
        call = cap.find("chat vibethinker-1.5b")
        attrs = dict(call.attributes or {})
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.request.model"] == "vibethinker-1.5b"
        assert attrs["gen_ai.provider.name"] == "llama.cpp"
        assert attrs["gen_ai.response.model"] == "served"
        assert attrs["gen_ai.usage.input_tokens"] == 5
        assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
        assert attrs["feature_flag.key"] == "vibethinker"
        assert attrs["feature_flag.result.variant"] == "canary"
        assert attrs["feature_flag.version"] == "1"
        assert attrs["feature_flag.context.id"] == CANARY_USER
        assert attrs["vibesdk.fallback"] is True
        assert attrs["vibesdk.prompt.ref"] == "vibethinker-competition@1"
        (event,) = [e for e in call.events if e.name == "vibesdk.fallback"]
        assert event.attributes is not None
        assert event.attributes["vibesdk.fallback.reason"] == "http_503"
        attempts = cap.find_all("vibesdk.attempt")
        assert len(attempts) == 3
        numbered = [
            (a.attributes["feature_flag.result.variant"], a.attributes["vibesdk.attempt"])
            for a in attempts
            if a.attributes is not None
        ]
        assert numbered == [("canary", 1), ("canary", 2), ("stable", 1)]
        assert all(
            a.parent is not None and a.parent.span_id == call.context.span_id for a in attempts
        )
        assert format(call.context.trace_id, "032x") == r.trace_id
        cohort = {"feature_flag.result.variant": "canary", "vibesdk.fallback": True}
        assert cap.metric_count("gen_ai.client.operation.duration", cohort) == 1
        assert cap.metric_total("vibesdk.fallbacks", {"vibesdk.fallback.reason": "http_503"}) == 1
        assert cap.metric_count("gen_ai.client.token.usage") == 2


def test_a_failed_attempt_is_marked_on_the_calls_duration_even_when_a_retry_answers(
    make: Any,
) -> None:
    """The canary's first attempt fails (503) and its retry answers: the user got the canary's
    answer, no fallback, and the call's duration carries ``vibesdk.attempt.failed`` -- the only
    trace of the failure in the metrics the guard reads. A clean call carries no such label."""
    answered = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        answered["n"] += 1
        return httpx.Response(503) if answered["n"] == 1 else ok(request)

    backends = Backends(canary=flaky, stable=ok)
    with SpanCapture() as cap:
        d = make(backends)
        r = d.chat("vibethinker", CANARY_USER, USER)
        assert (r.variant, r.fallback) == ("canary", False)
        assert len(backends.to("canary")) == 2
        failed = {"feature_flag.result.variant": "canary", "vibesdk.attempt.failed": True}
        assert cap.metric_count("gen_ai.client.operation.duration", failed) == 1
        d.chat("vibethinker", CANARY_USER, USER)  # both attempts fine now
        assert cap.metric_count("gen_ai.client.operation.duration", failed) == 1
        canary = {"feature_flag.result.variant": "canary"}
        assert cap.metric_count("gen_ai.client.operation.duration", canary) == 2


def test_quality_failures_travel_on_result_span_and_metrics(make: Any) -> None:
    """A broken python block fails python_syntax on the result, span and metric."""
    code = "Here:\n```python\ndef f(:\n    pass\n```\n"
    backends = Backends(canary=lambda r: httpx.Response(200, json=answer(code)), stable=ok)
    with SpanCapture() as cap:
        r = make(backends).chat("vibethinker", CANARY_USER, USER)
        assert "python_syntax" in r.quality.failures
        attrs = cap.find("chat").attributes or {}
        assert "python_syntax" in attrs["vibesdk.quality.failures"]  # type: ignore[operator]
        check = {"vibesdk.quality.check": "python_syntax"}
        assert cap.metric_total("vibesdk.quality.failures", check) == 1


def test_feedback_is_validated_posted_in_background_and_traced(kind: str) -> None:
    """feedback() checks its input, POSTs to /v1/feedback with the cohort, emits an event."""
    posted: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        posted.append(request)
        return httpx.Response(202, json={"accepted": True})

    d = Driver(
        kind,
        server_url="http://flags",
        sdk_key="sdk-key",
        flag_source=flag_source(document()),
        transport=Backends(canary=ok, stable=ok).transport(),
        server_transport=httpx.MockTransport(server),
    )
    try:
        with SpanCapture() as cap:
            r = d.chat("vibethinker", CANARY_USER, USER)
            for bad in [("x" * 32, 3), (r.trace_id, 0), (r.trace_id, 6), (r.trace_id, 2.5)]:
                with pytest.raises(ValueError, match=r"trace_id|score"):
                    d.feedback(*bad)
            d.feedback(r.trace_id, 4, comment="clear steps")
            fb = cap.find("vibesdk.feedback")
            assert fb.context.trace_id == int(r.trace_id, 16)
            (event,) = fb.events
            assert event.name == "gen_ai.evaluation.result"
            assert event.attributes is not None
            assert event.attributes["gen_ai.evaluation.score.value"] == 4
    finally:
        d.dispose()  # waits (briefly) for the queue to drain
    (request,) = posted
    assert request.url.path == "/v1/feedback"
    assert request.headers["authorization"] == "Bearer sdk-key"
    assert json_of(request) == {
        "trace_id": r.trace_id,
        "score": 4,
        "comment": "clear steps",
        "flag_key": "vibethinker",
        "variant": "canary",
        "user_id": CANARY_USER,
    }


def test_report_is_validated_posted_in_background_traced_and_counted(kind: str) -> None:
    """report() checks its input, POSTs to /v1/report with the cohort, emits a span, counts."""
    posted: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        posted.append(request)
        return httpx.Response(202, json={"accepted": True})

    d = Driver(
        kind,
        server_url="http://flags",
        sdk_key="sdk-key",
        flag_source=flag_source(document()),
        transport=Backends(canary=ok, stable=ok).transport(),
        server_transport=httpx.MockTransport(server),
    )
    try:
        with SpanCapture() as cap:
            r = d.chat("vibethinker", CANARY_USER, USER)
            with pytest.raises(ValueError, match="trace_id"):
                d.report("x" * 32)
            with pytest.raises(ValueError, match="reason is longer than 2000"):
                d.report(r.trace_id, reason="x" * 2001)
            with pytest.raises(vibesdk.InvalidArgumentError, match="reason must be a string"):
                d.report(r.trace_id, reason=3)
            d.report(r.trace_id, reason="made up a lemma")
            span = cap.find("vibesdk.report")
            assert span.context.trace_id == int(r.trace_id, 16)
            assert span.attributes is not None
            assert span.attributes["feature_flag.result.variant"] == "canary"
            assert span.attributes["vibesdk.report.reason"] == "made up a lemma"
            (event,) = span.events
            assert event.attributes is not None
            assert event.attributes["gen_ai.evaluation.name"] == "user_report"
            counted = {"feature_flag.key": "vibethinker", "feature_flag.result.variant": "canary"}
            assert cap.metric_total("vibesdk.reports", counted) == 1
    finally:
        d.dispose()  # waits (briefly) for the queue to drain
    (request,) = posted
    assert request.url.path == "/v1/report"
    assert request.headers["authorization"] == "Bearer sdk-key"
    assert json_of(request) == {
        "trace_id": r.trace_id,
        "reason": "made up a lemma",
        "flag_key": "vibethinker",
        "variant": "canary",
        "user_id": CANARY_USER,
    }


def test_feedback_queue_drops_and_counts_when_full(kind: str) -> None:
    """A full queue drops feedback (counted) instead of blocking the caller."""
    release = threading.Event()

    def slow(request: httpx.Request) -> httpx.Response:
        release.wait(5)
        return httpx.Response(202)

    async def slow_async(request: httpx.Request) -> httpx.Response:
        import asyncio

        await asyncio.sleep(5)
        return httpx.Response(202)

    d = Driver(
        kind,
        server_url="http://flags",
        sdk_key="k",
        feedback_queue_size=1,
        flag_source=flag_source(document()),
        server_transport=httpx.MockTransport(slow if kind == "sync" else slow_async),
    )
    try:
        for _ in range(4):
            d.feedback("ab" * 16, 5)
        # The sender holds at most one and the queue one more: the rest were dropped.
        assert d.client.feedback_dropped >= 2
    finally:
        release.set()
        d.dispose()


def test_closed_client_refuses_calls_and_close_is_idempotent(make: Any) -> None:
    """After close(), chat raises ClientClosedError; closing twice is fine."""
    d = make(Backends(canary=ok, stable=ok))
    d.close()
    with pytest.raises(ClientClosedError):
        d.chat("vibethinker", CANARY_USER, USER)
    d.close()


def test_client_without_any_flag_source_is_a_config_error(kind: str) -> None:
    """No server_url, no bootstrap and no flag_source: ConfigError at construction."""
    cls = vibesdk.Client if kind == "sync" else vibesdk.AsyncClient
    with pytest.raises(ConfigError, match="server_url"):
        cls(cache_dir="")


def test_sync_client_is_a_context_manager() -> None:
    """`with Client(...)` closes it on exit."""
    with vibesdk.Client(flag_source=flag_source(document())) as client:
        assert client.assign("vibethinker", "u1").variant == "canary"
    with pytest.raises(ClientClosedError):
        client.chat("vibethinker", "u1", USER)


async def _async_context() -> vibesdk.AsyncClient:
    async with vibesdk.AsyncClient(flag_source=flag_source(document())) as client:
        assert await client.wait_until_ready(1)
        assert client.assign("vibethinker", "u1").variant == "canary"
    return client


def test_async_client_is_an_async_context_manager() -> None:
    """`async with AsyncClient(...)` closes it on exit."""
    import asyncio

    client = asyncio.run(_async_context())
    with pytest.raises(ClientClosedError):
        asyncio.run(client.chat("vibethinker", "u1", USER))


def test_forked_child_gets_its_own_connections_and_feedback_thread() -> None:
    """After os.fork() a child's chat() and feedback() work on fresh connections and threads."""
    import json

    from tests.sources_harness import run_forked
    from vibesdk.testing import FakeBackend

    posted: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        posted.append(request)
        return httpx.Response(202)

    with FakeBackend(default="from stable") as stable, FakeBackend(default="hi") as canary:
        doc = make_document(
            make_flag(stable_url=stable.url, canary_url=canary.url, rollout_bps=10_000)
        )
        client = vibesdk.Client(
            server_url="http://flags",
            sdk_key="k",
            flag_source=flag_source(doc),
            server_transport=httpx.MockTransport(server),
        )
        parent = client.chat("vibethinker", "u1", USER)  # opens a keep-alive connection
        client.feedback(parent.trace_id, 3)  # starts the feedback thread
        for _ in range(200):  # let the parent's thread post it before the fork copies `posted`
            if posted:
                break
            threading.Event().wait(0.01)
        parent_http = client._http

        def child(report: dict[str, Any]) -> None:  # pragma: no cover - runs in the child
            r = client.chat("vibethinker", "u1", USER)
            report["text"] = r.text
            report["fresh_http"] = client._http is not parent_http
            client.feedback(r.trace_id, 5)
            client.close()
            report["posted"] = [json.loads(p.content)["score"] for p in posted]

        report, status = run_forked(child, alarm_s=30, wait_s=60)
        client.close()
    assert status == 0
    assert report == {"text": "hi", "fresh_http": True, "posted": [3, 5]}


@pytest.mark.parametrize("stream", [True, False])
def test_stalled_canary_times_out_into_fallback(kind: str, stream: bool) -> None:
    """A canary that never answers: first-token deadline (streams) or total deadline (calls)."""
    from tests.client_harness import Router
    from vibesdk.testing import FakeBackend, Reply

    async def no_wait(seconds: float) -> None:
        return None

    fakes = {
        "canary": FakeBackend(default=Reply(stall=True), sleep=lambda s: None, async_sleep=no_wait),
        "stable": FakeBackend(default="steady", sleep=lambda s: None, async_sleep=no_wait),
    }
    router = Router(**{host: fake.transport() for host, fake in fakes.items()})
    doc = document(fallback={"retries": 0, "first_token_timeout_s": 2, "total_timeout_s": 9})
    d = Driver(kind, flag_source=flag_source(doc), transport=router)
    try:
        if stream:
            chunks = d.stream("vibethinker", CANARY_USER, USER)
            assert chunks_text(chunks) == "steady"
            reason = chunks[-1].fallback_reason
        else:
            r = d.chat("vibethinker", CANARY_USER, USER)
            assert r.text == "steady"
            reason = r.fallback_reason
        assert reason == ("timeout_first_token" if stream else "timeout_total")
    finally:
        d.dispose()


def test_half_open_breaker_lets_exactly_one_of_many_concurrent_calls_probe(kind: str) -> None:
    """After cooldown, of 4 concurrent calls one probes the canary; 3 fall back, circuit_open."""
    clock = FakeClock()
    others_done = threading.Event()
    broken = [True]

    def canary_sync(request: httpx.Request) -> httpx.Response:
        if broken[0]:
            return httpx.Response(503)
        others_done.wait(10)  # hold the probe until the other calls have answered
        return ok(request)

    async def canary_async(request: httpx.Request) -> httpx.Response:
        import asyncio

        if broken[0]:
            return httpx.Response(503)
        for _ in range(1000):
            if others_done.is_set():
                break
            await asyncio.sleep(0.01)
        return ok(request)

    canary = canary_sync if kind == "sync" else canary_async
    backends = Backends(canary=canary, stable=ok)
    doc = document(fallback={"retries": 0, "breaker_failures": 1, "breaker_cooldown_s": 30})
    d = Driver(kind, flag_source=flag_source(doc), transport=backends.transport(), clock=clock)
    try:
        assert d.chat("vibethinker", "u1", USER).fallback_reason == "http_503"  # opens it
        broken[0] = False
        clock.now += 30
        done: list[Any] = []

        def seen(result: Any) -> None:
            done.append(result)
            if len(done) == 3:
                others_done.set()

        calls = [(("vibethinker", f"u{i}", USER), {}) for i in range(4)]
        results = d.chat_many(calls, on_result=seen, concurrency=4)
    finally:
        d.dispose()
    assert len(backends.to("canary")) == 2  # the call that opened it, and one probe
    reasons = sorted(str(r.fallback_reason) for r in results)
    assert reasons == ["None", "circuit_open", "circuit_open", "circuit_open"]


def test_offline_client_from_a_bootstrap_file(kind: str, tmp_path: Any) -> None:
    """Client(bootstrap=flags.json) serves that document (OFFLINE) and calls its backends."""
    path = tmp_path / "flags.json"
    path.write_text(document().model_dump_json())
    backends = Backends(canary=ok, stable=ok)
    d = Driver(kind, bootstrap=str(path), cache_dir="", transport=backends.transport())
    try:
        assert d.wait_until_ready(5)
        assert d.client.flag_source.store.state is vibesdk.FlagState.OFFLINE
        assert d.assign("vibethinker", CANARY_USER).variant == "canary"
        assert d.chat("vibethinker", CANARY_USER, USER).variant == "canary"
    finally:
        d.dispose()


def test_leaving_a_stream_early_closes_it_and_its_span(kind: str) -> None:
    """break (sync) / aclosing (async) after one chunk: span cancelled, nothing left in flight."""
    import contextlib

    backends = Backends(canary=ok, stable=ok)
    d = Driver(kind, flag_source=flag_source(document()), transport=backends.transport())
    try:
        with SpanCapture() as cap:
            if kind == "sync":
                for _chunk in d.client.stream_chat("vibethinker", CANARY_USER, USER):
                    break
            else:

                async def first() -> None:
                    stream = d.client.stream_chat("vibethinker", CANARY_USER, USER)
                    async with contextlib.aclosing(stream) as chunks:
                        async for _chunk in chunks:
                            break

                d.run(first())
            attrs = cap.find("chat").attributes or {}
            assert attrs["error.type"] == "cancelled"
        assert [p.outstanding() for p in d.client._core._pools.values()] == [
            {"http://canary/v1": 0}
        ]
    finally:
        d.dispose()


def test_bad_argument_values_raise_invalid_argument_error_from_the_one_tree(kind: str) -> None:
    """Bad feedback, override and bucket() values raise InvalidArgumentError, also a ValueError."""
    assert issubclass(vibesdk.InvalidArgumentError, vibesdk.VibeError)
    assert issubclass(vibesdk.InvalidArgumentError, ValueError)
    d = Driver(
        kind,
        server_url="http://flags",
        sdk_key="sdk-key",
        flag_source=flag_source(document()),
        transport=Backends(canary=ok, stable=ok).transport(),
        server_transport=httpx.MockTransport(lambda r: httpx.Response(202, json={})),
    )
    try:
        r = d.chat("vibethinker", CANARY_USER, USER)
        for bad in [("x" * 32, 3), (r.trace_id, 0), (r.trace_id, True)]:
            with pytest.raises(vibesdk.InvalidArgumentError, match=r"trace_id|score"):
                d.feedback(*bad)
        with pytest.raises(vibesdk.InvalidArgumentError, match="override"):
            d.chat("vibethinker", CANARY_USER, USER, temperature=9.0)
    finally:
        d.dispose()
    with pytest.raises(vibesdk.InvalidArgumentError, match="lone surrogate"):
        vibesdk.bucket("vibethinker", "\udcff")
