"""Every evaluation path gives the answer of a plain reference evaluation.

``CompiledDocument.evaluate`` and ``Client.assign``/``AsyncClient.assign`` share
one flat, pre-digested evaluation, with shortcuts for flags that are on and have
no rules and for one rule of one clause. The reference below follows the
documented order literally: kill switch, then rules in order (every clause must
hold), then the bucket.
"""

from __future__ import annotations

import gc
import random
import weakref
from collections.abc import Mapping
from typing import Any

import pytest

import vibesdk
from vibesdk import Reason, bucket
from vibesdk._flags.document import Flag
from vibesdk._flags.evaluation import Assignment, CompiledDocument, ErrorCode
from vibesdk._sources.store import FlagStore
from vibesdk.testing import InMemoryFlagSource, make_document, make_flag

ATTRIBUTES = ("user_id", "region", "device", "beta")
VALUES = ("cn", "us", "ios", "web", "true", "false", "7", "u1", "u2", "u3")


def _reference(flag: Flag, version: int, user_id: str, attrs: Mapping[str, Any] | None) -> Any:
    def text(value: Any) -> str:
        return ("true" if value else "false") if isinstance(value, bool) else str(value)

    def holds(clause: Any) -> bool:
        if clause.attribute == "user_id":
            found = user_id in clause.values
        else:
            present = attrs is not None and clause.attribute in attrs
            found = present and text(attrs[clause.attribute]) in clause.values  # type: ignore[index]
        return not found if clause.op == "not_in" else found

    def answer(variant: str, reason: str, b: int | None = None, rule: str | None = None) -> Any:
        return (flag.key, user_id, variant, reason, b, version, rule, None, flag.variants[variant])

    if not flag.enabled:
        return answer(flag.default_variant, Reason.DISABLED)
    for rule in flag.rules:
        if all(holds(c) for c in rule.clauses):
            return answer(rule.variant, Reason.TARGETING_MATCH, rule=rule.id)
    b = bucket(flag.effective_salt, user_id)
    variant = flag.rollout_variant if b < flag.rollout_bps else flag.default_variant
    return answer(variant, Reason.SPLIT, b)


def _random_flag(rng: random.Random, key: str) -> Flag:
    rules = [
        {
            "id": f"r{i}",
            "clauses": [
                {
                    "attribute": rng.choice(ATTRIBUTES),
                    "op": rng.choice(("in", "not_in", "equals")),
                    "values": rng.sample(VALUES, rng.randint(1, 3)),
                }
                for _ in range(rng.randint(1, 3))
            ],
            "variant": rng.choice(("stable", "canary")),
        }
        for i in range(rng.choice((0, 0, 1, 1, 2, 4)))
    ]
    for rule in rules:  # equals takes one value
        for clause in rule["clauses"]:
            if clause["op"] == "equals":
                clause["values"] = clause["values"][:1]
    extra: dict[str, Any] = {"salt": f"salt-{rng.randint(0, 9)}"} if rng.random() < 0.3 else {}
    return make_flag(
        key,
        rollout_bps=rng.choice((0, 1, 1000, 5000, 9999, 10000, rng.randint(0, 10000))),
        enabled=rng.random() < 0.8,
        rules=rules,
        **extra,
    )


def _random_call(rng: random.Random) -> tuple[str, dict[str, Any] | None]:
    numbered = f"user-{rng.randint(0, 10**6):06d}"
    user_id = rng.choice((numbered, rng.choice(VALUES), "", "ユーザー" + str(rng.random())))
    if rng.random() < 0.25:
        return user_id, None
    attrs = {
        name: rng.choice((*VALUES, True, False, 7, None))
        for name in ATTRIBUTES[1:]
        if rng.random() < 0.7
    }
    return user_id, attrs


