"""The sans-I/O chat-completions layer: request building, answer parsing, URL choice."""

from __future__ import annotations

import json
import threading

import pytest

from vibesdk import MalformedResponseError, StreamInterruptedError, Variant
from vibesdk._backends import (
    BackendPool,
    StreamParser,
    apply_prompt,
    build_request,
    error_for_status,
    parse_completion,
)
from vibesdk.schema import GenerationParams, PromptTemplate

URL = "http://127.0.0.1:9/v1"


def variant(provider: str = "llama.cpp", **fields: object) -> Variant:
    data: dict[str, object] = {"backend": {"urls": [URL], "provider": provider}, "model": "m"}
    data.update(fields)
    return Variant.model_validate(data)


PROMPT = PromptTemplate(id="p", version=2, system="SYS", user_template="Q: {input}\nA:")


def test_prompt_replaces_app_system_messages_and_wraps_the_last_user_message() -> None:
    """Template system first, app system/developer messages dropped, LAST user turn wrapped."""
    messages = [
        {"role": "system", "content": "app system"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "answer"},
        {"role": "developer", "content": "dev"},
        {"role": "user", "content": "second {input} {x}"},
    ]
    out = apply_prompt(PROMPT, messages)
    assert out == [
        {"role": "system", "content": "SYS"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": "Q: second {input} {x}\nA:"},
    ]
    assert messages[-1]["content"] == "second {input} {x}"  # the caller's dicts are untouched


def test_prompt_without_system_keeps_app_system_and_identity_template_changes_nothing() -> None:
    """A template with no system text keeps the app's messages; no template passes them through."""
    messages = [{"role": "system", "content": "mine"}, {"role": "user", "content": "hi"}]
    assert apply_prompt(PromptTemplate(id="p", version=1), messages) == messages
    assert apply_prompt(None, messages) == messages


def test_prompt_wraps_the_last_text_part_of_multimodal_content() -> None:
    """List content: the last text part is wrapped, other parts are kept."""
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "x"}},
                {"type": "text", "text": "t"},
            ],
        }
    ]
    out = apply_prompt(PROMPT, messages)
    assert out[1]["content"][1] == {"type": "text", "text": "Q: t\nA:"}
    assert out[1]["content"][0] == {"type": "image_url", "image_url": {"url": "x"}}


def test_llama_cpp_request_carries_every_param_with_llama_names() -> None:
    """llama.cpp gets top_k and repeat_penalty; stream asks for usage."""
    v = variant(
        params={
            "temperature": 0.6,
            "top_p": 0.95,
            "top_k": 0,
            "repetition_penalty": 1.1,
            "max_tokens": 16,
            "stop": ["</s>"],
            "seed": 7,
        },
        prompt=PROMPT.model_dump(),
    )
    body = build_request(v, [{"role": "user", "content": "x"}], stream=True)
    assert body == {
        "model": "m",
        "messages": [{"role": "system", "content": "SYS"}, {"role": "user", "content": "Q: x\nA:"}],
        "temperature": 0.6,
        "top_p": 0.95,
        "max_tokens": 16,
        "stop": ["</s>"],
        "seed": 7,
        "top_k": 0,
        "repeat_penalty": 1.1,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_plain_openai_request_omits_extensions_and_unset_params() -> None:
    """OpenAI-style providers get no top_k/repetition penalty; None params are not sent."""
    v = variant("openai", params={"top_k": 5, "repetition_penalty": 1.2, "temperature": 0.0})
    assert build_request(v, [{"role": "user", "content": "x"}]) == {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "temperature": 0.0,
    }
    vllm = build_request(variant("vllm", params={"top_k": 5, "repetition_penalty": 1.2}), [])
    assert vllm["top_k"] == 5
    assert vllm["repetition_penalty"] == 1.2


def test_params_argument_replaces_the_variant_params() -> None:
    """Per-call params (overrides merged by the client) win over the variant's."""
    v = variant(params={"max_tokens": 64})
    body = build_request(v, [], params=GenerationParams(max_tokens=8))
    assert body["max_tokens"] == 8


LLAMA_ANSWER = {
    "choices": [
        {
            "finish_reason": "stop",
            "index": 0,
            "message": {"role": "assistant", "content": "4", "reasoning_content": "2+2"},
        }
    ],
    "model": "smol",
    "id": "chatcmpl-1",
    "usage": {"completion_tokens": 1, "prompt_tokens": 24, "total_tokens": 25},
    "timings": {"prompt_ms": 201.3, "predicted_ms": 12.0, "predicted_n": 1},
}


def test_parse_completion_reads_llama_server_fields() -> None:
    """Content, reasoning_content, usage, finish_reason, model and timings are read."""
    c = parse_completion(json.dumps(LLAMA_ANSWER).encode(), backend=URL)
    assert (c.text, c.reasoning, c.finish_reason, c.model) == ("4", "2+2", "stop", "smol")
    assert (c.input_tokens, c.output_tokens, c.response_id) == (24, 1, "chatcmpl-1")
    assert c.timings is not None
    assert c.timings["prompt_ms"] == 201.3


@pytest.mark.parametrize(
    "body",
    [
        b"<html>bad gateway</html>",
        b"[]",
        b"{}",
        b'{"choices": []}',
        b'{"choices": [{"message": null}]}',
        b'{"choices": [{"message": {"content": ""}}]}',
        b'{"choices": [{"message": {"content": "  \\n"}}]}',
        b'{"choices": [{"message": {"content": null, "reasoning_content": "hm"}}]}',
        b'{"choices": [{"message": {"content": 3}}]}',
    ],
)
def test_malformed_or_empty_answers_are_malformed(body: bytes) -> None:
    """Anything but a non-empty chat answer raises MalformedResponseError (kind malformed)."""
    with pytest.raises(MalformedResponseError) as info:
        parse_completion(body, backend=URL)
    assert info.value.kind == "malformed"
    assert info.value.backend == URL


def test_error_for_status_quotes_the_server_message() -> None:
    """A non-2xx answer becomes BackendStatusError http_<code> with the server's message."""
    err = error_for_status(
        503, b'{"error": {"message": "Loading model", "code": 503}}', backend=URL
    )
    assert err.kind == "http_503"
    assert err.status_code == 503
    assert "Loading model" in str(err)
    assert "HTTP 429" in str(error_for_status(429, b"", backend=URL))


def sse(*events: object) -> list[str]:
    lines: list[str] = []
    for e in events:
        lines.append("data: " + (e if isinstance(e, str) else json.dumps(e)))
        lines.append("")
    return lines


def chunk(content: str | None = None, finish: str | None = None, **extra: object) -> dict:
    delta = {} if content is None else {"content": content}
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


def test_stream_parser_yields_deltas_and_assembles_the_answer() -> None:
    """Deltas come per event; role-only chunks are no token; usage/timings from the last chunk."""
    parser = StreamParser(backend=URL)
    role_only = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]}
    usage = {"prompt_tokens": 3, "completion_tokens": 2}
    lines = [": keep-alive", *sse(
        {**role_only, "model": "smol"},
        {"choices": [{"index": 0, "delta": {"reasoning_content": "think"}}]},
        chunk("Hel"),
        chunk("lo"),
        chunk(None, "stop"),
        {"choices": [], "usage": usage, "timings": {"prompt_ms": 1.0}},
        "[DONE]",
    )]  # fmt: skip
    deltas = [d for d in map(parser.feed_line, lines) if d is not None]
    assert [(d.text, d.reasoning) for d in deltas] == [("", "think"), ("Hel", ""), ("lo", "")]
    c = parser.finish()
    assert (c.text, c.reasoning, c.finish_reason, c.model) == ("Hello", "think", "stop", "smol")
    assert (c.input_tokens, c.output_tokens) == (3, 2)


