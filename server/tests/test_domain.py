"""Pure rules of the server: diffs, the meaning of "good", the SSE hub's fan-out."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from vibesdk_server._domain._changes import (
    VersionView,
    apply_flags,
    find_good_version,
    rollback_flag,
    set_rollout,
)
from vibesdk_server._domain._diff import diff
from vibesdk_server._domain._errors import InvalidError, NotFoundError
from vibesdk_server._http._hub import Hub, sse_event
from vibesdk_server._storage import Published

from vibesdk import Flag
from vibesdk.testing import make_flag


def _flag(bps: int) -> Flag:
    return make_flag(rollout_bps=bps)


def test_diff_names_leaf_paths_sorted() -> None:
    """Nested mappings diff per leaf with dotted paths; lists are compared whole."""
    before = {"flags": {"a": {"rollout_bps": 0, "rules": [1], "x": 1}}}
    after = {"flags": {"a": {"rollout_bps": 10, "rules": [1, 2], "x": 1}, "b": {"k": 1}}}
    assert diff(before, after) == [
        {"path": "flags.a.rollout_bps", "before": 0, "after": 10},
        {"path": "flags.a.rules", "before": [1], "after": [1, 2]},
        {"path": "flags.b", "before": None, "after": {"k": 1}},
    ]
    assert diff(before, before) == []


def test_marked_good_wins_over_the_implicit_rule() -> None:
    """The newest version marked good that has the flag is chosen first."""
    marked = [VersionView(3, _flag(100), True), VersionView(2, None, True)]
    history = [VersionView(5, _flag(500), False), VersionView(4, _flag(0), False), *marked]
    assert find_good_version(marked, history) == 3
    assert find_good_version(marked[1:], history) == 4


def test_without_marks_the_version_before_the_canary_is_good() -> None:
    """No marks: the newest version where the flag's rollout was 0."""
    history = [
        VersionView(4, _flag(1000), False),
        VersionView(3, _flag(10), False),
        VersionView(2, _flag(0), False),
        VersionView(1, _flag(0), False),
    ]
    assert find_good_version([], history) == 2


def test_a_flag_born_with_a_rollout_falls_back_to_its_first_version() -> None:
    """Never at 0 and never marked: the first version that had the flag."""
    history = [
        VersionView(3, _flag(50), False),
        VersionView(2, _flag(10), False),
        VersionView(1, None, False),
    ]
    assert find_good_version([], history) == 2
    assert find_good_version([], [VersionView(1, None, False)]) is None


def test_the_search_stops_reading_history_once_decided() -> None:
    """History is consumed lazily: versions older than the answer are never read."""
    read: list[int] = []

    def history() -> Iterator[VersionView]:
        for version in range(100, 0, -1):
            read.append(version)
            yield VersionView(version, _flag(0 if version == 98 else 10), False)

    assert find_good_version([], history()) == 98
    assert read == [100, 99, 98]


def test_rollback_forces_rollout_zero_on_the_restored_flag() -> None:
    """The restored flag is the good one with rollout_bps 0, other flags untouched."""
    current = {"vibethinker": _flag(2000), "other": _flag(5).model_copy(update={"key": "other"})}
    out = rollback_flag(current, "vibethinker", _flag(700), environment="e", version=1)
    assert out["vibethinker"].rollout_bps == 0
    assert out["other"] is current["other"]
    with pytest.raises(NotFoundError):
        rollback_flag(current, "vibethinker", None, environment="e", version=1)


@pytest.mark.parametrize("bps", [-1, 10_001])
def test_set_rollout_refuses_out_of_range(bps: int) -> None:
    """Basis points outside 0..10000 raise InvalidError (422)."""
    with pytest.raises(InvalidError):
        set_rollout({"vibethinker": _flag(0)}, "vibethinker", bps, environment="e")


def test_apply_refuses_duplicate_keys() -> None:
    """Listing a flag twice in one apply is an error, not last-one-wins."""
    with pytest.raises(InvalidError, match="twice"):
        apply_flags({}, [_flag(0), _flag(1)], prune=False)


def _published(version: int) -> Published:
    return Published("e", version, f'{{"version":{version}}}')


def test_hub_fans_out_new_versions_and_ignores_older_ones() -> None:
    """Every subscriber of the environment gets each newer version once; older ones are dropped."""

    async def scenario() -> None:
        hub = Hub(lambda env: _published(1), queue_size=4)
        subs = [hub.subscribe("e") for _ in range(3)]
        other = hub.subscribe("f")
        hub.publish(_published(2))
        hub.publish(_published(1))
        for sub in subs:
            assert sub.queue.get_nowait() == (2, sse_event(_published(2)))
            assert sub.queue.empty()
        assert other.queue.empty()

    asyncio.run(scenario())


def test_hub_disconnects_a_slow_subscriber_without_blocking_others() -> None:
    """A full mailbox is replaced by a close signal; fast subscribers still get everything."""

    async def scenario() -> None:
        hub = Hub(lambda env: _published(0), queue_size=2)
        slow, fast = hub.subscribe("e"), hub.subscribe("e")
        for version in (1, 2, 3):
            hub.publish(_published(version))
            fast.queue.get_nowait()
        assert slow.dropped
        assert slow.queue.get_nowait() is None
        assert hub.subscriber_count == 1
        assert hub.dropped_subscribers == 1

    asyncio.run(scenario())


def test_sse_event_is_one_frame_with_id_event_and_data() -> None:
    """The frame is 'id: V', 'event: flags', 'data: <json>' and a blank line."""
    assert sse_event(_published(7)) == b'id: 7\nevent: flags\ndata: {"version":7}\n\n'
