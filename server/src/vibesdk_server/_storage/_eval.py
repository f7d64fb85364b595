"""Evaluation runs (``vibe eval run``) and their per-item results, for ops to compare variants.

A run records what was evaluated (flag, set, variants, repeats, the document version every
call used); each result is one answer to one item by one variant, scored, with the name of the
token that sent it. Starting and finishing a run are audited (``eval_run_start``,
``eval_run_finish``); single answers are not, or a run would bury the audit log. ``(run, item,
variant, attempt)`` is unique, so a resumed run, or a batch sent twice, stores each once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from vibesdk_server._domain._errors import NotFoundError

from ._base import StoreBase, Tx, utcnow

__all__ = ["EVAL_SCHEMA", "EvalStore"]

EVAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS eval_runs (
    id {ID},
    environment TEXT NOT NULL,
    flag_key TEXT NOT NULL,
    set_name TEXT NOT NULL,
    set_digest TEXT NOT NULL,
    items INTEGER NOT NULL,
    variants TEXT NOT NULL,
    repeats INTEGER NOT NULL,
    document_version BIGINT NOT NULL,
    started_by TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    summary TEXT
);
CREATE INDEX IF NOT EXISTS eval_runs_flag ON eval_runs (environment, flag_key, id);
CREATE TABLE IF NOT EXISTS eval_results (
    run_id BIGINT NOT NULL,
    item_id TEXT NOT NULL,
    variant TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    kind TEXT NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    correct INTEGER,
    completeness DOUBLE PRECISION,
    passed INTEGER,
    conciseness DOUBLE PRECISION,
    document_version BIGINT NOT NULL,
    model TEXT,
    prompt_ref TEXT,
    finish_reason TEXT,
    latency_s DOUBLE PRECISION,
    input_tokens BIGINT,
    output_tokens BIGINT,
    fallback INTEGER NOT NULL,
    error TEXT,
    checks TEXT,
    details TEXT,
    at TEXT NOT NULL,
    recorded_by TEXT NOT NULL,
    PRIMARY KEY (run_id, item_id, variant, attempt)
);
"""

_RUN_COLUMNS = (
    "id",
    "environment",
    "flag_key",
    "set_name",
    "set_digest",
    "items",
    "variants",
    "repeats",
    "document_version",
    "started_by",
    "started_at",
    "finished_at",
    "summary",
    "trigger",
    "error",
)
_RUN_JSON = ("variants", "summary")
_RESULT_COLUMNS = (
    "item_id",
    "variant",
    "attempt",
    "kind",
    "score",
    "correct",
    "completeness",
    "passed",
    "conciseness",
    "document_version",
    "model",
    "prompt_ref",
    "finish_reason",
    "latency_s",
    "input_tokens",
    "output_tokens",
    "fallback",
    "error",
    "checks",
    "details",
    "at",
    "recorded_by",
)
_RESULT_JSON = ("checks", "details")
_RESULT_BOOL = ("correct", "passed", "fallback")
_SELECT_RUN = f"SELECT {', '.join(_RUN_COLUMNS)} FROM eval_runs"  # noqa: S608 -- fixed names


def _run(row: Any) -> dict[str, Any]:
    out = dict(zip(_RUN_COLUMNS, row, strict=True))
    for name in _RUN_JSON:
        if out[name] is not None:
            out[name] = json.loads(out[name])
    out["trigger"] = out["trigger"] or "manual"  # runs stored before schedules existed
    return out


def _result(row: Any) -> dict[str, Any]:
    out = dict(zip(_RESULT_COLUMNS, row, strict=True))
    for name in _RESULT_JSON:
        if out[name] is not None:
            out[name] = json.loads(out[name])
    for name in _RESULT_BOOL:
        if out[name] is not None:
            out[name] = bool(out[name])
    return out


def _stored(result: dict[str, Any], name: str) -> Any:
    value = result.get(name)
    if name in _RESULT_JSON:
        return None if value is None else json.dumps(value)
    if name in _RESULT_BOOL and value is not None:
        return int(bool(value))
    return value


