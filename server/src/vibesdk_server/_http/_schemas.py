"""Request bodies of the HTTP API (SDK and admin routes); unknown fields are refused with 422."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vibesdk.schema import Key

__all__ = [
    "MAX_VERSION",
    "ApplyBody",
    "EnabledBody",
    "EnvironmentBody",
    "FeedbackBody",
    "ReportBody",
    "PromptBody",
    "ReasonBody",
    "ReleaseActionBody",
    "ReleaseBody",
    "RollbackBody",
    "RolloutBody",
    "SdkKeyBody",
]

# Versions stay within what JSON numbers carry exactly (and SQLite/PostgreSQL integers).
MAX_VERSION = 2**53 - 1

Reason = Annotated[str | None, Field(default=None, max_length=2000, description="why (audited)")]
Expected = Annotated[
    int | None,
    Field(
        default=None,
        ge=0,
        le=2**53 - 1,
        description="optimistic concurrency: 409 unless this is current",
    ),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReasonBody(_Body):
    reason: Reason = None


class EnvironmentBody(_Body):
    name: Key
    reason: Reason = None


class ApplyBody(_Body):
    flags: list[dict[str, Any]] = Field(
        max_length=1000,
        description="Flag JSON; a variant's prompt may be a reference {id, version} to an approved"
        " template, which the server embeds",
    )
    prune: bool = Field(default=False, description="remove flags not listed")
    dry_run: bool = Field(default=False, description="compute the diff, write nothing")
    reason: Reason = None
    expected_version: Expected = None


class RolloutBody(_Body):
    bps: int = Field(ge=0, le=10_000, description="basis points: 1000 = 10%, 1 = 0.01%")
    reason: Reason = None
    expected_version: Expected = None


class EnabledBody(_Body):
    enabled: bool = Field(description="false is the kill switch: everyone gets the default variant")
    reason: Reason = None
    expected_version: Expected = None


class RollbackBody(_Body):
    reason: str = Field(min_length=1, max_length=2000, description="required: why roll back")
    to_version: int | None = Field(
        default=None, ge=0, le=MAX_VERSION, description="default: the last good version"
    )
    expected_version: Expected = None

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a rollback needs a reason, e.g. 'p95 over 3 s'")
        return value


class PromptBody(_Body):
    id: Key
    system: str = Field(max_length=200_000)
    user_template: str = Field(default="{input}", max_length=200_000)
    model: str = Field(min_length=1, max_length=200, description="the model it was reviewed for")
    note: str | None = Field(default=None, max_length=2000)

    @field_validator("user_template")
    @classmethod
    def _has_input(cls, value: str) -> str:
        if "{input}" not in value:
            raise ValueError("user_template must contain the placeholder {input}")
        return value


class SdkKeyBody(_Body):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")


class ReportBody(BaseModel):
    # Extra fields are ignored: a newer SDK may send more than this server knows.
    trace_id: str = Field(pattern=r"^[0-9a-f]{32}$", description="the OpenTelemetry trace id")
    reason: str | None = Field(default=None, max_length=2000)
    flag_key: str | None = Field(default=None, max_length=200)
    variant: str | None = Field(default=None, max_length=200)
    user_id: str | None = Field(default=None, max_length=500)


class FeedbackBody(BaseModel):
    # Extra fields are ignored: a newer SDK may send more than this server knows.
    trace_id: str = Field(pattern=r"^[0-9a-f]{32}$", description="the OpenTelemetry trace id")
    score: int = Field(ge=1, le=5)
    comment: str | None = Field(default=None, max_length=2000)
    flag_key: str | None = Field(default=None, max_length=200)
    variant: str | None = Field(default=None, max_length=200)
    user_id: str | None = Field(default=None, max_length=500)


class ReleaseBody(_Body):
    steps: list[Annotated[int, Field(ge=1, le=10_000)]] | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="rollout steps in basis points, rising (absent: the flag's release plan,"
        " else 100, 500, 1000, 2500, 5000, 10000: 1 -> 5 -> 10 -> 25 -> 50 -> 100%)",
    )
    min_dwell_s: float | None = Field(
        default=None,
        ge=0,
        le=30 * 86400,
        description="least time per step, seconds (absent: the flag's release plan, else 120)",
    )
    min_samples_per_arm: int | None = Field(
        default=None,
        ge=1,
        le=10**9,
        description="least calls per arm per step, and the sample size the guard's confidence"
        " sequence is tuned for (absent: the flag's release plan, else 200)",
    )
    guardrails: list[dict[str, Any]] | None = Field(
        default=None,
        max_length=50,
        description="replaces the plan's guardrails and the defaults (breakage, slow_calls,"
        " fallbacks, checks): objects with name, kind, metric, threshold and optionally"
        " action, harm, tolerance, min_trials",
    )
    reason: Reason = None


class ReleaseActionBody(_Body):
    reason: str = Field(min_length=1, max_length=2000, description="required: why")

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("give a reason, e.g. 'looked at the traces: fine'")
        return value
