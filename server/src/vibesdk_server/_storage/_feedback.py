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

    def list_feedback(self, *, environment: str | None, limit: int) -> list[dict[str, Any]]:
        sql = (
            "SELECT id, environment, at, key_name, trace_id, score, comment, flag_key, variant,"
            " user_id FROM feedback"
        )
        params: tuple[Any, ...] = ()
        if environment is not None:
            sql += " WHERE environment = ?"
            params = (environment,)
        with self._tx() as tx:
            rows = tx.all(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
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

    def feedback_summary(self, *, environment: str, flag_key: str | None) -> list[dict[str, Any]]:
        """Count and mean score per (flag, variant): canary next to stable, at a glance."""
        params: tuple[Any, ...] = (environment,)
        sql = _SUMMARY
        if flag_key is not None:
            sql = _SUMMARY_FLAG
            params = (environment, flag_key)
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


_SUMMARY_SELECT = (
    "SELECT flag_key, variant, COUNT(*), AVG(score), SUM(CASE WHEN score <= 2 THEN 1 ELSE 0 END)"
    " FROM feedback WHERE environment = ?"
)
_SUMMARY = _SUMMARY_SELECT + " GROUP BY flag_key, variant ORDER BY flag_key, variant"
_SUMMARY_FLAG = (
    _SUMMARY_SELECT + " AND flag_key = ? GROUP BY flag_key, variant ORDER BY flag_key, variant"
)
