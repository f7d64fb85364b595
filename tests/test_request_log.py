"""The request log from the SDK's side: Client and AsyncClient against the real flag server.

A variant's ``log_share`` selects calls by trace id; each selected call goes, through the
redact hook, as one span over OTLP/HTTP (the real exporter) to ``/v1/otlp/v1/traces``, and
``vibe log`` shows it. The app's own OpenTelemetry setup (a SpanCapture: an
InMemorySpanExporter) never sees message content. FakeBackend stands in for the models.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import vibesdk
from tests.client_harness import Driver
from vibesdk import Flag, parse_document
from vibesdk.testing import FakeBackend, Reply, SpanCapture, make_flag

pytest.importorskip("vibesdk_server")

FLAG = "vibethinker"
ASK = [{"role": "user", "content": "What is 2+2? My email is ann@example.com"}]
CONTENT_KEYS = ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions")


def logged_flag(stable_url: str, canary_url: str, *, canary: float, stable: float = 0.0) -> Flag:
    """make_flag, everyone on the canary, with the variants' log_share set."""
    return make_flag(
        stable_url=stable_url,
        canary_url=canary_url,
        rollout_bps=10_000,
        log_share={"canary": canary, "stable": stable},
    )


@pytest.fixture
def backends() -> Iterator[tuple[FakeBackend, FakeBackend]]:
    with (
        FakeBackend(default="stable answer") as stable,
        FakeBackend(default="canary answer: 4") as canary,
    ):
        yield stable, canary


def _client(kind: str, flag_server: Any, tmp_path: Any, **kw: Any) -> Driver:
    d = Driver(
        kind,
        server_url=flag_server.url,
        sdk_key=flag_server.sdk_key,
        cache_dir=str(tmp_path),
        server_metrics_interval_s=60,
        **kw,
    )
    assert d.wait_until_ready(15)
    return d


def _log(flag_server: Any, **params: Any) -> list[dict[str, Any]]:
    response = flag_server.admin_request(
        "GET",
        f"/v1/admin/environments/{flag_server.environment}/request-log",
        params={"flag": FLAG, "limit": 1000, **params},
    )
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()
    return entries


