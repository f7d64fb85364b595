"""Review scores as OpenTelemetry events: a real SDK app's logged answer, scored with
``vibe review``, reaches the server's logger provider as a ``gen_ai.evaluation.result`` event
on the answer's trace (the real OTel SDK's in-memory log exporter captures it).

The server runs in this process (``create_app(logger_provider=...)``, served by uvicorn on
loopback) so that the test owns the provider; the app is a real ``vibesdk.Client`` whose
calls are logged in full (``log_share`` 1) through the real OTLP exporter.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

import vibesdk
from tests.examples_harness import serve_app
from vibesdk.testing import FakeBackend, make_flag

pytest.importorskip("vibesdk_server")

from vibesdk_server._http._app import create_app
from vibesdk_server._storage import open_store
from vibesdk_server.testing import FlagServer

FLAG = "vibethinker"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[FlagServer, InMemoryLogRecordExporter]]:
    """The real app over a fresh SQLite file, its review events captured in memory."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    store = open_store(tmp_path / "vibesdk.db")
    try:
        store.create_environment("default", actor="test", reason="test")
        admin = store.create_token(kind="admin", name="ann", environment=None, created_by="test")
        # A second admin approves the flag's prompt (four-eyes review).
        bob = store.create_token(kind="admin", name="bob", environment=None, created_by="test")
        sdk = store.create_token(kind="sdk", name="app", environment="default", created_by="test")
        with serve_app(create_app(store, logger_provider=provider)) as url:
            yield FlagServer(url, admin, sdk, "default", bob), exporter
    finally:
        provider.shutdown()
        store.close()


def test_a_review_score_is_a_gen_ai_evaluation_result_event_on_the_answers_trace(
    served: tuple[FlagServer, InMemoryLogRecordExporter],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, exporter = served
    with (
        FakeBackend(default="stable answer") as stable,
        FakeBackend(default="The answer is 4.") as canary,
    ):
        server.apply(
            make_flag(
                stable_url=stable.url,
                canary_url=canary.url,
                rollout_bps=10_000,
                log_share={"canary": 1.0},
            )
        )
        app = vibesdk.Client(server_url=server.url, sdk_key=server.sdk_key, cache_dir="")
        try:
            assert app.wait_until_ready(15)
            answer = app.chat(FLAG, "u1", [{"role": "user", "content": "What is 2+2?"}])
        finally:
            app.close()  # sends the logged call
    log = f"/v1/admin/environments/{server.environment}/request-log"
    deadline = time.monotonic() + 15
    while not server.admin_request("GET", log).json():
        assert time.monotonic() < deadline, "the logged call never reached the server"
        time.sleep(0.1)
    assert exporter.get_finished_logs() == ()

    from vibesdk_server._vibe.main import main

    monkeypatch.setenv("VIBESDK_SERVER_URL", server.url)
    monkeypatch.setenv("VIBESDK_ADMIN_TOKEN", server.admin_token)
    monkeypatch.setenv("VIBESDK_ENVIRONMENT", server.environment)
    assert main(["review", "next", FLAG, "--score", "2", "--note", "no working shown"]) == 0
    assert f"trace {answer.trace_id} was variant 'canary'" in capsys.readouterr().out

    (record,) = [r.log_record for r in exporter.get_finished_logs()]
    assert record.event_name == "gen_ai.evaluation.result"
    assert format(record.trace_id or 0, "032x") == answer.trace_id
    attributes: dict[str, Any] = dict(record.attributes or {})
    assert attributes == {
        "gen_ai.evaluation.name": "human_review",
        "gen_ai.evaluation.score.value": 2.0,
        "gen_ai.evaluation.score.label": "poor",
        "gen_ai.evaluation.explanation": "no working shown",
        "feature_flag.key": FLAG,
        "feature_flag.result.variant": "canary",
        "gen_ai.response.model": "vibethinker-1.5b",
        "vibesdk.review.reviewer": "ann",
    }
    # A refused score is no event.
    assert main(["review", "next", FLAG, "--score", "3"]) == 0  # the queue is empty for ann
    assert "is empty" in capsys.readouterr().out
    assert len(exporter.get_finished_logs()) == 1