def test_every_path_matches_the_reference_evaluation() -> None:
    """40 random flags x 500 random calls: evaluate, Client.assign and AsyncClient.assign agree."""
    rng = random.Random(20261206)
    flags = [_random_flag(rng, f"flag-{i}") for i in range(40)]
    document = make_document(*flags, version=11)
    compiled = CompiledDocument(document)
    source = InMemoryFlagSource(document)
    client = vibesdk.Client(flag_source=source)
    aclient = vibesdk.AsyncClient(flag_source=source)
    try:
        shapes = {(f.enabled, bool(f.rules)) for f in flags}
        assert shapes == {(True, True), (True, False), (False, True), (False, False)}
        singles = [compiled.flags[f.key].single is not None for f in flags if f.rules]
        assert any(singles)
        assert not all(singles)  # every shape: off, no rules, one rule of one clause, others
        for flag in flags:
            for _ in range(500):
                user_id, attrs = _random_call(rng)
                expected = _reference(flag, 11, user_id, attrs)
                got = [
                    compiled.evaluate(flag.key, user_id, attrs),
                    client.assign(flag.key, user_id=user_id, attributes=attrs),
                    aclient.assign(flag.key, user_id, attrs),
                ]
                for answer in got:
                    assert isinstance(answer, Assignment)
                    assert tuple(answer) == expected, (flag.key, user_id, attrs)
    finally:
        client.close()


def test_client_assign_follows_document_changes_and_unknown_flags() -> None:
    """assign() answers from the served document: before one, after updates, for unknown keys."""
    source = InMemoryFlagSource()
    client = vibesdk.Client(flag_source=source)
    try:
        before = client.assign("vibethinker", "u1")
        assert (before.variant, before.error_code) == ("stable", ErrorCode.PROVIDER_NOT_READY)
        source.update(make_document(make_flag(rollout_bps=10000), version=1))
        assert client.assign("vibethinker", "u1").variant == "canary"
        source.update(make_document(make_flag(rollout_bps=0), version=2))
        after = client.assign("vibethinker", "u1")
        assert (after.variant, after.flag_version) == ("stable", 2)
        unknown = client.assign("nope", "u1")
        assert (unknown.error_code, unknown.flag_version) == (ErrorCode.FLAG_NOT_FOUND, 2)
        bad = client.assign("vibethinker", None, {"region": "cn"})  # type: ignore[arg-type]
        assert bad.error_code == ErrorCode.INVALID_CONTEXT
    finally:
        client.close()


class _View:
    """A bound view, as a client is: evaluates from the flags the store pushes."""

    _flags: Mapping[str, Any]

    def __init__(self, store: FlagStore) -> None:
        self._store = store
        store.bind(self)

    def _evaluate_missing(self, flag: str, user_id: str, attributes: Any) -> Assignment:
        return self._store.evaluate(flag, user_id, attributes)

    from vibesdk._flags.evaluation import evaluator as _evaluator

    @_evaluator
    def assign(self, flag: str, user_id: str, attributes: Any = None) -> Assignment:
        raise NotImplementedError


@pytest.mark.parametrize("served_first", [True, False])
def test_a_pending_fork_hook_runs_on_the_next_assign(served_first: bool) -> None:
    """run_before_next_evaluate's hook runs on a bound view's next assign too, once."""
    store = FlagStore()
    if served_first:
        store.apply(make_document(version=3), origin="poll")
    view = _View(store)
    calls: list[int] = []
    store.run_before_next_evaluate(lambda: calls.append(1))
    first = view.assign("vibethinker", "u1")
    second = view.assign("vibethinker", "u1")
    assert calls == [1]
    expected_version = 3 if served_first else None
    assert first.flag_version == second.flag_version == expected_version
    if not served_first:
        store.apply(make_document(version=4), origin="poll")
        assert view.assign("vibethinker", "u1").flag_version == 4


def test_the_store_holds_its_views_weakly() -> None:
    """A view that is gone is dropped; the store goes on serving the views that remain."""
    store = FlagStore()
    gone = _View(store)
    ref = weakref.ref(gone)
    kept = _View(store)
    del gone
    gc.collect()
    assert ref() is None
    store.apply(make_document(version=5), origin="poll")
    assert kept.assign("vibethinker", "u1").flag_version == 5
    assert kept._flags is store._flags
