"""`vibe` against the real flag server on loopback: outputs, exit codes and one-line errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from vibesdk_server._vibe.main import main
from vibesdk_server.testing import FlagServer

FLAGS_YAML = """\
flags:
  - key: vibethinker
    rollout_bps: 0
    variants:
      stable:
        backend: {urls: ["http://127.0.0.1:9/v1"], provider: llama.cpp}
        model: smollm2-135m
      canary:
        backend: {urls: ["http://127.0.0.1:9/v1"], provider: llama.cpp}
        model: vibethinker-1.5b
        notice: You are trying the new assistant.
"""


class Tty(io.StringIO):
    """Standard input that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def server(flag_server: FlagServer) -> FlagServer:
    """A fresh environment on the session's real vibe-server (vibesdk_server.pytest_plugin)."""
    return flag_server


@pytest.fixture
def env(server: FlagServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """That environment's name, selected (with URL and admin token) through VIBESDK_* variables."""
    monkeypatch.setenv("VIBESDK_SERVER_URL", server.url)
    monkeypatch.setenv("VIBESDK_ADMIN_TOKEN", server.admin_token)
    monkeypatch.setenv("VIBESDK_ENVIRONMENT", server.environment)
    return server.environment


@pytest.fixture
def flags_file(tmp_path: Path) -> Path:
    path = tmp_path / "flags.yaml"
    path.write_text(FLAGS_YAML)
    return path


def vibe(capsys: pytest.CaptureFixture[str], *argv: str, **kw: Any) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv), **kw)
    out, err = capsys.readouterr()
    return code, out, err


