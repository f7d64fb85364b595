"""vibesdk.openfeature.VibeProvider through the real OpenFeature SDK, against the real flag server.

Each test names the provider requirements of the OpenFeature specification it checks. The
numbers are those of specification v0.8.0, which openfeature-sdk 0.10 implements (section 2:
providers, section 5: events); tracking (Condition 2.7.1, section 6) came in the next release.
The model backends are FakeBackend's loopback servers.
"""

from __future__ import annotations

import gc
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("vibesdk_server")
pytest.importorskip("openfeature")

from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode, ProviderNotReadyError
from openfeature.flag_evaluation import Reason
from openfeature.provider import ProviderStatus
from openfeature.track import TrackingEventDetails

import vibesdk
from vibesdk.openfeature import VibeProvider
from vibesdk.testing import FakeBackend, make_flag

ASK = [{"role": "user", "content": "2+2?"}]
STAFF_RULE = {
    "id": "staff",
    "clauses": [{"attribute": "plan", "op": "equals", "values": ["staff"]}],
    "variant": "canary",
}


def ctx(user: str | None, **attributes: Any) -> EvaluationContext:
    return EvaluationContext(targeting_key=user, attributes=attributes)


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0) -> None:
    # Documents and states reach the provider from the flag source's threads: bounded wait.
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


class Events:
    """Every event of a vibesdk provider the OpenFeature API hands to its handlers, in order.

    (A READY handler added while the no-op default provider is registered runs at once, for
    that provider: those are left out.)
    """

    def __init__(self) -> None:
        self.seen: list[tuple[ProviderEvent, EventDetails]] = []
        self._lock = threading.Lock()
        for event in ProviderEvent:
            api.add_handler(event, lambda details, event=event: self._add(event, details))

    def _add(self, event: ProviderEvent, details: EventDetails) -> None:
        if details.provider_name != "vibesdk":
            return
        with self._lock:
            self.seen.append((event, details))

    def kinds(self) -> list[ProviderEvent]:
        with self._lock:
            return [event for event, _ in self.seen]

    def wait(self, *kinds: ProviderEvent) -> None:
        """Until exactly ``kinds`` were seen (handlers run on the SDK's thread pool)."""
        wait_for(lambda: len(self.kinds()) >= len(kinds))
        time.sleep(0.2)  # and nothing more arrives
        assert self.kinds() == list(kinds)


@pytest.fixture
def openfeature() -> Iterator[Events]:
    """A clean OpenFeature API; shut down (providers, handlers, context) afterwards."""
    api.shutdown()
    events = Events()
    yield events
    api.shutdown()


def register(provider: VibeProvider) -> OpenFeatureClient:
    api.set_provider_and_wait(provider)
    return api.get_client()


def test_string_boolean_and_object_resolve_the_users_variant(
    flag_server: Any, openfeature: Events
) -> None:
    """Requirements 2.1.1, 2.2.1, 2.2.2.1, 2.2.3, 2.2.4, 2.2.6, 2.2.9, 2.2.10 and 2.3.2: the
    variant (string), being in the canary (boolean) and the variant's public configuration
    (object) are those of client.assign, without error code or message, with the document
    version in the flag metadata."""
    flag_server.apply(make_flag(canary_url="http://user:secret@10.0.0.9:8080/v1", rollout_bps=5000))
    document = flag_server.document()
    version = document.version
    # The server numbers prompt versions itself (its registry is shared by every test).
    prompt = document.flags["vibethinker"].variants["canary"].prompt
    assert prompt is not None
    provider = VibeProvider(server_url=flag_server.url, sdk_key=flag_server.sdk_key, cache_dir="")
    flags = register(provider)
    assert flags.get_metadata().domain is None
    assert provider.get_metadata().name == "vibesdk"
    seen = set()
    for n in range(40):
        user = f"user-{n}"
        expected = provider.client.assign("vibethinker", user)
        details = flags.get_string_details("vibethinker", "fallback", ctx(user))
        assert (details.value, details.variant) == (expected.variant, expected.variant)
        assert (details.error_code, details.error_message) == (None, None)
        assert details.flag_metadata == {
            "version": version,
            "salt": "vibethinker",
            "rollout_bps": 5000,
            "rollout_variant": "canary",
            "default_variant": "stable",
            "bucket": expected.bucket,
        }
        in_canary = flags.get_boolean_details("vibethinker", False, ctx(user))
        assert in_canary.value is (expected.variant == "canary")
        assert in_canary.variant == expected.variant
        config = flags.get_object_value("vibethinker", {}, ctx(user))
        seen.add(expected.variant)
        if expected.variant == "canary":
            assert config == {
                "variant": "canary",
                "model": "vibethinker-1.5b",
                "provider": "llama.cpp",
                "params": {"temperature": 0.6, "top_p": 0.95, "top_k": 64, "max_tokens": 64},
                "notice": "You are trying the new assistant.",
                "prompt": prompt.ref,
            }
            assert prompt.ref.startswith("vibethinker-competition@")
            assert "secret" not in repr(config)
        else:
            assert config == {
                "variant": "stable",
                "model": "stable-model",
                "provider": "llama.cpp",
                "params": {"temperature": 0.0, "max_tokens": 64},
            }
    assert seen == {"stable", "canary"}


