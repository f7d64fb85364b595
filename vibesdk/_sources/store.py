"""The current flag document of one client, and the state of its delivery.

Reads are lock-free: the store swaps one immutable :class:`CompiledDocument`
reference, so ``evaluate`` costs one bound-method call on top of the pure
evaluation, and it pushes the compiled flags to the clients bound to it
(:meth:`FlagStore.bind`), whose ``assign`` evaluates in its own frame. Writes
(``apply``) take a lock so that the version check and the swap happen together.
"""

from __future__ import annotations

import enum
import logging
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from vibesdk._flags.document import Flag, FlagDocument
from vibesdk._flags.evaluation import Assignment, CompiledDocument, ErrorCode, not_ready

__all__ = ["FlagState", "FlagStore", "Listener", "StateListener"]

logger = logging.getLogger("vibesdk.flags")

Listener = Callable[[FlagDocument], None]
StateListener = Callable[["FlagState"], None]
Evaluate = Callable[[str, str, "Mapping[str, Any] | None"], Assignment]


class FlagState(str, enum.Enum):
    """How fresh the flag document a client serves is."""

    NOT_READY = "NOT_READY"
    """Nothing loaded yet: every evaluation answers the default variant."""
    READY = "READY"
    """The document is fresh from the flag server (or an in-memory source)."""
    STALE = "STALE"
    """A document is served, but it came from bootstrap or disk cache, or the
    server configured for this client has stopped answering."""
    OFFLINE = "OFFLINE"
    """No server is configured; the bootstrap document is all there is."""


def _evaluate_not_ready(
    flag_key: str, user_id: str, attributes: Mapping[str, Any] | None = None
) -> Assignment:
    return not_ready(flag_key, user_id, ErrorCode.PROVIDER_NOT_READY)


