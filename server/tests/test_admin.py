"""The admin API against the real server: versions, audit, prompts, rollback."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from vibesdk_server.testing import FlagServer

from vibesdk.testing import VIBETHINKER_SYSTEM_PROMPT, make_flag

MODEL = "vibethinker-1.5b"


def _env(server: FlagServer) -> dict[str, Any]:
    return dict(server.admin_request("GET", f"/v1/admin/environments/{server.environment}").json())


def _post(server: FlagServer, path: str, body: Any = None, **kw: Any) -> httpx.Response:
    return server.admin_request(
        "POST", f"/v1/admin/environments/{server.environment}{path}", json=body, **kw
    )


def _flag_json(rollout_bps: int = 0, **fields: Any) -> dict[str, Any]:
    data = make_flag(rollout_bps=rollout_bps, **fields).model_dump(mode="json")
    data["variants"]["canary"].pop("prompt")
    return data


def _with_prompt(server: FlagServer, prompt_id: str = "vt", **kw: Any) -> dict[str, Any]:
    prompt = server.register_prompt(
        prompt_id=prompt_id, system="Think step by step.", model=MODEL, **kw
    )
    flag = _flag_json()
    flag["variants"]["canary"]["prompt"] = {"id": prompt["id"], "version": prompt["version"]}
    return flag


def _snapshot(server: FlagServer) -> dict[str, Any]:
    """The environment (version, document) and the newest audit rows of the whole server."""
    audit = server.admin_request("GET", "/v1/admin/audit", params={"limit": 50}).json()
    return {"environment": _env(server), "audit": audit}


def _assert_unchanged(server: FlagServer, before: dict[str, Any]) -> None:
    """A refused request wrote nothing: same version and document, no new audit row."""
    assert _snapshot(server) == before


# -- environments and apply ----------
def test_environment_starts_at_version_zero_and_is_listed(server: FlagServer) -> None:
    """A new environment is at version 0 with no flags and shows in the list."""
    env = _env(server)
    assert env["version"] == 0
    assert env["document"]["flags"] == {}
    listed = server.admin_request("GET", "/v1/admin/environments").json()
    assert {"name": server.environment, "version": 0, "good_version": None} in listed


def test_creating_an_existing_environment_is_a_conflict(server: FlagServer) -> None:
    """POST /v1/admin/environments for an existing name is 409."""
    response = server.admin_request(
        "POST", "/v1/admin/environments", json={"name": server.environment}
    )
    assert response.status_code == 409
    assert "already exists" in response.json()["detail"]


def test_apply_returns_a_change_and_stores_a_new_immutable_version(server: FlagServer) -> None:
    """Apply answers the change object; the old version stays readable, unchanged."""
    change = server.apply(_with_prompt(server), reason="first flag")
    assert change["previous_version"] == 0
    assert change["version"] == 1
    assert change["changed"] is True
    assert change["diff"][0]["path"] == "flags.vibethinker"
    assert isinstance(change["audit_id"], int)
    v0 = server.admin_request("GET", f"/v1/admin/environments/{server.environment}/versions/0")
    assert v0.json()["document"]["flags"] == {}
    v1 = server.admin_request(
        "GET", f"/v1/admin/environments/{server.environment}/versions/1"
    ).json()
    assert v1["action"] == "apply"
    assert v1["actor"].startswith("test-admin")
    assert v1["document"]["flags"]["vibethinker"]["variants"]["canary"]["prompt"]["system"] == (
        "Think step by step."
    )


def test_applying_the_same_flags_again_changes_nothing(server: FlagServer) -> None:
    """A second identical apply is changed=false and stores no new version."""
    flag = _with_prompt(server)
    server.apply(flag)
    again = server.apply(flag)
    assert again["changed"] is False
    assert again["version"] == again["previous_version"] == 1
    assert again["diff"] == []


def test_dry_run_shows_the_diff_and_writes_nothing(server: FlagServer) -> None:
    """dry_run=true returns the diff but the environment stays at its version."""
    flag = _with_prompt(server)  # registering the prompt is a write of its own
    before = _snapshot(server)
    response = _post(server, "/apply", {"flags": [flag], "dry_run": True})
    assert response.status_code == 200
    assert response.json()["changed"] is True
    assert response.json()["audit_id"] is None
    _assert_unchanged(server, before)


def test_prune_removes_flags_that_are_not_listed(server: FlagServer) -> None:
    """apply with prune=true deletes the flags the file no longer lists."""
    server.apply(_flag_json(), _flag_json(key="other"))
    change = server.apply(_flag_json(), prune=True)
    assert [d["path"] for d in change["diff"]] == ["flags.other"]
    assert set(server.document().flags) == {"vibethinker"}


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"flags": [{"key": "x"}]}, 422, "variants"),
        ({"flags": [{**_flag_json(), "rollout_bps": 20000}]}, 422, "rollout_bps"),
        ({"flags": [_flag_json(), _flag_json()]}, 422, "twice"),
        ({"flags": "nope"}, 422, "flags"),
        ({"flags": [], "surprise": 1}, 422, "surprise"),
    ],
)
def test_bad_apply_bodies_are_refused_and_nothing_is_written(
    server: FlagServer, body: dict[str, Any], status: int, words: str
) -> None:
    """Invalid flags, out-of-range numbers, duplicates, unknown fields: 4xx, one line, no write."""
    before = _snapshot(server)
    response = _post(server, "/apply", body)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert words in detail
    assert "\n" not in detail
    _assert_unchanged(server, before)


def test_malformed_json_is_a_400_and_nothing_is_written(server: FlagServer) -> None:
    """A body that is not JSON at all gives 400 with a message about JSON."""
    before = _snapshot(server)
    response = _post(
        server, "/apply", None, content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "JSON" in response.json()["detail"]
    _assert_unchanged(server, before)


# -- prompts ----------
def test_prompt_versions_are_numbered_and_start_pending(server: FlagServer) -> None:
    """Registering the same id twice gives versions 1 and 2, both pending, author recorded."""
    pid = f"p-{server.environment}"
    body = {"id": pid, "system": "a", "model": MODEL}
    first = server.admin_request("POST", "/v1/admin/prompts", json=body).json()
    second = server.admin_request("POST", "/v1/admin/prompts", json={**body, "system": "b"}).json()
    assert (first["version"], second["version"]) == (1, 2)
    assert first["state"] == second["state"] == "pending"
    assert first["author"].startswith("test-admin")
    one = server.admin_request("GET", f"/v1/admin/prompts/{pid}/versions/1").json()
    assert one["system"] == "a"


def test_a_variant_may_only_reference_an_approved_template(server: FlagServer) -> None:
    """Pending and rejected templates are refused with 422 and a hint; approved ones embed."""
    pid = f"p-{server.environment}"
    prompt = server.register_prompt(prompt_id=pid, system="x", model=MODEL, approve=False)
    flag = _flag_json()
    flag["variants"]["canary"]["prompt"] = {"id": pid, "version": prompt["version"]}
    before = _snapshot(server)
    pending = _post(server, "/apply", {"flags": [flag]})
    assert pending.status_code == 422
    assert "pending, not approved" in pending.json()["detail"]
    _assert_unchanged(server, before)
    reject = server.admin_request(
        "POST", f"/v1/admin/prompts/{pid}/versions/1/reject", json={"reason": "wrong tone"}
    ).json()
    assert reject["state"] == "rejected"
    rejected = _post(server, "/apply", {"flags": [flag]})
    assert rejected.status_code == 422
    assert "rejected" in rejected.json()["detail"]
    again = server.admin_request("POST", f"/v1/admin/prompts/{pid}/versions/1/approve")
    assert again.status_code == 409
    assert _env(server)["version"] == 0


def _audit_ids(server: FlagServer) -> list[int]:
    return [row["id"] for row in server.admin_request("GET", "/v1/admin/audit?limit=500").json()]


def test_the_author_of_a_template_cannot_approve_it(server: FlagServer) -> None:
    """Four-eyes review: self-approval is 403 saying another admin must approve; nothing written."""
    pid = f"own-{server.environment}"
    server.register_prompt(prompt_id=pid, system="x", model=MODEL, approve=False)
    audit = _audit_ids(server)
    own = server.admin_request(
        "POST", f"/v1/admin/prompts/{pid}/versions/1/approve", json={"reason": "lgtm"}
    )
    assert own.status_code == 403
    detail = own.json()["detail"]
    assert "another admin must approve it" in detail
    assert "--allow-self-review" in detail
    assert "\n" not in detail
    got = server.admin_request("GET", f"/v1/admin/prompts/{pid}/versions/1").json()
    assert (got["state"], got.get("reviewer")) == ("pending", None)
    assert _audit_ids(server) == audit

    assert server.reviewer_token is not None
    other = server.admin_request(
        "POST",
        f"/v1/admin/prompts/{pid}/versions/1/approve",
        json={"reason": "lgtm"},
        headers={"Authorization": f"Bearer {server.reviewer_token}"},
    ).json()
    assert other["state"] == "approved"
    assert other["reviewer"].startswith("test-reviewer")
    assert other["author"].startswith("test-admin")


def test_the_author_may_reject_their_own_template(server: FlagServer) -> None:
    """Withdrawing one's own pending version (reject) needs no second admin."""
    pid = f"withdraw-{server.environment}"
    server.register_prompt(prompt_id=pid, system="x", model=MODEL, approve=False)
    response = server.admin_request("POST", f"/v1/admin/prompts/{pid}/versions/1/reject")
    assert response.status_code == 200
    assert response.json()["state"] == "rejected"


