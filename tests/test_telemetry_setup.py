"""configure_telemetry: the one explicit setup call, run in fresh processes.

OpenTelemetry lets a process install its global providers only once, so each
scenario runs in its own interpreter (real SDK, real exporters, loopback only).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import vibesdk
from vibesdk import ConfigError

PRELUDE = """
import json, logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
import vibesdk
from vibesdk._telemetry import semconv as sc
from vibesdk._telemetry.instruments import Metrics, tracer

def emit():
    attrs = {sc.FEATURE_FLAG_RESULT_VARIANT: "canary"}
    with tracer().start_as_current_span("chat m", attributes=attrs):
        pass
    Metrics().record_call(flag_key="f", variant="canary", model="m", provider="p",
                          duration_s=0.5, error_type=None, fallback=False)
"""


def run(script: str, tmp_path: Path) -> tuple[dict[str, Any], str]:
    """Run PRELUDE + script in a fresh interpreter; return its last stdout line (JSON), stderr."""
    code = PRELUDE + textwrap.dedent(script)
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_memory_exporter_installs_global_providers(tmp_path: Path) -> None:
    """With no host setup, "memory" installs SDK providers and holds spans and metrics."""
    result, stderr = run(
        """
        from opentelemetry import trace, metrics
        handle = vibesdk.configure_telemetry("memory", service_name="demo")
        emit()
        spans = handle.spans()
        points = handle.metrics()[sc.METRIC_OPERATION_DURATION]
        print(json.dumps({
            "names": [s.name for s in spans],
            "service": spans[0].resource.attributes["service.name"],
            "count": sum(p.count for p in points),
            "global": trace.get_tracer_provider() is handle.tracer_provider
                      and metrics.get_meter_provider() is handle.meter_provider,
            "attached": handle.attached,
        }))
        handle.shutdown()
        """,
        tmp_path,
    )
    assert result == {
        "names": ["chat m"],
        "service": "demo",
        "count": 1,
        "global": True,
        "attached": False,
    }
    assert "WARNING" not in stderr


def test_service_name_defaults_and_otel_service_name(tmp_path: Path) -> None:
    """Without service_name, OTEL_SERVICE_NAME applies, else "vibesdk-app"; explicit wins."""
    script = """
        import os
        handle = vibesdk.configure_telemetry("memory", **json.loads(sys.argv[1]))
        emit()
        print(json.dumps(handle.spans()[0].resource.attributes["service.name"]))
    """
    from_env = {"OTEL_SERVICE_NAME": "from-env"}
    cases = [
        ({}, {}, "vibesdk-app"),
        ({}, from_env, "from-env"),
        ({"service_name": "explicit"}, from_env, "explicit"),
    ]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    for kwargs, env, expected in cases:
        code = PRELUDE + textwrap.dedent(script)
        done = subprocess.run(
            [sys.executable, "-c", code, json.dumps(kwargs)],
            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
            env={**clean, **env},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.strip().splitlines()[-1]) == expected


def test_instruments_made_before_setup_record_after_it(tmp_path: Path) -> None:
    """Telemetry used before configure_telemetry starts recording once it runs, 3 s bucket kept."""
    result, _ = run(
        """
        from vibesdk._telemetry.instruments import metrics
        early, cached_tracer = metrics(), tracer()
        early.record_call(flag_key="f", variant="v", model="m", provider="p", duration_s=1.0)
        handle = vibesdk.configure_telemetry("memory")
        early.record_call(flag_key="f", variant="v", model="m", provider="p", duration_s=2.0)
        with cached_tracer.start_as_current_span("chat m"):
            pass
        (point,) = handle.metrics()[sc.METRIC_OPERATION_DURATION]
        print(json.dumps({"bounds": list(point.explicit_bounds), "sum": point.sum,
                          "spans": [s.name for s in handle.spans()]}))
        """,
        tmp_path,
    )
    assert 3.0 in result["bounds"]
    assert result["sum"] == 2.0  # the record made before the setup went nowhere, as documented
    assert result["spans"] == ["chat m"]


def test_file_exporter_writes_one_json_line_per_span(tmp_path: Path) -> None:
    """The file exporter appends one jq-readable JSON line per span, metrics beside it."""
    result, _ = run(
        """
        handle = vibesdk.configure_telemetry("file", path="spans.jsonl")
        emit()
        emit()
        handle.shutdown()
        print(json.dumps({"path": str(handle.path), "metrics": str(handle.metrics_path)}))
        """,
        tmp_path,
    )
    assert result == {"path": "spans.jsonl", "metrics": "spans.metrics.jsonl"}
    lines = (tmp_path / "spans.jsonl").read_text().splitlines()
    # `vibe demo` tells people to grep for exactly this spelling.
    assert '"feature_flag.result.variant": "canary"' in lines[0]
    spans = [json.loads(line) for line in lines]
    assert [s["name"] for s in spans] == ["chat m", "chat m"]
    assert spans[0]["attributes"]["feature_flag.result.variant"] == "canary"
    assert spans[0]["context"]["trace_id"].startswith("0x")
    metric_lines = (tmp_path / "spans.metrics.jsonl").read_text().splitlines()
    assert "gen_ai.client.operation.duration" in metric_lines[-1]
    json.loads(metric_lines[-1])


def test_console_exporter_prints_spans(tmp_path: Path) -> None:
    """The console exporter prints each span as it ends and the metrics at shutdown."""
    code = PRELUDE + textwrap.dedent(
        """
        handle = vibesdk.configure_telemetry("console")
        emit()
        handle.shutdown()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert '"name": "chat m"' in done.stdout
    assert "gen_ai.client.operation.duration" in done.stdout


