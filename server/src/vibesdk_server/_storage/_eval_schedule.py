"""Daily evaluation schedules (``vibe eval schedule``) and the days they have been claimed for.

A schedule is one per flag and environment: when (``daily_at``, ``HH:MM`` UTC), which golden set
(``set_text``: the set's JSONL as the CLI sent it; ``None``: the set vibesdk-server ships), which
variants (``None``: the flag's default and rollout variants at run time) and how many answers per
item. Every set and removal is audited (``eval_schedule_set``, ``eval_schedule_remove``, with the
schedule before and after) and bumps the schedule's ``revision``.

A day is run by whoever inserts its row into ``eval_schedule_days`` first: the primary key
``(environment, flag_key, day)`` makes the claim atomic, so neither two replicas nor a leader
change can run one day twice.
"""

from __future__ import annotations

import json
from typing import Any

from vibesdk_server._domain._errors import NotFoundError

from ._base import StoreBase, Tx, utcnow

__all__ = ["EVAL_SCHEDULE_SCHEMA", "EvalScheduleStore"]

EVAL_SCHEDULE_SCHEMA = """
CREATE TABLE IF NOT EXISTS eval_schedules (
    environment TEXT NOT NULL,
    flag_key TEXT NOT NULL,
    daily_at TEXT NOT NULL,
    set_name TEXT NOT NULL,
    set_digest TEXT NOT NULL,
    set_text TEXT,
    items INTEGER NOT NULL,
    variants TEXT,
    repeats INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    since TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (environment, flag_key)
);
CREATE TABLE IF NOT EXISTS eval_schedule_days (
    environment TEXT NOT NULL,
    flag_key TEXT NOT NULL,
    day TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    run_id BIGINT,
    PRIMARY KEY (environment, flag_key, day)
);
"""

_COLUMNS = (
    "environment",
    "flag_key",
    "daily_at",
    "set_name",
    "set_digest",
    "set_text",
    "items",
    "variants",
    "repeats",
    "revision",
    "since",
    "updated_by",
)
_SELECT = (
    f"SELECT {', '.join('s.' + c for c in _COLUMNS)},"  # noqa: S608 -- fixed names
    " (SELECT MAX(d.day) FROM eval_schedule_days d"
    "  WHERE d.environment = s.environment AND d.flag_key = s.flag_key)"
    " FROM eval_schedules s"
)
_SHOWN = ("daily_at", "set_name", "set_digest", "items", "variants", "repeats")


def _schedule(row: Any, *, with_set: bool = False) -> dict[str, Any]:
    out = dict(zip((*_COLUMNS, "last_day"), row, strict=True))
    if out["variants"] is not None:
        out["variants"] = json.loads(out["variants"])
    if not with_set:
        out.pop("set_text")
    return out


