"""What a chat call returns: :class:`ChatResult`, and :class:`ChatChunk` for streams."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from vibesdk._flags.evaluation import Assignment
from vibesdk._quality.checks import QualityReport

__all__ = ["ChatChunk", "ChatResult", "Usage"]


class Usage(NamedTuple):
    """Tokens the backend reported (``None``: it did not say)."""

    input_tokens: int | None = None
    output_tokens: int | None = None

    @property
    def total_tokens(self) -> int | None:
        if self.input_tokens is None or self.output_tokens is None:
            return None
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class ChatResult:
    """One answered chat call.

    ``variant`` and ``model`` are the ones that *answered*: when the assigned
    variant failed and stable answered instead, ``fallback`` is ``True``,
    ``fallback_reason`` says why (a :class:`~vibesdk.BackendError` ``kind``
    such as ``timeout_first_token`` or ``http_503``) and ``assignment`` still
    shows the assigned variant. ``notice`` is the answering variant's notice
    for users. ``trace_id`` (32 hex digits) links the answer to its trace and
    to :meth:`~vibesdk.Client.feedback`. ``reasoning`` is the model's
    ``<think>`` text when the server splits it out (llama.cpp
    ``reasoning_content``). ``time_to_first_token_s`` is measured for streams
    and taken from llama.cpp's ``timings`` otherwise (``None`` if unknown).
    ``quality`` holds the output checks' verdict on ``text``.
    """

    text: str
    variant: str
    model: str
    fallback: bool
    fallback_reason: str | None
    trace_id: str
    usage: Usage
    latency_s: float
    notice: str | None
    assignment: Assignment
    quality: QualityReport
    reasoning: str | None = None
    finish_reason: str | None = None
    time_to_first_token_s: float | None = None
    backend: str | None = None


@dataclass(frozen=True, slots=True)
class ChatChunk:
    """A piece of a streamed answer.

    Every chunk carries the answering ``variant``/``model``, whether this is a
    ``fallback`` and the ``trace_id`` (all fixed once the first token arrived).
    ``text`` and ``reasoning`` are the new text since the previous chunk. The
    last chunk has ``done=True``, empty deltas and ``result``: the whole
    answer as a :class:`ChatResult`, with usage, finish reason, timings and
    quality.
    """

    text: str
    variant: str
    model: str
    fallback: bool
    fallback_reason: str | None
    trace_id: str
    notice: str | None
    assignment: Assignment
    reasoning: str = ""
    done: bool = False
    result: ChatResult | None = None