class EvalStore(StoreBase):
    """Evaluation runs and results per environment."""

    def init_eval_schema(self, tx: Tx) -> None:
        """Create the evaluation tables if they are missing (inside ``init_schema``)."""
        for stmt in EVAL_SCHEMA.replace("{ID}", self.id_column).split(";"):
            if stmt.strip():
                tx.run(stmt)

    def create_eval_run(
        self, environment: str, fields: dict[str, Any], *, actor: str
    ) -> dict[str, Any]:
        """A new run from ``fields`` (flag_key, set_name, set_digest, items, variants, repeats,
        document_version; ``trigger``: ``manual``, the default, or ``scheduled``); 404 for an
        unknown environment or document version."""
        names = [c for c in _RUN_COLUMNS if c not in ("id", "finished_at", "summary", "error")]
        values = {
            "trigger": "manual",
            **fields,
            "environment": environment,
            "started_by": actor,
            "started_at": utcnow(),
            "variants": json.dumps(list(fields["variants"])),
        }
        with self._tx(write=True) as tx:
            self._env_row(tx, environment)
            self._doc_json(tx, environment, int(fields["document_version"]))
            row = tx.one(
                f"INSERT INTO eval_runs ({', '.join(names)})"  # noqa: S608 -- fixed names
                f" VALUES ({', '.join('?' * len(names))}) RETURNING id",
                [values[n] for n in names],
            )
            run = self._eval_run(tx, environment, int(row[0]))
            after = {k: run[k] for k in ("id", "set_name", "variants", "repeats")}
            self._audit_run(tx, "eval_run_start", run, actor=actor, after=after)
            return run

    def _audit_run(
        self, tx: Tx, action: str, run: dict[str, Any], *, actor: str, after: dict[str, Any]
    ) -> None:
        self._audit(
            tx,
            actor=actor,
            action=action,
            environment=run["environment"],
            reason=None,
            version=run["document_version"],
            flags=[run["flag_key"]],
            after=after,
        )

    def _eval_run(self, tx: Tx, environment: str, run_id: int) -> dict[str, Any]:
        row = tx.one(_SELECT_RUN + " WHERE environment = ? AND id = ?", (environment, run_id))
        if row is None:
            raise NotFoundError(
                f"environment {environment!r} has no evaluation run {run_id};"
                " vibe eval history FLAG lists them"
            )
        return _run(row)

    def eval_run(self, environment: str, run_id: int) -> dict[str, Any]:
        with self._tx() as tx:
            return self._eval_run(tx, environment, run_id)

    def list_eval_runs(
        self, environment: str, *, flag_key: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """Runs of the environment (optionally of one flag), newest first."""
        sql, params = _SELECT_RUN + " WHERE environment = ?", [environment]
        if flag_key is not None:
            sql += " AND flag_key = ?"
            params.append(flag_key)
        with self._tx() as tx:
            self._env_row(tx, environment)
            rows = tx.all(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [_run(r) for r in rows]

    def add_eval_results(
        self, environment: str, run_id: int, results: Sequence[dict[str, Any]], *, actor: str
    ) -> int:
        """Store ``results`` (one per item, variant and attempt); how many were new.

        A result already stored for the same item, variant and attempt is kept as it was.
        """
        names = list(_RESULT_COLUMNS)
        sql = (
            f"INSERT INTO eval_results (run_id, {', '.join(names)})"  # noqa: S608 -- fixed names
            f" VALUES (?, {', '.join('?' * len(names))})"
            " ON CONFLICT (run_id, item_id, variant, attempt) DO NOTHING"
        )
        now = utcnow()
        added = 0
        with self._tx(write=True) as tx:
            self._eval_run(tx, environment, run_id)
            for result in results:
                stamps = {"at": now, "recorded_by": actor}
                values = [stamps[n] if n in stamps else _stored(result, n) for n in names]
                added += tx.run(sql, (run_id, *values)).rowcount
        return added

    def eval_results(self, environment: str, run_id: int) -> list[dict[str, Any]]:
        """Every result of the run, by variant, item and attempt."""
        with self._tx() as tx:
            self._eval_run(tx, environment, run_id)
            rows = tx.all(
                f"SELECT {', '.join(_RESULT_COLUMNS)} FROM eval_results WHERE run_id = ?"  # noqa: S608 -- fixed names
                " ORDER BY variant, item_id, attempt",
                (run_id,),
            )
        return [_result(r) for r in rows]

    def finish_eval_run(
        self,
        environment: str,
        run_id: int,
        summary: dict[str, Any],
        *,
        actor: str,
        error: str | None = None,
    ) -> dict[str, Any]:
        """Record the run's summary, when it was (last) finished and ``error``, what stopped it
        before every answer was in (``None``: nothing); the run, with the ``regression`` check of
        each variant against its baseline (none for a run cut short: its answered items are not
        the set, so their mean is no measure of a drop)."""
        with self._tx(write=True) as tx:
            self._eval_run(tx, environment, run_id)
            tx.run(
                "UPDATE eval_runs SET summary = ?, finished_at = ?, error = ? WHERE id = ?",
                (json.dumps(summary), utcnow(), error, run_id),
            )
            run = self._eval_run(tx, environment, run_id)
            scores = {v: f["score"] for v, f in summary.items()}
            self._audit_run(
                tx, "eval_run_finish", run, actor=actor, after={"id": run_id, "scores": scores}
            )
            return {**run, "regression": [] if error else self._finished_tx(tx, run)}

    def _finished_tx(self, tx: Tx, run: dict[str, Any]) -> list[dict[str, Any]]:
        """What follows a run's finish in its transaction: the regression checks
        (:class:`~._eval_checks.EvalCheckStore`), per variant."""
        return []
