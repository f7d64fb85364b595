"""``/v1/admin/environments/{env}/eval-schedules``: daily evaluation runs made by the server.

``PUT .../eval-schedules/{flag}`` stores (or replaces) the flag's schedule, ``DELETE`` removes
it, ``GET`` lists or shows them. A schedule holds its golden set's text (the server cannot read
the CLI's files), checked by the same parser as ``vibe eval run``'s before anything is stored;
the flag and the variants must exist in the environment's current document. Every set and
removal is audited and bumps the schedule's ``revision``. The runs themselves are made by
:mod:`vibesdk_server._eval.schedule` and appear among ``.../eval-runs`` with ``trigger:
scheduled``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Security
from pydantic import BaseModel, ConfigDict, Field

from vibesdk import parse_document
from vibesdk.schema import Key
from vibesdk_server._domain._errors import InvalidError, NotFoundError
from vibesdk_server._eval.golden import GoldenSetError, load_set, parse_set
from vibesdk_server._eval.schedule import parse_daily
from vibesdk_server._storage import SqlStore
from vibesdk_server._tokens import Principal
from vibesdk_server._vibe.eval import set_digest

from ._auth import bearer, principal
from ._responses import ERRORS

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/admin", tags=["evaluation"], dependencies=[Security(bearer)], responses=ERRORS
)

Env = Annotated[str, Path(description="environment name", max_length=64)]
FlagKey = Annotated[str, Path(description="flag key", max_length=64)]
Who = Annotated[Principal, Depends(principal)]
_SCHEDULES = "/environments/{env}/eval-schedules"
SHIPPED_SET_NAME = "shipped set"
MAX_SET_CHARS = 5_000_000


class EvalScheduleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    daily_at: str = Field(max_length=5, description="time of day the run starts, HH:MM in UTC")
    set_name: str | None = Field(
        default=None, min_length=1, max_length=500, description="what the set is called (a path)"
    )
    set_text: str | None = Field(
        default=None,
        max_length=MAX_SET_CHARS,
        description="the golden set, JSON Lines; leave out for the set vibesdk-server ships",
    )
    variants: list[Key] | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="variants to evaluate; leave out for the flag's default and rollout variants",
    )
    repeats: int = Field(default=1, ge=1, le=100, description="answers per item and variant")


def _store(request: Request) -> SqlStore:
    store: SqlStore = request.app.state.store
    return store


def _check_flag(store: SqlStore, env: str, flag_key: str, variants: list[str] | None) -> None:
    """404 for a flag the current document lacks; 422 for a variant the flag lacks."""
    document = parse_document(json.loads(store.current(env).document_json))
    flag = document.flags.get(flag_key)
    if flag is None:
        known = ", ".join(sorted(document.flags)) or "none"
        raise NotFoundError(
            f"environment {env!r} has no flag {flag_key!r} (its flags: {known});"
            " schedule an existing flag"
        )
    unknown = [v for v in variants or () if v not in flag.variants]
    if unknown:
        raise InvalidError(
            f"flag {flag_key!r} has no variant {', '.join(map(repr, unknown))}; its variants: "
            + ", ".join(sorted(flag.variants))
        )


@router.put(_SCHEDULES + "/{flag}", summary="Run an evaluation of the flag every day")
def set_eval_schedule(
    request: Request, *, env: Env, flag: FlagKey, body: EvalScheduleBody, who: Who
) -> dict[str, Any]:
    try:
        daily_at = parse_daily(body.daily_at)
    except ValueError as exc:
        raise InvalidError(f"daily_at {body.daily_at!r}: {str(exc).split(': ', 1)[1]}") from None
    store = _store(request)
    variants = None if body.variants is None else list(dict.fromkeys(body.variants))
    _check_flag(store, env, flag, variants)
    if body.set_text is None:
        items, name = load_set(), SHIPPED_SET_NAME
    else:
        name = body.set_name or "uploaded set"
        try:
            items = parse_set(body.set_text, name)
        except GoldenSetError as exc:
            raise InvalidError(str(exc)) from None
    fields = {
        "daily_at": daily_at,
        "set_name": name,
        "set_digest": set_digest(items),
        "set_text": body.set_text,
        "items": len(items),
        "variants": variants,
        "repeats": body.repeats,
    }
    return store.set_eval_schedule(env, flag, fields, actor=who.name)


@router.get(_SCHEDULES, summary="The environment's evaluation schedules")
def list_eval_schedules(request: Request, *, env: Env) -> list[dict[str, Any]]:
    return _store(request).list_eval_schedules(env)


@router.get(_SCHEDULES + "/{flag}", summary="The flag's evaluation schedule")
def get_eval_schedule(request: Request, *, env: Env, flag: FlagKey) -> dict[str, Any]:
    return _store(request).eval_schedule(env, flag)


@router.delete(_SCHEDULES + "/{flag}", summary="Stop the flag's daily evaluation")
def remove_eval_schedule(request: Request, *, env: Env, flag: FlagKey, who: Who) -> dict[str, Any]:
    return _store(request).remove_eval_schedule(env, flag, actor=who.name)
