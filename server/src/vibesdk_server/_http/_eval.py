"""``/v1/admin/environments/{env}/eval-runs``: stored evaluation runs (``vibe eval run``).

The CLI creates a run, sends each scored answer as it comes (a resumed run sends only the
missing ones; a result sent twice is stored once) and finishes the run, whereupon the server
computes the per-variant summary from the stored results. ``vibe eval history`` reads them.
Starting and finishing are audited; each result row records the token that sent it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Security
from pydantic import BaseModel, ConfigDict, Field

from vibesdk.schema import Key
from vibesdk_server._eval.summary import summarize
from vibesdk_server._eval.trend import DEFAULT_DAYS, MAX_DAYS, flag_trend
from vibesdk_server._storage import SqlStore
from vibesdk_server._tokens import Principal

from ._auth import bearer, principal
from ._responses import ERRORS
from ._schemas import MAX_VERSION

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/admin", tags=["evaluation"], dependencies=[Security(bearer)], responses=ERRORS
)

Env = Annotated[str, Path(description="environment name", max_length=64)]
Who = Annotated[Principal, Depends(principal)]
RunId = Annotated[int, Path(ge=1, le=MAX_VERSION, description="evaluation run id")]
_RUNS = "/environments/{env}/eval-runs"
_Text = Annotated[str, Field(max_length=200)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EvalRunBody(_Body):
    flag: Key = Field(description="the flag evaluated")
    set_name: str = Field(min_length=1, max_length=500, description="the golden set (a path)")
    set_digest: str = Field(min_length=1, max_length=200, description="hash of the set's items")
    items: int = Field(ge=1, le=1_000_000, description="items in the set")
    variants: list[Key] = Field(min_length=1, max_length=20)
    repeats: int = Field(default=1, ge=1, le=100, description="answers per item and variant")
    document_version: int = Field(ge=0, le=MAX_VERSION, description="the version every call used")


class EvalResult(_Body):
    item_id: str = Field(min_length=1, max_length=200)
    variant: Key
    attempt: int = Field(default=0, ge=0, le=100)
    kind: _Text
    score: float = Field(ge=0, le=1)
    correct: bool | None = None
    completeness: float | None = Field(default=None, ge=0, le=1)
    passed: bool | None = None
    conciseness: float | None = None
    document_version: int = Field(ge=0, le=MAX_VERSION)
    model: _Text | None = None
    prompt_ref: _Text | None = None
    finish_reason: _Text | None = None
    latency_s: float | None = Field(default=None, ge=0)
    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)
    fallback: bool = False
    error: str | None = Field(default=None, max_length=2000)
    checks: list[_Text] = Field(default_factory=list, max_length=50)
    details: dict[str, Any] | None = None


class EvalResultsBody(_Body):
    results: list[EvalResult] = Field(min_length=1, max_length=1000)


def _store(request: Request) -> SqlStore:
    store: SqlStore = request.app.state.store
    return store


@router.post(_RUNS, status_code=201, summary="Start an evaluation run (results follow)")
def create_eval_run(
    request: Request,
    *,
    env: Env,
    body: EvalRunBody,
    who: Who,
) -> dict[str, Any]:
    fields = body.model_dump()
    fields["flag_key"] = fields.pop("flag")
    return _store(request).create_eval_run(env, fields, actor=who.name)


@router.get(_RUNS, summary="Evaluation runs, newest first")
def list_eval_runs(
    request: Request,
    *,
    env: Env,
    flag: Annotated[str | None, Query(max_length=64, description="only this flag")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[dict[str, Any]]:
    return _store(request).list_eval_runs(env, flag_key=flag, limit=limit)


@router.get(_RUNS + "/{run_id}", summary="One evaluation run with its summary")
def get_eval_run(request: Request, *, env: Env, run_id: RunId) -> dict[str, Any]:
    return _store(request).eval_run(env, run_id)


@router.get(_RUNS + "/{run_id}/results", summary="Every scored answer of the run")
def list_eval_results(request: Request, *, env: Env, run_id: RunId) -> list[dict[str, Any]]:
    return _store(request).eval_results(env, run_id)


@router.post(_RUNS + "/{run_id}/results", summary="Store scored answers (each once)")
def add_eval_results(
    request: Request, *, env: Env, run_id: RunId, body: EvalResultsBody, who: Who
) -> dict[str, int]:
    rows = [r.model_dump() for r in body.results]
    return {"stored": _store(request).add_eval_results(env, run_id, rows, actor=who.name)}


@router.post(_RUNS + "/{run_id}/finish", summary="Summarize the stored results per variant")
def finish_eval_run(request: Request, *, env: Env, run_id: RunId, who: Who) -> dict[str, Any]:
    store = _store(request)
    run = store.eval_run(env, run_id)
    summary = summarize(store.eval_results(env, run_id), run["variants"])
    return store.finish_eval_run(env, run_id, summary, actor=who.name)


@router.get(
    "/environments/{env}/eval-trend",
    summary="The flag's golden-set score per variant per day, with changes marked",
)
def eval_trend(
    request: Request,
    *,
    env: Env,
    flag: Annotated[str, Query(min_length=1, max_length=64, description="the flag")],
    days: Annotated[
        int, Query(ge=1, le=MAX_DAYS, description="the last this many days (UTC)")
    ] = DEFAULT_DAYS,
    set_digest: Annotated[
        str | None,
        Query(max_length=200, description="the golden set (default: the newest run's)"),
    ] = None,
) -> dict[str, Any]:
    """Per day and variant: the pooled mean item score of the day's finished runs with its
    95% interval; the document versions and audited changes of the flag as markers; the
    variants in alarm (their newest run's score fell below its baseline)."""
    store = _store(request)
    out = flag_trend(store, env, flag, days=days, set_digest=set_digest)
    return {**out, "alarms": store.eval_alarms(env, flag)}
