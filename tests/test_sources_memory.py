"""vibesdk.testing.InMemoryFlagSource: the flag source users' own tests drive."""

from __future__ import annotations

import asyncio

from vibesdk import ErrorCode, FlagDocument, FlagState
from vibesdk.testing import InMemoryFlagSource, make_document, make_flag


def test_a_given_document_is_ready_at_once() -> None:
    """Constructed with a document, the source is READY and serves it."""
    source = InMemoryFlagSource(make_document(make_flag(rollout_bps=10000), version=3))
    source.start()
    assert source.wait_until_ready(0)
    assert source.store.state is FlagState.READY
    assert source.store.evaluate("vibethinker", "u1").variant == "canary"
    source.close()


def test_update_with_a_flag_bumps_the_version_and_fires_listeners() -> None:
    """update(flag) replaces that flag in a new version; listeners see each one."""
    source = InMemoryFlagSource(make_document(make_flag(rollout_bps=0), version=3))
    seen: list[FlagDocument] = []
    source.store.add_listener(seen.append)
    applied = source.update(make_flag(rollout_bps=10000))
    assert applied.version == 4
    assert source.store.evaluate("vibethinker", "u1").variant == "canary"
    source.update(make_flag("other", rollout_bps=0))
    assert [d.version for d in seen] == [4, 5]
    assert set(source.store.document.flags) == {"vibethinker", "other"}  # type: ignore[union-attr]


def test_update_with_an_older_document_still_moves_forward() -> None:
    """A whole document with a lower version is served as the next version, not refused."""
    source = InMemoryFlagSource(make_document(version=10))
    assert source.update(make_document(make_flag(rollout_bps=10000), version=1)).version == 11
    assert source.store.version == 11


def test_empty_source_is_not_ready_until_updated() -> None:
    """Without a document evaluation answers PROVIDER_NOT_READY; the first update makes it ready."""
    source = InMemoryFlagSource()
    assert not source.wait_until_ready(0)
    assert source.store.evaluate("vibethinker", "u1").error_code == ErrorCode.PROVIDER_NOT_READY
    source.update(make_flag())
    assert source.wait_until_ready(0)
    assert source.store.version == 1


def test_remove_makes_the_flag_unknown() -> None:
    """remove(key) serves a version without the flag: FLAG_NOT_FOUND, stable."""
    source = InMemoryFlagSource(make_document(version=1))
    source.remove("vibethinker")
    a = source.store.evaluate("vibethinker", "u1")
    assert (a.variant, a.error_code) == ("stable", ErrorCode.FLAG_NOT_FOUND)


def test_async_code_can_close_it() -> None:
    """aclose() exists for async clients and leaves the document serving."""
    source = InMemoryFlagSource(make_document(version=1))
    asyncio.run(source.aclose())
    assert source.closed
    assert source.store.version == 1
