"""Fuzzing: the API from its own OpenAPI document (schemathesis), the parsers with hypothesis.

Schemathesis runs in-process against the ASGI app (FastAPI's TestClient path),
with a small number of examples per operation so the suite stays quick. Checked:
never a 5xx (every bad input is a 4xx), only documented statuses, and bodies
that match the documented schemas.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from vibesdk_server._domain._errors import InvalidError
from vibesdk_server._domain._prompts import resolve_flags
from vibesdk_server._http._app import create_app
from vibesdk_server._storage import SqlStore, open_store

from vibesdk import FlagDocument, FlagDocumentError, parse_document
from vibesdk.testing import make_flag

# Bounded twice: a fixed, derandomized number of examples (about 25 s here in all),
# and a wall-clock cap per test so a pathological case fails instead of hanging CI.
pytestmark = pytest.mark.timeout(300)

FUZZ = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)


class _Tokens:
    admin = ""
    sdk = ""


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqlStore]:
    store = open_store(tmp_path_factory.mktemp("fuzz") / "fuzz.db")
    store.create_environment("default", actor="fuzz", reason=None)
    _Tokens.admin = store.create_token(
        kind="admin", name="fuzz", environment=None, created_by="fuzz"
    )
    _Tokens.sdk = store.create_token(
        kind="sdk", name="fuzz", environment="default", created_by="fuzz"
    )
    yield store
    store.close()


@pytest.fixture(scope="module")
def api_schema(fuzz_store: SqlStore) -> Any:
    app = create_app(fuzz_store, heartbeat_s=0.1)
    # /v1/stream never ends by design; it is covered by the process tests instead.
    return schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path="/v1/stream")


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_makes_the_server_fail(api_schema: Any, mode: GenerationMode) -> None:
    """Schema-generated requests (valid and invalid, with the right token) never get a 5xx."""
    # Driven by hand: schemathesis' pytest plugin does not run under pytest 9.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20

    for operation in operations:
        _fuzz_operation(operation, mode)


def _fuzz_operation(operation: Any, mode: GenerationMode) -> None:
    token = _Tokens.admin if operation.path.startswith("/v1/admin") else _Tokens.sdk
    label = operation.label
    otlp = operation.path.startswith("/v1/otlp/")

    @given(case=operation.as_strategy(generation_mode=mode))
    @FUZZ
    def check(case: Any) -> None:
        response = case.call(headers={"Authorization": f"Bearer {token}"})
        case.validate_response(
            response,
            checks=[not_a_server_error, status_code_conformance, response_schema_conformance],
        )
        # The OTLP receiver answers errors as OTLP/HTTP says: a google.rpc.Status
        # (tests/test_otlp_receiver.py checks its message); everything else as ErrorBody.
        if response.status_code >= 400 and response.content and not otlp:
            detail = response.json()["detail"]
            assert isinstance(detail, str), (label, detail)
            assert "\n" not in detail

    try:
        check()
    except Unsatisfiable:
        # Nothing to make invalid (no parameters, no body): positive mode covers it.
        assert mode == GenerationMode.NEGATIVE


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
FLAG_KEYS = st.sampled_from(
    [
        "key",
        "variants",
        "rollout_bps",
        "rules",
        "enabled",
        "prompt",
        "backend",
        "model",
        "id",
        "version",
        "default_variant",
        "fallback",
        "urls",
    ]
)


def _mutated_flag() -> st.SearchStrategy[dict[str, Any]]:
    base = make_flag().model_dump(mode="json")
    return st.dictionaries(FLAG_KEYS, JSON, max_size=4).map(lambda extra: {**base, **extra})


@given(raw=st.lists(JSON | _mutated_flag(), max_size=3))
@settings(max_examples=200, deadline=None, derandomize=True)
def test_apply_parser_raises_only_invalid_error(raw: list[Any]) -> None:
    """Any JSON as the flags of an apply either validates or raises InvalidError (-> 422)."""

    def lookup(prompt_id: str, version: int) -> dict[str, Any]:
        return {
            "state": "approved",
            "model": "vibethinker-1.5b",
            "system": "s",
            "user_template": "{input}",
        }

    try:
        flags = resolve_flags(raw, lookup)
    except InvalidError as exc:
        message = str(exc)
    else:
        message = ""
        assert len(flags) == len(raw)
    assert "\n" not in message


@given(data=JSON | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
@settings(max_examples=200, deadline=None, derandomize=True)
def test_document_parser_raises_only_flag_document_error(data: Any) -> None:
    """parse_document of arbitrary JSON values or text gives a document or FlagDocumentError."""
    payload = data if isinstance(data, str) else json.dumps(data)
    try:
        doc: FlagDocument | None = parse_document(payload)
    except FlagDocumentError:
        doc = None
    assert doc is None or isinstance(doc, FlagDocument)


def test_fuzz_store_is_still_consistent(fuzz_store: SqlStore, tmp_path: Path) -> None:
    """After fuzzing, every stored version still parses as a FlagDocument."""
    env = fuzz_store.get_environment("default")
    for version in range(env["version"] + 1):
        FlagDocument.model_validate(fuzz_store.version("default", version)["document"])
