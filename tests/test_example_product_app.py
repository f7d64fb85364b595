"""examples/product_app against the real flag server and loopback fake model backends."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from vibesdk_server.testing import FlagServer

import vibesdk
from vibesdk.testing import FakeBackend, Reply, make_flag

from .examples_harness import load_example, serve_app, users_in

app_module = load_example("product_app/app.py")


@pytest.fixture
def app(flag_server: FlagServer, tmp_path: Path) -> Iterator[httpx.Client]:
    stable = FakeBackend(default=Reply(text="17 * 23 = 391."))
    canary = FakeBackend(
        default=Reply(text="We multiply: 17 * 23 = 391.\n391", finish_reason="length")
    )
    with stable.serve() as stable_url, canary.serve() as canary_url:
        flag_server.apply(make_flag(stable_url=stable_url, canary_url=canary_url, rollout_bps=1000))
        client = vibesdk.Client(
            server_url=flag_server.url, sdk_key=flag_server.sdk_key, cache_dir=tmp_path
        )
        try:
            with (
                serve_app(app_module.create_app(client)) as url,
                httpx.Client(base_url=url, timeout=30) as http,
            ):
                yield http
        finally:
            client.close()


def test_canary_user_gets_the_notice_and_can_rate(app: httpx.Client) -> None:
    """A canary user's answer carries the variant's notice; feedback on its trace is accepted."""
    user = users_in("vibethinker", 1000, canary=True)[0]
    r = app.post("/api/ask", json={"user_id": user, "question": "What is 17 * 23?"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["variant"] == "canary"
    assert body["notice"] == "You are trying the new assistant."
    assert body["fallback"] is False
    assert "391" in body["answer"]
    fb = app.post("/api/feedback", json={"trace_id": body["trace_id"], "score": 5})
    assert fb.status_code == 202


def test_stable_user_sees_no_notice(app: httpx.Client) -> None:
    """A user outside the rollout is answered by stable, with no notice."""
    user = users_in("vibethinker", 1000, canary=False)[0]
    body = app.post("/api/ask", json={"user_id": user, "question": "What is 17 * 23?"}).json()
    assert body["variant"] == "stable"
    assert body["notice"] is None
    assert body["quality_failures"] == []


def test_flags_endpoint_reports_the_served_version(app: httpx.Client) -> None:
    """/api/flags says which flag version and rollout the app serves (what the demo polls)."""
    body = app.get("/api/flags").json()
    assert body["version"] >= 1
    assert body["state"] == "READY"
    assert body["rollout_bps"] == 1000


def test_the_shipped_bootstrap_puts_everyone_on_stable_until_the_server_answers() -> None:
    """bootstrap.json is a valid document at version 0 (any server document wins), all stable."""
    doc = vibesdk.parse_document(app_module.BOOTSTRAP.read_text(encoding="utf-8"))
    assert doc.version == 0
    flag = doc.flags["vibethinker"]
    assert (flag.rollout_bps, flag.rules, list(flag.variants)) == (0, [], ["stable"])


def test_first_request_is_answered_while_the_flag_server_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flag server unreachable from the start: the bootstrap document answers the first ask."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("VIBESDK_SERVER_URL", refused)
    monkeypatch.setenv("VIBESDK_SDK_KEY", "sdk-key")
    monkeypatch.setenv("VIBESDK_CACHE_DIR", "")
    with FakeBackend(default=Reply(text="17 * 23 = 391.")).serve() as stable_url:
        shipped = app_module.BOOTSTRAP.read_text(encoding="utf-8")
        bootstrap = tmp_path / "bootstrap.json"
        bootstrap.write_text(shipped.replace("http://127.0.0.1:8081/v1", stable_url))
        app = app_module.create_app(ready_timeout_s=0, bootstrap=bootstrap)
        with serve_app(app) as url, httpx.Client(base_url=url, timeout=30) as http:
            r = http.post("/api/ask", json={"user_id": "u1", "question": "What is 17 * 23?"})
            flags = http.get("/api/flags").json()
    assert r.status_code == 200, r.text
    assert (r.json()["answer"], r.json()["variant"]) == ("17 * 23 = 391.", "stable")
    assert (flags["version"], flags["state"]) == (0, "STALE")


def test_page_and_bad_input(app: httpx.Client) -> None:
    """The page renders; bad input is 422 with one sentence that says what to fix."""
    page = app.get("/")
    assert page.status_code == 200
    assert 'id="feedback"' in page.text
    cases = [
        ("/api/ask", {"user_id": "", "question": "x"}, "Enter a user id (up to 200 characters)."),
        ("/api/ask/stream", {"user_id": "u1", "question": ""}, "Type a question"),
        ("/api/ask", {"user_id": "u1"}, "Type a question (up to 4,000 characters)."),
        ("/api/feedback", {"trace_id": "0" * 32, "score": 9}, "Pick a rating from 1 to 5."),
        ("/api/feedback", {"trace_id": "x", "score": 3}, "This answer can no longer be rated"),
        ("/api/report", {"trace_id": "x"}, "This answer can no longer be rated or reported."),
        ("/api/report", {"trace_id": "0" * 32, "reason": "x" * 2001}, "Shorten the comment"),
    ]
    for path, body, sentence in cases:
        r = app.post(path, json=body)
        assert r.status_code == 422, (path, body)
        assert isinstance(r.json()["detail"], str)
        assert r.json()["detail"].startswith(sentence), r.json()
    assert app.get("/api/variant", params={"user_id": " "}).json()["detail"].startswith("Enter")


def test_variant_endpoint_tells_the_page_the_users_variant_and_notice(app: httpx.Client) -> None:
    """/api/variant answers from the flags alone: the canary user's notice, none for stable."""
    canary, stable = (users_in("vibethinker", 1000, canary=c)[0] for c in (True, False))
    assert app.get("/api/variant", params={"user_id": canary}).json() == {
        "variant": "canary",
        "notice": "You are trying the new assistant.",
        "flag_version": app.get("/api/flags").json()["version"],
    }
    assert app.get("/api/variant", params={"user_id": stable}).json()["notice"] is None


