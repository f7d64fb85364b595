"""Under CI=true no test of the SDK's suite may pass by being skipped.

A test skips when a real part it needs is missing on a developer's machine: the llama.cpp
build (server/llama/build.sh), the packaged models, vibesdk-server, the OTLP exporter. CI
installs all of them with scripts/install, so there a skip can only mean that something is
broken (a wrong path, a new interpreter, a llama.cpp upgrade): this hook turns each skip,
at collection or at run time, into a failure that keeps the skip's reason.

It also holds the fixtures that every client test shares: ``kind`` runs a test body once
against the blocking Client and once against the AsyncClient, and ``stable`` is a fake stable
backend on loopback.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from vibesdk.testing import FakeBackend

CI = os.environ.get("CI", "").lower() == "true"


def _fail_instead(report: Any) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    reason = reason.removeprefix("Skipped: ")
    report.longrepr = f"skipped under CI=true, where nothing may be missing: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None]:
    outcome = yield
    report = outcome.get_result()
    if CI and report.skipped and not hasattr(report, "wasxfail"):
        _fail_instead(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None]:
    outcome = yield
    report = outcome.get_result()
    if CI and report.skipped:
        _fail_instead(report)


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    """Which client the test body drives: "sync" (Client) or "async" (AsyncClient)."""
    return str(request.param)


@pytest.fixture
def stable() -> Iterator[FakeBackend]:
    """A fake stable backend on loopback that always answers "stable answer"."""
    with FakeBackend(default="stable answer") as backend:
        yield backend
