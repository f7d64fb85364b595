"""The request log: whole calls that SDKs logged (a variant's ``log_share``), per environment.

Bounded as it is written: every write first drops the environment's entries
received more than :attr:`Retention.max_age_s` ago, then all but its newest
:attr:`Retention.max_rows` (``vibe-server --request-log-days`` and
``--request-log-rows``). Entries are read newest first (in the order received), each with
``reported``: whether a user reported its answer (``client.report``, the ``reports`` table,
joined by trace id with :data:`REPORTED_JOIN`, which the review queue shares).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from vibesdk_server._domain._errors import NotFoundError
from vibesdk_server._domain._otlp_traces import Entry

from ._base import StoreBase, Tx, rfc3339

__all__ = ["DEFAULT_RETENTION", "REPORTED_JOIN", "Retention", "RequestLogStore"]


@dataclass(frozen=True)
class Retention:
    """How much of the request log an environment keeps."""

    max_age_s: float = 7 * 86_400.0
    max_rows: int = 10_000


DEFAULT_RETENTION = Retention()

_COLUMNS = (
    "id",
    "flag_key",
    "variant",
    "trace_id",
    "at",
    "received_at",
    "latency_s",
    "answered_by",
    "model",
    "prompt_ref",
    "finish_reason",
    "input_tokens",
    "output_tokens",
    "error_type",
    "fallback_reason",
    "failed_checks",
    "content",
)
REPORTED_JOIN = (
    " LEFT JOIN (SELECT trace_id, MIN(at) AS reported_at FROM reports"
    " WHERE environment = ? GROUP BY trace_id) rep ON rep.trace_id = rl.trace_id"
)
"""Joins the reports of one environment (its one parameter) to ``request_log rl``:
``rep.reported_at`` is the time of the entry's first report, NULL if none."""
_SELECT = (
    f"SELECT {', '.join('rl.' + c for c in _COLUMNS)}, rep.reported_at"  # noqa: S608 -- fixed names
    " FROM request_log rl" + REPORTED_JOIN
)


def _entry(row: Any) -> dict[str, Any]:
    out = dict(zip(_COLUMNS, row[:-1], strict=True))
    out["reported"] = row[-1] is not None
    out["flag"] = out.pop("flag_key")
    checks = out.pop("failed_checks")
    out["failed_checks"] = None if checks is None else json.loads(checks)
    out.update(json.loads(out.pop("content")))
    return out


class RequestLogStore(StoreBase):
    """Request-log rows: written from OTLP traces, read by people and by incidents."""

    def add_requests(self, environment: str, entries: Iterable[Entry], retention: Retention) -> int:
        """Store ``entries`` for ``environment`` within ``retention``; how many were stored."""
        now = dt.datetime.now(dt.timezone.utc)
        received = rfc3339(now)
        # Of a batch larger than the log keeps, only its newest entries would survive the trim.
        kept = list(entries)[-retention.max_rows :] if retention.max_rows > 0 else []
        rows = [
            (
                environment,
                e.flag_key,
                e.variant,
                e.trace_id,
                rfc3339(dt.datetime.fromtimestamp(e.ended_unix_nano / 1e9, dt.timezone.utc)),
                received,
                e.latency_s,
                e.answered_by,
                e.model,
                e.prompt_ref,
                e.finish_reason,
                e.input_tokens,
                e.output_tokens,
                e.error_type,
                e.fallback_reason,
                None if e.failed_checks is None else json.dumps(e.failed_checks),
                json.dumps(e.content, ensure_ascii=False),
            )
            for e in kept
        ]
        with self._tx(write=True) as tx:
            for row in rows:
                tx.run(
                    "INSERT INTO request_log (environment, flag_key, variant, trace_id, at,"
                    " received_at, latency_s, answered_by, model, prompt_ref, finish_reason,"
                    " input_tokens, output_tokens, error_type, fallback_reason, failed_checks,"
                    " content) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
            self._trim(tx, environment, retention, now)
        return len(rows)

    @staticmethod
    def _trim(tx: Tx, environment: str, retention: Retention, now: dt.datetime) -> None:
        oldest = rfc3339(now - dt.timedelta(seconds=retention.max_age_s))
        tx.run(
            "DELETE FROM request_log WHERE environment = ? AND received_at < ?",
            (environment, oldest),
        )
        tx.run(
            "DELETE FROM request_log WHERE environment = ? AND id <= (SELECT id FROM"
            " request_log WHERE environment = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (environment, environment, retention.max_rows),
        )

    def request_log(
        self,
        environment: str,
        *,
        flag_key: str | None = None,
        variant: str | None = None,
        failed: str | None = None,
        reported: bool = False,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Entries, newest first: of one flag, one (assigned) variant, that failed a check,
        that a user reported (``reported=True``; False: reported or not)."""
        with self._tx() as tx:
            return self._select(
                tx,
                environment,
                flag_key=flag_key,
                variant=variant,
                failed=failed,
                reported=reported,
                limit=limit,
            )

    def request_entry(self, environment: str, entry_id: int) -> dict[str, Any]:
        """One entry of ``environment`` by its id, with ``reports`` (``at`` and ``reason`` of
        each, oldest first); NotFoundError if it is gone (or never was)."""
        with self._tx() as tx:
            row = tx.one(
                _SELECT + " WHERE rl.environment = ? AND rl.id = ?",
                (environment, environment, entry_id),
            )
            if row is None:
                raise NotFoundError(
                    f"no request-log entry {entry_id} in environment {environment!r}; it may"
                    " have been trimmed (vibe-server --request-log-days / --request-log-rows)"
                )
            entry = _entry(row)
            reports = tx.all(
                "SELECT at, reason FROM reports WHERE environment = ? AND trace_id = ? ORDER BY id",
                (environment, entry["trace_id"]),
            )
        entry["reports"] = [{"at": at, "reason": reason} for at, reason in reports]
        return entry

    def recent_requests_tx(
        self, tx: Tx, environment: str, flag_key: str, variant: str, limit: int
    ) -> list[dict[str, Any]]:
        """Inside another transaction: the newest ``limit`` entries of one flag's variant."""
        return self._select(
            tx,
            environment,
            flag_key=flag_key,
            variant=variant,
            failed=None,
            reported=False,
            limit=limit,
        )

    def _select(
        self,
        tx: Tx,
        environment: str,
        *,
        flag_key: str | None,
        variant: str | None,
        failed: str | None,
        reported: bool,
        limit: int,
    ) -> list[dict[str, Any]]:
        sql = _SELECT + " WHERE rl.environment = ?"
        params: list[Any] = [environment, environment]
        if flag_key is not None:
            sql += " AND rl.flag_key = ?"
            params.append(flag_key)
        if variant is not None:
            sql += " AND rl.variant = ?"
            params.append(variant)
        if failed is not None:
            # failed_checks is a JSON list of names: match one name, quoted.
            holds, name = self._holds_name("rl.failed_checks", failed)
            sql += " AND " + holds
            params.append(name)
        if reported:
            sql += " AND rep.reported_at IS NOT NULL"
        rows = tx.all(sql + " ORDER BY rl.id DESC LIMIT ?", (*params, limit))
        return [_entry(r) for r in rows]
