"""The one typed settings object of the SDK.

Explicit arguments to ``Client(...)`` win over ``VIBESDK_*`` environment
variables, which win over the defaults. Nothing else in vibesdk reads
``os.environ``. docs/reference/settings.md is generated from this model.

A ``VIBESDK_*`` variable that no part of vibesdk reads (a typo such as
``VIBESDK_SERVR_URL``) is logged once per process as a warning on the
``vibesdk.settings`` logger, naming the closest known variable.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import httpx
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from ._errors import ConfigError

__all__ = ["OTHER_VARIABLES", "Settings", "check_http_url", "load_settings"]

logger = logging.getLogger("vibesdk.settings")

# VIBESDK_* variables that other parts of vibesdk read: the vibe CLI (CliSettings), the model
# launcher of vibesdk-server (ServingSettings), and the test and CI scripts. The SDK ignores
# them and does not warn about them; tests/test_settings.py pins this list against those models.
OTHER_VARIABLES = frozenset(
    {
        "VIBESDK_ADMIN_TOKEN",
        "VIBESDK_ENVIRONMENT",
        "VIBESDK_LLAMA_SERVER",
        "VIBESDK_MODEL_CACHE_DIR",
        "VIBESDK_PG_DB",
        "VIBESDK_PG_DIR",
        "VIBESDK_TEST_POSTGRES_URL",
        "VIBESDK_VIBETHINKER_GGUF",
    }
)
_PREFIX = "VIBESDK_"
_warned: set[str] = set()
_warned_lock = threading.Lock()


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
    server_metrics: bool = Field(
        default=True,
        description="Send this client's per-variant metrics to the flag server over OTLP "
        "(with server_url and sdk_key), for its canary analysis, and the calls that the "
        "flag document's log_share selects to its request log",
    )
    server_metrics_interval_s: float = Field(
        default=5.0, ge=1.0, le=300.0, description="Seconds between metric exports to the server"
    )
    request_log_queue_size: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description="Logged calls waiting to be sent to the request log; more are dropped",
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
        return check_http_url(value)

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
    warn_unknown_variables(os.environ)
    explicit = {k: v for k, v in overrides.items() if v is not None}
    token = _REQUIRE_SOURCE.set(require_source)
    try:
        return Settings(**explicit)
    except ValidationError as exc:
        problems = "; ".join(
            (".".join(str(p) for p in e["loc"]) + ": " if e["loc"] else "")
            + e["msg"].removeprefix("Value error, ")
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


def check_http_url(value: str) -> str:
    """``value`` as a base URL without its trailing slash; ``ValueError`` saying what to fix.

    It must be ``http://`` or ``https://`` with a host name, a port from 1 to
    65535 if any, and no spaces, query or fragment: ``http://127.0.0.1:8700``.
    """
    example = "e.g. http://127.0.0.1:8700"
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"must start with http:// or https:// ({example}), not {value!r}")
    if any(c.isspace() for c in value):
        raise ValueError(f"{value!r} contains a space; remove it ({example})")
    try:
        url = httpx.URL(value)
        port = url.port
    except (httpx.InvalidURL, ValueError) as exc:
        raise ValueError(f"{value!r} is not a valid URL: {exc}") from None
    if not url.host:
        raise ValueError(f"{value!r} has no host name ({example})")
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"{value!r}: the port must be from 1 to 65535")
    if url.query or url.fragment or value.endswith(("?", "#")):
        raise ValueError(f"{value!r} must be a base URL, without ?query or #fragment")
    return value.rstrip("/")


def warn_unknown_variables(environ: Mapping[str, str]) -> None:
    """Log each ``VIBESDK_*`` name in ``environ`` that no part of vibesdk reads, once per process.

    The warning names the closest known variable, so a typo is found at once.
    """
    known = _known_variables()
    unknown = [
        name for name in environ if name.upper().startswith(_PREFIX) and name.upper() not in known
    ]
    if not unknown:
        return
    with _warned_lock:
        new = [name for name in unknown if name not in _warned]
        _warned.update(new)
    for name in sorted(new):
        logger.warning("%s", _unknown_variable_message(name, known))


def _known_variables() -> frozenset[str]:
    return OTHER_VARIABLES | {_PREFIX + name.upper() for name in Settings.model_fields}


def _unknown_variable_message(name: str, known: Iterable[str]) -> str:
    import difflib  # only when a variable is unknown: `import vibesdk` stays lean

    # Compared without the prefix they all share, which would make any two names look alike.
    suffixes = sorted(k.removeprefix(_PREFIX) for k in known)
    close = difflib.get_close_matches(name.upper().removeprefix(_PREFIX), suffixes, n=1)
    hint = (
        f"did you mean {_PREFIX}{close[0]}?"
        if close
        else "vibesdk.Settings lists the client's settings"
    )
    return f"vibesdk: environment variable {name} is not a vibesdk setting and is ignored; {hint}"