class FlagStore:
    """Thread-safe holder of the current flag document.

    ``evaluate(flag_key, user_id, attributes=None) -> Assignment`` never raises;
    before any document it answers the default variant with
    ``error_code="PROVIDER_NOT_READY"``. It is an instance attribute bound
    directly to the current document's evaluator, swapped on every apply.
    """

    evaluate: Evaluate

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._compiled: CompiledDocument | None = None
        self._state = FlagState.NOT_READY
        self._origin: str | None = None
        self._listeners: list[Listener] = []
        self._state_listeners: list[StateListener] = []
        self._ready = threading.Event()
        self.evaluate = _evaluate_not_ready
        # What bound views read lock-free as ``_flags``: the served document's
        # compiled flags, or empty when evaluation must go through ``evaluate``
        # (no document yet, or a hook waits in run_before_next_evaluate).
        self._flags: Mapping[str, Any] = {}
        # Copy-on-write, so that _publish may walk it without the lock (after fork).
        self._views: tuple[weakref.ref[Any], ...] = ()

    # -- reads (lock-free) -------------------------------------------------

    @property
    def document(self) -> FlagDocument | None:
        """The document being served, or ``None`` before the first one."""
        compiled = self._compiled
        return None if compiled is None else compiled.document

    @property
    def version(self) -> int | None:
        """The version being served, or ``None`` before the first document."""
        compiled = self._compiled
        return None if compiled is None else compiled.version

    @property
    def origin(self) -> str | None:
        """Where the served document came from: ``bootstrap``, ``cache``, ``poll``, ``stream``..."""
        return self._origin

    @property
    def state(self) -> FlagState:
        """NOT_READY, READY, STALE or OFFLINE; see :class:`FlagState`."""
        return self._state

    def flag(self, flag_key: str) -> Flag | None:
        """The flag named ``flag_key`` in the served document, if any."""
        compiled = self._compiled
        if compiled is None:
            return None
        return compiled.document.flags.get(flag_key)

    def bind(self, view: Any) -> None:
        """Keep ``view._flags`` set to the flags being served, from now on.

        ``view`` (a client, held weakly) evaluates with
        :func:`vibesdk._flags.evaluation.evaluator` and answers a key missing
        from ``_flags`` through :attr:`evaluate`, which also covers the time
        before the first document and a pending run_before_next_evaluate hook.
        """
        with self._lock:
            alive = tuple(ref for ref in self._views if ref() is not None)
            self._views = (*alive, weakref.ref(view))
            view._flags = self._flags

    def _publish(self, flags: Mapping[str, Any]) -> None:
        self._flags = flags
        for ref in self._views:
            view = ref()
            if view is not None:
                view._flags = flags

    # -- writes ------------------------------------------------------------

    def apply(self, document: FlagDocument, *, origin: str, replace: bool = False) -> bool:
        """Serve ``document`` if it is newer than the current one.

        Returns ``False`` (and changes nothing) when its version is not greater
        than the served one: an older document is never applied. Listeners are
        called after the swap, in the applying thread; their errors are logged.
        ``replace=True`` skips the version check; flag sources use it only when
        the server's document replaces a bootstrap or cached document of
        another environment.
        """
        compiled = CompiledDocument(document)
        with self._lock:
            current = self._compiled
            if not replace and current is not None and document.version <= current.version:
                return False
            self._compiled = compiled
            self._origin = origin
            self.evaluate = compiled.evaluate
            self._publish(compiled.flags)
            listeners = tuple(self._listeners)
        if self.is_ready():
            self._ready.set()
        logger.info(
            "vibesdk flags: serving version %d of environment %r (from %s)",
            document.version,
            document.environment,
            origin,
        )
        for listener in listeners:
            try:
                listener(document)
            except Exception:
                logger.exception("vibesdk flags: a document listener raised; ignored")
        return True

    def set_state(self, state: FlagState) -> None:
        """Record the delivery state (called by flag sources).

        State listeners are called after a change (not for the same state again),
        in the calling thread; their errors are logged.
        """
        if state is self._state:
            return
        logger.debug("vibesdk flags: state %s -> %s", self._state.value, state.value)
        self._state = state
        if self.is_ready():
            self._ready.set()
        else:
            self._ready.clear()
        for listener in tuple(self._state_listeners):
            try:
                listener(state)
            except Exception:
                logger.exception("vibesdk flags: a state listener raised; ignored")

    def is_ready(self) -> bool:
        """READY, or OFFLINE with a document: what ``wait_until_ready`` waits for."""
        state = self._state
        return state is FlagState.READY or (
            state is FlagState.OFFLINE and self._compiled is not None
        )

    def wait_until_ready(self, timeout: float | None = None) -> bool:
        """Block until :meth:`is_ready` or ``timeout`` seconds; never raises."""
        if self.is_ready():
            return True
        try:
            return self._ready.wait(timeout) and self.is_ready()
        except Exception:  # e.g. a KeyboardInterrupt is not an Exception and still propagates
            return False

    def add_listener(self, callback: Listener) -> None:
        """Call ``callback(document)`` after every applied document."""
        with self._lock:
            self._listeners.append(callback)

    def remove_listener(self, callback: Listener) -> None:
        """Stop calling ``callback``; unknown callbacks are ignored."""
        with self._lock:
            if callback in self._listeners:
                self._listeners.remove(callback)

    def add_state_listener(self, callback: StateListener) -> None:
        """Call ``callback(state)`` after every change of :attr:`state`."""
        with self._lock:
            self._state_listeners.append(callback)

    def remove_state_listener(self, callback: StateListener) -> None:
        """Stop calling ``callback`` on state changes; unknown callbacks are ignored."""
        with self._lock:
            if callback in self._state_listeners:
                self._state_listeners.remove(callback)

    def run_before_next_evaluate(self, hook: Callable[[], None]) -> None:
        """Run ``hook()`` once, on the next ``evaluate`` call, then evaluate as usual.

        Used after ``fork`` to restart a source's threads lazily without adding
        any work to the evaluate path afterwards: ``evaluate`` is swapped for a
        trampoline that puts the fast path back before calling the hook.
        """

        def trampoline(
            flag_key: str, user_id: str, attributes: Mapping[str, Any] | None = None
        ) -> Assignment:
            if self.evaluate is trampoline:
                compiled = self._compiled
                self.evaluate = _evaluate_not_ready if compiled is None else compiled.evaluate
                self._publish({} if compiled is None else compiled.flags)
                try:
                    hook()
                except Exception:
                    logger.exception("vibesdk flags: restarting after fork failed")
            return self.evaluate(flag_key, user_id, attributes)

        self.evaluate = trampoline
        self._publish({})  # bound views miss every key, so they call the trampoline too

    def _after_fork_in_child(self) -> None:
        # A thread of the parent may have held these at fork time; in the child
        # nobody would ever release them.
        self._lock = threading.Lock()
        ready = self.is_ready()
        self._ready = threading.Event()
        if ready:
            self._ready.set()
