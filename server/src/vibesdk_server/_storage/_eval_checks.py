"""The regression check of every finished evaluation run, and what the trend reads.

When a run finishes (:meth:`~._eval.EvalStore.finish_eval_run`), each of its variants is tested
against that variant's recent baseline (:func:`vibesdk_server._eval.alarm.check_run`) inside the
same transaction, and the figures are kept per run and variant (finishing again replaces them).
A variant whose newest check rang is *in alarm*: the audit log gets an ``eval_regression`` entry
by the actor ``eval`` when it rings, ``vibe release status`` and the dashboard show it, and a
release whose plan has the ``eval_regression`` guardrail acts on it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from vibesdk_server._eval.alarm import ALPHA, BASELINE_RUNS, check_run

from ._base import Tx, utcnow
from ._eval import EvalStore

__all__ = ["EVAL_ACTOR", "EVAL_CHECK_SCHEMA", "EvalCheckStore"]

EVAL_ACTOR = "eval"
"""Who raises an alarm in the audit log."""

EVAL_CHECK_SCHEMA = """
CREATE TABLE IF NOT EXISTS eval_checks (
    run_id BIGINT NOT NULL,
    environment TEXT NOT NULL,
    flag_key TEXT NOT NULL,
    variant TEXT NOT NULL,
    at TEXT NOT NULL,
    alarm INTEGER NOT NULL,
    figures TEXT NOT NULL,
    PRIMARY KEY (run_id, variant)
);
CREATE INDEX IF NOT EXISTS eval_checks_flag ON eval_checks (environment, flag_key, variant, run_id);
"""

# Runs read for a baseline: the newest BASELINE_RUNS with the variant are used, and some runs
# may not have evaluated it.
_BASELINE_LOOKBACK = 10 * BASELINE_RUNS


def _check(row: Any) -> dict[str, Any]:
    figures: dict[str, Any] = json.loads(row[2])
    return {**figures, "variant": row[0], "at": row[1]}


def alarm_text(check: dict[str, Any]) -> str:
    """One line for an alarm: who fell, from what to what, on how many answers."""
    runs = check["baseline_runs"]
    return (
        f"eval_regression: {check['variant']}'s golden-set score fell from"
        f" {check['baseline_score']:.2f} (baseline: {len(runs)} run(s), {check['baseline_n']}"
        f" answers) to {check['score']:.2f} in run {check['run_id']} ({check['n']} answers),"
        f" p {check['p_value']:.2g} < {ALPHA:g}"
    )


class EvalCheckStore(EvalStore):
    """Evaluation runs with the regression checks of each (see the module docstring)."""

    def init_eval_check_schema(self, tx: Tx) -> None:
        for stmt in EVAL_CHECK_SCHEMA.split(";"):
            if stmt.strip():
                tx.run(stmt)

    def _scores_tx(self, tx: Tx, run_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
        out: dict[int, list[dict[str, Any]]] = {i: [] for i in run_ids}
        for run_id in run_ids:
            for variant, score in tx.all(
                "SELECT variant, score FROM eval_results WHERE run_id = ?", (run_id,)
            ):
                out[run_id].append({"run_id": run_id, "variant": variant, "score": score})
        return out

    def _finished_tx(self, tx: Tx, run: dict[str, Any]) -> list[dict[str, Any]]:
        """Test each variant of the just-finished ``run`` against its baseline; store the
        figures, audit an alarm; the figures per variant."""
        earlier = [
            dict(zip(("id", "set_digest"), r, strict=True))
            for r in tx.all(
                "SELECT id, set_digest FROM eval_runs WHERE environment = ? AND flag_key = ?"
                " AND set_digest = ? AND id < ? AND finished_at IS NOT NULL"
                " ORDER BY id DESC LIMIT ?",
                (
                    run["environment"],
                    run["flag_key"],
                    run["set_digest"],
                    run["id"],
                    _BASELINE_LOOKBACK,
                ),
            )
        ]
        scores = self._scores_tx(tx, [run["id"], *(int(r["id"]) for r in earlier)])
        checks = check_run(run, scores[run["id"]], [(r, scores[int(r["id"])]) for r in earlier])
        tx.run("DELETE FROM eval_checks WHERE run_id = ?", (run["id"],))
        now = utcnow()
        for check in checks:
            tx.run(
                "INSERT INTO eval_checks (run_id, environment, flag_key, variant, at, alarm,"
                " figures) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    run["id"],
                    run["environment"],
                    run["flag_key"],
                    check["variant"],
                    now,
                    int(check["alarm"]),
                    json.dumps(check),
                ),
            )
        rang = [c for c in checks if c["alarm"]]
        if rang:
            self._audit(
                tx,
                actor=EVAL_ACTOR,
                action="eval_regression",
                environment=run["environment"],
                reason="; ".join(alarm_text(c) for c in rang),
                version=run["document_version"],
                flags=[run["flag_key"]],
                after={"run_id": run["id"], "alarms": rang},
            )
        return [{**c, "at": now, "message": alarm_text(c) if c["alarm"] else None} for c in checks]

    def eval_alarms(self, environment: str, flag_key: str) -> list[dict[str, Any]]:
        """The flag's variants in alarm: those whose newest check rang, each with its figures
        and a one-line ``message``."""
        with self._tx() as tx:
            rows = tx.all(
                "SELECT c.variant, c.at, c.figures, c.alarm FROM eval_checks c"
                " WHERE c.environment = ? AND c.flag_key = ? AND c.run_id = ("
                "  SELECT MAX(d.run_id) FROM eval_checks d WHERE d.environment = c.environment"
                "  AND d.flag_key = c.flag_key AND d.variant = c.variant)"
                " ORDER BY c.variant",
                (environment, flag_key),
            )
        alarms = [_check(r) for r in rows if r[3]]
        return [{**a, "message": alarm_text(a)} for a in alarms]

    def latest_eval_check(
        self, environment: str, flag_key: str, variant: str, *, since: str
    ) -> dict[str, Any] | None:
        """The variant's newest check made at or after ``since`` (RFC 3339), or ``None``."""
        with self._tx() as tx:
            row = tx.one(
                "SELECT variant, at, figures FROM eval_checks WHERE environment = ?"
                " AND flag_key = ? AND variant = ? AND at >= ? ORDER BY run_id DESC LIMIT 1",
                (environment, flag_key, variant, since),
            )
        return None if row is None else _check(row)

    def eval_trend_input(
        self, environment: str, flag_key: str, *, since: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """What :func:`vibesdk_server._eval.trend.trend` reads: the flag's runs finished at or
        after ``since`` (RFC 3339), their answers' scores, and the flag's audit entries since."""
        with self._tx() as tx:
            self._env_row(tx, environment)
            runs = [
                {**r, "variants": json.loads(r["variants"])}
                for r in (
                    dict(
                        zip(
                            (
                                "id",
                                "set_name",
                                "set_digest",
                                "variants",
                                "document_version",
                                "finished_at",
                            ),
                            row,
                            strict=True,
                        )
                    )
                    for row in tx.all(
                        "SELECT id, set_name, set_digest, variants, document_version, finished_at"
                        " FROM eval_runs WHERE environment = ? AND flag_key = ?"
                        " AND finished_at >= ? ORDER BY id",
                        (environment, flag_key, since),
                    )
                )
            ]
            scores = self._scores_tx(tx, [int(r["id"]) for r in runs])
            audit = [
                {
                    "at": at,
                    "action": action,
                    "version": version,
                    "after": None if after is None else json.loads(after),
                }
                for at, action, version, after, flags in tx.all(
                    "SELECT at, action, version, after, flags FROM audit WHERE environment = ?"
                    " AND at >= ? ORDER BY id",
                    (environment, since),
                )
                if flag_key in json.loads(flags)
            ]
        return runs, [s for rows in scores.values() for s in rows], audit
