"""Settings of the llama.cpp launcher; each field is also ``VIBESDK_<NAME>``.

Nothing else in ``vibesdk_server.serving`` reads ``os.environ``; explicit arguments to
:func:`~vibesdk_server.serving.serve` win over these.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from vibesdk import ConfigError

__all__ = ["ServingSettings", "load_serving_settings"]


class ServingSettings(BaseSettings):
    """Where the launcher finds llama.cpp and the real VibeThinker weights."""

    model_config = SettingsConfigDict(env_prefix="VIBESDK_", extra="ignore", frozen=True)

    llama_server: Path | None = Field(
        default=None,
        description="The llama-server binary; default: the newest build of server/llama/build.sh "
        "under ~/.cache/vibesdk/llama.cpp (a CUDA build first), then PATH",
    )
    vibethinker_gguf: Path | None = Field(
        default=None,
        description="GGUF file of the real VibeThinker-1.5B (e.g. a Q8_0 conversion); "
        "the model name 'vibethinker' resolves to it",
    )
    model_cache_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "vibesdk" / "models",
        description="Where packaged models that come in chunks are assembled once",
    )


def load_serving_settings(**overrides: object) -> ServingSettings:
    """Read the settings; raise :class:`vibesdk.ConfigError` naming the bad variable."""
    try:
        return ServingSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(f"invalid serving settings: {exc}") from exc