def vibe_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = vibe(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def applied(capsys: pytest.CaptureFixture[str], flags_file: Path) -> int:
    code, _, err = vibe(capsys, "apply", str(flags_file))
    assert code == 0, err
    return int(vibe_json(capsys, "status")["version"])


def test_apply_shows_the_diff_then_applies_and_status_shows_the_flag(
    capsys: pytest.CaptureFixture[str], env: str, flags_file: Path, server: FlagServer
) -> None:
    """Off a terminal, apply prints the server's diff, writes, and status shows each variant."""
    code, out, err = vibe(capsys, "apply", str(flags_file), "--reason", "first canary")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"changes to {env} (version 0):"
    assert lines[1] == (
        "+ flags.vibethinker  flag: rollout 0%, variants stable=smollm2-135m, "
        "canary=vibethinker-1.5b"
    )
    assert lines[-1].startswith(f"applied to {env}: version 0 -> 1 (audit #")

    code, out, _ = vibe(capsys, "status")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"environment {env}  version 1  good version -  server {server.url}"
    assert lines[2].split() == ["FLAG", "ENABLED", "ROLLOUT", "VARIANT", "ROLE", "MODEL", "PROMPT"]
    assert lines[3].split() == [
        "vibethinker",
        "yes",
        "0%",
        "stable",
        "default",
        "smollm2-135m",
        "-",
    ]
    assert lines[4].split() == ["canary", "rollout", "vibethinker-1.5b", "-"]

    code, out, _ = vibe(capsys, "apply", str(flags_file))
    assert (code, out) == (0, f"no changes: {env} already matches {flags_file} (v1)\n")


def test_apply_dry_run_writes_nothing(
    capsys: pytest.CaptureFixture[str], env: str, flags_file: Path
) -> None:
    """--dry-run prints the diff and leaves the version where it was."""
    code, out, _ = vibe(capsys, "apply", str(flags_file), "--dry-run")
    assert code == 0
    assert "+ flags.vibethinker" in out
    assert "applied" not in out
    assert vibe_json(capsys, "status")["version"] == 0


def test_apply_on_a_terminal_asks_first_and_no_writes_nothing(
    capsys: pytest.CaptureFixture[str], env: str, flags_file: Path
) -> None:
    """On a TTY apply asks; 'n' exits 1 with nothing written, 'y' applies, --yes skips asking."""
    questions: list[str] = []

    def answer(reply: str) -> Any:
        def ask(question: str) -> str:
            questions.append(question)
            return reply

        return ask

    code, out, _ = vibe(capsys, "apply", str(flags_file), stdin=Tty(), ask=answer("n"))
    assert (code, out.splitlines()[-1]) == (1, "nothing applied")
    assert questions == [f"apply 1 change(s) to {env}? [y/N] "]
    assert vibe_json(capsys, "status")["version"] == 0

    code, out, _ = vibe(capsys, "apply", str(flags_file), stdin=Tty(), ask=answer("y"))
    assert code == 0
    assert vibe_json(capsys, "status")["version"] == 1

    flags_file.write_text(FLAGS_YAML.replace("rollout_bps: 0", "rollout_bps: 5"))
    code, out, _ = vibe(capsys, "apply", str(flags_file), "--yes", stdin=Tty(), ask=answer("n"))
    assert code == 0
    assert len(questions) == 2
    assert "~ flags.vibethinker.rollout_bps  0% (0bps) -> 0.05% (5bps)" in out


def test_apply_refuses_when_someone_changed_the_environment_after_the_diff(
    capsys: pytest.CaptureFixture[str], env: str, flags_file: Path, server: FlagServer
) -> None:
    """A change made while the operator reads the diff makes apply exit 3, writing nothing."""
    applied(capsys, flags_file)
    flags_file.write_text(FLAGS_YAML.replace("smollm2-135m", "smollm2-135m-v2"))

    def someone_else_rolls_out(question: str) -> str:
        response = httpx.post(
            f"{server.url}/v1/admin/environments/{env}/flags/vibethinker/rollout",
            json={"bps": 100},
            headers={"Authorization": f"Bearer {server.admin_token}"},
        )
        assert response.status_code == 200
        return "y"

    code, _, err = vibe(capsys, "apply", str(flags_file), stdin=Tty(), ask=someone_else_rolls_out)
    assert code == 3
    assert err.startswith("vibe: conflict: ")
    assert err.endswith(
        " — the environment changed after the diff was shown; run `vibe apply` again to see "
        "the new diff\n"
    )
    assert err.count("\n") == 1
    document = vibe_json(capsys, "status")["document"]
    assert document["flags"]["vibethinker"]["variants"]["stable"]["model"] == "smollm2-135m"


def test_rollout_prints_the_change_and_json_gives_the_change_object(
    capsys: pytest.CaptureFixture[str], env: str, flags_file: Path
) -> None:
    """`vibe rollout F 10%` prints before -> after and versions; --json is the server's change."""
    version = applied(capsys, flags_file)
    code, out, _ = vibe(capsys, "rollout", "vibethinker", "10%", "--reason", "widen")
    assert code == 0
    assert out == (
        f"vibethinker: rollout 0% -> 10% in {env} (version {version} -> {version + 1})\n"
    )
    change = vibe_json(capsys, "rollout", "vibethinker", "0.01%")
    assert change["diff"] == [{"path": "flags.vibethinker.rollout_bps", "before": 1000, "after": 1}]
    assert change["version"] == version + 2
    code, out, _ = vibe(capsys, "rollout", "vibethinker", "1bps")
    assert (
        out == f"vibethinker: rollout already 0.01% in {env} (version {version + 2}, unchanged)\n"
    )


def test_unknown_flag_exits_5_with_the_servers_words(
    capsys: pytest.CaptureFixture[str], env: str, flags_file: Path
) -> None:
    """Rolling out, killing or showing a flag that does not exist is exit 5, one line."""
    applied(capsys, flags_file)
    code, out, err = vibe(capsys, "rollout", "nope", "10%")
    assert (code, out) == (5, "")
    assert err.startswith("vibe: not found: ")
    assert "nope" in err
    assert err.count("\n") == 1
    code, _, err = vibe(capsys, "status", "nope")
    assert code == 5
    assert err == f"vibe: no flag 'nope' in environment '{env}' (flags: vibethinker)\n"


def test_stale_expected_version_exits_3_naming_both_versions(
    capsys: pytest.CaptureFixture[str], env: str, flags_file: Path
) -> None:
    """--expected-version older than the current version is a conflict (exit 3), not a write."""
    version = applied(capsys, flags_file)
    code, _, err = vibe(
        capsys, "rollout", "vibethinker", "50%", "--expected-version", str(version - 1)
    )
    assert code == 3
    assert err.startswith("vibe: conflict: ")
    assert str(version) in err
    assert str(version - 1) in err
    assert err.endswith(" — `vibe history` shows the change that came first\n")
    assert vibe_json(capsys, "status")["version"] == version


BAD_INPUT = [
    # (what, files {name: text}, argv, exit code, words the one line must contain)
    ("out-of-range percent", {}, ["rollout", "vibethinker", "150%"], 2, "0%..100%"),
    ("too fine a percent", {}, ["rollout", "vibethinker", "0.001%"], 2, "0.01%"),
    ("negative bps", {}, ["rollout", "vibethinker", "--", "-5bps"], 2, "cannot be negative"),
    ("unknown flag", {}, ["rollout", "nosuch", "5%"], 5, "vibethinker"),
    ("unknown flag kill", {}, ["kill", "nosuch", "--reason", "x"], 5, "nosuch"),
    ("unknown flag rollback", {}, ["rollback", "nosuch", "--reason", "x"], 5, "nosuch"),
    ("unknown flag diff", {}, ["diff", "nosuch", "1", "1"], 5, "vibe history nosuch"),
    (
        "stale version",
        {},
        ["rollout", "vibethinker", "5%", "--expected-version", "0"],
        3,
        "you expected version 0 but",
    ),
    ("malformed YAML", {"f.yaml": "flags:\n  - key: [\n"}, ["apply", "f.yaml"], 2, "line"),
    ("malformed JSON", {"f.json": '{"flags": ['}, ["apply", "f.json"], 2, "JSON"),
    (
        "out-of-range rollout in a file",
        {"f.yaml": FLAGS_YAML.replace("rollout_bps: 0", "rollout_bps: 20000")},
        ["apply", "f.yaml", "--yes"],
        1,
        "rollout_bps",
    ),
    (
        "unapproved template",
        {
            "f.yaml": FLAGS_YAML.replace(
                "        notice:",
                "        prompt: {id: nosuch-prompt, version: 1}\n        notice:",
            )
        },
        ["apply", "f.yaml", "--yes"],
        1,
        "nosuch-prompt@1",
    ),
]


@pytest.mark.parametrize(
    ("files", "argv", "code", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_INPUT],
)
def test_bad_input_is_one_line_a_meaningful_exit_code_and_no_write(
    capsys: pytest.CaptureFixture[str],
    env: str,
    flags_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    files: dict[str, str],
    argv: list[str],
    code: int,
    words: str,
) -> None:
    """Bad input via `vibe`: exit 1/2/3/5, one line naming the fix, nothing written."""
    applied(capsys, flags_file)
    before = (vibe_json(capsys, "status"), vibe_json(capsys, "audit"))
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    got, out, err = vibe(capsys, *argv)
    assert (got, out) == (code, "")
    assert err.startswith("vibe: ")
    assert err.count("\n") == 1
    assert words in err
    assert (vibe_json(capsys, "status"), vibe_json(capsys, "audit")) == before


def test_wrong_token_exits_1_and_names_the_variable(
    capsys: pytest.CaptureFixture[str], env: str, server: FlagServer
) -> None:
    """An unknown token (401) or an SDK key (403) is exit 1, one line naming the setting."""
    code, _, err = vibe(capsys, "status", "--token", "not-a-token")
    assert code == 1
    assert err.startswith("vibe: the flag server refused the admin token (")
    assert err.endswith(") — check VIBESDK_ADMIN_TOKEN or --token\n")
    code, _, err = vibe(capsys, "status", "--token", server.sdk_key)
    assert code == 1
    assert err.startswith("vibe: not allowed: ")
    assert err.endswith(" — check VIBESDK_ADMIN_TOKEN or --token\n")
    assert err.count("\n") == 1


def test_malformed_yaml_exits_2_naming_line_and_column(
    capsys: pytest.CaptureFixture[str], env: str, tmp_path: Path
) -> None:
    """A broken YAML file is refused before any request: exit 2 with line and column."""
    path = tmp_path / "broken.yaml"
    path.write_text("flags:\n  - key: a\n    variants: {stable: [}\n")
    code, out, err = vibe(capsys, "apply", str(path))
    assert (code, out) == (2, "")
    assert err.startswith(f"vibe: {path}: malformed YAML at line 3, column ")
    assert err.count("\n") == 1


def test_invalid_flag_is_refused_by_the_server_with_its_location(
    capsys: pytest.CaptureFixture[str], env: str, tmp_path: Path
) -> None:
    """A flag the server rejects (422) is exit 1 with the field's location; nothing written."""
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"flags": [{"key": "x", "rollout_bps": 20000, "variants": {}}]}))
    code, _, err = vibe(capsys, "apply", str(path))
    assert code == 1
    assert err.startswith("vibe: refused (HTTP 422): ")
    assert "rollout_bps" in err
    assert err.count("\n") == 1
    assert vibe_json(capsys, "status")["version"] == 0


