"""The published bucketing function (docs/concepts/bucketing.md) and its shared vectors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import vibesdk
from tests.murmur3_reference import murmur3_x86_32

VECTORS = json.loads((Path(__file__).parent / "vectors" / "bucketing-v1.json").read_text("utf-8"))


def test_reference_murmur3_matches_published_values() -> None:
    """The independent murmur3 in tests agrees with values published for murmur3 x86_32."""
    assert murmur3_x86_32(b"", 0) == 0
    assert murmur3_x86_32(b"", 1) == 0x514E28B7
    assert murmur3_x86_32(b"hello", 0) == 0x248BFA47
    assert murmur3_x86_32(b"The quick brown fox jumps over the lazy dog", 0) == 0x2E4FF723


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: repr(c["unit_id"][:20]))
def test_bucket_matches_the_shared_vectors(case: dict[str, object]) -> None:
    """vibesdk.bucket reproduces every row of tests/vectors/bucketing-v1.json."""
    salt, unit_id = str(case["salt"]), str(case["unit_id"])
    assert vibesdk.bucket(salt, unit_id) == case["bucket"]
    assert murmur3_x86_32(f"{salt}:{unit_id}".encode(), 0) == case["hash"]
    if case["key_utf8_hex"] is not None:
        assert f"{salt}:{unit_id}".encode().hex() == case["key_utf8_hex"]


def test_vectors_are_version_1() -> None:
    """The vectors file names the algorithm version the SDK implements."""
    assert VECTORS["version"] == vibesdk.BUCKETING_VERSION == 1


def test_buckets_spread_evenly() -> None:
    """10% of 20,000 users land below 1,000 basis points, within sampling error."""
    inside = sum(vibesdk.bucket("vibethinker", f"user-{i}") < 1000 for i in range(20_000))
    assert 1800 < inside < 2200


def test_salt_reshuffles() -> None:
    """A new salt puts a different set of users in the first 10%."""
    a = {i for i in range(5000) if vibesdk.bucket("s1", str(i)) < 1000}
    b = {i for i in range(5000) if vibesdk.bucket("s2", str(i)) < 1000}
    assert len(a & b) < len(a) / 3
