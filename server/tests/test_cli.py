"""`vibe-server`: bootstrap tokens in the database, then serve with them (real subprocesses)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from vibesdk_server.testing import FlagServerProcess


def _vibe_server(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vibesdk_server", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_token_create_prints_only_the_secret_on_stdout(
    db_url: str, flag_server_factory: Callable[..., FlagServerProcess]
) -> None:
    """token create prints one secret line; the admin token and SDK key then work on the server."""
    admin = _vibe_server("token", "create", "--db", db_url, "--name", "alice", "--kind", "admin")
    assert admin.returncode == 0, admin.stderr
    sdk = _vibe_server(
        "token", "create", "--db", db_url, "--env", "prod", "--kind", "sdk", "--name", "web"
    )
    assert sdk.returncode == 0, sdk.stderr
    assert "created environment 'prod'" in sdk.stderr
    admin_token, sdk_key = admin.stdout.strip(), sdk.stdout.strip()
    assert admin_token.startswith("vibe_admin_")
    assert len(admin.stdout.splitlines()) == 1
    server = flag_server_factory(
        db_url, environment="prod", admin_token=admin_token, sdk_key=sdk_key
    )
    assert server.document().environment == "prod"
    audit = server.admin_request("GET", "/v1/admin/audit").json()
    assert {"admin_token_create", "sdk_token_create"} <= {a["action"] for a in audit}


def test_duplicate_token_names_and_missing_env_are_refused(db_url: str) -> None:
    """A second admin token named alice, or an SDK key without --env, exits non-zero with a hint."""
    assert _vibe_server("token", "create", "--db", db_url, "--name", "alice").returncode == 0
    again = _vibe_server("token", "create", "--db", db_url, "--name", "alice")
    assert again.returncode == 1
    assert again.stderr == (
        "vibe-server: an admin token named 'alice' already exists; choose another name\n"
    )
    no_env = _vibe_server("token", "create", "--db", db_url, "--kind", "sdk", "--name", "w")
    assert no_env.returncode == 2
    assert "--env" in no_env.stderr


def test_serve_logs_one_line_per_admin_action(
    flag_server_factory: Callable[..., FlagServerProcess],
) -> None:
    """Each admin write shows up as one 'admin action=...' line with actor and reason."""
    server = flag_server_factory()
    server.new_environment("logged")
    response = httpx.post(
        f"{server.url}/v1/admin/environments/logged/sdk-keys",
        json={"name": "w2"},
        headers={"Authorization": f"Bearer {server.admin_token}"},
    )
    assert response.status_code == 201
    lines = [line for line in server.log_tail(200).splitlines() if "admin action=" in line]
    assert any("action=create_environment" in line and "env=logged" in line for line in lines)
    assert any("action=sdk_key_create" in line and "name=w2" in line for line in lines)
    assert server.admin_token not in server.log_tail(200)


def test_a_second_server_on_the_same_sqlite_file_is_refused(
    tmp_path: Path, flag_server_factory: Callable[..., FlagServerProcess]
) -> None:
    """Two processes on one SQLite file would serve stale flags: the second exits with a hint."""
    db = str(tmp_path / "one.db")
    first = flag_server_factory(db)
    second = _vibe_server("serve", "--db", db, "--port", "0")
    assert second.returncode == 1
    assert "already serving" in second.stderr
    assert "postgresql://" in second.stderr
    assert first.document().version == 0


def test_revoked_tokens_stop_working(
    db_url: str, flag_server_factory: Callable[..., FlagServerProcess]
) -> None:
    """token revoke deletes the token (audited); the server refuses it from then on."""
    # --auth-cache-s 0: no cached verification, so the revocation is seen at once.
    server = flag_server_factory(db_url, extra_args=["--auth-cache-s", "0"])
    extra = _vibe_server("token", "create", "--db", db_url, "--name", "bob")
    assert extra.returncode == 0, extra.stderr
    bob = {"Authorization": f"Bearer {extra.stdout.strip()}"}
    assert httpx.get(server.url + "/v1/admin/environments", headers=bob).status_code == 200
    listed = _vibe_server("token", "list", "--db", db_url)
    assert " bob " in listed.stdout
    assert extra.stdout.strip() not in listed.stdout
    revoked = _vibe_server("token", "revoke", "--db", db_url, "--name", "bob")
    assert revoked.returncode == 0, revoked.stderr
    assert _vibe_server("token", "revoke", "--db", db_url, "--name", "bob").returncode == 1
    assert httpx.get(server.url + "/v1/admin/environments", headers=bob).status_code == 401
    audit = server.admin_request("GET", "/v1/admin/audit").json()
    assert "admin_token_revoke" in {a["action"] for a in audit}


def test_a_busy_port_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """vibe-server on a port that is already bound: one line naming the port and --port 0."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _vibe_server("--db", str(tmp_path / "v.db"), "--port", str(port))
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        f"vibe-server: cannot listen on 127.0.0.1:{port}: Address already in use; stop what"
        " holds that port or pick another --port (--port 0 picks a free one)"
    )
    assert "Traceback" not in done.stderr


def test_an_unreachable_postgresql_is_one_line_and_exit_1() -> None:
    """A postgresql:// --db nobody answers: one line, no traceback, for serve and token create."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        url = f"postgresql://vibesdk:s3cret@127.0.0.1:{closed.getsockname()[1]}/vibesdk"
        for args in (
            ("--db", url, "--port", "0"),
            ("token", "create", "--db", url, "--name", "alice"),
        ):
            done = _vibe_server(*args)
            assert done.returncode == 1
            assert "Traceback" not in done.stderr
            line = done.stderr.splitlines()[-1]
            assert line.startswith("vibe-server: cannot open the database given by --db (")
            assert "refused" in line
            assert "s3cret" not in done.stderr