def _events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in response.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_stream_sends_start_tokens_then_done_with_the_finish_reason(app: httpx.Client) -> None:
    """/api/ask/stream: server-sent events, the answer in pieces, and done marks a cut answer."""
    user = users_in("vibethinker", 1000, canary=True)[0]
    r = app.post("/api/ask/stream", json={"user_id": user, "question": "What is 17 * 23?"})
    assert r.headers["content-type"].startswith("text/event-stream")
    events = _events(r)
    names = [name for name, _ in events]
    assert names[0] == "start"
    assert events[0][1] == {"variant": "canary", "notice": "You are trying the new assistant."}
    assert names.count("token") > 1
    assert names[-1] == "done"
    done = events[-1][1]
    assert "".join(d["text"] for n, d in events if n == "token") == done["answer"]
    assert (done["finish_reason"], done["truncated"]) == ("length", True)
    assert re.fullmatch(r"[0-9a-f]{32}", done["trace_id"])


def test_stream_of_an_unreachable_assistant_ends_in_an_error_sentence(
    flag_server: FlagServer, tmp_path: Path
) -> None:
    """Both variants down: the stream's last event is an error sentence, not a stack trace."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    flag_server.apply(make_flag(stable_url=dead, canary_url=dead, rollout_bps=0))
    client = vibesdk.Client(
        server_url=flag_server.url, sdk_key=flag_server.sdk_key, cache_dir=tmp_path
    )
    try:
        with serve_app(app_module.create_app(client)) as url, httpx.Client(base_url=url) as http:
            r = http.post("/api/ask/stream", json={"user_id": "u1", "question": "2 + 2?"})
    finally:
        client.close()
    assert _events(r) == [("error", {"message": app_module.UNAVAILABLE})]
