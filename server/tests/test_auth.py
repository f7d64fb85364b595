"""No token, no access: every route of the app, checked against the real server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from vibesdk_server._http._app import create_app
from vibesdk_server._http._auth import PUBLIC_PATHS, required_kind
from vibesdk_server._storage import open_store
from vibesdk_server.testing import FlagServer, FlagServerProcess

PARAMS = {
    "env": None,
    "key": "vibethinker",
    "version": "0",
    "prompt_id": "p",
    "incident_id": "1",
    "run_id": "1",
    "flag": "vibethinker",
}


def _walk(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:  # FastAPI >= 0.16x keeps included routers as one route
            yield from _walk(included.routes, prefix + route.include_context.prefix)
            continue
        methods = getattr(route, "methods", None) or {"GET"}
        for method in sorted(set(methods) - {"HEAD", "OPTIONS"}):
            yield method, prefix + route.path


def _routes(tmp_path: Path) -> list[tuple[str, str]]:
    """(method, path template) of every route the app serves, public ones included."""
    store = open_store(tmp_path / "routes.db")
    try:
        app = create_app(store)
        found = list(_walk(list(app.routes)))
        documented = {(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops}
    finally:
        store.close()
    assert documented <= set(found)
    return found


def _fill(path: str, environment: str) -> str:
    values = {**PARAMS, "env": environment}
    return re.sub(r"\{(\w+)\}", lambda m: str(values[m.group(1)]), path)


def test_every_route_is_public_admin_or_sdk(tmp_path: Path) -> None:
    """Only /healthz and the API docs are public; the rest need admin or SDK tokens.

    The dashboard (/ui) checks its own session cookie instead: test_ui.py walks its routes.
    """
    routes = _routes(tmp_path)
    public = {path for _, path in routes if required_kind(path) is None}
    dashboard = {path for path in public if path == "/ui" or path.startswith("/ui/")}
    assert "/ui/environments/{env}/flags/{key}/{action}" in dashboard
    assert public - dashboard <= PUBLIC_PATHS
    assert "/healthz" in public
    admin = [p for _, p in routes if required_kind(p) == "admin"]
    sdk = {p for _, p in routes if required_kind(p) == "sdk"}
    assert sdk == {
        "/v1/flags",
        "/v1/stream",
        "/v1/feedback",
        "/v1/report",
        "/v1/otlp/v1/metrics",
        "/v1/otlp/v1/traces",
    }
    assert all(p.startswith("/v1/admin/") for p in admin)


def test_every_protected_route_refuses_missing_bad_and_wrong_kind_tokens(
    tmp_path: Path, server: FlagServer
) -> None:
    """Each route: no token 401, unknown token 401, a token of the other kind 403."""
    checked = 0
    for method, template in _routes(tmp_path):
        need = required_kind(template)
        if need is None:
            continue
        url = server.url + _fill(template, server.environment)
        wrong = server.sdk_key if need == "admin" else server.admin_token
        forged = re.sub(r"_[^_]+$", "_" + "A" * 43, server.admin_token)
        cases = {
            None: 401,
            "Bearer nope": 401,
            f"Bearer {forged}": 401,
            f"Basic {server.admin_token}": 401,
            f"Bearer {wrong}": 403,
        }
        for header, status in cases.items():
            headers = {} if header is None else {"Authorization": header}
            response = httpx.request(method, url, headers=headers, json={}, timeout=10)
            assert response.status_code == status, (method, template, header, response.text)
            assert response.json()["detail"]
        checked += 1
    assert checked >= 20


def test_unknown_paths_need_a_token_too(server: FlagServer) -> None:
    """A path no route serves still answers 401 without a token (no probing for routes)."""
    assert httpx.get(server.url + "/v1/secret-thing").status_code == 401
    assert httpx.get(server.url + "/v1/admin/secret-thing").status_code == 401


def test_the_right_token_reaches_the_route(server: FlagServer) -> None:
    """With the correct kind of token the same routes answer (not 401/403)."""
    assert server.sdk_request("GET", "/v1/flags").status_code == 200
    assert server.admin_request("GET", "/v1/admin/environments").status_code == 200


def test_secrets_are_stored_only_as_hashes(tmp_path: Path) -> None:
    """Neither the admin token nor the SDK key appears anywhere in the SQLite files."""
    db = tmp_path / "vibesdk.db"
    with FlagServerProcess(db) as proc:
        other = proc.new_environment()
        secrets = [proc.admin_token, proc.sdk_key, other.sdk_key]
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("vibesdk.db*"))
    for secret in secrets:
        assert secret.encode() not in blob
        assert secret.split("_")[2].encode() in blob  # the public id is there


@pytest.mark.parametrize("path", ["/openapi.json", "/healthz"])
def test_public_routes_answer_without_a_token(server: FlagServer, path: str) -> None:
    """/openapi.json and /healthz are readable without credentials."""
    assert httpx.get(server.url + path).status_code == 200
