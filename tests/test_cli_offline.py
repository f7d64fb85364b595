"""`vibe` failures that happen before or without a flag server: one line on stderr, exit code."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from vibesdk_server._vibe.main import main


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback URL whose port is bound but not listening, so connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VIBESDK_SERVER_URL", "VIBESDK_ADMIN_TOKEN", "VIBESDK_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str, **kw: object) -> tuple[int, str, str]:
    code = main(list(argv), **kw)  # type: ignore[arg-type]
    out, err = capsys.readouterr()
    return code, out, err


def test_unreachable_server_exits_4_and_says_what_to_do(
    capsys: pytest.CaptureFixture[str], refused_url: str
) -> None:
    """A refused connection is exit 4 with one line naming the URL and VIBESDK_SERVER_URL."""
    code, out, err = run(capsys, "status", "--server", refused_url, "--token", "t")
    assert code == 4
    assert out == ""
    assert err == (
        f"vibe: cannot reach the flag server at {refused_url}: connection refused — "
        "is vibe-server running? set VIBESDK_SERVER_URL or pass --server\n"
    )


def test_missing_token_exits_2_before_any_request(capsys: pytest.CaptureFixture[str]) -> None:
    """Without VIBESDK_ADMIN_TOKEN or --token, exit 2 and say how to create one; nothing is sent."""

    def no_requests(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"unexpected request {request.url}")

    code, _, err = run(capsys, "status", transport=httpx.MockTransport(no_requests))
    assert code == 2
    assert err == (
        "vibe: no admin token: set VIBESDK_ADMIN_TOKEN or pass --token (create one with: "
        "vibe-server token create --db DB --name YOU --kind admin)\n"
    )


def test_bad_percentage_exits_2_before_any_request(
    capsys: pytest.CaptureFixture[str], refused_url: str
) -> None:
    """An ambiguous rollout is refused locally (exit 2), even when the server is down."""
    code, _, err = run(
        capsys, "rollout", "vibethinker", "0.1", "--server", refused_url, "--token", "t"
    )
    assert code == 2
    assert err == "vibe: '0.1' is ambiguous (percent or fraction?): write 0.1% or 10%\n"


def test_argument_errors_are_one_line_with_a_pointer_to_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """argparse's usage dump is replaced by one line and exit 2."""
    code, _, err = run(capsys, "rollback", "vibethinker")
    assert code == 2
    assert err == (
        "vibe: the following arguments are required: --reason (see `vibe rollback --help`)\n"
    )
    code, _, err = run(capsys, "frobnicate")
    assert code == 2
    assert err.startswith("vibe: argument COMMAND: invalid choice: 'frobnicate'")
    assert err.count("\n") == 1


def test_help_lists_every_command_and_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """`vibe --help` exits 0 and documents each command and the exit codes."""
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for command in (
        "apply", "rollout", "rollback", "kill", "enable", "mark-good", "status", "history",
        "diff", "prompt", "keys", "demo",
    ):  # fmt: skip
        assert f"\n    {command} " in out
    assert "exit codes: 0 ok, 1 refused by the server, 2 usage error, 3 conflict" in out


