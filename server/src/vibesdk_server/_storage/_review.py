"""The human review queue: request-log answers offered to reviewers, and their 1..5 scores.

The queue of a flag is its request log (already sampled per variant by ``log_share``: the
canary's calls, some of stable's), less the calls that raised (nothing to score). Offered
first: answers users reported, oldest report first; then answers one other reviewer scored
(so that two reviewers score the same items and their agreement can be measured); then the
rest, newest first. A reviewer is never offered an answer they scored, nor one two reviewers
scored already. What a reviewer sees is blind (:func:`blind_item`): no variant, model, prompt
reference or figures, which the stored score reveals afterwards.

A score is stored with the trace id, the reviewer (the admin token's name) and the variant, model
and time of the answer (``answered_at``) copied from the request log, so the figures outlive the
log's retention. One score per reviewer and answer (a second is a 409); each is audited
(``review_score``).
"""

from __future__ import annotations

import json
from typing import Any

from vibesdk_server._domain._errors import ConflictError, NotFoundError

from ._base import StoreBase, Tx, utcnow
from ._requestlog import REPORTED_JOIN

__all__ = ["MAX_REVIEWERS", "REVIEW_SCHEMA", "ReviewStore", "blind_item"]

MAX_REVIEWERS = 2
"""The queue offers an answer until this many reviewers scored it."""

REVIEW_SCHEMA = """
CREATE TABLE IF NOT EXISTS review_scores (
    id {ID},
    environment TEXT NOT NULL,
    flag_key TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    variant TEXT NOT NULL,
    answered_by TEXT,
    model TEXT,
    prompt_ref TEXT,
    score INTEGER NOT NULL,
    note TEXT,
    reviewer TEXT NOT NULL,
    at TEXT NOT NULL,
    answered_at TEXT,
    UNIQUE (environment, trace_id, reviewer)
);
CREATE INDEX IF NOT EXISTS review_scores_flag ON review_scores (environment, flag_key, id);
"""

_SCORE_COLUMNS = (
    "id",
    "flag_key",
    "trace_id",
    "variant",
    "answered_by",
    "model",
    "prompt_ref",
    "score",
    "note",
    "reviewer",
    "at",
    "answered_at",
)
_SCORED = (
    "(SELECT COUNT(*) FROM review_scores s"
    " WHERE s.environment = rl.environment AND s.trace_id = rl.trace_id)"
)
# Parameters: environment (reports), environment, flag, reviewer.
_QUEUE = (
    f" FROM request_log rl{REPORTED_JOIN}"  # noqa: S608 -- fixed names
    " WHERE rl.environment = ? AND rl.flag_key = ? AND rl.answered_by IS NOT NULL"
    " AND NOT EXISTS (SELECT 1 FROM review_scores s WHERE s.environment = rl.environment"
    " AND s.trace_id = rl.trace_id AND s.reviewer = ?)"
    f" AND {_SCORED} < {MAX_REVIEWERS}"
)
_NEXT = (
    f"SELECT rl.trace_id, rl.content, {_SCORED} AS scored" + _QUEUE + " ORDER BY"
    " CASE WHEN rep.reported_at IS NULL THEN 1 ELSE 0 END, rep.reported_at, scored DESC,"
    " rl.id DESC LIMIT 1"
)
_REMAINING = "SELECT COUNT(*)" + _QUEUE


def blind_item(trace_id: str, content: dict[str, Any]) -> dict[str, Any]:
    """What a reviewer sees of a logged answer: the question, the system prompt, the answer."""
    return {
        "trace_id": trace_id,
        "system_instructions": content.get("system_instructions"),
        "input_messages": content.get("input_messages"),
        "output_messages": content.get("output_messages"),
    }


def _scored_already(reviewer: str, trace_id: str) -> ConflictError:
    return ConflictError(
        f"{reviewer} already scored trace {trace_id}; each reviewer scores an answer once"
        " (vibe review next offers the next one)"
    )


