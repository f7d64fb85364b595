"""Provider ``llama-cpp-python``: the variant's GGUF model runs in the app's own process.

A local variant goes through exactly the control flow of an HTTP one -- attempts,
retries, circuit breaker, first-token and total deadlines, the stream parser,
output checks, fallback and telemetry -- because the clients mount the transports
of this module for the ``llama-cpp-python://`` scheme: a request to
``llama-cpp-python:///abs/path/model.gguf/chat/completions`` is answered here, in
process, with the bytes an OpenAI-compatible server would send (a JSON answer, or
server-sent events ending in ``[DONE]``).

* **Models load once per process**, on first use, shared by every client:
  keyed by the file's absolute path and the load options (``n_ctx``,
  ``n_threads``, ``n_gpu_layers``). The first call waits for the load under
  its first-token deadline; if the deadline passes, that call falls back and
  the load goes on, so a later call finds the model ready. A load that fails
  (a missing file, not a GGUF, llama-cpp-python not installed) fails the
  attempt as ``connect`` and is tried again by the next attempt: the breaker
  and fallback treat it like a server that is down.
* **One generation at a time per model.** A ``llama_cpp.Llama`` is not
  reentrant, so each model has a first-come-first-served turn; calls wait for
  it under their deadlines. How long a call waited and how many were ahead of
  it go into the answer's ``timings`` (``queue_ms``, ``queued_behind``), onto
  the call span and into the ``vibesdk.local.queue_wait`` histogram.
* **Generation runs on a worker thread**, never on the event loop or under the
  caller's locks; tokens are handed to the reading side (a thread or an asyncio
  task) as they come. The reading side waits no longer than the attempt's
  deadline (the same :class:`~vibesdk._watch.Watch` that bounds socket reads).
* **A deadline stops generation.** When the reader gives up (its deadline
  passed, the caller stopped reading, the client closed) the generation is
  told to stop; it checks before every token, so the worker thread is free
  within one token. A reader that is suspended and never closes is covered by
  a backstop: the generation stops by itself at the attempt's total deadline.

Deadlines map as follows: ``connect_timeout_s`` does not apply (there is no
connection); ``first_token_timeout_s`` covers the model load, the wait for the
model's turn and the prompt; ``total_timeout_s`` covers the whole answer.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from vibesdk._watch import Watch, current

__all__ = [
    "DEFAULT_N_CTX",
    "SCHEME",
    "AsyncLocalTransport",
    "LocalTransport",
    "load_options",
    "loaded_models",
    "local_url",
]

#: The URL scheme the clients mount the local transports for.
SCHEME = "llama-cpp-python"
#: ``n_ctx`` when the variant does not set one (llama-cpp-python's own default is 512).
DEFAULT_N_CTX = 4096
#: The request body key that carries the load options (see :func:`load_options`).
LOAD_KEY = "vibesdk_load"

# How often a waiting worker looks whether its call gave up (seconds).
_POLL_S = 0.05
# The longest a reader waits before it looks at its watch again (a client closing cuts it).
_SLICE_S = 0.2
# The sampling fields of a chat-completions body that llama-cpp-python takes as they are.
_PASSED = ("temperature", "top_p", "top_k", "repeat_penalty", "max_tokens", "stop", "seed")


def local_url(model_path: str) -> str:
    """The base URL that names the model at ``model_path`` (absolute) for attempts and spans."""
    path = Path(model_path).expanduser().absolute().as_posix()
    # A host is needed: httpx drops the authority of a URL with an empty one.
    return f"{SCHEME}://local{quote(path)}"


def load_options(
    model_path: str, n_ctx: int | None, n_threads: int | None, n_gpu_layers: int | None
) -> dict[str, Any]:
    """How to load a variant's model: what the request carries under ``vibesdk_load``."""
    options: dict[str, Any] = {
        "model_path": Path(model_path).expanduser().absolute().as_posix(),
        "n_ctx": DEFAULT_N_CTX if n_ctx is None else n_ctx,
    }
    if n_threads is not None:
        options["n_threads"] = n_threads
    if n_gpu_layers is not None:
        options["n_gpu_layers"] = n_gpu_layers
    return options


