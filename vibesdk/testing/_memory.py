"""An in-memory flag source for tests: change flags in one line, no server, no threads."""

from __future__ import annotations

import threading

from vibesdk._flags.document import Flag, FlagDocument
from vibesdk._sources.store import FlagState, FlagStore

__all__ = ["InMemoryFlagSource"]

ORIGIN = "memory"


class InMemoryFlagSource:
    """A flag source whose document the test sets directly.

    Pass it as ``Client(flag_source=...)`` or ``AsyncClient(flag_source=...)``
    (its methods are plain functions; the async client accepts them). It is
    READY as soon as it holds a document::

        source = InMemoryFlagSource(make_document(make_flag(rollout_bps=0)))
        client = vibesdk.Client(flag_source=source)
        source.update(make_flag(rollout_bps=10_000))   # everyone on canary, now

    :meth:`update` takes a whole :class:`~vibesdk.FlagDocument` or one
    :class:`~vibesdk.Flag` (added or replaced in the current document), gives
    it the next version and applies it, so listeners fire as they would for a
    document from the flag server.
    """

    def __init__(self, document: FlagDocument | None = None) -> None:
        self.store = FlagStore()
        self._lock = threading.Lock()
        self.closed = False
        if document is not None:
            self._apply(document)

    def update(self, document_or_flag: FlagDocument | Flag) -> FlagDocument:
        """Serve a new version: a whole document, or the current one with this flag replaced."""
        with self._lock:
            current = self.store.document
            if isinstance(document_or_flag, Flag):
                flag = document_or_flag
                if current is None:
                    document = FlagDocument(version=1, flags={flag.key: flag})
                else:
                    flags = {**current.flags, flag.key: flag}
                    document = current.model_copy(update={"flags": flags})
            else:
                document = document_or_flag
            return self._apply(document)

    def remove(self, flag_key: str) -> FlagDocument:
        """Serve a new version without ``flag_key`` (assignments get FLAG_NOT_FOUND)."""
        with self._lock:
            current = self.store.document or FlagDocument(version=0)
            flags = {k: f for k, f in current.flags.items() if k != flag_key}
            return self._apply(current.model_copy(update={"flags": flags}))

    def _apply(self, document: FlagDocument) -> FlagDocument:
        served = self.store.version
        if served is not None and document.version <= served:
            document = document.model_copy(update={"version": served + 1})
        self.store.apply(document, origin=ORIGIN)
        self.store.set_state(FlagState.READY)
        return document

    # -- the flag-source surface ---------------------------------------------

    def start(self) -> None:
        """Nothing to start: the document is already served."""

    def wait_until_ready(self, timeout: float | None = None) -> bool:
        """``True`` once a document was given (at once); ``False`` after ``timeout`` otherwise."""
        return self.store.wait_until_ready(timeout)

    def close(self) -> None:
        """Nothing to stop; the last document keeps serving."""
        self.closed = True

    async def aclose(self) -> None:
        """Same as :meth:`close`, for async code."""
        self.close()

    def __enter__(self) -> InMemoryFlagSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
