"""User feedback and reports sent by SDKs (``POST /v1/feedback``, ``/v1/report``), for ops."""

from __future__ import annotations

from typing import Any

from ._base import StoreBase, utcnow

__all__ = ["FeedbackStore"]


class FeedbackStore(StoreBase):
    """Store and list feedback and reports per environment."""

    # -- feedback and reports ----------------------------------------------------------------------
    def add_feedback(self, environment: str, key_name: str, item: dict[str, Any]) -> None:
        self._add("feedback", _FEEDBACK_FIELDS, environment, key_name, item)

    def add_report(self, environment: str, key_name: str, item: dict[str, Any]) -> None:
        self._add("reports", _REPORT_FIELDS, environment, key_name, item)

    def list_feedback(self, **filters: Any) -> list[dict[str, Any]]:
        """Newest first: see :meth:`_list` for the filters."""
        return self._list("feedback", _FEEDBACK_FIELDS, **filters)

    def list_reports(self, **filters: Any) -> list[dict[str, Any]]:
        """Newest first, filtered as :meth:`list_feedback`."""
        return self._list("reports", _REPORT_FIELDS, **filters)

    def _add(
        self,
        table: str,
        fields: tuple[str, ...],
        environment: str,
        key_name: str,
        item: dict[str, Any],
    ) -> None:
        columns = ("environment", "at", "key_name", "trace_id", *fields, *_COHORT)
        values = (environment, utcnow(), key_name, item["trace_id"])
        values += tuple(item.get(f) for f in (*fields, *_COHORT))
        marks = ", ".join("?" * len(columns))
        with self._tx(write=True) as tx:
            tx.run(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", values)  # noqa: S608 -- fixed names

    def _list(
        self,
        table: str,
        fields: tuple[str, ...],
        *,
        environment: str | None,
        limit: int,
        flag_key: str | None = None,
        variant: str | None = None,
        since: str | None = None,
    ) -> list[dict[str, Any]]:
        """``since`` is an RFC 3339 UTC time as :func:`utcnow` writes them."""
        columns = ("id", "environment", "at", "key_name", "trace_id", *fields, *_COHORT)
        where, params = _where(environment, flag_key, variant, since)
        sql = f"SELECT {', '.join(columns)} FROM {table}{where} ORDER BY id DESC LIMIT ?"  # noqa: S608 -- fixed names, see _where
        with self._tx() as tx:
            rows = tx.all(sql, (*params, limit))
        names = ("id", "environment", "at", "sdk_key", "trace_id", *fields, *_COHORT)
        return [dict(zip(names, r, strict=True)) for r in rows]

    def feedback_summary(
        self,
        *,
        environment: str,
        flag_key: str | None,
        variant: str | None = None,
        since: str | None = None,
    ) -> list[dict[str, Any]]:
        """Count, mean score and reports per (flag, variant): canary next to stable, at a glance."""
        where, params = _where(environment, flag_key, variant, since)
        group = " GROUP BY flag_key, variant"
        with self._tx() as tx:
            scores = tx.all(_SUMMARY + where + group, params)
            reported = tx.all(_REPORT_COUNTS + where + group, params)
        rows: dict[tuple[Any, Any], dict[str, Any]] = {}
        for flag, name, count, mean, low in scores:
            rows[(flag, name)] = {
                "flag_key": flag,
                "variant": name,
                "count": int(count),
                "mean_score": round(float(mean), 3),
                "low_scores": int(low),
                "reports": 0,
            }
        for flag, name, count in reported:
            row = rows.setdefault(
                (flag, name),
                {
                    "flag_key": flag,
                    "variant": name,
                    "count": 0,
                    "mean_score": None,
                    "low_scores": 0,
                    "reports": 0,
                },
            )
            row["reports"] = int(count)
        return [rows[k] for k in sorted(rows, key=lambda k: (k[0] or "", k[1] or ""))]


_COHORT = ("flag_key", "variant", "user_id")
_FEEDBACK_FIELDS = ("score", "comment")
_REPORT_FIELDS = ("reason",)
_REPORT_COUNTS = "SELECT flag_key, variant, COUNT(*) FROM reports"
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
