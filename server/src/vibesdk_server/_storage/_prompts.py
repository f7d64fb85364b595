"""Prompt templates: immutable numbered versions with a review state, bound to a model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vibesdk_server._domain._errors import ConflictError, ForbiddenError, NotFoundError

from ._base import StoreBase, Tx, utcnow

__all__ = ["PromptStore"]

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


class PromptStore(StoreBase):
    """Register, read and review prompt template versions."""

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
        self,
        prompt_id: str,
        version: int,
        *,
        state: str,
        reviewer: str,
        reason: str | None,
        allow_self_review: bool = False,
    ) -> dict[str, Any]:
        """Move a pending template to approved or rejected; the same verdict again is a no-op.

        Four-eyes review: approving a version its own author registered is a
        :class:`ForbiddenError` (nothing written) unless ``allow_self_review``.
        Rejecting one's own version is always allowed (it only withdraws it).
        """
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
            if state == "approved" and current["author"] == reviewer and not allow_self_review:
                raise ForbiddenError(
                    f"prompt {prompt_id}@{version} was added by {reviewer}, who cannot also"
                    " approve it: another admin must approve it (four-eyes review; a"
                    " single-operator server can be started with --allow-self-review)"
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
