"""OpenAI-compatible chat completions, sans I/O: requests in, answers out.

Served the same way by llama.cpp's ``llama-server``, llama-cpp-python's server,
vLLM and hosted APIs; the differences that matter are handled here:

* the variant's reviewed prompt is applied centrally (:func:`apply_prompt`);
* sampling parameters the provider does not know are left out
  (``top_k`` and ``repetition_penalty`` are llama.cpp/vLLM extensions, and
  llama.cpp spells the latter ``repeat_penalty``);
* answers may carry ``reasoning_content`` (llama.cpp's split of a ``<think>``
  block) and ``timings`` (llama.cpp's own prompt/decode measurements);
* a stream ends with a ``finish_reason`` and ``data: [DONE]``; one that stops
  before either was cut (:class:`~vibesdk.StreamInterruptedError`).

Everything that is not a usable answer raises a :class:`~vibesdk.BackendError`
subclass whose ``kind`` becomes the fallback reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vibesdk._errors import BackendStatusError, MalformedResponseError, StreamInterruptedError
from vibesdk._flags.document import GenerationParams, PromptTemplate, Variant
from vibesdk._sse import SSEParser

__all__ = [
    "CHAT_PATH",
    "Completion",
    "Delta",
    "StreamParser",
    "apply_prompt",
    "build_request",
    "error_for_status",
    "parse_completion",
]

CHAT_PATH = "/chat/completions"

# Providers whose servers take llama.cpp's sampling extensions (top_k, repeat_penalty).
LLAMA_CPP_PROVIDERS = frozenset(
    {"llama.cpp", "llama_cpp", "llamacpp", "llama-cpp", "llama-cpp-python"}
)
# vLLM takes top_k and repetition_penalty under the Hugging Face names.
VLLM_PROVIDERS = frozenset({"vllm"})

_SYSTEM_ROLES = frozenset({"system", "developer"})
# What json.loads raises on bytes a backend sent: ValueError (bad JSON, bad UTF-8)
# and RecursionError (nesting deeper than the interpreter's stack, e.g. b"[" * 10**5).
_NOT_JSON = (ValueError, RecursionError)
_EXCERPT = 300


@dataclass(frozen=True, slots=True)
class Completion:
    """One complete answer from a backend.

    ``text`` is never empty (an empty answer is a failure). ``reasoning`` is
    llama.cpp's ``reasoning_content`` (the model's ``<think>`` part) when the
    server splits it out. ``timings`` is llama.cpp's measurement block, as sent.
    """

    text: str
    reasoning: str | None = None
    finish_reason: str | None = None
    model: str | None = None
    response_id: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    timings: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of a streamed answer: new answer text and/or new reasoning text."""

    text: str = ""
    reasoning: str = ""


