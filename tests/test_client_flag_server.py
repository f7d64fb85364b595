"""Client and AsyncClient against the real flag server (loopback) and a loopback model backend.

The flag server (``flag_server`` fixture of vibesdk_server.pytest_plugin) serves
the flag document and takes feedback; FakeBackend's loopback servers stand in
for the model servers (tests/test_client_llama.py uses real llama.cpp).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.client_harness import Driver
from vibesdk.testing import FakeBackend, Reply, make_flag

pytest.importorskip("vibesdk_server")

ASK = [{"role": "user", "content": "2+2?"}]


@pytest.fixture
def backends() -> Iterator[tuple[FakeBackend, FakeBackend]]:
    with (
        FakeBackend(default="stable answer") as stable,
        FakeBackend(default="canary answer") as canary,
    ):
        yield stable, canary


def wait_for(predicate: Any, timeout: float = 15.0) -> None:
    # Propagation from the real server is asynchronous (an SSE push); bounded wait.
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_client_follows_the_flag_server_and_feedback_reaches_it(
    kind: str, flag_server: Any, backends: tuple[FakeBackend, FakeBackend], tmp_path: Any
) -> None:
    """Rollout flips reach chat(); the server's reviewed prompt is applied; feedback is stored."""
    stable, canary = backends
    flag_server.apply(make_flag(stable_url=stable.url, canary_url=canary.url, rollout_bps=0))
    d = Driver(
        kind, server_url=flag_server.url, sdk_key=flag_server.sdk_key, cache_dir=str(tmp_path)
    )
    try:
        assert d.wait_until_ready(15)
        r = d.chat("vibethinker", "u42", ASK)
        assert (r.text, r.variant, r.fallback) == ("stable answer", "stable", False)

        flag_server.rollout("vibethinker", 10_000)
        if kind == "sync":
            wait_for(lambda: d.assign("vibethinker", "u42").variant == "canary")
        else:
            # The async source's tasks run on the driver's loop: give it turns while waiting.
            import asyncio

            async def until_canary() -> None:
                for _ in range(300):
                    if d.assign("vibethinker", "u42").variant == "canary":
                        return
                    await asyncio.sleep(0.05)
                raise AssertionError("rollout did not arrive")

            d.run(until_canary())
        r = d.chat("vibethinker", "u42", ASK)
        assert (r.text, r.variant, r.notice) == (
            "canary answer", "canary", "You are trying the new assistant.",
        )  # fmt: skip
        system = canary.chat_requests[-1].messages[0]
        assert system["role"] == "system"
        assert system["content"].startswith("You are a programming assistant")

        d.feedback(r.trace_id, 5, comment="spot on")
        d.report(r.trace_id, reason="the steps skip a case")
    finally:
        d.dispose()  # drains the feedback queue (briefly)
    env = {"environment": flag_server.environment}
    stored = flag_server.admin_request("GET", "/v1/admin/feedback", params=env).json()
    assert [(f["trace_id"], f["score"], f["variant"], f["user_id"]) for f in stored] == [
        (r.trace_id, 5, "canary", "u42")
    ]
    reported = flag_server.admin_request("GET", "/v1/admin/reports", params=env).json()
    assert [(x["trace_id"], x["reason"], x["variant"], x["user_id"]) for x in reported] == [
        (r.trace_id, "the steps skip a case", "canary", "u42")
    ]


def _measured(flag_server: Any) -> dict[str, Any]:
    response = flag_server.admin_request(
        "GET",
        f"/v1/admin/environments/{flag_server.environment}/measurements",
        params={"flag": "vibethinker"},
    )
    assert response.status_code == 200, response.text
    variants: dict[str, Any] = response.json()["variants"]
    return variants


def test_the_client_sends_its_measurements_to_the_flag_server(
    kind: str, flag_server: Any, tmp_path: Any
) -> None:
    """With server_url and sdk_key, calls, fallbacks and feedback reach the server over OTLP.

    The app's own OpenTelemetry setup (a SpanCapture here) still gets every metric.
    """
    from vibesdk.testing import SpanCapture

    with (
        FakeBackend(default="stable answer") as stable,
        FakeBackend(default=Reply(status=500)) as canary,  # every canary attempt fails
    ):
        flag_server.apply(
            make_flag(stable_url=stable.url, canary_url=canary.url, rollout_bps=10_000)
        )
        with SpanCapture() as cap:
            d = Driver(
                kind,
                server_url=flag_server.url,
                sdk_key=flag_server.sdk_key,
                cache_dir=str(tmp_path),
                server_metrics_interval_s=60,  # the export at close() is the one that counts
            )
            try:
                assert d.wait_until_ready(15)
                for user in ("u1", "u2", "u3"):
                    r = d.chat("vibethinker", user, ASK)
                    assert (r.variant, r.fallback) == ("stable", True)
                d.feedback(r.trace_id, 2)
            finally:
                d.dispose()  # exports what is left
            seen_by_app = cap.metric_count(
                "gen_ai.client.operation.duration", {"feature_flag.result.variant": "canary"}
            )
    assert seen_by_app == 3
    measured = _measured(flag_server)
    assert measured["canary"]["calls"] == 3  # calls count for the variant assigned
    assert sum(measured["canary"]["fallbacks"].values()) == 3
    # Feedback counts for the variant that answered: stable, here.
    assert measured["stable"]["feedback"] == {"count": 1, "sum": 2.0}


def test_server_metrics_off_sends_nothing(kind: str, flag_server: Any, tmp_path: Any) -> None:
    """server_metrics=False: the server measures nothing, the client works as before."""
    with FakeBackend(default="stable answer") as stable:
        flag_server.apply(make_flag(stable_url=stable.url, canary_url=stable.url))
        d = Driver(
            kind,
            server_url=flag_server.url,
            sdk_key=flag_server.sdk_key,
            cache_dir=str(tmp_path),
            server_metrics=False,
        )
        try:
            assert d.wait_until_ready(15)
            assert d.chat("vibethinker", "u1", ASK).text == "stable answer"
        finally:
            d.dispose()
    assert _measured(flag_server) == {}
