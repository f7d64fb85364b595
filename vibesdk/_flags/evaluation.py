"""Evaluating a flag for one unit: pure, allocation-light, and never raising.

The order is fixed and documented: kill switch, then targeting rules in order,
then the percentage rollout by bucket. Whatever goes wrong (no document yet,
unknown flag) the answer is the default variant with a reason and an error
code, as OpenFeature prescribes.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeVar

from .bucketing import BUCKETS, _hash
from .document import Flag, FlagDocument, Variant

__all__ = [
    "Assignment",
    "CompiledDocument",
    "ErrorCode",
    "Reason",
    "compile_document",
    "evaluator",
]


class Reason:
    """Why a unit got its variant (OpenFeature evaluation reasons)."""

    TARGETING_MATCH = "TARGETING_MATCH"  # a targeting rule matched
    SPLIT = "SPLIT"  # the percentage rollout decided, by bucket
    DISABLED = "DISABLED"  # the kill switch is on: everyone gets the default
    ERROR = "ERROR"  # see error_code; the default variant is served


class ErrorCode:
    """Why evaluation could not run normally (OpenFeature error codes)."""

    PROVIDER_NOT_READY = "PROVIDER_NOT_READY"  # no flag document loaded yet
    FLAG_NOT_FOUND = "FLAG_NOT_FOUND"
    INVALID_CONTEXT = (
        "INVALID_CONTEXT"  # user_id not text (or not valid Unicode), attributes not a mapping
    )
    GENERAL = "GENERAL"


class Assignment(NamedTuple):
    """Which variant a unit gets for a flag, and why.

    ``bucket`` is the unit's bucket (0..9999) when the percentage decided,
    ``flag_version`` the version of the document that decided, ``config`` the
    variant's backend/model/prompt/params (``None`` when no document is loaded
    or the flag is unknown).
    """

    flag_key: str
    user_id: str
    variant: str
    reason: str
    bucket: int | None = None
    flag_version: int | None = None
    rule_id: str | None = None
    error_code: str | None = None
    config: Variant | None = None

    @property
    def notice(self) -> str | None:
        """The text to show users of this variant (e.g. "you are trying the new assistant")."""
        return None if self.config is None else self.config.notice


_new = tuple.__new__  # builds an Assignment without the Python-level NamedTuple.__new__
_DISABLED = Reason.DISABLED
_SPLIT = Reason.SPLIT
_ERROR = Reason.ERROR
_TARGETING_MATCH = Reason.TARGETING_MATCH


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_Clause = tuple[str, bool, frozenset[str]]  # (attribute, negate, accepted values)


class _CompiledRule(NamedTuple):
    id: str
    clauses: tuple[_Clause, ...]
    variant: str
    config: Variant


def _clauses_match(
    clauses: tuple[_Clause, ...], user_id: str, attributes: Mapping[str, Any] | None
) -> bool:
    """Whether every clause holds (the general case; evaluate() inlines a rule's first clause)."""
    for attribute, negate, values in clauses:
        if attribute == "user_id":
            hit = user_id in values
        elif attributes is not None and attribute in attributes:
            value = attributes[attribute]
            hit = (value if value.__class__ is str else _as_text(value)) in values
        else:
            hit = False
        if hit == negate:
            return False
    return True


class _CompiledFlag:
    """One flag, pre-digested so that evaluation does no validation or lookups it can avoid."""

    __slots__ = (
        "default",
        "default_config",
        "enabled",
        "flag",
        "gated",
        "key",
        "prefix",
        "rollout",
        "rollout_bps",
        "rollout_config",
        "rules",
        "single",
        "version",
    )

    def __init__(self, flag: Flag, version: int) -> None:
        self.flag = flag
        self.key = flag.key
        self.version = version
        self.prefix = f"{flag.effective_salt}:"
        self.enabled = flag.enabled
        self.default = flag.default_variant
        self.default_config = flag.variants[flag.default_variant]
        self.rollout = flag.rollout_variant
        self.rollout_bps = flag.rollout_bps
        self.rollout_config = flag.variants.get(flag.rollout_variant, self.default_config)
        rules = [
            _CompiledRule(
                r.id,
                tuple((c.attribute, c.op == "not_in", frozenset(c.values)) for c in r.clauses),
                r.variant,
                flag.variants[r.variant],
            )
            for r in flag.rules
        ]
        # Each rule as (first clause..., the other clauses, rule): most rules have one
        # clause, which evaluate() then checks inline (a rule always has at least one).
        self.rules = tuple((*r.clauses[0], r.clauses[1:], r) for r in rules)
        # One rule of one clause, the next most common shape after no rules, is checked
        # without the loop: (attribute, negate, values, variant, rule id, variant config).
        self.single = (
            (*rules[0].clauses[0], rules[0].variant, rules[0].id, rules[0].config)
            if len(self.rules) == 1 and not self.rules[0][3]
            else None
        )
        # False for the common shape (on, no rules): evaluation goes straight to the bucket.
        self.gated = bool(rules) or not flag.enabled


def _evaluate(  # noqa: PLR0911, PLR0912 - flat on purpose: one frame (see below)
    self: Any, flag: str, user_id: str, attributes: Mapping[str, Any] | None = None
) -> Assignment:
    # The shared body of CompiledDocument.evaluate and Client.assign (see evaluator()).
    # ``self._flags`` is the served flags by key; a flag not in it (or no document
    # at all) is answered by ``self._evaluate_missing(flag, user_id, attributes)``.
    #
    # This is the hot path of every assign() and chat() call, so it is written
    # flat: one frame, no helper calls on the common path, and the results
    # built with tuple.__new__, which skips the Python-level NamedTuple.__new__
    # frame (see benchmarks/assign/README.md).
    try:
        f = self._flags[flag]
    except (KeyError, TypeError):  # TypeError: an unhashable flag key
        return self._evaluate_missing(flag, user_id, attributes)  # type: ignore[no-any-return]
    # Identity checks only on the common path (a str; a dict or None); isinstance
    # only for subclasses, other mappings and bad input.
    if (
        user_id.__class__ is not str
        or (attributes is not None and attributes.__class__ is not dict)
    ) and not (
        isinstance(user_id, str) and (attributes is None or isinstance(attributes, Mapping))
    ):
        return _invalid_context(f, user_id)
    try:  # zero-cost unless it raises; the except is for bad caller input only
        if f.gated:  # the kill switch is on, or there are rules (else: straight to the bucket)
            if not f.enabled:
                return _new(Assignment, (
                    f.key, user_id, f.default, _DISABLED, None, f.version, None, None,
                    f.default_config,
                ))  # fmt: skip
            # The clause check stands three times (here, in the loop, in _clauses_match),
            # inline for speed; tests/test_evaluation_paths.py holds each to a reference.
            if f.single is not None:  # the loop's check below, for one rule of one clause
                attribute, negate, values, variant, rule_id, config = f.single
                if attribute == "user_id":
                    hit = user_id in values
                elif attributes is not None and attribute in attributes:
                    value = attributes[attribute]
                    hit = (value if value.__class__ is str else _as_text(value)) in values
                else:
                    hit = False
                if hit is not negate:
                    return _new(Assignment, (
                        f.key, user_id, variant, _TARGETING_MATCH, None, f.version, rule_id, None,
                        config,
                    ))  # fmt: skip
            else:
                for attribute, negate, values, more, rule in f.rules:
                    if attribute == "user_id":
                        hit = user_id in values
                    elif attributes is not None and attribute in attributes:
                        value = attributes[attribute]
                        hit = (value if value.__class__ is str else _as_text(value)) in values
                    else:
                        hit = False
                    if hit is not negate and (
                        not more or _clauses_match(more, user_id, attributes)
                    ):
                        return _new(Assignment, (
                            f.key, user_id, rule.variant, _TARGETING_MATCH, None, f.version,
                            rule.id, None, rule.config,
                        ))  # fmt: skip
        key = f.prefix + user_id
        if not key.isascii():
            # mmh3 crashes the interpreter (SIGSEGV) on a str it cannot encode to
            # UTF-8: a lone surrogate, e.g. from json.loads('"\\ud800"'). Refuse it.
            key.encode()  # raises UnicodeEncodeError -> INVALID_CONTEXT
        b = _hash(key, 0, False) % BUCKETS
        if b < f.rollout_bps:
            return _new(
                Assignment,
                (f.key, user_id, f.rollout, _SPLIT, b, f.version, None, None, f.rollout_config),
            )
        return _new(
            Assignment,
            (f.key, user_id, f.default, _SPLIT, b, f.version, None, None, f.default_config),
        )
    except Exception:
        return _invalid_context(f, user_id)


_F = TypeVar("_F", bound=Callable[..., Assignment])


def evaluator(method: _F) -> _F:
    """Make ``method`` (a documented stub) run the flag evaluation itself, in one frame.

    The method's class provides ``_flags`` (flag key -> compiled flag, read
    lock-free) and ``_evaluate_missing(flag, user_id, attributes)`` for a key
    not in it. ``Client.assign`` is built this way rather than calling
    ``CompiledDocument.evaluate``: a second Python frame per call was about a
    sixth of its cost. Each method gets its own copy of the code object, so the
    interpreter's per-site attribute caches are not shared between classes.
    """
    code = _evaluate.__code__.replace(co_name=method.__name__)
    fn = types.FunctionType(code, _evaluate.__globals__, method.__name__, _evaluate.__defaults__)
    fn.__qualname__ = method.__qualname__
    fn.__module__ = method.__module__
    fn.__doc__ = method.__doc__
    fn.__annotations__ = dict(method.__annotations__)
    return fn  # type: ignore[return-value]


class CompiledDocument:
    """A flag document ready for evaluation. Build once per document version."""

    __slots__ = ("_flags", "document", "flags", "version")

    def __init__(self, document: FlagDocument) -> None:
        self.document = document
        self.version = document.version
        self.flags = {k: _CompiledFlag(f, document.version) for k, f in document.flags.items()}
        self._flags = self.flags

    @evaluator
    def evaluate(
        self, flag: str, user_id: str, attributes: Mapping[str, Any] | None = None
    ) -> Assignment:
        """Assign ``user_id`` to a variant of ``flag``. Never raises.

        A ``user_id`` that is not a ``str`` (``None``, a number) or holds a lone
        surrogate (not valid Unicode, so it has no UTF-8 bytes to hash), or
        ``attributes`` that are not a mapping, give the flag's default variant
        with ``error_code`` ``INVALID_CONTEXT``.
        """
        raise NotImplementedError  # pragma: no cover - replaced by @evaluator

    def _evaluate_missing(
        self, flag: str, user_id: str, attributes: Mapping[str, Any] | None
    ) -> Assignment:
        return not_ready(flag, user_id, ErrorCode.FLAG_NOT_FOUND, self.version)


def _invalid_context(f: _CompiledFlag, user_id: Any) -> Assignment:
    """The flag's default variant, with ``INVALID_CONTEXT`` as the error code."""
    return _new(Assignment, (
        f.key, user_id, f.default, _ERROR, None, f.version, None,
        ErrorCode.INVALID_CONTEXT, f.default_config,
    ))  # fmt: skip


def compile_document(document: FlagDocument) -> CompiledDocument:
    """Pre-digest ``document`` for fast evaluation."""
    return CompiledDocument(document)


def not_ready(
    flag_key: str, user_id: str, error_code: str, flag_version: int | None = None
) -> Assignment:
    """The safe answer when evaluation cannot run: ``stable``, with the reason as data."""
    return Assignment(
        flag_key, user_id, "stable", Reason.ERROR, None, flag_version, None, error_code
    )
