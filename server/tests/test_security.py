"""Security: constant-time secret checks, isolated environments, attributed admin actions.

(No token, no access for every route and hashed secrets are pinned in test_auth.py.)
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from vibesdk_server._http._app import create_app
from vibesdk_server._storage import open_store
from vibesdk_server._tokens import hash_secret
from vibesdk_server.testing import FlagServer

from vibesdk.testing import make_flag

MODEL = "vibethinker-1.5b"


def _flag_json(key: str = "vibethinker") -> dict[str, Any]:
    data = make_flag(key=key, rollout_bps=0).model_dump(mode="json")
    data["variants"]["canary"].pop("prompt")
    return data


def test_secrets_are_compared_with_hmac_compare_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Token checks go through hmac.compare_digest on the hashes (never ==), right or wrong."""
    store = open_store(tmp_path / "vibesdk.db")
    try:
        secret = store.create_token(kind="admin", name="alice", environment=None, created_by="t")
        calls: list[tuple[str, str]] = []
        real = hmac.compare_digest

        def spy(a: Any, b: Any) -> bool:
            calls.append((a, b))
            return real(a, b)

        monkeypatch.setattr(hmac, "compare_digest", spy)
        who = store.authenticate(secret)
        assert who is not None
        assert who.name == "alice"
        assert calls == [(hash_secret(secret), hash_secret(secret))]
        forged = secret[:-43] + "A" * 43  # the right public id, a wrong secret
        assert store.authenticate(forged) is None
        assert len(calls) == 2
        assert calls[1][0] == hash_secret(forged)
    finally:
        store.close()


def test_an_sdk_key_reads_only_its_own_environment_whatever_it_asks_for(
    server: FlagServer,
) -> None:
    """Query, header or path naming another environment never reach it: the key alone decides."""
    other = server.new_environment()
    server.apply(_flag_json())
    server.rollout("vibethinker", 1000)
    for params, headers in (
        ({"environment": server.environment}, {}),
        ({"env": server.environment}, {}),
        ({}, {"X-Vibesdk-Environment": server.environment}),
    ):
        response = other.sdk_request("GET", "/v1/flags", params=params, headers=headers)
        assert response.status_code == 200
        assert response.json()["environment"] == other.environment
        assert response.json()["flags"] == {}
        assert response.headers["etag"] == '"0"'
    # Another environment's change does not move this one's version (no 200 for a 304).
    unchanged = other.sdk_request("GET", "/v1/flags", headers={"If-None-Match": '"0"'})
    assert unchanged.status_code == 304
    assert server.sdk_request("GET", "/v1/admin/environments").status_code == 403
    assert (
        other.sdk_request("GET", f"/v1/admin/environments/{server.environment}").status_code == 403
    )


def test_feedback_is_filed_under_the_keys_environment(server: FlagServer) -> None:
    """Feedback sent with environment B's key is listed for B and never for A."""
    other = server.new_environment()
    body = {"trace_id": "1" * 32, "score": 2, "flag_key": "vibethinker", "variant": "canary"}
    assert other.sdk_request("POST", "/v1/feedback", json=body).status_code == 202

    def listed(env: str) -> list[str]:
        rows = server.admin_request("GET", "/v1/admin/feedback", params={"environment": env})
        return [row["trace_id"] for row in rows.json()]

    assert listed(other.environment) == ["1" * 32]
    assert listed(server.environment) == []


def _admin_write_routes(tmp_path: Path) -> set[str]:
    store = open_store(tmp_path / "routes.db")
    try:
        paths = create_app(store).openapi()["paths"]
    finally:
        store.close()
    writes = {"post", "put", "patch", "delete"}
    return {p for p, ops in paths.items() if p.startswith("/v1/admin/") and writes & set(ops)}


