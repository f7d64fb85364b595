"""Bad input gets one clear line, from the call that caused it, in vibesdk's exception tree.

Settings fail when the client is built (``ConfigError``), bad arguments at the call
(``InvalidArgumentError``), and ``assign()`` answers bad context with the default variant and
``INVALID_CONTEXT`` instead of raising. A ``VIBESDK_*`` variable that nothing reads is logged
once, naming the closest known one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import vibesdk
from tests.client_harness import Driver, flag_source
from vibesdk import ConfigError, ErrorCode, InvalidArgumentError, Reason
from vibesdk.testing import FakeBackend, make_document, make_flag

ROOT = Path(__file__).resolve().parent.parent
USER = [{"role": "user", "content": "2+2?"}]


# -- server_url ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server_url", "says"),
    [
        ("http://", "has no host name"),
        ("https://", "has no host name"),
        ("http:///v1", "has no host name"),
        ("http://exa mple.com", "contains a space"),
        (" http://example.com", "must start with http://"),
        ("http://example.com:99999", "port must be from 1 to 65535"),
        ("http://example.com:port", "is not a valid URL"),
        ("http://example.com/?env=prod", "without ?query or #fragment"),
        ("example.com", "must start with http://"),
    ],
)
def test_a_bad_server_url_is_one_config_error_line_at_construction(
    kind: str, server_url: str, says: str
) -> None:
    """Client/AsyncClient refuse a server_url with no host, a space, a bad port or a query."""
    cls = vibesdk.Client if kind == "sync" else vibesdk.AsyncClient
    with pytest.raises(ConfigError) as info:
        cls(server_url=server_url, sdk_key="k", cache_dir="")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("invalid vibesdk settings: server_url: ")
    assert says in message
    assert repr(server_url) in message or says.startswith("must start")


def test_a_bad_server_url_from_the_environment_fails_at_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """VIBESDK_SERVER_URL=http:// raises ConfigError in Client(), not later in the poll thread."""
    monkeypatch.setenv("VIBESDK_SERVER_URL", "http://")
    monkeypatch.setenv("VIBESDK_SDK_KEY", "k")
    with pytest.raises(ConfigError, match="server_url: 'http://' has no host name"):
        vibesdk.Client(cache_dir="")


@pytest.mark.parametrize(
    ("server_url", "kept"),
    [
        ("http://127.0.0.1:8700/", "http://127.0.0.1:8700"),
        ("https://flags.example.com/base", "https://flags.example.com/base"),
        ("http://[::1]:8700", "http://[::1]:8700"),
        ("http://flags.internal", "http://flags.internal"),
    ],
)
def test_good_server_urls_are_kept_without_their_trailing_slash(server_url: str, kept: str) -> None:
    """Hosts, IPv6 literals, ports and base paths pass; only a trailing slash is dropped."""
    assert vibesdk.Settings(server_url=server_url, sdk_key="k").server_url == kept


# -- unknown VIBESDK_* variables ----------------------------------------------------------------


