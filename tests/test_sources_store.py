"""FlagStore: lock-free reads, versions only go forward, listeners, readiness."""

from __future__ import annotations

import threading

from hypothesis import given
from hypothesis import strategies as st

from vibesdk import ErrorCode, FlagDocument, FlagState, Reason
from vibesdk._sources import FlagStore
from vibesdk.testing import make_document, make_flag


def test_before_any_document_evaluate_answers_stable_not_ready() -> None:
    """An empty store answers the default variant with PROVIDER_NOT_READY, never raising."""
    store = FlagStore()
    a = store.evaluate("vibethinker", "u1")
    assert (a.variant, a.reason, a.error_code) == (
        "stable",
        Reason.ERROR,
        ErrorCode.PROVIDER_NOT_READY,
    )
    assert store.document is None
    assert store.version is None
    assert store.flag("vibethinker") is None
    assert store.state is FlagState.NOT_READY


def test_apply_serves_newer_and_refuses_same_or_older_versions() -> None:
    """Version 5 applies; 5 again and 4 are refused and 5 keeps serving."""
    store = FlagStore()
    assert store.apply(make_document(make_flag(rollout_bps=10000), version=5), origin="poll")
    assert not store.apply(make_document(make_flag(rollout_bps=0), version=5), origin="poll")
    assert not store.apply(make_document(make_flag(rollout_bps=0), version=4), origin="stream")
    assert store.version == 5
    assert store.origin == "poll"
    assert store.evaluate("vibethinker", "u1").variant == "canary"
    flag = store.flag("vibethinker")
    assert flag is not None
    assert flag.rollout_bps == 10000


def test_evaluate_is_the_documents_own_bound_method() -> None:
    """After apply, evaluate is the compiled document's method itself: no extra work per call."""
    store = FlagStore()
    store.apply(make_document(version=1), origin="poll")
    assert store.evaluate.__self__.version == 1  # type: ignore[attr-defined]
    assert store.evaluate("vibethinker", "u1").flag_version == 1


def test_listeners_see_applied_documents_and_their_errors_are_contained() -> None:
    """Listeners get each applied document; one that raises neither stops others nor the apply."""
    store = FlagStore()
    seen: list[int] = []

    def broken(document: FlagDocument) -> None:
        raise RuntimeError("listener bug")

    store.add_listener(broken)
    store.add_listener(lambda d: seen.append(d.version))
    store.apply(make_document(version=1), origin="poll")
    store.apply(make_document(version=1), origin="poll")
    store.apply(make_document(version=2), origin="poll")
    store.remove_listener(broken)
    assert seen == [1, 2]


def test_wait_until_ready_is_true_for_ready_or_offline_with_a_document() -> None:
    """READY, or OFFLINE with a document, is ready; STALE and NOT_READY time out with False."""
    store = FlagStore()
    store.set_state(FlagState.OFFLINE)
    assert not store.wait_until_ready(0)
    store.apply(make_document(version=1), origin="bootstrap")
    assert store.wait_until_ready(0)
    store.set_state(FlagState.STALE)
    assert not store.wait_until_ready(0.01)
    store.set_state(FlagState.READY)
    assert store.wait_until_ready(0)


def test_wait_until_ready_wakes_when_another_thread_makes_it_ready() -> None:
    """A waiter blocked in wait_until_ready returns True as soon as READY is set."""
    store = FlagStore()
    store.apply(make_document(version=1), origin="poll")
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(store.wait_until_ready(30)))
    waiter.start()
    store.set_state(FlagState.READY)
    waiter.join(30)
    assert result == [True]


def test_concurrent_appliers_end_on_the_highest_version() -> None:
    """Many threads applying versions in any order leave the highest one served."""
    store = FlagStore()
    docs = [make_document(version=v) for v in range(1, 41)]
    threads = [
        threading.Thread(target=lambda d=d: store.apply(d, origin="poll")) for d in reversed(docs)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.version == 40


def test_run_before_next_evaluate_runs_once_then_restores_the_fast_path() -> None:
    """The fork trampoline runs its hook once, answers normally, then gets out of the way."""
    store = FlagStore()
    store.apply(make_document(version=3), origin="poll")
    calls: list[int] = []
    store.run_before_next_evaluate(lambda: calls.append(1))
    assert store.evaluate("vibethinker", "u1").flag_version == 3
    assert store.evaluate("vibethinker", "u1").flag_version == 3
    assert calls == [1]
    assert store.evaluate.__self__.version == 3  # type: ignore[attr-defined]


@given(st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=30))
def test_served_version_is_always_the_highest_seen(versions: list[int]) -> None:
    """Whatever order versions arrive in, the store serves the highest so far, and only rises."""
    store = FlagStore()
    served: list[int] = []
    for version in versions:
        store.apply(make_document(version=version), origin="poll")
        assert store.version == max(versions[: len(served) + 1])
        served.append(store.version)
    assert served == sorted(served)
