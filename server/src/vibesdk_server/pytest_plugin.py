"""Pytest fixtures that start the real flag server (registered as a ``pytest11`` plugin).

Installing vibesdk-server makes these fixtures available to every test suite:

- ``flag_server_process`` (session): one real ``vibe-server`` on SQLite.
- ``flag_server`` (function): a fresh, isolated environment with its own SDK key
  on that server -- a :class:`~vibesdk_server.testing.FlagServer`
  (``.url``, ``.sdk_key``, ``.admin_token``, ``.environment``, ``.apply()``,
  ``.rollout()``, ``.rollback()``, ...).
- ``flag_server_factory`` (function): ``factory(db=None, **kwargs)`` starts another
  process (stopped at teardown) -- for restarts, kills and replicas.
- ``postgres_url`` (session): ``VIBESDK_TEST_POSTGRES_URL``; skips when unset,
  except under ``CI=true``, where a missing database fails the test instead.
- ``postgres_schema`` (function): a URL of a fresh schema in that database.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .testing import FlagServer, FlagServerProcess, drop_postgres_schema, postgres_schema_url

__all__ = [
    "flag_server",
    "flag_server_factory",
    "flag_server_process",
    "postgres_schema",
    "postgres_url",
]


@pytest.fixture(scope="session")
def flag_server_process() -> Iterator[FlagServerProcess]:
    """One real flag server (SQLite, temporary directory) for the whole session."""
    with FlagServerProcess(heartbeat_s=15.0) as server:
        yield server


@pytest.fixture
def flag_server(flag_server_process: FlagServerProcess) -> FlagServer:
    """A fresh environment with its own SDK key on the session's real flag server."""
    return flag_server_process.new_environment()


@pytest.fixture
def flag_server_factory() -> Iterator[Callable[..., FlagServerProcess]]:
    """Start extra real servers: ``factory(db=None, **kwargs)``; all stopped at teardown."""
    started: list[FlagServerProcess] = []

    def factory(db: Any = None, **kwargs: Any) -> FlagServerProcess:
        server = FlagServerProcess(db, **kwargs)
        started.append(server)
        return server.start()

    yield factory
    for server in reversed(started):
        server.close()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test PostgreSQL (``VIBESDK_TEST_POSTGRES_URL``, set by .ci/run via .ci/postgres.sh)."""
    url = os.environ.get("VIBESDK_TEST_POSTGRES_URL")
    if not url:
        message = "VIBESDK_TEST_POSTGRES_URL is not set; start one with .ci/postgres.sh"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: PostgreSQL tests must run)", pytrace=False)
        pytest.skip(message)
    return url


@pytest.fixture
def postgres_schema(postgres_url: str) -> Iterator[str]:
    """A libpq URL whose search_path is a fresh, empty schema (dropped afterwards)."""
    url = postgres_schema_url(postgres_url)
    yield url
    drop_postgres_schema(postgres_url, url)
