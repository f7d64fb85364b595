"""The flag server's admin API as the CLI calls it, errors mapped to exit codes.

Every failure becomes a :class:`CliError` whose one-line message says what went
wrong and what to do; the server's own ``detail`` is kept because it names the
field, flag or version at fault.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import httpx

from .errors import CliError, ExitCode
from .settings import CliSettings

__all__ = ["AdminApi", "describe_detail", "error_for_response"]

_USER_AGENT = "vibe-cli"


class AdminApi:
    """A small synchronous client of ``/v1/admin/...``; ``last_elapsed_s`` times the last call."""

    def __init__(
        self,
        settings: CliSettings,
        *,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if settings.admin_token is None:
            raise CliError.usage(
                "no admin token: set VIBESDK_ADMIN_TOKEN or pass --token "
                "(create one with: vibe-server token create --db DB --name YOU --kind admin)"
            )
        self.settings = settings
        self.timeout_s = timeout_s
        self.last_elapsed_s = 0.0
        self._http = httpx.Client(
            base_url=settings.server_url,
            timeout=timeout_s,
            transport=transport,
            headers={
                "Authorization": f"Bearer {settings.admin_token.get_secret_value()}",
                "User-Agent": _USER_AGENT,
            },
        )

    def close(self) -> None:
        self._http.close()

    def env_path(self, *parts: str | int, environment: str | None = None) -> str:
        """``/v1/admin/environments/{env}/part/...`` with every segment URL-quoted."""
        env = self.settings.environment if environment is None else environment
        segments = ["environments", env, *(str(p) for p in parts)]
        return "/v1/admin/" + "/".join(quote(s, safe="") for s in segments)

    def get(self, path: str, *, params: dict[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, json=body or {})

    def request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """Send one request; return the decoded JSON body or raise :class:`CliError`."""
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        started = time.perf_counter()
        try:
            response = self._http.request(method, path, json=json, params=clean)
        except httpx.TimeoutException as exc:
            raise CliError(
                f"the flag server at {self.settings.server_url} did not answer within "
                f"{self.timeout_s:g} s — is it overloaded? retry, or raise --timeout",
                ExitCode.UNREACHABLE,
            ) from exc
        except httpx.TransportError as exc:
            raise CliError(
                f"cannot reach the flag server at {self.settings.server_url}: {_reason(exc)} — "
                "is vibe-server running? set VIBESDK_SERVER_URL or pass --server",
                ExitCode.UNREACHABLE,
            ) from exc
        finally:
            self.last_elapsed_s = time.perf_counter() - started
        if response.is_success:
            if not response.content:
                return None
            try:
                return response.json()
            except ValueError as exc:
                raise CliError(
                    f"the flag server at {self.settings.server_url} sent a body that is not JSON "
                    f"for {method} {path} — is VIBESDK_SERVER_URL a vibe-server?",
                    ExitCode.UNREACHABLE,
                ) from exc
        raise error_for_response(response, self.settings.server_url)


def _reason(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused"
    if "name or service not known" in lowered or "nodename nor servname" in lowered:
        return "unknown host name"
    return text


def describe_detail(response: httpx.Response) -> str:
    """The server's ``detail`` as one line (FastAPI's list-of-errors form included)."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return " ".join(text.split())[:200] or response.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                parts.append(
                    f"{loc}: {item.get('msg', item)}" if loc else str(item.get("msg", item))
                )
            else:
                parts.append(str(item))
        detail = "; ".join(parts)
    if detail is None:
        detail = response.reason_phrase
    return " ".join(str(detail).split())


def error_for_response(response: httpx.Response, server_url: str) -> CliError:
    """Map an error status to the exit code and a message that says what to do."""
    status = response.status_code
    detail = describe_detail(response)
    if status == 401:
        return CliError(
            f"the flag server refused the admin token ({detail}) — "
            "check VIBESDK_ADMIN_TOKEN or --token",
            ExitCode.REFUSED,
        )
    if status == 403:
        # A token of the wrong kind is fixed by another token; any other refusal
        # (approving one's own prompt) already says what to do, and a token hint
        # would send the operator the wrong way.
        hint = " — check VIBESDK_ADMIN_TOKEN or --token" if "token" in detail else ""
        return CliError(f"not allowed: {detail}{hint}", ExitCode.REFUSED)
    if status == 404:
        return CliError(f"not found: {detail}", ExitCode.NOT_FOUND)
    if status in (409, 412):
        # Only a stale version has a "change that came first"; other conflicts (a name
        # that exists, a prompt already reviewed) say what to do in the server's detail.
        stale = status == 412 or "stale version" in detail
        hint = " — `vibe history` shows the change that came first" if stale else ""
        return CliError(f"conflict: {detail}{hint}", ExitCode.CONFLICT, detail=detail)
    if status >= 500:
        return CliError(
            f"the flag server at {server_url} failed (HTTP {status}: {detail}) — "
            "check `vibe history` to see whether it was applied, and the vibe-server log",
            ExitCode.UNREACHABLE,
        )
    return CliError(f"refused (HTTP {status}): {detail}", ExitCode.REFUSED)
