"""FakeBackend speaks the OpenAI chat API like llama-server, as a transport and on loopback."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vibesdk.testing import FakeBackend, Reply

BASE = "http://fake.test/v1"


def sse_events(raw: str) -> list[Any]:
    """The data payloads of an SSE body; "[DONE]" stays a string."""
    events: list[Any] = []
    for block in raw.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                data = line[6:]
                events.append(data if data == "[DONE]" else json.loads(data))
    return events


def text_of(events: list[Any], key: str = "content") -> str:
    """The text of the deltas under ``key``, joined."""
    return "".join(
        e["choices"][0]["delta"].get(key) or ""
        for e in events
        if isinstance(e, dict) and e.get("choices")
    )


def test_plain_completion_has_llama_server_shape() -> None:
    """A non-streaming answer carries content, reasoning_content, usage, timings and the model."""
    fake = FakeBackend(Reply(text="The answer is 4.", reasoning="2+2=4"))
    with httpx.Client(transport=fake.transport(), base_url=BASE) as client:
        body = client.post(
            "/chat/completions",
            json={"model": "vibethinker", "messages": [{"role": "user", "content": "2 + 2?"}]},
            headers={"Authorization": "Bearer k"},
        ).json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "vibethinker"
    choice = body["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": "The answer is 4.",
        "reasoning_content": "2+2=4",
    }
    assert choice["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 5
    assert body["usage"]["prompt_tokens"] == 3  # one per word: "2", "+", "2?"
    assert set(body["timings"]) >= {"prompt_n", "prompt_ms", "predicted_n", "predicted_ms"}
    (request,) = fake.chat_requests
    assert request.headers["authorization"] == "Bearer k"
    assert request.messages == [{"role": "user", "content": "2 + 2?"}]
    assert not request.stream


def test_stream_reassembles_to_the_answer_and_ends_with_done() -> None:
    """A stream sends a role chunk, reasoning then content deltas, a finish chunk and [DONE]."""
    fake = FakeBackend(Reply(text="Step one. Step two.", reasoning="thinking hard"))
    with httpx.Client(transport=fake.transport(), base_url=BASE) as client:
        response = client.post(
            "/chat/completions",
            json={"model": "m", "stream": True, "stream_options": {"include_usage": True}},
        )
    assert response.headers["content-type"] == "text/event-stream"
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": None}
    assert text_of(events) == "Step one. Step two."
    assert text_of(events, "reasoning_content") == "thinking hard"
    finish, usage = events[-3], events[-2]
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 6
    assert "timings" in usage


def test_replies_are_used_in_order_then_the_default() -> None:
    """Scripted replies answer the next requests in order; the default answers the rest."""
    fake = FakeBackend("first", default="always")
    fake.script("second")
    with httpx.Client(transport=fake.transport(), base_url=BASE) as client:
        answers = [
            client.post("/chat/completions", json={}).json()["choices"][0]["message"]["content"]
            for _ in range(4)
        ]
    assert answers == ["first", "second", "always", "always"]


def test_text_can_depend_on_the_request() -> None:
    """A callable text sees the request body (e.g. to echo the system prompt)."""
    fake = FakeBackend(Reply(text=lambda body: body["messages"][0]["content"].upper()))
    with httpx.Client(transport=fake.transport(), base_url=BASE) as client:
        body = client.post("/chat/completions", json={"messages": [{"content": "be brief"}]}).json()
    assert body["choices"][0]["message"]["content"] == "BE BRIEF"


def test_http_errors_have_openai_error_bodies() -> None:
    """A status reply returns that status, an OpenAI-style error body and extra headers."""
    fake = FakeBackend(Reply(status=429, headers={"Retry-After": "2"}), Reply(status=503))
    with httpx.Client(transport=fake.transport(), base_url=BASE) as client:
        limited = client.post("/chat/completions", json={"stream": True})
        loading = client.post("/chat/completions", json={})
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "2"
    assert limited.json()["error"]["code"] == 429
    assert loading.status_code == 503
    assert loading.json()["error"]["message"] == "Loading model"


def test_cut_stream_has_no_finish_and_no_done() -> None:
    """cut_after=N stops after N content chunks, never sending finish_reason or [DONE]."""
    fake = FakeBackend(Reply(text="one two three four", cut_after=2))
    with httpx.Client(transport=fake.transport(), base_url=BASE) as client:
        events = sse_events(client.post("/chat/completions", json={"stream": True}).text)
    assert text_of(events) == "one two"
    assert "[DONE]" not in events
    assert all(e["choices"][0]["finish_reason"] is None for e in events)


def test_without_include_usage_timings_ride_on_the_finish_chunk() -> None:
    """Like llama-server: no usage chunk unless asked, and timings on the finish chunk."""
    fake = FakeBackend("a b")
    with httpx.Client(transport=fake.transport(), base_url=BASE) as client:
        events = sse_events(client.post("/chat/completions", json={"stream": True}).text)
    finish = events[-2]
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert "timings" in finish
    assert all("usage" not in e for e in events if isinstance(e, dict))


def test_error_cut_sends_an_error_event_like_llama_server() -> None:
    """cut="error" ends the stream with a data: {"error": ...} event, no finish, no [DONE]."""
    fake = FakeBackend(Reply(text="one two three", cut_after=1, cut="error"))
    with httpx.Client(transport=fake.transport(), base_url=BASE) as client:
        events = sse_events(client.post("/chat/completions", json={"stream": True}).text)
    assert text_of(events) == "one"
    assert events[-1]["error"]["code"] == 500
    assert "[DONE]" not in events


def test_reset_cut_breaks_the_response_in_transport_mode() -> None:
    """cut="reset" makes reading the stream fail like a dropped connection."""
    fake = FakeBackend(Reply(text="one two three", cut_after=1, cut="reset"))
    with (
        httpx.Client(transport=fake.transport(), base_url=BASE) as client,
        client.stream("POST", "/chat/completions", json={"stream": True}) as response,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        response.read()


def test_delays_go_through_the_injected_sleep() -> None:
    """Header and chunk delays are slept through the injected sleep, so tests never wait."""
    slept: list[float] = []
    fake = FakeBackend(
        Reply(text="a b c", delay_s=0.5, first_chunk_delay_s=0.25, chunk_delay_s=0.1),
        sleep=slept.append,
    )
    with httpx.Client(transport=fake.transport(), base_url=BASE) as client:
        client.post("/chat/completions", json={"stream": True})
    assert slept == [0.5, 0.25, 0.1, 0.1, 0.1]


def test_delay_past_the_read_timeout_raises_read_timeout() -> None:
    """A reply slower than httpx's read timeout raises ReadTimeout after exactly that timeout."""
    slept: list[float] = []
    fake = FakeBackend(
        Reply(delay_s=5.0), Reply(stall=True), Reply(text="a b", chunk_delay_s=9.0),
        sleep=slept.append,
    )  # fmt: skip
    with httpx.Client(transport=fake.transport(), base_url=BASE, timeout=1.5) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post("/chat/completions", json={})
        with pytest.raises(httpx.ReadTimeout):
            client.post("/chat/completions", json={})
        with pytest.raises(httpx.ReadTimeout):
            client.post("/chat/completions", json={"stream": True})
    assert slept == [1.5, 1.5, 1.5]


