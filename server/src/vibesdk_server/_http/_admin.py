"""``/v1/admin/...``: the ops API (docs/reference/http-api.md). Admin token required (see _auth).

Endpoints are plain functions: FastAPI runs them in worker threads, where the
synchronous store does its transaction; a new version is pushed to SSE
subscribers from the store's commit hook before the response is sent.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Security

from vibesdk import FlagDocument
from vibesdk_server._domain import _changes
from vibesdk_server._domain._diff import diff
from vibesdk_server._domain._errors import BadRequestError, InvalidError, NotFoundError
from vibesdk_server._domain._prompts import resolve_flags
from vibesdk_server._guard import plan
from vibesdk_server._guard.actions import end_by_rollback
from vibesdk_server._storage import Mutation, SqlStore, Tx, rfc3339
from vibesdk_server._tokens import Principal

from ._auth import bearer, principal
from ._responses import (
    ERRORS,
    AuditEntry,
    Change,
    DiffResult,
    EnvironmentCreated,
    EnvironmentDetail,
    EnvironmentSummary,
    FeedbackEntry,
    FeedbackSummary,
    HistoryEntry,
    Prompt,
    ReportEntry,
    SdkKeyCreated,
    Stats,
    VersionDetail,
)
from ._schemas import (
    MAX_VERSION,
    ApplyBody,
    EnabledBody,
    EnvironmentBody,
    PromptBody,
    ReasonBody,
    RollbackBody,
    RolloutBody,
    SdkKeyBody,
)

__all__ = ["router"]

log = logging.getLogger("vibesdk_server")

router = APIRouter(
    prefix="/v1/admin", tags=["admin"], dependencies=[Security(bearer)], responses=ERRORS
)

Env = Annotated[str, Path(description="environment name", max_length=64)]
FeedbackFlag = Annotated[str | None, Query(max_length=64, description="only this flag")]
FeedbackVariant = Annotated[str | None, Query(max_length=200, description="only this variant")]
Since = Annotated[
    dt.datetime | None,
    Query(description="only feedback received at or after this time (RFC 3339; no zone = UTC)"),
]
FlagKey = Annotated[str, Path(description="flag key", max_length=64)]
IfMatch = Annotated[
    str | None,
    Header(description='"<version>": same as expected_version (409 when stale)', max_length=40),
]
Limit = Annotated[int, Query(ge=1, le=1000)]
_ETAG = re.compile(r'^(?:W/)?"?(\d{1,15})"?$')


def _store(request: Request) -> SqlStore:
    store: SqlStore = request.app.state.store
    return store


def _expected(body_value: int | None, if_match: str | None) -> int | None:
    if if_match is None:
        return body_value
    match = _ETAG.match(if_match.strip())
    if match is None:
        raise BadRequestError(f'If-Match must be a quoted version such as "42", got {if_match!r}')
    header_value = int(match.group(1))
    if body_value is not None and body_value != header_value:
        raise BadRequestError(
            f"If-Match says version {header_value} but expected_version says {body_value};"
            " send one of them"
        )
    return header_value


def _log(who: Principal, change: dict[str, Any], action: str, reason: str | None) -> None:
    flags = sorted({d["path"].split(".")[1] for d in change.get("diff", []) if "." in d["path"]})
    log.info(
        "admin action=%s actor=%s env=%s version=%s->%s changed=%s flags=%s reason=%r",
        action,
        who.name,
        change.get("environment"),
        change.get("previous_version"),
        change.get("version"),
        change.get("changed"),
        ",".join(flags) or "-",
        reason,
    )


# -- environments -------------------------------------------------------------------------------
@router.get(
    "/environments",
    summary="List environments",
    response_model=list[EnvironmentSummary],
    response_model_exclude_unset=True,
    response_model_by_alias=True,
)
def list_environments(request: Request) -> list[dict[str, Any]]:
    return _store(request).list_environments()


@router.post(
    "/environments",
    status_code=201,
    summary="Create an environment (version 0)",
    response_model=EnvironmentCreated,
    response_model_exclude_unset=True,
    response_model_by_alias=True,
)
def create_environment(
    request: Request, *, body: EnvironmentBody, who: Annotated[Principal, Depends(principal)]
) -> dict[str, Any]:
    out = _store(request).create_environment(body.name, actor=who.name, reason=body.reason)
    log.info("admin action=create_environment actor=%s env=%s", who.name, body.name)
    return out


@router.get(
    "/environments/{env}",
    summary="An environment's current document",
    response_model=EnvironmentDetail,
    response_model_exclude_unset=True,
    response_model_by_alias=True,
)
def get_environment(request: Request, env: Env) -> dict[str, Any]:
    return _store(request).get_environment(env)


@router.post(
    "/environments/{env}/sdk-keys",
    status_code=201,
    summary="Create an SDK key",
    response_model=SdkKeyCreated,
    response_model_exclude_unset=True,
    response_model_by_alias=True,
)
def create_sdk_key(
    request: Request, *, env: Env, body: SdkKeyBody, who: Annotated[Principal, Depends(principal)]
) -> dict[str, Any]:
    key = _store(request).create_token(
        kind="sdk", name=body.name, environment=env, created_by=who.name
    )
    log.info("admin action=sdk_key_create actor=%s env=%s name=%s", who.name, env, body.name)
    return {"name": body.name, "environment": env, "key": key}


# -- writes to the document ---------------------------------------------------------------------
def _write(
    request: Request,
    who: Principal,
    env: str,
    action: str,
    mutate: Any,
    *,
    reason: str | None,
    expected: int | None,
    dry_run: bool = False,
) -> dict[str, Any]:
    change = _store(request).write(
        env,
        mutate,
        actor=who.name,
        action=action,
        reason=reason,
        expected_version=expected,
        dry_run=dry_run,
    )
    if not dry_run:
        _log(who, change, action, reason)
    return change


@router.post(
    "/environments/{env}/apply",
    summary="Upsert flags (GitOps style)",
    response_model=Change,
    response_model_exclude_unset=True,
    response_model_by_alias=True,
)
def apply(
    request: Request,
    *,
    env: Env,
    body: ApplyBody,
    who: Annotated[Principal, Depends(principal)],
    if_match: IfMatch = None,
) -> dict[str, Any]:
    store = _store(request)

    def mutate(tx: Tx, current: FlagDocument) -> Mutation:
        raw, plans = plan.take_sections(body.flags)  # release plans: server-side only
        flags = resolve_flags(raw, lambda pid, v: store.get_prompt(pid, v, tx))
        after = _changes.apply_flags(current.flags, flags, prune=body.prune)
        beside = store.stage_release_plans(
            tx, env, plans, flags=after, version=current.version + 1, write=not body.dry_run
        )
        return Mutation(after, {}, *beside)

    return _write(
        request,
        who,
        env,
        "apply",
        mutate,
        reason=body.reason,
        expected=_expected(body.expected_version, if_match),
        dry_run=body.dry_run,
    )


@router.post(
    "/environments/{env}/flags/{key}/rollout",
    summary="Set a flag's canary rollout",
    response_model=Change,
    response_model_exclude_unset=True,
    response_model_by_alias=True,
)
def rollout(
    request: Request,
    *,
    env: Env,
    key: FlagKey,
    body: RolloutBody,
    who: Annotated[Principal, Depends(principal)],
    if_match: IfMatch = None,
) -> dict[str, Any]:
    def mutate(tx: Tx, current: FlagDocument) -> Mutation:
        return Mutation(_changes.set_rollout(current.flags, key, body.bps, environment=env), {})

    return _write(
        request,
        who,
        env,
        "rollout",
        mutate,
        reason=body.reason,
        expected=_expected(body.expected_version, if_match),
    )


@router.post(
    "/environments/{env}/flags/{key}/enabled",
    summary="The kill switch",
    response_model=Change,
    response_model_exclude_unset=True,
    response_model_by_alias=True,
)
def enabled(
    request: Request,
    *,
    env: Env,
    key: FlagKey,
    body: EnabledBody,
    who: Annotated[Principal, Depends(principal)],
    if_match: IfMatch = None,
) -> dict[str, Any]:
    def mutate(tx: Tx, current: FlagDocument) -> Mutation:
        flags = _changes.set_enabled(current.flags, key, body.enabled, environment=env)
        return Mutation(flags, {})

    return _write(
        request,
        who,
        env,
        "enable" if body.enabled else "kill",
        mutate,
        reason=body.reason,
        expected=_expected(body.expected_version, if_match),
    )


@router.post(
    "/environments/{env}/flags/{key}/rollback",
    summary="Rollout 0 + last good restored",
    response_model=Change,
    response_model_exclude_unset=True,
    response_model_by_alias=True,
)
def rollback(
    request: Request,
    *,
    env: Env,
    key: FlagKey,
    body: RollbackBody,
    who: Annotated[Principal, Depends(principal)],
    if_match: IfMatch = None,
) -> dict[str, Any]:
    store = _store(request)

    def mutate(tx: Tx, current: FlagDocument) -> Mutation:
        _changes.set_enabled(current.flags, key, True, environment=env)  # 404 for unknown flags
        end_by_rollback(store, tx, env, key, actor=who.name, reason=body.reason)
        if body.to_version is not None:
            if body.to_version > current.version:
                raise InvalidError(
                    f"to_version {body.to_version} is newer than the current version"
                    f" {current.version}; pick one from vibe history"
                )
            good_version: int | None = body.to_version
        else:
            good_version = _changes.find_good_version(
                store.history_views(tx, env, key, current.version, good_only=True),
                store.history_views(tx, env, key, current.version),
            )
        assert good_version is not None  # the flag exists now, so some version has it
        good = store.flag_at(tx, env, good_version, key)
        flags = _changes.rollback_flag(
            current.flags, key, good, environment=env, version=good_version
        )
        return Mutation(flags, {"restored_from": good_version, "snapshot_version": current.version})

    return _write(
        request,
        who,
        env,
        "rollback",
        mutate,
        reason=body.reason,
        expected=_expected(body.expected_version, if_match),
    )


@router.post(
    "/environments/{env}/versions/{version}/good",
    summary="Mark a version known-good",
    response_model=Change,
    response_model_exclude_unset=True,
    response_model_by_alias=True,
)
def mark_good(
    request: Request,
    *,
    env: Env,
    version: Annotated[int, Path(ge=0, le=MAX_VERSION)],
    who: Annotated[Principal, Depends(principal)],
    body: Annotated[ReasonBody | None, Body()] = None,
) -> dict[str, Any]:
    reason = body.reason if body else None
    change = _store(request).mark_good(env, version, actor=who.name, reason=reason)
    log.info(
        "admin action=mark_good actor=%s env=%s version=%s reason=%r",
        who.name,
        env,
        version,
        reason,
    )
    return change


# -- reading history ----------------------------------------------------------------------------
@router.get(
    "/environments/{env}/history",
    summary="What changed, newest first",
    response_model=list[HistoryEntry],
    response_model_exclude_unset=True,
    response_model_by_alias=True,
)
def history(
    request: Request,
    *,
    env: Env,
    flag: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = 50,
) -> list[dict[str, Any]]:
    return _store(request).history(env, flag=flag, limit=limit)


@router.get(
    "/environments/{env}/versions/{version}",
    summary="One immutable version",
    response_model=VersionDetail,
    response_model_exclude_unset=True,
    response_model_by_alias=True,
)
def get_version(
    request: Request, env: Env, version: Annotated[int, Path(ge=0, le=MAX_VERSION)]
) -> dict[str, Any]:
    return _store(request).version(env, version)


@router.get(
    "/environments/{env}/diff",
    summary="Diff two versions",
    response_model=DiffResult,
    response_model_exclude_unset=True,
    response_model_by_alias=True,
)
def get_diff(
    request: Request,
    *,
    env: Env,
    from_version: Annotated[int, Query(alias="from", ge=0, le=MAX_VERSION)],
    to_version: Annotated[int, Query(alias="to", ge=0, le=MAX_VERSION)],
    flag: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    store = _store(request)
    before = store.flags_with_plans(env, from_version)
    after = store.flags_with_plans(env, to_version)
    if flag is not None:
        if flag not in before and flag not in after:
            raise NotFoundError(
                f"flag {flag!r} exists in neither version {from_version} nor {to_version};"
                f" vibe history {flag} lists the versions that changed it"
            )
        changes = diff(before.get(flag), after.get(flag), prefix=f"flags.{flag}")
    else:
        changes = diff({"flags": before}, {"flags": after})
    return {"from": from_version, "to": to_version, "flag": flag, "diff": changes}


@router.get(
    "/stats",
    summary="This replica's live numbers: open streams, dropped subscribers",
    response_model=Stats,
    response_model_exclude_unset=True,
    response_model_by_alias=True,
)
async def stats(request: Request) -> dict[str, Any]:
    hub = request.app.state.hub
    return {
        "subscribers": hub.subscriber_count,
        "dropped_subscribers": hub.dropped_subscribers,
        "environments_in_memory": {
            env: hub.latest_version(env) for env in sorted(hub.known_environments())
        },
        "otlp": request.app.state.otlp.as_dict(),
    }


@router.get(
    "/environments/{env}/measurements",
    summary="What SDKs measured for a flag (OTLP), per variant",
)
def measurements(
    request: Request,
    *,
    env: Env,
    flag: Annotated[str, Query(max_length=64, description="the flag")],
    since: Since = None,
    step: Annotated[
        str | None,
        Query(
            pattern="^[0-9a-f]{16}$",
            description="a step_id of the flag: count only the users counted in that step",
        ),
    ] = None,
) -> dict[str, Any]:
    start = None if since is None else int(since.timestamp())
    store = _store(request)
    variants = store.measurements(environment=env, flag_key=flag, since=start, step=step)
    return {"environment": env, "flag": flag, "since": start, "step": step, "variants": variants}


@router.get(
    "/environments/{env}/request-log",
    summary="Calls SDKs logged in full (a variant's log_share), newest first",
)
def request_log(
    request: Request,
    *,
    env: Env,
    flag: FeedbackFlag = None,
    variant: FeedbackVariant = None,
    failed: Annotated[
        str | None, Query(max_length=64, description="only calls that failed this output check")
    ] = None,
    reported: Annotated[
        bool, Query(description="true: only calls whose answer a user reported")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[dict[str, Any]]:
    store = _store(request)
    store.current_version(env)  # 404 for an environment that does not exist
    return store.request_log(
        env, flag_key=flag, variant=variant, failed=failed, reported=reported, limit=limit
    )


@router.get(
    "/audit",
    summary="The audit log, newest first",
    response_model=list[AuditEntry],
    response_model_exclude_unset=True,
    response_model_by_alias=True,
)
def audit(
    request: Request,
    *,
    environment: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = 100,
) -> list[dict[str, Any]]:
    return _store(request).audit(environment=environment, limit=limit)


@router.get(
    "/feedback",
    summary="User feedback sent by SDKs, newest first",
    response_model=list[FeedbackEntry],
    response_model_exclude_unset=True,
    response_model_by_alias=True,
)
def feedback(
    request: Request,
    *,
    environment: Annotated[str | None, Query(max_length=64)] = None,
    flag: FeedbackFlag = None,
    variant: FeedbackVariant = None,
    since: Since = None,
    limit: Limit = 100,
) -> list[dict[str, Any]]:
    return _store(request).list_feedback(
        environment=environment,
        limit=limit,
        flag_key=flag,
        variant=variant,
        since=None if since is None else rfc3339(since),
    )


@router.get(
    "/reports",
    summary="Answers users reported (client.report), newest first",
    response_model=list[ReportEntry],
    response_model_exclude_unset=True,
    response_model_by_alias=True,
)
def reports(
    request: Request,
    *,
    environment: Annotated[str | None, Query(max_length=64)] = None,
    flag: FeedbackFlag = None,
    variant: FeedbackVariant = None,
    since: Since = None,
    limit: Limit = 100,
) -> list[dict[str, Any]]:
    return _store(request).list_reports(
        environment=environment,
        limit=limit,
        flag_key=flag,
        variant=variant,
        since=None if since is None else rfc3339(since),
    )


@router.get(
    "/feedback/summary",
    summary="Feedback count, mean score and reports per flag and variant",
    response_model=list[FeedbackSummary],
)
def feedback_summary(
    request: Request,
    environment: Annotated[str, Query(max_length=64)],
    flag: FeedbackFlag = None,
    variant: FeedbackVariant = None,
    since: Since = None,
) -> list[dict[str, Any]]:
    return _store(request).feedback_summary(
        environment=environment,
        flag_key=flag,
        variant=variant,
        since=None if since is None else rfc3339(since),
    )


# -- prompts ------------------------------------------------------------------------------------
@router.post(
    "/prompts",
    status_code=201,
    summary="Register a new prompt template version",
    response_model=Prompt,
    response_model_exclude_unset=True,
    response_model_by_alias=True,
)
def create_prompt(
    request: Request, *, body: PromptBody, who: Annotated[Principal, Depends(principal)]
) -> dict[str, Any]:
    out = _store(request).create_prompt(
        prompt_id=body.id,
        system=body.system,
        user_template=body.user_template,
        model=body.model,
        note=body.note,
        author=who.name,
    )
    log.info(
        "admin action=prompt_add actor=%s prompt=%s@%s model=%s",
        who.name,
        out["id"],
        out["version"],
        out["model"],
    )
    return out


@router.get(
    "/prompts",
    summary="List prompt template versions (without their text)",
    response_model=list[Prompt],
    response_model_exclude_unset=True,
    response_model_by_alias=True,
)
def list_prompts(request: Request) -> list[dict[str, Any]]:
    return _store(request).list_prompts()


@router.get(
    "/prompts/{prompt_id}/versions/{version}",
    summary="One template version, with text",
    response_model=Prompt,
    response_model_exclude_unset=True,
    response_model_by_alias=True,
)
def get_prompt(
    request: Request,
    *,
    prompt_id: Annotated[str, Path(max_length=64)],
    version: Annotated[int, Path(ge=1, le=MAX_VERSION)],
) -> dict[str, Any]:
    return _store(request).get_prompt(prompt_id, version)


def _review(
    request: Request,
    *,
    who: Principal,
    prompt_id: str,
    version: int,
    body: ReasonBody | None,
    state: str,
) -> dict[str, Any]:
    reason = body.reason if body else None
    out = _store(request).review_prompt(
        prompt_id,
        version,
        state=state,
        reviewer=who.name,
        reason=reason,
        allow_self_review=request.app.state.allow_self_review,
    )
    log.info(
        "admin action=prompt_%s actor=%s prompt=%s@%s reason=%r",
        {"approved": "approve", "rejected": "reject"}[state],
        who.name,
        prompt_id,
        version,
        reason,
    )
    return out


@router.post(
    "/prompts/{prompt_id}/versions/{version}/approve",
    summary="Approve a template",
    response_model=Prompt,
    response_model_exclude_unset=True,
    response_model_by_alias=True,
)
def approve_prompt(
    request: Request,
    *,
    prompt_id: Annotated[str, Path(max_length=64)],
    version: Annotated[int, Path(ge=1, le=MAX_VERSION)],
    who: Annotated[Principal, Depends(principal)],
    body: Annotated[ReasonBody | None, Body()] = None,
) -> dict[str, Any]:
    return _review(
        request, who=who, prompt_id=prompt_id, version=version, body=body, state="approved"
    )


@router.post(
    "/prompts/{prompt_id}/versions/{version}/reject",
    summary="Reject a template",
    response_model=Prompt,
    response_model_exclude_unset=True,
    response_model_by_alias=True,
)
def reject_prompt(
    request: Request,
    *,
    prompt_id: Annotated[str, Path(max_length=64)],
    version: Annotated[int, Path(ge=1, le=MAX_VERSION)],
    who: Annotated[Principal, Depends(principal)],
    body: Annotated[ReasonBody | None, Body()] = None,
) -> dict[str, Any]:
    return _review(
        request, who=who, prompt_id=prompt_id, version=version, body=body, state="rejected"
    )
