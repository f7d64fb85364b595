"""Errors the flag server maps to HTTP statuses; every message says what to fix, on one line."""

from __future__ import annotations

__all__ = [
    "BadRequestError",
    "ConflictError",
    "ForbiddenError",
    "InvalidError",
    "NotFoundError",
    "ServerError",
    "UnauthorizedError",
]


class ServerError(Exception):
    """A refused request; ``status`` is the HTTP status, ``str(exc)`` the one-line detail."""

    status = 400

    def __init__(self, detail: str) -> None:
        super().__init__(" ".join(detail.split()))

    @property
    def detail(self) -> str:
        return str(self)


class BadRequestError(ServerError):
    """The request could not be read (malformed JSON/YAML, bad header)."""

    status = 400


class UnauthorizedError(ServerError):
    """No token, or one the server does not know."""

    status = 401


class ForbiddenError(ServerError):
    """A valid token of the wrong kind or for another environment."""

    status = 403


class NotFoundError(ServerError):
    """An unknown environment, flag, version or prompt."""

    status = 404


class ConflictError(ServerError):
    """A stale ``expected_version``, or a name that already exists."""

    status = 409


class InvalidError(ServerError):
    """Well-formed but not acceptable: out-of-range numbers, unapproved templates, ..."""

    status = 422
