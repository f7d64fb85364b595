"""The example document in docs/concepts/flag-document.md is valid and behaves as the prose says."""

from __future__ import annotations

import re
from pathlib import Path

import vibesdk
from vibesdk._flags.evaluation import compile_document

PAGE = Path(__file__).resolve().parents[1] / "docs" / "concepts" / "flag-document.md"


def _example() -> vibesdk.FlagDocument:
    block = re.search(r"```json\n(.*?)```", PAGE.read_text("utf-8"), re.S)
    assert block is not None
    return vibesdk.parse_document(block.group(1))


def test_example_document_is_valid() -> None:
    """The JSON example parses as a FlagDocument: prod, version 42, flag vibethinker."""
    document = _example()
    assert (document.environment, document.version, list(document.flags)) == (
        "prod",
        42,
        ["vibethinker"],
    )


def test_example_rules_do_what_the_page_says() -> None:
    """Staff get canary, the EU gets stable, the iOS beta channel gets canary, others split 10%."""
    compiled = compile_document(_example())
    staff = compiled.evaluate("vibethinker", "alice", {"region": "eu"})
    assert (staff.variant, staff.rule_id) == ("canary", "staff")
    eu = compiled.evaluate("vibethinker", "u1", {"region": "eu", "device": "ios"})
    assert (eu.variant, eu.rule_id) == ("stable", "not-in-eu-yet")
    beta = compiled.evaluate("vibethinker", "u1", {"device": "ios", "channel": "beta"})
    assert (beta.variant, beta.rule_id) == ("canary", "ios-beta")
    other = compiled.evaluate("vibethinker", "u42", {"device": "ios"})
    assert (other.variant, other.reason, other.bucket) == ("stable", vibesdk.Reason.SPLIT, 3587)
