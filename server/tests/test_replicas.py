"""Several replicas on one PostgreSQL: a flip on one reaches SSE clients of the others."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable

import httpx
import pytest
from vibesdk_server.testing import FlagServerProcess, iter_sse

import vibesdk
from vibesdk.testing import make_flag

pytestmark = pytest.mark.postgres


def test_a_flip_on_one_replica_reaches_stream_clients_of_another(
    postgres_schema: str, flag_server_factory: Callable[..., FlagServerProcess]
) -> None:
    """Rollout via replica A; an SDK-style SSE client on replica B gets the version (NOTIFY)."""
    # refresh_s is huge so only LISTEN/NOTIFY can deliver the change in time.
    a = flag_server_factory(postgres_schema, refresh_s=3600)
    b = flag_server_factory(
        postgres_schema, refresh_s=3600, admin_token=a.admin_token, sdk_key=a.sdk_key
    )
    a.apply(make_flag(rollout_bps=0))
    headers = {"Authorization": f"Bearer {b.sdk_key}"}
    with httpx.stream("GET", b.url + "/v1/stream", headers=headers, timeout=30) as response:
        events = (e for e in iter_sse(response.iter_lines()) if e.event == "flags")
        assert int(next(events).id or "") == 1
        change = a.rollout("vibethinker", 1000, reason="canary 10%")
        pushed = next(events)
        assert int(pushed.id or "") == change["version"]
        assert json.loads(pushed.data or "")["flags"]["vibethinker"]["rollout_bps"] == 1000
        rolled = a.rollback("vibethinker", reason="p95 over 3 s")
        assert int(next(events).id or "") == rolled["version"]
    assert b.document().version == rolled["version"]
    assert b.document().flags["vibethinker"].rollout_bps == 0


def test_a_flip_on_one_replica_reaches_real_sdk_flag_sources_on_another(
    postgres_schema: str, flag_server_factory: Callable[..., FlagServerProcess]
) -> None:
    """An SDK client streaming from replica B applies a rollout and rollback made on A."""
    a = flag_server_factory(postgres_schema, refresh_s=3600)
    b = flag_server_factory(
        postgres_schema, refresh_s=3600, admin_token=a.admin_token, sdk_key=a.sdk_key
    )
    a.apply(make_flag(rollout_bps=0))
    users = [f"u{i}" for i in range(200)]
    # Polling only every hour: nothing but the stream from B can bring A's change in time.
    with vibesdk.Client(
        server_url=b.url, sdk_key=b.sdk_key, cache_dir="", streaming=True, poll_interval_s=3600
    ) as client:

        def reaches(version: int) -> bool:
            deadline = time.monotonic() + 30
            while client.assign("vibethinker", "u1").flag_version != version:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.02)
            return True

        assert client.wait_until_ready(timeout=30)
        change = a.rollout("vibethinker", 1000, reason="canary 10%")
        assert reaches(change["version"])
        assert {client.assign("vibethinker", u).variant for u in users} == {"stable", "canary"}
        rolled = a.rollback("vibethinker", reason="p95 over 3 s")
        assert reaches(rolled["version"])
        assert {client.assign("vibethinker", u).variant for u in users} == {"stable"}


def test_concurrent_writers_on_two_replicas_cannot_overwrite_each_other(
    postgres_schema: str, flag_server_factory: Callable[..., FlagServerProcess]
) -> None:
    """Both replicas write with the same expected_version: one wins, the other gets 409."""
    a = flag_server_factory(postgres_schema)
    b = flag_server_factory(postgres_schema, admin_token=a.admin_token, sdk_key=a.sdk_key)
    a.apply(make_flag(rollout_bps=0))
    path = f"/v1/admin/environments/{a.environment}/flags/vibethinker/rollout"
    first = a.admin_request("POST", path, json={"bps": 100, "expected_version": 1})
    second = b.admin_request("POST", path, json={"bps": 200, "expected_version": 1})
    assert first.status_code == 200
    assert second.status_code == 409
    assert b.document().flags["vibethinker"].rollout_bps == 100


def test_replicas_recover_when_postgresql_drops_their_connections(
    postgres_url: str,
    postgres_schema: str,
    flag_server_factory: Callable[..., FlagServerProcess],
) -> None:
    """After every server connection is killed (restart/failover), writes work and flips reach
    the other replica's streams again (pool retry + LISTEN reconnect with catch-up)."""
    import psycopg

    # A name of our own, so only this test's servers lose their connections.
    name = f"vibe-server-{secrets.token_hex(4)}"
    db = f"{postgres_schema}&application_name={name}"
    a = flag_server_factory(db, refresh_s=3600)
    b = flag_server_factory(db, refresh_s=3600, admin_token=a.admin_token, sdk_key=a.sdk_key)
    a.apply(make_flag(rollout_bps=0))
    headers = {"Authorization": f"Bearer {b.sdk_key}"}
    with httpx.stream("GET", b.url + "/v1/stream", headers=headers, timeout=30) as response:
        events = (e for e in iter_sse(response.iter_lines()) if e.event == "flags")
        assert int(next(events).id or "") == 1
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (name,),
            ).fetchone()
        assert killed is not None
        assert killed[0] >= 2  # at least both LISTEN connections
        change = a.rollout("vibethinker", 500, reason="after the failover")
        assert change["version"] == 2
        assert int(next(events).id or "") == 2
