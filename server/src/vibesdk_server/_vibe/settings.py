"""The CLI's own settings: where the flag server is, who you are, which environment.

``--server``/``--token``/``--env`` beat ``VIBESDK_SERVER_URL``/``VIBESDK_ADMIN_TOKEN``/
``VIBESDK_ENVIRONMENT``, which beat the defaults. The SDK's :class:`vibesdk.Settings`
is not reused: the CLI holds an admin token, never an SDK key, and needs no flag source.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vibesdk.schema import check_http_url

from .errors import CliError

__all__ = ["DEFAULT_SERVER_URL", "CliSettings", "load_cli_settings"]

DEFAULT_SERVER_URL = "http://127.0.0.1:8700"


_SOURCES = {
    "server_url": "--server / VIBESDK_SERVER_URL",
    "admin_token": "--token / VIBESDK_ADMIN_TOKEN",
    "environment": "--env / VIBESDK_ENVIRONMENT",
}


class CliSettings(BaseSettings):
    """Settings of the ``vibe`` CLI; each field is also ``VIBESDK_<NAME>``."""

    # extra="ignore": the SDK's own VIBESDK_* variables share the prefix.
    model_config = SettingsConfigDict(env_prefix="VIBESDK_", extra="ignore", frozen=True)

    server_url: str = Field(default=DEFAULT_SERVER_URL, description="Flag server base URL")
    admin_token: SecretStr | None = Field(
        default=None, description="Admin token (vibe-server token create)"
    )
    environment: str = Field(default="default", description="Environment the commands act on")

    @field_validator("server_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_http_url(value)

    @field_validator("environment")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()


def load_cli_settings(**overrides: Any) -> CliSettings:
    """Build :class:`CliSettings` from flags (``None`` = not given) and environment."""
    explicit = {k: v for k, v in overrides.items() if v is not None}
    try:
        return CliSettings(**explicit)
    except ValidationError as exc:
        problems = "; ".join(
            f"invalid {_SOURCES.get(str(e['loc'][0]) if e['loc'] else '', 'settings')}: "
            + str(e["msg"]).removeprefix("Value error, ")
            for e in exc.errors(include_url=False)
        )
        raise CliError.usage(problems) from exc
