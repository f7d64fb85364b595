"""vibesdk.exposures: each user counted once per flag step and variant, by Client and AsyncClient.

The flag server's sample-ratio test counts these users per arm (see _telemetry/exposures.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.client_harness import Backends, Driver, answer
from vibesdk._telemetry.exposures import Exposures
from vibesdk.testing import InMemoryFlagSource, SpanCapture, make_document, make_flag

USER = [{"role": "user", "content": "Solve 2+2."}]
EXPOSURES = "vibesdk.exposures"
CALLS = "gen_ai.client.operation.duration"
ARMS = ("stable", "canary")


def _ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=answer("fine answer"))


def _flag(rollout_bps: int = 5000, **fields: Any) -> Any:
    urls = {"stable_url": "http://stable/v1", "canary_url": "http://canary/v1"}
    return make_flag(rollout_bps=rollout_bps, **urls, **fields)


@pytest.fixture
def app(kind: str) -> Iterator[tuple[Driver, InMemoryFlagSource]]:
    source = InMemoryFlagSource(make_document(_flag(5000)))
    driver = Driver(
        kind,
        flag_source=source,
        transport=Backends(stable=_ok, canary=_ok).transport(),
        cache_dir="",
    )
    yield driver, source
    driver.dispose()


def _counts(cap: SpanCapture, name: str) -> dict[str, int]:
    return {v: cap.metric_count(name, {"feature_flag.result.variant": v}) for v in ARMS}


def test_each_user_counts_once_per_step_and_again_after_a_rollout_change(
    app: tuple[Driver, InMemoryFlagSource],
) -> None:
    """20 users calling 3 times each: 60 calls, 20 exposures split as the users are; a new
    document that leaves the step alone counts nobody again; a new rollout counts everyone
    once more, in the variant they have now."""
    d, source = app
    users = [f"user-{i}" for i in range(20)]
    with SpanCapture() as cap:
        for _ in range(3):
            for u in users:
                d.chat("vibethinker", u, USER)
        at_half = {v: sum(d.assign("vibethinker", u).variant == v for u in users) for v in ARMS}
        assert sum(_counts(cap, CALLS).values()) == 60
        assert _counts(cap, EXPOSURES) == at_half
        assert 0 < at_half["canary"] < 20  # both arms met users

        source.update(_flag(5000, description="same split, new words"))  # not a new step
        for u in users:
            d.chat("vibethinker", u, USER)
        assert _counts(cap, EXPOSURES) == at_half

        source.update(_flag(10_000))  # the guard advanced: a new step, everyone on the canary
        for _ in range(2):
            for u in users:
                d.chat("vibethinker", u, USER)
        assert _counts(cap, EXPOSURES) == {
            "stable": at_half["stable"],
            "canary": at_half["canary"] + 20,
        }
        # Each count carries its step's id: the server reads a step's users by it.
        by_step: dict[str, int] = {}
        for point in cap.metric_points(EXPOSURES):
            step = str(dict(point.attributes or {})["vibesdk.step"])
            by_step[step] = by_step.get(step, 0) + int(point.value)
        assert by_step == {_flag(5000).step_id: 20, _flag(10_000).step_id: 20}


def test_each_client_tags_its_users_with_its_own_id(kind: str) -> None:
    """Two clients (two workers of one app) meet the same 20 users: each counts every user once,
    under its own ``vibesdk.client.id``, so the server can test one client's distinct users."""
    source = InMemoryFlagSource(make_document(_flag(5000)))
    workers = [
        Driver(
            kind,
            flag_source=source,
            transport=Backends(stable=_ok, canary=_ok).transport(),
            cache_dir="",
        )
        for _ in range(2)
    ]
    users = [f"user-{i}" for i in range(20)]
    try:
        with SpanCapture() as cap:
            for _ in range(2):
                for worker in workers:
                    for u in users:
                        worker.chat("vibethinker", u, USER)
            per_client: dict[str, dict[str, int]] = {}
            for point in cap.metric_points(EXPOSURES):
                attrs = dict(point.attributes or {})
                arms = per_client.setdefault(str(attrs["vibesdk.client.id"]), {})
                arms[str(attrs["feature_flag.result.variant"])] = int(point.value)
        at_half = {
            v: sum(workers[0].assign("vibethinker", u).variant == v for u in users) for v in ARMS
        }
    finally:
        for worker in workers:
            worker.dispose()
    assert len(per_client) == 2
    assert all(len(client) == 16 for client in per_client)  # 8 random bytes, in hex
    assert list(per_client.values()) == [at_half, at_half]


def test_past_the_bound_new_users_wait_for_the_next_step() -> None:
    """At the bound, users not met yet are not counted (none is counted twice); a new step
    starts counting again."""
    seen = Exposures(limit=3)
    flag = _flag(5000)
    assert [seen.first(flag, "stable", f"u{i}") for i in range(5)] == [True] * 3 + [False] * 2
    assert not seen.first(flag, "stable", "u0")
    assert seen.first(_flag(2500), "stable", "u4")


@pytest.mark.parametrize(
    "change",
    [
        {"rollout_bps": 2500},
        {"salt": "reshuffled"},
        {"enabled": False},
        {"rules": [{"id": "staff", "clauses": [{"attribute": "team", "op": "equals",
                                                "values": ["ops"]}], "variant": "canary"}]},
    ],
)  # fmt: skip
def test_whatever_changes_assignments_starts_a_new_step(change: dict[str, Any]) -> None:
    """The rollout, salt, kill switch and rules decide who gets what: each starts a new step.
    The same user in another variant is another exposure, even within a step."""
    seen = Exposures()
    assert seen.first(_flag(5000), "stable", "u1")
    assert not seen.first(_flag(5000), "stable", "u1")  # a new document, the same step
    assert seen.first(_flag(5000), "canary", "u1")
    fields = {"rollout_bps": 5000, **change}
    assert seen.first(_flag(**fields), "stable", "u1")


def test_the_step_id_is_the_documented_hash_of_what_assigns() -> None:
    """Flag.step_id is a contract between SDK and server versions: the first 16 hex digits of
    the SHA-256 of the compact JSON of what decides assignments, as its docstring says. Only
    those fields move it."""
    rule = {"id": "staff", "clauses": [{"attribute": "team", "op": "in", "values": ["ops", "ml"]}],
            "variant": "canary"}  # fmt: skip
    flag = _flag(1234, rules=[rule])
    text = (
        '[true,"vibethinker","stable","canary",1234,'
        '[["staff","canary",[["team","in",["ops","ml"]]]]]]'
    )
    assert flag.step_id == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert _flag(1234, rules=[rule], description="other words").step_id == flag.step_id
    assert _flag(1234, rules=[rule], salt="vibethinker").step_id == flag.step_id  # same salt
    assert _flag(1234, rules=[rule], salt="reshuffled").step_id != flag.step_id
