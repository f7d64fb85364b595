"""What every command gets: settings, the API client (made on first use) and the output streams."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeAlias

import httpx

from .api import AdminApi
from .errors import CliError, ExitCode
from .settings import CliSettings

__all__ = ["Context", "Subparsers"]

# What each command module's register() receives from build_parser().
Subparsers: TypeAlias = "argparse._SubParsersAction[Any]"


@dataclass
class Context:
    """Per-invocation state; commands print through it so tests can capture everything."""

    settings: CliSettings
    json_output: bool = False
    timeout_s: float = 10.0
    transport: httpx.BaseTransport | None = None
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    ask: Callable[[str], str] = input
    _api: AdminApi | None = None

    @property
    def api(self) -> AdminApi:
        """The admin API client; raises a usage error when no admin token is set."""
        if self._api is None:
            self._api = AdminApi(self.settings, timeout_s=self.timeout_s, transport=self.transport)
        return self._api

    @property
    def environment(self) -> str:
        return self.settings.environment

    def environment_state(self) -> dict[str, Any]:
        """``GET /v1/admin/environments/{env}``; a missing environment says how to create it."""
        try:
            state: dict[str, Any] = self.api.get(self.api.env_path())
        except CliError as exc:
            if exc.code != ExitCode.NOT_FOUND:
                raise
            raise CliError(
                f"no environment {self.environment!r} on {self.settings.server_url}: create it "
                f"with `vibe env create {self.environment}`, or pick another with --env "
                "(VIBESDK_ENVIRONMENT); `vibe env list` shows them",
                ExitCode.NOT_FOUND,
            ) from exc
        return state

    def close(self) -> None:
        if self._api is not None:
            self._api.close()

    def out(self, text: str = "") -> None:
        print(text, file=self.stdout)

    def emit_json(self, data: Any) -> None:
        print(json.dumps(data, indent=2, ensure_ascii=False), file=self.stdout)

    def interactive(self) -> bool:
        """Whether a person can answer a prompt (stdin is a terminal)."""
        try:
            return self.stdin.isatty()
        except (AttributeError, ValueError):
            return False
