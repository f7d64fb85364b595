"""``/v1/admin/.../release`` and ``/v1/admin/incidents``: guarded releases, for people.

Starting, pausing, resuming, promoting and aborting a release are flag writes through the
same versioned path as a rollout (:mod:`vibesdk_server._guard.actions`); the guard loop
makes the same writes on its own.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Security

from vibesdk_server._guard import actions
from vibesdk_server._storage import SqlStore
from vibesdk_server._tokens import Principal

from ._auth import bearer, principal
from ._responses import ERRORS
from ._schemas import MAX_VERSION, ReleaseActionBody, ReleaseBody

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/admin", tags=["releases"], dependencies=[Security(bearer)], responses=ERRORS
)

Env = Annotated[str, Path(description="environment name", max_length=64)]
FlagKey = Annotated[str, Path(description="flag key", max_length=64)]
Who = Annotated[Principal, Depends(principal)]
_RELEASE = "/environments/{env}/flags/{key}/release"


def _store(request: Request) -> SqlStore:
    store: SqlStore = request.app.state.store
    return store


@router.post(_RELEASE, status_code=201, summary="Start a guarded release of the flag's canary")
def start_release(
    request: Request, *, env: Env, key: FlagKey, body: ReleaseBody, who: Who
) -> dict[str, Any]:
    return actions.start(
        _store(request),
        env,
        key,
        actor=who.name,
        reason=body.reason,
        steps=body.steps,
        min_dwell_s=body.min_dwell_s,
        min_samples=body.min_samples_per_arm,
        guardrails=body.guardrails,
    )


@router.get(_RELEASE, summary="The flag's newest release: state, step, last decision")
def get_release(request: Request, *, env: Env, key: FlagKey) -> dict[str, Any]:
    """The release, with ``eval_alarms``: the flag's variants whose newest evaluation run's
    score fell below its baseline (the regression alarm), each with a one-line ``message``."""
    store = _store(request)
    return {**store.latest_release(env, key), "eval_alarms": store.eval_alarms(env, key)}


def _by_hand(command: str, summary: str) -> None:
    def endpoint(
        request: Request, *, env: Env, key: FlagKey, body: ReleaseActionBody, who: Who
    ) -> dict[str, Any]:
        return actions.by_hand(
            _store(request), env, key, command, actor=who.name, reason=body.reason
        )

    endpoint.__name__ = f"{command}_release"
    router.add_api_route(f"{_RELEASE}/{command}", endpoint, methods=["POST"], summary=summary)


_by_hand("pause", "Pause the release (the rollout stays where it is)")
_by_hand("resume", "Resume a paused release (its step starts over)")
_by_hand("promote", "Go to the next step now")
_by_hand("abort", "Rollout 0 and the release ended as rolled back")


@router.get("/incidents", summary="Rollbacks of releases (the guard's, and aborts), newest first")
def list_incidents(
    request: Request,
    *,
    environment: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[dict[str, Any]]:
    return _store(request).list_incidents(environment=environment, limit=limit)


@router.get("/incidents/{incident_id}", summary="One incident with its decision and figures")
def get_incident(
    request: Request, incident_id: Annotated[int, Path(ge=1, le=MAX_VERSION)]
) -> dict[str, Any]:
    return _store(request).incident(incident_id)
