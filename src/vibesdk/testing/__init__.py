"""Test doubles for apps that use vibesdk (and for vibesdk's own tests).

* :func:`make_flag` / :func:`make_document` build valid flag documents in one line.
"""

from ._documents import make_document, make_flag

__all__ = ["make_document", "make_flag"]
