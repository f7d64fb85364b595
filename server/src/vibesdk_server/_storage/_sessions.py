"""Signed-in sessions of the web dashboard (``/ui``): an admin token exchanged for a cookie.

The cookie holds a random session id; the store keeps only its SHA-256, with the token's
name (the actor of every action taken in the session), the session's CSRF token and its
expiry. Signing out deletes the row; so does revoking nothing else: a session outlives
the token it was made with only until it expires.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from ._base import StoreBase, rfc3339, utcnow

__all__ = ["UiSession", "UiSessionStore"]


@dataclass(frozen=True)
class UiSession:
    """A signed-in dashboard session."""

    actor: str
    csrf: str
    expires_at: str


class UiSessionStore(StoreBase):
    """Create, find and end dashboard sessions."""

    def create_ui_session(self, actor: str, ttl_s: float) -> tuple[str, UiSession]:
        """A new session for ``actor``: its cookie value (shown once) and the session."""
        secret = secrets.token_urlsafe(32)
        expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=ttl_s)
        session = UiSession(actor, secrets.token_urlsafe(32), rfc3339(expires))
        with self._tx(write=True) as tx:
            tx.run("DELETE FROM ui_sessions WHERE expires_at < ?", (utcnow(),))
            tx.run(
                "INSERT INTO ui_sessions (id_hash, actor, csrf, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (_digest(secret), actor, session.csrf, utcnow(), session.expires_at),
            )
        return secret, session

    def ui_session(self, secret: str) -> UiSession | None:
        """The live session of a cookie value, or None (unknown, ended or expired)."""
        with self._tx() as tx:
            row = tx.one(
                "SELECT actor, csrf, expires_at FROM ui_sessions"
                " WHERE id_hash = ? AND expires_at > ?",
                (_digest(secret), utcnow()),
            )
        return None if row is None else UiSession(*row)

    def end_ui_session(self, secret: str) -> None:
        with self._tx(write=True) as tx:
            tx.run("DELETE FROM ui_sessions WHERE id_hash = ?", (_digest(secret),))


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