def test_allow_self_review_lets_a_single_operator_approve(
    flag_server_factory: Any,
) -> None:
    """vibe-server --allow-self-review: the author's own approval is accepted and recorded."""
    proc = flag_server_factory(allow_self_review=True)
    assert proc.reviewer_token is None  # so register_prompt approves with the author's token
    prompt = proc.register_prompt(prompt_id="solo", system="x", model=MODEL)
    assert prompt["state"] == "approved"
    assert prompt["reviewer"] == prompt["author"]


def test_a_template_reviewed_for_another_model_is_refused(server: FlagServer) -> None:
    """A template bound to model A cannot serve a variant of model B (422 naming both)."""
    pid = f"p-{server.environment}"
    prompt = server.register_prompt(prompt_id=pid, system="x", model="other-model")
    flag = _flag_json()
    flag["variants"]["canary"]["prompt"] = {"id": pid, "version": prompt["version"]}
    response = _post(server, "/apply", {"flags": [flag]})
    assert response.status_code == 422
    assert "other-model" in response.json()["detail"]
    assert MODEL in response.json()["detail"]


def test_unknown_templates_and_edited_inline_text_are_refused(server: FlagServer) -> None:
    """A reference to a missing template, or inline text differing from the registry: 422."""
    flag = _flag_json()
    flag["variants"]["canary"]["prompt"] = {"id": "nope", "version": 7}
    missing = _post(server, "/apply", {"flags": [flag]})
    assert missing.status_code == 422
    assert "not a registered template" in missing.json()["detail"]
    registered = _with_prompt(server, prompt_id=f"p-{server.environment}")
    ref = registered["variants"]["canary"]["prompt"]
    registered["variants"]["canary"]["prompt"] = {
        **ref,
        "system": "edited!",
        "model": MODEL,
        "user_template": "{input}",
    }
    edited = _post(server, "/apply", {"flags": [registered]})
    assert edited.status_code == 422
    assert "differs from the registered template" in edited.json()["detail"]


