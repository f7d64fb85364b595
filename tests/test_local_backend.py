"""Provider llama-cpp-python: a canary's GGUF model in the app's own process (SmolLM2-135M, CPU).

The model is real (llama-cpp-python over the llama.cpp build of server/llama/build.sh, with
the SmolLM2 GGUF the rest of the suite uses); the stable backend is the loopback fake or a real
llama-server. Spans and metrics go to the real OpenTelemetry SDK in memory.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import vibesdk
from tests.client_harness import (
    FakeClock,
    LlamaServer,
    chunks_text,
    drivers,
    flag_source,
    llama_files,
)
from vibesdk._backends import local
from vibesdk.schema import parse_document
from vibesdk.testing import FakeBackend, SpanCapture, make_document, make_flag

ASK = [{"role": "user", "content": "Say hello in three words."}]
# At temperature 0 SmolLM2 counts on for well over a thousand tokens (about a minute here).
LONG = [{"role": "user", "content": "Write the numbers from 1 to 1000, separated by commas."}]


# -- the document ----------------------------------------------------------------------


def _backend_error(backend: dict[str, Any]) -> str:
    flag = {"key": "f", "variants": {"stable": {"model": "m", "backend": backend}}}
    with pytest.raises(vibesdk.FlagDocumentError) as info:
        parse_document({"version": 1, "flags": {"f": flag}})
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_local_variant_names_its_model_file_and_load_options() -> None:
    flag = {
        "key": "f",
        "variants": {
            "stable": {
                "model": "smollm2",
                "backend": {
                    "provider": "llama-cpp-python",
                    "model_path": "models/smollm2.gguf",
                    "n_ctx": 2048,
                    "n_threads": 2,
                    "n_gpu_layers": -1,
                },
            }
        },
    }
    doc = parse_document({"version": 1, "flags": {"f": flag}})
    backend = doc.flags["f"].variants["stable"].backend
    assert backend.is_local
    assert (backend.model_path, backend.n_ctx, backend.urls) == ("models/smollm2.gguf", 2048, [])


@pytest.mark.parametrize(
    ("backend", "says"),
    [
        (
            {"provider": "llama-cpp-python", "model_path": "m.gguf", "urls": ["http://h/v1"]},
            "provider 'llama-cpp-python' runs the model in the app's process and takes no urls",
        ),
        ({"provider": "llama-cpp-python"}, "provider 'llama-cpp-python' needs model_path"),
        ({"provider": "llama.cpp"}, "provider 'llama.cpp' is called over HTTP and needs urls"),
        (
            {"provider": "openai", "urls": ["http://h/v1"], "model_path": "m.gguf", "n_ctx": 9},
            "model_path, n_ctx only apply to provider 'llama-cpp-python'",
        ),
        ({"provider": "llama-cpp-python", "model_path": ""}, "model_path: String should have"),
    ],
)
def test_a_backend_served_neither_or_both_ways_is_refused_in_one_line(
    backend: dict[str, Any], says: str
) -> None:
    assert says in _backend_error(backend)


# -- the real model ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> Path:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        pytest.skip("needs llama-cpp-python (scripts/install puts it into .venv)")
    return llama_files()[1]  # SmolLM2's GGUF, found the way vibe-serve finds it


N_CTX = 1024  # the tests' context size, unless one needs another


def document(
    model_path: str | Path, stable_url: str, *, n_ctx: int = N_CTX, **fallback: Any
) -> vibesdk.FlagDocument:
    flag = make_flag(
        stable_url=stable_url,
        rollout_bps=10_000,
        fallback={"retries": 0, "retry_backoff_s": 0.0, **fallback},
    ).model_dump()
    canary = flag["variants"]["canary"]
    canary["backend"] = {
        "provider": "llama-cpp-python",
        "model_path": str(model_path),
        "n_ctx": n_ctx,
        "n_threads": 1,
    }
    canary["prompt"] = None
    canary["params"] = {"temperature": 0.0, "max_tokens": 12}
    return make_document(vibesdk.Flag.model_validate(flag))


@pytest.fixture
def make(kind: str) -> Iterator[Any]:
    with drivers(kind) as build:
        yield build


def _warm(model: Path, stable: FakeBackend, n_ctx: int = N_CTX) -> None:
    """Load the model of :func:`document` now, so a test's tight deadlines time generation only.

    The load options are the model's key: a test must warm the ``n_ctx`` it then calls with, or
    its first call loads the model again inside its deadline (seconds, on a busy CPU).
    """
    doc = document(model, stable.url, n_ctx=n_ctx)
    with vibesdk.Client(flag_source=flag_source(doc), cache_dir="") as c:
        assert not c.chat("vibethinker", "warm-up", ASK).fallback


def _counting_loads(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """From now on, each load of a model is recorded (a warmed test expects none)."""
    loads: list[Any] = []
    real = local._load

    def counting(options: Any) -> Any:
        loads.append(options)
        return real(options)

    monkeypatch.setattr(local, "_load", counting)
    return loads


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "vibesdk-llama-cpp"]


@pytest.fixture
def sampled(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the tokens the model samples (llama.cpp asks the logits processors before each)."""
    import llama_cpp

    count = [0]

    def counted(processor: Any) -> Any:
        def call(input_ids: Any, scores: Any) -> Any:
            count[0] += 1
            return processor(input_ids, scores)

        return call

    class Counting(llama_cpp.LogitsProcessorList):  # type: ignore[misc]
        # llama.cpp's sampling loop calls each processor of the list in turn.
        def __init__(self, processors: Any = ()) -> None:
            super().__init__(counted(p) for p in processors)

    monkeypatch.setattr(llama_cpp, "LogitsProcessorList", Counting)
    return count


