"""POST /v1/otlp/v1/metrics on the real flag server (SQLite and PostgreSQL), real OTel exporter.

Instruments named and attributed as vibesdk's telemetry reference documents them record into a
MeterProvider whose reader exports with ``opentelemetry-exporter-otlp-proto-http`` (protobuf,
gzip) to the server with an SDK key; the admin API's per-variant figures must add up to what
was recorded.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from vibesdk_server._guard.release import evaluate
from vibesdk_server.testing import FlagServer

DELTA = {Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA}
FLAG = "vibethinker"


def _provider(server: FlagServer, *, delta: bool = True, key: str | None = None) -> MeterProvider:
    exporter = OTLPMetricExporter(
        endpoint=server.url + "/v1/otlp/v1/metrics",
        headers={"Authorization": f"Bearer {key or server.sdk_key}"},
        compression=Compression.Gzip,
        preferred_temporality=DELTA if delta else {},
    )
    # A long interval: the test exports with force_flush(), when it chooses.
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    return MeterProvider(metric_readers=[reader])


@pytest.fixture
def provider(server: FlagServer) -> Iterator[MeterProvider]:
    mp = _provider(server)
    yield mp
    mp.shutdown()


# A release at its 10% step, started at time 0, that may advance on 100 calls per arm.
TEN_PERCENT = {
    "canary_variant": "canary",
    "stable_variant": "stable",
    "steps": [1000, 10_000],
    "step": 0,
    "step_started_s": 0.0,
    "min_dwell_s": 0.0,
    "min_samples": 100,
}


def _measured(server: FlagServer, **params: Any) -> dict[str, Any]:
    response = server.admin_request(
        "GET",
        f"/v1/admin/environments/{server.environment}/measurements",
        params={"flag": FLAG, **params},
    )
    assert response.status_code == 200, response.text
    variants: dict[str, Any] = response.json()["variants"]
    return variants


def _otlp_stats(server: FlagServer) -> dict[str, int]:
    stats: dict[str, int] = server.admin_request("GET", "/v1/admin/stats").json()["otlp"]
    return stats


class Recorder:
    """vibesdk's instruments as docs/concepts/telemetry.md names them, on ``provider``."""

    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter("vibesdk")
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            explicit_bucket_boundaries_advisory=[0.5, 1.0, 2.0, 3.0, 5.12, 10.24],
        )
        self.tokens = meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
        self.fallbacks = meter.create_counter("vibesdk.fallbacks")
        self.failures = meter.create_counter("vibesdk.quality.failures")
        self.feedback = meter.create_histogram("vibesdk.feedback.score")
        self.reports = meter.create_counter("vibesdk.reports")
        self.rejected = meter.create_counter("vibesdk.flags.rejected")
        self.exposures = meter.create_counter("vibesdk.exposures", unit="{user}")

    def call(self, variant: str, seconds: float, **extra: Any) -> None:
        self.duration.record(seconds, {**_cohort(variant), **extra})


def _cohort(variant: str) -> dict[str, Any]:
    return {
        "feature_flag.key": FLAG,
        "feature_flag.result.variant": variant,
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "m",
    }


def _record(r: Recorder) -> None:
    """Canary: 6 calls (one slow, one fell back, one failed, one answered by a retry after a
    failed attempt), stable: 3 quick ones."""
    for seconds in (0.5, 0.7, 4.2):
        r.call("canary", seconds)
    r.call("canary", 1.0, **{"vibesdk.fallback": True})
    r.call("canary", 2.0, **{"error.type": "all_failed"})
    r.call("canary", 0.6, **{"vibesdk.attempt.failed": True})
    for seconds in (0.2, 0.3, 0.4):
        r.call("stable", seconds)
    r.fallbacks.add(1, {**_cohort("canary"), "vibesdk.fallback.reason": "timeout_connect"})
    for check in ("empty", "loop", "empty"):
        r.failures.add(1, {**_cohort("canary"), "vibesdk.quality.check": check})
    r.tokens.record(40, {**_cohort("stable"), "gen_ai.token.type": "output"})
    r.tokens.record(10, {**_cohort("stable"), "gen_ai.token.type": "input"})
    r.feedback.record(2, _cohort("canary"))
    r.feedback.record(4, _cohort("canary"))
    r.reports.add(1, _cohort("canary"))
    r.rejected.add(1, {"vibesdk.flags.origin": "poll"})  # no flag: ignored, not refused


