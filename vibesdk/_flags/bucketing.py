"""The published bucketing function, version 1.

A unit (usually a user id) falls in a bucket from 0 to 9,999 (basis points)::

    bucket = murmur3_x86_32(utf8(f"{salt}:{unit_id}"), seed=0) as unsigned % 10_000

A unit is in the rollout iff ``bucket < rollout_bps``. Raising ``rollout_bps``
only adds units; 0 removes everyone; a new salt reshuffles. The spec, with test
vectors for other languages, is docs/concepts/bucketing.md and
tests/vectors/bucketing-v1.json.
"""

from __future__ import annotations

import mmh3

from vibesdk._errors import InvalidArgumentError

__all__ = ["BUCKETING_VERSION", "BUCKETS", "bucket"]

BUCKETING_VERSION = 1
BUCKETS = 10_000

_hash = mmh3.hash


def bucket(salt: str, unit_id: str) -> int:
    """Return the bucket (0..9999) of ``unit_id`` under ``salt``.

    ``salt`` is the flag's salt, which defaults to the flag key, so
    ``bucket("vibethinker", "u42")`` is the bucket of user ``u42`` for the flag
    ``vibethinker``. Pure and stable across processes, machines and languages.
    Raises :class:`~vibesdk.InvalidArgumentError` (a ``ValueError``) when
    ``salt`` or ``unit_id`` is not a ``str`` (``5`` and ``"5"`` would silently
    share a bucket) or is text that has no UTF-8 form (a lone surrogate).
    """
    if not (isinstance(salt, str) and isinstance(unit_id, str)):
        name, value = ("salt", salt) if not isinstance(salt, str) else ("unit_id", unit_id)
        raise InvalidArgumentError(
            f"bucket() takes text: {name} is {type(value).__name__} {value!r:.40}; "
            f"pass str({name}) if that is what you mean"
        )
    key = f"{salt}:{unit_id}"
    if not key.isascii():
        # mmh3 crashes the interpreter (SIGSEGV) on a str it cannot encode to UTF-8.
        try:
            key.encode()
        except UnicodeEncodeError as exc:
            raise InvalidArgumentError(
                "salt and unit_id must be valid Unicode text (this one holds a lone surrogate)"
            ) from exc
    return _hash(key, 0, False) % BUCKETS
