"""The SDK read as a user: a first program, bad input, and the promises of the docs.

The first program runs for real: the real flag server (vibesdk_server's pytest
plugin), two real llama-server processes with SmolLM2 for stable and canary,
Client and AsyncClient. The rest pins what a user relies on without reading
the code: assign() never raises whatever it is given, bad settings fail at
construction naming the setting, telemetry never breaks a call, the caller's
own exceptions come back unchanged, background threads are named daemons, and
``import vibesdk`` loads nothing its dependencies do not.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import vibesdk
from tests.client_harness import LlamaServer, answer, sse_body
from vibesdk import ConfigError, ErrorCode, FlagState, Reason
from vibesdk.testing import InMemoryFlagSource, SpanCapture, make_document, make_flag

ASK = [{"role": "user", "content": "Say hello in three words."}]
DOC = make_document(
    make_flag(stable_url="http://stable/v1", canary_url="http://canary/v1", rollout_bps=5000)
)


def _ok(request: httpx.Request) -> httpx.Response:
    if json.loads(request.content).get("stream"):
        return httpx.Response(200, content=sse_body("fine"))
    return httpx.Response(200, json=answer("fine"))


# -- a first program, for real ----------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_pair() -> Iterator[tuple[LlamaServer, LlamaServer]]:
    stable, canary = LlamaServer(), LlamaServer()  # skip (fail under CI) when llama.cpp is missing
    try:
        stable.start()
        canary.start()
        yield stable, canary
    finally:
        stable.stop()
        canary.stop()


def _check_assignment(a: vibesdk.Assignment, flag_version: int) -> None:
    assert a.variant in {"stable", "canary"}
    assert a.bucket == vibesdk.bucket("vibethinker", "u42")
    assert 0 <= a.bucket <= 9999
    assert (a.reason, a.flag_version) == (Reason.SPLIT, flag_version)


def _check_result(r: vibesdk.ChatResult, a: vibesdk.Assignment) -> None:
    assert r.text.strip()
    assert (r.variant, r.fallback, r.fallback_reason) == (a.variant, False, None)
    assert r.model == f"smollm2-{a.variant}"
    assert re.fullmatch(r"[0-9a-f]{32}", r.trace_id)
    assert r.usage.input_tokens
    assert r.usage.output_tokens
    assert r.latency_s > 0
    assert r.notice == ("You are trying the new assistant." if a.variant == "canary" else None)


@pytest.mark.model
def test_a_first_program_runs_against_the_real_flag_server_and_llama_cpp(
    flag_server: Any,
    llama_pair: tuple[LlamaServer, LlamaServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """assign, chat, stream_chat, feedback: sync and async, from env and offline, all work."""
    stable, canary = llama_pair
    flag_server.apply(
        make_flag(
            stable_url=stable.url,
            canary_url=canary.url,
            rollout_bps=5000,
            stable_model="smollm2-stable",
            canary_model="smollm2-canary",
        )
    )
    version = flag_server.document().version
    attrs = {"region": "cn", "device": "ios"}
    with SpanCapture() as capture:
        client = vibesdk.Client(
            server_url=flag_server.url, sdk_key=flag_server.sdk_key, cache_dir=tmp_path / "c1"
        )
        with client:
            assert client.wait_until_ready(timeout=15)
            a = client.assign("vibethinker", user_id="u42", attributes=attrs)
            _check_assignment(a, version)
            r = client.chat("vibethinker", user_id="u42", messages=ASK, max_tokens=8)
            _check_result(r, a)
            chunks = list(client.stream_chat("vibethinker", user_id="u42", messages=ASK))
            assert chunks[-1].done
            assert chunks[-1].result is not None
            assert "".join(c.text for c in chunks) == chunks[-1].result.text
            client.feedback(r.trace_id, score=4, comment="clear steps")
        assert client.flag_source.store.state is not None  # closed, still inspectable
        with pytest.raises(vibesdk.ClientClosedError):
            client.chat("vibethinker", user_id="u42", messages=ASK)
    assert capture.find(f"chat smollm2-{a.variant}") is not None

    async def run_async() -> str:
        async with vibesdk.AsyncClient(
            server_url=flag_server.url, sdk_key=flag_server.sdk_key, cache_dir=tmp_path / "c2"
        ) as ac:
            assert await ac.wait_until_ready(timeout=15)
            aa = ac.assign("vibethinker", user_id="u42", attributes=attrs)
            assert aa == a
            ar = await ac.chat("vibethinker", user_id="u42", messages=ASK, max_tokens=8)
            _check_result(ar, aa)
            texts = [c.text async for c in ac.stream_chat("vibethinker", "u42", ASK, max_tokens=8)]
            assert "".join(texts).strip()
            await ac.feedback(ar.trace_id, score=5, comment="async")
            return ar.trace_id

    async_trace = asyncio.run(run_async())
    stored = flag_server.admin_request(
        "GET", "/v1/admin/feedback", params={"environment": flag_server.environment}
    ).json()
    assert {(f["trace_id"], f["score"]) for f in stored} == {(r.trace_id, 4), (async_trace, 5)}

    # Client() reading VIBESDK_* from the environment.
    monkeypatch.setenv("VIBESDK_SERVER_URL", flag_server.url)
    monkeypatch.setenv("VIBESDK_SDK_KEY", flag_server.sdk_key)
    monkeypatch.setenv("VIBESDK_CACHE_DIR", str(tmp_path / "c3"))
    with vibesdk.Client() as from_env:
        assert from_env.wait_until_ready(timeout=15)
        assert from_env.assign("vibethinker", "u42") == a
    for name in ("VIBESDK_SERVER_URL", "VIBESDK_SDK_KEY", "VIBESDK_CACHE_DIR"):
        monkeypatch.delenv(name)

    # Client(bootstrap="flags.json") offline: no server, the file's document, real backends.
    (tmp_path / "flags.json").write_text(flag_server.document().model_dump_json())
    monkeypatch.chdir(tmp_path)
    with vibesdk.Client(bootstrap="flags.json", cache_dir="") as offline:
        assert offline.wait_until_ready(timeout=0)
        assert offline.flag_source.store.state is FlagState.OFFLINE
        assert offline.assign("vibethinker", "u42") == a
        _check_result(offline.chat("vibethinker", "u42", ASK, max_tokens=8), a)


# -- Bad input: assign never raises ------------------------------------------------------------

user_ids = (
    st.text()
    | st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1)
    | st.none()
    | st.integers()
    | st.binary(max_size=8)
)
attributes = (
    st.none()
    | st.dictionaries(
        st.text(max_size=8) | st.just("region"),
        st.none() | st.text() | st.integers() | st.lists(st.text(), max_size=2),
    )
    | st.text(max_size=8)
    | st.integers()
    | st.lists(st.text(), max_size=2)
)


@given(
    flag=st.sampled_from(["vibethinker", "nope", ""]) | st.text(),
    user_id=user_ids,
    attrs=attributes,
)
def test_assign_never_raises_whatever_the_caller_passes(
    flag: Any, user_id: Any, attrs: Any
) -> None:
    """Any flag key, user id (None, numbers, lone surrogates) and attributes: an Assignment."""
    doc = make_document(
        make_flag(
            stable_url="http://s/v1",
            canary_url="http://c/v1",
            rollout_bps=5000,
            rules=[
                {
                    "id": "cn",
                    "clauses": [{"attribute": "region", "op": "in", "values": ["cn"]}],
                    "variant": "canary",
                }
            ],
        )
    )
    a = InMemoryFlagSource(doc).store.evaluate(flag, user_id, attrs)
    assert a.variant in {"stable", "canary"}
    if a.reason == Reason.ERROR:
        assert a.variant == "stable"
        assert a.error_code in {ErrorCode.FLAG_NOT_FOUND, ErrorCode.INVALID_CONTEXT}


def test_a_user_id_with_a_lone_surrogate_gets_stable_and_a_chat_answer(kind: str) -> None:
    """'\\ud800' (valid JSON, not valid Unicode) crashed the interpreter in mmh3; now stable."""
    from tests.client_harness import Driver

    d = Driver(
        kind,
        flag_source=InMemoryFlagSource(DOC),
        cache_dir="",
        transport=httpx.MockTransport(_ok),
    )
    try:
        user = json.loads('"u\\ud800"')
        a = d.assign("vibethinker", user)
        assert (a.variant, a.reason, a.error_code) == ("stable", "ERROR", "INVALID_CONTEXT")
        assert a.config is not None  # the flag's stable config: chat() still answers
        r = d.chat("vibethinker", user, ASK)
        assert (r.text, r.variant, r.fallback) == ("fine", "stable", False)
        assert d.chat("vibethinker", None, ASK).variant == "stable"
    finally:
        d.dispose()


def test_bucket_refuses_text_without_a_utf8_form() -> None:
    """vibesdk.bucket raises ValueError for a lone surrogate instead of crashing the process."""
    with pytest.raises(ValueError, match="lone surrogate"):
        vibesdk.bucket("vibethinker", "\udcff")
    assert vibesdk.bucket("vibethinker", "u42") == vibesdk.bucket("vibethinker", "u42")


def _refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again: connections are refused


def test_unreachable_server_not_ready_client_assigns_stable_and_closes_promptly(
    kind: str,
) -> None:
    """A flag server that refuses connections: stable, PROVIDER_NOT_READY, no exception."""
    url = _refused_url()
    if kind == "sync":
        with vibesdk.Client(server_url=url, sdk_key="k", cache_dir="") as c:
            ready = c.wait_until_ready(timeout=0)
            a = c.assign("vibethinker", "u42", {"region": "cn"})
            state = c.flag_source.store.state
    else:

        async def run() -> tuple[bool, vibesdk.Assignment, FlagState]:
            async with vibesdk.AsyncClient(server_url=url, sdk_key="k", cache_dir="") as c:
                return (
                    await c.wait_until_ready(timeout=0),
                    c.assign("vibethinker", "u42", {"region": "cn"}),
                    c.flag_source.store.state,
                )

        ready, a, state = asyncio.run(run())
    assert ready is False
    assert state is FlagState.NOT_READY
    assert (a.variant, a.reason, a.error_code, a.bucket) == (
        "stable", Reason.ERROR, ErrorCode.PROVIDER_NOT_READY, None,
    )  # fmt: skip


# -- Bad input: invalid settings ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "env", "setting"),
    [
        ({"server_url": "127.0.0.1:8700", "sdk_key": "k"}, {}, "server_url"),
        ({"server_url": "http://h"}, {}, "sdk_key"),
        ({"bootstrap": "/nonexistent/flags.json"}, {}, "bootstrap"),
        ({"server_url": "http://h", "sdk_key": "k", "poll_interval_s": 0}, {}, "poll_interval_s"),
        ({"server_url": "http://h", "sdk_key": "k", "fetch_timeout_s": -1}, {}, "fetch_timeout_s"),
        (
            {"server_url": "http://h", "sdk_key": "k", "feedback_queue_size": 0},
            {},
            "feedback_queue_size",
        ),
        (
            {"server_url": "http://h", "sdk_key": "k"},
            {"VIBESDK_POLL_INTERVAL_S": "x"},
            "poll_interval_s",
        ),
        ({"server_url": "http://h", "sdk_key": "k"}, {"VIBESDK_STREAMING": "maybe"}, "streaming"),
        ({"server_url": "http://h", "sdk_key": "k"}, {"VIBESDK_API_KEYS": "{not json"}, "api_keys"),
        ({}, {}, "server_url"),
    ],
)
def test_invalid_settings_raise_config_error_at_construction_naming_the_setting(
    kind: str,
    monkeypatch: pytest.MonkeyPatch,
    arguments: dict[str, Any],
    env: dict[str, str],
    setting: str,
) -> None:
    """Client/AsyncClient(...) raise ConfigError at once, and its message names the setting."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cls = vibesdk.Client if kind == "sync" else vibesdk.AsyncClient
    with pytest.raises(ConfigError) as info:
        cls(**arguments)
    assert setting in str(info.value)
    assert str(info.value).startswith("invalid vibesdk settings")