def test_malformed_and_disconnect_replies() -> None:
    """malformed sends a 200 that is not a chat completion; disconnect sends nothing at all."""
    fake = FakeBackend(Reply(malformed=True), Reply(malformed=True), Reply(disconnect=True))
    with httpx.Client(transport=fake.transport(), base_url=BASE) as client:
        plain = client.post("/chat/completions", json={})
        assert plain.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            plain.json()
        streamed = client.post("/chat/completions", json={"stream": True})
        with pytest.raises(json.JSONDecodeError):
            sse_events(streamed.text)
        with pytest.raises(httpx.RemoteProtocolError):
            client.post("/chat/completions", json={})


def test_health_and_models_endpoints() -> None:
    """GET /health and /v1/models answer like llama-server; other paths are 404."""
    fake = FakeBackend(model="qwen2-1.5b")
    with httpx.Client(transport=fake.transport(), base_url="http://fake.test") as client:
        assert client.get("/health").json() == {"status": "ok"}
        fake.healthy = False
        assert client.get("/health").status_code == 503
        fake.healthy = True
        assert client.get("/v1/models").json()["data"][0]["id"] == "qwen2-1.5b"
        assert client.get("/v1/nothing").status_code == 404
    assert fake.requests == []


def test_async_transport_streams_and_can_be_cancelled_while_stalled() -> None:
    """The same transport serves httpx.AsyncClient; a stall waits until the caller cancels."""

    async def main() -> tuple[str, bool]:
        fake = FakeBackend(
            Reply(text="async answer", chunk_delay_s=0.01), Reply(stall=True), async_sleep=_tick
        )
        transport = fake.transport()
        async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=None) as client:
            response = await client.post("/chat/completions", json={"stream": True})
            text = text_of(sse_events(response.text))
            try:
                await asyncio.wait_for(client.post("/chat/completions", json={}), timeout=0.05)
            except asyncio.TimeoutError:
                return text, True
        return text, False

    assert asyncio.run(main()) == ("async answer", True)