def test_rollback_restores_the_good_version_and_reports_the_time(
    capsys: pytest.CaptureFixture[str], env: str, flags_file: Path
) -> None:
    """rollback: canary to 0% and the flag as in the good version, with the time it took."""
    good = applied(capsys, flags_file)
    code, out, _ = vibe(capsys, "mark-good")
    assert (code, out) == (
        0,
        f"version {good} of {env} is marked good; `vibe rollback FLAG --reason ...` restores "
        "flags from it\n",
    )
    flags_file.write_text(FLAGS_YAML.replace("vibethinker-1.5b", "vibethinker-1.5b-rc2"))
    assert vibe(capsys, "apply", str(flags_file))[0] == 0
    assert vibe(capsys, "rollout", "vibethinker", "25%")[0] == 0

    code, out, err = vibe(capsys, "rollback", "vibethinker", "--reason", "p95 over 3 s")
    assert (code, err) == (0, "")
    first, *diff = out.splitlines()
    assert first.startswith(f"rolled back vibethinker in {env} in ")
    assert first.endswith(
        f" ms: rollout 0%, flag restored from version {good}; now version {good + 3} "
        f"(state before the rollback kept as version {good + 2})"
    )
    assert diff == [
        "~ flags.vibethinker.rollout_bps            25% (2500bps) -> 0% (0bps)",
        '~ flags.vibethinker.variants.canary.model  "vibethinker-1.5b-rc2" -> "vibethinker-1.5b"',
    ]
    status = vibe_json(capsys, "status", "vibethinker")
    flag = status["document"]["flags"]["vibethinker"]
    assert (flag["rollout_bps"], flag["variants"]["canary"]["model"]) == (0, "vibethinker-1.5b")
    assert status["good_version"] == good

    code, _, err = vibe(capsys, "rollback", "vibethinker", "--reason", "  ")
    assert code == 1
    assert err.startswith("vibe: refused (HTTP 422): reason: ")


