"""Response shapes of the admin API, for /openapi.json (docs/reference/http-api.md).

Every model allows extra fields: the server may add fields, never remove them,
and a route's extra information (``restored_from`` on a rollback, ...) passes
through unchanged.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ERRORS",
    "AuditEntry",
    "Change",
    "DiffEntry",
    "DiffResult",
    "ErrorBody",
    "EnvironmentCreated",
    "EnvironmentDetail",
    "EnvironmentSummary",
    "FeedbackEntry",
    "FeedbackSummary",
    "HistoryEntry",
    "Prompt",
    "ReportEntry",
    "SdkKeyCreated",
    "Stats",
    "VersionDetail",
]


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class DiffEntry(_Out):
    path: str = Field(description="dotted path, e.g. flags.vibethinker.rollout_bps")
    before: Any = None
    after: Any = None


class Change(_Out):
    """The answer of every write to a document."""

    environment: str
    version: int = Field(description="the version now current (unchanged when changed=false)")
    previous_version: int
    changed: bool
    diff: list[DiffEntry]
    audit_id: int | None = Field(description="null for a dry run")
    restored_from: int | None = Field(default=None, description="rollback only")
    snapshot_version: int | None = Field(default=None, description="rollback only")
    good_version: int | None = Field(default=None, description="mark-good only")


class EnvironmentSummary(_Out):
    name: str
    version: int
    good_version: int | None


class EnvironmentCreated(EnvironmentSummary):
    audit_id: int


class EnvironmentDetail(_Out):
    environment: str
    version: int
    good_version: int | None
    document: dict[str, Any] = Field(description="the FlagDocument")


class SdkKeyCreated(_Out):
    name: str
    environment: str
    key: str = Field(description="shown only this once")


class HistoryEntry(_Out):
    version: int | None
    at: str
    actor: str
    action: str
    reason: str | None
    flags: list[str]
    good: bool


class VersionDetail(_Out):
    version: int
    document: dict[str, Any]
    at: str
    actor: str
    action: str
    reason: str | None
    good: bool


class DiffResult(_Out):
    from_version: int = Field(alias="from")
    to_version: int = Field(alias="to")
    flag: str | None
    diff: list[DiffEntry]


class AuditEntry(_Out):
    id: int
    at: str
    actor: str
    action: str
    environment: str | None
    flag_key: str | None
    flags: list[str]
    reason: str | None
    version: int | None
    before: Any = None
    after: Any = None
    evidence: Any = Field(
        default=None, description="what an automated decision was based on (the guard's figures)"
    )


class FeedbackEntry(_Out):
    id: int
    environment: str
    at: str
    sdk_key: str = Field(description="the name of the SDK key that sent it")
    trace_id: str
    score: int
    comment: str | None
    flag_key: str | None
    variant: str | None
    user_id: str | None


class ReportEntry(_Out):
    id: int
    environment: str
    at: str
    sdk_key: str = Field(description="the name of the SDK key that sent it")
    trace_id: str
    reason: str | None
    flag_key: str | None
    variant: str | None
    user_id: str | None


class FeedbackSummary(_Out):
    flag_key: str | None
    variant: str | None
    count: int = Field(description="scores received")
    mean_score: float | None = Field(description="null when no score was received")
    low_scores: int = Field(description="scores of 1 or 2")
    reports: int = Field(description="answers reported by users (client.report)")


class Prompt(_Out):
    id: str
    version: int
    state: str = Field(description="pending | approved | rejected")
    model: str
    note: str | None
    author: str
    created_at: str
    reviewer: str | None
    reviewed_at: str | None
    review_reason: str | None
    system: str | None = Field(default=None, description="not in lists")
    user_template: str | None = Field(default=None, description="not in lists")


class Stats(_Out):
    subscribers: int
    dropped_subscribers: int
    environments_in_memory: dict[str, int | None]
    otlp: dict[str, int] = Field(
        description="OTLP received by this replica. Metrics: requests, points_stored, "
        "points_refused (cumulative temporality), requests_refused (unreadable bodies); "
        "traces (the request log): trace_requests, spans_stored, spans_refused (no flag or "
        "variant), trace_requests_refused (unreadable bodies)"
    )


class ErrorBody(BaseModel):
    """Every refusal: one line that says what to fix."""

    detail: str


_WHAT = {
    400: "malformed JSON/YAML body or header",
    401: "no token, or an unknown one",
    403: "a token of the wrong kind, or approving a prompt one added oneself",
    404: "unknown environment, flag, version or template",
    409: "stale expected_version / If-Match, or the name exists",
    422: "well-formed but not acceptable (the detail names the field)",
}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": what} for status, what in _WHAT.items()
}