@pytest.mark.parametrize(
    "command",
    [
        ["apply"], ["rollout"], ["rollback"], ["kill"], ["enable"], ["mark-good"], ["status"],
        ["history"], ["diff"], ["audit"], ["keys", "create"], ["env", "list"],
        ["prompt", "add"], ["prompt", "approve"], ["prompt", "reject"], ["prompt", "list"],
    ],
)  # fmt: skip
def test_every_command_help_prints_percent_signs_once(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """`vibe CMD --help` never shows argparse's escaped '%%' (descriptions are printed raw)."""
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0
    assert "%%" not in out


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("localhost:8700", "must start with http:// or https:// (e.g. http://127.0.0.1:8700)"),
        ("http://", "'http://' has no host name"),
        ("http://exa mple.com", "'http://exa mple.com' contains a space; remove it"),
        ("http://h:99999", "'http://h:99999': the port must be from 1 to 65535"),
        ("http://h:1/?x=1", "'http://h:1/?x=1' must be a base URL, without ?query or #fragment"),
    ],
)
def test_invalid_server_url_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], url: str, problem: str
) -> None:
    """A server URL that is not a base http(s) URL is exit 2 naming the flag and the problem.

    The CLI checks it as the SDK does (vibesdk.schema.check_http_url), before any request.
    """
    code, out, err = run(capsys, "status", "--server", url, "--token", "t")
    assert (code, out) == (2, "")
    assert err.startswith(f"vibe: invalid --server / VIBESDK_SERVER_URL: {problem}"), err
    assert err.count("\n") == 1


def test_server_errors_5xx_exit_4_and_point_at_history(capsys: pytest.CaptureFixture[str]) -> None:
    """A 500 (which the real server does not produce on demand) is exit 4, one line."""

    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text="Internal Server Error")

    code, _, err = run(
        capsys, "rollout", "f", "10%", "--token", "t", transport=httpx.MockTransport(broken)
    )
    assert code == 4
    assert err == (
        "vibe: the flag server at http://127.0.0.1:8700 failed (HTTP 500: Internal Server Error)"
        " — check `vibe history` to see whether it was applied, and the vibe-server log\n"
    )


def test_timeout_exits_4_and_suggests_a_longer_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    """A request that times out is exit 4 and names --timeout."""

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    code, _, err = run(
        capsys, "status", "--token", "t", "--timeout", "2", transport=httpx.MockTransport(slow)
    )
    assert code == 4
    assert err == (
        "vibe: the flag server at http://127.0.0.1:8700 did not answer within 2 s — "
        "is it overloaded? retry, or raise --timeout\n"
    )


def test_demo_is_loaded_lazily_and_missing_demo_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`vibe demo` imports its module (_vibe.demo) only when run; without it, one line, exit 2."""
    import importlib

    real = importlib.import_module

    def missing_demo(name: str, package: str | None = None) -> object:
        if name == "vibesdk_server._vibe.demo":
            raise ModuleNotFoundError("No module named 'vibesdk_server._vibe.demo'", name=name)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", missing_demo)
    code, _, err = run(capsys, "demo", "--quick")
    assert code == 2
    assert err == (
        "vibe: vibe demo is not available in this installation "
        "(vibesdk_server._vibe.demo is missing)\n"
    )


def test_console_script_runs_and_reports_unreachable_server(refused_url: str) -> None:
    """The installed `vibe` script exits 4 with the one-line message on stderr."""
    script = Path(sys.executable).parent / "vibe"
    done = subprocess.run(
        [str(script), "history", "vibethinker"],
        capture_output=True,
        text=True,
        env={"VIBESDK_SERVER_URL": refused_url, "VIBESDK_ADMIN_TOKEN": "t", "PATH": "/usr/bin"},
        timeout=60,
        check=False,
    )
    assert done.returncode == 4
    assert done.stdout == ""
    assert done.stderr.startswith(f"vibe: cannot reach the flag server at {refused_url}:")
    assert done.stderr.count("\n") == 1


def test_demo_gets_its_own_arguments_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    """`vibe demo ARGS` passes ARGS (options too) to the demo's main and returns its code."""
    import importlib
    import types

    seen: list[list[str]] = []
    fake = types.SimpleNamespace(main=lambda argv: seen.append(list(argv)) or 7)
    real = importlib.import_module
    monkeypatch.setattr(
        importlib,
        "import_module",
        lambda name, package=None: (
            fake if name == "vibesdk_server._vibe.demo" else real(name, package)
        ),
    )
    assert main(["demo", "--users", "50", "--help"]) == 7
    assert main(["--json", "demo"]) == 7
    assert seen == [["--users", "50", "--help"], []]
