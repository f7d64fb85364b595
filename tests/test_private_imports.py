"""Nothing outside vibesdk/ imports a private module (or name) of vibesdk.

The server, its tests, the examples, the scripts, the benchmarks and the docs use vibesdk's
public modules only: ``vibesdk``, ``vibesdk.schema`` (the flag document: models, key pattern,
validation messages) and ``vibesdk.testing``. A grep over every tracked file, Python source,
notebooks, shell scripts and Markdown alike (code in strings counts too).

``WHITE_BOX`` names the files that still reach inside on purpose -- unit tests of the SDK's
internals and benchmarks that time or patch them -- each for a reason; the list may only
shrink: a file on it that no longer imports anything private fails too.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()  # its patterns match themselves
SUFFIXES = (".py", ".ipynb", ".sh", ".md")

PRIVATE = [
    # import vibesdk._x / from vibesdk._x.y import z / from vibesdk.testing._x import y
    re.compile(r"\b(?:from|import)\s+(vibesdk(?:\.\w+)*\._\w+)"),
    # from vibesdk import _x / from vibesdk.testing import (_x, ...)
    re.compile(r"\bfrom\s+(vibesdk(?:\.\w+)*\s+import\s+\(?\s*_(?!_)\w+)"),
    # importlib.import_module("vibesdk._x")
    re.compile(r"import_module\(\s*[\"'](vibesdk(?:\.\w+)*\._\w+)"),
]

#: Files that import vibesdk internals on purpose, and why.
WHITE_BOX = {
    # Unit tests of internals that have no public face: parsers, policies, caches, drivers.
    "tests/sources_harness.py": "drives the flag source internals",
    "tests/test_backend_bytes_fuzz.py": "fuzzes the backend response parsers",
    "tests/test_backend_misbehaving.py": "checks the backend error mapping",
    "tests/test_bad_input.py": "pins the VIBESDK_* variables other parts read",
    "tests/test_checks.py": "unit tests of the output checks' helpers",
    "tests/test_client_backends.py": "unit tests of the backend parsers",
    "tests/test_client_gate.py": "unit tests of the in-flight gate",
    "tests/test_client_resilience.py": "unit tests of the retry strategy",
    "tests/test_docs_flag_document.py": "compiles documents to check the page's claims",
    "tests/test_evaluation.py": "unit tests of the compiled evaluator",
    "tests/test_evaluation_paths.py": "every evaluation path against a reference evaluation",
    "tests/test_exposures.py": "unit tests of the exposure counter's bound and steps",
    "tests/test_instruments.py": "unit tests of the telemetry instruments",
    "tests/test_local_backend.py": "counts the in-process model's loads and generations",
    "tests/test_semconv.py": "pins the telemetry attribute names",
    "tests/test_sources_cache.py": "unit tests of the disk cache",
    "tests/test_sources_close.py": "unit tests of the flag sources",
    "tests/test_sources_lifecycle.py": "unit tests of the flag sources",
    "tests/test_sources_policy.py": "unit tests of the poll and reconnect policies",
    "tests/test_sources_server.py": "unit tests of the flag sources",
    "tests/test_sources_sse.py": "unit tests of the SSE parser",
    "tests/test_sources_store.py": "unit tests of the flag store",
    "tests/test_span_capture.py": "checks the capture against the instruments",
    "tests/test_telemetry_attributes.py": "pins the telemetry attribute names",
    "tests/test_telemetry_faults.py": "breaks the telemetry guard on purpose",
    "tests/test_telemetry_setup.py": "checks the instruments rebinding",
    # Benchmarks that time or patch the internals they measure.
    "benchmarks/assign/run.py": "times the compiled evaluator alone",
    "benchmarks/chat_overhead/ab_changes.py": "swaps in old versions of internal modules",
    "benchmarks/chat_overhead/breakdown.py": "patches the client internals to time each step",
    "benchmarks/flag_propagation/clients.py": "holds many bare flag sources in one process",
    "benchmarks/quality_checks/run.py": "times the output checks' internals",
    # Documents the SDK's list of other parts' VIBESDK_* variables.
    "scripts/gen_settings_doc.py": "reads the SDK's list of other parts' variables",
}


def _private_imports() -> dict[str, list[str]]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    found: dict[str, list[str]] = {}
    for name in listed.split("\0"):
        if not name.endswith(SUFFIXES) or name.startswith("vibesdk/") or name == THIS:
            continue
        path = ROOT / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        hits = sorted({m.group(1) for pattern in PRIVATE for m in pattern.finditer(text)})
        if hits:
            found[name] = hits
    return found


def test_nothing_outside_vibesdk_imports_its_private_modules() -> None:
    """Outside vibesdk/, only the white-box files import vibesdk internals."""
    found = _private_imports()
    assert {k: v for k, v in found.items() if k not in WHITE_BOX} == {}


def test_the_white_box_list_only_shrinks() -> None:
    """Every file on WHITE_BOX still needs to be there (drop it once it uses public names)."""
    found = _private_imports()
    assert sorted(set(WHITE_BOX) - set(found)) == []