@pytest.fixture
def warnings_log(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> Iterator[pytest.LogCaptureFixture]:
    """No VIBESDK_* in the environment, a fresh "warned once" memory, and the settings log."""
    import vibesdk._settings as settings_module

    for name in list(settings_module.os.environ):
        if name.upper().startswith("VIBESDK_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(settings_module, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="vibesdk.settings"):
        yield caplog


def _settings_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "vibesdk.settings"]


def test_a_typo_in_a_variable_name_is_one_warning_naming_the_right_one(
    kind: str, monkeypatch: pytest.MonkeyPatch, warnings_log: pytest.LogCaptureFixture
) -> None:
    """VIBESDK_SERVR_URL is logged once per process, with "did you mean VIBESDK_SERVER_URL?"."""
    monkeypatch.setenv("VIBESDK_SERVR_URL", "http://127.0.0.1:8700")
    for _ in range(3):
        Driver(kind, flag_source=flag_source(make_document()), cache_dir="").dispose()
    assert _settings_warnings(warnings_log) == [
        "vibesdk: environment variable VIBESDK_SERVR_URL is not a vibesdk setting and is "
        "ignored; did you mean VIBESDK_SERVER_URL?"
    ]
    assert warnings_log.records[0].levelno == logging.WARNING


def test_an_unknown_variable_with_no_near_name_points_to_the_settings(
    monkeypatch: pytest.MonkeyPatch, warnings_log: pytest.LogCaptureFixture
) -> None:
    """A name like no setting is still warned about, pointing at vibesdk.Settings."""
    monkeypatch.setenv("VIBESDK_QWERTY", "1")
    vibesdk.Client(flag_source=flag_source(make_document()), cache_dir="").close()
    (message,) = _settings_warnings(warnings_log)
    assert "VIBESDK_QWERTY is not a vibesdk setting" in message
    assert message.endswith("vibesdk.Settings lists the client's settings")


def test_variables_of_the_cli_the_launcher_and_ci_are_not_warned_about(
    monkeypatch: pytest.MonkeyPatch, warnings_log: pytest.LogCaptureFixture
) -> None:
    """VIBESDK_ADMIN_TOKEN, VIBESDK_LLAMA_SERVER, ... and the SDK's own settings stay quiet."""
    from vibesdk._settings import OTHER_VARIABLES

    for name in sorted(OTHER_VARIABLES):
        monkeypatch.setenv(name, "x")
    monkeypatch.setenv("VIBESDK_POLL_INTERVAL_S", "30")
    monkeypatch.setenv("vibesdk_streaming", "false")  # names are case-insensitive
    vibesdk.Client(flag_source=flag_source(make_document()), cache_dir="").close()
    assert _settings_warnings(warnings_log) == []


def test_the_known_other_variables_are_exactly_those_the_other_parts_read() -> None:
    """OTHER_VARIABLES = the CLI's and the launcher's settings + the VIBESDK_* names CI uses."""
    from vibesdk_server._vibe.settings import CliSettings
    from vibesdk_server.serving import ServingSettings

    from vibesdk._settings import OTHER_VARIABLES

    sdk = {f"VIBESDK_{n.upper()}" for n in vibesdk.Settings.model_fields}
    models = {
        f"VIBESDK_{n.upper()}"
        for model in (CliSettings, ServingSettings)
        for n in model.model_fields
    }
    shell_scripts = [
        path
        for path in [*(ROOT / ".ci").iterdir(), *(ROOT / "scripts").iterdir()]
        if path.is_file() and path.suffix != ".py"
    ]
    scripts = {
        name
        for path in shell_scripts
        for name in re.findall(r"\bVIBESDK_[A-Z0-9_]*[A-Z0-9]\b", path.read_text())
    }
    assert "VIBESDK_TEST_POSTGRES_URL" in scripts
    assert (models | scripts) - sdk == OTHER_VARIABLES


# -- chat() overrides ---------------------------------------------------------------------------


@pytest.fixture
def driver(kind: str) -> Iterator[Driver]:
    stable = FakeBackend(default="fine")
    flag = make_flag(stable_url="http://stable/v1", canary_url="http://canary/v1")
    d = Driver(
        kind,
        flag_source=flag_source(make_document(flag)),
        transport=FakeBackend.router({"http://stable/v1": stable, "http://canary/v1": stable}),
        cache_dir="",
    )
    yield d
    d.dispose()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"temperature": "hot"},
            "invalid chat() override temperature='hot': Input should be a valid number, "
            "unable to parse string as a number",
        ),
        (
            {"temperature": 9.0, "max_tokens": 0},
            "invalid chat() override temperature=9.0: Input should be less than or equal to 2; "
            "max_tokens=0: Input should be greater than or equal to 1",
        ),
        (
            {"temprature": 0.5, "maxtokens": 3},
            "unknown chat() override(s) maxtokens, temprature; the overrides are: max_tokens, "
            "repetition_penalty, seed, stop, temperature, top_k, top_p",
        ),
    ],
)
def test_bad_chat_overrides_are_one_invalid_argument_line(
    driver: Driver, overrides: dict[str, Any], message: str
) -> None:
    """A bad value or an unknown name is InvalidArgumentError (a VibeError) naming each one."""
    for call in (driver.chat, driver.stream):
        with pytest.raises(InvalidArgumentError) as info:
            call("vibethinker", "u1", USER, **overrides)
        assert isinstance(info.value, vibesdk.VibeError)
        assert isinstance(info.value, ValueError)
        assert str(info.value) == message


def test_a_huge_bad_override_value_is_cut_short_in_the_message(driver: Driver) -> None:
    """The message quotes at most 60 characters of the value, so it stays one short line."""
    with pytest.raises(InvalidArgumentError) as info:
        driver.chat("vibethinker", "u1", USER, stop=["x" * 10_000, 5])
    assert len(str(info.value)) < 300


# -- bucket() -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("salt", "unit_id", "says"),
    [
        ("s", 5, "unit_id is int 5; pass str(unit_id)"),
        ("s", None, "unit_id is NoneType None"),
        ("s", b"u1", "unit_id is bytes b'u1'"),
        (7, "u1", "salt is int 7; pass str(salt)"),
    ],
)
def test_bucket_refuses_what_is_not_text(salt: Any, unit_id: Any, says: str) -> None:
    """bucket("s", 5) would hash "s:5" like bucket("s", "5"): InvalidArgumentError instead."""
    with pytest.raises(InvalidArgumentError) as info:
        vibesdk.bucket(salt, unit_id)
    assert str(info.value).startswith("bucket() takes text: ")
    assert says in str(info.value)


# -- assign(): attributes -----------------------------------------------------------------------

RULE = {
    "id": "cn",
    "clauses": [{"attribute": "region", "op": "in", "values": ["cn"]}],
    "variant": "canary",
}


@pytest.mark.parametrize("attributes", [["region"], "region", 5, ("region", "cn"), b"region"])
@pytest.mark.parametrize(
    "flag",
    [
        {"rollout_bps": 5000},
        {"rollout_bps": 0, "rules": [RULE]},
        {"rollout_bps": 10_000, "enabled": False},
    ],
    ids=["rollout", "rule", "disabled"],
)
def test_attributes_that_are_not_a_mapping_are_invalid_context(
    attributes: Any, flag: dict[str, Any]
) -> None:
    """A list, a string or a number as attributes: the default variant and INVALID_CONTEXT."""
    source = flag_source(make_document(make_flag(**flag)))
    a = source.store.evaluate("vibethinker", "u1", attributes)
    assert (a.variant, a.reason, a.error_code) == (
        "stable",
        Reason.ERROR,
        ErrorCode.INVALID_CONTEXT,
    )
    assert a.config is not None  # chat() can still answer from the default variant


def test_mappings_of_any_kind_are_valid_attributes() -> None:
    """A dict, a dict subclass and a read-only mapping all match a rule the same way."""
    from collections import OrderedDict
    from types import MappingProxyType

    source = flag_source(make_document(make_flag(rollout_bps=0, rules=[RULE])))
    for attributes in (
        {"region": "cn"},
        OrderedDict(region="cn"),
        MappingProxyType({"region": "cn"}),
    ):
        a = source.store.evaluate("vibethinker", "u1", attributes)
        assert (a.variant, a.reason, a.rule_id) == ("canary", Reason.TARGETING_MATCH, "cn")