def apply_prompt(
    prompt: PromptTemplate | None, messages: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """Apply a reviewed prompt template to the app's messages.

    With a template that has a system text, the app's own ``system`` (and
    ``developer``) messages are dropped and the template's system prompt goes
    first: the reviewed prompt is the model's on-switch and wins. The content
    of the *last* ``user`` message is put in place of ``{input}`` in
    ``user_template`` (literally; no other formatting). The input mappings are
    never modified; replaced messages are new dicts.
    """
    if prompt is None:
        return list(messages)
    if prompt.system:
        out: list[Mapping[str, Any]] = [{"role": "system", "content": prompt.system}]
        out.extend(m for m in messages if m.get("role") not in _SYSTEM_ROLES)
    else:
        out = list(messages)
    template = prompt.user_template
    if template != "{input}":
        for i in range(len(out) - 1, -1, -1):
            if out[i].get("role") == "user":
                out[i] = _wrap_user(out[i], template)
                break
    return out


def _wrap_user(message: Mapping[str, Any], template: str) -> dict[str, Any]:
    content = message.get("content")
    wrapped = dict(message)
    if isinstance(content, str):
        wrapped["content"] = template.replace("{input}", content)
    elif isinstance(content, list):
        # Multimodal parts: wrap the last text part, keep the others as they are.
        parts = list(content)
        for i in range(len(parts) - 1, -1, -1):
            part = parts[i]
            if isinstance(part, Mapping) and part.get("type") == "text":
                parts[i] = {**part, "text": template.replace("{input}", str(part.get("text", "")))}
                break
        wrapped["content"] = parts
    return wrapped


def build_request(
    variant: Variant,
    messages: Sequence[Mapping[str, Any]],
    *,
    stream: bool = False,
    params: GenerationParams | None = None,
) -> dict[str, Any]:
    """The JSON body of a chat-completions request for ``variant``.

    ``params`` replaces the variant's own :class:`~vibesdk.GenerationParams`
    (the client passes the variant's params merged with per-call overrides).
    Parameters left ``None`` are not sent, so the backend's default applies.
    """
    p = variant.params if params is None else params
    body: dict[str, Any] = {
        "model": variant.model,
        "messages": apply_prompt(variant.prompt, messages),
    }
    if p.temperature is not None:
        body["temperature"] = p.temperature
    if p.top_p is not None:
        body["top_p"] = p.top_p
    if p.max_tokens is not None:
        body["max_tokens"] = p.max_tokens
    if p.stop:
        body["stop"] = list(p.stop)
    if p.seed is not None:
        body["seed"] = p.seed
    provider = variant.backend.provider
    if provider in LLAMA_CPP_PROVIDERS:
        if p.top_k is not None:
            body["top_k"] = p.top_k
        if p.repetition_penalty is not None:
            body["repeat_penalty"] = p.repetition_penalty
    elif provider in VLLM_PROVIDERS:
        if p.top_k is not None:
            body["top_k"] = p.top_k
        if p.repetition_penalty is not None:
            body["repetition_penalty"] = p.repetition_penalty
    # Any other provider (OpenAI and most hosted APIs) rejects unknown sampling
    # fields, so top_k and the repetition penalty are left out there.
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def error_for_status(status_code: int, content: bytes, *, backend: str) -> BackendStatusError:
    """The error for a non-2xx answer, quoting the server's own message if it sent one."""
    detail = _excerpt(content)
    try:
        data = json.loads(content)
    except _NOT_JSON:
        data = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            detail = err["message"][:_EXCERPT]
        elif isinstance(data.get("detail"), str):
            detail = data["detail"][:_EXCERPT]
    return BackendStatusError(
        f"{backend} answered HTTP {status_code}: {detail}", backend=backend, status_code=status_code
    )


def parse_completion(content: bytes, *, backend: str) -> Completion:
    """Parse a non-streamed chat completion; raise :class:`~vibesdk.MalformedResponseError`.

    A body that is not JSON, has no ``choices[0].message``, or whose answer is
    empty or whitespace is malformed.
    """
    try:
        data = json.loads(content)
    except _NOT_JSON as exc:
        raise MalformedResponseError(
            f"{backend} sent a body that is not JSON: {_excerpt(content)}", backend=backend
        ) from exc
    if not isinstance(data, dict):
        raise MalformedResponseError(f"{backend} sent JSON that is not an object", backend=backend)
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise MalformedResponseError(f"{backend} sent an answer without choices", backend=backend)
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise MalformedResponseError(f"{backend} sent a choice without a message", backend=backend)
    text = message.get("content")
    if text is not None and not isinstance(text, str):
        raise MalformedResponseError(f"{backend} sent non-text content", backend=backend)
    if not text or not text.strip():
        raise MalformedResponseError(f"{backend} sent an empty answer", backend=backend)
    reasoning = message.get("reasoning_content")
    input_tokens, output_tokens = _usage(data.get("usage"))
    timings = data.get("timings")
    return Completion(
        text=text,
        reasoning=reasoning if isinstance(reasoning, str) and reasoning else None,
        finish_reason=_str_or_none(choice.get("finish_reason")),
        model=_str_or_none(data.get("model")),
        response_id=_str_or_none(data.get("id")),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        timings=timings if isinstance(timings, dict) else None,
    )


class StreamParser:
    """Turns the lines of a streamed chat completion into deltas and a final answer.

    Feed it every line of the response body (without line endings) with
    :meth:`feed_line`; it returns a :class:`Delta` whenever an event adds text
    or reasoning. When the body ends, :meth:`finish` returns the whole
    :class:`Completion`, or raises :class:`~vibesdk.StreamInterruptedError`
    if the stream ended with neither a ``finish_reason`` nor ``[DONE]`` (it
    was cut) and :class:`~vibesdk.MalformedResponseError` if it carried no
    answer text. Events are server-sent events: ``data:`` lines, dispatched at
    a blank line; comments (``:``) and other fields are ignored.
    """

    __slots__ = (
        "_sse",
        "backend",
        "done",
        "finish_reason",
        "input_tokens",
        "model",
        "output_tokens",
        "reasoning_parts",
        "response_id",
        "text_parts",
        "timings",
    )

    def __init__(self, *, backend: str) -> None:
        self.backend = backend
        self.text_parts: list[str] = []
        self.reasoning_parts: list[str] = []
        self.finish_reason: str | None = None
        self.done = False
        self.model: str | None = None
        self.response_id: str | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.timings: Mapping[str, Any] | None = None
        self._sse = SSEParser()

    def feed_line(self, line: str) -> Delta | None:
        """Take one line; return the delta of the event it completes, if any."""
        event = self._sse.line(line)
        return None if event is None else self._event(event.data)

    @property
    def complete(self) -> bool:
        """Whether the stream has said it is finished (``finish_reason`` or ``[DONE]``)."""
        return self.done or self.finish_reason is not None

    def finish(self) -> Completion:
        """The whole answer, once the body has ended."""
        event = self._sse.pending()
        if event is not None:
            # The body ended right after a data line without the blank line that dispatches it.
            self._event(event.data)
        if not self.complete:
            raise StreamInterruptedError(
                f"the stream from {self.backend} ended before its finish_reason or [DONE]",
                backend=self.backend,
            )
        text = "".join(self.text_parts)
        if not text.strip():
            raise MalformedResponseError(
                f"{self.backend} streamed an empty answer", backend=self.backend
            )
        return Completion(
            text=text,
            reasoning="".join(self.reasoning_parts) or None,
            finish_reason=self.finish_reason,
            model=self.model,
            response_id=self.response_id,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            timings=self.timings,
        )

    def _event(self, data: str) -> Delta | None:
        if data.strip() == "[DONE]":
            self.done = True
            return None
        try:
            obj = json.loads(data)
        except _NOT_JSON as exc:
            raise MalformedResponseError(
                f"{self.backend} streamed an event that is not JSON: {data[:_EXCERPT]!r}",
                backend=self.backend,
            ) from exc
        if not isinstance(obj, dict):
            raise MalformedResponseError(
                f"{self.backend} streamed an event that is not an object", backend=self.backend
            )
        error = obj.get("error")
        if error is not None:
            message = error.get("message") if isinstance(error, dict) else error
            raise StreamInterruptedError(
                f"{self.backend} reported an error mid-stream: {str(message)[:_EXCERPT]}",
                backend=self.backend,
            )
        if self.model is None:
            self.model = _str_or_none(obj.get("model"))
            self.response_id = _str_or_none(obj.get("id"))
        usage = obj.get("usage")
        if usage is not None:
            self.input_tokens, self.output_tokens = _usage(usage)
        timings = obj.get("timings")
        if isinstance(timings, dict):
            self.timings = timings
        return self._choice(obj.get("choices"))

    def _choice(self, choices: Any) -> Delta | None:
        if not isinstance(choices, list) or not choices:
            return None
        choice = choices[0]
        if not isinstance(choice, dict):
            raise MalformedResponseError(
                f"{self.backend} streamed a choice that is not an object", backend=self.backend
            )
        finish = choice.get("finish_reason")
        if isinstance(finish, str) and finish:
            self.finish_reason = finish
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return None
        text = delta.get("content")
        reasoning = delta.get("reasoning_content")
        text = text if isinstance(text, str) else ""
        reasoning = reasoning if isinstance(reasoning, str) else ""
        if not text and not reasoning:
            return None
        if text:
            self.text_parts.append(text)
        if reasoning:
            self.reasoning_parts.append(reasoning)
        return Delta(text, reasoning)


def _usage(usage: Any) -> tuple[int | None, int | None]:
    if not isinstance(usage, dict):
        return None, None
    return _int_or_none(usage.get("prompt_tokens")), _int_or_none(usage.get("completion_tokens"))


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _excerpt(content: bytes) -> str:
    return content[:_EXCERPT].decode("utf-8", "replace").strip() or "(empty body)"