def test_sdk_metrics_exported_over_otlp_add_up_per_variant(
    server: FlagServer, provider: MeterProvider
) -> None:
    """What vibesdk's instruments recorded is what the server reports per variant."""
    before = _otlp_stats(server)
    _record(Recorder(provider))
    assert provider.force_flush(10_000)
    measured = _measured(server)
    canary, stable = measured["canary"], measured["stable"]
    assert (canary["calls"], stable["calls"]) == (6, 3)
    assert canary["slow_calls"] == 1  # 4.2 s: over the 3 s bucket bound
    assert stable["slow_calls"] == 0
    assert canary["errors"] == {"all_failed": 1}
    assert canary["fallbacks"] == {"timeout_connect": 1}
    assert canary["quality_failures"] == {"empty": 2, "loop": 1}
    tokens = stable["output_tokens"]
    assert (tokens["count"], tokens["sum"], sum(tokens["histogram"]["counts"])) == (1, 40.0, 1)
    # The call that raised, the one that fell back and the one a retry answered.
    assert canary["failed_attempts"] == 3
    assert canary["feedback"] == {"count": 2, "sum": 6.0}
    assert canary["reports"] == 1
    assert canary["latency_sum_s"] == pytest.approx(9.0)
    assert sum(canary["duration_histogram"]["counts"]) == 6
    assert 3.0 in canary["duration_histogram"]["bounds"]

    # A second export adds to the first (delta temporality), it does not replace it.
    Recorder(provider).call("stable", 5.0)
    assert provider.force_flush(10_000)
    stable = _measured(server)["stable"]
    assert (stable["calls"], stable["slow_calls"]) == (4, 1)
    after = _otlp_stats(server)
    assert after["requests"] - before["requests"] == 2
    assert after["points_stored"] > before["points_stored"]
    assert after["points_refused"] == before["points_refused"]


def test_users_counted_by_sdks_reach_the_store_and_the_sample_ratio_test(
    server: FlagServer, provider: MeterProvider
) -> None:
    """A 10% step where 10 canary users make 300 calls and 90 stable users 900: the calls'
    split (25%) is far off, the users' (10%) is not. The exposures exported over OTLP are the
    arms' users, and the guard's decision tests the users: no sample-ratio hold. Without them
    (figures from SDKs too old to count users) it tests the calls, and holds."""
    r = Recorder(provider)
    for variant, users, calls in (("canary", 10, 300), ("stable", 90, 900)):
        r.exposures.add(users, _cohort(variant))
        for _ in range(calls):
            r.call(variant, 0.3)
    assert provider.force_flush(10_000)
    measured = _measured(server)
    assert {v: (f["users"], f["calls"]) for v, f in measured.items()} == {
        "canary": (10, 300),
        "stable": (90, 900),
    }
    decision = evaluate(TEN_PERCENT, measured, now=60.0).to_dict()
    srm = decision["srm"]
    assert (srm["unit"], srm["canary_users"], srm["stable_users"]) == ("users", 10, 90)
    assert (srm["canary_calls"], srm["stable_calls"]) == (300, 900)
    assert srm["p_value"] == pytest.approx(1.0)
    assert decision["action"] == "advance", decision["reasons"]

    old_sdks = {v: {**f, "users": 0} for v, f in measured.items()}
    held = evaluate(TEN_PERCENT, old_sdks, now=60.0)
    assert (held.srm.unit, held.srm.canary_users) == ("calls", None)
    assert [r.code for r in held.reasons] == ["srm"]
    assert "300 canary / 900 stable calls" in held.reasons[0].message


def test_users_met_by_several_workers_are_tested_per_worker(
    server: FlagServer, provider: MeterProvider
) -> None:
    """Four workers behind round-robin routing each met the same 2,000 users, 230 on the
    canary in a 10% step (p 0.025: no mismatch). Each worker's exposures carry its
    ``vibesdk.client.id``; the store keeps them per client, and the sample-ratio test reads one
    worker's users: no hold. Summed (920 / 7,080) the chi-square is four times too large and
    would hold the step."""
    r = Recorder(provider)
    for worker in ("w1", "w2", "w3", "w4"):
        for variant, users in (("canary", 230), ("stable", 1_770)):
            r.exposures.add(users, {**_cohort(variant), "vibesdk.client.id": worker})
    for variant, calls in (("canary", 150), ("stable", 1_350)):
        for _ in range(calls):
            r.call(variant, 0.3)
    assert provider.force_flush(10_000)
    measured = _measured(server)
    assert measured["canary"]["users"] == 920
    assert measured["canary"]["users_by_client"] == dict.fromkeys(("w1", "w2", "w3", "w4"), 230)
    assert measured["stable"]["users_by_client"] == dict.fromkeys(("w1", "w2", "w3", "w4"), 1770)
    decision = evaluate(TEN_PERCENT, measured, now=60.0)
    assert (decision.srm.canary_users, decision.srm.stable_users) == (230, 1_770)
    assert decision.srm.clients == 4
    assert decision.action == "advance", decision.reasons
    summed = {v: {**f, "users_by_client": {}} for v, f in measured.items()}
    assert [r.code for r in evaluate(TEN_PERCENT, summed, now=60.0).reasons] == ["srm"]


