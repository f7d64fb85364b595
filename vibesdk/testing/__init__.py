"""Test doubles for apps that use vibesdk (and for vibesdk's own tests).

* :func:`make_flag` / :func:`make_document` build valid flag documents in one line;
  :data:`VIBETHINKER_SYSTEM_PROMPT` is the reviewed system prompt their canary variant carries.
* :class:`InMemoryFlagSource` serves flags you change in one line, for ``Client(flag_source=...)``.
* :class:`SpanCapture` records vibesdk's spans and metrics in memory for one test.
* :class:`FakeBackend` is a scriptable OpenAI-compatible backend (transport or loopback server).
"""

from ._backend import FakeBackend, FakeRequest, Reply
from ._documents import VIBETHINKER_SYSTEM_PROMPT, make_document, make_flag
from ._memory import InMemoryFlagSource
from ._spans import SpanCapture

__all__ = [
    "FakeBackend",
    "FakeRequest",
    "InMemoryFlagSource",
    "Reply",
    "SpanCapture",
    "VIBETHINKER_SYSTEM_PROMPT",
    "make_document",
    "make_flag",
]
