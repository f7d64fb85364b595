"""The plumbing shared by every storage concern: schema, connection pool, transactions.

Statements are written with ``?`` placeholders; the PostgreSQL dialect
rewrites them to ``%s``. Subclasses (the dialects) supply connections,
locking and notification; the concern mixins (documents, prompts, tokens,
feedback) build on :class:`StoreBase`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from vibesdk import Flag, FlagDocument
from vibesdk_server._domain._errors import NotFoundError

__all__ = ["SCHEMA", "Mutation", "Published", "StoreBase", "Tx", "rfc3339", "utcnow"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS environments (
    name TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    good_version BIGINT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    environment TEXT NOT NULL,
    version BIGINT NOT NULL,
    document TEXT NOT NULL,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    reason TEXT,
    flags TEXT NOT NULL,
    good INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (environment, version)
);
CREATE TABLE IF NOT EXISTS audit (
    id {ID},
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    environment TEXT,
    flag_key TEXT,
    flags TEXT NOT NULL,
    reason TEXT,
    version BIGINT,
    before TEXT,
    after TEXT,
    evidence TEXT
);
CREATE INDEX IF NOT EXISTS audit_env ON audit (environment, id);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    environment TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    UNIQUE (kind, environment, name)
);
CREATE TABLE IF NOT EXISTS prompts (
    id TEXT NOT NULL,
    version BIGINT NOT NULL,
    system TEXT NOT NULL,
    user_template TEXT NOT NULL,
    model TEXT NOT NULL,
    note TEXT,
    state TEXT NOT NULL,
    author TEXT NOT NULL,
    created_at TEXT NOT NULL,
    reviewer TEXT,
    reviewed_at TEXT,
    review_reason TEXT,
    PRIMARY KEY (id, version)
);
CREATE TABLE IF NOT EXISTS feedback (
    id {ID},
    environment TEXT NOT NULL,
    at TEXT NOT NULL,
    key_name TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    score INTEGER NOT NULL,
    comment TEXT,
    flag_key TEXT,
    variant TEXT,
    user_id TEXT
);
CREATE INDEX IF NOT EXISTS feedback_env ON feedback (environment, id);
CREATE TABLE IF NOT EXISTS reports (
    id {ID},
    environment TEXT NOT NULL,
    at TEXT NOT NULL,
    key_name TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    reason TEXT,
    flag_key TEXT,
    variant TEXT,
    user_id TEXT
);
CREATE INDEX IF NOT EXISTS reports_env ON reports (environment, id);
CREATE INDEX IF NOT EXISTS reports_trace ON reports (environment, trace_id, at);
CREATE TABLE IF NOT EXISTS measurements (
    id {ID},
    environment TEXT NOT NULL,
    flag_key TEXT NOT NULL,
    variant TEXT NOT NULL,
    interval_start BIGINT NOT NULL,
    metric TEXT NOT NULL,
    labels TEXT NOT NULL,
    count DOUBLE PRECISION NOT NULL,
    total DOUBLE PRECISION NOT NULL,
    bounds TEXT,
    buckets TEXT,
    received_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS measurements_flag
    ON measurements (environment, flag_key, interval_start);
CREATE INDEX IF NOT EXISTS measurements_age ON measurements (interval_start);
CREATE TABLE IF NOT EXISTS measurement_rollups (
    environment TEXT NOT NULL,
    flag_key TEXT NOT NULL,
    resolution_s INTEGER NOT NULL,
    interval_start BIGINT NOT NULL,
    variant TEXT NOT NULL,
    metric TEXT NOT NULL,
    labels TEXT NOT NULL,
    bounds TEXT NOT NULL,
    count DOUBLE PRECISION NOT NULL,
    total DOUBLE PRECISION NOT NULL,
    buckets TEXT,
    PRIMARY KEY (environment, flag_key, resolution_s, interval_start, variant, metric, labels,
                 bounds)
);
CREATE INDEX IF NOT EXISTS measurement_rollups_age ON measurement_rollups (interval_start);
CREATE TABLE IF NOT EXISTS releases (
    id {ID},
    environment TEXT NOT NULL,
    flag_key TEXT NOT NULL,
    state TEXT NOT NULL,
    steps TEXT NOT NULL,
    step INTEGER NOT NULL,
    step_started_s DOUBLE PRECISION NOT NULL,
    min_dwell_s DOUBLE PRECISION NOT NULL,
    min_samples INTEGER NOT NULL,
    guardrails TEXT,
    canary_variant TEXT NOT NULL,
    stable_variant TEXT NOT NULL,
    started_by TEXT NOT NULL,
    started_at TEXT NOT NULL,
    reason TEXT,
    updated_at TEXT NOT NULL,
    state_reason TEXT,
    decision TEXT,
    decision_at TEXT,
    plan TEXT
);
CREATE INDEX IF NOT EXISTS releases_flag ON releases (environment, flag_key, id);
CREATE TABLE IF NOT EXISTS release_plans (
    environment TEXT NOT NULL,
    flag_key TEXT NOT NULL,
    version BIGINT NOT NULL,
    plan TEXT,
    PRIMARY KEY (environment, flag_key, version)
);
CREATE TABLE IF NOT EXISTS incidents (
    id {ID},
    environment TEXT NOT NULL,
    flag_key TEXT NOT NULL,
    release_id BIGINT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    from_version BIGINT NOT NULL,
    to_version BIGINT NOT NULL,
    reason TEXT NOT NULL,
    decision TEXT,
    measurements TEXT
);
CREATE INDEX IF NOT EXISTS incidents_env ON incidents (environment, id);
CREATE TABLE IF NOT EXISTS ui_sessions (
    id_hash TEXT PRIMARY KEY,
    actor TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS request_log (
    id {ID},
    environment TEXT NOT NULL,
    flag_key TEXT NOT NULL,
    variant TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    latency_s DOUBLE PRECISION NOT NULL,
    answered_by TEXT,
    model TEXT,
    prompt_ref TEXT,
    finish_reason TEXT,
    input_tokens BIGINT,
    output_tokens BIGINT,
    error_type TEXT,
    fallback_reason TEXT,
    failed_checks TEXT,
    content TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS request_log_env ON request_log (environment, id);
CREATE INDEX IF NOT EXISTS request_log_flag ON request_log (environment, flag_key, id);
"""