class _Stopped(Exception):
    """The call gave up: stop waiting or generating."""


class _Turn:
    """First come, first served access to one model; waiters give up when their call does."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: collections.deque[object] = collections.deque()
        self._busy = False

    def acquire(self, stopped: Callable[[], bool]) -> int:
        """Wait for the turn; the number of calls ahead on arrival. Raises ``_Stopped``."""
        ticket = object()
        with self._cond:
            ahead = len(self._queue) + int(self._busy)
            self._queue.append(ticket)
            try:
                while self._busy or self._queue[0] is not ticket:
                    if stopped():
                        raise _Stopped
                    self._cond.wait(_POLL_S)
            except BaseException:
                self._queue.remove(ticket)
                self._cond.notify_all()
                raise
            self._queue.popleft()
            self._busy = True
        return ahead

    def release(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()


class _Model:
    """One loaded (or loading) model and its turn."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.llama: Any = None
        self.error: BaseException | None = None
        self.turn = _Turn()


_models: dict[tuple[Any, ...], _Model] = {}
_models_lock = threading.Lock()


def loaded_models() -> list[dict[str, Any]]:
    """The load options of every model loaded in this process (for tests and diagnostics)."""
    with _models_lock:
        return [dict(key) for key, m in _models.items() if m.llama is not None]


def _model(options: Mapping[str, Any], stopped: Callable[[], bool]) -> tuple[_Model, float]:
    """The model for ``options``, loaded by this thread if no one has; seconds spent loading."""
    key = tuple(sorted(options.items()))
    with _models_lock:
        model = _models.get(key)
        owner = model is None
        if model is None:
            model = _models[key] = _Model()
    if owner:
        started = time.monotonic()
        try:
            model.llama = _load(options)
        except BaseException as exc:
            model.error = exc
            with _models_lock:
                # Not kept: the next attempt tries again (the file may appear, memory free up).
                if _models.get(key) is model:
                    del _models[key]
            raise
        finally:
            model.ready.set()
        return model, time.monotonic() - started
    started = time.monotonic()
    while not model.ready.wait(_POLL_S):
        if stopped():
            raise _Stopped
    if model.error is not None:
        raise _LoadError(str(model.error))
    return model, time.monotonic() - started


class _LoadError(Exception):
    """The model could not be loaded; the message says why and what to do."""


def _load(options: Mapping[str, Any]) -> Any:
    path = str(options["model_path"])
    if not os.path.isfile(path):
        raise _LoadError(f"model_path {path} does not exist or is not a file")
    try:
        import llama_cpp
    except ImportError as exc:
        raise _LoadError(
            f"llama-cpp-python is not installed ({exc}): pip install 'vibesdk[local]'"
        ) from exc
    kwargs = {k: v for k, v in options.items() if k != "model_path"}
    try:
        return llama_cpp.Llama(model_path=path, verbose=False, **kwargs)
    except Exception as exc:  # llama-cpp-python raises ValueError for a file it cannot load
        raise _LoadError(f"llama-cpp-python could not load {path}: {exc}") from exc


