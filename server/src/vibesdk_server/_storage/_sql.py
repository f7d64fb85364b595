"""The storage logic shared by SQLite and PostgreSQL: one class, two small dialects.

Every write runs in one transaction that first takes a per-environment lock
(SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an advisory transaction lock), reads
the current version, checks ``expected_version``, computes the new document
with a pure function from :mod:`vibesdk_server._domain`, and stores the new
immutable version, the audit row and (PostgreSQL) a NOTIFY -- all or nothing.
Subscribers are told only after the commit returned, so a pushed version is
always durable.

Statements are written with ``?`` placeholders; the PostgreSQL dialect
rewrites them to ``%s``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from vibesdk import Flag, FlagDocument
from vibesdk_server._domain._changes import VersionView
from vibesdk_server._domain._diff import diff
from vibesdk_server._domain._errors import ConflictError, InvalidError, NotFoundError
from vibesdk_server._tokens import Principal, hash_secret, new_token, parse_token, secret_matches

__all__ = ["Mutation", "Published", "SqlStore", "Tx", "utcnow"]

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
    after TEXT
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
"""

_PROMPT_COLUMNS = (
    "id, version, system, user_template, model, note, state, author, created_at,"
    " reviewer, reviewed_at, review_reason"
)


# Built once from constants (no user input), so S608 does not apply.
_SELECT_PROMPTS = f"SELECT {_PROMPT_COLUMNS} FROM prompts"  # noqa: S608
_INSERT_PROMPT = (
    f"INSERT INTO prompts ({_PROMPT_COLUMNS})"  # noqa: S608
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL)"
)
_REVIEW_ACTIONS = {"approved": "prompt_approve", "rejected": "prompt_reject"}


def utcnow() -> str:
    """Now as RFC 3339 UTC with milliseconds, e.g. ``2026-11-28T02:10:00.123Z``."""
    now = dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Published:
    """A committed document version, serialized once for every subscriber."""

    environment: str
    version: int
    document_json: str


@dataclass
class Mutation:
    """What a write computed: the new flags, plus extra fields for the change object."""

    flags: dict[str, Flag]
    extra: dict[str, Any]


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