def test_reasons_follow_the_assignment(flag_server: Any, openfeature: Events) -> None:
    """Requirement 2.2.5: TARGETING_MATCH for a rule (the rule id in the metadata), SPLIT for
    the percentage, DEFAULT when nothing is rolled out, DISABLED for the kill switch; a rule
    that serves the rollout variant puts the user in the canary too."""
    beta = {**STAFF_RULE, "id": "beta", "variant": "beta"}
    beta["clauses"] = [{"attribute": "plan", "op": "equals", "values": ["beta"]}]
    data = make_flag(rollout_bps=5000).model_dump()
    data["variants"]["beta"] = data["variants"]["canary"]
    flag_server.apply(vibesdk.Flag.model_validate({**data, "rules": [STAFF_RULE, beta]}))
    provider = VibeProvider(server_url=flag_server.url, sdk_key=flag_server.sdk_key, cache_dir="")
    flags = register(provider)

    staff = flags.get_boolean_details("vibethinker", False, ctx("u1", plan="staff"))
    assert (staff.value, staff.reason, staff.flag_metadata["rule"]) == (
        True, Reason.TARGETING_MATCH, "staff",
    )  # fmt: skip
    assert flags.get_string_details("vibethinker", "x", ctx("u1")).reason == Reason.SPLIT
    other = flags.get_boolean_details("vibethinker", True, ctx("u1", plan="beta"))
    assert (other.value, other.variant, other.reason) == (False, "beta", Reason.TARGETING_MATCH)

    flag_server.rollout("vibethinker", 0)
    wait_for(lambda: provider.client.assign("vibethinker", "u1").flag_version == 2)
    everyone_stable = flags.get_string_details("vibethinker", "x", ctx("u1"))
    assert (everyone_stable.value, everyone_stable.reason) == ("stable", Reason.DEFAULT)

    flag_server.set_enabled("vibethinker", False)
    wait_for(lambda: provider.client.assign("vibethinker", "u1").flag_version == 3)
    killed = flags.get_boolean_details("vibethinker", True, ctx("u1", plan="staff"))
    assert (killed.value, killed.variant, killed.reason) == (False, "stable", Reason.DISABLED)


