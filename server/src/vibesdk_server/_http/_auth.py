"""Authentication as ASGI middleware, so no route can be reached without the right token.

Routes are classified by path, not by what each endpoint remembers to ask for:
``/healthz`` and the OpenAPI document/UI are public; the dashboard under ``/ui`` checks
its own session cookie (:mod:`vibesdk_server._ui`); everything under
``/v1/admin`` needs an admin token; everything else needs an SDK key (which
also selects the environment). A missing or unknown token is 401, a token of
the wrong kind 403 -- checked before the body is read.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
from fastapi import Request
from fastapi.security import HTTPBearer

from vibesdk_server._tokens import Principal

__all__ = ["PUBLIC_PATHS", "AuthMiddleware", "bearer", "principal", "required_kind"]

PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})

# Only documents the scheme in /openapi.json; AuthMiddleware does the checking.
bearer = HTTPBearer(auto_error=False, description="an admin token or an SDK key")

_CACHE_MAX = 10_000


def required_kind(path: str) -> str | None:
    """``admin``, ``sdk`` or None (public) for a request path."""
    if path in PUBLIC_PATHS:
        return None
    if path == "/ui" or path.startswith("/ui/"):
        return None  # the dashboard: its own session cookie, checked on every route but sign-in
    if path == "/v1/admin" or path.startswith("/v1/admin/"):
        return "admin"
    return "sdk"


def principal(request: Request) -> Principal:
    """The authenticated caller (set by :class:`AuthMiddleware`)."""
    found: Principal = request.state.principal
    return found


class AuthMiddleware:
    """Checks ``Authorization: Bearer`` on every non-public request."""

    def __init__(
        self,
        app: Any,
        authenticate: Callable[[str], Principal | None],
        fast_path: Callable[[Principal, Any, Any], Awaitable[bool]] | None = None,
        cache_ttl_s: float = 5.0,
    ) -> None:
        self.app = app
        # A revoked token keeps working at most this long on a running server.
        self._ttl = cache_ttl_s
        self._authenticate = authenticate
        self._fast_path = fast_path
        # Positive answers only, briefly: a new token works at once, and the hot
        # /v1/flags path skips the database.
        self._cache: dict[str, tuple[Principal, float]] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        need = required_kind(scope["path"])
        if need is None:
            await self.app(scope, receive, send)
            return
        secret = _bearer(scope)
        if secret is None:
            await _deny(
                send,
                401,
                "missing header Authorization: Bearer <token>; "
                + ("use an admin token" if need == "admin" else "use an SDK key"),
            )
            return
        who = await self._lookup(secret)
        if who is None:
            await _deny(
                send,
                401,
                "unknown or malformed token; check it, or create one with vibe-server token create",
            )
            return
        if who.kind != need:
            what = "an admin token" if need == "admin" else "an SDK key"
            await _deny(
                send,
                403,
                f"this route needs {what}, but the {who.kind} token {who.name!r} was sent",
            )
            return
        if self._fast_path is not None and await self._fast_path(who, scope, send):
            return
        scope.setdefault("state", {})["principal"] = who
        await self.app(scope, receive, send)

    async def _lookup(self, secret: str) -> Principal | None:
        digest = hashlib.sha256(secret.encode()).hexdigest()
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        who = await anyio.to_thread.run_sync(self._authenticate, secret)
        if who is not None and self._ttl > 0:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[digest] = (who, now + self._ttl)
        return who


def _bearer(scope: Any) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            text: str = bytes(value).decode("latin-1")
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


async def _deny(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
