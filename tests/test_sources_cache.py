"""The disk cache: atomic writes, and a bad file is ignored (logged), never fatal."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from vibesdk._sources.cache import DiskCache, cache_file_name
from vibesdk.testing import make_document

URL = "http://127.0.0.1:8700"


def _cache(tmp_path: Path, key: str = "sdk-key-1") -> DiskCache:
    return DiskCache(tmp_path, server_url=URL, sdk_key=key)


def test_round_trip_keeps_document_and_etag(tmp_path: Path) -> None:
    """What save writes, load reads back: the same document and its ETag."""
    cache = _cache(tmp_path)
    doc = make_document(version=12, environment="prod")
    assert cache.save(doc, '"12"')
    loaded = cache.load()
    assert loaded is not None
    assert loaded.document == doc
    assert loaded.etag == '"12"'


def test_file_name_hides_url_and_key_and_differs_per_key(tmp_path: Path) -> None:
    """The file is named by a hash: neither the key nor the URL shows, and keys don't collide."""
    name = cache_file_name(URL, "secret-key")
    assert "secret" not in name
    assert "8700" not in name
    assert name != cache_file_name(URL, "other-key")
    assert _cache(tmp_path).path.parent == tmp_path


def test_save_leaves_no_temporary_files_and_is_private(tmp_path: Path) -> None:
    """After saves only the cache file is left, readable by its owner only."""
    cache = _cache(tmp_path / "nested" / "dir")
    for v in range(1, 4):
        cache.save(make_document(version=v), None)
    assert [p.name for p in cache.path.parent.iterdir()] == [cache.path.name]
    assert cache.path.stat().st_mode & 0o077 == 0
    loaded = cache.load()
    assert loaded is not None
    assert loaded.document.version == 3


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b'{"format": "something-else/1"}',
    ],
    ids=["empty", "truncated-json", "not-utf8", "not-an-object", "wrong-format"],
)
def test_corrupt_file_is_ignored_with_a_warning(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """A corrupt cache file loads as nothing and logs a warning naming the file."""
    cache = _cache(tmp_path)
    cache.path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="vibesdk.flags"):
        assert cache.load() is None
    assert str(cache.path) in caplog.text


def test_cache_of_another_key_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A file written for another SDK key (another environment) is refused even if renamed."""
    other = _cache(tmp_path, key="staging-key")
    other.save(make_document(version=99, environment="staging"), None)
    mine = _cache(tmp_path, key="prod-key")
    os.replace(other.path, mine.path)
    with caplog.at_level(logging.WARNING, logger="vibesdk.flags"):
        assert mine.load() is None
    assert "wrong environment" in caplog.text


def test_invalid_document_inside_a_valid_envelope_is_ignored(tmp_path: Path) -> None:
    """An envelope whose document fails validation loads as nothing."""
    cache = _cache(tmp_path)
    cache.save(make_document(version=2), None)
    envelope = json.loads(cache.path.read_bytes())
    envelope["document"]["flags"]["vibethinker"]["rollout_bps"] = 20000
    cache.path.write_text(json.dumps(envelope))
    assert cache.load() is None


def test_unwritable_directory_returns_false_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A cache that cannot be written is logged once and never raises."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = DiskCache(blocker / "sub", server_url=URL, sdk_key="k")
    with caplog.at_level(logging.WARNING, logger="vibesdk.flags"):
        assert not cache.save(make_document(version=1), None)
        assert not cache.save(make_document(version=2), None)
    assert caplog.text.count("cannot write cache") == 1
