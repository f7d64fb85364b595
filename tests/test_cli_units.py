"""The pure parts of the `vibe` CLI: percentages, tables, diffs, flag files, settings."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from vibesdk_server._vibe.errors import CliError, ExitCode
from vibesdk_server._vibe.files import load_flag_file, parse_flag_text
from vibesdk_server._vibe.main import build_parser
from vibesdk_server._vibe.percent import format_bps, parse_percent
from vibesdk_server._vibe.render import format_diff, format_value, table
from vibesdk_server._vibe.settings import load_cli_settings
from vibesdk_server._vibe.status import status_table

from vibesdk.testing import make_flag


@pytest.mark.parametrize(
    ("text", "bps"),
    [
        ("10%", 1000),
        ("0.01%", 1),
        ("1000bps", 1000),
        ("1bp", 1),
        ("0", 0),
        ("0%", 0),
        ("100%", 10000),
        ("12.5%", 1250),
        ("12.34%", 1234),
        (" 7 % ", 700),
        (".5%", 50),
        ("10000bps", 10000),
        ("50BPS", 50),
    ],
)
def test_percentages_and_basis_points_parse_to_basis_points(text: str, bps: int) -> None:
    """Percentages with up to two decimals and whole basis points are accepted."""
    assert parse_percent(text) == bps


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.1", "'0.1' is ambiguous (percent or fraction?): write 0.1% or 10%"),
        ("10", "'10' is ambiguous (percent or fraction?): write 10% or 10bps"),
        ("0.005%", "'0.005%' is finer than the 0.01% step rollouts use"),
        ("101%", "'101%' is more than 100%; a rollout is 0%..100% (0..10000bps)"),
        ("10001bps", "'10001bps' is more than 100%"),
        ("-5%", "'-5%': a rollout cannot be negative; use 0% to stop the canary"),
        ("1.5bps", "'1.5bps': basis points are whole numbers (1bps = 0.01%)"),
        ("ten", "'ten' is not a rollout percentage; write it as a percentage (10%, 0.01%)"),
        ("", "'' is not a rollout percentage"),
    ],
)
def test_ambiguous_or_out_of_range_percentages_are_usage_errors(text: str, message: str) -> None:
    """Bare numbers, negatives, >100% and steps finer than 0.01% are refused with a fix."""
    with pytest.raises(CliError) as info:
        parse_percent(text)
    assert info.value.code == ExitCode.USAGE
    assert info.value.message.startswith(message)


def test_every_basis_point_round_trips_through_its_printed_percentage() -> None:
    """format_bps prints what parse_percent reads back, for all 10,001 values."""
    for bps in range(10_001):
        assert parse_percent(format_bps(bps)) == bps
    assert [format_bps(b) for b in (0, 1, 10, 1050, 10000)] == [
        "0%",
        "0.01%",
        "0.1%",
        "10.5%",
        "100%",
    ]


def test_table_aligns_columns_and_prints_none_as_dash() -> None:
    """Columns are padded to the widest cell, headers upper-cased, None shown as '-'."""
    text = table(
        ["flag", "rollout", "prompt"], [["a", "10%", None], ["longer-key", "0.01%", "p@1"]]
    )
    assert text.splitlines() == [
        "FLAG        ROLLOUT  PROMPT",
        "a           10%      -",
        "longer-key  0.01%    p@1",
    ]


def test_diff_lines_mark_changes_additions_and_removals() -> None:
    """A diff prints ~ for a change (rollout as a percentage), + for added, - for removed."""
    text = format_diff(
        [
            {"path": "flags.vibethinker.rollout_bps", "before": 0, "after": 1000},
            {"path": "flags.new", "before": None, "after": {"key": "new", "variants": {}}},
            {"path": "flags.x.rules", "before": None, "after": [{"id": "r"}]},
            {"path": "flags.old.notice", "before": "hi"},
        ]
    )
    assert text.splitlines() == [
        "~ flags.vibethinker.rollout_bps  0% (0bps) -> 10% (1000bps)",
        "+ flags.new                      flag: rollout 0%, variants -",
        '+ flags.x.rules                  [{"id": "r"}]',
        '- flags.old.notice               "hi"',
    ]
    assert format_diff([]) == "no changes"


def test_long_diff_values_are_cut_to_one_short_line() -> None:
    """Values longer than 60 characters end in an ellipsis instead of flooding the terminal."""
    value = format_value("x" * 500)
    assert len(value) == 60
    assert value.endswith("…")


def test_status_table_shows_each_variant_with_model_and_prompt_ref() -> None:
    """Status rows: flag, enabled, rollout, then each variant's role, model and prompt ref."""
    flag = make_flag(rollout_bps=1).model_dump(mode="json")
    lines = status_table({"vibethinker": flag}).splitlines()
    assert lines[0].split() == ["FLAG", "ENABLED", "ROLLOUT", "VARIANT", "ROLE", "MODEL", "PROMPT"]
    assert lines[1].split() == [
        "vibethinker",
        "yes",
        "0.01%",
        "stable",
        "default",
        "stable-model",
        "-",
    ]
    assert lines[2].split() == [
        "canary",
        "rollout",
        "vibethinker-1.5b",
        "vibethinker-competition@1",
    ]


FLAG_YAML = """\
environment: prod
flags:
  - key: vibethinker
    rollout_bps: 0
    variants:
      stable: {backend: {urls: ["http://127.0.0.1:9/v1"]}, model: m}
"""


