"""An acknowledged change survives kill -9 and a restart (real processes, real SIGKILL)."""

from __future__ import annotations

from collections.abc import Callable

from vibesdk_server.testing import FlagServerProcess

from vibesdk.testing import make_flag


def test_acknowledged_changes_survive_kill_9(
    db_url: str, flag_server_factory: Callable[..., FlagServerProcess]
) -> None:
    """Every write the API answered 200 is there after SIGKILL + restart, versions intact."""
    server = flag_server_factory(db_url)
    server.apply(make_flag(rollout_bps=0))
    last = {}
    for bps in (1, 10, 100, 1000, 2500):
        last = server.rollout("vibethinker", bps, reason=f"step {bps}")
    server.kill()  # SIGKILL right after the last acknowledgement: no shutdown code runs
    server.start()
    doc = server.document()
    assert doc.version == last["version"]
    assert doc.flags["vibethinker"].rollout_bps == 2500
    audit = server.admin_request(
        "GET", "/v1/admin/audit", params={"environment": server.environment}
    ).json()
    assert audit[0]["reason"] == "step 2500"


def test_a_restarted_server_keeps_tokens_prompts_and_history(
    db_url: str, flag_server_factory: Callable[..., FlagServerProcess]
) -> None:
    """After a clean restart the same tokens work and history/prompt review state are kept."""
    server = flag_server_factory(db_url)
    server.apply(make_flag(rollout_bps=0))
    server.mark_good()
    server.restart()
    env = server.admin_request("GET", f"/v1/admin/environments/{server.environment}").json()
    assert env["good_version"] == 1
    prompts = server.admin_request("GET", "/v1/admin/prompts").json()
    assert [p["state"] for p in prompts] == ["approved"]
    assert server.document().version == 1