def test_an_exported_document_can_be_applied_again(server: FlagServer) -> None:
    """Flags read back from the server (prompts embedded) apply again as a no-op."""
    server.apply(_with_prompt(server))
    flags = _env(server)["document"]["flags"]
    response = _post(server, "/apply", {"flags": list(flags.values())})
    assert response.status_code == 200, response.text
    assert response.json()["changed"] is False


# -- rollout, kill switch, concurrency ----------
def test_rollout_changes_only_rollout_bps(server: FlagServer) -> None:
    """POST .../rollout with bps sets it; the diff names exactly that path."""
    server.apply(_flag_json())
    change = server.rollout("vibethinker", 1, reason="0.01% first")
    assert change["diff"] == [{"path": "flags.vibethinker.rollout_bps", "before": 0, "after": 1}]
    assert server.document().flags["vibethinker"].rollout_bps == 1


@pytest.mark.parametrize("bps", [-1, 10001, 1.5, "10%", None])
def test_out_of_range_rollouts_are_refused(server: FlagServer, bps: Any) -> None:
    """Rollouts outside 0..10000 whole basis points are 422 and nothing is written."""
    server.apply(_flag_json())
    before = _snapshot(server)
    response = _post(server, "/flags/vibethinker/rollout", {"bps": bps})
    assert response.status_code == 422
    assert "bps" in response.json()["detail"]
    _assert_unchanged(server, before)


