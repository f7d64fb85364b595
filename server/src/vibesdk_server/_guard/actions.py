"""Every change to a release, by the guard loop or by a person, as one versioned flag write.

Each action is one :meth:`~vibesdk_server._storage.SqlStore.write`: the flag's rollout (when
it moves), the release row, an incident (on a rollback by the guard or ``vibe release abort``,
with the canary's newest request-log entries) and the audit entry (with
the decision's evidence) commit together or not at all, through the same path as
``vibe rollout``. Inside the write the release is read again; if it moved meanwhile (another
action, a replica) the action is refused with a conflict, and the guard looks again next tick.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vibesdk import Flag, FlagDocument
from vibesdk_server._domain import _changes
from vibesdk_server._domain._errors import ConflictError, InvalidError, NotFoundError
from vibesdk_server._guard.decide import Drop
from vibesdk_server._guard.plan import resolve
from vibesdk_server._guard.release import (
    check_steps,
    guardrails_from_json,
    summary,
)
from vibesdk_server._guard.sources import MetricsSource, judge
from vibesdk_server._storage import Mutation, SqlStore, Tx, rfc3339
from vibesdk_server._storage._base import utcnow

__all__ = [
    "BY_HAND",
    "GUARD_ACTOR",
    "by_hand",
    "end_by_rollback",
    "guard_release",
    "start",
]

GUARD_ACTOR = "guard"
#: How many of the canary's newest request-log entries an incident keeps.
INCIDENT_REQUESTS = 20
log = logging.getLogger("vibesdk_server")
Clock = Callable[[], float]


def _flag(flags: Mapping[str, Flag], key: str, environment: str) -> Flag:
    """The flag ``key``; the usual 404 (naming the flags there) when it does not exist."""
    if key not in flags:
        _changes.set_enabled(flags, key, True, environment=environment)  # raises NotFoundError
    return flags[key]


def start(
    store: SqlStore,
    environment: str,
    key: str,
    *,
    actor: str,
    reason: str | None,
    steps: Sequence[int] | None = None,
    min_dwell_s: float | None = None,
    min_samples: int | None = None,
    guardrails: Sequence[Mapping[str, Any]] | None = None,
    clock: Clock = time.time,
) -> dict[str, Any]:
    """Start a release of ``key``'s canary at its first step; 409 if one is already active.

    The flag's release plan (:mod:`.plan`) gives what is not given here; without one, the
    defaults. The release records which plan it runs (its ``plan``).
    """
    overrides: dict[str, Any] = {
        "steps": None if steps is None else check_steps(steps),
        "min_dwell_s": min_dwell_s,
        "min_samples": min_samples,
        "guardrails_given": bool(guardrails),
    }
    if min_dwell_s is not None and min_dwell_s < 0:
        raise InvalidError(f"min_dwell_s must be >= 0, got {min_dwell_s}")
    if min_samples is not None and min_samples < 1:
        raise InvalidError(f"min_samples_per_arm must be >= 1, got {min_samples}")
    if guardrails:
        guardrails_from_json(guardrails)  # refuse bad ones now, not at the first tick

    def mutate(tx: Tx, current: FlagDocument) -> Mutation:
        flag = _flag(current.flags, key, environment)
        active = store.active_release_tx(tx, environment, key)
        if active is not None:
            raise ConflictError(
                f"flag {key!r} already has a {active['state']} release ({active['id']});"
                " see vibe release status, or end it with vibe release abort"
            )
        if not flag.enabled:
            raise InvalidError(f"flag {key!r} is killed; vibe enable it before a release")
        if flag.rollout_variant == flag.default_variant:
            raise InvalidError(
                f"flag {key!r} rolls out its default variant {flag.default_variant!r};"
                " a release needs a canary variant other than stable"
            )
        chosen = resolve(*store.release_plan_tx(tx, environment, key), **overrides)
        bps_steps, dwell, samples = chosen.steps_bps, chosen.min_dwell_s, chosen.min_samples
        last = len(bps_steps) == 1
        release_id = store.insert_release(
            tx,
            {
                "environment": environment,
                "flag_key": key,
                "state": "completed" if last else "running",
                "steps": list(bps_steps),
                "step": 0,
                "step_started_s": clock(),
                "min_dwell_s": dwell,
                "min_samples": samples,
                "guardrails": list(guardrails) if guardrails else None,
                "canary_variant": flag.rollout_variant,
                "stable_variant": flag.default_variant,
                "started_by": actor,
                "reason": reason,
                "state_reason": "the only step was reached" if last else None,
                "plan": chosen.record(),
            },
        )
        flags = _changes.set_rollout(current.flags, key, bps_steps[0], environment=environment)
        return Mutation(flags, {"release_id": release_id})

    store.write(environment, mutate, actor=actor, action="release_start", reason=reason)
    return store.latest_release(environment, key)


def _active(store: SqlStore, environment: str, key: str, tx: Tx) -> dict[str, Any]:
    release = store.active_release_tx(tx, environment, key)
    if release is None:
        raise NotFoundError(
            f"flag {key!r} in environment {environment!r} has no running or paused release;"
            " vibe release status shows its last one"
        )
    return release


def _move(
    store: SqlStore,
    environment: str,
    key: str,
    *,
    action: str,
    actor: str,
    reason: str | None,
    change: Callable[[Tx, dict[str, Any], FlagDocument], tuple[int | None, dict[str, Any]]],
    expected_version: int | None = None,
    evidence: Any = None,
) -> dict[str, Any]:
    """One release write: ``change(tx, release, document)`` -> (new rollout or None, fields)."""

    def mutate(tx: Tx, current: FlagDocument) -> Mutation:
        release = _active(store, environment, key, tx)
        bps, fields = change(tx, release, current)
        flags = dict(current.flags)
        if bps is not None:
            flags = _changes.set_rollout(current.flags, key, bps, environment=environment)
        store.update_release(tx, release["id"], **fields)
        return Mutation(flags, {"release_id": release["id"]})

    store.write(
        environment,
        mutate,
        actor=actor,
        action=action,
        reason=reason,
        expected_version=expected_version,
        evidence=evidence,
    )
    return store.latest_release(environment, key)


def _next_step(release: Mapping[str, Any], now: float, why: str) -> tuple[int, dict[str, Any]]:
    step = int(release["step"]) + 1
    last = step == len(release["steps"]) - 1
    fields: dict[str, Any] = {
        "step": step,
        "step_started_s": now,
        "state": "completed" if last else "running",
        "state_reason": ("the last step was reached; " if last else "") + why,
    }
    return int(release["steps"][step]), fields


Change = tuple[int | None, dict[str, Any]]


def _pause(release: Mapping[str, Any], now: float, why: str) -> Change:
    if release["state"] != "running":
        raise ConflictError(f"release {release['id']} is already paused")
    return None, {"state": "paused", "state_reason": f"paused by {why}"}


def _resume(release: Mapping[str, Any], now: float, why: str) -> Change:
    if release["state"] != "paused":
        raise ConflictError(f"release {release['id']} is running, not paused")
    fields = {"state": "running", "step_started_s": now, "state_reason": f"resumed by {why}"}
    return int(release["steps"][release["step"]]), {**fields, "decision": None}


def _promote(release: Mapping[str, Any], now: float, why: str) -> Change:
    return _next_step(release, now, f"promoted by {why}")


def _abort(release: Mapping[str, Any], now: float, why: str) -> Change:
    return 0, {"state": "rolled_back", "state_reason": f"aborted by {why}"}


BY_HAND: dict[str, Callable[[Mapping[str, Any], float, str], Change]] = {
    "pause": _pause,
    "resume": _resume,
    "promote": _promote,
    "abort": _abort,
}
"""A person's commands on an active release. ``pause``: hold at the step (the rollout stays);
``resume``: run a paused release again, its step starting over (dwell and samples);
``promote``: the next step now, whatever the guardrails say; ``abort``: rollout 0 and the
release ended as rolled back."""


def by_hand(
    store: SqlStore,
    environment: str,
    key: str,
    command: str,
    *,
    actor: str,
    reason: str,
    clock: Clock = time.time,
) -> dict[str, Any]:
    """Run :data:`BY_HAND`'s ``command`` on the flag's active release, audited."""
    step = BY_HAND[command]

    def change(tx: Tx, release: dict[str, Any], doc: FlagDocument) -> Change:
        moved = step(release, clock(), f"{actor}: {reason}")
        if command == "abort":
            _incident(store, tx, release, doc, actor=actor, reason=f"aborted: {reason}")
        return moved

    return _move(
        store,
        environment,
        key,
        action=f"release_{command}",
        actor=actor,
        reason=reason,
        change=change,
    )


def _incident(
    store: SqlStore,
    tx: Tx,
    release: Mapping[str, Any],
    doc: FlagDocument,
    *,
    actor: str,
    reason: str,
    decision: Any = None,
    measurements: Any = None,
) -> None:
    """Record the rollback of ``release`` (to rollout 0) as an incident, with the scene: the
    decision and measurements it was based on (the guard's) and the canary's newest
    :data:`INCIDENT_REQUESTS` request-log entries."""
    env, key = release["environment"], release["flag_key"]
    flag = doc.flags.get(key)
    store.insert_incident(
        tx,
        {
            "environment": env,
            "flag_key": key,
            "release_id": release["id"],
            "actor": actor,
            "from_version": doc.version,
            "to_version": doc.version + (0 if flag is None or flag.rollout_bps == 0 else 1),
            "reason": reason,
            "decision": decision,
            "measurements": measurements,
            "request_log": store.recent_requests_tx(
                tx, env, key, str(release["canary_variant"]), INCIDENT_REQUESTS
            ),
        },
    )


def end_by_rollback(
    store: SqlStore, tx: Tx, environment: str, key: str, *, actor: str, reason: str
) -> None:
    """Inside a ``vibe rollback`` write: the flag's active release, if any, ends rolled back."""
    release = store.active_release_tx(tx, environment, key)
    if release is not None:
        store.update_release(
            tx,
            release["id"],
            state="rolled_back",
            state_reason=f"vibe rollback by {actor}: {reason}",
        )


# -- the guard loop's part -------------------------------------------------------------------------
def _out_of_step(release: Mapping[str, Any], flag: Flag | None) -> str | None:
    """Why the flag no longer matches its release (changed by hand), or None."""
    bps = int(release["steps"][release["step"]])
    if flag is None:
        return "the flag was removed"
    if not flag.enabled:
        return "the flag was killed"
    if flag.rollout_variant != release["canary_variant"]:
        return f"the flag now rolls out {flag.rollout_variant!r}"
    if flag.rollout_bps != bps:
        return f"its rollout was set to {flag.rollout_bps} bps by hand (the step is {bps} bps)"
    return None


def guard_release(
    store: SqlStore,
    release: dict[str, Any],
    *,
    clock: Clock = time.time,
    source: MetricsSource | None = None,
) -> str:
    """One look at one running release, and the action it calls for; returns that action.

    ``hold`` records the decision on the release; ``advance``, ``pause`` and ``rollback``
    write the flag (rollback: rollout 0 and an incident). A conflict (a person or another
    replica wrote first) is left for the next look. The step's figures come from ``source``
    (default: ``store``'s own measurements); one it cannot read holds the step.
    """
    env, key = release["environment"], release["flag_key"]
    published = store.current(env)
    doc = FlagDocument.model_validate_json(published.document_json)
    flag = doc.flags.get(key)
    drift = _out_of_step(release, flag)
    now = clock()
    if drift is not None:
        reason = f"paused by the guard: {drift}; vibe release resume continues at this step"

        def stop(tx: Tx, r: dict[str, Any], d: FlagDocument) -> Change:
            return None, {"state": "paused", "state_reason": reason}

        _guarded(
            store,
            release,
            action="release_pause",
            reason=reason,
            change=stop,
            version=published.version,
        )
        return "pause"
    step = None if flag is None else flag.step_id  # the users counted in the step now
    drop = _eval_drop(store, release)
    measured, decision = judge(source or store, release, now=now, drop=drop, step=step)
    data = decision.to_dict()
    why = summary(decision)
    recorded = {"decision": data, "decision_at": utcnow()}
    if decision.action == "hold":
        _record(store, release, recorded)
        return "hold"

    def advance(tx: Tx, r: dict[str, Any], d: FlagDocument) -> Change:
        bps, fields = _next_step(r, now, f"advanced by the guard: {why}")
        return bps, {**fields, **recorded}

    def pause(tx: Tx, r: dict[str, Any], d: FlagDocument) -> Change:
        return None, {"state": "paused", "state_reason": f"paused by the guard: {why}", **recorded}

    def roll_back(tx: Tx, r: dict[str, Any], d: FlagDocument) -> Change:
        _incident(
            store, tx, r, d, actor=GUARD_ACTOR, reason=why, decision=data, measurements=measured
        )
        return 0, {
            "state": "rolled_back",
            "state_reason": f"rolled back by the guard: {why}",
            **recorded,
        }

    change = {"advance": advance, "pause": pause, "rollback": roll_back}[decision.action]
    _guarded(
        store,
        release,
        action=f"release_{decision.action}",
        reason=f"guard: {why}",
        change=change,
        version=published.version,
        evidence={"decision": data, "measurements": measured},
    )
    return decision.action


def _eval_drop(store: SqlStore, release: Mapping[str, Any]) -> Drop | None:
    """The canary's newest regression check made since the step started, as a :class:`Drop`
    (its ``estimate`` ``None`` when the check had too few answers or no baseline)."""
    started = dt.datetime.fromtimestamp(float(release["step_started_s"]), dt.timezone.utc)
    check = store.latest_eval_check(
        release["environment"],
        release["flag_key"],
        str(release["canary_variant"]),
        since=rfc3339(started),
    )
    if check is None:
        return None
    return Drop(
        check["drop"],
        float(check["se"] or 0.0),
        int(check["n"]),
        int(check["baseline_n"]),
        int(check["run_id"]),
    )


def _same(release: Mapping[str, Any], now: Mapping[str, Any]) -> bool:
    return bool(
        now["id"] == release["id"] and now["state"] == "running" and now["step"] == release["step"]
    )


def _guarded(
    store: SqlStore,
    release: dict[str, Any],
    *,
    action: str,
    reason: str,
    change: Callable[[Tx, dict[str, Any], FlagDocument], tuple[int | None, dict[str, Any]]],
    version: int,
    evidence: Any = None,
) -> None:
    def checked(
        tx: Tx, now: dict[str, Any], doc: FlagDocument
    ) -> tuple[int | None, dict[str, Any]]:
        if not _same(release, now):
            raise ConflictError(f"release {release['id']} changed while the guard looked at it")
        return change(tx, now, doc)

    _move(
        store,
        release["environment"],
        release["flag_key"],
        action=action,
        actor=GUARD_ACTOR,
        reason=reason,
        change=checked,
        expected_version=version,
        evidence=evidence,
    )
    log.info(
        "guard action=%s env=%s flag=%s reason=%r",
        action,
        release["environment"],
        release["flag_key"],
        reason,
    )


def _record(store: SqlStore, release: dict[str, Any], fields: dict[str, Any]) -> None:
    """A hold: the decision is kept on the release (no flag write, no audit entry)."""
    reasons = "; ".join(r["message"] for r in fields["decision"]["reasons"])
    store.record_decision(release["id"], step=int(release["step"]), state_reason=reasons, **fields)
