"""The guard reading a step's measurements from Prometheus instead of the server's own store.

Real parts: Debian's ``prometheus`` (started here on loopback with a temporary config that
scrapes every second, and a temporary storage directory), an app in a subprocess that calls
through a real vibesdk.Client with OpenTelemetry's Prometheus exporter serving ``/metrics`` on
loopback (and, as usual, exporting to vibe-server over OTLP), the real vibe-server with
``--metrics-source prometheus``, FakeBackend model servers. A fake PromQL server stands in only
for what the real one cannot do on demand: answer errors, hang.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from vibesdk_server._guard.release import aggregates, evaluate
from vibesdk_server._guard.sources import MetricsUnavailable, PrometheusSource, judge
from vibesdk_server._storage import open_store
from vibesdk_server.serving import free_port
from vibesdk_server.testing import FlagServer, FlagServerProcess

from vibesdk.testing import FakeBackend, Reply, make_flag

FLAG = "vibethinker"
PROMETHEUS = shutil.which("prometheus")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="needs Prometheus on PATH: apt-get install -y prometheus (scripts/install does it"
    " as root)",
)

# An app as an operator would set one up: OpenTelemetry's Prometheus exporter on the global
# MeterProvider, the resource attribute deployment.environment.name (from
# OTEL_RESOURCE_ATTRIBUTES) kept as a label on every series. Each line on stdin, "PREFIX N",
# makes N calls for users PREFIX-0.. (scoring every 4th answer, reporting every 10th) and
# answers one JSON line.
APP = """
import json, sys
import prometheus_client
from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
import vibesdk

reader = PrometheusMetricReader(
    resource_attribute_filter=lambda key: key == "deployment.environment.name"
)
metrics.set_meter_provider(MeterProvider(metric_readers=[reader], resource=Resource.create()))
http, _ = prometheus_client.start_http_server(0, addr="127.0.0.1")
ask = [{"role": "user", "content": "2+2?"}]
client = vibesdk.Client(
    server_url=sys.argv[1], sdk_key=sys.argv[2], cache_dir="", server_metrics_interval_s=1
)
with client:
    assert client.wait_until_ready(timeout=15)
    print(json.dumps({"port": http.server_port}), flush=True)
    for line in sys.stdin:
        prefix, n = line.split()
        results = [client.chat(sys.argv[3], f"{prefix}-{i}", ask) for i in range(int(n))]
        for i, r in enumerate(results):
            if i % 4 == 0:
                client.feedback(r.trace_id, 1 + i % 5)
            if i % 10 == 0:
                client.report(r.trace_id, "wrong")
        texts = sorted({r.text for r in results})
        variants = [r.assignment.variant for r in results]
        print(json.dumps({"texts": texts, "variants": variants}), flush=True)
