"""``/v1/admin/environments/{env}/flags/{key}/review/...``: the human review queue.

``next`` offers the calling token's name (the reviewer) one logged answer, blind (no variant
or model); ``scores`` stores a 1..5 score with a note (and reveals the variant and model in its
answer) or lists the stored ones; ``summary`` gives the per-variant aggregates and the
agreement between reviewers (:mod:`vibesdk_server._review.stats`). Every stored score is
audited and emitted as a ``gen_ai.evaluation.result`` OpenTelemetry event.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Security
from opentelemetry._logs import LoggerProvider
from pydantic import BaseModel, ConfigDict, Field

from vibesdk_server._review import stats
from vibesdk_server._review.events import emit_score
from vibesdk_server._storage import SqlStore
from vibesdk_server._tokens import Principal

from ._auth import bearer, principal
from ._responses import ERRORS

__all__ = ["ScoreBody", "router", "store_score", "summary_of"]

router = APIRouter(
    prefix="/v1/admin", tags=["review"], dependencies=[Security(bearer)], responses=ERRORS
)

Env = Annotated[str, Path(description="environment name", max_length=64)]
FlagKey = Annotated[str, Path(description="flag key", max_length=64)]
Who = Annotated[Principal, Depends(principal)]
_REVIEW = "/environments/{env}/flags/{key}/review"


class ScoreBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trace_id: str = Field(
        pattern="^[0-9a-f]{32}$", description="the answer's trace id (32 lowercase hex digits)"
    )
    score: int = Field(ge=stats.SCORE_MIN, le=stats.SCORE_MAX, description="1 (bad) to 5")
    note: str | None = Field(default=None, max_length=2000, description="why, in a few words")


def _store(request: Request) -> SqlStore:
    store: SqlStore = request.app.state.store
    return store


def store_score(
    request: Request, env: str, key: str, body: ScoreBody, reviewer: str
) -> dict[str, Any]:
    """Store and emit one score (the API's and the dashboard's path); the stored row."""
    note = " ".join(body.note.split()) if body.note else None
    stored = _store(request).add_review_score(
        env, key, body.trace_id, score=body.score, note=note or None, reviewer=reviewer
    )
    provider: LoggerProvider | None = request.app.state.logger_provider
    emit_score(provider, stored)
    return stored


def summary_of(store: SqlStore, env: str, key: str) -> dict[str, Any]:
    """Per-variant aggregates and reviewer agreement of the flag's scores."""
    scores = store.review_scores(env, key)
    return {
        "flag": key,
        "scores": len(scores),
        "reviewers": sorted({s["reviewer"] for s in scores}),
        "variants": stats.per_variant(scores),
        "agreement": stats.agreement(scores),
    }


@router.get(_REVIEW + "/next", summary="The next answer for the calling reviewer, blind")
def next_item(request: Request, *, env: Env, key: FlagKey, who: Who) -> dict[str, Any]:
    return _store(request).next_review(env, key, who.name)


@router.post(_REVIEW + "/scores", status_code=201, summary="Score an answer 1..5 with a note")
def add_score(
    request: Request, *, env: Env, key: FlagKey, body: ScoreBody, who: Who
) -> dict[str, Any]:
    return store_score(request, env, key, body, who.name)


@router.get(_REVIEW + "/scores", summary="Every stored score of the flag, oldest first")
def list_scores(
    request: Request,
    *,
    env: Env,
    key: FlagKey,
    variant: Annotated[str | None, Query(max_length=200, description="only this variant")] = None,
) -> list[dict[str, Any]]:
    return _store(request).review_scores(env, key, variant=variant)


@router.get(_REVIEW + "/summary", summary="Review aggregates per variant and agreement")
def summary(request: Request, *, env: Env, key: FlagKey) -> dict[str, Any]:
    return summary_of(_store(request), env, key)
