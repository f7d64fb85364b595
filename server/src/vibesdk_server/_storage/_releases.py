"""Guarded releases (a flag's canary walked through rollout steps), their plans, their incidents.

A flag's release plan (the ``release:`` section of its flags file) is kept beside the flag, one
row per change: ``(environment, flag_key, version, plan)``, where ``version`` is the environment
version whose write set it and a ``NULL`` plan removes it. The plan in force is the newest row.

Rows only: what a release is and what each state means lives in
:mod:`vibesdk_server._guard.release`. The functions taking a :class:`Tx` run inside
another write's transaction (a release changes together with its flag's rollout).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from vibesdk_server._domain._errors import NotFoundError

from ._base import StoreBase, Tx, utcnow

__all__ = ["ReleaseStore"]

_RELEASE_COLUMNS = (
    "id",
    "environment",
    "flag_key",
    "state",
    "steps",
    "step",
    "step_started_s",
    "min_dwell_s",
    "min_samples",
    "guardrails",
    "canary_variant",
    "stable_variant",
    "started_by",
    "started_at",
    "reason",
    "updated_at",
    "state_reason",
    "decision",
    "decision_at",
    "plan",
)
_RELEASE_JSON = ("steps", "guardrails", "decision", "plan")
_INCIDENT_COLUMNS = (
    "id",
    "environment",
    "flag_key",
    "release_id",
    "at",
    "actor",
    "from_version",
    "to_version",
    "reason",
    "decision",
    "measurements",
    "request_log",
)
_INCIDENT_JSON = ("decision", "measurements", "request_log")
_SELECT_RELEASE = f"SELECT {', '.join(_RELEASE_COLUMNS)} FROM releases"  # noqa: S608 -- fixed names
_SELECT_INCIDENT = f"SELECT {', '.join(_INCIDENT_COLUMNS)} FROM incidents"  # noqa: S608 -- fixed names
ACTIVE = ("running", "paused")


def _row(columns: tuple[str, ...], json_columns: tuple[str, ...], row: Any) -> dict[str, Any]:
    out = dict(zip(columns, row, strict=True))
    for name in json_columns:
        if out[name] is not None:
            out[name] = json.loads(out[name])
    return out


def _insert(
    tx: Tx,
    table: str,
    columns: tuple[str, ...],
    json_columns: tuple[str, ...],
    values: dict[str, Any],
) -> int:
    names = [c for c in columns if c != "id"]
    row = tx.one(
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"  # noqa: S608 -- fixed names
        " RETURNING id",
        [json.dumps(values.get(n)) if n in json_columns else values.get(n) for n in names],
    )
    return int(row[0])


def _release(row: Any) -> dict[str, Any]:
    return _row(_RELEASE_COLUMNS, _RELEASE_JSON, row)


class ReleaseStore(StoreBase):
    """Release and incident rows."""

    # -- inside another write's transaction ------------------------------------------------------
    def insert_release(self, tx: Tx, fields: dict[str, Any]) -> int:
        """A new release row from ``fields`` (every column but ``id``); its id."""
        now = utcnow()
        values = {**fields, "started_at": now, "updated_at": now}
        return _insert(tx, "releases", _RELEASE_COLUMNS, _RELEASE_JSON, values)

    def active_release_tx(self, tx: Tx, environment: str, flag_key: str) -> dict[str, Any] | None:
        """The flag's running or paused release, if any."""
        row = tx.one(
            _SELECT_RELEASE + " WHERE environment = ? AND flag_key = ? AND state IN (?, ?)"
            " ORDER BY id DESC LIMIT 1",
            (environment, flag_key, *ACTIVE),
        )
        return None if row is None else _release(row)

    def update_release(self, tx: Tx, release_id: int, **fields: Any) -> None:
        """Set ``fields`` (column names of the releases table) on one release."""
        unknown = set(fields) - set(_RELEASE_COLUMNS[1:])
        if unknown:
            raise ValueError(f"not release columns: {sorted(unknown)}")
        fields["updated_at"] = utcnow()
        names = sorted(fields)
        values = [json.dumps(fields[n]) if n in _RELEASE_JSON else fields[n] for n in names]
        tx.run(
            f"UPDATE releases SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?",  # noqa: S608 -- checked names
            (*values, release_id),
        )

    def record_decision(self, release_id: int, *, step: int, **fields: Any) -> bool:
        """Set ``fields`` on a release still running at ``step``; whether it was."""
        fields["updated_at"] = utcnow()
        names = sorted(fields)
        values = [json.dumps(fields[n]) if n in _RELEASE_JSON else fields[n] for n in names]
        with self._tx(write=True) as tx:
            cur = tx.run(
                f"UPDATE releases SET {', '.join(f'{n} = ?' for n in names)}"  # noqa: S608 -- column names
                " WHERE id = ? AND state = ? AND step = ?",
                (*values, release_id, "running", step),
            )
            return bool(cur.rowcount)

    def insert_incident(self, tx: Tx, fields: dict[str, Any]) -> int:
        """A new incident row from ``fields`` (every column but ``id`` and ``at``); its id."""
        values = {**fields, "at": utcnow()}
        return _insert(tx, "incidents", _INCIDENT_COLUMNS, _INCIDENT_JSON, values)

    def release_plans_tx(
        self, tx: Tx, environment: str, upto: int | None = None
    ) -> dict[str, tuple[dict[str, Any], int]]:
        """Each flag's plan in force (at version ``upto``, default now): key -> (plan, version)."""
        sql = "SELECT flag_key, version, plan FROM release_plans WHERE environment = ?"
        params: tuple[Any, ...] = (environment,)
        if upto is not None:
            sql, params = sql + " AND version <= ?", (environment, upto)
        plans: dict[str, tuple[dict[str, Any], int] | None] = {}
        for key, version, plan in tx.all(sql + " ORDER BY version", params):
            plans[key] = None if plan is None else (json.loads(plan), int(version))
        return {k: v for k, v in plans.items() if v is not None}

    def set_release_plan(
        self, tx: Tx, environment: str, flag_key: str, version: int, plan: dict[str, Any] | None
    ) -> None:
        """Set (``None``: remove) the flag's plan as of ``version``, inside that version's write."""
        tx.run(
            "INSERT INTO release_plans (environment, flag_key, version, plan) VALUES (?, ?, ?, ?)",
            (environment, flag_key, version, None if plan is None else json.dumps(plan)),
        )

    def release_plan_tx(
        self, tx: Tx, environment: str, flag_key: str
    ) -> tuple[dict[str, Any] | None, int | None]:
        """The flag's plan in force and the version that set it; ``(None, None)``: the defaults."""
        found = self.release_plans_tx(tx, environment).get(flag_key)
        return (None, None) if found is None else found

    def stage_release_plans(
        self,
        tx: Tx,
        environment: str,
        plans: Mapping[str, dict[str, Any] | None],
        *,
        flags: Iterable[str],
        version: int,
        write: bool,
    ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """An apply's plans: ``plans`` (key -> plan, ``None`` for none) set, and the plans of
        flags no longer in ``flags`` removed; with ``write``, stored as of ``version``.

        Returns the plans before and after as ``{key: {"release": plan}}``, for
        :class:`~._base.Mutation`'s ``beside_before`` and ``beside_after``.
        """
        now = {k: p for k, (p, _) in self.release_plans_tx(tx, environment).items()}
        kept = set(flags)
        target = {k: p for k, p in now.items() if k in kept}
        for key, plan in plans.items():
            if plan is None:
                target.pop(key, None)
            else:
                target[key] = plan
        if write:
            for key in sorted(now.keys() | target.keys()):
                if now.get(key) != target.get(key):
                    self.set_release_plan(tx, environment, key, version, target.get(key))
        return (
            {k: {"release": p} for k, p in now.items()},
            {k: {"release": p} for k, p in target.items()},
        )

    # -- reads ---------------------------------------------------------------------------------
    def release_plan(
        self, environment: str, flag_key: str
    ) -> tuple[dict[str, Any] | None, int | None]:
        """:meth:`release_plan_tx` in a transaction of its own."""
        with self._tx() as tx:
            return self.release_plan_tx(tx, environment, flag_key)

    def active_releases(self) -> list[dict[str, Any]]:
        """Every running release, oldest first (what the guard loop looks at)."""
        with self._tx() as tx:
            rows = tx.all(_SELECT_RELEASE + " WHERE state = ? ORDER BY id", ("running",))
        return [_release(r) for r in rows]

    def latest_release(self, environment: str, flag_key: str) -> dict[str, Any]:
        """The flag's newest release, whatever its state; 404 if it never had one."""
        with self._tx() as tx:
            row = tx.one(
                _SELECT_RELEASE + " WHERE environment = ? AND flag_key = ? ORDER BY id DESC"
                " LIMIT 1",
                (environment, flag_key),
            )
        if row is None:
            raise NotFoundError(
                f"flag {flag_key!r} in environment {environment!r} has no release;"
                " start one with vibe release start"
            )
        return _release(row)

    def flags_with_plans(self, environment: str, version: int) -> dict[str, Any]:
        """The flags of ``version`` as JSON, each with its release plan then (``release``), if
        any: what ``vibe diff`` compares. The document SDKs fetch never has the plans."""
        doc = self.version(environment, version)["document"]  # type: ignore[attr-defined]
        flags: dict[str, Any] = doc["flags"]
        with self._tx() as tx:
            plans = self.release_plans_tx(tx, environment, upto=version)
        return {
            k: {**f, **({"release": plans[k][0]} if k in plans else {})} for k, f in flags.items()
        }

    def list_incidents(self, *, environment: str | None, limit: int) -> list[dict[str, Any]]:
        """Incidents, newest first (optionally of one environment)."""
        sql = _SELECT_INCIDENT
        params: tuple[str, ...] = ()
        if environment is not None:
            sql, params = sql + " WHERE environment = ?", (environment,)
        with self._tx() as tx:
            rows = tx.all(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [_row(_INCIDENT_COLUMNS, _INCIDENT_JSON, r) for r in rows]

    def incident(self, incident_id: int) -> dict[str, Any]:
        with self._tx() as tx:
            row = tx.one(_SELECT_INCIDENT + " WHERE id = ?", (incident_id,))
        if row is None:
            raise NotFoundError(f"no incident {incident_id}; vibe incident list shows them")
        return _row(_INCIDENT_COLUMNS, _INCIDENT_JSON, row)