def _score(row: Any) -> dict[str, Any]:
    out = dict(zip(_SCORE_COLUMNS, row, strict=True))
    out["flag"] = out.pop("flag_key")
    return out


class ReviewStore(StoreBase):
    """The review queue and the scores per environment and flag."""

    def init_review_schema(self, tx: Tx) -> None:
        """Create the review table if it is missing (inside ``init_schema``)."""
        for stmt in REVIEW_SCHEMA.replace("{ID}", self.id_column).split(";"):
            if stmt.strip():
                tx.run(stmt)
        # Added after the table: scores stored before it have none (read as their ``at``).
        self._add_column(tx, "review_scores", "answered_at", "TEXT")

    def next_review(self, environment: str, flag_key: str, reviewer: str) -> dict[str, Any]:
        """``{"item": <blind item> | None, "remaining": n}`` for ``reviewer`` (see the module)."""
        params = (environment, environment, flag_key, reviewer)
        with self._tx() as tx:
            self._env_row(tx, environment)
            row = tx.one(_NEXT, params)
            remaining = int(tx.one(_REMAINING, params)[0])
        item = None if row is None else blind_item(str(row[0]), json.loads(row[1]))
        return {"item": item, "remaining": remaining}

    def add_review_score(
        self,
        environment: str,
        flag_key: str,
        trace_id: str,
        *,
        score: int,
        note: str | None,
        reviewer: str,
    ) -> dict[str, Any]:
        """Store ``reviewer``'s score of the logged answer ``trace_id``; the stored row, with
        the variant and model it reveals. 404 if the answer is not (or no longer) in the flag's
        request log, 409 if this reviewer scored it already."""
        with self._tx(write=True) as tx:
            self._env_row(tx, environment)
            entry = tx.one(
                "SELECT variant, answered_by, model, prompt_ref, at FROM request_log WHERE"
                " environment = ? AND flag_key = ? AND trace_id = ? AND answered_by IS NOT NULL"
                " ORDER BY id DESC LIMIT 1",
                (environment, flag_key, trace_id),
            )
            if entry is None:
                raise NotFoundError(
                    f"no answer with trace id {trace_id} in the request log of flag"
                    f" {flag_key!r}; take the trace id from vibe review next (the entry may"
                    " have been trimmed)"
                )
            if tx.one(
                "SELECT 1 FROM review_scores WHERE environment = ? AND trace_id = ?"
                " AND reviewer = ?",
                (environment, trace_id, reviewer),
            ):
                raise _scored_already(reviewer, trace_id)
            try:
                row = tx.one(
                    "INSERT INTO review_scores (environment, flag_key, trace_id, variant,"  # noqa: S608 -- fixed names
                    " answered_by, model, prompt_ref, answered_at, score, note, reviewer, at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING "
                    + ", ".join(_SCORE_COLUMNS),
                    (environment, flag_key, trace_id, *entry, score, note, reviewer, utcnow()),
                )
            except Exception as exc:  # the same score sent twice at once: one of them wins
                if self._is_unique_violation(exc):
                    raise _scored_already(reviewer, trace_id) from None
                raise
            stored = _score(row)
            self._audit(
                tx,
                actor=reviewer,
                action="review_score",
                environment=environment,
                reason=note,
                flags=[flag_key],
                after={"trace_id": trace_id, "score": score},
            )
        return stored

    def review_scores(
        self, environment: str, flag_key: str, *, variant: str | None = None
    ) -> list[dict[str, Any]]:
        """Every score of the flag (of one variant), oldest first."""
        sql = (
            f"SELECT {', '.join(_SCORE_COLUMNS)} FROM review_scores"  # noqa: S608 -- fixed names
            " WHERE environment = ? AND flag_key = ?"
        )
        params: list[Any] = [environment, flag_key]
        if variant is not None:
            sql += " AND variant = ?"
            params.append(variant)
        with self._tx() as tx:
            self._env_row(tx, environment)
            rows = tx.all(sql + " ORDER BY id", params)
        return [_score(r) for r in rows]
