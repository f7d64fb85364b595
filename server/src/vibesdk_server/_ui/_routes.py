"""The dashboard's routes: sign-in, pages, the charts' data, and actions behind a confirm step."""

from __future__ import annotations

import functools
import inspect
import json
import math
import secrets
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from vibesdk_server._domain._errors import NotFoundError, ServerError
from vibesdk_server._eval.trend import flag_trend
from vibesdk_server._guard import actions
from vibesdk_server._guard.stats import split_text
from vibesdk_server._http import _admin, _review
from vibesdk_server._http._schemas import EnabledBody, ReasonBody, RollbackBody
from vibesdk_server._review.events import LABELS
from vibesdk_server._review.stats import agreement_line
from vibesdk_server._storage import SqlStore
from vibesdk_server._storage._measurements import SLOW_S, quantile
from vibesdk_server._storage._sessions import UiSession
from vibesdk_server._tokens import Principal

__all__ = ["COOKIE", "CSP", "SESSION_TTL_S", "default_step", "install", "router"]

HERE = Path(__file__).parent
COOKIE = "vibe_session"
#: How long a signed-in session lasts (vibe-server ``--ui-session-ttl-s``).
SESSION_TTL_S = 8 * 3600.0
#: Scripts, styles, images and requests from this server only; no inline script or style.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_MAX_FORM = 64 * 1024
#: At most this many points per series by default; a longer window is drawn in coarser steps.
MAX_POINTS = 10_000
GOLDEN_DAYS = 30
"""Days of the flag page's golden-set trend."""
#: The charts' default steps (seconds), finest first; past the last, whole hours.
STEPS = (10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)
_WINDOWS = {"1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600, "7d": 7 * 24 * 3600}

templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["split_text"] = split_text


class SignIn(Exception):
    """The request has no live session."""


def _store(request: Request) -> SqlStore:
    store: SqlStore = request.app.state.store
    return store


def _session(request: Request) -> UiSession:
    secret = request.cookies.get(COOKIE)
    found = _store(request).ui_session(secret) if secret else None
    if found is None:
        raise SignIn
    return found


Session = Annotated[UiSession, Depends(_session)]

router = APIRouter(prefix="/ui", include_in_schema=False)


def _page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status)


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > _MAX_FORM:
        return {}
    pairs = urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return dict(pairs)


def _fresh(form: dict[str, str], session: UiSession) -> bool:
    return secrets.compare_digest(form.get("csrf", "").encode(), session.csrf.encode())


def _stale_form(request: Request, session: UiSession | None) -> HTMLResponse:
    return _page(
        request,
        "message.html",
        {
            "session": session,
            "title": "This form has expired",
            "text": "The form came from another page or an older session; reload the page and"
            " try again.",
        },
        403,
    )


def _safe_next(target: str | None) -> str:
    if target and (target == "/ui" or target.startswith("/ui/")) and "//" not in target:
        return target
    return "/ui"


# -- signing in and out ----------------------------------------------------------------------------
@router.get("/login")
def login_page(request: Request, next: str | None = None) -> HTMLResponse:
    return _page(request, "login.html", {"session": None, "next": _safe_next(next)})


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    token = form.get("token", "").strip()
    target = _safe_next(form.get("next"))
    store = _store(request)
    who = await anyio.to_thread.run_sync(store.authenticate, token) if token else None
    if who is None or who.kind != "admin":
        error = (
            "Paste an admin token (vibe-server token create --kind admin makes one)."
            if not token
            else "Unknown token; check it, or make one: vibe-server token create --kind admin."
            if who is None
            else f"{who.name!r} is an SDK key; sign in with an admin token."
        )
        return _page(request, "login.html", {"session": None, "next": target, "error": error}, 401)
    ttl = float(getattr(request.app.state, "ui_session_ttl_s", SESSION_TTL_S))
    secret, _ = await anyio.to_thread.run_sync(store.create_ui_session, who.name, ttl)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        secret,
        max_age=int(ttl),
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request, session: Session) -> Response:
    form = await _form(request)
    if not _fresh(form, session):
        return _stale_form(request, session)
    secret = request.cookies.get(COOKIE, "")
    await anyio.to_thread.run_sync(_store(request).end_ui_session, secret)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response