def test_a_canary_call_is_logged_with_its_content_and_the_apps_trace_id(
    kind: str,
    flag_server: Any,
    backends: tuple[FakeBackend, FakeBackend],
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """log_share 1: the call reaches vibe log with question, prompt, answer and trace id; the
    app's own spans carry the same trace id and no content."""
    stable, canary = backends
    flag_server.apply(logged_flag(stable.url, canary.url, canary=1.0))
    with SpanCapture() as cap:
        d = _client(kind, flag_server, tmp_path)
        try:
            r = d.chat(FLAG, "u1", ASK)
        finally:
            d.dispose()  # sends what is queued
    assert (r.variant, r.fallback) == ("canary", False)
    (entry,) = _log(flag_server)
    assert entry["trace_id"] == r.trace_id
    assert (entry["variant"], entry["answered_by"]) == ("canary", "canary")
    assert entry["input_messages"] == [
        {"role": "user", "parts": [{"type": "text", "content": ASK[0]["content"]}]}
    ]
    assert entry["system_instructions"][0]["content"].startswith("You are a programming")
    assert entry["output_messages"][0]["parts"] == [{"type": "text", "content": "canary answer: 4"}]
    assert entry["prompt_ref"].startswith("vibethinker-competition@")  # as the server numbered it
    assert entry["finish_reason"] == "stop"
    assert entry["failed_checks"] == []
    assert entry["error_type"] is None
    assert 0 < entry["latency_s"] < 30
    # The app's tracing: the call span has the trace id the log shows, and no span has content.
    call_span = cap.find("chat")
    assert format(call_span.context.trace_id, "032x") == r.trace_id
    for span in cap.spans:
        assert not set(CONTENT_KEYS) & set(span.attributes or {}), span.name
    # And the operator reads it with vibe log.
    from vibesdk_server._vibe.main import main

    monkeypatch.setenv("VIBESDK_SERVER_URL", flag_server.url)
    monkeypatch.setenv("VIBESDK_ADMIN_TOKEN", flag_server.admin_token)
    monkeypatch.setenv("VIBESDK_ENVIRONMENT", flag_server.environment)
    capsys.readouterr()
    assert main(["log", FLAG, "--variant", "canary"]) == 0
    out = capsys.readouterr().out
    assert r.trace_id in out
    assert "What is 2+2?" in out
    assert "canary answer: 4" in out


def test_a_canary_call_that_fell_back_is_logged_as_the_canarys(
    flag_server: Any, tmp_path: Any
) -> None:
    """The canary's share applies to its calls that stable answered: the fallback is the news."""
    with (
        FakeBackend(default="stable answer") as stable,
        FakeBackend(default=Reply(status=500)) as canary,
    ):
        flag_server.apply(logged_flag(stable.url, canary.url, canary=1.0, stable=0.0))
        d = _client("sync", flag_server, tmp_path)
        try:
            r = d.chat(FLAG, "u1", ASK)
        finally:
            d.dispose()
    assert (r.variant, r.fallback) == ("stable", True)
    (entry,) = _log(flag_server)
    assert entry["trace_id"] == r.trace_id
    assert (entry["variant"], entry["answered_by"]) == ("canary", "stable")
    assert entry["fallback_reason"] == r.fallback_reason == "http_500"
    assert entry["output_messages"][0]["parts"][0]["content"] == "stable answer"


def test_a_streamed_call_and_a_failed_call_are_logged_too(
    kind: str, flag_server: Any, tmp_path: Any
) -> None:
    """A stream is logged once it is complete; a call every backend failed, with its error."""
    with (
        FakeBackend(default="streamed canary answer") as canary,
        FakeBackend(default=Reply(status=500)) as broken,
    ):
        flag_server.apply(logged_flag(canary.url, canary.url, canary=1.0))
        d = _client(kind, flag_server, tmp_path)
        try:
            chunks = d.stream(FLAG, "u1", ASK)
            streamed = chunks[-1].result
            assert streamed is not None
            flag_server.apply(logged_flag(broken.url, broken.url, canary=1.0))
            deadline = time.monotonic() + 15
            while d.assign(FLAG, "u2").config.backend.urls != [broken.url]:
                assert time.monotonic() < deadline, "the new document did not arrive"
                if kind == "async":
                    d.run(asyncio.sleep(0.05))
                else:
                    time.sleep(0.05)
            with pytest.raises(vibesdk.AllBackendsFailedError):
                d.chat(FLAG, "u2", ASK)
        finally:
            d.dispose()
    failed, ok = _log(flag_server)
    assert ok["trace_id"] == streamed.trace_id
    assert ok["output_messages"][0]["parts"][0]["content"] == "streamed canary answer"
    assert (failed["variant"], failed["answered_by"]) == ("canary", None)
    assert failed["error_type"]
    assert failed["output_messages"] == []
    assert failed["failed_checks"] is None
    assert failed["input_messages"][0]["parts"][0]["content"] == ASK[0]["content"]


def test_the_share_is_honoured_by_trace_id(
    flag_server: Any, backends: tuple[FakeBackend, FakeBackend], tmp_path: Any
) -> None:
    """log_share 0.5 logs exactly the calls whose trace id's low 64 bits are below 2**63;
    log_share 0 logs none."""
    stable, canary = backends
    flag_server.apply(logged_flag(stable.url, canary.url, canary=0.5))
    d = _client("sync", flag_server, tmp_path)
    try:
        half = [d.chat(FLAG, f"u{i}", ASK).trace_id for i in range(24)]
        flag_server.apply(logged_flag(stable.url, canary.url, canary=0.0))
        deadline = time.monotonic() + 15
        while d.client.flag_source.store.flag(FLAG).variants["canary"].log_share != 0:
            assert time.monotonic() < deadline, "the new document did not arrive"
            time.sleep(0.05)
        none = [d.chat(FLAG, f"v{i}", ASK).trace_id for i in range(10)]
        counts = d.client.request_log_counts
    finally:
        d.dispose()
    expected = {t for t in half if int(t[16:], 16) < 2**63}
    assert 0 < len(expected) < len(half)  # both kinds occur, so the test can tell
    logged = {e["trace_id"] for e in _log(flag_server)}
    assert logged == expected
    assert not logged & set(none)
    assert counts["logged"] == len(expected)


def test_redact_changes_the_record_before_it_leaves_the_process(
    kind: str, flag_server: Any, backends: tuple[FakeBackend, FakeBackend], tmp_path: Any
) -> None:
    """The stored entry holds what the hook returned: the e-mail address is gone."""
    stable, canary = backends
    flag_server.apply(logged_flag(stable.url, canary.url, canary=1.0))

    def redact(record: dict[str, Any]) -> dict[str, Any]:
        for message in record["input_messages"]:
            for part in message["parts"]:
                part["content"] = part["content"].replace("ann@example.com", "[email]")
        record["system_instructions"] = []
        return record

    d = _client(kind, flag_server, tmp_path, redact=redact)
    try:
        r = d.chat(FLAG, "u1", ASK)
    finally:
        d.dispose()
    (entry,) = _log(flag_server)
    assert entry["trace_id"] == r.trace_id
    assert entry["input_messages"][0]["parts"][0]["content"] == "What is 2+2? My email is [email]"
    assert entry["system_instructions"] == []
    # The caller's own messages are untouched.
    assert ASK[0]["content"].endswith("ann@example.com")


def test_a_raising_or_refusing_redact_hook_drops_the_record_not_the_call(
    flag_server: Any,
    backends: tuple[FakeBackend, FakeBackend],
    tmp_path: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hook that raises: the caller gets the answer, nothing is stored, the failure is counted
    and logged without the record; one that returns None drops the record, counted apart."""
    stable, canary = backends
    flag_server.apply(logged_flag(stable.url, canary.url, canary=1.0))
    calls = []

    def redact(record: dict[str, Any]) -> dict[str, Any] | None:
        calls.append(record["trace_id"])
        if len(calls) == 1:
            raise RuntimeError("secret ann@example.com")
        return None

    d = _client("sync", flag_server, tmp_path, redact=redact)
    try:
        first = d.chat(FLAG, "u1", ASK)
        second = d.chat(FLAG, "u2", ASK)
        d.client.close()
        counts = d.client.request_log_counts
    finally:
        d.dispose()
    assert first.text == second.text == "canary answer: 4"
    assert calls == [first.trace_id, second.trace_id]
    assert counts == {
        "logged": 0,
        "dropped_queue_full": 0,
        "dropped_by_redact": 1,
        "redact_errors": 1,
    }
    assert _log(flag_server) == []
    warnings = [r.getMessage() for r in caplog.records if r.name == "vibesdk.request_log"]
    assert warnings == [
        "vibesdk: the request log's redact hook raised RuntimeError; the record is dropped"
    ]


def test_a_full_queue_drops_and_counts_without_slowing_the_caller(
    flag_server: Any, backends: tuple[FakeBackend, FakeBackend], tmp_path: Any
) -> None:
    """A hook stuck on a slow redaction: calls still return at once; records beyond the
    queue's size are dropped and counted."""
    stable, canary = backends
    flag_server.apply(logged_flag(stable.url, canary.url, canary=1.0))
    release = threading.Event()
    entered = threading.Event()

    def slow(record: dict[str, Any]) -> dict[str, Any]:
        entered.set()
        release.wait(30)
        return record

    d = _client("sync", flag_server, tmp_path, redact=slow, request_log_queue_size=2)
    try:
        d.chat(FLAG, "u0", ASK)
        assert entered.wait(10)  # the thread holds record 1 in the hook
        started = time.monotonic()
        results = [d.chat(FLAG, f"u{i}", ASK) for i in range(1, 6)]
        elapsed = time.monotonic() - started
        counts = d.client.request_log_counts
        release.set()
    finally:
        release.set()
        d.dispose()
    # Five calls against a loopback backend, never waiting on the hook (stuck for up to 30 s).
    assert elapsed < 10
    assert all(r.text == "canary answer: 4" for r in results)
    assert counts["dropped_queue_full"] == 3  # records 2 and 3 queued; 4, 5 and 6 dropped
    assert len(_log(flag_server)) == 3


def test_server_metrics_off_logs_nothing(
    flag_server: Any, backends: tuple[FakeBackend, FakeBackend], tmp_path: Any
) -> None:
    """The switch that stops the server's metrics stops the request log too."""
    stable, canary = backends
    flag_server.apply(logged_flag(stable.url, canary.url, canary=1.0))
    d = _client("sync", flag_server, tmp_path, server_metrics=False)
    try:
        d.chat(FLAG, "u1", ASK)
    finally:
        d.dispose()
    assert _log(flag_server) == []


def test_a_document_without_log_share_serializes_as_before() -> None:
    """Older SDKs refuse unknown fields: a document that leaves log_share at 0 never names it,
    so the server can serve it to them; one that sets it does name it."""
    plain = make_flag()
    doc = parse_document({"version": 1, "flags": {plain.key: plain.model_dump(mode="json")}})
    assert "log_share" not in doc.model_dump_json()
    logged = logged_flag("http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1", canary=0.25)
    assert '"log_share":0.25' in logged.model_dump_json()
    assert logged.variants["stable"].log_share == 0.0


@pytest.mark.parametrize("share", [-0.1, 1.5, "all"])
def test_a_bad_log_share_is_refused_with_one_line(share: Any) -> None:
    """log_share outside 0..1 fails validation with the field's location."""
    from vibesdk import FlagDocumentError

    data = make_flag().model_dump(mode="json")
    data["variants"]["canary"]["log_share"] = share
    with pytest.raises(FlagDocumentError) as info:
        parse_document({"version": 1, "flags": {data["key"]: data}})
    message = str(info.value)
    assert "flags.vibethinker.variants.canary.log_share" in message
    assert "\n" not in message