# -- The caller's exceptions come back unchanged (telemetry faults: test_telemetry_faults.py) --


class _AppError(Exception):
    """An exception of the app's own (raised by its transport, say)."""


def test_an_exception_that_is_not_a_backend_failure_propagates_unchanged(kind: str) -> None:
    """A non-httpx exception from the transport is the caller's: same object, no fallback."""
    from tests.client_harness import Driver

    error = _AppError("the app's own")
    calls: list[str] = []

    def transport(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.host)
        raise error

    d = Driver(
        kind,
        flag_source=InMemoryFlagSource(DOC),
        cache_dir="",
        transport=httpx.MockTransport(transport),
    )
    try:
        with pytest.raises(_AppError) as info:
            d.chat("vibethinker", "u42", ASK)
        assert info.value is error
        with pytest.raises(_AppError) as streamed:
            d.stream("vibethinker", "u42", ASK)
        assert streamed.value is error
    finally:
        d.dispose()
    assert len(calls) == 2  # one attempt each: not retried, no fallback


# -- Background threads are named daemons and end at close() ---------------------------


def test_background_threads_are_named_daemons_and_end_at_close(flag_server: Any) -> None:
    """Flag delivery and feedback run in vibesdk-* daemon threads that close() ends.

    The metrics export to the server runs in the OpenTelemetry SDK's own reader thread.
    """
    flag_server.apply(make_flag(rollout_bps=0))
    before = set(threading.enumerate())
    client = vibesdk.Client(server_url=flag_server.url, sdk_key=flag_server.sdk_key, cache_dir="")
    assert client.wait_until_ready(timeout=15)
    client.feedback("0" * 31 + "1", 4)
    started = set(threading.enumerate()) - before
    names = sorted(t.name for t in started)
    assert "vibesdk-feedback" in names
    assert "OtelPeriodicExportingMetricReader" in names
    ours = [n for n in names if n != "OtelPeriodicExportingMetricReader"]
    assert all(name.startswith("vibesdk-") for name in ours), names
    assert all(t.daemon for t in started)
    client.close()
    for t in started:
        t.join(5)
    assert [t.name for t in started if t.is_alive()] == []


# -- import vibesdk costs no more than importing its dependencies -----------------------

_DEPENDENCIES = (
    "import httpx, mmh3, pydantic_settings, tenacity, opentelemetry.trace, opentelemetry.metrics"
)


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_import_vibesdk_loads_only_its_dependencies_and_its_own_core() -> None:
    """Beyond its runtime dependencies, `import vibesdk` loads vibesdk and queue, nothing else."""
    deps = _modules_after(_DEPENDENCIES)
    loaded = _modules_after("import vibesdk")
    extra = {m for m in loaded - deps if m != "vibesdk" and not m.startswith("vibesdk.")}
    assert extra <= {"queue", "_queue"}, sorted(extra)
    lazy = ("vibesdk.testing", "opentelemetry.sdk", "opentelemetry.exporter")
    assert [m for m in loaded if m in lazy or m.startswith(tuple(p + "." for p in lazy))] == []