class _Generation:
    """One request's answer, made on a worker thread and read as bytes by the caller.

    The worker appends byte chunks (or the exception that ended it) to
    ``_items`` and calls ``_wake``; the reader pops them. ``stop()`` (from the
    reader) makes the worker stop before its next token or wait.
    """

    def __init__(self, body: dict[str, Any], backstop: float | None) -> None:
        self._body = body
        self._backstop = backstop
        self._stop = threading.Event()
        self._items: collections.deque[bytes | BaseException | None] = collections.deque()
        self._cond = threading.Condition()
        self._wake: Callable[[], None] = self._notify
        self.thread: threading.Thread | None = None

    # -- reader side --------------------------------------------------------------

    def start(self, wake: Callable[[], None] | None = None) -> None:
        if wake is not None:
            self._wake = wake
        self.thread = threading.Thread(target=self._run, name="vibesdk-llama-cpp", daemon=True)
        with _running_lock:
            _running.add(self)
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()

    def pop(self) -> bytes | BaseException | _Empty | None:
        try:
            return self._items.popleft()
        except IndexError:
            return _EMPTY

    def wait(self, timeout: float) -> None:
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # -- worker side ---------------------------------------------------------------

    def _stopped(self) -> bool:
        if self._stop.is_set():
            return True
        if self._backstop is not None and time.monotonic() > self._backstop:
            self._stop.set()
            return True
        return False

    def _put(self, item: bytes | BaseException | None) -> None:
        self._items.append(item)
        try:
            self._wake()
        except RuntimeError:  # the reader's event loop is closed: no one will read
            self._stop.set()

    def _run(self) -> None:
        try:
            self._generate_and_tell()
        finally:
            with _running_lock:
                _running.discard(self)

    def _generate_and_tell(self) -> None:
        try:
            self._generate()
        except _Stopped:
            self._put(_Stopped("the call gave up"))
        except _LoadError as exc:
            self._put(httpx.ConnectError(str(exc)))
        except BaseException as exc:
            self._put(httpx.RemoteProtocolError(f"llama-cpp-python failed: {exc!r}"))
        else:
            self._put(None)

    def _generate(self) -> None:
        body = self._body
        stream = bool(body.get("stream"))
        model, load_s = _model(body[LOAD_KEY], self._stopped)
        queued = time.monotonic()
        ahead = model.turn.acquire(self._stopped)
        try:
            queue_s = time.monotonic() - queued
            self._complete(model.llama, stream, load_s, queue_s, ahead)
        finally:
            model.turn.release()

    def _complete(
        self, llama: Any, stream: bool, load_s: float, queue_s: float, ahead: int
    ) -> None:
        import llama_cpp

        counts = [0, 0]  # prompt tokens, tokens sampled
        eos = llama.token_eos()

        def per_token(input_ids: Any, scores: Any) -> Any:
            # Called before every token is sampled (from C, where an exception would be
            # swallowed): count, and once the call gave up, force the end of the answer.
            if counts[1] == 0:
                counts[0] = len(input_ids)
            counts[1] += 1
            if self._stopped():
                scores[:] = -float("inf")
                scores[eos] = 0.0
            return scores

        kwargs = {k: self._body[k] for k in _PASSED if self._body.get(k) is not None}
        started = time.monotonic()
        first: float | None = None
        chunks = llama.create_chat_completion(
            messages=self._body["messages"],
            model=self._body.get("model"),
            stream=True,
            logits_processor=llama_cpp.LogitsProcessorList([per_token]),
            **kwargs,
        )
        response_id = f"chatcmpl-{uuid.uuid4().hex}"
        parts: list[str] = []
        finish: str | None = None
        try:
            for chunk in chunks:
                if self._stopped():
                    raise _Stopped
                choice = chunk["choices"][0] if chunk.get("choices") else {}
                text = (choice.get("delta") or {}).get("content")
                if text:
                    if first is None:
                        first = time.monotonic()
                    parts.append(text)
                finish = choice.get("finish_reason") or finish
                if stream:
                    chunk["id"] = response_id
                    self._put(_event(chunk))
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if self._stopped():
            raise _Stopped
        done = time.monotonic()
        prompt_s = (first if first is not None else done) - started
        usage = {
            "prompt_tokens": counts[0],
            "completion_tokens": counts[1],
            "total_tokens": counts[0] + counts[1],
        }
        timings = {
            "queue_ms": queue_s * 1000.0,
            "queued_behind": ahead,
            "load_ms": load_s * 1000.0,
            "prompt_ms": prompt_s * 1000.0,
            "predicted_ms": (done - started) * 1000.0 - prompt_s * 1000.0,
            "predicted_n": counts[1],
        }
        model = self._body.get("model")
        if stream:
            tail: dict[str, Any] = {
                "id": response_id,
                "model": model,
                "choices": [],
                "usage": usage,
            }
            self._put(_event({**tail, "timings": timings}))
            self._put(b"data: [DONE]\n\n")
            return
        answer = {
            "id": response_id,
            "object": "chat.completion",
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(parts)},
                    "finish_reason": finish,
                }
            ],
            "usage": usage,
            "timings": timings,
        }
        self._put(json.dumps(answer).encode())


class _Empty:
    pass