def test_a_steps_users_are_read_by_its_id_from_its_first_second(
    server: FlagServer, provider: MeterProvider
) -> None:
    """Users are counted under their step's id (``vibesdk.step``) and read by it: those a step
    met in its first seconds count, though their interval began before the step (whose calls
    are left out: they may be the step before's), and users counted in the step before do
    not, though they share that interval."""
    old, new = "0123456789abcdef", "fedcba9876543210"
    r = Recorder(provider)
    for step, canary, stable in ((old, 10, 990), (new, 400, 600)):
        for variant, users in (("canary", canary), ("stable", stable)):
            tags = {"vibesdk.client.id": "w1", "vibesdk.step": step}
            r.exposures.add(users, {**_cohort(variant), **tags})
    for _ in range(30):
        r.call("canary", 0.3)
    assert provider.force_flush(10_000)
    everything = _measured(server)
    assert (everything["canary"]["users"], everything["canary"]["calls"]) == (410, 30)
    # The step began a second into the interval that holds all of these points.
    began = dt.datetime.fromtimestamp(everything["canary"]["first_interval"] + 1, dt.timezone.utc)
    in_step = _measured(server, since=began.isoformat(), step=new)
    assert {v: (f["users"], f["users_by_client"], f["calls"]) for v, f in in_step.items()} == {
        "canary": (400, {"w1": 400}, 0),
        "stable": (600, {"w1": 600}, 0),
    }
    assert _measured(server, since=began.isoformat()) == {}  # without a step: none of them
    bad = server.admin_request(
        "GET",
        f"/v1/admin/environments/{server.environment}/measurements",
        params={"flag": FLAG, "step": "10%"},
    )
    assert bad.status_code == 422, bad.text
    assert "step" in bad.text


def test_the_environment_is_the_keys_and_cumulative_points_are_refused(
    server: FlagServer,
) -> None:
    """Another environment's key stores there; a cumulative export is refused, nothing stored."""
    other = server.new_environment()
    mp = _provider(server, key=other.sdk_key)
    try:
        Recorder(mp).call("canary", 1.0)
        assert mp.force_flush(10_000)
    finally:
        mp.shutdown()
    assert _measured(server) == {}
    assert _measured(other)["canary"]["calls"] == 1

    before = _otlp_stats(server)
    cumulative = _provider(server, delta=False)
    try:
        Recorder(cumulative).call("canary", 1.0)
        # The exporter logs the partial success; the export itself succeeds.
        assert cumulative.force_flush(10_000)
    finally:
        cumulative.shutdown()
    assert _measured(server) == {}
    after = _otlp_stats(server)
    assert after["points_refused"] > before["points_refused"]


def _post(server: FlagServer, body: bytes, **headers: str) -> httpx.Response:
    return server.sdk_request(
        "POST",
        "/v1/otlp/v1/metrics",
        content=body,
        headers={"content-type": "application/x-protobuf", **headers},
    )


def test_unreadable_bodies_get_the_otlp_error_answer_and_store_nothing(
    server: FlagServer,
) -> None:
    """Not protobuf, not JSON, bad gzip, oversized, wrong content type: 4xx with a Status."""
    before = _otlp_stats(server)
    bad = _post(server, b"\xff\x00 not a protobuf message")
    assert bad.status_code == 400
    assert bad.headers["content-type"] == "application/x-protobuf"
    status = Status()
    status.ParseFromString(bad.content)
    assert "not an OTLP metrics export" in status.message

    as_json = _post(server, b"{not json", **{"content-type": "application/json"})
    assert as_json.status_code == 400
    assert "not an OTLP metrics export" in json.loads(as_json.text)["message"]

    zipped = _post(server, b"not gzip", **{"content-encoding": "gzip"})
    assert zipped.status_code == 400
    assert "not valid gzip" in zipped.text

    bomb = gzip.compress(b"\x00" * (17 * 1024 * 1024))
    assert _post(server, bomb, **{"content-encoding": "gzip"}).status_code == 413
    assert _post(server, b"x" * (4 * 1024 * 1024 + 1)).status_code == 413
    plain = _post(server, b"", **{"content-type": "text/plain"})
    assert plain.status_code == 415
    assert "application/x-protobuf or application/json" in plain.text

    after = _otlp_stats(server)
    assert after["requests_refused"] - before["requests_refused"] == 6
    assert after["points_stored"] == before["points_stored"]

    # An empty export is a valid one: 200 and an empty response message.
    ok = _post(server, b"")
    assert ok.status_code == 200
    ExportMetricsServiceResponse().ParseFromString(ok.content)


def test_the_receiver_takes_sdk_keys_only(server: FlagServer) -> None:
    """No key, a wrong key or an admin token: refused before the body is read."""
    url = server.url + "/v1/otlp/v1/metrics"
    headers = {"content-type": "application/x-protobuf"}
    assert httpx.post(url, content=b"", headers=headers).status_code == 401
    wrong = {**headers, "authorization": "Bearer nope"}
    assert httpx.post(url, content=b"", headers=wrong).status_code == 401
    admin = server.admin_request("POST", "/v1/otlp/v1/metrics", content=b"", headers=headers)
    assert admin.status_code in (401, 403)