def test_kill_and_enable_flip_the_kill_switch(
    capsys: pytest.CaptureFixture[str], env: str, flags_file: Path
) -> None:
    """kill sets enabled false (status shows 'no'); enable sets it back."""
    version = applied(capsys, flags_file)
    _, out, _ = vibe(capsys, "kill", "vibethinker", "--reason", "bad answers")
    assert out == (
        f"vibethinker: killed: everyone on its default variant in {env} "
        f"(version {version} -> {version + 1})\n"
    )
    assert vibe_json(capsys, "status")["document"]["flags"]["vibethinker"]["enabled"] is False
    _, out, _ = vibe(capsys, "status")
    assert out.splitlines()[3].split()[:2] == ["vibethinker", "no"]
    _, out, _ = vibe(capsys, "enable", "vibethinker")
    assert out == f"vibethinker: enabled in {env} (version {version + 1} -> {version + 2})\n"


def test_history_and_diff_show_who_did_what(
    capsys: pytest.CaptureFixture[str], env: str, flags_file: Path
) -> None:
    """history lists versions newest first with actor, action and reason; diff shows the change."""
    version = applied(capsys, flags_file)
    vibe(capsys, "rollout", "vibethinker", "10%", "--reason", "widen to 10")
    vibe(capsys, "mark-good")
    code, out, _ = vibe(capsys, "history", "vibethinker")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["VERSION", "AT", "ACTOR", "ACTION", "FLAGS", "REASON"]
    rows = [line.split() for line in lines[1:]]
    rollout = next(row for row in rows if row[3] == "rollout")
    assert rollout[0] == f"{version + 1}*"
    assert rollout[4:] == ["vibethinker", "widen", "to", "10"]
    assert rows.index(rollout) < next(i for i, row in enumerate(rows) if row[3] == "apply")
    code, out, _ = vibe(capsys, "diff", "vibethinker", str(version), str(version + 1))
    assert code == 0
    assert out == (
        f"vibethinker: version {version} -> {version + 1}\n"
        "~ flags.vibethinker.rollout_bps  0% (0bps) -> 10% (1000bps)\n"
    )
    audit = vibe_json(capsys, "audit")
    assert {row["action"] for row in audit} >= {"apply", "rollout", "mark_good"}