def _assert_cut_short(sampled: list[int], asked: int) -> None:
    # However slow the shared CPU is, the worker ends; the proof that the deadline stopped it
    # is that it sampled fewer tokens than asked for (the answer would go on for thousands).
    for t in _workers():
        t.join(60.0)
    assert not _workers(), "the worker thread never ended"
    assert 0 < sampled[0] < asked, f"the generation went on after its deadline: {sampled[0]}"


@pytest.mark.model
def test_a_local_canary_answers_and_streams_with_usage_spans_and_metrics(
    make: Any, model: Path, stable: FakeBackend
) -> None:
    d = make(document(model, stable.url))
    with SpanCapture() as cap:
        r = d.chat("vibethinker", "u1", ASK)
        assert (r.variant, r.fallback) == ("canary", False)
        assert r.backend == local.local_url(str(model))
        assert r.text.strip()
        assert r.usage.input_tokens is not None
        assert r.usage.input_tokens > 10
        assert r.usage.output_tokens is not None
        assert r.usage.output_tokens > 0
        assert r.finish_reason in {"stop", "length"}
        span = cap.find("chat vibethinker-1.5b")
        attrs = span.attributes or {}
        assert attrs["gen_ai.provider.name"] == "llama-cpp-python"
        assert attrs["gen_ai.usage.output_tokens"] == r.usage.output_tokens
        assert attrs["vibesdk.local.queue_wait"] >= 0
        assert attrs["vibesdk.local.queued_behind"] == 0
        assert "server.address" not in attrs  # no network peer
        assert cap.metric_count("vibesdk.local.queue_wait") == 1

        chunks = d.stream("vibethinker", "u1", ASK)
        result = chunks[-1].result
        assert result is not None
        assert not result.fallback
        assert len(chunks) > 3  # token by token, not one lump
        assert chunks_text(chunks) == result.text
        assert result.time_to_first_token_s is not None
        assert cap.metric_count("gen_ai.client.operation.time_to_first_chunk") == 1
        assert stable.requests == []


@pytest.mark.model
def test_the_event_loop_keeps_ticking_while_the_model_generates(
    model: Path, stable: FakeBackend
) -> None:
    doc = document(model, stable.url)

    async def main() -> tuple[list[float], vibesdk.ChatResult]:
        gaps: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.monotonic()
            while not done.is_set():
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        async with vibesdk.AsyncClient(flag_source=flag_source(doc), cache_dir="") as client:
            tick = asyncio.create_task(ticker())
            result = await client.chat("vibethinker", "u1", LONG, max_tokens=60)
            done.set()
            await tick
        return gaps, result

    gaps, result = asyncio.run(main())
    assert not result.fallback
    # Sixty tokens take a second or more on this CPU; a loop blocked by them would show one
    # gap that long. Generous: the machine is shared.
    assert len(gaps) > 20
    assert max(gaps) < 0.5, f"the event loop stalled for {max(gaps):.2f}s"