"""


class App:
    """The app subprocess: ``call(prefix, n)`` makes n calls and returns its summary."""

    def __init__(self, tmp: Path, server: FlagServer) -> None:
        script = tmp / "app.py"
        script.write_text(APP)
        env = {
            **os.environ,
            "OTEL_RESOURCE_ATTRIBUTES": f"deployment.environment.name={server.environment}",
        }
        self.process = subprocess.Popen(
            [sys.executable, str(script), server.url, server.sdk_key, FLAG],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        self.port = int(self._answer()["port"])

    def _answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"the app exited with {self.process.wait()}"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def call(self, prefix: str, n: int) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{prefix} {n}\n")
        self.process.stdin.flush()
        return self._answer()

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        assert self.process.stdout is not None
        self.process.stdout.close()


class Prometheus:
    """Debian's prometheus on ``port``, scraping ``target`` every second, into ``tmp``."""

    def __init__(self, tmp: Path, port: int, target: str) -> None:
        assert PROMETHEUS is not None
        config = tmp / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: app\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
        )
        self.url = f"http://127.0.0.1:{port}"
        self.log = tmp / "prometheus.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "prometheus did not get ready in 60 s"
            try:
                if httpx.get(self.url + "/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _server(tmp: Path, prometheus_url: str) -> FlagServerProcess:
    """vibe-server on a new SQLite file, its guard reading Prometheus every 0.5 s."""
    return FlagServerProcess(
        tmp / "vibesdk.db",
        guard_interval_s=0.5,
        extra_args=["--metrics-source", "prometheus", "--prometheus-url", prometheus_url],
    )


def _release(server: FlagServer) -> dict[str, Any]:
    path = f"/v1/admin/environments/{server.environment}/flags/{FLAG}/release"
    response = server.admin_request("GET", path)
    assert response.status_code == 200, response.text
    release: dict[str, Any] = response.json()
    return release


def _start(server: FlagServer, **body: Any) -> dict[str, Any]:
    path = f"/v1/admin/environments/{server.environment}/flags/{FLAG}/release"
    response = server.admin_request("POST", path, json=body)
    assert response.status_code == 201, response.text
    release: dict[str, Any] = response.json()
    return release


def _wait(what: str, until: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _settled(figures: dict[str, dict[str, Any]], calls: int) -> bool:
    """All ``calls`` are in, and so are a fallback for every canary call, a score for every
    4th call and a report for every 10th (they arrive separately)."""
    canary = figures.get("canary", {})
    received = [f["feedback_received"] for f in figures.values()]
    return (
        sum(f["calls"] for f in figures.values()) == calls
        and sum(canary.get("fallbacks", {}).values()) == canary.get("calls", 0)
        and sum(r["count"] for r in received) == (calls + 3) // 4
        and sum(r["reports"] for r in received) == (calls + 9) // 10
    )


COMPARED = (
    "calls",
    "users",
    "users_by_client",
    "slow_calls",
    "errors",
    "failed_attempts",
    "fallbacks",
    "quality_failures",
    "output_tokens",
    "feedback_received",
    "duration_histogram",
)


@needs_prometheus
@pytest.mark.timeout(240)
def test_prometheus_gives_the_stores_counts_and_the_guard_rolls_back_from_them(
    tmp_path: Path,
) -> None:
    """The same calls counted by Prometheus and by the store agree; the guard reading
    Prometheus holds on the calls before the step, then rolls the failing canary back."""
    prometheus_port = free_port()
    with (
        FakeBackend(default="stable answer") as stable,
        FakeBackend(default=Reply(status=500)) as canary,
        _server(tmp_path, f"http://127.0.0.1:{prometheus_port}") as server,
    ):
        flag = make_flag(stable_url=stable.url, canary_url=canary.url, rollout_bps=5000)
        server.apply(flag)
        app = App(tmp_path, server)
        prometheus = Prometheus(tmp_path, prometheus_port, f"127.0.0.1:{app.port}")
        store = open_store(server.db)
        source = PrometheusSource(prometheus.url)
        try:
            # 1. The same 40 calls, read from both sources.
            since = int(time.time()) // 10 * 10  # a whole store interval: nothing left out
            answer = app.call("first", 40)
            assert answer["texts"] == ["stable answer"]  # users never see the canary fail
            assert "canary" in answer["variants"]

            def read(
                env: str = server.environment, step: str | None = None
            ) -> dict[str, dict[str, Any]]:
                return source.measurements(environment=env, flag_key=FLAG, since=since, step=step)

            def stored(step: str | None = None) -> dict[str, dict[str, Any]]:
                return store.measurements(
                    environment=server.environment, flag_key=FLAG, since=since, step=step
                )

            _wait("the store to have the 40 calls", lambda: _settled(stored(), 40))
            _wait("Prometheus to have scraped the 40 calls", lambda: _settled(read(), 40))
            from_prometheus, from_store = read(), stored()
            assert set(from_prometheus) == set(from_store) == {"stable", "canary"}
            for variant in from_store:
                p, s = from_prometheus[variant], from_store[variant]
                assert {k: p[k] for k in COMPARED} == {k: s[k] for k in COMPARED}, variant
                assert aggregates(p) == aggregates(s), variant
            canary_calls = answer["variants"].count("canary")
            assert from_prometheus["canary"]["calls"] == canary_calls
            # The app's one client counted the 40 users, under its id on both sources.
            by_client = [from_prometheus[v]["users_by_client"] for v in ("stable", "canary")]
            assert len({client for counts in by_client for client in counts}) == 1
            assert sum(n for counts in by_client for n in counts.values()) == 40
            # Read by the step's id, the users are the same; under another step's, none.
            for users_of in (read, stored):
                in_step = users_of(step=flag.step_id)
                assert [in_step[v]["users_by_client"] for v in ("stable", "canary")] == by_client
                elsewhere = users_of(step="0" * 16)
                assert sum(f["users"] for f in elsewhere.values()) == 0
            assert sum(from_prometheus["canary"]["fallbacks"].values()) == canary_calls
            # The environment label is a filter: another environment's name sees nothing.
            assert read("elsewhere") == {}

            # 2. A release: the calls before its step are not its step's; it holds on none.
            started = _start(server, steps=[5000, 10_000], min_dwell_s=0, min_samples_per_arm=20)
            _wait("the guard's first look", lambda: bool(_release(server).get("decision")))
            release = _release(server)
            assert release["state"] == "running", release
            assert release["decision"]["srm"]["canary_calls"] == 0, release["decision"]
            assert release["decision"]["reasons"][0]["code"] == "too_few_samples"

            # 3. The failing canary's calls reach Prometheus; the guard rolls it back.
            rounds = 0
            while _release(server)["state"] == "running":
                assert rounds < 60, "the guard did not roll back in time"
                assert app.call(f"step-{rounds}", 20)["texts"] == ["stable answer"]
                rounds += 1
                time.sleep(0.3)
            release = _release(server)
            assert release["state"] == "rolled_back", release
            assert release["decision"]["reasons"][0]["code"] == "breakage"
            step = {**started, "state": "running"}
            measured, decision = judge(source, step, now=time.time())
            assert decision.action == "rollback", decision  # the same decision, read again
            assert evaluate(step, measured, now=time.time()).action == "rollback"
        finally:
            source.close()
            store.close()
            app.close()
            prometheus.close()
        incidents = server.admin_request(
            "GET", "/v1/admin/incidents", params={"environment": server.environment}
        ).json()
        assert len(incidents) == 1
        # Figures from Prometheus have no store intervals.
        assert incidents[0]["measurements"]["canary"]["first_interval"] is None
        assert incidents[0]["measurements"]["canary"]["calls"] >= 20
        assert "the guard reads measurements from Prometheus at" in server.log_tail(200)


# -- Prometheus failing: the guard holds and says why ---------------------------------------------
class FakePromQL:
    """A loopback HTTP server answering /api/v1/query with ``status`` and ``body``, after
    ``delay_s``; ``queries`` records what it was asked."""

    def __init__(self, status: int = 200, body: Any = None, delay_s: float = 0.0) -> None:
        self.status, self.body, self.delay_s = status, body, delay_s
        self.queries: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.queries.append(self.path)
                time.sleep(fake.delay_s)
                data = fake.body if isinstance(fake.body, bytes) else json.dumps(fake.body).encode()
                try:
                    self.send_response(fake.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up first
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def fake_promql() -> Iterator[FakePromQL]:
    fake = FakePromQL()
    yield fake
    fake.close()


UNAVAILABLE = {
    "an error answer": (
        503,
        {"status": "error", "errorType": "unavailable", "error": "TSDB not ready"},
        "answered HTTP 503 (unavailable: TSDB not ready)",
    ),
    "a bad query": (
        400,
        {"status": "error", "errorType": "bad_data", "error": "1:5: parse error"},
        "answered HTTP 400 (bad_data: 1:5: parse error)",
    ),
    "not Prometheus": (200, b"<html>login</html>", "with no Prometheus API result"),
    "a matrix": (
        200,
        {"status": "success", "data": {"resultType": "matrix", "result": []}},
        "answered a 'matrix', not a vector",
    ),
}


@pytest.mark.parametrize(("status", "body", "says"), UNAVAILABLE.values(), ids=UNAVAILABLE.keys())
def test_an_error_from_prometheus_is_unavailable_with_its_reason(
    fake_promql: FakePromQL, status: int, body: Any, says: str
) -> None:
    """Every kind of bad answer raises MetricsUnavailable, one line naming Prometheus' URL."""
    fake_promql.status, fake_promql.body = status, body
    with pytest.raises(MetricsUnavailable) as caught:
        PrometheusSource(fake_promql.url).measurements(environment="prod", flag_key=FLAG, since=1)
    message = str(caught.value)
    assert message.startswith(f"Prometheus at {fake_promql.url} "), message
    assert says in message
    assert "\n" not in message


def test_a_prometheus_that_hangs_or_is_gone_is_unavailable_within_the_timeout(
    fake_promql: FakePromQL,
) -> None:
    """A read is bounded by its timeout, all queries together; a closed port is unreachable."""
    fake_promql.body = {"status": "success", "data": {"resultType": "vector", "result": []}}
    fake_promql.delay_s = 0.4  # each query answers, but ten of them take 4 s
    source = PrometheusSource(fake_promql.url, timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(MetricsUnavailable, match=r"took over 1 s to answer"):
        source.measurements(environment="prod", flag_key=FLAG, since=1)
    assert time.monotonic() - started < 1.0 + 2.0  # the timeout, plus generous slack
    assert len(fake_promql.queries) < 10  # the old behaviour: every query, 0.4 s each
    gone = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(MetricsUnavailable, match=r"cannot be reached \(ConnectError"):
        PrometheusSource(gone).measurements(environment="prod", flag_key=FLAG, since=1)


def _breaking() -> dict[str, dict[str, Any]]:
    """Figures that roll a canary back at once: 40 of 40 canary calls fell back."""
    return {
        "canary": {"calls": 40, "fallbacks": {"http_500": 40}},
        "stable": {"calls": 40},
    }


class Figures:
    """A source answering ``figures``, or raising ``error``."""

    def __init__(self, figures: Any = None, error: Exception | None = None) -> None:
        self.figures, self.error = figures, error

    def measurements(
        self, *, environment: str, flag_key: str, since: int | None = None, step: str | None = None
    ) -> dict[str, dict[str, Any]]:
        if self.error is not None:
            raise self.error
        return dict(self.figures)


def test_calls_count_as_failed_attempts_by_each_label_that_says_so() -> None:
    """The duration count's series: a retried call (``vibesdk_attempt_failed``), one that fell
    back and one that raised are failed attempts; a clean one is not."""
    from vibesdk_server._guard.sources import READS
    from vibesdk_server._storage._measurements import _empty

    calls = READS[0]
    figures = _empty()
    calls.add(figures, {"vibesdk_fallback": "false"}, 10.0)
    calls.add(figures, {"vibesdk_fallback": "false", "vibesdk_attempt_failed": "true"}, 4.0)
    calls.add(figures, {"vibesdk_fallback": "true", "vibesdk_attempt_failed": "true"}, 2.0)
    calls.add(figures, {"vibesdk_fallback": "false", "error_type": "all_failed"}, 1.0)
    assert (figures["calls"], figures["failed_attempts"]) == (17, 7)


def test_judge_holds_with_the_reason_when_the_source_cannot_answer() -> None:
    """The same step rolls back on breaking figures, and holds when they cannot be read."""
    now = time.time()
    release = {
        "environment": "prod",
        "flag_key": FLAG,
        "steps": [5000, 10_000],
        "step": 0,
        "step_started_s": now - 600,
        "min_dwell_s": 0,
        "min_samples": 20,
        "guardrails": None,
        "canary_variant": "canary",
        "stable_variant": "stable",
    }
    assert judge(Figures(_breaking()), release, now=now)[1].action == "rollback"
    down = MetricsUnavailable("Prometheus at http://p:9090 cannot be reached (ConnectError)")
    measured, decision = judge(Figures(error=down), release, now=now)
    assert (measured, decision.action) == ({}, "hold")
    assert [r.code for r in decision.reasons] == ["source_unavailable"]
    assert decision.reasons[0].message == (
        "no measurements: Prometheus at http://p:9090 cannot be reached (ConnectError);"
        " holding until the metrics source answers"
    )


def test_the_guard_holds_while_prometheus_fails_and_release_status_says_why(
    tmp_path: Path,
    fake_promql: FakePromQL,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A failing canary the store would roll back, but Prometheus answers 503: the guard
    holds (never rolls back on figures it cannot read) and `vibe release status` says why."""
    from vibesdk_server._vibe.main import main as vibe

    import vibesdk

    fake_promql.status = 503
    fake_promql.body = {"status": "error", "errorType": "unavailable", "error": "overloaded"}
    with (
        FakeBackend(default="stable answer") as stable,
        FakeBackend(default=Reply(status=500)) as canary,
        _server(tmp_path, fake_promql.url) as server,
    ):
        server.apply(make_flag(stable_url=stable.url, canary_url=canary.url, rollout_bps=0))
        _start(server, steps=[5000, 10_000], min_dwell_s=0, min_samples_per_arm=20)
        with vibesdk.Client(
            server_url=server.url, sdk_key=server.sdk_key, cache_dir="", server_metrics_interval_s=1
        ) as client:
            assert client.wait_until_ready(timeout=15)
            for i in range(80):
                client.chat(FLAG, f"user-{i}", [{"role": "user", "content": "2+2?"}])
        store = open_store(server.db)
        try:
            # What the store's figures would decide: roll back (breakage).
            _wait(
                "the store to have the canary's calls",
                lambda: (
                    store.measurements(environment=server.environment, flag_key=FLAG)
                    .get("canary", {})
                    .get("calls", 0)
                    >= 20
                ),
            )
            release = _release(server)
            store_says = evaluate(
                release,
                store.measurements(environment=server.environment, flag_key=FLAG),
                now=time.time(),
            )
            assert store_says.action == "rollback"
        finally:
            store.close()
        asked = len(fake_promql.queries)
        _wait("two more looks of the guard", lambda: len(fake_promql.queries) >= asked + 2)
        release = _release(server)
        assert release["state"] == "running", release
        assert release["decision"]["action"] == "hold"
        assert release["decision"]["reasons"][0]["code"] == "source_unavailable"
        assert server.document().flags[FLAG].rollout_bps == 5000
        monkeypatch.setenv("VIBESDK_SERVER_URL", server.url)
        monkeypatch.setenv("VIBESDK_ADMIN_TOKEN", server.admin_token)
        monkeypatch.setenv("VIBESDK_ENVIRONMENT", server.environment)
        assert vibe(["release", "status", FLAG]) == 0
        out = capsys.readouterr().out
        assert (
            f"why: no measurements: Prometheus at {fake_promql.url} answered HTTP 503"
            " (unavailable: overloaded); holding until the metrics source answers"
        ) in out
        assert "next: hold" in out


# -- vibe-server's options ------------------------------------------------------------------------
BAD_OPTIONS = {
    "prometheus without a URL": (
        ["--metrics-source", "prometheus"],
        "--metrics-source prometheus needs --prometheus-url",
    ),
    "a URL without prometheus": (
        ["--prometheus-url", "http://p:9090"],
        "--prometheus-url is read only with --metrics-source prometheus",
    ),
    "not an http URL": (
        ["--metrics-source", "prometheus", "--prometheus-url", "p:9090"],
        "argument --prometheus-url: the Prometheus URL must be its http:// or https:// base URL",
    ),
    "an unknown source": (["--metrics-source", "graphite"], "invalid choice: 'graphite'"),
    "a bad label": (
        ["--metrics-source", "prometheus", "--prometheus-url", "http://p:9090",
         "--prometheus-environment-label", "deployment.environment"],
        "the environment label must be a Prometheus label name",
    ),
}  # fmt: skip


@pytest.mark.parametrize(("args", "says"), BAD_OPTIONS.values(), ids=BAD_OPTIONS.keys())
def test_server_refuses_bad_metrics_source_options_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    """Each mistake exits 2 before anything starts, with one error line that names the fix."""
    from vibesdk_server._cli import main

    with pytest.raises(SystemExit) as exited:
        main(["serve", "--db", str(tmp_path / "x.db"), *args])
    assert exited.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert says in errors[0]
    assert not (tmp_path / "x.db").exists()