def utcnow() -> str:
    """Now as RFC 3339 UTC with milliseconds, e.g. ``2026-11-28T02:10:00.123Z``."""
    return rfc3339(dt.datetime.now(dt.timezone.utc))


def rfc3339(when: dt.datetime) -> str:
    """``when`` as the store writes times (UTC, milliseconds, ``Z``); a naive time is taken as UTC.

    One fixed width and zone, so that stored times compare as text in SQL.
    """
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    when = when.astimezone(dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Published:
    """A committed document version, serialized once for every subscriber."""

    environment: str
    version: int
    document_json: str


@dataclass
class Mutation:
    """What a write computed: the new flags, plus extra fields for the change object.

    ``beside_before`` / ``beside_after``: per flag key, server-side settings kept beside the
    flag and never in the document SDKs fetch (its release plan: ``{"release": {...}}``),
    before and after the write. The diff and the audit entry show them as fields of their flag,
    so a write that changes only them is a change (a new version) like any other.
    """

    flags: dict[str, Flag]
    extra: dict[str, Any]
    beside_before: dict[str, dict[str, Any]] = field(default_factory=dict)
    beside_after: dict[str, dict[str, Any]] = field(default_factory=dict)


class Tx:
    """One open transaction: ``?``-placeholder queries on a DB-API cursor."""

    def __init__(self, cursor: Any, placeholder: str) -> None:
        self._cur = cursor
        self._ph = placeholder

    def run(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if self._ph != "?":
            sql = sql.replace("?", self._ph)
        self._cur.execute(sql, tuple(params))
        return self._cur

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.run(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self.run(sql, params).fetchall())


class StoreBase:
    """Flag server storage; subclasses supply connections, locking and notification.

    All methods are synchronous and thread-safe (a small connection pool); the
    HTTP layer calls them from worker threads. ``on_publish`` is called after
    every commit that produced a new document version.
    """

    placeholder = "?"
    id_column = "INTEGER PRIMARY KEY AUTOINCREMENT"
    pool_size = 8

    def __init__(self) -> None:
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue()
        self._created = 0
        self._pool_lock = threading.Lock()
        self._closed = False
        self.on_publish: Callable[[Published], None] | None = None

    # -- backend hooks ---------------------------------------------------------------------
    def _connect(self) -> Any:
        raise NotImplementedError

    def _begin(self, conn: Any, *, write: bool) -> None:
        raise NotImplementedError

    def _commit(self, conn: Any) -> None:
        conn.execute("COMMIT")

    def _rollback(self, conn: Any) -> None:
        conn.execute("ROLLBACK")

    def _lock(self, tx: Tx, name: str) -> None:
        """Serialize writers of ``name`` until the transaction ends."""

    def _notify(self, tx: Tx, environment: str, version: int) -> None:
        """Tell other replicas (inside the transaction, delivered on commit)."""

    def _is_unique_violation(self, exc: BaseException) -> bool:
        raise NotImplementedError

    #: SQL true when text column ``{0}`` holds the text parameter (case-sensitive).
    _contains_sql = "instr({0}, ?) > 0"

    def _holds_name(self, column: str, name: str) -> tuple[str, str]:
        """SQL and its parameter: the JSON list of names in ``column`` holds ``name``."""
        return self._contains_sql.format(column), json.dumps(name)

    def _is_broken(self, exc: BaseException) -> bool:
        return False

    def describe(self) -> str:
        """Where the data lives, for the startup log line (no secrets)."""
        return type(self).__name__

    # -- plumbing ----------------------------------------------------------------------------
    def init_schema(self) -> None:
        """Create the tables if they are missing (idempotent)."""
        with self._tx(write=True) as tx:
            self._lock(tx, "schema")
            for stmt in SCHEMA.replace("{ID}", self.id_column).split(";"):
                if stmt.strip():
                    tx.run(stmt)
            # Added after the first release: databases created before it lack the column.
            self._add_column(tx, "audit", "evidence", "TEXT")
            self._add_column(tx, "releases", "plan", "TEXT")
            self._add_column(tx, "incidents", "request_log", "TEXT")

    def _add_column(self, tx: Tx, table: str, column: str, kind: str) -> None:
        """Add ``column`` to ``table`` unless it is there (fixed names, never user input)."""
        tx.run(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")

    def _checkout(self) -> Any:
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            pass
        with self._pool_lock:
            grow = self._created < self.pool_size
            if grow:
                self._created += 1
        if not grow:
            return self._pool.get()
        try:
            return self._connect()
        except BaseException:
            with self._pool_lock:
                self._created -= 1
            raise

    def _checkin(self, conn: Any, *, broken: bool) -> None:
        if broken or self._closed:
            with contextlib.suppress(Exception):
                conn.close()
            with self._pool_lock:
                self._created -= 1
        else:
            self._pool.put(conn)

    def _drain_idle(self) -> None:
        """Close every idle pooled connection (after the database went away)."""
        while True:
            try:
                conn = self._pool.get_nowait()
            except queue.Empty:
                return
            self._checkin(conn, broken=True)

    def _begin_on_fresh(self, *, write: bool) -> Any:
        """A connection with a transaction begun; retried once if the database went away."""
        for attempt in (1, 2):
            conn = self._checkout()
            try:
                self._begin(conn, write=write)
            except BaseException as exc:
                broken = self._is_broken(exc)
                self._checkin(conn, broken=broken)
                if not broken or attempt == 2:
                    raise
                # A restart or failover: every idle connection is stale, not just this one.
                self._drain_idle()
                continue
            return conn
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.contextmanager
    def _tx(self, *, write: bool = False) -> Iterator[Tx]:
        conn = self._begin_on_fresh(write=write)
        broken = False
        try:
            yield Tx(conn.cursor(), self.placeholder)
            self._commit(conn)
        except BaseException as exc:
            broken = self._is_broken(exc)
            if not broken:
                with contextlib.suppress(Exception):
                    self._rollback(conn)
            raise
        finally:
            self._checkin(conn, broken=broken)

    def close(self) -> None:
        """Close every pooled connection."""
        self._closed = True
        self._drain_idle()

    def _publish(self, published: Published) -> None:
        if self.on_publish is not None:
            self.on_publish(published)

    def _env_row(self, tx: Tx, name: str) -> tuple[int, int | None]:
        row = tx.one("SELECT version, good_version FROM environments WHERE name = ?", (name,))
        if row is None:
            raise NotFoundError(
                f"environment {name!r} does not exist; create it (POST /v1/admin/environments)"
            )
        return int(row[0]), None if row[1] is None else int(row[1])

    def _doc_json(self, tx: Tx, env: str, version: int) -> str:
        row = tx.one(
            "SELECT document FROM versions WHERE environment = ? AND version = ?", (env, version)
        )
        if row is None:
            raise NotFoundError(f"environment {env!r} has no version {version}; see vibe history")
        return str(row[0])

    def _insert_version(
        self,
        tx: Tx,
        doc: FlagDocument,
        *,
        at: str,
        actor: str,
        action: str,
        reason: str | None,
        flags: list[str],
    ) -> str:
        doc_json = doc.model_dump_json()
        tx.run(
            "INSERT INTO versions (environment, version, document, at, actor, action, reason,"
            " flags, good) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
            (doc.environment, doc.version, doc_json, at, actor, action, reason, json.dumps(flags)),
        )
        return doc_json

    def _audit(
        self,
        tx: Tx,
        *,
        actor: str,
        action: str,
        environment: str | None,
        reason: str | None,
        version: int | None = None,
        flags: Sequence[str] = (),
        before: Any = None,
        after: Any = None,
        evidence: Any = None,
    ) -> int:
        """One audit row; ``evidence`` (JSON-ready) is what a decision was based on, if any."""
        flag_key = flags[0] if len(flags) == 1 else None
        row = tx.one(
            "INSERT INTO audit (at, actor, action, environment, flag_key, flags, reason, version,"
            " before, after, evidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                utcnow(),
                actor,
                action,
                environment,
                flag_key,
                json.dumps(list(flags)),
                reason,
                version,
                json.dumps(before),
                json.dumps(after),
                None if evidence is None else json.dumps(evidence),
            ),
        )
        return int(row[0])