def test_every_admin_write_is_attributed_to_the_token_that_made_it(
    server: FlagServer, tmp_path: Path, logged_canary_calls: Callable[..., list[Any]]
) -> None:
    """Each admin write route (POST, PUT, DELETE), called once, leaves an audit row whose
    actor is the token's name."""
    env_path = f"/v1/admin/environments/{server.environment}"
    pid = f"attr-{server.environment}"
    new_env = f"{server.environment}-x"
    assert server.reviewer_token is not None
    reviewer = {"Authorization": f"Bearer {server.reviewer_token}"}

    # (route template, method path, body, headers, expected audit action)
    calls: list[tuple[str, str, dict[str, Any], dict[str, str], str]] = [
        ("/v1/admin/environments", "/v1/admin/environments", {"name": new_env}, {}, "create"),
        (
            "/v1/admin/environments/{env}/sdk-keys",
            f"{env_path}/sdk-keys",
            {"name": "attr"},
            {},
            "sdk_token_create",
        ),
        (
            "/v1/admin/environments/{env}/apply",
            f"{env_path}/apply",
            {"flags": [_flag_json()], "reason": "r"},
            {},
            "apply",
        ),
        (
            "/v1/admin/environments/{env}/versions/{version}/good",
            f"{env_path}/versions/1/good",
            {"reason": "r"},
            {},
            "mark_good",
        ),
        (
            "/v1/admin/environments/{env}/flags/{key}/rollout",
            f"{env_path}/flags/vibethinker/rollout",
            {"bps": 500},
            {},
            "rollout",
        ),
        (
            "/v1/admin/environments/{env}/flags/{key}/enabled",
            f"{env_path}/flags/vibethinker/enabled",
            {"enabled": False},
            {},
            "kill",
        ),
        (
            "/v1/admin/environments/{env}/flags/{key}/rollback",
            f"{env_path}/flags/vibethinker/rollback",
            {"reason": "r"},
            {},
            "rollback",
        ),
        (
            "/v1/admin/environments/{env}/flags/{key}/release",
            f"{env_path}/flags/vibethinker/release",
            {"steps": [100, 500, 10_000], "min_dwell_s": 3600},
            {},
            "release_start",
        ),
        *(
            (
                f"/v1/admin/environments/{{env}}/flags/{{key}}/release/{command}",
                f"{env_path}/flags/vibethinker/release/{command}",
                {"reason": "r"},
                {},
                f"release_{command}",
            )
            for command in ("pause", "resume", "promote", "abort")
        ),
        (
            "/v1/admin/prompts",
            "/v1/admin/prompts",
            {"id": pid, "system": "s", "model": MODEL},
            {},
            "prompt_add",
        ),
        (
            "/v1/admin/prompts/{prompt_id}/versions/{version}/approve",
            f"/v1/admin/prompts/{pid}/versions/1/approve",
            {},
            reviewer,
            "prompt_approve",
        ),
        (
            "/v1/admin/prompts",
            "/v1/admin/prompts",
            {"id": pid, "system": "s2", "model": MODEL},
            {},
            "prompt_add",
        ),
        (
            "/v1/admin/prompts/{prompt_id}/versions/{version}/reject",
            f"/v1/admin/prompts/{pid}/versions/2/reject",
            {},
            reviewer,
            "prompt_reject",
        ),
        (
            "/v1/admin/environments/{env}/eval-runs",
            f"{env_path}/eval-runs",
            {
                "flag": "vibethinker",
                "set_name": "s",
                "set_digest": "d",
                "items": 1,
                "variants": ["canary"],
                "document_version": 1,
            },
            {},
            "eval_run_start",
        ),
    ]
    # Called below: an evaluation run's answers and its finish (they need the run's id), a
    # review score (it needs a logged answer), and the evaluation schedule (PUT and DELETE).
    later = {
        "/v1/admin/environments/{env}/eval-runs/{run_id}/results",
        "/v1/admin/environments/{env}/eval-runs/{run_id}/finish",
        "/v1/admin/environments/{env}/flags/{key}/review/scores",
        "/v1/admin/environments/{env}/eval-schedules/{flag}",
    }
    assert {template for template, *_ in calls} | later == _admin_write_routes(tmp_path)
    actors = []
    for _, path, body, headers, action in calls:
        response = server.admin_request("POST", path, json=body, headers=headers)
        assert response.status_code in (200, 201), (path, response.text)
        newest = server.admin_request("GET", "/v1/admin/audit", params={"limit": 1}).json()[0]
        assert newest["action"] == action, (path, newest)
        assert newest["actor"].startswith("test-reviewer" if headers else "test-admin"), newest
        actors.append(newest["actor"])
    assert len(set(actors)) == 2  # exactly the two tokens' names, nothing anonymous

    # One audit row per answer would bury the log: each answer records its token in its row.
    runs = f"{env_path}/eval-runs/" + str(
        server.admin_request("GET", f"{env_path}/eval-runs").json()[0]["id"]
    )
    answer = {
        "item_id": "a",
        "variant": "canary",
        "kind": "math",
        "score": 1.0,
        "document_version": 1,
    }
    sent = server.admin_request(
        "POST", f"{runs}/results", json={"results": [answer]}, headers=reviewer
    )
    assert sent.json() == {"stored": 1}
    (stored,) = server.admin_request("GET", f"{runs}/results").json()
    assert stored["recorded_by"].startswith("test-reviewer")
    assert server.admin_request("POST", f"{runs}/finish").status_code == 200
    newest = server.admin_request("GET", "/v1/admin/audit", params={"limit": 1}).json()[0]
    assert (newest["action"], newest["actor"][:10]) == ("eval_run_finish", "test-admin")

    schedule = f"{env_path}/eval-schedules/vibethinker"
    for method, body, headers, action in (
        ("PUT", {"daily_at": "03:30"}, reviewer, "eval_schedule_set"),
        ("DELETE", None, {}, "eval_schedule_remove"),
    ):
        done = server.admin_request(method, schedule, json=body, headers=headers)
        assert done.status_code == 200, done.text
        newest = server.admin_request("GET", "/v1/admin/audit", params={"limit": 1}).json()[0]
        expected = "test-reviewer" if headers else "test-admin"
        assert (newest["action"], newest["actor"][: len(expected)]) == (action, expected)

    (logged,) = logged_canary_calls(["What is 2+2?"])
    review = f"{env_path}/flags/vibethinker/review"
    deadline = time.monotonic() + 15
    while server.admin_request("GET", f"{review}/next", headers=reviewer).json()["item"] is None:
        assert time.monotonic() < deadline, "the logged answer never reached the review queue"
        time.sleep(0.2)
    scored = server.admin_request(
        "POST", f"{review}/scores", json={"trace_id": logged.trace_id, "score": 4}, headers=reviewer
    )
    assert scored.status_code == 201, scored.text
    newest = server.admin_request("GET", "/v1/admin/audit", params={"limit": 1}).json()[0]
    assert (newest["action"], newest["actor"][:13]) == ("review_score", "test-reviewer")