def test_errors_come_back_as_error_codes_with_the_default(
    flag_server: Any, openfeature: Events
) -> None:
    """Requirements 2.2.7 and 2.3.3: an unknown flag is FLAG_NOT_FOUND, a context without a
    targeting key TARGETING_KEY_MISSING, an integer or float evaluation TYPE_MISMATCH; each
    with the caller's default, reason ERROR and a message that says what is wrong."""
    flag_server.apply(make_flag(rollout_bps=10_000))
    version = flag_server.document().version
    provider = VibeProvider(server_url=flag_server.url, sdk_key=flag_server.sdk_key, cache_dir="")
    flags = register(provider)

    missing = flags.get_string_details("no-such-flag", "dflt", ctx("u1"))
    assert (missing.value, missing.error_code, missing.reason) == (
        "dflt", ErrorCode.FLAG_NOT_FOUND, Reason.ERROR,
    )  # fmt: skip
    assert (
        missing.error_message
        == f"flag 'no-such-flag' is not in version {version} of the flag document"
    )
    assert missing.flag_metadata == {"version": version}

    for no_key in (None, ctx(None), ctx("", plan="pro")):
        anonymous = flags.get_boolean_details("vibethinker", False, no_key)
        assert (anonymous.value, anonymous.error_code) == (
            False, ErrorCode.TARGETING_KEY_MISSING,
        )  # fmt: skip
        assert "targeting_key" in (anonymous.error_message or "")

    # The SDK's context merge turns "" into None; the provider refuses "" itself too.
    empty = provider.resolve_string_details("vibethinker", "dflt", ctx(""))
    assert (empty.value, empty.error_code) == ("dflt", ErrorCode.TARGETING_KEY_MISSING)

    number = flags.get_integer_details("vibethinker", 7, ctx("u1"))
    real = flags.get_float_details("vibethinker", 0.5, ctx("u1"))
    assert (number.value, number.error_code) == (7, ErrorCode.TYPE_MISMATCH)
    assert (real.value, real.error_code) == (0.5, ErrorCode.TYPE_MISMATCH)
    assert "not as an integer" in (number.error_message or "")
    assert "not as a float" in (real.error_message or "")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_error_then_ready_then_stale_then_ready_follow_the_flag_server(
    flag_server_factory: Any, openfeature: Events
) -> None:
    """Requirements 2.4.2.1, 5.1.1, 5.1.4, 5.1.5 and 5.3.5: initialize fails (PROVIDER_ERROR,
    error code PROVIDER_NOT_READY, status ERROR) while the flag server is down and evaluation
    answers PROVIDER_NOT_READY; the first document emits PROVIDER_READY; the server going
    away emits PROVIDER_STALE (the last document still answers); its return PROVIDER_READY."""
    port = _free_port()
    server = flag_server_factory(extra_args=["--port", str(port)])  # the last --port wins
    server.apply(make_flag(rollout_bps=10_000))
    server.stop()

    provider = VibeProvider(
        server_url=server.url,
        sdk_key=server.sdk_key,
        cache_dir="",
        poll_interval_s=0.1,
        streaming=False,
        fetch_timeout_s=1.0,
        ready_timeout_s=0.5,
    )
    with pytest.raises(ProviderNotReadyError, match=r"no flag document after 0\.5 s"):
        api.set_provider_and_wait(provider)
    flags = api.get_client()
    assert flags.get_provider_status() == ProviderStatus.ERROR
    openfeature.wait(ProviderEvent.PROVIDER_ERROR)
    (event, details), *_ = openfeature.seen
    assert (event, details.error_code) == (
        ProviderEvent.PROVIDER_ERROR, ErrorCode.PROVIDER_NOT_READY,
    )  # fmt: skip
    assert "no flag document" in (details.message or "")
    early = flags.get_string_details("vibethinker", "dflt", ctx("u1"))
    assert (early.value, early.error_code) == ("dflt", ErrorCode.PROVIDER_NOT_READY)

    server.start()
    wait_for(lambda: flags.get_provider_status() == ProviderStatus.READY)
    openfeature.wait(ProviderEvent.PROVIDER_ERROR, ProviderEvent.PROVIDER_READY)
    assert flags.get_boolean_value("vibethinker", False, ctx("u1")) is True

    server.stop()
    wait_for(lambda: flags.get_provider_status() == ProviderStatus.STALE)
    openfeature.wait(
        ProviderEvent.PROVIDER_ERROR, ProviderEvent.PROVIDER_READY, ProviderEvent.PROVIDER_STALE
    )
    assert flags.get_boolean_value("vibethinker", False, ctx("u1")) is True

    server.start()
    wait_for(lambda: flags.get_provider_status() == ProviderStatus.READY)
    openfeature.wait(
        ProviderEvent.PROVIDER_ERROR,
        ProviderEvent.PROVIDER_READY,
        ProviderEvent.PROVIDER_STALE,
        ProviderEvent.PROVIDER_READY,
    )


def test_a_new_document_version_emits_configuration_changed(
    flag_server: Any, openfeature: Events
) -> None:
    """Requirements 5.1.1 and 5.1.2: initialize ends READY once the document is served; a
    new version emits PROVIDER_CONFIGURATION_CHANGED naming the changed flags and the
    version, and the next evaluation sees it."""
    flag_server.apply(make_flag(rollout_bps=0))
    flag_server.apply(make_flag("other", rollout_bps=0))
    flags = register(
        VibeProvider(server_url=flag_server.url, sdk_key=flag_server.sdk_key, cache_dir="")
    )
    assert flags.get_provider_status() == ProviderStatus.READY
    openfeature.wait(ProviderEvent.PROVIDER_READY)
    assert flags.get_boolean_value("vibethinker", True, ctx("u1")) is False

    flag_server.rollout("vibethinker", 10_000)
    version = flag_server.document().version
    openfeature.wait(ProviderEvent.PROVIDER_READY, ProviderEvent.PROVIDER_CONFIGURATION_CHANGED)
    event, details = openfeature.seen[-1]
    assert event == ProviderEvent.PROVIDER_CONFIGURATION_CHANGED
    assert (details.flags_changed, details.metadata) == (["vibethinker"], {"version": version})
    assert details.provider_name == "vibesdk"
    assert flags.get_boolean_value("vibethinker", False, ctx("u1")) is True