def test_stream_that_ends_without_finish_reason_or_done_is_cut() -> None:
    """No finish_reason and no [DONE]: StreamInterruptedError."""
    parser = StreamParser(backend=URL)
    for line in sse(chunk("Hel")):
        parser.feed_line(line)
    with pytest.raises(StreamInterruptedError):
        parser.finish()


def test_stream_with_finish_reason_but_no_done_is_complete_and_trailing_data_counts() -> None:
    """A finish_reason is enough; a last data line without its blank line is still read."""
    parser = StreamParser(backend=URL)
    parser.feed_line("data: " + json.dumps(chunk("ok", "length")))
    assert parser.finish().text == "ok"


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("data: {not json", MalformedResponseError),
        ("data: [1]", MalformedResponseError),
        ('data: {"error": {"message": "slot crashed"}}', StreamInterruptedError),
    ],
)
def test_stream_bad_events_raise(line: str, error: type[Exception]) -> None:
    """Non-JSON events are malformed; an error event mid-stream is an interruption."""
    parser = StreamParser(backend=URL)
    parser.feed_line(line)
    with pytest.raises(error):
        parser.feed_line("")


def test_stream_that_completes_empty_is_malformed() -> None:
    """A stream that finishes without any answer text is an empty answer."""
    parser = StreamParser(backend=URL)
    for line in sse(chunk(None, "stop"), "[DONE]"):
        parser.feed_line(line)
    with pytest.raises(MalformedResponseError):
        parser.finish()


def test_pool_prefers_least_outstanding_and_round_robins_ties() -> None:
    """Idle URLs rotate; a busy URL is skipped until the others are as busy."""
    pool = BackendPool(["a", "b", "c"])
    firsts = []
    for _ in range(3):
        got = pool.acquire()
        assert got is not None
        firsts.append(got[0])
        pool.release(got[0])
    assert sorted(firsts) == ["a", "b", "c"]
    held = [pool.acquire() for _ in range(3)]
    assert sorted(h[0] for h in held if h) == ["a", "b", "c"]
    pool.release("b")
    got = pool.acquire()
    assert got is not None
    assert got[0] == "b"
    assert pool.outstanding() == {"a": 1, "b": 1, "c": 1}


def test_pool_asks_admit_in_preference_order_and_returns_its_permit() -> None:
    """URLs refused by admit (open breakers) are skipped; None when all are refused."""
    pool = BackendPool(["a", "b"])
    asked: list[str] = []

    def only_b(url: str) -> int | None:
        asked.append(url)
        return 7 if url == "b" else None

    assert pool.acquire(only_b) == ("b", 7)
    assert pool.acquire(lambda url: None) is None
    assert pool.outstanding() == {"a": 0, "b": 1}


def test_pool_counters_are_thread_safe() -> None:
    """Concurrent acquire/release leaves every counter at zero."""
    pool = BackendPool(["a", "b", "c"])

    def work() -> None:
        for _ in range(2000):
            got = pool.acquire()
            assert got is not None
            pool.release(got[0])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pool.outstanding() == {"a": 0, "b": 0, "c": 0}