# -- pages -----------------------------------------------------------------------------------------
def _document(store: SqlStore, env: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(store.current(env).document_json)
    return document


def _latest_release(store: SqlStore, env: str, key: str) -> dict[str, Any] | None:
    try:
        return store.latest_release(env, key)
    except NotFoundError:
        return None


@router.get("")
def home(request: Request, session: Session) -> HTMLResponse:
    store = _store(request)
    environments = []
    for env in store.list_environments():
        document = _document(store, env["name"])
        flags = [
            {
                "key": key,
                "enabled": flag.get("enabled", True),
                "rollout_bps": flag.get("rollout_bps", 0),
                "variants": sorted(flag.get("variants", {})),
                "release": _latest_release(store, env["name"], key),
            }
            for key, flag in sorted(document.get("flags", {}).items())
        ]
        environments.append({"name": env["name"], "version": document["version"], "flags": flags})
    return _page(request, "home.html", {"session": session, "environments": environments})


def _flag_context(
    request: Request,
    env: str,
    key: str,
    *,
    log_variant: str | None,
    log_failed: str | None,
    log_reported: bool,
) -> dict[str, Any]:
    store = _store(request)
    document = _document(store, env)
    flag = document.get("flags", {}).get(key)
    if flag is None:
        raise NotFoundError(f"flag {key!r} is not in environment {env!r}")
    audit = store.audit(environment=env, flag_key=key, limit=50)
    incidents = [
        i for i in store.list_incidents(environment=env, limit=200) if i["flag_key"] == key
    ][:20]
    since = int(time.time()) - 3600
    totals = _totals(store.measurements(environment=env, flag_key=key, since=since))
    requests = store.request_log(
        env,
        flag_key=key,
        variant=log_variant or None,
        failed=log_failed or None,
        reported=log_reported,
        limit=20,
    )
    return {
        "requests": [
            {
                **r,
                "question": _text(r.get("input_messages")),
                "answer": _text(r.get("output_messages")),
            }
            for r in requests
        ],
        "log_variant": log_variant or "",
        "log_failed": log_failed or "",
        "log_reported": log_reported,
        "env": env,
        "key": key,
        "version": document["version"],
        "flag": flag,
        "release": _latest_release(store, env, key),
        "audit": audit,
        "incidents": incidents,
        "totals": totals,
        "checks": sorted({c for t in totals for c in t["checks"]}),
        "slow_s": SLOW_S,
        "windows": list(_WINDOWS),
        "golden": flag_trend(store, env, key, days=GOLDEN_DAYS),
        "golden_days": GOLDEN_DAYS,
        "eval_alarms": store.eval_alarms(env, key),
    }


def _rate(part: float, whole: float) -> float | None:
    return None if whole <= 0 else part / whole


def _totals(measured: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The table's rows: per variant, the charts' figures plus slow calls, checks and reports."""
    return [
        {
            "variant": variant,
            **{name: figure(m) for name, figure in _FIGURES.items()},
            "slow": _rate(m["slow_calls"], m["calls"]),
            "checks": {c: _rate(n, m["calls"]) for c, n in m["quality_failures"].items()},
            "reports": m["reports"],
        }
        for variant, m in sorted(measured.items())
    ]


@router.get("/environments/{env}/flags/{key}")
def flag_page(
    request: Request,
    *,
    env: str,
    key: str,
    session: Session,
    msg: str | None = None,
    step: int | None = None,
    log_variant: str | None = None,
    log_failed: str | None = None,
    log_reported: bool = False,
) -> HTMLResponse:
    """``step``: the charts' step in seconds (default: a point per pixel, see :func:`series`);
    ``log_variant`` / ``log_failed`` / ``log_reported``: the request log's filters."""
    context = _flag_context(
        request,
        env,
        key,
        log_variant=log_variant,
        log_failed=log_failed,
        log_reported=log_reported,
    )
    context["review"] = _review_context(_store(request), env, key, session.actor)
    return _page(request, "flag.html", {"session": session, "msg": msg, "step": step, **context})


@router.get("/environments/{env}/flags/{key}/requests/{entry_id}")
def request_page(
    request: Request, env: str, key: str, entry_id: int, session: Session
) -> HTMLResponse:
    """One request-log entry in full: system prompt, messages, answer, outcome, trace id."""
    entry = _store(request).request_entry(env, entry_id)
    if entry["flag"] != key:
        raise NotFoundError(f"request-log entry {entry_id} is not of flag {key!r}")
    context = {
        "session": session,
        "env": env,
        "key": key,
        "entry": entry,
        "system": _text(entry.get("system_instructions")),
        "messages": _messages(entry.get("input_messages")),
        "answer": _text(entry.get("output_messages")),
    }
    return _page(request, "request.html", context)


def _parts_text(parts: Any) -> str:
    if isinstance(parts, str):
        return parts
    if not isinstance(parts, list):
        return ""
    out = []
    for part in parts:
        if isinstance(part, dict) and isinstance(part.get("content"), str):
            out.append(part["content"])
        elif isinstance(part, str):
            out.append(part)
    return "\n".join(out)


def _messages(value: Any) -> list[dict[str, str]]:
    """GenAI semantic-convention messages as (role, text); text kept as it came otherwise."""
    if isinstance(value, str):
        return [{"role": "", "text": value}]
    if not isinstance(value, list):
        return []
    out = []
    for message in value:
        if isinstance(message, dict):
            text = _parts_text(message.get("parts", message.get("content")))
            out.append({"role": str(message.get("role", "")), "text": text})
        else:
            out.append({"role": "", "text": _parts_text([message])})
    return out


def _text(value: Any) -> str:
    """The text of GenAI messages or instruction parts, one after another."""
    if isinstance(value, list) and value and isinstance(value[0], dict) and "role" in value[0]:
        return "\n\n".join(m["text"] for m in _messages(value))
    return _parts_text(value)


@router.get("/environments/{env}/flags/{key}/release")
def release_panel(request: Request, env: str, key: str, session: Session) -> HTMLResponse:
    release = _latest_release(_store(request), env, key)
    return _page(
        request,
        "_release.html",
        {"session": session, "env": env, "key": key, "release": release, "now": time.time()},
    )


@router.get("/environments/{env}/flags/{key}/series")
def series(
    request: Request,
    *,
    env: str,
    key: str,
    session: Session,
    window: str = "1h",
    step: int | None = None,
    width: int | None = None,
) -> JSONResponse:
    """The charts' data: one shared time axis, a column per variant and figure (null: none).

    ``step`` (seconds, a multiple of the 10 s interval) defaults to :func:`default_step`
    for at most one point per pixel of the charts' ``width`` (and never more than
    :data:`MAX_POINTS`). ``from`` is the start of the first whole step in the window.
    """
    seconds = _WINDOWS.get(window)
    if seconds is None:
        raise _BadQuery(f"window must be one of {', '.join(_WINDOWS)}, got {window!r}")
    if width is not None and width < 1:
        raise _BadQuery(f"width must be the charts' width in pixels, 1 or more, got {width}")
    if step is None:
        step = default_step(seconds, min(width or MAX_POINTS, MAX_POINTS))
    elif step < 10 or step % 10 or seconds // step > 10 * MAX_POINTS:
        raise _BadQuery(
            f"step must be a multiple of 10 s giving at most {10 * MAX_POINTS:,} points"
            f" in the window, got {step}"
        )
    now = int(time.time())
    measured = _store(request).measurement_series(
        environment=env, flag_key=key, since=now - seconds, step_s=step
    )
    start = (now - seconds) // step * step
    return JSONResponse({"from": start, "to": now, **_columns(measured, step)})


def default_step(seconds: int, points: int) -> int:
    """The finest of :data:`STEPS` (then whole hours) giving at most ``points`` points over
    ``seconds``. From a minute on each is a whole number of minutes, from 10 minutes on of
    10 minutes: the resolutions the measurements are kept in, so a long window reads rollups."""
    needed = seconds / max(points, 1)
    step = next((s for s in STEPS if s >= needed), None)
    return step if step is not None else math.ceil(needed / 3600) * 3600


class _BadQuery(ServerError):
    """A series query the dashboard cannot answer (400)."""


#: The figures of one variant's measurements that the charts draw and the table shows.
_FIGURES: dict[str, Callable[[dict[str, Any]], float | None]] = {
    "calls": lambda m: m["calls"],
    "p50": lambda m: quantile(m["duration_histogram"], 0.5),
    "p95": lambda m: quantile(m["duration_histogram"], 0.95),
    "errors": lambda m: _rate(sum(m["errors"].values()), m["calls"]),
    "fallbacks": lambda m: _rate(sum(m["fallbacks"].values()), m["calls"]),
    "output_tokens": lambda m: _rate(m["output_tokens"]["sum"], m["output_tokens"]["count"]),
    "feedback": lambda m: _rate(m["feedback"]["sum"], m["feedback"]["count"]),
}
#: What the charts draw: those, and reviewers' scores (mean, count; none: null) of the answers
#: logged in each step.
_SERIES_FIGURES: dict[str, Callable[[dict[str, Any]], float | None]] = {
    **_FIGURES,
    "review": lambda m: _rate(m["review"]["sum"], m["review"]["count"]),
    "review_count": lambda m: m["review"]["count"] or None,
}


def _columns(measured: dict[str, list[dict[str, Any]]], step: int) -> dict[str, Any]:
    times = sorted({p["t"] for points in measured.values() for p in points})
    at = {t: i for i, t in enumerate(times)}
    checks = sorted(
        {c for points in measured.values() for p in points for c in p["quality_failures"]}
    )
    variants: dict[str, Any] = {}
    for variant, points in sorted(measured.items()):
        columns: dict[str, list[float | None]] = {
            name: [None] * len(times) for name in _SERIES_FIGURES
        }
        check_columns: dict[str, list[float | None]] = {c: [None] * len(times) for c in checks}
        for p in points:
            i = at[p["t"]]
            for name, figure in _SERIES_FIGURES.items():
                columns[name][i] = figure(p)
            for c in checks:
                check_columns[c][i] = _rate(p["quality_failures"].get(c, 0), p["calls"])
        variants[variant] = {**columns, "checks": check_columns}
    return {"step_s": step, "slow_s": SLOW_S, "t": times, "checks": checks, "variants": variants}


# -- actions: a confirm page (GET), then the change (POST) -----------------------------------------
_ACTIONS = {
    "rollback": (
        "Roll back",
        "Rollout to 0% (everyone on stable) and the last good version restored.",
    ),
    "kill": ("Kill switch", "Everyone gets the default variant until the flag is enabled again."),
    "enable": ("Enable", "The flag serves its rules and rollout again."),
    "pause": ("Pause the release", "The guard stops at this step; the rollout stays."),
    "resume": ("Resume the release", "The guard runs again; this step starts over."),
    "promote": ("Promote", "Go to the next step now, whatever the guardrails say."),
    "abort": ("Abort the release", "Rollout to 0% and the release ends as rolled back."),
}


def _confirming(session: UiSession, env: str, key: str, action: str) -> dict[str, Any]:
    """The confirm page's context for ``action`` (404 for an unknown one)."""
    if action not in _ACTIONS:
        raise NotFoundError(f"no action {action!r}; one of {', '.join(_ACTIONS)}")
    title, effect = _ACTIONS[action]
    return {
        "session": session,
        "env": env,
        "key": key,
        "action": action,
        "title": title,
        "effect": effect,
    }


@router.get("/environments/{env}/flags/{key}/confirm/{action}")
def confirm_page(
    request: Request, env: str, key: str, action: str, session: Session
) -> HTMLResponse:
    return _page(request, "confirm.html", _confirming(session, env, key, action))


@router.post("/environments/{env}/flags/{key}/{action}")
async def act(request: Request, env: str, key: str, action: str, session: Session) -> Response:
    form = await _form(request)
    if not _fresh(form, session):
        return _stale_form(request, session)
    reason = form.get("reason", "").strip()
    context = {**_confirming(session, env, key, action), "reason": reason}
    if not reason:
        context["error"] = "Give a reason: it goes into the audit log with your name."
        return _page(request, "confirm.html", context, 400)
    who = Principal(kind="admin", name=session.actor, environment=None)
    try:
        done = await anyio.to_thread.run_sync(
            functools.partial(_do, request, env, key, action, reason=reason, who=who)
        )
    except ServerError as exc:
        context["error"] = exc.detail
        return _page(request, "confirm.html", context, exc.status)
    target = f"/ui/environments/{_q(env)}/flags/{_q(key)}?msg={_q(done)}"
    return RedirectResponse(target, status_code=303)


def _q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _do(request: Request, env: str, key: str, action: str, *, reason: str, who: Principal) -> str:
    """The action through the admin API's own code; what it did, in a sentence."""
    if action == "rollback":
        change = _admin.rollback(
            request, env=env, key=key, body=RollbackBody(reason=reason), who=who, if_match=None
        )
        return f"Rolled back: version {change['version']}, rollout 0%."
    if action in ("kill", "enable"):
        body = EnabledBody(enabled=action == "enable", reason=reason)
        change = _admin.enabled(request, env=env, key=key, body=body, who=who, if_match=None)
        state = "enabled" if action == "enable" else "killed"
        return f"Flag {state}: version {change['version']}."
    release = actions.by_hand(_store(request), env, key, action, actor=who.name, reason=reason)
    return f"Release {release['id']}: {release['state']}."


# -- human review: the flag page's queue and scores ------------------------------------------------
def _review_context(store: SqlStore, env: str, key: str, reviewer: str) -> dict[str, Any]:
    """The next answer for ``reviewer`` (blind), the per-variant scores and the agreement."""
    nxt = store.next_review(env, key, reviewer)
    item = nxt["item"] or {}
    summary = _review.summary_of(store, env, key)
    return {
        "next": nxt,
        "system": _text(item.get("system_instructions")),
        "messages": _messages(item.get("input_messages")),
        "answer": _text(item.get("output_messages")),
        "labels": LABELS,
        "summary": summary,
        "agreement": agreement_line(summary["agreement"], summary["reviewers"]),
    }


@router.post("/environments/{env}/flags/{key}/review/score")
async def review_score(request: Request, env: str, key: str, session: Session) -> Response:
    """Store the signed-in reviewer's score through the admin API's own code (audited, emitted)."""
    form = await _form(request)
    if not _fresh(form, session):
        return _stale_form(request, session)
    try:
        body = _review.ScoreBody(
            trace_id=form.get("trace_id", ""),
            score=form.get("score", ""),  # type: ignore[arg-type]  # pydantic converts
            note=form.get("note") or None,
        )
        stored = await anyio.to_thread.run_sync(
            _review.store_score, request, env, key, body, session.actor
        )
    except (ServerError, ValidationError) as exc:
        detail = exc.detail if isinstance(exc, ServerError) else _field_error(exc)
        context = {"session": session, "title": "Score refused", "text": detail}
        return _page(request, "message.html", context, getattr(exc, "status", 422))
    done = (
        f"Scored {stored['score']} ({LABELS[stored['score']]}): that answer was variant"
        f" {stored['variant']}" + (f", model {stored['model']}." if stored["model"] else ".")
    )
    target = f"/ui/environments/{_q(env)}/flags/{_q(key)}?msg={_q(done)}#review"
    return RedirectResponse(target, status_code=303)


def _field_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    field = ".".join(str(p) for p in error.get("loc", ())) or "form"
    return f"{field}: {error.get('msg', 'invalid input')}"


# -- prompts and incidents -------------------------------------------------------------------------
@router.get("/prompts")
def prompts_page(request: Request, session: Session, msg: str | None = None) -> HTMLResponse:
    prompts = _store(request).list_prompts()
    pending = [p for p in prompts if p["state"] == "pending"]
    return _page(
        request,
        "prompts.html",
        {"session": session, "pending": pending, "prompts": prompts[-50:], "msg": msg},
    )


@router.get("/prompts/{prompt_id}/versions/{version}")
def prompt_page(request: Request, prompt_id: str, version: int, session: Session) -> HTMLResponse:
    prompt = _store(request).get_prompt(prompt_id, version)
    return _page(request, "prompt.html", {"session": session, "prompt": prompt})


@router.post("/prompts/{prompt_id}/versions/{version}/{verdict}")
async def review(
    request: Request, prompt_id: str, version: int, verdict: str, session: Session
) -> Response:
    form = await _form(request)
    if not _fresh(form, session):
        return _stale_form(request, session)
    review_route = {"approve": _admin.approve_prompt, "reject": _admin.reject_prompt}.get(verdict)
    if review_route is None:
        raise NotFoundError(f"no verdict {verdict!r}; approve or reject")
    who = Principal(kind="admin", name=session.actor, environment=None)
    reason = form.get("reason", "").strip() or None
    store = _store(request)
    try:
        body = ReasonBody(reason=reason)

        def run() -> dict[str, Any]:
            return review_route(request, prompt_id=prompt_id, version=version, who=who, body=body)

        prompt = await anyio.to_thread.run_sync(run)
    except (ServerError, ValidationError) as exc:
        detail = exc.detail if isinstance(exc, ServerError) else _first_error(exc)
        current = await anyio.to_thread.run_sync(store.get_prompt, prompt_id, version)
        context = {"session": session, "prompt": current, "error": detail}
        return _page(request, "prompt.html", context, getattr(exc, "status", 400))
    done = f"{prompt['id']}@{prompt['version']}: {prompt['state']}."
    return RedirectResponse(f"/ui/prompts?msg={_q(done)}", status_code=303)


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    return str(error.get("msg", "invalid input"))


@router.get("/incidents/{incident_id}")
def incident_page(request: Request, incident_id: int, session: Session) -> HTMLResponse:
    incident = _store(request).incident(incident_id)
    return _page(request, "incident.html", {"session": session, "incident": incident})


# -- wiring ----------------------------------------------------------------------------------------
class SecurityHeaders:
    """The Content-Security-Policy and friends on every ``/ui`` response."""

    _HEADERS = (
        (b"content-security-policy", CSP.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
        (b"x-frame-options", b"DENY"),
    )

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path != "/ui" and not path.startswith("/ui/"):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] not in _NAMES]
                message["headers"] = [*headers, *self._HEADERS]
                if not path.startswith("/ui/static/"):
                    message["headers"].append((b"cache-control", b"no-store"))
            await send(message)

        await self.app(scope, receive, with_headers)


_NAMES = {name for name, _ in SecurityHeaders._HEADERS}


def install(app: FastAPI, *, session_ttl_s: float = SESSION_TTL_S) -> None:
    """Serve the dashboard on ``app`` at ``/ui``."""
    app.state.ui_session_ttl_s = session_ttl_s
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    app.include_router(router)
    app.add_middleware(SecurityHeaders)

    json_errors = app.exception_handlers[ServerError]

    @app.exception_handler(ServerError)
    async def _refused(request: Request, exc: Exception) -> Response:
        path = request.url.path
        if not isinstance(exc, ServerError) or (path != "/ui" and not path.startswith("/ui/")):
            answer = json_errors(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        if path.endswith("/series"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status)
        context = {"session": None, "title": "Refused", "text": exc.detail}
        return _page(request, "message.html", context, exc.status)

    @app.exception_handler(SignIn)
    async def _sign_in(request: Request, exc: SignIn) -> Response:
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": "/ui/login"})
        if request.method in ("GET", "HEAD") and not request.url.path.endswith("/series"):
            target = urllib.parse.quote(request.url.path, safe="/")
            return RedirectResponse(f"/ui/login?next={target}", status_code=303)
        return _page(
            request,
            "message.html",
            {
                "session": None,
                "title": "Sign in first",
                "text": "Your session has ended or was never started.",
            },
            401,
        )
