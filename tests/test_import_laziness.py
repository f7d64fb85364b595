"""`import vibesdk` leaves work for first use: the flag document's validators, configure_telemetry.

Each check runs in a fresh interpreter, since this test process has long since imported and used
everything. What the timings are is benchmarks/import_time/'s business; these tests pin that the
work is deferred at all, and that first use still does it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The client makes its default FallbackPolicy() when imported; that small model may be built.
BUILT_AT_IMPORT = {"FallbackPolicy"}
TELEMETRY_SETUP = "vibesdk." + "_telemetry.setup"  # the module configure_telemetry lives in

PROBE = f"""
import json, sys
import pydantic
import vibesdk
import vibesdk.schema

MODELS = [
    getattr(vibesdk.schema, n) for n in vibesdk.schema.__all__
    if isinstance(getattr(vibesdk.schema, n), type)
    and issubclass(getattr(vibesdk.schema, n), pydantic.BaseModel)
]

def built():
    return sorted(m.__name__ for m in MODELS if m.__pydantic_complete__)

def state():
    return {{
        "built": built(),
        "setup": {TELEMETRY_SETUP!r} in sys.modules,
        "otel_sdk": any(m.startswith("opentelemetry.sdk") for m in sys.modules),
    }}

out = {{"after_import": state(), "models": len(MODELS)}}
"""


def _probe(then: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]))
    proc = subprocess.run(
        [sys.executable, "-c", PROBE + then + "\nprint(json.dumps(out))"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return result


def test_import_builds_no_flag_document_validator_and_the_first_document_does() -> None:
    """After `import vibesdk` no model is built; parsing the first document builds what it uses."""
    out = _probe(
        'vibesdk.parse_document({"version": 1})\n'
        'out["after_parse"] = state()\n'
        "from vibesdk.testing import make_flag\n"
        "make_flag()\n"
        'out["after_make_flag"] = state()\n'
    )
    assert set(out["after_import"]["built"]) <= BUILT_AT_IMPORT
    assert out["models"] >= 9
    assert "FlagDocument" in out["after_parse"]["built"]
    assert "Flag" in out["after_make_flag"]["built"]


def test_testing_helpers_and_a_first_assign_work_on_deferred_models() -> None:
    """`import vibesdk.testing` builds nothing; a first assign() on its document works."""
    out = _probe(
        "from vibesdk.testing import InMemoryFlagSource, make_document\n"
        'out["after_testing"] = state()\n'
        "client = vibesdk.Client(flag_source=InMemoryFlagSource(make_document()))\n"
        'a = client.assign("vibethinker", "user-1")\n'
        "client.close()\n"
        'out["assignment"] = [a.variant, a.reason, a.error_code]\n'
        'out["after_assign"] = state()\n'
    )
    assert set(out["after_testing"]["built"]) <= BUILT_AT_IMPORT
    assert out["assignment"][2] is None
    assert out["assignment"][0] in {"stable", "canary"}
    assert "FlagDocument" in out["after_assign"]["built"]


def test_configure_telemetry_is_imported_on_first_use_and_the_otel_sdk_later_still() -> None:
    """`import vibesdk` loads neither configure_telemetry's module nor the OpenTelemetry SDK."""
    out = _probe(
        "f = vibesdk.configure_telemetry\n"
        'out["after_access"] = state()\n'
        'out["same"] = f is sys.modules[' + repr(TELEMETRY_SETUP) + "].configure_telemetry\n"
        'out["in_dir"] = "configure_telemetry" in dir(vibesdk)\n'
    )
    assert out["after_import"]["setup"] is False
    assert out["after_import"]["otel_sdk"] is False
    assert out["after_access"]["setup"] is True
    assert out["after_access"]["otel_sdk"] is False  # only calling it imports the SDK
    assert out["same"] is True
    assert out["in_dir"] is True


def test_a_first_assign_installs_no_global_otel_provider() -> None:
    """Using a client leaves OpenTelemetry's global providers unset (the API's proxies)."""
    out = _probe(
        "from opentelemetry import metrics, trace\n"
        "from vibesdk.testing import InMemoryFlagSource, make_document\n"
        "client = vibesdk.Client(flag_source=InMemoryFlagSource(make_document()))\n"
        'client.assign("vibethinker", "user-1")\n'
        "client.close()\n"
        'out["providers"] = [type(trace.get_tracer_provider()).__name__,'
        " type(metrics.get_meter_provider()).__name__]\n"
    )
    assert out["providers"] == ["ProxyTracerProvider", "_ProxyMeterProvider"]


def test_an_unknown_attribute_still_raises_attribute_error() -> None:
    """The lazy look-up answers only for its own names."""
    out = _probe(
        'try:\n    vibesdk.Clinet\nexcept AttributeError as exc:\n    out["error"] = str(exc)\n'
    )
    assert out["error"] == "module 'vibesdk' has no attribute 'Clinet'"
