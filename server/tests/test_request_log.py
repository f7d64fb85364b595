"""The request log on the real flag server (SQLite and PostgreSQL): POST /v1/otlp/v1/traces from
the real OTel exporter, retention, the admin route, ``vibe log`` and incidents.

The reported filter is fed by a real vibesdk.Client (calls logged, one reported).
Spans are made as the SDK makes them (scope ``vibesdk.request_log``, the GenAI content
attributes as JSON) on a TracerProvider whose BatchSpanProcessor exports with
``opentelemetry-exporter-otlp-proto-http`` (protobuf, gzip) and the SDK key.
tests/test_request_log.py drives the same route from vibesdk.Client itself.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from vibesdk_server._domain._otlp_traces import Entry
from vibesdk_server._storage import open_store
from vibesdk_server._storage._requestlog import DEFAULT_RETENTION
from vibesdk_server.testing import FlagServer, FlagServerProcess

import vibesdk
from vibesdk.testing import make_flag

FLAG = "vibethinker"
SCOPE = "vibesdk.request_log"


class Sender:
    """Request-log spans as the SDK makes them, exported to ``server`` with the real exporter."""

    def __init__(self, server: FlagServer, key: str | None = None) -> None:
        exporter = OTLPSpanExporter(
            endpoint=server.url + "/v1/otlp/v1/traces",
            headers={"Authorization": f"Bearer {key or server.sdk_key}"},
            compression=Compression.Gzip,
        )
        self.provider = TracerProvider()
        self.provider.add_span_processor(
            BatchSpanProcessor(exporter, schedule_delay_millis=3_600_000)
        )
        self.tracer = self.provider.get_tracer(SCOPE)

    def call(
        self,
        variant: str,
        question: str,
        answer: str,
        *,
        flag: str = FLAG,
        failed: tuple[str, ...] = (),
        seconds: float = 0.25,
    ) -> str:
        """One logged call; its trace id."""
        end = time.time_ns()
        attributes: dict[str, Any] = {
            "feature_flag.key": flag,
            "feature_flag.result.variant": variant,
            "vibesdk.answered_by": variant,
            "gen_ai.request.model": f"{variant}-model",
            "gen_ai.response.finish_reasons": ["stop"],
            "gen_ai.usage.input_tokens": 12,
            "gen_ai.usage.output_tokens": 34,
            "vibesdk.quality.failures": list(failed),
            "vibesdk.quality.passed": not failed,
            "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be brief."}]),
            "gen_ai.input.messages": json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": question}]}]
            ),
            "gen_ai.output.messages": json.dumps(
                [
                    {
                        "role": "assistant",
                        "parts": [{"type": "text", "content": answer}],
                        "finish_reason": "stop",
                    }
                ]
            ),
        }
        span = self.tracer.start_span(
            f"chat {variant}-model", attributes=attributes, start_time=end - int(seconds * 1e9)
        )
        span.end(end_time=end)
        return format(span.get_span_context().trace_id, "032x")

    def flush(self) -> None:
        assert self.provider.force_flush(10_000)


@pytest.fixture
def sender(server: FlagServer) -> Iterator[Sender]:
    s = Sender(server)
    yield s
    s.provider.shutdown()


def _log(server: FlagServer, **params: Any) -> list[dict[str, Any]]:
    response = server.admin_request(
        "GET", f"/v1/admin/environments/{server.environment}/request-log", params=params
    )
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()
    return entries


def _stats(server: FlagServer) -> dict[str, int]:
    stats: dict[str, int] = server.admin_request("GET", "/v1/admin/stats").json()["otlp"]
    return stats


def test_logged_calls_are_stored_and_read_back_newest_first(
    server: FlagServer, sender: Sender
) -> None:
    """Spans of the request-log scope become entries with their content, trace id and outcome."""
    before = _stats(server)
    first = sender.call("canary", "What is 2+2?", "4.")
    second = sender.call("stable", "And 3+3?", "6.", failed=("too_long",))
    sender.flush()
    entries = _log(server, flag=FLAG)
    assert [e["trace_id"] for e in entries] == [second, first]
    canary = entries[1]
    assert canary["variant"] == "canary"
    assert canary["answered_by"] == "canary"
    assert canary["flag"] == FLAG
    assert canary["input_messages"][0]["parts"][0]["content"] == "What is 2+2?"
    assert canary["output_messages"][0]["parts"][0]["content"] == "4."
    assert canary["system_instructions"] == [{"type": "text", "content": "Be brief."}]
    assert (canary["input_tokens"], canary["output_tokens"]) == (12, 34)
    assert canary["finish_reason"] == "stop"
    assert canary["failed_checks"] == []
    assert canary["latency_s"] == pytest.approx(0.25, abs=0.01)
    assert entries[0]["failed_checks"] == ["too_long"]
    after = _stats(server)
    assert after["spans_stored"] - before["spans_stored"] == 2
    assert after["trace_requests"] - before["trace_requests"] == 1


def test_the_admin_route_filters_by_flag_variant_and_failed_check(
    server: FlagServer, sender: Sender
) -> None:
    """?variant=, ?failed=CHECK (exact name, not a pattern), ?flag= and ?limit= narrow the log."""
    a = sender.call("canary", "q1", "a1", failed=("python_syntax",))
    b = sender.call("canary", "q2", "a2", failed=("too_long", "empty"))
    c = sender.call("stable", "q3", "a3", failed=("python_syntax",))
    sender.call("canary", "q4", "a4", flag="other")
    sender.flush()
    ids = lambda entries: [e["trace_id"] for e in entries]  # noqa: E731
    assert ids(_log(server, flag=FLAG, variant="canary")) == [b, a]
    assert ids(_log(server, flag=FLAG, failed="python_syntax")) == [c, a]
    assert ids(_log(server, flag=FLAG, failed="too_long")) == [b]
    assert ids(_log(server, flag=FLAG, failed="too%long")) == []  # % is no wildcard
    assert ids(_log(server, flag=FLAG, failed="too_lon")) == []
    assert ids(_log(server, flag=FLAG, limit=1)) == [c]
    assert len(_log(server)) == 4
    missing = server.admin_request("GET", "/v1/admin/environments/no-such-env/request-log")
    assert missing.status_code == 404
    assert "does not exist" in missing.json()["detail"]


def test_spans_of_other_scopes_are_ignored_and_ones_without_a_flag_refused(
    server: FlagServer,
) -> None:
    """A Collector may forward every span: other scopes are ignored; ours need flag and variant."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    other = resource.scope_spans.add()
    other.scope.name = "my.app"
    span = other.spans.add()
    span.trace_id, span.span_id, span.name = b"\x01" * 16, b"\x02" * 8, "GET /"
    ours = resource.scope_spans.add()
    ours.scope.name = SCOPE
    bare = ours.spans.add()
    bare.trace_id, bare.span_id, bare.name = b"\x03" * 16, b"\x04" * 8, "chat m"
    before = _stats(server)
    response = httpx.post(
        server.url + "/v1/otlp/v1/traces",
        content=request.SerializeToString(),
        headers={
            "Authorization": f"Bearer {server.sdk_key}",
            "Content-Type": "application/x-protobuf",
        },
    )
    assert response.status_code == 200, response.text
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    assert "feature_flag.key" in answer.partial_success.error_message
    assert _log(server) == []
    assert _stats(server)["spans_refused"] - before["spans_refused"] == 1


