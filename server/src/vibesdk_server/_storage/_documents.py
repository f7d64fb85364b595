"""Environments and their immutable document versions: every admin write, history and audit.

Every write runs in one transaction that first takes a per-environment lock
(SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an advisory transaction lock), reads
the current version, checks ``expected_version``, computes the new document
with a pure function from :mod:`vibesdk_server._domain`, and stores the new
immutable version, the audit row and (PostgreSQL) a NOTIFY -- all or nothing.
Subscribers are told only after the commit returned, so a pushed version is
always durable.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from vibesdk import Flag, FlagDocument
from vibesdk_server._domain._changes import VersionView
from vibesdk_server._domain._diff import diff
from vibesdk_server._domain._errors import ConflictError, NotFoundError

from ._base import Mutation, Published, StoreBase, Tx, utcnow

__all__ = ["DocumentStore"]

_VERSION_BATCH = (
    "SELECT version, document, good FROM versions WHERE environment = ? AND version <= ?"
    " ORDER BY version DESC LIMIT 50"
)
_GOOD_BATCH = (
    "SELECT version, document, good FROM versions WHERE environment = ? AND version <= ?"
    " AND good = 1 ORDER BY version DESC LIMIT 50"
)


class DocumentStore(StoreBase):
    """Environments, versions, writes, history and the audit log."""

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
        evidence: Any = None,
    ) -> dict[str, Any]:
        """Run one admin write as a new immutable version; returns the change object.

        A write that changes nothing stores no version (``changed: false``) but is
        still audited; ``dry_run`` computes the diff and writes nothing at all.
        ``evidence`` (JSON-ready) goes into the audit entry: what a decision was based on.
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
            before = _view(current.flags, mutation.beside_before)
            after = _view(mutation.flags, mutation.beside_after)
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
                evidence=evidence,
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
    def history_views(
        self, tx: Tx, environment: str, key: str, upto: int, *, good_only: bool = False
    ) -> Iterator[VersionView]:
        """The flag ``key`` in each version at or below ``upto``, newest first, read lazily.

        Versions are fetched in small batches, so a caller that stops early (the
        good version is usually recent) never reads the whole history.
        """
        sql = _GOOD_BATCH if good_only else _VERSION_BATCH
        while upto >= 0:
            rows = tx.all(sql, (environment, upto))
            for version, document, marked in rows:
                flag = json.loads(document)["flags"].get(key)
                yield VersionView(
                    int(version), None if flag is None else Flag.model_validate(flag), bool(marked)
                )
            if len(rows) < 50:
                return
            upto = int(rows[-1][0]) - 1

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
            touched = flag is None
            for at, actor, action, reason, flags_json, version in rows:
                flags = json.loads(flags_json)
                if flag is not None and flag not in flags and action != "mark_good":
                    continue
                touched = touched or action != "mark_good"
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
        if not touched and len(out) < limit:
            # Only mark_good rows (which concern every flag) matched: no change ever named it.
            raise NotFoundError(
                f"no change in environment {environment!r} ever touched flag {flag!r};"
                " vibe status lists its flags"
            )
        return out

    def audit(
        self, *, environment: str | None, limit: int, flag_key: str | None = None
    ) -> list[dict[str, Any]]:
        """Audit entries, newest first: of one environment, touching one flag (alone or among
        several), or all."""
        sql = (
            "SELECT id, at, actor, action, environment, flag_key, flags, reason, version, before,"
            " after, evidence FROM audit WHERE 1 = 1"
        )
        params: list[Any] = []
        if environment is not None:
            sql += " AND environment = ?"
            params.append(environment)
        if flag_key is not None:
            holds, name = self._holds_name("flags", flag_key)
            sql += f" AND (flag_key = ? OR {holds})"
            params += [flag_key, name]
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
                "evidence": json.loads(r[11]) if r[11] is not None else None,
            }
            for r in rows
        ]


def _view(flags: dict[str, Flag], beside: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each flag as JSON, with its server-side settings (never in the document) merged in."""
    return {k: {**f.model_dump(mode="json"), **beside.get(k, {})} for k, f in flags.items()}


def _single(changed: dict[str, Any]) -> Any:
    # One touched flag: store the flag itself; several: a mapping key -> flag.
    if len(changed) == 1:
        return next(iter(changed.values()))
    return changed or None
