"""What the two distributions ship: a lean SDK wheel, and the ops side (``vibe``, the demo).

The wheels are built offline from the checkout (``pip wheel --no-deps --no-build-isolation``,
hatchling from requirements-dev.txt) and read as zip files; the demo's example files are
then looked up from an installed copy outside the checkout. Both carry one version (written
once, in vibesdk/__init__.py), the Apache-2.0 LICENSE and a py.typed marker. The tests that
build wheels are marked ``wheels`` (``pytest --fast`` leaves them out).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
import zipfile
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path

import pytest

import vibesdk
from vibesdk.testing import FakeBackend, make_document, make_flag

if sys.version_info >= (3, 11):
    import tomllib
else:  # hatchling, which builds the wheels here, brings tomli along before 3.11
    import tomli as tomllib

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


def _headers(wheel: Path) -> Message:
    """The wheel's METADATA: Version, Requires-Dist, License-Expression, ..."""
    with zipfile.ZipFile(wheel) as zf:
        (meta,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        return HeaderParser().parsestr(zf.read(meta).decode())


def _metadata(wheel: Path) -> tuple[list[str], list[str], str]:
    """The wheel's file names, its Requires-Dist lines and its entry_points.txt ('' if none)."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        points = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entry_points = zf.read(points[0]).decode() if points else ""
    return names, _headers(wheel).get_all("Requires-Dist") or [], entry_points


def _name(requirement: str) -> str:
    for stop in "<>=!~[;( ":
        requirement = requirement.split(stop, 1)[0]
    return requirement.lower()


@pytest.mark.wheels
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


@pytest.mark.wheels
def test_sdk_wheel_requires_what_an_app_imports_and_the_otlp_exporter(
    wheels: dict[str, Path],
) -> None:
    """Requires-Dist: the runtime set, OTLP/HTTP included without extras; no PyYAML, no server;
    the extras with requirements are openfeature (the OpenFeature SDK: vibesdk.openfeature) and
    local (llama-cpp-python: provider llama-cpp-python, a model in the app's process)."""
    _, requires, _ = _metadata(wheels["sdk"])
    unconditional = {_name(r) for r in requires if "extra ==" not in r}
    assert unconditional == SDK_REQUIRES
    extras = sorted(_name(r) for r in requires if "extra ==" in r)
    assert extras == ["llama-cpp-python", "openfeature-sdk"]


@pytest.mark.wheels
def test_server_wheel_carries_vibe_and_the_demo_files(wheels: dict[str, Path]) -> None:
    """vibesdk-server's wheel: the `vibe` console script and a copy of examples/ for the demo."""
    names, requires, entry_points = _metadata(wheels["server"])
    assert "vibe = vibesdk_server._vibe.main:main" in entry_points
    assert "pyyaml" in {_name(r) for r in requires}
    # The evaluation's shipped golden set and the sandbox's launcher and runner (run as files).
    for shipped_file in ("data/golden.jsonl", "_sandbox_launcher.py", "_sandbox_runner.py"):
        assert f"vibesdk_server/_eval/{shipped_file}" in names
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


@pytest.mark.wheels
def test_both_wheels_carry_the_one_version(wheels: dict[str, Path]) -> None:
    """Both wheels' Version is vibesdk.__version__ (vibesdk_server's too), and the server wheel
    requires exactly that vibesdk."""
    import vibesdk_server

    version = vibesdk.__version__
    assert vibesdk_server.__version__ == version
    for wheel in wheels.values():
        assert _headers(wheel)["Version"] == version, wheel.name
        assert wheel.name.split("-")[1] == version
    _, requires, _ = _metadata(wheels["server"])
    assert [r for r in requires if _name(r) == "vibesdk"] == [f"vibesdk=={version}"]


def test_the_version_is_written_once() -> None:
    """Neither pyproject.toml states a version: both read vibesdk/__init__.py, the one tracked
    Python file that assigns a ``__version__`` string."""
    source = ROOT / "vibesdk" / "__init__.py"
    for project_dir in (ROOT, ROOT / "server"):
        config = tomllib.loads((project_dir / "pyproject.toml").read_text(encoding="utf-8"))
        assert "version" not in config["project"], project_dir
        assert "version" in config["project"]["dynamic"], project_dir
        version_file = config["tool"]["hatch"]["version"]["path"]
        assert (project_dir / version_file).resolve() == source, project_dir
    tracked = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assigns = re.compile(r"^__version__\s*(:[^=]*)?=\s*[\"']", re.MULTILINE)
    written = [p for p in tracked if assigns.search((ROOT / p).read_text(encoding="utf-8"))]
    assert written == ["vibesdk/__init__.py"]


def test_the_server_pin_on_vibesdk_is_made_not_written() -> None:
    """server/hatch_build.py adds ``vibesdk==<version>`` to the dependencies pyproject.toml lists,
    and refuses a vibesdk requirement written there by hand, saying what to fix."""
    spec = importlib.util.spec_from_file_location("hatch_build", ROOT / "server" / "hatch_build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    listed = ["fastapi>=0.110,<1", "pyyaml>=6,<7"]
    metadata: dict[str, object] = {"version": "1.2.3"}
    module.VibesdkPinHook(str(ROOT / "server"), {"dependencies": listed}).update(metadata)
    assert metadata["dependencies"] == [*listed, "vibesdk==1.2.3"]
    hand_written = {"dependencies": [*listed, "VibeSDK >= 0.1"]}
    with pytest.raises(ValueError, match=r"^server/pyproject\.toml: remove vibesdk from "):
        module.VibesdkPinHook(str(ROOT / "server"), hand_written).update(metadata)


@pytest.mark.wheels
def test_both_wheels_ship_the_license_and_py_typed(wheels: dict[str, Path]) -> None:
    """Each wheel carries the repository's Apache-2.0 LICENSE (server/LICENSE is the same text)
    and its package's py.typed marker."""
    text = (ROOT / "LICENSE").read_bytes()
    assert text.lstrip().startswith(b"Apache License\n"), text[:80]
    assert b"Version 2.0, January 2004" in text
    assert (ROOT / "server" / "LICENSE").read_bytes() == text
    for key, package in (("sdk", "vibesdk"), ("server", "vibesdk_server")):
        assert _headers(wheels[key])["License-Expression"] == "Apache-2.0"
        with zipfile.ZipFile(wheels[key]) as zf:
            names = zf.namelist()
            shipped = [n for n in names if re.search(r"\.dist-info/licenses/LICENSE$", n)]
            assert [zf.read(n) for n in shipped] == [text], names
        assert f"{package}/py.typed" in names


def test_every_test_that_builds_the_wheels_is_marked_so() -> None:
    """``pytest --fast`` leaves out the wheel builds: each test here that takes the ``wheels``
    fixture is marked ``wheels``."""
    tests = {n: f for n, f in globals().items() if n.startswith("test_") and callable(f)}
    builders = [n for n, f in tests.items() if "wheels" in inspect.signature(f).parameters]
    assert len(builders) >= 5
    unmarked = [
        n for n in builders if "wheels" not in {m.name for m in getattr(tests[n], "pytestmark", [])}
    ]
    assert unmarked == []


@pytest.mark.wheels
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
