"""Flag delivery by polling, on both drivers: ETag/304, failures, bad and old documents, states."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest

from tests import sources_harness
from tests.sources_harness import Driver, Sleeps, fake_driver
from vibesdk import FlagDocument, FlagState
from vibesdk.testing import make_document, make_flag

# The shared fixtures: each test body runs on both drivers; drivers are closed after it.
kind = sources_harness.kind
drivers = sources_harness.drivers


def test_first_poll_applies_the_document_and_makes_it_ready(
    kind: str, drivers: list[Driver], tmp_path: Path
) -> None:
    """A 200 from /v1/flags is applied and turns NOT_READY into READY."""
    d = fake_driver(drivers, kind, tmp_path, make_document(version=3))
    d.open()
    assert d.store.state is FlagState.NOT_READY
    assert not d.wait_until_ready(0)
    d.poll_once()
    assert d.store.version == 3
    assert d.store.origin == "poll"
    assert d.store.state is FlagState.READY
    assert d.wait_until_ready(0)


def test_next_poll_sends_if_none_match_and_a_304_changes_nothing(
    kind: str, drivers: list[Driver], tmp_path: Path
) -> None:
    """The ETag of the served document goes back as If-None-Match; 304 keeps it READY."""
    d = fake_driver(drivers, kind, tmp_path, make_document(version=3))
    seen: list[FlagDocument] = []
    d.store.add_listener(seen.append)
    d.open()
    d.poll_once()
    d.poll_once()
    first, second = d.server.wait_for("/v1/flags", 2)
    assert "if-none-match" not in first.headers
    assert second.headers["if-none-match"] == '"3"'
    assert [doc.version for doc in seen] == [3]
    assert d.store.state is FlagState.READY


def test_a_newer_version_on_a_later_poll_is_applied(
    kind: str, drivers: list[Driver], tmp_path: Path
) -> None:
    """When the server publishes version 4, the next poll serves it."""
    d = fake_driver(drivers, kind, tmp_path, make_document(make_flag(rollout_bps=0), version=3))
    d.open()
    d.poll_once()
    assert d.store.evaluate("vibethinker", "u1").variant == "stable"
    d.server.document = make_document(make_flag(rollout_bps=10000), version=4)
    d.poll_once()
    assert d.store.version == 4
    assert d.store.evaluate("vibethinker", "u1").variant == "canary"


def test_an_older_version_is_never_applied(
    kind: str, drivers: list[Driver], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A server answering version 2 after 5 leaves 5 serving, READY, with one warning."""
    d = fake_driver(drivers, kind, tmp_path, make_document(version=5))
    d.open()
    d.poll_once()
    d.server.document = make_document(make_flag(rollout_bps=10000), version=2)
    with caplog.at_level(logging.WARNING, logger="vibesdk.flags"):
        d.poll_once()
        d.poll_once()
    assert d.store.version == 5
    assert d.store.state is FlagState.READY
    assert caplog.text.count("older than the served 5") == 1


