"""Admin tokens and SDK keys: generated with 256 bits of randomness, stored as SHA-256.

A token reads ``vibe_<kind>_<id>_<secret>``: ``id`` (public, 12 hex digits)
finds the row, and the SHA-256 of the whole token is compared with
:func:`hmac.compare_digest`. A fast hash is enough because the secret is
random, not a password; the database never holds a usable secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

__all__ = ["Principal", "hash_secret", "new_token", "parse_token", "secret_matches"]

_TOKEN_RE = re.compile(r"^vibe_(admin|sdk)_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True)
class Principal:
    """Who is calling: an admin token (``environment`` None) or an SDK key of one environment."""

    kind: str
    name: str
    environment: str | None


def new_token(kind: str) -> tuple[str, str]:
    """A fresh ``(id, secret)``; the secret embeds the id."""
    token_id = secrets.token_hex(6)
    return token_id, f"vibe_{kind}_{token_id}_{secrets.token_urlsafe(32)}"


def parse_token(secret: str) -> str | None:
    """The token id inside ``secret``, or None when it is not shaped like one of ours."""
    match = _TOKEN_RE.match(secret)
    return match.group(2) if match else None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)
