"""Test doubles for apps that use vibesdk (and for vibesdk's own tests).

* :func:`make_flag` / :func:`make_document` build valid flag documents in one line.
* :class:`SpanCapture` records vibesdk's spans and metrics in memory for one test.
"""

from ._documents import make_document, make_flag
from ._spans import SpanCapture

__all__ = ["SpanCapture", "make_document", "make_flag"]
