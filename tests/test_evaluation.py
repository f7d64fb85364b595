"""Flag evaluation: kill switch, then rules, then percentage; sticky; never raises."""

from __future__ import annotations

import pytest

from vibesdk import Reason, bucket
from vibesdk._flags.evaluation import ErrorCode, compile_document, not_ready
from vibesdk.testing import make_document, make_flag


def _assign(flag_kwargs: dict[str, object], user: str, attrs: dict[str, object] | None = None):
    doc = compile_document(make_document(make_flag(**flag_kwargs), version=7))
    return doc.evaluate("vibethinker", user, attrs)


def test_user_below_rollout_gets_canary_with_bucket_and_version() -> None:
    """A user whose bucket is under rollout_bps gets the canary, its bucket and the doc version."""
    user = next(f"u{i}" for i in range(1000) if bucket("vibethinker", f"u{i}") < 1000)
    a = _assign({"rollout_bps": 1000}, user)
    assert (a.variant, a.reason, a.flag_version) == ("canary", Reason.SPLIT, 7)
    assert a.bucket == bucket("vibethinker", user)
    assert a.notice == "You are trying the new assistant."
    assert a.config is not None
    assert a.config.model == "vibethinker-1.5b"


def test_raising_rollout_only_adds_users() -> None:
    """Every canary user at 10% is still a canary user at 25%, and 0% has nobody."""
    users = [f"user-{i}" for i in range(3000)]
    at = {
        bps: {u for u in users if _assign({"rollout_bps": bps}, u).variant == "canary"}
        for bps in (0, 1000, 2500, 10000)
    }
    assert at[0] == set()
    assert at[1000] <= at[2500] <= at[10000] == set(users)
    assert 200 < len(at[1000]) < 400


def test_kill_switch_puts_everyone_on_default() -> None:
    """enabled=false serves the default variant to everyone, even targeted users."""
    rules = [
        {
            "id": "staff",
            "clauses": [{"attribute": "user_id", "op": "in", "values": ["u1"]}],
            "variant": "canary",
        }
    ]
    a = _assign({"rollout_bps": 10000, "enabled": False, "rules": rules}, "u1")
    assert (a.variant, a.reason) == ("stable", Reason.DISABLED)


@pytest.mark.parametrize(
    ("clause", "attrs", "expected"),
    [
        ({"attribute": "user_id", "op": "in", "values": ["u1", "u2"]}, None, "canary"),
        ({"attribute": "region", "op": "equals", "values": ["cn"]}, {"region": "cn"}, "canary"),
        ({"attribute": "region", "op": "in", "values": ["cn", "sg"]}, {"region": "us"}, "stable"),
        ({"attribute": "device", "op": "not_in", "values": ["ios"]}, {"device": "web"}, "canary"),
        ({"attribute": "device", "op": "not_in", "values": ["ios"]}, {}, "canary"),
        ({"attribute": "beta", "op": "equals", "values": ["true"]}, {"beta": True}, "canary"),
        ({"attribute": "region", "op": "equals", "values": ["cn"]}, {}, "stable"),
    ],
)
def test_rules_match_before_the_percentage(clause, attrs, expected) -> None:
    """Allow lists and attribute equals/in/not_in rules decide before the rollout (0% here)."""
    rules = [{"id": "r1", "clauses": [clause], "variant": "canary"}]
    a = _assign({"rollout_bps": 0, "rules": rules}, "u1", attrs)
    assert a.variant == expected
    assert a.reason == (Reason.TARGETING_MATCH if expected == "canary" else Reason.SPLIT)


def test_deny_list_rule_keeps_users_on_stable_at_full_rollout() -> None:
    """A rule serving stable to listed users wins over a 100% rollout."""
    rules = [
        {
            "id": "deny",
            "clauses": [{"attribute": "user_id", "op": "in", "values": ["vip"]}],
            "variant": "stable",
        }
    ]
    a = _assign({"rollout_bps": 10000, "rules": rules}, "vip")
    assert (a.variant, a.reason, a.rule_id) == ("stable", Reason.TARGETING_MATCH, "deny")


def test_unknown_flag_is_stable_with_an_error_code() -> None:
    """An unknown flag key gives stable, reason ERROR, code FLAG_NOT_FOUND; nothing raises."""
    doc = compile_document(make_document(version=3))
    a = doc.evaluate("nope", "u1")
    assert (a.variant, a.reason, a.error_code, a.flag_version) == (
        "stable",
        Reason.ERROR,
        ErrorCode.FLAG_NOT_FOUND,
        3,
    )


def test_not_ready_is_stable_with_an_error_code() -> None:
    """Before any document is loaded the answer is stable with PROVIDER_NOT_READY."""
    a = not_ready("vibethinker", "u1", ErrorCode.PROVIDER_NOT_READY)
    assert (a.variant, a.reason, a.error_code, a.config) == (
        "stable",
        Reason.ERROR,
        ErrorCode.PROVIDER_NOT_READY,
        None,
    )


def test_custom_salt_changes_buckets() -> None:
    """A flag's salt, not its key, feeds the bucketing function."""
    a = _assign({"salt": "other-salt"}, "u42")
    assert a.bucket == bucket("other-salt", "u42")