def test_yaml_flag_file_loads_flags_and_environment(tmp_path: Path) -> None:
    """A YAML file with a list of flags and an environment loads as JSON-ready mappings."""
    path = tmp_path / "flags.yaml"
    path.write_text(FLAG_YAML)
    loaded = load_flag_file(str(path))
    assert loaded.environment == "prod"
    assert [f["key"] for f in loaded.flags] == ["vibethinker"]
    assert loaded.flags[0]["variants"]["stable"]["model"] == "m"


def test_flags_as_a_mapping_take_their_key_from_the_mapping() -> None:
    """`flags: {key: {...}}` (the document's own shape) is accepted; the key is filled in."""
    doc = {"schema_version": 1, "version": 7, "flags": {"a": {"variants": {}}}}
    loaded = parse_flag_text(json.dumps(doc), name="doc.json")
    assert loaded.flags == [{"key": "a", "variants": {}}]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "f.yaml",
            "flags:\n  - key: a\n   bad: [",
            "f.yaml: malformed YAML at line 3, column 4: expected <block end>",
        ),
        ("f.yaml", "flags: [\n", "f.yaml: malformed YAML at line 2, column 1:"),
        ("f.json", '{"flags": [}', "f.json: malformed JSON at line 1, column 12: Expecting value"),
        (
            "f.yaml",
            "flags: []\nflags: []\n",
            "f.yaml: key 'flags' appears twice in one mapping (line 2",
        ),
        ("f.json", '{"flags": [], "flags": []}', "f.json: key 'flags' appears twice in one object"),
        ("f.yaml", "", "f.yaml: the file is empty; nothing to apply"),
        ("f.yaml", "flagz: []", "f.yaml: unknown top-level key(s) flagz;"),
        ("f.yaml", "environment: prod", "f.yaml: no 'flags' in the file; nothing to apply"),
        ("f.yaml", "flags: [{rollout_bps: 1}]", "f.yaml: flags[0] has no 'key'"),
        ("f.yaml", "flags: [{key: a}, {key: a}]", "f.yaml: flag(s) declared twice: a"),
        ("f.yaml", "flags: 3", "f.yaml: 'flags' must be a list or a mapping of flags"),
        ("f.yaml", "flags: {a: {key: b}}", "f.yaml: flags.a has key 'b'; they must be equal"),
    ],
)
def test_malformed_flag_files_are_usage_errors_that_point_at_the_problem(
    name: str, text: str, message: str
) -> None:
    """Bad YAML/JSON and bad shapes fail before anything is sent, naming line and column."""
    with pytest.raises(CliError) as info:
        parse_flag_text(text, name=name)
    assert info.value.code == ExitCode.USAGE
    assert info.value.message.startswith(message), info.value.message


def test_missing_flag_file_is_a_usage_error(tmp_path: Path) -> None:
    """A file that does not exist is named in a one-line usage error."""
    with pytest.raises(CliError) as info:
        load_flag_file(str(tmp_path / "nope.yaml"))
    assert info.value.message == f"cannot read {tmp_path / 'nope.yaml'}: no such file"


def test_cli_settings_come_from_flags_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """--server/--token/--env beat VIBESDK_* variables, which beat the defaults."""
    monkeypatch.delenv("VIBESDK_SERVER_URL", raising=False)
    monkeypatch.delenv("VIBESDK_ENVIRONMENT", raising=False)
    monkeypatch.setenv("VIBESDK_ADMIN_TOKEN", "from-env")
    settings = load_cli_settings(server_url=None, admin_token=None, environment=None)
    assert settings.server_url == "http://127.0.0.1:8700"
    assert settings.environment == "default"
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "from-env"
    explicit = load_cli_settings(server_url="http://h:1/", admin_token="t", environment="prod")
    assert (explicit.server_url, explicit.environment) == ("http://h:1", "prod")
    with pytest.raises(CliError) as info:
        load_cli_settings(server_url="h:1")
    assert info.value.code == ExitCode.USAGE
    assert info.value.message.startswith(
        "invalid --server / VIBESDK_SERVER_URL: must start with http:// or https://"
    )


def _commands(parser: argparse.ArgumentParser, prefix: str = "vibe") -> list[str]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append(f"{prefix} {name}")
                found += _commands(sub, f"{prefix} {name}")
    return found


def test_every_command_is_in_the_cli_reference() -> None:
    """docs/reference/cli.md names every command and subcommand that build_parser() defines."""
    reference = (Path(__file__).parents[1] / "docs" / "reference" / "cli.md").read_text()
    commands = _commands(build_parser())
    assert "vibe prompt approve" in commands
    missing = [c for c in commands if f"`{c}" not in reference]
    assert missing == []


@given(st.text(alphabet="0123456789.%bpsBPS -+e", max_size=12) | st.text(max_size=12))
def test_parse_percent_returns_basis_points_or_a_usage_error(text: str) -> None:
    """Any input is either 0..10000 basis points or a CliError usage error, never a crash."""
    error: CliError | None = None
    try:
        bps = parse_percent(text)
    except CliError as exc:
        error = exc
    if error is None:
        assert 0 <= bps <= 10_000
    else:
        assert error.code == ExitCode.USAGE
        assert "\n" not in error.message