def test_unknown_flags_are_404_with_the_known_ones_listed(server: FlagServer) -> None:
    """Rolling out a flag that does not exist is 404 and names the flags that do."""
    server.apply(_flag_json())
    before = _snapshot(server)
    response = _post(server, "/flags/nosuch/rollout", {"bps": 10})
    assert response.status_code == 404
    assert "vibethinker" in response.json()["detail"]
    for path, body in (
        ("/flags/nosuch/enabled", {"enabled": False}),
        ("/flags/nosuch/rollback", {"reason": "x"}),
    ):
        assert _post(server, path, body).status_code == 404
    _assert_unchanged(server, before)


def test_unknown_environments_are_404(server: FlagServer) -> None:
    """Writes to an environment that does not exist are 404 and write nothing."""
    before = _snapshot(server)
    response = server.admin_request(
        "POST", "/v1/admin/environments/nope-env/flags/x/rollout", json={"bps": 1}
    )
    assert response.status_code == 404
    _assert_unchanged(server, before)


def test_stale_expected_version_is_409_naming_both_versions(server: FlagServer) -> None:
    """expected_version (body) or If-Match (header) that is not current: 409, nothing written."""
    server.apply(_flag_json())
    server.rollout("vibethinker", 100)
    before = _snapshot(server)
    body = _post(server, "/flags/vibethinker/rollout", {"bps": 5, "expected_version": 1})
    assert body.status_code == 409
    assert "1" in body.json()["detail"]
    assert "2" in body.json()["detail"]
    header = _post(server, "/flags/vibethinker/rollout", {"bps": 5}, headers={"If-Match": '"1"'})
    assert header.status_code == 409
    _assert_unchanged(server, before)
    ok = _post(server, "/flags/vibethinker/rollout", {"bps": 5}, headers={"If-Match": '"2"'})
    assert ok.status_code == 200
    assert ok.json()["version"] == 3


def test_a_malformed_if_match_is_a_400(server: FlagServer) -> None:
    """If-Match that is not a quoted version is refused with 400."""
    server.apply(_flag_json())
    before = _snapshot(server)
    response = _post(
        server, "/flags/vibethinker/rollout", {"bps": 5}, headers={"If-Match": "yesterday"}
    )
    assert response.status_code == 400
    _assert_unchanged(server, before)


def test_kill_switch_disables_and_enables(server: FlagServer) -> None:
    """enabled=false is recorded as action kill, enabled=true as enable."""
    server.apply(_flag_json(rollout_bps=500))
    server.set_enabled("vibethinker", False, reason="bad answers")
    assert server.document().flags["vibethinker"].enabled is False
    server.set_enabled("vibethinker", True)
    actions = [h["action"] for h in _history(server)]
    assert actions[:2] == ["enable", "kill"]


# -- rollback and good versions ----------
def _history(server: FlagServer, **params: Any) -> list[dict[str, Any]]:
    return list(
        server.admin_request(
            "GET", f"/v1/admin/environments/{server.environment}/history", params=params
        ).json()
    )


def test_rollback_restores_the_marked_good_flag_with_rollout_zero(server: FlagServer) -> None:
    """Rollback: rollout 0 AND the flag as in the last good version; the snapshot is kept."""
    good_flag = _with_prompt(server, prompt_id=f"good-{server.environment}")
    server.apply(good_flag)
    good = server.mark_good(reason="served a week")
    assert good["good_version"] == 1
    bad = _with_prompt(server, prompt_id=f"bad-{server.environment}")
    bad["rollout_bps"] = 2000
    bad["variants"]["canary"]["params"]["temperature"] = 1.5
    server.apply(bad)
    change = server.rollback("vibethinker", reason="p95 over 3 s")
    assert change["restored_from"] == 1
    assert change["snapshot_version"] == 2
    assert change["version"] == 3
    flag = server.document().flags["vibethinker"]
    assert flag.rollout_bps == 0
    prompt = flag.variants["canary"].prompt
    assert prompt is not None
    assert prompt.id == f"good-{server.environment}"
    assert flag.variants["canary"].params.temperature == 0.6
    snapshot = server.admin_request(
        "GET", f"/v1/admin/environments/{server.environment}/versions/2"
    ).json()
    assert snapshot["document"]["flags"]["vibethinker"]["rollout_bps"] == 2000
    audit = server.admin_request(
        "GET", "/v1/admin/audit", params={"environment": server.environment}
    ).json()
    assert audit[0]["action"] == "rollback"
    assert audit[0]["reason"] == "p95 over 3 s"
    assert audit[0]["before"]["rollout_bps"] == 2000
    assert audit[0]["after"]["rollout_bps"] == 0