class SqlStore:
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

    @contextlib.contextmanager
    def _conn(self) -> Iterator[Any]:
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            with self._pool_lock:
                grow = self._created < self.pool_size
                if grow:
                    self._created += 1
            if grow:
                try:
                    conn = self._connect()
                except BaseException:
                    with self._pool_lock:
                        self._created -= 1
                    raise
            else:
                conn = self._pool.get()
        broken = False
        try:
            yield conn
        except BaseException as exc:
            broken = self._is_broken(exc)
            raise
        finally:
            if broken or self._closed:
                with contextlib.suppress(Exception):
                    conn.close()
                with self._pool_lock:
                    self._created -= 1
            else:
                self._pool.put(conn)

    @contextlib.contextmanager
    def _tx(self, *, write: bool = False) -> Iterator[Tx]:
        with self._conn() as conn:
            self._begin(conn, write=write)
            try:
                yield Tx(conn.cursor(), self.placeholder)
            except BaseException:
                with contextlib.suppress(Exception):
                    self._rollback(conn)
                raise
            self._commit(conn)

    def close(self) -> None:
        """Close every pooled connection."""
        self._closed = True
        while True:
            try:
                conn = self._pool.get_nowait()
            except queue.Empty:
                return
            with contextlib.suppress(Exception):
                conn.close()

    def _publish(self, published: Published) -> None:
        if self.on_publish is not None:
            self.on_publish(published)

    # -- tokens --------------------------------------------------------------------------------
    def create_token(
        self, *, kind: str, name: str, environment: str | None, created_by: str
    ) -> str:
        """Store a new admin token or SDK key (hashed) and return the secret, shown once."""
        if kind not in ("admin", "sdk"):
            raise InvalidError(f"token kind must be admin or sdk, got {kind!r}")
        if kind == "sdk" and not environment:
            raise InvalidError("an SDK key belongs to one environment; pass --env NAME")
        env = environment if kind == "sdk" else ""
        token_id, secret = new_token(kind)
        with self._tx(write=True) as tx:
            if kind == "sdk":
                self._env_row(tx, env or "")
            clash = tx.one(
                "SELECT 1 FROM tokens WHERE kind = ? AND environment = ? AND name = ?",
                (kind, env, name),
            )
            if clash:
                where = f" in environment {env!r}" if env else ""
                raise ConflictError(
                    f"a {kind} token named {name!r} already exists{where}; choose another name"
                )
            tx.run(
                "INSERT INTO tokens (id, kind, name, environment, secret_hash, created_at,"
                " created_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (token_id, kind, name, env, hash_secret(secret), utcnow(), created_by),
            )
            self._audit(
                tx,
                actor=created_by,
                action=f"{kind}_token_create",
                environment=env or None,
                reason=None,
                after={"name": name, "kind": kind},
            )
        return secret

    def authenticate(self, secret: str) -> Principal | None:
        """The principal for a presented secret, or None (constant-time hash comparison)."""
        token_id = parse_token(secret)
        if token_id is None:
            return None
        with self._tx() as tx:
            row = tx.one(
                "SELECT kind, name, environment, secret_hash FROM tokens WHERE id = ?",
                (token_id,),
            )
        if row is None or not secret_matches(secret, row[3]):
            return None
        return Principal(kind=row[0], name=row[1], environment=row[2] or None)

    # -- environments ----------------------------------------------------------------------------
    def _env_row(self, tx: Tx, name: str) -> tuple[int, int | None]:
        row = tx.one("SELECT version, good_version FROM environments WHERE name = ?", (name,))
        if row is None:
            raise NotFoundError(
                f"environment {name!r} does not exist; create it (POST /v1/admin/environments)"
            )
        return int(row[0]), None if row[1] is None else int(row[1])

    def list_environments(self) -> list[dict[str, Any]]:
        with self._tx() as tx:
            rows = tx.all("SELECT name, version, good_version FROM environments ORDER BY name")
        return [{"name": r[0], "version": r[1], "good_version": r[2]} for r in rows]

    def environment_names(self) -> list[str]:
        return [e["name"] for e in self.list_environments()]

    def create_environment(self, name: str, *, actor: str, reason: str | None) -> dict[str, Any]:
        """Create ``name`` at version 0 with no flags; 409 if it exists."""
        at = utcnow()
        doc = FlagDocument(environment=name, version=0, updated_at=at, flags={})
        with self._tx(write=True) as tx:
            self._lock(tx, f"env:{name}")
            if tx.one("SELECT 1 FROM environments WHERE name = ?", (name,)):
                raise ConflictError(f"environment {name!r} already exists")
            tx.run(
                "INSERT INTO environments (name, version, good_version, created_at)"
                " VALUES (?, 0, NULL, ?)",
                (name, at),
            )
            self._insert_version(
                tx, doc, at=at, actor=actor, action="create", reason=reason, flags=[]
            )
            audit_id = self._audit(
                tx, actor=actor, action="create", environment=name, reason=reason, version=0
            )
        return {"name": name, "version": 0, "good_version": None, "audit_id": audit_id}

    def get_environment(self, name: str) -> dict[str, Any]:
        with self._tx() as tx:
            version, good = self._env_row(tx, name)
            doc = self._doc_json(tx, name, version)
        return {
            "environment": name,
            "version": version,
            "good_version": good,
            "document": json.loads(doc),
        }

    def current(self, name: str) -> Published:
        """The environment's current version, serialized (404 for an unknown environment)."""
        with self._tx() as tx:
            version, _ = self._env_row(tx, name)
            return Published(name, version, self._doc_json(tx, name, version))

    def current_version(self, name: str) -> int:
        with self._tx() as tx:
            return self._env_row(tx, name)[0]

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
    ) -> int:
        flag_key = flags[0] if len(flags) == 1 else None
        row = tx.one(
            "INSERT INTO audit (at, actor, action, environment, flag_key, flags, reason, version,"
            " before, after) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
            ),
        )
        return int(row[0])

    # -- writes ----------------------------------------------------------------------------------
    def write(
        self,
        environment: str,
        mutate: Callable[[Tx, FlagDocument], Mutation],
        *,
        actor: str,
        action: str,
        reason: str | None,
        expected_version: int | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Run one admin write as a new immutable version; returns the change object.

        A write that changes nothing stores no version (``changed: false``) but is
        still audited; ``dry_run`` computes the diff and writes nothing at all.
        """
        published: Published | None = None
        with self._tx(write=not dry_run) as tx:
            self._lock(tx, f"env:{environment}")
            current_version, _ = self._env_row(tx, environment)
            if expected_version is not None and expected_version != current_version:
                raise ConflictError(
                    f"stale version: you expected version {expected_version} but environment"
                    f" {environment!r} is at version {current_version}; re-read it and retry"
                )
            current = FlagDocument.model_validate_json(
                self._doc_json(tx, environment, current_version)
            )
            mutation = mutate(tx, current)
            before = {k: f.model_dump(mode="json") for k, f in current.flags.items()}
            after = {k: f.model_dump(mode="json") for k, f in mutation.flags.items()}
            changes = diff({"flags": before}, {"flags": after})
            touched = sorted(
                k for k in before.keys() | after.keys() if before.get(k) != after.get(k)
            )
            changed = bool(changes)
            version = current_version + 1 if changed and not dry_run else current_version
            change: dict[str, Any] = {
                "environment": environment,
                "version": version,
                "previous_version": current_version,
                "changed": changed,
                "diff": changes,
                "audit_id": None,
                **mutation.extra,
            }
            if dry_run:
                change["dry_run"] = True
                return change
            if changed:
                at = utcnow()
                doc = FlagDocument(
                    environment=environment, version=version, updated_at=at, flags=mutation.flags
                )
                doc_json = self._insert_version(
                    tx, doc, at=at, actor=actor, action=action, reason=reason, flags=touched
                )
                tx.run("UPDATE environments SET version = ? WHERE name = ?", (version, environment))
                self._notify(tx, environment, version)
                published = Published(environment, version, doc_json)
            change["audit_id"] = self._audit(
                tx,
                actor=actor,
                action=action,
                environment=environment,
                reason=reason,
                version=version,
                flags=touched,
                before=_single({k: before.get(k) for k in touched}),
                after=_single({k: after.get(k) for k in touched}),
            )
        if published is not None:
            self._publish(published)
        return change

    def mark_good(
        self, environment: str, version: int, *, actor: str, reason: str | None
    ) -> dict[str, Any]:
        """Mark ``version`` known-good; rollback restores flags from the newest such version."""
        with self._tx(write=True) as tx:
            self._lock(tx, f"env:{environment}")
            current_version, good = self._env_row(tx, environment)
            if not 0 <= version <= current_version:
                raise NotFoundError(
                    f"environment {environment!r} has no version {version} (current:"
                    f" {current_version}); see vibe history"
                )
            tx.run(
                "UPDATE versions SET good = 1 WHERE environment = ? AND version = ?",
                (environment, version),
            )
            new_good = max(version, good if good is not None else -1)
            tx.run(
                "UPDATE environments SET good_version = ? WHERE name = ?", (new_good, environment)
            )
            audit_id = self._audit(
                tx,
                actor=actor,
                action="mark_good",
                environment=environment,
                reason=reason,
                version=version,
                before={"good_version": good},
                after={"good_version": new_good},
            )
        return {
            "environment": environment,
            "version": current_version,
            "previous_version": current_version,
            "changed": False,
            "diff": [],
            "audit_id": audit_id,
            "good_version": new_good,
            "marked": version,
        }

    # -- reads inside a write (used by mutations) --------------------------------------------------
    def history_views(self, tx: Tx, environment: str, key: str, upto: int) -> Iterator[VersionView]:
        """The flag ``key`` in every version at or below ``upto``, newest first."""
        rows = tx.all(
            "SELECT version, document, good FROM versions WHERE environment = ? AND version <= ?"
            " ORDER BY version DESC",
            (environment, upto),
        )
        for version, document, good in rows:
            flag = json.loads(document)["flags"].get(key)
            yield VersionView(
                int(version), None if flag is None else Flag.model_validate(flag), bool(good)
            )

    def flag_at(self, tx: Tx, environment: str, version: int, key: str) -> Flag | None:
        doc = json.loads(self._doc_json(tx, environment, version))
        flag = doc["flags"].get(key)
        return None if flag is None else Flag.model_validate(flag)

    # -- history, versions, audit -----------------------------------------------------------------
    def version(self, environment: str, version: int) -> dict[str, Any]:
        with self._tx() as tx:
            self._env_row(tx, environment)
            row = tx.one(
                "SELECT document, at, actor, action, reason, good FROM versions"
                " WHERE environment = ? AND version = ?",
                (environment, version),
            )
        if row is None:
            raise NotFoundError(
                f"environment {environment!r} has no version {version}; see vibe history"
            )
        return {
            "version": version,
            "document": json.loads(row[0]),
            "at": row[1],
            "actor": row[2],
            "action": row[3],
            "reason": row[4],
            "good": bool(row[5]),
        }

    def history(self, environment: str, *, flag: str | None, limit: int) -> list[dict[str, Any]]:
        """Audited actions on the environment, newest first (optionally those touching ``flag``)."""
        out: list[dict[str, Any]] = []
        with self._tx() as tx:
            self._env_row(tx, environment)
            good = {
                int(r[0])
                for r in tx.all(
                    "SELECT version FROM versions WHERE environment = ? AND good = 1",
                    (environment,),
                )
            }
            rows = tx.run(
                "SELECT at, actor, action, reason, flags, version FROM audit"
                " WHERE environment = ? ORDER BY id DESC",
                (environment,),
            )
            for at, actor, action, reason, flags_json, version in rows:
                flags = json.loads(flags_json)
                if flag is not None and flag not in flags and action != "mark_good":
                    continue
                out.append(
                    {
                        "version": version,
                        "at": at,
                        "actor": actor,
                        "action": action,
                        "reason": reason,
                        "flags": flags,
                        "good": version in good,
                    }
                )
                if len(out) >= limit:
                    break
        return out

    def audit(self, *, environment: str | None, limit: int) -> list[dict[str, Any]]:
        sql = (
            "SELECT id, at, actor, action, environment, flag_key, flags, reason, version, before,"
            " after FROM audit"
        )
        params: tuple[Any, ...] = ()
        if environment is not None:
            sql += " WHERE environment = ?"
            params = (environment,)
        with self._tx() as tx:
            rows = tx.all(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [
            {
                "id": r[0],
                "at": r[1],
                "actor": r[2],
                "action": r[3],
                "environment": r[4],
                "flag_key": r[5],
                "flags": json.loads(r[6]),
                "reason": r[7],
                "version": r[8],
                "before": json.loads(r[9]) if r[9] is not None else None,
                "after": json.loads(r[10]) if r[10] is not None else None,
            }
            for r in rows
        ]

    # -- prompts -----------------------------------------------------------------------------------
    @staticmethod
    def _prompt(row: Sequence[Any], *, text: bool = True) -> dict[str, Any]:
        out = dict(zip(_PROMPT_COLUMNS.replace(" ", "").split(","), row, strict=True))
        if not text:
            out.pop("system")
            out.pop("user_template")
        return out

    def create_prompt(
        self,
        *,
        prompt_id: str,
        system: str,
        user_template: str,
        model: str,
        note: str | None,
        author: str,
    ) -> dict[str, Any]:
        """Register immutable version 1, 2, ... of template ``prompt_id``, pending review."""
        with self._tx(write=True) as tx:
            self._lock(tx, f"prompt:{prompt_id}")
            row = tx.one("SELECT MAX(version) FROM prompts WHERE id = ?", (prompt_id,))
            version = int(row[0] or 0) + 1
            at = utcnow()
            tx.run(
                _INSERT_PROMPT,
                (prompt_id, version, system, user_template, model, note, "pending", author, at),
            )
            self._audit(
                tx,
                actor=author,
                action="prompt_add",
                environment=None,
                reason=note,
                after={"id": prompt_id, "version": version, "model": model, "state": "pending"},
            )
            return self._prompt(
                tx.one(
                    _SELECT_PROMPTS + " WHERE id = ? AND version = ?",
                    (prompt_id, version),
                )
            )

    def get_prompt(self, prompt_id: str, version: int, tx: Tx | None = None) -> dict[str, Any]:
        if tx is None:
            with self._tx() as own:
                return self.get_prompt(prompt_id, version, own)
        row = tx.one(
            _SELECT_PROMPTS + " WHERE id = ? AND version = ?",
            (prompt_id, version),
        )
        if row is None:
            raise NotFoundError(
                f"prompt {prompt_id}@{version} does not exist; register it with vibe prompt add"
            )
        return self._prompt(row)

    def list_prompts(self) -> list[dict[str, Any]]:
        with self._tx() as tx:
            rows = tx.all(_SELECT_PROMPTS + " ORDER BY id, version")
        return [self._prompt(r, text=False) for r in rows]

    def review_prompt(
        self, prompt_id: str, version: int, *, state: str, reviewer: str, reason: str | None
    ) -> dict[str, Any]:
        """Move a pending template to approved or rejected; the same verdict again is a no-op."""
        with self._tx(write=True) as tx:
            self._lock(tx, f"prompt:{prompt_id}")
            current = self.get_prompt(prompt_id, version, tx)
            if current["state"] == state:
                return current
            if current["state"] != "pending":
                raise ConflictError(
                    f"prompt {prompt_id}@{version} is already {current['state']}; versions are"
                    " immutable, so register a new version with vibe prompt add"
                )
            tx.run(
                "UPDATE prompts SET state = ?, reviewer = ?, reviewed_at = ?, review_reason = ?"
                " WHERE id = ? AND version = ?",
                (state, reviewer, utcnow(), reason, prompt_id, version),
            )
            self._audit(
                tx,
                actor=reviewer,
                action=_REVIEW_ACTIONS[state],
                environment=None,
                reason=reason,
                before={"id": prompt_id, "version": version, "state": "pending"},
                after={"id": prompt_id, "version": version, "state": state},
            )
            return self.get_prompt(prompt_id, version, tx)

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


def _single(changed: dict[str, Any]) -> Any:
    # One touched flag: store the flag itself; several: a mapping key -> flag.
    if len(changed) == 1:
        return next(iter(changed.values()))
    return changed or None