def test_host_sdk_providers_are_kept_and_get_the_exporter_too(tmp_path: Path) -> None:
    """A host's SDK providers are not replaced: the exporter is added and both see the telemetry."""
    result, stderr = run(
        """
        from opentelemetry import trace, metrics
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        host_spans = InMemorySpanExporter()
        host_tp = TracerProvider()
        host_tp.add_span_processor(SimpleSpanProcessor(host_spans))
        trace.set_tracer_provider(host_tp)
        host_reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[host_reader]))
        handle = vibesdk.configure_telemetry("memory")
        emit()
        host_metric_names = [m.name for rm in host_reader.get_metrics_data().resource_metrics
                             for sm in rm.scope_metrics for m in sm.metrics]
        print(json.dumps({
            "attached": handle.attached,
            "same_provider": trace.get_tracer_provider() is host_tp,
            "host_spans": [s.name for s in host_spans.get_finished_spans()],
            "our_spans": [s.name for s in handle.spans()],
            "host_metrics": host_metric_names,
            "our_metrics": sorted(handle.metrics()),
        }))
        handle.shutdown()
        """,
        tmp_path,
    )
    assert result["attached"] is True
    assert result["same_provider"] is True
    assert result["host_spans"] == result["our_spans"] == ["chat m"]
    assert "gen_ai.client.operation.duration" in result["host_metrics"]
    assert result["our_metrics"] == ["gen_ai.client.operation.duration"]
    assert "already installed" in stderr


def test_non_sdk_host_provider_is_untouched_and_vibesdk_still_exports(tmp_path: Path) -> None:
    """A host provider that cannot take an exporter stays; vibesdk's own spans still export."""
    result, stderr = run(
        """
        from opentelemetry import trace
        host = trace.NoOpTracerProvider()
        trace.set_tracer_provider(host)
        handle = vibesdk.configure_telemetry("memory")
        emit()
        print(json.dumps({
            "host_kept": trace.get_tracer_provider() is host,
            "our_spans": [s.name for s in handle.spans()],
        }))
        """,
        tmp_path,
    )
    assert result == {"host_kept": True, "our_spans": ["chat m"]}
    assert "cannot take an exporter" in stderr


def test_otlp_exports_to_a_loopback_collector(tmp_path: Path) -> None:
    """The OTLP exporter posts protobuf spans and metrics to <endpoint>/v1/traces, /v1/metrics."""
    result, _ = run(
        """
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )
        received = []
        class Collector(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, self.headers["Content-Type"], body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()
            def log_message(self, *args):
                pass
        server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/"
        handle = vibesdk.configure_telemetry("otlp", endpoint=endpoint, service_name="svc")
        emit()
        flushed = handle.force_flush(timeout_s=10)
        handle.shutdown()
        server.shutdown()
        names = []
        for path, ctype, body in received:
            if path == "/v1/traces":
                request = ExportTraceServiceRequest.FromString(body)
                names += [s.name for rs in request.resource_spans
                          for ss in rs.scope_spans for s in ss.spans]
        print(json.dumps({
            "flushed": flushed,
            "paths": sorted({p for p, _, _ in received}),
            "types": sorted({t for _, t, _ in received}),
            "span_names": names,
        }))
        """,
        tmp_path,
    )
    assert result["flushed"] is True
    assert result["paths"] == ["/v1/metrics", "/v1/traces"]
    assert result["types"] == ["application/x-protobuf"]
    assert result["span_names"] == ["chat m"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"exporter": "jaeger"}, "exporter must be one of"),
        ({"exporter": "memory", "endpoint": "http://x"}, "endpoint= applies only"),
        ({"exporter": "otlp", "endpoint": "collector:4318"}, "http:// or https://"),
        ({"exporter": "console", "path": "x.jsonl"}, "path= applies only"),
        ({"exporter": "memory", "headers": {"a": "b"}}, "headers= applies only"),
        ({"exporter": "memory", "metric_interval_s": 0}, "metric_interval_s"),
        ({"exporter": "memory", "service_name": ""}, "service_name"),
        ({"exporter": "file", "path": "/no/such/dir/x.jsonl"}, "not found"),
    ],
)
def test_bad_arguments_raise_config_error_before_installing(
    kwargs: dict[str, Any], message: str
) -> None:
    """Bad arguments raise ConfigError at once and install nothing."""
    from opentelemetry import trace

    before = trace.get_tracer_provider()
    with pytest.raises(ConfigError, match=message):
        vibesdk.configure_telemetry(**kwargs)
    assert trace.get_tracer_provider() is before


def test_missing_otlp_package_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without opentelemetry-exporter-otlp-proto-http (a broken install), "otlp" names it."""
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ConfigError, match=r"pip install opentelemetry-exporter-otlp-proto-http$"):
        vibesdk.configure_telemetry("otlp")