async def _tick(seconds: float) -> None:
    # Yield to the loop without waiting out the scripted delay (a stall still never returns).
    await asyncio.sleep(0)


def test_loopback_server_streams_over_a_real_socket() -> None:
    """fake.serve() is a real HTTP server on 127.0.0.1 with a chunked SSE stream."""
    fake = FakeBackend(Reply(text="over the wire", reasoning="hm"))
    with fake.serve() as url:
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/v1")
        with httpx.Client(base_url=url) as client:
            response = client.post("/chat/completions", json={"stream": True})
            health = client.get(url.removesuffix("/v1") + "/health")
    events = sse_events(response.text)
    assert text_of(events) == "over the wire"
    assert text_of(events, "reasoning_content") == "hm"
    assert events[-1] == "[DONE]"
    assert health.json() == {"status": "ok"}
    assert fake.chat_requests[0].stream


def test_loopback_server_errors_cuts_and_disconnects() -> None:
    """On loopback, a status, a reset cut and a disconnect look like real server failures."""
    fake = FakeBackend(
        Reply(status=502),
        Reply(text="a b c d", cut_after=2, cut="reset"),
        Reply(text="a b c d", cut_after=2),
        Reply(disconnect=True),
    )
    with fake.serve() as url, httpx.Client(base_url=url) as client:
        assert client.post("/chat/completions", json={}).status_code == 502
        with pytest.raises(httpx.RemoteProtocolError):
            client.post("/chat/completions", json={"stream": True})
        clean_cut = sse_events(client.post("/chat/completions", json={"stream": True}).text)
        with pytest.raises(httpx.RemoteProtocolError):
            client.post("/chat/completions", json={})
    assert text_of(clean_cut) == "a b"
    assert "[DONE]" not in clean_cut


def test_loopback_stall_hits_the_client_timeout_and_close_is_prompt() -> None:
    """A stalled reply trips httpx's real read timeout, and close() releases the stalled handler."""
    fake = FakeBackend(Reply(stall=True))
    fake.start()
    try:
        with (
            httpx.Client(base_url=fake.url, timeout=0.2) as client,
            pytest.raises(httpx.ReadTimeout),
        ):
            client.post("/chat/completions", json={})
    finally:
        fake.close()
    with pytest.raises(RuntimeError):
        _ = fake.url


def test_context_manager_starts_and_stops_the_server() -> None:
    """`with FakeBackend() as fake:` serves for the block and stops after it."""
    with FakeBackend("hi") as fake:
        body = httpx.post(fake.url + "/chat/completions", json={}).json()
    assert body["choices"][0]["message"]["content"] == "hi"
    assert fake._server is None


@settings(max_examples=100, deadline=None)
@given(text=st.text(), reasoning=st.none() | st.text())
def test_any_answer_streams_back_exactly(text: str, reasoning: str | None) -> None:
    """Whatever the answer (unicode, whitespace runs, empty), its stream deltas join back to it."""
    fake = FakeBackend(Reply(text=text, reasoning=reasoning))
    with httpx.Client(transport=fake.transport(), base_url=BASE) as client:
        events = sse_events(client.post("/chat/completions", json={"stream": True}).text)
    assert text_of(events) == text
    assert text_of(events, "reasoning_content") == (reasoning or "")
    assert events[-1] == "[DONE]"


def test_router_sends_each_url_prefix_to_its_fake() -> None:
    """FakeBackend.router dispatches by longest URL prefix; unknown URLs fail to connect."""
    stable, canary = FakeBackend("stable says hi"), FakeBackend("canary says hi")
    routes = {"http://models.test/v1": stable, "http://models.test/v1/canary": canary}
    with httpx.Client(transport=FakeBackend.router(routes)) as client:
        a = client.post("http://models.test/v1/chat/completions", json={}).json()
        b = client.post("http://models.test/v1/canary/chat/completions", json={}).json()
        with pytest.raises(httpx.ConnectError):
            client.post("http://elsewhere.test/v1/chat/completions", json={})
    assert a["choices"][0]["message"]["content"] == "stable says hi"
    assert b["choices"][0]["message"]["content"] == "canary says hi"
    assert len(stable.chat_requests) == len(canary.chat_requests) == 1


def test_router_serves_async_clients_too() -> None:
    """The router is an async transport as well."""
    fake = FakeBackend("async hi")

    async def main() -> str:
        transport = FakeBackend.router({"http://m.test": fake})
        async with httpx.AsyncClient(transport=transport) as client:
            r = await client.post("http://m.test/v1/chat/completions", json={})
            return str(r.json()["choices"][0]["message"]["content"])

    assert asyncio.run(main()) == "async hi"