# The generations under way, stopped and waited for when the interpreter exits: a worker
# thread still inside llama.cpp while Python tears itself down would crash the process.
_running: set[_Generation] = set()
_running_lock = threading.Lock()
#: How long the exit waits for a worker (a model still loading cannot be stopped).
EXIT_WAIT_S = 30.0


@atexit.register
def _stop_all() -> None:
    with _running_lock:
        running = list(_running)
    deadline = time.monotonic() + EXIT_WAIT_S
    for generation in running:
        generation.stop()
    for generation in running:
        thread = generation.thread
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))


_EMPTY = _Empty()


def _event(obj: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _left(watch: Watch | None) -> float | None:
    """Seconds the reader may still wait under ``watch``; raise once it is cut or late."""
    if watch is None:
        return None
    import httpcore

    try:
        return watch.before_io(None, None)
    except httpcore.ReadTimeout as exc:
        raise httpx.ReadTimeout(str(exc)) from exc
    except httpcore.ReadError as exc:
        raise httpx.ReadError(str(exc)) from exc


def _finished(item: bytes | BaseException | None) -> bytes | None:
    """The chunk to hand on, ``None`` at the end; the worker's failure raised."""
    if isinstance(item, _Stopped):
        raise httpx.ReadTimeout("the answer was stopped: its call gave up")
    if isinstance(item, BaseException):
        raise item
    return item


def _begin(request: httpx.Request) -> tuple[_Generation, Watch | None]:
    body = json.loads(request.content)
    if not isinstance(body, dict) or not isinstance(body.get(LOAD_KEY), dict):
        raise httpx.ConnectError(f"{request.url}: not a request of the llama-cpp-python provider")
    # The clients give every request its attempt's deadlines; the pool timeout is the total one.
    total = request.extensions.get("timeout", {}).get("pool")
    backstop = None if total is None else time.monotonic() + float(total)
    return _Generation(body, backstop), current.get()


def _response(stream: Any, body_stream: bool) -> httpx.Response:
    kind = "text/event-stream" if body_stream else "application/json"
    return httpx.Response(200, headers={"content-type": kind}, stream=stream)


class _SyncBody(httpx.SyncByteStream):
    def __init__(self, generation: _Generation, watch: Watch | None) -> None:
        self._gen = generation
        self._watch = watch

    def __iter__(self) -> Iterator[bytes]:
        gen = self._gen
        while True:
            item = gen.pop()
            if isinstance(item, _Empty):
                left = _left(current.get() or self._watch)
                gen.wait(_SLICE_S if left is None else min(left, _SLICE_S))
                continue
            chunk = _finished(item)
            if chunk is None:
                return
            yield chunk

    def close(self) -> None:
        self._gen.stop()


class _AsyncBody(httpx.AsyncByteStream):
    def __init__(self, generation: _Generation, watch: Watch | None, event: asyncio.Event) -> None:
        self._gen = generation
        self._watch = watch
        self._event = event

    async def __aiter__(self) -> AsyncIterator[bytes]:
        gen, event = self._gen, self._event
        while True:
            item = gen.pop()
            if isinstance(item, _Empty):
                event.clear()  # then look again: a chunk may have come before the clear
                item = gen.pop()
                if isinstance(item, _Empty):
                    left = _left(current.get() or self._watch)
                    wait = _SLICE_S if left is None else min(left, _SLICE_S)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(event.wait(), wait)
                    continue
            chunk = _finished(item)
            if chunk is None:
                return
            yield chunk

    async def aclose(self) -> None:
        self._gen.stop()


class LocalTransport(httpx.BaseTransport):
    """Answers ``llama-cpp-python://`` requests in process (the blocking client's)."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        generation, watch = _begin(request)
        generation.start()
        return _response(_SyncBody(generation, watch), bool(generation._body.get("stream")))


class AsyncLocalTransport(httpx.AsyncBaseTransport):
    """Answers ``llama-cpp-python://`` requests in process without blocking the event loop."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        generation, watch = _begin(request)
        loop = asyncio.get_running_loop()
        event = asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(event.set)

        generation.start(wake)
        return _response(_AsyncBody(generation, watch, event), bool(generation._body.get("stream")))
