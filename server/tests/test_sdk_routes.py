"""The SDK side of the wire protocol, against the real server process."""

from __future__ import annotations

import json
import time

import httpx
from vibesdk_server.testing import FlagServer, iter_sse

from vibesdk import FlagDocument
from vibesdk.testing import make_flag


def test_healthz_needs_no_token(server: FlagServer) -> None:
    """GET /healthz answers 200 {"status": "ok"} without any token."""
    response = httpx.get(server.url + "/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_flags_returns_the_document_with_a_quoted_version_etag(server: FlagServer) -> None:
    """GET /v1/flags returns the environment's FlagDocument and ETag "<version>"."""
    change = server.apply(make_flag(rollout_bps=0))
    response = server.sdk_request("GET", "/v1/flags")
    assert response.status_code == 200
    doc = FlagDocument.model_validate_json(response.content)
    assert doc.environment == server.environment
    assert doc.version == change["version"]
    assert response.headers["etag"] == f'"{change["version"]}"'
    assert doc.flags["vibethinker"].variants["canary"].prompt is not None


def test_flags_answers_304_while_the_version_is_unchanged(server: FlagServer) -> None:
    """If-None-Match with the current version gives 304 and an empty body; a change ends it."""
    etag = server.sdk_request("GET", "/v1/flags").headers["etag"]
    same = server.sdk_request("GET", "/v1/flags", headers={"If-None-Match": etag})
    assert same.status_code == 304
    assert same.content == b""
    server.apply(make_flag(rollout_bps=0))
    changed = server.sdk_request("GET", "/v1/flags", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag


def test_stream_sends_retry_then_current_then_each_new_version(server: FlagServer) -> None:
    """GET /v1/stream: retry first, the current document at once, then every published version."""
    server.apply(make_flag(rollout_bps=0))
    headers = {"Authorization": f"Bearer {server.sdk_key}"}
    with httpx.stream("GET", server.url + "/v1/stream", headers=headers, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        assert next(lines) == "retry: 1000"
        events = (e for e in iter_sse(lines) if e.comment is None)
        first = next(events)
        assert first.event == "flags"
        current = json.loads(first.data or "")
        assert int(first.id or "") == current["version"]
        change = server.rollout("vibethinker", 2500)
        pushed = next(events)
        assert int(pushed.id or "") == change["version"]
        assert json.loads(pushed.data or "")["flags"]["vibethinker"]["rollout_bps"] == 2500


def test_stream_resumes_after_last_event_id(server: FlagServer) -> None:
    """With Last-Event-ID equal to the current version, nothing is replayed; newer ones are sent."""
    change = server.apply(make_flag(rollout_bps=0))
    headers = {"Authorization": f"Bearer {server.sdk_key}", "Last-Event-ID": str(change["version"])}
    with httpx.stream("GET", server.url + "/v1/stream", headers=headers, timeout=30) as response:
        events = (e for e in iter_sse(response.iter_lines()) if e.comment is None)
        newer = server.rollout("vibethinker", 10)
        assert int(next(events).id or "") == newer["version"]


def test_stream_sends_heartbeat_comments(server: FlagServer) -> None:
    """An idle stream carries ': ping' comments (the test server's heartbeat is 0.5 s)."""
    headers = {"Authorization": f"Bearer {server.sdk_key}"}
    with httpx.stream("GET", server.url + "/v1/stream", headers=headers, timeout=30) as response:
        for event in iter_sse(response.iter_lines()):
            if event.comment is not None:
                assert event.comment == "ping"
                break


def test_feedback_is_accepted_and_listed_for_ops(server: FlagServer) -> None:
    """POST /v1/feedback -> 202 {"accepted": true}; GET /v1/admin/feedback lists it for ops."""
    body = {
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "score": 4,
        "comment": "nice",
        "flag_key": "vibethinker",
        "variant": "canary",
        "user_id": "u1",
    }
    response = server.sdk_request("POST", "/v1/feedback", json=body)
    assert response.status_code == 202
    assert response.json() == {"accepted": True}
    listed = server.admin_request(
        "GET", "/v1/admin/feedback", params={"environment": server.environment}
    ).json()
    assert [(f["trace_id"], f["score"], f["variant"]) for f in listed] == [
        (body["trace_id"], 4, "canary")
    ]


def test_feedback_summary_compares_variants(server: FlagServer) -> None:
    """GET /v1/admin/feedback/summary: count, mean and low scores per flag and variant."""
    trace = "0af7651916cd43dd8448eb211c80319c"
    for variant, score in [("canary", 5), ("canary", 1), ("stable", 4)]:
        body = {"trace_id": trace, "score": score, "flag_key": "vibethinker", "variant": variant}
        assert server.sdk_request("POST", "/v1/feedback", json=body).status_code == 202
    summary = server.admin_request(
        "GET",
        "/v1/admin/feedback/summary",
        params={"environment": server.environment, "flag": "vibethinker"},
    ).json()
    assert summary == [
        {
            "flag_key": "vibethinker",
            "variant": "canary",
            "count": 2,
            "mean_score": 3.0,
            "low_scores": 1,
            "reports": 0,
        },
        {
            "flag_key": "vibethinker",
            "variant": "stable",
            "count": 1,
            "mean_score": 4.0,
            "low_scores": 0,
            "reports": 0,
        },
    ]


def test_reports_are_accepted_listed_and_counted_per_variant(server: FlagServer) -> None:
    """POST /v1/report -> 202; GET /v1/admin/reports lists it; the summary counts it."""
    body = {
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "reason": "the answer is wrong",
        "flag_key": "vibethinker",
        "variant": "canary",
        "user_id": "u1",
        "sent_by": "a newer SDK",
    }
    response = server.sdk_request("POST", "/v1/report", json=body)
    assert (response.status_code, response.json()) == (202, {"accepted": True})
    env = {"environment": server.environment}
    listed = server.admin_request("GET", "/v1/admin/reports", params=env).json()
    assert [(r["trace_id"], r["reason"], r["variant"], r["user_id"]) for r in listed] == [
        (body["trace_id"], "the answer is wrong", "canary", "u1")
    ]
    summary = server.admin_request("GET", "/v1/admin/feedback/summary", params=env).json()
    assert summary == [
        {
            "flag_key": "vibethinker",
            "variant": "canary",
            "count": 0,
            "mean_score": None,
            "low_scores": 0,
            "reports": 1,
        }
    ]
    bad = server.sdk_request("POST", "/v1/report", json={**body, "trace_id": "nope"})
    assert bad.status_code == 422
    assert len(server.admin_request("GET", "/v1/admin/reports", params=env).json()) == 1


def test_feedback_refuses_bad_input_with_one_line(server: FlagServer) -> None:
    """A score of 9 or a malformed trace id is a 422 whose detail names the field."""
    bad = {"trace_id": "not-hex", "score": 9}
    response = server.sdk_request("POST", "/v1/feedback", json=bad)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "trace_id" in detail
    assert "score" in detail
    assert "\n" not in detail


def test_cold_and_warm_fetches_answer_the_same(server: FlagServer) -> None:
    """The first fetch (loads the document) and later ones (served from memory) are identical."""
    cold = server.sdk_request("GET", "/v1/flags")
    warm = server.sdk_request("GET", "/v1/flags")
    assert cold.status_code == warm.status_code == 200
    assert cold.content == warm.content
    for header in ("etag", "content-type", "cache-control"):
        assert cold.headers[header] == warm.headers[header]
    etag = warm.headers["etag"]
    for value in (etag, f"W/{etag}", f'"999", {etag}', "*"):
        response = server.sdk_request("GET", "/v1/flags", headers={"If-None-Match": value})
        assert response.status_code == 304, value
    assert (
        server.sdk_request("GET", "/v1/flags", headers={"If-None-Match": '"999"'}).status_code
        == 200
    )


def test_closed_streams_are_unsubscribed(server: FlagServer) -> None:
    """A client that hangs up is removed from the fan-out (GET /v1/admin/stats counts streams)."""

    def count() -> int:
        return int(server.admin_request("GET", "/v1/admin/stats").json()["subscribers"])

    before = count()
    headers = {"Authorization": f"Bearer {server.sdk_key}"}
    with httpx.stream("GET", server.url + "/v1/stream", headers=headers, timeout=30) as response:
        events = (e for e in iter_sse(response.iter_lines()) if e.event == "flags")
        next(events)
        assert count() == before + 1
    # The server notices the hang-up when it next writes (a heartbeat at the latest);
    # the deadline only turns a hang into a failure.
    deadline = time.monotonic() + 30
    while count() != before:
        assert time.monotonic() < deadline, "the closed stream was never unsubscribed"
        server.sdk_request("GET", "/v1/flags")