@pytest.mark.model
def test_concurrent_calls_take_turns_on_the_model_and_all_answer(
    make: Any, model: Path, stable: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    inside = [0]
    most = [0]
    lock = threading.Lock()
    real = local._Generation._complete

    def spy(self: Any, *args: Any, **kwargs: Any) -> None:
        # Counts the generations inside the model; a second one at once is refused here
        # (the call fails and falls back) rather than let into llama.cpp, where it would crash.
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            if most[0] > 1:
                raise RuntimeError("two generations on one model at once")
            real(self, *args, **kwargs)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(local._Generation, "_complete", spy)
    d = make(document(model, stable.url))
    with SpanCapture() as cap:
        calls = [(("vibethinker", f"u{i}", ASK), {}) for i in range(4)]
        results = d.chat_many(calls, concurrency=4)
        assert all(isinstance(r, vibesdk.ChatResult) for r in results), results
        assert [r.variant for r in results] == ["canary"] * 4
        assert not any(r.fallback for r in results)
        assert most[0] == 1, "two generations ran on one model at once"
        behind = sorted(
            (s.attributes or {})["vibesdk.local.queued_behind"]
            for s in cap.find_all("chat vibethinker-1.5b")
        )
        assert behind[-1] >= 1, behind  # someone waited, and telemetry says so
        assert cap.metric_count("vibesdk.local.queue_wait") == 4


@pytest.mark.model
def test_a_deadline_mid_generation_stops_the_model_and_falls_back(
    make: Any,
    model: Path,
    stable: FakeBackend,
    sampled: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _warm(model, stable)
    loads = _counting_loads(monkeypatch)
    d = make(document(model, stable.url, first_token_timeout_s=3.0, total_timeout_s=4.0))
    started = time.monotonic()
    r = d.chat("vibethinker", "u1", LONG, max_tokens=600)
    elapsed = time.monotonic() - started
    assert not loads  # the deadlines timed generation, not a load
    assert (r.variant, r.fallback, r.fallback_reason) == ("stable", True, "timeout_total")
    assert elapsed < 4.0 + 3.0
    _assert_cut_short(sampled, 600)  # 600 tokens take ten seconds or more here
    _warm(model, stable)  # and the model's turn is free again (under roomy deadlines: CPU shared)


@pytest.mark.model
def test_a_deadline_while_streaming_stops_the_worker(
    model: Path, stable: FakeBackend, sampled: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _warm(model, stable, n_ctx=2048)
    loads = _counting_loads(monkeypatch)
    # The total deadline alone (it comes first): the first token has all of it to arrive.
    # 1,500 tokens: a quiet machine samples 600 within the 5 s deadline, so ask for more
    doc = document(model, stable.url, n_ctx=2048, first_token_timeout_s=10.0, total_timeout_s=5.0)
    with vibesdk.Client(flag_source=flag_source(doc), cache_dir="") as client:
        got: list[str] = []

        def read_all() -> None:
            for chunk in client.stream_chat("vibethinker", "u1", LONG, max_tokens=1500):
                got.append(chunk.text)

        with pytest.raises(vibesdk.StreamInterruptedError):
            read_all()
        assert not loads  # the deadline timed generation, not a load
        assert got  # tokens came before the deadline
    _assert_cut_short(sampled, 1500)


@pytest.mark.model
def test_a_missing_model_falls_back_to_stable_and_back_once_it_is_there(
    make: Any, model: Path, tmp_path: Path
) -> None:
    path = tmp_path / "canary.gguf"
    clock = FakeClock()
    stable = LlamaServer().start()
    try:
        d = make(
            document(path, stable.url, breaker_failures=1, breaker_cooldown_s=30.0), clock=clock
        )
        r = d.chat("vibethinker", "u1", ASK)
        assert (r.variant, r.fallback, r.fallback_reason) == ("stable", True, "connect")
        assert r.backend == stable.url
        path.symlink_to(model)
        r = d.chat("vibethinker", "u1", ASK)  # the breaker is open: stable, no attempt
        assert (r.variant, r.fallback_reason) == ("stable", "circuit_open")
        clock.now += 31
        r = d.chat("vibethinker", "u1", ASK)
        assert (r.variant, r.fallback) == ("canary", False)
    finally:
        stable.stop()


@pytest.mark.model
def test_the_model_loads_once_for_two_clients(
    model: Path, stable: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = _counting_loads(monkeypatch)
    # Load options of their own, so no other test has loaded this model already.
    doc = document(model, stable.url, n_ctx=768)
    with (
        vibesdk.Client(flag_source=flag_source(doc), cache_dir="") as one,
        vibesdk.Client(flag_source=flag_source(doc), cache_dir="") as two,
    ):
        calls = [
            threading.Thread(target=c.chat, args=("vibethinker", "u1", ASK)) for c in (one, two)
        ]
        for t in calls:
            t.start()
        for t in calls:
            t.join(60)
        r = two.chat("vibethinker", "u2", ASK)
        assert not r.fallback
    assert len(loads) == 1, loads
    assert {"model_path": str(model), "n_ctx": 768, "n_threads": 1} in local.loaded_models()
