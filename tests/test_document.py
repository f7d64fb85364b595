"""The flag document model rejects what would route users wrongly, and says where."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vibesdk import FlagDocumentError, parse_document
from vibesdk.testing import make_document


def _valid() -> dict:
    return json.loads(make_document(version=3).model_dump_json())


def test_round_trips_through_json() -> None:
    """A document survives JSON and back unchanged."""
    doc = make_document(version=3)
    assert parse_document(doc.model_dump_json()) == doc


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda d: d["flags"]["vibethinker"].update(rollout_bps=10001), "rollout_bps"),
        (lambda d: d["flags"]["vibethinker"].update(rollout_bps=-1), "rollout_bps"),
        (lambda d: d["flags"]["vibethinker"].update(default_variant="nope"), "default_variant"),
        (lambda d: d["flags"]["vibethinker"].update(typo_field=1), "typo_field"),
        (lambda d: d.update(version=-1), "version"),
        (
            lambda d: d["flags"]["vibethinker"]["variants"]["canary"]["prompt"].update(
                user_template="no placeholder"
            ),
            "user_template",
        ),
        (
            lambda d: d["flags"]["vibethinker"]["variants"]["canary"]["backend"].update(
                urls=["ftp://x"]
            ),
            "urls",
        ),
        (lambda d: d["flags"]["vibethinker"].update(key="other"), "key"),
        (
            lambda d: d["flags"]["vibethinker"]["variants"]["canary"]["params"].update(
                temperature=5
            ),
            "temperature",
        ),
    ],
)
def test_invalid_documents_name_the_problem(mutate, where) -> None:
    """Each invalid document raises FlagDocumentError naming the offending field."""
    data = _valid()
    mutate(data)
    with pytest.raises(FlagDocumentError, match=where):
        parse_document(data)


@given(st.binary(max_size=300))
def test_garbage_never_escapes_as_anything_but_flag_document_error(blob: bytes) -> None:
    """Arbitrary bytes either parse or raise FlagDocumentError, never another exception."""
    with contextlib.suppress(FlagDocumentError):
        parse_document(blob)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
        max_leaves=20,
    )
)
def test_arbitrary_json_values_raise_only_flag_document_error(value) -> None:
    """Any JSON value is either a valid document or a FlagDocumentError."""
    with contextlib.suppress(FlagDocumentError):
        parse_document(json.dumps(value))
