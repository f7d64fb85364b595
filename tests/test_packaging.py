"""What the two distributions ship: a lean SDK wheel, and the ops side (``vibe``, the demo).

The wheels are built offline from the checkout (``pip wheel --no-deps --no-build-isolation``,
hatchling from requirements-dev.txt) and read as zip files; the demo's example files are
then looked up from an installed copy outside the checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import pytest

from vibesdk.testing import FakeBackend, make_document, make_flag

ROOT = Path(__file__).resolve().parents[1]

#: Everything `pip install vibesdk` brings along: what an app imports, nothing for ops.
SDK_REQUIRES = {
    "httpx",
    "mmh3",
    "opentelemetry-api",
    "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry-sdk",
    "pydantic",
    "pydantic-settings",
    "sniffio",
    "tenacity",
}


def _pip(*args: str) -> None:
    """Run this interpreter's pip offline (nothing comes from an index)."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args, "--no-index", "--disable-pip-version-check", "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _build(project: Path, out: Path) -> Path:
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(project))
    name = "vibesdk_server" if project.name == "server" else "vibesdk"
    (wheel,) = out.glob(f"{name}-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    return {"sdk": _build(ROOT, out), "server": _build(ROOT / "server", out)}


def _metadata(wheel: Path) -> tuple[list[str], list[str], str]:
    """The wheel's file names, its Requires-Dist lines and its entry_points.txt ('' if none)."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        headers = HeaderParser().parsestr(zf.read(meta).decode())
        points = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entry_points = zf.read(points[0]).decode() if points else ""
    return names, headers.get_all("Requires-Dist") or [], entry_points


def _name(requirement: str) -> str:
    for stop in "<>=!~[;( ":
        requirement = requirement.split(stop, 1)[0]
    return requirement.lower()


def test_sdk_wheel_holds_the_sdk_and_nothing_for_ops(wheels: dict[str, Path]) -> None:
    """vibesdk's wheel: vibesdk/ only; no CLI, no demo, no YAML, no console script."""
    names, _, entry_points = _metadata(wheels["sdk"])
    package = [n for n in names if ".dist-info/" not in n]
    assert package, names
    assert [n for n in package if not n.startswith("vibesdk/")] == []
    ops = [
        n
        for n in package
        if n.startswith("vibesdk/_cli/") or "demo" in n or n.endswith((".yaml", ".yml"))
    ]
    assert ops == []
    assert "vibesdk/py.typed" in names
    assert "console_scripts" not in entry_points


def test_sdk_wheel_requires_what_an_app_imports_and_the_otlp_exporter(
    wheels: dict[str, Path],
) -> None:
    """Requires-Dist: the runtime set, OTLP/HTTP included without extras; no PyYAML, no server;
    the one extra with requirements is openfeature (the OpenFeature SDK: vibesdk.openfeature)."""
    _, requires, _ = _metadata(wheels["sdk"])
    unconditional = {_name(r) for r in requires if "extra ==" not in r}
    assert unconditional == SDK_REQUIRES
    assert [_name(r) for r in requires if "extra ==" in r] == ["openfeature-sdk"]


def test_server_wheel_carries_vibe_and_the_demo_files(wheels: dict[str, Path]) -> None:
    """vibesdk-server's wheel: the `vibe` console script and a copy of examples/ for the demo."""
    names, requires, entry_points = _metadata(wheels["server"])
    assert "vibe = vibesdk_server._vibe.main:main" in entry_points
    assert "pyyaml" in {_name(r) for r in requires}
    data = "vibesdk_server/_vibe/demo_data/"
    shipped = sorted(n.removeprefix(data) for n in names if n.startswith(data))
    tracked = subprocess.run(
        ["git", "ls-files", "flags.yaml", "prompts", "product_app"],
        cwd=ROOT / "examples",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert shipped == sorted(tracked)


def test_vibe_demo_finds_its_files_in_an_installed_copy(
    wheels: dict[str, Path], tmp_path: Path
) -> None:
    """Installed from the wheels (not editable), outside the checkout, the demo's defaults
    point at the installed example files, which are the checkout's."""
    site = tmp_path / "site"
    _pip("install", "--no-deps", "--target", str(site), str(wheels["sdk"]), str(wheels["server"]))
    code = (
        "import json, vibesdk, vibesdk_server\n"
        "from vibesdk_server._vibe.demo import parse_args\n"
        "o = parse_args([])\n"
        "print(json.dumps([vibesdk.__file__, vibesdk_server.__file__,"
        " str(o.flags_file), str(o.examples)]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    sdk, server, flags, examples = (Path(p) for p in json.loads(done.stdout))
    assert site in sdk.parents
    assert site in server.parents
    assert site in flags.parents
    assert flags.read_bytes() == (ROOT / "examples" / "flags.yaml").read_bytes()
    for name in ("product_app/app.py", "prompts/assistant-stable.txt"):
        assert (examples / name).read_bytes() == (ROOT / "examples" / name).read_bytes()


def test_a_chat_without_configure_telemetry_installs_no_global_provider(
    stable: FakeBackend, tmp_path: Path
) -> None:
    """The SDK never sets OpenTelemetry's global providers, nor loads the OTel SDK, by itself.

    A fresh process chats through a Client with no configure_telemetry() call: afterwards the
    global tracer and meter providers are still OpenTelemetry's proxies, and no module of
    opentelemetry.sdk or of an exporter was imported."""
    url = stable.url
    bootstrap = tmp_path / "flags.json"
    document = make_document(make_flag(stable_url=url, canary_url=url, rollout_bps=5_000))
    bootstrap.write_text(document.model_dump_json())
    code = (
        "import json, sys, vibesdk\n"
        "from opentelemetry import metrics, trace\n"
        f"with vibesdk.Client(bootstrap={str(bootstrap)!r}) as client:\n"
        "    for user in ('u1', 'u2', 'u3', 'u4'):\n"
        "        client.chat('vibethinker', user, [{'role': 'user', 'content': 'hi'}])\n"
        "print(json.dumps({\n"
        "    'tracer_provider': type(trace.get_tracer_provider()).__name__,\n"
        "    'meter_provider': type(metrics.get_meter_provider()).__name__,\n"
        "    'otel_sdk': sorted(m for m in sys.modules\n"
        "        if m.startswith(('opentelemetry.sdk', 'opentelemetry.exporter'))),\n"
        "}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "VIBESDK_"))}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen == {
        "tracer_provider": "ProxyTracerProvider",
        "meter_provider": "_ProxyMeterProvider",
        "otel_sdk": [],
    }