def test_track_sends_feedback_and_reports_to_the_flag_server(
    flag_server: Any, openfeature: Events
) -> None:
    """Condition 2.7.1 and Requirement 6.2.1: track('feedback') with the answer's trace_id
    and the score as value, and track('report'), reach the flag server through the client;
    other event names are ignored and a feedback event without trace_id is refused clearly."""
    with FakeBackend(default="stable answer") as stable, FakeBackend(default="new") as canary:
        flag_server.apply(
            make_flag(stable_url=stable.url, canary_url=canary.url, rollout_bps=10_000)
        )
        provider = VibeProvider(
            server_url=flag_server.url, sdk_key=flag_server.sdk_key, cache_dir=""
        )
        flags = register(provider)
        answer = provider.client.chat("vibethinker", "u42", ASK)
        user = ctx("u42")
        flags.track(
            "feedback",
            user,
            TrackingEventDetails(value=4.0, attributes={"trace_id": answer.trace_id}).add(
                "comment", "good"
            ),
        )
        flags.track(
            "report",
            user,
            TrackingEventDetails(attributes={"trace_id": answer.trace_id, "reason": "rude"}),
        )
        flags.track("checkout", user, TrackingEventDetails(value=3.0))  # not vibesdk's
        with pytest.raises(vibesdk.InvalidArgumentError, match="needs the attribute trace_id"):
            flags.track("feedback", user, TrackingEventDetails(value=5.0))
        with pytest.raises(vibesdk.InvalidArgumentError, match="score"):
            flags.track(
                "feedback", user, TrackingEventDetails(attributes={"trace_id": answer.trace_id})
            )
        api.shutdown()  # closes the provider's own client, which sends what is queued
    env = {"environment": flag_server.environment}
    stored = flag_server.admin_request("GET", "/v1/admin/feedback", params=env).json()
    assert [(f["trace_id"], f["score"], f["comment"], f["variant"]) for f in stored] == [
        (answer.trace_id, 4, "good", "canary")
    ]
    reported = flag_server.admin_request("GET", "/v1/admin/reports", params=env).json()
    assert [(r["trace_id"], r["reason"]) for r in reported] == [(answer.trace_id, "rude")]


def test_shutdown_closes_only_a_client_the_provider_built(
    flag_server: Any, openfeature: Events, stable: FakeBackend
) -> None:
    """Requirements 2.5.1 and 2.5.2: shutdown closes the client the provider built (and a
    later initialize builds another), leaves a client passed in open, and stops events."""
    flag_server.apply(make_flag(stable_url=stable.url, rollout_bps=0))
    built = VibeProvider(server_url=flag_server.url, sdk_key=flag_server.sdk_key, cache_dir="")
    first = built.client
    register(built)
    api.shutdown()
    with pytest.raises(vibesdk.ClientClosedError):
        first.chat("vibethinker", "u1", ASK)
    built.shutdown()  # idempotent

    with vibesdk.Client(
        server_url=flag_server.url, sdk_key=flag_server.sdk_key, cache_dir=""
    ) as shared:
        events = Events()
        provider = VibeProvider(shared)
        register(provider)
        events.wait(ProviderEvent.PROVIDER_READY)
        provider.shutdown()  # still registered: any event it emitted would reach the handlers
        assert shared.chat("vibethinker", "u1", ASK).text == "stable answer"
        flag_server.rollout("vibethinker", 10_000)
        wait_for(lambda: shared.assign("vibethinker", "u1").variant == "canary")
        events.wait(ProviderEvent.PROVIDER_READY)  # no CONFIGURATION_CHANGED after shutdown
        api.shutdown()
        gone = weakref.ref(provider)
        del provider
        gc.collect()
        assert gone() is None  # the client's flag store no longer holds it
        assert shared.chat("vibethinker", "u1", ASK).text == "stable answer"  # still open

    flags = register(built)  # initialize again: a new client of its own
    assert built.client is not first
    assert flags.get_boolean_value("vibethinker", False, ctx("u1")) is True


def test_bad_arguments_are_refused_at_construction(flag_server: Any) -> None:
    """Bad provider arguments raise vibesdk.ConfigError at once, each saying what to fix."""
    with (
        vibesdk.Client(server_url=flag_server.url, sdk_key=flag_server.sdk_key, cache_dir="") as c,
        pytest.raises(vibesdk.ConfigError, match=r"client= or the arguments.*sdk_key"),
    ):
        VibeProvider(c, sdk_key="x")
    with pytest.raises(vibesdk.ConfigError, match=r"client must be a vibesdk\.Client"):
        VibeProvider("http://127.0.0.1:9")  # type: ignore[arg-type]
    with pytest.raises(vibesdk.ConfigError, match="ready_timeout_s must be a number"):
        VibeProvider(server_url=flag_server.url, sdk_key="x", ready_timeout_s=-1)
