"""Talking to OpenAI-compatible chat backends, without doing any I/O.

* :mod:`.chat` builds a chat-completions request from a variant (its reviewed
  prompt template and generation parameters) and parses answers, both the JSON
  form and the server-sent-events stream.
* :mod:`.pool` picks which of a backend's URLs gets the next request.

The clients own the sockets; everything here is pure and unit-tested on bytes.
"""

from .chat import (
    CHAT_PATH,
    Completion,
    Delta,
    StreamParser,
    apply_prompt,
    build_request,
    error_for_status,
    parse_completion,
)
from .pool import BackendPool

__all__ = [
    "CHAT_PATH",
    "BackendPool",
    "Completion",
    "Delta",
    "StreamParser",
    "apply_prompt",
    "build_request",
    "error_for_status",
    "parse_completion",
]
