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
