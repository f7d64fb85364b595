"""The flag document model rejects what would route users wrongly, and says where."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from vibesdk import FlagDocument, FlagDocumentError, parse_document
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


def _parses_or_explains(data: bytes | str) -> None:
    """``parse_document(data)`` is a document that survives JSON and back, or a
    FlagDocumentError whose one line says where, with the pydantic error as its cause."""
    error: FlagDocumentError | None = None
    try:
        doc = parse_document(data)
    except FlagDocumentError as exc:
        error = exc
    if error is None:
        assert isinstance(doc, FlagDocument)
        assert parse_document(doc.model_dump_json()) == doc
        return
    message = str(error)
    assert message.startswith("invalid flag document: ")
    assert "\n" not in message
    assert re.match(r"invalid flag document: \S+: \S", message), message  # "where: what"
    assert isinstance(error.__cause__, ValidationError)


@given(st.binary(max_size=300))
def test_garbage_is_a_document_or_a_flag_document_error_that_explains(blob: bytes) -> None:
    """Arbitrary bytes parse, or raise FlagDocumentError with a one-line, located message."""
    _parses_or_explains(blob)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
        max_leaves=20,
    )
)
def test_arbitrary_json_values_are_a_document_or_an_explained_error(value) -> None:
    """Any JSON value is a valid document or a FlagDocumentError naming what is wrong."""
    _parses_or_explains(json.dumps(value))
