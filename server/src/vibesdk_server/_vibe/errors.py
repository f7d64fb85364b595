"""Exit codes and the one error type the CLI's commands raise."""

from __future__ import annotations

import enum

__all__ = ["CliError", "ExitCode"]


class ExitCode(enum.IntEnum):
    """What ``vibe`` returns; scripts branch on these, so they never change."""

    OK = 0
    REFUSED = 1  # the server refused the request (4xx other than 404/409/412)
    USAGE = 2  # bad arguments, bad file, missing settings: nothing was sent
    CONFLICT = 3  # stale version (409/412): someone else changed it first
    UNREACHABLE = 4  # no answer, or the server failed (5xx)
    NOT_FOUND = 5  # unknown environment, flag, version, prompt


class CliError(Exception):
    """A failure to report as one line on stderr and an exit code."""

    def __init__(self, message: str, code: ExitCode, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = " ".join(message.split())
        self.code = code
        self.detail = detail  # the server's own words, when it answered

    @classmethod
    def usage(cls, message: str) -> CliError:
        return cls(message, ExitCode.USAGE)
