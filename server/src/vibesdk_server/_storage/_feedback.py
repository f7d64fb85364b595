"""User feedback sent by SDKs (``POST /v1/feedback``), for ops to read."""

from __future__ import annotations

from typing import Any

from ._base import StoreBase, utcnow

__all__ = ["FeedbackStore"]


class FeedbackStore(StoreBase):
    """Store and list feedback per environment."""

    # -- feedback ----------------------------------------------------------------------------------
    def add_feedback(self, environment: str, key_name: str, item: dict[str, Any]) -> None:
        with self._tx(write=True) as tx:
            tx.run(
                "INSERT INTO feedback (environment, at, key_name, trace_id, score, comment,"
                " flag_key, variant, user_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    environment,
                    utcnow(),
                    key_name,
                    item["trace_id"],
                    item["score"],
                    item.get("comment"),
                    item.get("flag_key"),
                    item.get("variant"),
                    item.get("user_id"),
                ),
            )

    def list_feedback(
        self,
        *,
        environment: str | None,
        limit: int,
        flag_key: str | None = None,
        variant: str | None = None,
        since: str | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first; ``since`` is an RFC 3339 UTC time as :func:`utcnow` writes them."""
        where, params = _where(environment, flag_key, variant, since)
        sql = _LIST + where + " ORDER BY id DESC LIMIT ?"
        with self._tx() as tx:
            rows = tx.all(sql, (*params, limit))
        names = (
            "id",
            "environment",
            "at",
            "sdk_key",
            "trace_id",
            "score",
            "comment",
            "flag_key",
            "variant",
            "user_id",
        )
        return [dict(zip(names, r, strict=True)) for r in rows]

    def feedback_summary(
        self,
        *,
        environment: str,
        flag_key: str | None,
        variant: str | None = None,
        since: str | None = None,
    ) -> list[dict[str, Any]]:
        """Count and mean score per (flag, variant): canary next to stable, at a glance."""
        where, params = _where(environment, flag_key, variant, since)
        sql = _SUMMARY + where + " GROUP BY flag_key, variant ORDER BY flag_key, variant"
        with self._tx() as tx:
            rows = tx.all(sql, params)
        return [
            {
                "flag_key": r[0],
                "variant": r[1],
                "count": int(r[2]),
                "mean_score": round(float(r[3]), 3),
                "low_scores": int(r[4]),
            }
            for r in rows
        ]


_LIST = (
    "SELECT id, environment, at, key_name, trace_id, score, comment, flag_key, variant, user_id"
    " FROM feedback"
)
_SUMMARY = (
    "SELECT flag_key, variant, COUNT(*), AVG(score), SUM(CASE WHEN score <= 2 THEN 1 ELSE 0 END)"
    " FROM feedback"
)


def _where(
    environment: str | None, flag_key: str | None, variant: str | None, since: str | None
) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause of the given filters: fixed column names, every value a parameter.

    ``at`` compares as text: the store writes one fixed format (:func:`rfc3339`).
    """
    clauses: list[str] = []
    params: list[Any] = []
    for column, value, op in (
        ("environment", environment, "="),
        ("flag_key", flag_key, "="),
        ("variant", variant, "="),
        ("at", since, ">="),
    ):
        if value is not None:
            clauses.append(f"{column} {op} ?")
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)