def test_invalid_document_is_rejected_logged_once_and_last_good_keeps_serving(
    kind: str, drivers: list[Driver], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A document failing validation is refused with its reason, logged once, version kept."""
    d = fake_driver(drivers, kind, tmp_path, make_document(version=5))
    d.open()
    d.poll_once()
    bad = json.loads(make_document(version=6).model_dump_json())
    bad["flags"]["vibethinker"]["rollout_bps"] = 12000
    body = json.dumps(bad).encode()
    for _ in range(2):
        d.server.poll_script.append(lambda request: httpx.Response(200, content=body))
    with caplog.at_level(logging.ERROR, logger="vibesdk.flags"):
        d.poll_once()
        d.poll_once()
    assert d.store.version == 5
    rejections = [r for r in caplog.records if "rejected a document" in r.getMessage()]
    assert len(rejections) == 1
    assert "flags.vibethinker.rollout_bps" in rejections[0].getMessage()


@pytest.mark.parametrize(
    "failure",
    [
        lambda request: httpx.Response(500, json={"detail": "boom"}),
        lambda request: httpx.Response(200, content=b'{"version": '),
        lambda request: (_ for _ in ()).throw(httpx.ConnectError("refused", request=request)),
        lambda request: (_ for _ in ()).throw(httpx.ReadTimeout("slow", request=request)),
    ],
    ids=["http-500", "truncated-json", "connect-refused", "timeout"],
)
def test_three_failed_polls_turn_ready_into_stale_and_a_success_back(
    kind: str, drivers: list[Driver], tmp_path: Path, failure: object
) -> None:
    """After 3 failures in a row the served document is STALE; the next good poll is READY."""
    d = fake_driver(drivers, kind, tmp_path, make_document(version=5))
    d.open()
    d.poll_once()
    d.server.poll_script.extend([failure] * 3)  # type: ignore[list-item]
    d.poll_once()
    d.poll_once()
    assert d.store.state is FlagState.READY
    d.poll_once()
    assert d.store.state is FlagState.STALE
    assert not d.wait_until_ready(0)
    assert d.store.evaluate("vibethinker", "u1").flag_version == 5
    d.poll_once()
    assert d.store.state is FlagState.READY


def test_rejected_sdk_key_is_logged_as_an_error_naming_the_setting(
    kind: str, drivers: list[Driver], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 401 says to check sdk_key, once, and leaves the source NOT_READY."""
    d = fake_driver(drivers, kind, tmp_path, make_document(version=1))
    d.server.poll_script.extend([lambda r: httpx.Response(401, json={"detail": "unknown key"})] * 2)
    d.open()
    with caplog.at_level(logging.ERROR, logger="vibesdk.flags"):
        d.poll_once()
        d.poll_once()
    assert caplog.text.count("check sdk_key") == 1
    assert d.store.state is FlagState.NOT_READY


def test_bootstrap_serves_at_once_as_stale_until_the_server_answers(
    kind: str, drivers: list[Driver], tmp_path: Path
) -> None:
    """With a server configured, a bootstrap document is served immediately but STALE."""
    boot = tmp_path / "flags.json"
    boot.write_text(make_document(make_flag(rollout_bps=10000), version=2).model_dump_json())
    d = fake_driver(drivers, kind, tmp_path, make_document(version=3), bootstrap=boot)
    d.open()
    assert (d.store.version, d.store.origin, d.store.state) == (2, "bootstrap", FlagState.STALE)
    assert d.store.evaluate("vibethinker", "u1").variant == "canary"
    assert not d.wait_until_ready(0)
    d.poll_once()
    assert (d.store.version, d.store.state) == (3, FlagState.READY)
    assert "if-none-match" not in d.server.requests[0].headers


def test_bootstrap_without_server_is_offline_and_ready(
    kind: str, drivers: list[Driver], tmp_path: Path
) -> None:
    """No server_url: the bootstrap document is served OFFLINE, ready, and nothing is fetched."""
    boot = tmp_path / "flags.json"
    boot.write_text(make_document(version=9).model_dump_json())
    d = fake_driver(drivers, kind, tmp_path, bootstrap=boot, server_url=None, sdk_key=None)
    d.start()
    assert d.store.state is FlagState.OFFLINE
    assert d.wait_until_ready(0)
    assert d.store.version == 9
    assert d.server.requests == []


def test_server_document_is_cached_and_a_restart_serves_it_then_revalidates(
    kind: str, drivers: list[Driver], tmp_path: Path
) -> None:
    """A fetched document is written to disk; the next process serves it and gets a 304."""
    first = fake_driver(drivers, kind, tmp_path, make_document(version=7))
    first.open()
    first.poll_once()
    second = fake_driver(drivers, kind, tmp_path, make_document(version=7))
    second.open()
    assert (second.store.version, second.store.origin) == (7, "cache")
    assert second.store.state is FlagState.STALE
    second.poll_once()
    (request,) = second.server.wait_for("/v1/flags", 1)
    assert request.headers["if-none-match"] == '"7"'
    assert second.store.state is FlagState.READY


def test_newest_of_bootstrap_and_cache_wins(
    kind: str, drivers: list[Driver], tmp_path: Path
) -> None:
    """A cache newer than the bootstrap file is served; an older one is not."""
    seed = fake_driver(drivers, kind, tmp_path, make_document(version=5))
    seed.open()
    seed.poll_once()
    for boot_version, expected in [(4, (5, "cache")), (6, (6, "bootstrap"))]:
        boot = tmp_path / f"boot-{boot_version}.json"
        boot.write_text(make_document(version=boot_version).model_dump_json())
        d = fake_driver(drivers, kind, tmp_path, bootstrap=boot)
        d.open()
        assert (d.store.version, d.store.origin) == expected


def test_corrupt_cache_is_ignored_and_replaced(
    kind: str, drivers: list[Driver], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A corrupt cache file is logged and skipped; the next good document overwrites it."""
    seed = fake_driver(drivers, kind, tmp_path, make_document(version=5))
    seed.open()
    seed.poll_once()
    cache_file = next((tmp_path / "cache").glob("*.json"))
    cache_file.write_bytes(cache_file.read_bytes()[:40])
    with caplog.at_level(logging.WARNING, logger="vibesdk.flags"):
        d = fake_driver(drivers, kind, tmp_path, make_document(version=6))
        d.open()
    assert d.store.state is FlagState.NOT_READY
    assert "ignoring cache file" in caplog.text
    d.poll_once()
    assert json.loads(cache_file.read_bytes())["document"]["version"] == 6


def test_server_environment_replaces_a_bootstrap_of_another_environment(
    kind: str, drivers: list[Driver], tmp_path: Path
) -> None:
    """The SDK key decides the environment: the server's doc replaces a local one of another."""
    boot = tmp_path / "staging.json"
    boot.write_text(make_document(version=50, environment="staging").model_dump_json())
    d = fake_driver(
        drivers, kind, tmp_path, make_document(version=3, environment="prod"), bootstrap=boot
    )
    d.open()
    d.poll_once()
    document = d.store.document
    assert document is not None
    assert (document.environment, document.version) == ("prod", 3)
    assert d.store.state is FlagState.READY


def test_background_polling_repeats_with_jittered_interval(
    kind: str, drivers: list[Driver], tmp_path: Path
) -> None:
    """start() polls at once, then every poll_interval_s ± 10%, in a loop vibesdk-flags-poll."""
    d = fake_driver(
        drivers, kind, tmp_path, make_document(version=1), Sleeps({"vibesdk-flags-poll": 3})
    )
    d.start()
    d.server.wait_for("/v1/flags", 4)
    assert d.wait_until_ready(10)
    d.close()
    delays = d.sleeps.delays("vibesdk-flags-poll")
    assert len(delays) >= 4
    assert all(27.0 <= s <= 33.0 for s in delays)
    assert len(set(delays)) > 1


def test_server_content_replaces_a_bootstrap_of_the_same_version(
    kind: str, drivers: list[Driver], tmp_path: Path
) -> None:
    """A bootstrap edited by hand without a new version yields to the server's version N."""
    boot = tmp_path / "flags.json"
    boot.write_text(make_document(make_flag(rollout_bps=10000), version=4).model_dump_json())
    server_doc = make_document(make_flag(rollout_bps=0), version=4)
    d = fake_driver(drivers, kind, tmp_path, server_doc, bootstrap=boot)
    d.open()
    assert d.store.evaluate("vibethinker", "u1").variant == "canary"
    d.poll_once()
    assert (d.store.version, d.store.origin) == (4, "poll")
    assert d.store.evaluate("vibethinker", "u1").variant == "stable"
    d.poll_once()
    assert d.server.requests[-1].headers["if-none-match"] == '"4"'


def test_a_bug_in_one_round_does_not_end_the_poll_loop(
    kind: str, drivers: list[Driver], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception while handling a poll is logged and the next round still runs."""
    d = fake_driver(
        drivers, kind, tmp_path, make_document(version=1), Sleeps({"vibesdk-flags-poll": 1})
    )
    real = d.source.core.on_poll_response
    calls: list[int] = []

    def flaky(*args: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("bug")
        return real(*args)

    monkeypatch.setattr(d.source.core, "on_poll_response", flaky)
    d.start()
    assert d.wait_until_ready(20)
    assert len(calls) == 2