class EvalScheduleStore(StoreBase):
    """Evaluation schedules per environment and flag, and the days claimed for them."""

    def init_eval_schedule_schema(self, tx: Tx) -> None:
        """Create the schedule tables if missing; give ``eval_runs`` its ``trigger`` and
        ``error`` columns (inside ``init_schema``, after the evaluation tables)."""
        for stmt in EVAL_SCHEDULE_SCHEMA.split(";"):
            if stmt.strip():
                tx.run(stmt)
        self._add_column(tx, "eval_runs", "trigger", "TEXT")
        self._add_column(tx, "eval_runs", "error", "TEXT")

    def _eval_schedule(
        self, tx: Tx, environment: str, flag_key: str, *, with_set: bool = False
    ) -> dict[str, Any]:
        row = tx.one(
            _SELECT + " WHERE s.environment = ? AND s.flag_key = ?", (environment, flag_key)
        )
        if row is None:
            raise NotFoundError(
                f"flag {flag_key!r} has no evaluation schedule in environment {environment!r};"
                f" set one with vibe eval schedule {flag_key} --daily HH:MM"
            )
        return _schedule(row, with_set=with_set)

    def eval_schedule(
        self, environment: str, flag_key: str, *, with_set: bool = False
    ) -> dict[str, Any]:
        """The flag's schedule (404 if none); ``with_set``: with the set's text."""
        with self._tx() as tx:
            self._env_row(tx, environment)
            return self._eval_schedule(tx, environment, flag_key, with_set=with_set)

    def list_eval_schedules(self, environment: str | None = None) -> list[dict[str, Any]]:
        """Every schedule (of ``environment``; ``None``: of all, with their sets' text)."""
        with self._tx() as tx:
            if environment is None:
                rows = tx.all(_SELECT + " ORDER BY s.environment, s.flag_key")
                return [_schedule(r, with_set=True) for r in rows]
            self._env_row(tx, environment)
            rows = tx.all(_SELECT + " WHERE s.environment = ? ORDER BY s.flag_key", (environment,))
        return [_schedule(r) for r in rows]

    def set_eval_schedule(
        self, environment: str, flag_key: str, fields: dict[str, Any], *, actor: str
    ) -> dict[str, Any]:
        """Store (or replace) the flag's schedule from ``fields`` (daily_at, set_name,
        set_digest, set_text, items, variants, repeats); audited; the schedule, without the
        set's text. Its first run is at the first ``daily_at`` after now."""
        values = {
            **fields,
            "variants": None if fields["variants"] is None else json.dumps(fields["variants"]),
            "environment": environment,
            "flag_key": flag_key,
            "since": utcnow(),
            "updated_by": actor,
        }
        with self._tx(write=True) as tx:
            self._env_row(tx, environment)
            self._lock(tx, f"eval-schedule {environment}")
            try:
                before: dict[str, Any] | None = self._eval_schedule(tx, environment, flag_key)
            except NotFoundError:
                before = None
            values["revision"] = 1 if before is None else int(before["revision"]) + 1
            tx.run(
                "DELETE FROM eval_schedules WHERE environment = ? AND flag_key = ?",
                (environment, flag_key),
            )
            tx.run(
                f"INSERT INTO eval_schedules ({', '.join(_COLUMNS)})"  # noqa: S608 -- fixed names
                f" VALUES ({', '.join('?' * len(_COLUMNS))})",
                [values[c] for c in _COLUMNS],
            )
            after = self._eval_schedule(tx, environment, flag_key)
            self._audit_schedule(
                tx,
                "eval_schedule_set",
                (environment, flag_key),
                actor=actor,
                before=before,
                after=after,
            )
            return after

    def remove_eval_schedule(
        self, environment: str, flag_key: str, *, actor: str
    ) -> dict[str, Any]:
        """Delete the flag's schedule (404 if none); audited; the schedule removed."""
        with self._tx(write=True) as tx:
            self._env_row(tx, environment)
            self._lock(tx, f"eval-schedule {environment}")
            before = self._eval_schedule(tx, environment, flag_key)
            tx.run(
                "DELETE FROM eval_schedules WHERE environment = ? AND flag_key = ?",
                (environment, flag_key),
            )
            self._audit_schedule(
                tx,
                "eval_schedule_remove",
                (environment, flag_key),
                actor=actor,
                before=before,
                after=None,
            )
            return before

    def _audit_schedule(
        self,
        tx: Tx,
        action: str,
        where: tuple[str, str],
        *,
        actor: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
    ) -> None:
        def shown(schedule: dict[str, Any] | None) -> dict[str, Any] | None:
            if schedule is None:
                return None
            return {k: schedule[k] for k in ("revision", *_SHOWN)}

        self._audit(
            tx,
            actor=actor,
            action=action,
            environment=where[0],
            reason=None,
            flags=[where[1]],
            before=shown(before),
            after=shown(after),
        )

    def claim_eval_day(self, environment: str, flag_key: str, day: str) -> bool:
        """Whether this caller got ``day`` of the flag's schedule to run (first claim wins)."""
        with self._tx(write=True) as tx:
            cursor = tx.run(
                "INSERT INTO eval_schedule_days (environment, flag_key, day, claimed_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (environment, flag_key, day) DO NOTHING",
                (environment, flag_key, day, utcnow()),
            )
            return bool(cursor.rowcount == 1)

    def record_eval_day_run(self, environment: str, flag_key: str, day: str, run_id: int) -> None:
        """Note which evaluation run a claimed day started."""
        with self._tx(write=True) as tx:
            tx.run(
                "UPDATE eval_schedule_days SET run_id = ?"
                " WHERE environment = ? AND flag_key = ? AND day = ?",
                (run_id, environment, flag_key, day),
            )
