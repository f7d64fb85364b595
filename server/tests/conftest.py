"""Fixtures for the flag server's own tests: every integration test runs on SQLite and PostgreSQL.

The fixtures of vibesdk_server.pytest_plugin (flag_server, flag_server_factory,
postgres_url, ...) are loaded through the package's pytest11 entry point.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from vibesdk_server.testing import (
    FlagServer,
    FlagServerProcess,
    drop_postgres_schema,
    postgres_schema_url,
)

import vibesdk
from vibesdk.testing import FakeBackend, make_flag

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite path, or a new PostgreSQL schema (dropped afterwards)."""
    if request.param == "sqlite":
        yield str(tmp_path / "vibesdk.db")
        return
    base = request.getfixturevalue("postgres_url")
    url = postgres_schema_url(base)
    yield url
    drop_postgres_schema(base, url)


@pytest.fixture(scope="session", params=BACKENDS)
def backend_process(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FlagServerProcess]:
    """One real server per back end for the session (heartbeat 0.5 s so pings are seen; the
    guard loop, and the evaluation scheduler, look every 0.5 s so guarded releases act and
    scheduled runs start within a test)."""
    if request.param == "sqlite":
        db = str(tmp_path_factory.mktemp("sqlite") / "vibesdk.db")
    else:
        db = postgres_schema_url(request.getfixturevalue("postgres_url"))
    with FlagServerProcess(
        db, heartbeat_s=0.5, guard_interval_s=0.5, extra_args=["--eval-schedule-check-s", "0.5"]
    ) as server:
        yield server
    if request.param == "postgres":
        drop_postgres_schema(request.getfixturevalue("postgres_url"), db)


@pytest.fixture
def server(backend_process: FlagServerProcess) -> FlagServer:
    """A fresh environment (own SDK key) on the real server of the current back end."""
    return backend_process.new_environment()


@pytest.fixture
def vibe(
    server: FlagServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    """Run ``vibe ARGS`` against the server: (exit code, stdout, stderr)."""
    from vibesdk_server._vibe.main import main

    monkeypatch.setenv("VIBESDK_SERVER_URL", server.url)
    monkeypatch.setenv("VIBESDK_ADMIN_TOKEN", server.admin_token)
    monkeypatch.setenv("VIBESDK_ENVIRONMENT", server.environment)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture
def logged_canary_calls(server: FlagServer) -> Callable[..., list[vibesdk.ChatResult]]:
    """A real app's calls of flag vibethinker, every user on the canary and every call logged
    (log_share 1): ``run(questions, answer=..., reports=[(index, reason), ...])`` asks each
    question (user ``u<index>``), reports those answers in that order with ``client.report``,
    and closes the client, which sends what is queued (the caller waits for it to arrive)."""

    def run(
        questions: Sequence[str],
        *,
        answer: str = "The answer is \\boxed{4}.",
        reports: Sequence[tuple[int, str]] = (),
    ) -> list[vibesdk.ChatResult]:
        with (
            FakeBackend(default="stable answer") as stable,
            FakeBackend(default=answer) as canary,
        ):
            server.apply(
                make_flag(
                    stable_url=stable.url,
                    canary_url=canary.url,
                    rollout_bps=10_000,
                    log_share={"canary": 1.0},
                )
            )
            client = vibesdk.Client(server_url=server.url, sdk_key=server.sdk_key, cache_dir="")
            try:
                assert client.wait_until_ready(15)
                results = [
                    client.chat("vibethinker", f"u{i}", [{"role": "user", "content": q}])
                    for i, q in enumerate(questions)
                ]
                for index, reason in reports:
                    client.report(results[index].trace_id, reason)
            finally:
                client.close()
        return results

    return run
