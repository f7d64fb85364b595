"""The one typed settings object of the SDK.

Explicit arguments to ``Client(...)`` win over ``VIBESDK_*`` environment
variables, which win over the defaults. Nothing else in vibesdk reads
``os.environ``. docs/reference/settings.md is generated from this model.
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from ._errors import ConfigError

__all__ = ["Settings", "load_settings"]


# False while a client that was given its own flag_source builds its settings:
# then neither server_url nor bootstrap is needed.
_REQUIRE_SOURCE: ContextVar[bool] = ContextVar("vibesdk_require_source", default=True)


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "vibesdk"


class Settings(BaseSettings):
    """Settings of a vibesdk client; each field is also ``VIBESDK_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="VIBESDK_", extra="forbid", frozen=True)

    server_url: str | None = Field(
        default=None, description="Flag server base URL, e.g. http://127.0.0.1:8700"
    )
    sdk_key: SecretStr | None = Field(
        default=None, description="SDK key of the environment; reads flags, sends feedback"
    )
    bootstrap: Path | None = Field(
        default=None, description="Flag document JSON file to start from (or run offline with)"
    )
    cache_dir: Path | None = Field(
        default_factory=_default_cache_dir,
        description="Where the last good flag document is kept; empty disables the disk cache",
    )
    poll_interval_s: float = Field(
        default=30.0, ge=0.05, le=86_400, description="Seconds between polls (jittered ±10%)"
    )
    streaming: bool = Field(
        default=True, description="Take pushes over SSE (/v1/stream) as well as polling"
    )
    fetch_timeout_s: float = Field(
        default=5.0, gt=0, le=300, description="Timeout for one flag-server request"
    )
    api_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='Backend API keys by name, as JSON: {"openai": "sk-..."}',
    )
    feedback_queue_size: int = Field(
        default=1000, ge=1, le=1_000_000, description="Feedback waiting to be sent; more is dropped"
    )
    flag_evaluation_events: bool = Field(
        default=False,
        description="Add a feature_flag.evaluation event to each call span "
        "(the span's attributes carry the same data already)",
    )

    @field_validator("server_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("server_url must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("cache_dir", mode="before")
    @classmethod
    def _empty_disables(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _has_a_source(self) -> Settings:
        if self.server_url is None and self.bootstrap is None and _REQUIRE_SOURCE.get():
            raise ValueError(
                "give server_url (or VIBESDK_SERVER_URL) to fetch flags from the flag server, "
                "or bootstrap (a flag document file) to run offline"
            )
        if self.server_url is not None and self.sdk_key is None:
            raise ValueError("server_url needs sdk_key (or VIBESDK_SDK_KEY)")
        if self.bootstrap is not None and not self.bootstrap.is_file():
            raise ValueError(f"bootstrap file {str(self.bootstrap)!r} does not exist")
        return self


def load_settings(*, require_source: bool = True, **overrides: Any) -> Settings:
    """Build :class:`Settings` from arguments and environment; raise :class:`ConfigError`.

    ``require_source=False`` (a client given its own ``flag_source``) drops the
    rule that one of ``server_url`` or ``bootstrap`` must be set.
    """
    explicit = {k: v for k, v in overrides.items() if v is not None}
    token = _REQUIRE_SOURCE.set(require_source)
    try:
        return Settings(**explicit)
    except ValidationError as exc:
        problems = "; ".join(
            (".".join(str(p) for p in e["loc"]) + ": " if e["loc"] else "") + e["msg"]
            for e in exc.errors(include_url=False)
        )
        raise ConfigError(f"invalid vibesdk settings: {problems}") from exc
    except SettingsError as exc:
        # A VIBESDK_* variable that pydantic-settings cannot even decode (api_keys
        # that are not JSON): its message names the field.
        raise ConfigError(
            f"invalid vibesdk settings: {exc}; values such as VIBESDK_API_KEYS must be JSON"
        ) from exc
    finally:
        _REQUIRE_SOURCE.reset(token)