def test_a_flag_file_for_another_environment_is_refused_when_one_was_chosen(
    capsys: pytest.CaptureFixture[str], env: str, tmp_path: Path, server: FlagServer
) -> None:
    """A file naming another environment than VIBESDK_ENVIRONMENT or --env: exit 2, nothing sent."""
    other = server.new_environment()
    path = tmp_path / "prod.yaml"
    path.write_text(f"environment: {other.environment}\n" + FLAGS_YAML)
    for extra in ((), ("--env", env)):
        code, out, err = vibe(capsys, "apply", str(path), "--yes", *extra)
        assert (code, out) == (2, "")
        assert err == (
            f"vibe: {path} is for environment {other.environment!r} but --env /"
            f" VIBESDK_ENVIRONMENT says {env!r}; fix one of them\n"
        )
    state = other.admin_request("GET", f"/v1/admin/environments/{other.environment}").json()
    assert state["version"] == 0


def test_a_flag_file_selects_its_environment_when_none_was_chosen(
    capsys: pytest.CaptureFixture[str],
    env: str,
    tmp_path: Path,
    server: FlagServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without --env and VIBESDK_ENVIRONMENT, the file's `environment` is where it is applied."""
    monkeypatch.delenv("VIBESDK_ENVIRONMENT")
    other = server.new_environment()
    path = tmp_path / "other.yaml"
    path.write_text(f"environment: {other.environment}\n" + FLAGS_YAML)
    code, out, err = vibe(capsys, "apply", str(path), "--yes")
    assert code == 0, err
    assert f"applied to {other.environment}: version 0 -> 1" in out


def test_prompts_are_added_reviewed_and_referenced_by_variants(
    capsys: pytest.CaptureFixture[str], env: str, tmp_path: Path, server: FlagServer
) -> None:
    """prompt add (pending) -> a reference is refused; the author's own approve is refused (exit
    1, nothing written); another admin's approve -> apply embeds it; list shows it."""
    system = tmp_path / "system.txt"
    system.write_text("You are a competitive programmer. Think step by step.")
    prompt_id = f"comp-{env}"
    code, out, _ = vibe(
        capsys, "prompt", "add", "--id", prompt_id, "--model", "vibethinker-1.5b",
        "--system-file", str(system), "--note", "first draft",
    )  # fmt: skip
    assert code == 0
    assert out == (
        f"added prompt {prompt_id} version 1 for model vibethinker-1.5b (pending); "
        f"another admin reviews it with: vibe prompt approve {prompt_id} 1\n"
    )
    flags = tmp_path / "flags.yaml"
    flags.write_text(
        FLAGS_YAML.replace(
            "        notice:", f"        prompt: {{id: {prompt_id}, version: 1}}\n        notice:"
        )
    )
    code, _, err = vibe(capsys, "apply", str(flags))
    assert code == 1
    assert err.startswith("vibe: refused (HTTP 422): ")
    assert "approved" in err

    code, out, err = vibe(capsys, "prompt", "approve", prompt_id, "1", "--reason", "mine")
    assert (code, out) == (1, "")
    assert err.startswith("vibe: not allowed: prompt ")
    assert "another admin must approve it" in err
    assert "VIBESDK_ADMIN_TOKEN" not in err  # the token is fine; a second admin is what's missing
    assert err.count("\n") == 1
    assert vibe_json(capsys, "prompt", "show", prompt_id, "1")["state"] == "pending"

    assert server.reviewer_token is not None
    code, out, _ = vibe(
        capsys, "--token", server.reviewer_token,
        "prompt", "approve", prompt_id, "1", "--reason", "reviewed",
    )  # fmt: skip
    assert (code, out) == (0, f"prompt {prompt_id}@1: approved\n")
    assert vibe(capsys, "apply", str(flags))[0] == 0
    code, out, _ = vibe(capsys, "status")
    assert f"vibethinker-1.5b  {prompt_id}@1" in out

    code, out, _ = vibe(capsys, "prompt", "list")
    row = next(line.split() for line in out.splitlines() if line.startswith(prompt_id))
    assert row[:4] == [prompt_id, "1", "approved", "vibethinker-1.5b"]
    code, _, err = vibe(capsys, "prompt", "reject", prompt_id, "7")
    assert code == 5
    code, _, err = vibe(capsys, "prompt", "reject", prompt_id, "1")
    assert code == 3
    assert err == (
        f"vibe: conflict: prompt {prompt_id}@1 is already approved; versions are immutable,"
        " so register a new version with vibe prompt add\n"
    )


def test_keys_create_prints_a_key_that_reads_the_environment(
    capsys: pytest.CaptureFixture[str], env: str, flags_file: Path, server: FlagServer
) -> None:
    """`vibe keys create` shows the SDK key once; that key fetches this environment's document."""
    version = applied(capsys, flags_file)
    code, out, _ = vibe(capsys, "keys", "create", "--name", "web")
    assert code == 0
    header, key = out.splitlines()
    assert header == f"SDK key web for {env} (shown only now; store it):"
    response = httpx.get(f"{server.url}/v1/flags", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    assert response.json()["version"] == version
    assert response.json()["environment"] == env


def test_env_list_shows_versions(
    capsys: pytest.CaptureFixture[str], env: str, flags_file: Path
) -> None:
    """`vibe env list` has a row per environment with its version."""
    applied(capsys, flags_file)
    code, out, _ = vibe(capsys, "env", "list")
    assert code == 0
    assert out.splitlines()[0].split() == ["ENVIRONMENT", "VERSION", "GOOD", "VERSION"]
    assert [env, "1", "-"] in [line.split() for line in out.splitlines()]


def test_console_script_against_the_real_server(
    env: str, flags_file: Path, server: FlagServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The installed `vibe` script applies a file and prints status as JSON."""
    script = Path(sys.executable).parent / "vibe"
    environ = {
        "VIBESDK_SERVER_URL": server.url,
        "VIBESDK_ADMIN_TOKEN": server.admin_token,
        "VIBESDK_ENVIRONMENT": env,
        "PATH": "/usr/bin",
    }
    done = subprocess.run(
        [str(script), "apply", str(flags_file), "--yes"],
        capture_output=True, text=True, env=environ, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    done = subprocess.run(
        [str(script), "--json", "status"],
        capture_output=True, text=True, env=environ, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0
    assert json.loads(done.stdout)["document"]["flags"]["vibethinker"]["rollout_bps"] == 0


def test_unknown_environment_exits_5_and_says_how_to_create_it(
    capsys: pytest.CaptureFixture[str], env: str, server: FlagServer, flags_file: Path
) -> None:
    """status/apply/mark-good in a missing environment: exit 5 naming `vibe env create`."""
    for argv in (["status"], ["apply", str(flags_file)], ["mark-good"]):
        code, _, err = vibe(capsys, *argv, "--env", "nowhere")
        assert code == 5
        assert err == (
            f"vibe: no environment 'nowhere' on {server.url}: create it with "
            "`vibe env create nowhere`, or pick another with --env (VIBESDK_ENVIRONMENT); "
            "`vibe env list` shows them\n"
        )


def test_apply_reads_json_from_stdin(capsys: pytest.CaptureFixture[str], env: str) -> None:
    """`vibe apply -` reads the flag file from standard input (JSON needs no PyYAML)."""
    import yaml

    document = json.dumps(yaml.safe_load(FLAGS_YAML))
    code, out, err = vibe(capsys, "apply", "-", stdin=io.StringIO(document))
    assert (code, err) == (0, "")
    assert out.splitlines()[-1].startswith(f"applied to {env}: version 0 -> 1")


def _send_feedback(server: FlagServer, variant: str, score: int, comment: str | None) -> None:
    body = {
        "trace_id": f"{score:02d}{'0' * 30}",
        "score": score,
        "comment": comment,
        "flag_key": "vibethinker",
        "variant": variant,
        "user_id": f"user-{variant}-{score}",
    }
    assert server.sdk_request("POST", "/v1/feedback", json=body).status_code == 202


def _send_report(server: FlagServer, variant: str, reason: str | None) -> None:
    body = {
        "trace_id": "ab" * 16,
        "reason": reason,
        "flag_key": "vibethinker",
        "variant": variant,
        "user_id": f"user-{variant}",
    }
    assert server.sdk_request("POST", "/v1/report", json=body).status_code == 202


def test_feedback_shows_each_variants_scores_and_the_newest_comments(
    capsys: pytest.CaptureFixture[str], env: str, server: FlagServer
) -> None:
    """vibe feedback FLAG: scores and reports per variant, then the newest of each."""
    code, out, err = vibe(capsys, "feedback", "vibethinker")
    assert (code, err) == (0, "")
    assert out == f"no feedback on 'vibethinker' in environment '{env}'\n"

    _send_feedback(server, "canary", 1, "wrong   answer,\nnumbers made up")
    _send_feedback(server, "stable", 4, None)
    _send_feedback(server, "canary", 5, "x" * 100)
    code, out, err = vibe(capsys, "feedback", "vibethinker", "--limit", "2")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"feedback on 'vibethinker' in environment '{env}'"
    assert lines[2].split() == ["VARIANT", "SCORES", "MEAN", "SCORE", "LOW", "(1-2)", "REPORTS"]
    assert lines[3].split() == ["canary", "2", "3.00", "1", "0"]
    assert lines[4].split() == ["stable", "1", "4.00", "0", "0"]
    assert lines[6] == "newest 2 of 3 scores:"
    assert lines[7].split() == ["AT", "VARIANT", "SCORE", "USER", "COMMENT", "TRACE"]
    # Newest first; a long comment is cut to one line with an ellipsis; no comment prints as -.
    assert lines[8].split()[1:4] == ["canary", "5", "user-canary-5"]
    assert "x" * 59 + "…" in lines[8]
    assert lines[9].split()[1:5] == ["stable", "4", "user-stable-4", "-"]
    assert len(lines) == 10

    code, out, _ = vibe(capsys, "feedback", "vibethinker", "--variant", "canary")
    assert "wrong answer, numbers made up" in out
    assert "stable" not in out
    assert vibe_json(capsys, "feedback", "vibethinker", "--variant", "stable")["summary"] == [
        {
            "flag_key": "vibethinker",
            "variant": "stable",
            "count": 1,
            "mean_score": 4.0,
            "low_scores": 0,
            "reports": 0,
        }
    ]
    # Reports count per variant, also where nobody gave a score, and are listed after the scores.
    _send_report(server, "canary", "made up a theorem")
    _send_report(server, "rule-variant", None)
    code, out, err = vibe(capsys, "feedback", "vibethinker")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[3].split() == ["canary", "2", "3.00", "1", "1"]
    assert lines[4].split() == ["rule-variant", "0", "-", "0", "1"]
    assert lines[5].split() == ["stable", "1", "4.00", "0", "0"]
    at = lines.index("reports:")
    assert lines[at + 1].split() == ["AT", "VARIANT", "USER", "REASON", "TRACE"]
    assert lines[at + 2].split()[1:3] == ["rule-variant", "user-rule-variant"]
    reason = ["made", "up", "a", "theorem"]
    assert lines[at + 3].split()[1:] == ["canary", "user-canary", *reason, "ab" * 16]
    # Other flags' feedback is not counted.
    assert vibe(capsys, "feedback", "other-flag")[1].startswith("no feedback on 'other-flag'")


def test_feedback_since_keeps_only_what_came_after(
    capsys: pytest.CaptureFixture[str], env: str, server: FlagServer
) -> None:
    """--since takes a duration back from now or a date/time; a bad one is a usage error."""
    _send_feedback(server, "canary", 2, "early")
    assert vibe_json(capsys, "feedback", "vibethinker", "--since", "1h")["summary"][0]["count"] == 1
    assert vibe_json(capsys, "feedback", "vibethinker", "--since", "2000-01-01")["entries"]
    future = vibe_json(capsys, "feedback", "vibethinker", "--since", "2999-01-01T00:00Z")
    assert future == {"summary": [], "entries": [], "reports": []}
    code, out, err = vibe(capsys, "feedback", "vibethinker", "--since", "2999-01-01T00:00+02:00")
    assert (code, err) == (0, "")
    assert out == (
        f"no feedback on 'vibethinker' in environment '{env}' since 2998-12-31 22:00:00 UTC\n"
    )
    code, out, err = vibe(capsys, "feedback", "vibethinker", "--since", "yesterday")
    assert (code, out) == (2, "")
    assert err.startswith("vibe: --since 'yesterday': give a duration back from now (30m")
