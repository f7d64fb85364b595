"""Nothing a backend sends can crash the client, whatever the bytes.

The parsers get arbitrary bytes and arbitrary JSON of the right and the wrong
shape at every level (hypothesis); the clients get the same through
httpx.MockTransport and must answer from stable, never raise.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vibesdk
from tests.client_harness import Backends, Driver, answer, flag_source, sse_body
from vibesdk import BackendError
from vibesdk._backends import StreamParser, error_for_status, parse_completion
from vibesdk._sources.cache import DiskCache
from vibesdk.testing import make_document, make_flag

USER = [{"role": "user", "content": "2+2?"}]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@st.composite
def answer_shaped(draw: Any) -> Any:
    """A chat answer where any level may hold a value of the wrong type."""
    content = draw(json_values | st.text())
    message = draw(st.just({"content": content, "reasoning_content": draw(json_values)}))
    choice = draw(
        st.just({"message": message, "delta": message, "finish_reason": draw(json_values)})
        | json_values
    )
    choices = draw(st.just([choice]) | json_values)
    return draw(
        st.just(
            {
                "choices": choices,
                "usage": draw(json_values),
                "timings": draw(json_values),
                "model": draw(json_values),
                "id": draw(json_values),
                "error": draw(st.none() | json_values),
            }
        )
        | json_values
    )


deep_nesting = st.integers(min_value=1_000, max_value=200_000).flatmap(
    lambda n: st.sampled_from([b"[" * n, b'{"a":' * n, b'{"choices":' + b"[" * n])
)
bodies = (
    st.binary(max_size=300)
    | answer_shaped().map(lambda v: json.dumps(v).encode())
    | deep_nesting
    | st.binary(max_size=40).map(lambda b: b'{"choices":[{"message":{"content":"' + b + b'"}}]}')
)


@given(bodies)
def test_parse_completion_answers_or_raises_malformed(body: bytes) -> None:
    """Any body is a Completion with non-empty text or a MalformedResponseError."""
    try:
        completion = parse_completion(body, backend="http://b/v1")
    except vibesdk.MalformedResponseError:
        return
    assert completion.text.strip()


# OpenAI-style error bodies, with messages short and longer than the excerpt.
error_bodies = (st.text(max_size=40) | st.text(min_size=301, max_size=400)).map(
    lambda m: json.dumps({"error": {"message": m}}).encode()
)


@given(st.integers(min_value=300, max_value=599), bodies | error_bodies)
def test_error_for_status_quotes_a_bounded_excerpt_of_any_body(status: int, body: bytes) -> None:
    """Any error body gives a short message naming backend and status, quoting the server."""
    err = error_for_status(status, body, backend="http://b/v1")
    assert (err.status_code, err.backend) == (status, "http://b/v1")
    head = f"http://b/v1 answered HTTP {status}: "
    message = str(err)
    assert message.startswith(head)
    detail = message.removeprefix(head)
    assert len(detail) <= 300  # a 200,000-byte body never lands in logs or spans whole
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python can parse
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        quoted = data["error"].get("message")
        if isinstance(quoted, str):
            assert detail == quoted[:300]  # the server's own words, not the JSON around them


sse_lines = st.lists(
    st.one_of(
        st.text(max_size=30),
        bodies.map(lambda b: "data: " + b.decode("utf-8", "replace")),
        answer_shaped().map(lambda v: "data: " + json.dumps(v)),
        st.sampled_from(["", ":", ": ping", "data: [DONE]", "event: error", "data:", "retry: x"]),
    ),
    max_size=12,
)


@given(sse_lines)
def test_stream_parser_yields_deltas_or_raises_backend_errors(lines: list[str]) -> None:
    """Any sequence of lines gives deltas then a Completion, or a BackendError, nothing else."""
    parser = StreamParser(backend="http://b/v1")
    try:
        for line in lines:
            parser.feed_line(line)
        completion = parser.finish()
    except BackendError:
        return
    assert completion.text.strip()


def test_a_cache_file_nested_too_deep_is_ignored(tmp_path: Any) -> None:
    """A corrupt cache of absurd nesting is ignored like any other corrupt cache."""
    cache = DiskCache(tmp_path, server_url="http://s", sdk_key="k")
    cache.path.parent.mkdir(parents=True, exist_ok=True)
    cache.path.write_bytes(b"[" * 200_000)
    assert cache.load() is None


def _stable(request: httpx.Request) -> httpx.Response:
    if json.loads(request.content).get("stream"):
        return httpx.Response(200, content=sse_body("stable", " answer"))
    return httpx.Response(200, json=answer("stable answer"))


class Scripted:
    """The canary's reply for the current hypothesis example."""

    status = 200
    body = b""
    headers: dict[str, str] = {}  # noqa: RUF012 - replaced per example, never mutated

    def __call__(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(self.status, content=self.body, headers=self.headers)


@pytest.fixture(params=["sync", "async"])
def driver(request: pytest.FixtureRequest) -> Iterator[tuple[Driver, Scripted]]:
    canary = Scripted()
    doc = make_document(
        make_flag(
            stable_url="http://stable/v1",
            canary_url="http://canary/v1",
            rollout_bps=10_000,
            # No retries and a breaker that never opens: every example reaches the canary.
            fallback={"retries": 0, "breaker_failures": 1000},
        )
    )
    d = Driver(
        str(request.param),
        flag_source=flag_source(doc),
        transport=Backends(canary=canary, stable=_stable).transport(),
        cache_dir="",
    )
    yield d, canary
    d.dispose()


replies = st.tuples(
    st.sampled_from([200, 200, 200, 204, 301, 400, 429, 500, 503]),
    bodies | sse_lines.map(lambda ls: "\n".join(ls).encode()),
    st.sampled_from([{}, {"content-type": "text/event-stream"}, {"content-encoding": "gzip"}]),
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reply=replies, stream=st.booleans())
def test_whatever_the_canary_sends_the_caller_gets_an_answer(
    driver: tuple[Driver, Scripted], reply: tuple[int, bytes, dict[str, str]], stream: bool
) -> None:
    """Any status, body and headers from the canary: chat/stream_chat answer, never raise.

    The one exception is documented: a stream cut after its first token reached
    the caller raises StreamInterruptedError (stable cannot take over mid-answer).
    """
    d, canary = driver
    canary.status, canary.body, canary.headers = reply
    if stream:
        chunks, exc = d.stream_until_error("vibethinker", "u1", USER)
        if exc is not None:
            assert isinstance(exc, vibesdk.StreamInterruptedError), exc
            assert chunks
            assert not any(c.fallback for c in chunks)
            return
        result = chunks[-1].result
        assert result is not None
    else:
        result = d.chat("vibethinker", "u1", USER)
    assert result.text.strip()
    if result.fallback:
        assert (result.variant, result.text) == ("stable", "stable answer")
        assert result.fallback_reason