def test_without_a_good_mark_rollback_restores_the_flag_before_its_canary(
    server: FlagServer,
) -> None:
    """Nothing marked good: the newest version where the flag's rollout was 0 is good."""
    server.apply(_flag_json(rollout_bps=0))  # v1: canary at 0
    server.rollout("vibethinker", 500)  # v2
    changed = _flag_json(rollout_bps=500, notice="new notice")
    server.apply(changed)  # v3
    change = server.rollback("vibethinker", reason="complaints")
    assert change["restored_from"] == 1
    flag = server.document().flags["vibethinker"]
    assert flag.rollout_bps == 0
    assert flag.variants["canary"].notice == "You are trying the new assistant."


def test_rollback_to_an_explicit_version(server: FlagServer) -> None:
    """to_version picks the version to restore from; newer than current is 422."""
    server.apply(_flag_json(notice="one"))
    server.apply(_flag_json(notice="two", rollout_bps=100))
    change = server.rollback("vibethinker", reason="back to one", to_version=1)
    assert change["restored_from"] == 1
    assert server.document().flags["vibethinker"].variants["canary"].notice == "one"
    future = _post(server, "/flags/vibethinker/rollback", {"reason": "x", "to_version": 99})
    assert future.status_code == 422


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "   "}])
def test_rollback_requires_a_reason(server: FlagServer, body: dict[str, Any]) -> None:
    """A rollback without a (non-blank) reason is 422 and nothing is written."""
    server.apply(_flag_json(rollout_bps=100))
    before = _snapshot(server)
    response = _post(server, "/flags/vibethinker/rollback", body)
    assert response.status_code == 422
    assert "reason" in response.json()["detail"]
    _assert_unchanged(server, before)


def test_marking_an_unknown_version_good_is_404(server: FlagServer) -> None:
    """mark-good of a version beyond the current one is refused."""
    response = _post(server, "/versions/5/good", {"reason": "x"})
    assert response.status_code == 404


# -- history, diff, audit ----------
def test_history_is_newest_first_filtered_by_flag_and_shows_good(server: FlagServer) -> None:
    """history?flag= lists the flag's actions newest first with actor, reason and good marks."""
    server.apply(_flag_json(), _flag_json(key="other"))
    server.mark_good(1)
    server.rollout("vibethinker", 100, reason="start")
    server.rollout("other", 100)
    entries = _history(server, flag="vibethinker")
    assert [e["action"] for e in entries] == ["rollout", "mark_good", "apply"]
    assert entries[0]["reason"] == "start"
    assert entries[0]["flags"] == ["vibethinker"]
    assert entries[2]["good"] is True
    assert entries[0]["at"].endswith("Z")
    assert len(_history(server, limit=1)) == 1


def test_history_of_a_flag_no_change_touched_is_404(server: FlagServer) -> None:
    """history?flag=KEY for a flag never changed: 404 with a hint, not the env's mark_good rows."""
    server.apply(_flag_json())
    server.mark_good(1)
    response = server.admin_request(
        "GET",
        f"/v1/admin/environments/{server.environment}/history",
        params={"flag": "nosuch"},
    )
    assert response.status_code == 404
    assert response.json()["detail"] == (
        f"no change in environment {server.environment!r} ever touched flag 'nosuch';"
        " vibe status lists its flags"
    )


def test_diff_between_two_versions_for_one_flag(server: FlagServer) -> None:
    """diff?from=&to=&flag= lists the changed paths of that flag."""
    server.apply(_flag_json())
    server.rollout("vibethinker", 1000)
    response = server.admin_request(
        "GET",
        f"/v1/admin/environments/{server.environment}/diff",
        params={"from": 1, "to": 2, "flag": "vibethinker"},
    ).json()
    assert response["diff"] == [
        {"path": "flags.vibethinker.rollout_bps", "before": 0, "after": 1000}
    ]


