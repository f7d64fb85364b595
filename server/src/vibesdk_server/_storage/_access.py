"""Admin tokens and SDK keys in the database (stored as SHA-256 only)."""

from __future__ import annotations

from typing import Any

from vibesdk_server._domain._errors import ConflictError, InvalidError, NotFoundError
from vibesdk_server._tokens import Principal, hash_secret, new_token, parse_token, secret_matches

from ._base import StoreBase, utcnow

__all__ = ["TokenStore"]


class TokenStore(StoreBase):
    """Create tokens and map a presented secret to its principal."""

    # -- tokens --------------------------------------------------------------------------------
    def create_token(
        self, *, kind: str, name: str, environment: str | None, created_by: str
    ) -> str:
        """Store a new admin token or SDK key (hashed) and return the secret, shown once."""
        if kind not in ("admin", "sdk"):
            raise InvalidError(f"token kind must be admin or sdk, got {kind!r}")
        if kind == "sdk" and not environment:
            raise InvalidError("an SDK key belongs to one environment; pass --env NAME")
        env = environment if kind == "sdk" else ""
        token_id, secret = new_token(kind)
        with self._tx(write=True) as tx:
            if kind == "sdk":
                self._env_row(tx, env or "")
            clash = tx.one(
                "SELECT 1 FROM tokens WHERE kind = ? AND environment = ? AND name = ?",
                (kind, env, name),
            )
            if clash:
                where = f" in environment {env!r}" if env else ""
                raise ConflictError(
                    f"{'an' if kind == 'admin' else 'a'} {kind} token named {name!r} already"
                    f" exists{where}; choose another name"
                )
            tx.run(
                "INSERT INTO tokens (id, kind, name, environment, secret_hash, created_at,"
                " created_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (token_id, kind, name, env, hash_secret(secret), utcnow(), created_by),
            )
            self._audit(
                tx,
                actor=created_by,
                action=f"{kind}_token_create",
                environment=env or None,
                reason=None,
                after={"name": name, "kind": kind},
            )
        return secret

    def authenticate(self, secret: str) -> Principal | None:
        """The principal for a presented secret, or None (constant-time hash comparison)."""
        token_id = parse_token(secret)
        if token_id is None:
            return None
        with self._tx() as tx:
            row = tx.one(
                "SELECT kind, name, environment, secret_hash FROM tokens WHERE id = ?",
                (token_id,),
            )
        if row is None or not secret_matches(secret, row[3]):
            return None
        return Principal(kind=row[0], name=row[1], environment=row[2] or None)

    def list_tokens(self) -> list[dict[str, Any]]:
        """Every token's public part: id, kind, name, environment, creation (never a hash)."""
        with self._tx() as tx:
            rows = tx.all(
                "SELECT id, kind, name, environment, created_at, created_by FROM tokens"
                " ORDER BY kind, environment, name"
            )
        names = ("id", "kind", "name", "environment", "created_at", "created_by")
        return [{**dict(zip(names, r, strict=True)), "environment": r[3] or None} for r in rows]

    def revoke_token(self, *, kind: str, name: str, environment: str | None, actor: str) -> None:
        """Delete a token; servers stop accepting it within the auth cache TTL (seconds)."""
        env = environment if kind == "sdk" else ""
        with self._tx(write=True) as tx:
            row = tx.one(
                "SELECT id FROM tokens WHERE kind = ? AND environment = ? AND name = ?",
                (kind, env or "", name),
            )
            if row is None:
                where = f" in environment {env!r}" if env else ""
                raise NotFoundError(
                    f"no {kind} token named {name!r}{where}; see vibe-server token list"
                )
            tx.run("DELETE FROM tokens WHERE id = ?", (row[0],))
            self._audit(
                tx,
                actor=actor,
                action=f"{kind}_token_revoke",
                environment=env or None,
                reason=None,
                before={"name": name, "kind": kind},
            )