def test_otlp_json_is_taken_and_the_environment_is_the_keys(
    server: FlagServer, backend_process: FlagServerProcess
) -> None:
    """OTLP/JSON works too; a resource attribute naming another environment changes nothing."""
    other = backend_process.new_environment()
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "deployment.environment", "value": {"stringValue": "other"}}
                    ]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": SCOPE},
                        "spans": [
                            {
                                "traceId": "0af7651916cd43dd8448eb211c80319c",
                                "spanId": "b7ad6b7169203331",
                                "name": "chat m",
                                "startTimeUnixNano": "1764900000000000000",
                                "endTimeUnixNano": "1764900001500000000",
                                "attributes": [
                                    {"key": "feature_flag.key", "value": {"stringValue": FLAG}},
                                    {
                                        "key": "feature_flag.result.variant",
                                        "value": {"stringValue": "canary"},
                                    },
                                    {"key": "error.type", "value": {"stringValue": "all_failed"}},
                                ],
                            }
                        ],
                    }
                ],
            }
        ]
    }
    response = httpx.post(
        server.url + "/v1/otlp/v1/traces",
        json=body,
        headers={"Authorization": f"Bearer {server.sdk_key}"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    (entry,) = _log(server)
    assert entry["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert entry["error_type"] == "all_failed"
    assert entry["latency_s"] == pytest.approx(1.5)
    assert entry["at"] == "2025-12-05T02:00:01.500Z"
    assert entry["failed_checks"] is None
    assert _log(other) == []


@pytest.mark.parametrize(
    ("body", "headers", "status", "words"),
    [
        (b"not protobuf", {"Content-Type": "application/x-protobuf"}, 400, "not an OTLP traces"),
        (b"{", {"Content-Type": "application/json"}, 400, "not an OTLP traces"),
        (b"x", {"Content-Type": "text/plain"}, 415, "unsupported Content-Type"),
        (
            b"not gzip",
            {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
            400,
            "not valid gzip",
        ),
        (
            gzip.compress(b"\0" * (17 * 1024 * 1024)),
            {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
            413,
            "decompresses to more than",
        ),
    ],
)
def test_bad_trace_payloads_are_refused_with_a_status_and_counted(
    server: FlagServer, body: bytes, headers: dict[str, str], status: int, words: str
) -> None:
    """Unreadable bodies: 400/413/415 with a google.rpc.Status saying why; counted; nothing kept."""
    before = _stats(server)
    response = httpx.post(
        server.url + "/v1/otlp/v1/traces",
        content=body,
        headers={"Authorization": f"Bearer {server.sdk_key}", **headers},
    )
    assert response.status_code == status, response.text
    if headers["Content-Type"] == "application/json":
        message = response.json()["message"]
    else:
        message = Status.FromString(response.content).message
    assert words in message
    after = _stats(server)
    assert after["trace_requests_refused"] - before["trace_requests_refused"] == 1
    assert _log(server) == []


def test_traces_need_an_sdk_key(server: FlagServer) -> None:
    """No key, or an admin token: refused before the body is read."""
    url = server.url + "/v1/otlp/v1/traces"
    protobuf = {"Content-Type": "application/x-protobuf"}
    assert httpx.post(url, content=b"", headers=protobuf).status_code == 401
    admin = {**protobuf, "Authorization": f"Bearer {server.admin_token}"}
    assert httpx.post(url, content=b"", headers=admin).status_code == 403


def test_retention_keeps_the_newest_rows_per_environment(
    db_url: str, flag_server_factory: Callable[..., FlagServerProcess]
) -> None:
    """--request-log-rows 3: each write trims the environment to its 3 newest entries."""
    server = flag_server_factory(db_url, extra_args=["--request-log-rows", "3"])
    other = server.new_environment()
    sender, elsewhere = Sender(server), Sender(other)
    ids = [sender.call("canary", f"q{i}", f"a{i}") for i in range(5)]
    sender.flush()
    elsewhere.call("canary", "q", "a")
    elsewhere.flush()
    assert [e["trace_id"] for e in _log(server)] == ids[:1:-1]
    assert len(_log(other)) == 1  # another environment's rows are its own
    ids.append(sender.call("stable", "q5", "a5"))
    sender.flush()
    assert [e["trace_id"] for e in _log(server)] == ids[:2:-1]


def test_retention_drops_entries_older_than_the_age_limit(
    db_url: str, flag_server_factory: Callable[..., FlagServerProcess]
) -> None:
    """--request-log-days: entries received longer ago are dropped at the next write."""
    # 0.00002 days = 1.728 s.
    server = flag_server_factory(db_url, extra_args=["--request-log-days", "0.00002"])
    sender = Sender(server)
    old = sender.call("canary", "old", "old")
    sender.flush()
    assert [e["trace_id"] for e in _log(server)] == [old]
    time.sleep(2.5)
    new = sender.call("canary", "new", "new")
    sender.flush()
    assert [e["trace_id"] for e in _log(server)] == [new]


def test_server_cli_refuses_bad_retention_settings(
    flag_server_factory: Callable[..., FlagServerProcess],
) -> None:
    """--request-log-days 0 and --request-log-rows -1 stop the server with one line each."""
    for args, words in (
        (["--request-log-days", "0"], "give a number of days above 0"),
        (["--request-log-rows", "-1"], "give a whole number, 0 or more"),
    ):
        with pytest.raises(RuntimeError, match=words):
            flag_server_factory(None, extra_args=args)


# -- vibe log and incidents (conftest's ``vibe``) ------------------------------------------------
def test_vibe_log_prints_a_table_newest_first_and_json(
    server: FlagServer, sender: Sender, vibe: Callable[..., tuple[int, str, str]]
) -> None:
    """vibe log FLAG: one line per call; --variant/--failed/--limit narrow it; --json is whole."""
    assert vibe("log", FLAG) == (
        0,
        f"no logged calls of {FLAG!r} in environment {server.environment!r}; a variant's "
        "log_share in the flag document turns logging on\n",
        "",
    )
    a = sender.call("canary", "Write a function that adds two numbers", "def add(a, b) return")
    b = sender.call("stable", "Hello there", "Hi!", failed=("too_long",))
    sender.flush()
    code, out, _ = vibe("log", FLAG)
    assert code == 0
    header, first, second = out.splitlines()
    assert header.split() == [
        "TIME", "VARIANT", "LATENCY", "TOKENS", "FINISH", "FAILED", "REPORTED", "TRACE", "QUESTION",
        "ANSWER",
    ]  # fmt: skip
    assert b in first
    assert "too_long" in first
    assert a in second
    assert "0.25s" in second
    assert "12/34" in second
    assert "Write a function that adds two numbers" in second
    assert "def add(a, b) return" in second
    code, out, _ = vibe("log", FLAG, "--variant", "canary", "--limit", "5")
    assert a in out
    assert b not in out
    code, out, _ = vibe("log", FLAG, "--failed", "too_long")
    assert b in out
    assert a not in out
    code, out, _ = vibe("log", FLAG, "--json")
    entries = json.loads(out)
    assert [e["trace_id"] for e in entries] == [b, a]
    assert entries[1]["output_messages"][0]["parts"][0]["content"] == "def add(a, b) return"
    code, _, err = vibe("log", FLAG, "--limit", "0")
    assert code == 2
    assert "--limit 0: give a number from 1 to 1000" in err


def test_an_aborted_release_records_an_incident_with_the_canarys_last_calls(
    server: FlagServer, sender: Sender, vibe: Callable[..., tuple[int, str, str]]
) -> None:
    """vibe release abort: the incident keeps the canary's newest 20 request-log entries."""
    server.apply(make_flag(rollout_bps=0))
    assert vibe("release", "start", FLAG, "--reason", "try it")[0] == 0
    canary = [sender.call("canary", f"q{i}", f"a{i}") for i in range(25)]
    sender.call("stable", "q", "a")
    sender.flush()
    code, _, err = vibe("release", "abort", FLAG, "--reason", "answers look wrong")
    assert code == 0, err
    incident = json.loads(vibe("incident", "list", "--json")[1])[0]
    assert incident["reason"] == "aborted: answers look wrong"
    assert [e["trace_id"] for e in incident["request_log"]] == canary[:4:-1]
    code, out, _ = vibe("incident", "show", str(incident["id"]))
    assert code == 0
    assert "the canary's last 20 logged calls" in out
    assert canary[-1] in out
    assert "measurements at the decision" not in out  # a person's abort has no decision


# -- reported answers (client.report joined by trace id) -----------------------------------------
def _reported_calls(
    server: FlagServer, logged_canary_calls: Callable[..., list[vibesdk.ChatResult]]
) -> tuple[list[str], str]:
    """Three canary calls of a real vibesdk.Client, every one logged (log_share 1); the user
    reports the second, twice: (trace ids oldest first, the reported one)."""
    results = logged_canary_calls(
        ["q0", "q1", "q2"], reports=[(1, "made up a number"), (1, "still wrong")]
    )
    ids = [r.trace_id for r in results]
    deadline = time.monotonic() + 15
    while len(_log(server, flag=FLAG, reported="true")) < 1 or len(_log(server)) < 3:
        assert time.monotonic() < deadline, "the calls or the report never reached the server"
        time.sleep(0.1)
    return ids, ids[1]


def test_reported_true_keeps_the_answers_a_user_reported(
    server: FlagServer,
    vibe: Callable[..., tuple[int, str, str]],
    logged_canary_calls: Callable[..., list[vibesdk.ChatResult]],
) -> None:
    """?reported=true: only entries with a report (joined by trace id); every entry says
    "reported"; the other filters still apply; the store's entry lists the reasons."""
    ids, reported = _reported_calls(server, logged_canary_calls)
    entries = _log(server, flag=FLAG)
    assert [e["trace_id"] for e in entries] == ids[::-1]
    assert [e["reported"] for e in entries] == [False, True, False]
    (only,) = _log(server, flag=FLAG, reported="true")
    assert only["trace_id"] == reported
    assert only["reported"] is True
    assert [e["trace_id"] for e in _log(server, flag=FLAG, reported="false")] == ids[::-1]
    assert _log(server, flag=FLAG, reported="true", variant="stable") == []
    assert _log(server, flag=FLAG, reported="true", failed="too_long") == []
    assert _log(server, flag="other", reported="true") == []
    bad = server.admin_request(
        "GET",
        f"/v1/admin/environments/{server.environment}/request-log",
        params={"reported": "maybe"},
    )
    assert bad.status_code == 422
    # vibe log --reported: the same filter, and a REPORTED column in the table.
    code, out, _ = vibe("log", FLAG, "--reported")
    assert code == 0
    header, line = out.splitlines()
    assert "REPORTED" in header.split()
    assert reported in line
    assert "yes" in line.split()
    code, out, _ = vibe("log", FLAG, "--reported", "--variant", "stable")
    assert code == 0
    assert out == (
        f"no logged calls of {FLAG!r}, variant 'stable', reported in environment"
        f" {server.environment!r}; a variant's log_share in the flag document turns logging on\n"
    )
    code, out, _ = vibe("log", FLAG, "--reported", "--json")
    assert [e["trace_id"] for e in json.loads(out)] == [reported]


def test_a_single_entry_lists_its_reports_oldest_first(db_url: str) -> None:
    """request_entry: ``reports`` with each report's time and reason (a reason may be None);
    an entry nobody reported has none. Reports of another environment do not count."""
    store = open_store(db_url)
    try:
        entries = [
            Entry(FLAG, "canary", trace, time.time_ns(), 0.1, answered_by="canary")
            for trace in ("a" * 32, "b" * 32)
        ]
        store.add_requests("prod", entries, DEFAULT_RETENTION)
        item = {"trace_id": "a" * 32, "flag_key": FLAG, "variant": "canary"}
        store.add_report("prod", "sdk", {**item, "reason": "rude"})
        store.add_report("prod", "sdk", {**item, "reason": None})
        store.add_report("dev", "sdk", {**item, "trace_id": "b" * 32, "reason": "elsewhere"})
        first, second = sorted(store.request_log("prod"), key=lambda e: e["trace_id"])
        one = store.request_entry("prod", first["id"])
        assert one["reported"] is True
        assert [r["reason"] for r in one["reports"]] == ["rude", None]
        assert all(r["at"] for r in one["reports"])
        other = store.request_entry("prod", second["id"])
        assert (other["reported"], other["reports"]) == (False, [])
        assert [e["trace_id"] for e in store.request_log("prod", reported=True)] == ["a" * 32]
    finally:
        store.close()