def test_diff_of_a_flag_in_neither_version_is_404(server: FlagServer) -> None:
    """diff&flag=KEY where KEY is in neither version: 404 (like other unknown flags) with a hint."""
    server.apply(_flag_json())
    server.rollout("vibethinker", 1000)
    response = server.admin_request(
        "GET",
        f"/v1/admin/environments/{server.environment}/diff",
        params={"from": 1, "to": 2, "flag": "nosuch"},
    )
    assert response.status_code == 404
    assert response.json()["detail"] == (
        "flag 'nosuch' exists in neither version 1 nor 2; vibe history nosuch lists the"
        " versions that changed it"
    )


# -- keys and isolation ----------
def test_sdk_keys_see_only_their_own_environment(server: FlagServer) -> None:
    """Two environments, two keys: each key reads its own document, never the other's."""
    other = server.new_environment()
    server.apply(_flag_json())
    assert set(server.document().flags) == {"vibethinker"}
    assert other.document().flags == {}
    assert other.document().environment == other.environment


def test_sdk_key_creation_is_audited_and_names_are_unique(server: FlagServer) -> None:
    """POST .../sdk-keys returns the key once; a second key of the same name is 409."""
    created = _post(server, "/sdk-keys", {"name": "web"})
    assert created.status_code == 201
    assert created.json()["key"].startswith("vibe_sdk_")
    assert _post(server, "/sdk-keys", {"name": "web"}).status_code == 409
    audit = server.admin_request(
        "GET", "/v1/admin/audit", params={"environment": server.environment}
    ).json()
    assert audit[0]["action"] == "sdk_token_create"
    assert created.json()["key"] not in str(audit)


def test_prompt_reference_embeds_the_system_prompt_the_sdk_sees(server: FlagServer) -> None:
    """The SDK's document carries the approved template's full text, not just the reference."""
    pid = f"vt-{server.environment}"
    prompt = server.register_prompt(prompt_id=pid, system=VIBETHINKER_SYSTEM_PROMPT, model=MODEL)
    flag = _flag_json()
    flag["variants"]["canary"]["prompt"] = {"id": pid, "version": prompt["version"]}
    server.apply(flag)
    embedded = server.document().flags["vibethinker"].variants["canary"].prompt
    assert embedded is not None
    assert embedded.system == VIBETHINKER_SYSTEM_PROMPT
    assert embedded.model == MODEL


# -- YAML bodies ----------
def test_apply_accepts_a_yaml_body(server: FlagServer) -> None:
    """Content-Type application/yaml with the same shape as JSON applies the flags."""
    import yaml

    text = yaml.safe_dump({"flags": [_flag_json()], "reason": "from yaml"})
    response = _post(
        server, "/apply", None, content=text.encode(), headers={"content-type": "application/yaml"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 1


def test_malformed_yaml_is_a_400_naming_the_line(server: FlagServer) -> None:
    """Broken YAML: 400 with the line number, one line, nothing written."""
    before = _snapshot(server)
    response = _post(
        server,
        "/apply",
        None,
        content=b"flags:\n  - key: [unclosed\n",
        headers={"content-type": "application/yaml"},
    )
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "malformed YAML at line" in detail
    assert "\n" not in detail
    _assert_unchanged(server, before)


def test_a_yaml_body_that_gives_a_key_twice_is_refused_like_the_cli_does(
    server: FlagServer,
) -> None:
    """A key twice in one mapping: 400 naming the key and its line, nothing written.

    PyYAML alone keeps the last value silently; the CLI already refused it, and the
    server reads YAML with the same loader.
    """
    before = _snapshot(server)
    body = (
        b"flags:\n  - key: twice\n    rollout_bps: 100\n    rollout_bps: 10000\n"
        b"    variants:\n      stable:\n        backend: {urls: ['http://127.0.0.1:9/v1']}\n"
        b"        model: m\n"
    )
    response = _post(
        server, "/apply", None, content=body, headers={"content-type": "application/yaml"}
    )
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert detail.startswith("key 'rollout_bps' appears twice in one mapping (line 4, column 5)")
    _assert_unchanged(server, before)


def test_yaml_bodies_still_need_an_admin_token(server: FlagServer) -> None:
    """The YAML path is behind the same auth: no token is 401 before the body is read."""
    response = httpx.post(
        f"{server.url}/v1/admin/environments/{server.environment}/apply",
        content=b"flags: []",
        headers={"content-type": "application/yaml"},
    )
    assert response.status_code == 401
