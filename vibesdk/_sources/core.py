"""What a flag source does with each answer of the flag server: the sans-I/O core.

Both drivers (threads and asyncio) send the requests this core describes and
hand it whatever came back — a response, an error, an SSE event. It decides
what to apply, what to persist to the disk cache and which state to report.
It does no network I/O, sleeps on nothing and starts nothing.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vibesdk._errors import ConfigError, FlagDocumentError
from vibesdk._flags.document import FlagDocument, parse_document
from vibesdk._sse import SSEEvent
from vibesdk._telemetry.instruments import metrics

from .cache import DiskCache
from .policy import RECONNECT_BASE_S, STALE_AFTER_FAILURES, reconnect_delay
from .store import FlagState, FlagStore

if TYPE_CHECKING:
    from vibesdk._settings import Settings

__all__ = [
    "BOOTSTRAP",
    "CACHE",
    "DeliveryCore",
    "POLL",
    "STREAM",
    "count_rejection",
    "load_bootstrap",
    "make_cache",
]

logger = logging.getLogger("vibesdk.flags")

BOOTSTRAP = "bootstrap"
CACHE = "cache"
POLL = "poll"
STREAM = "stream"
LOCAL_ORIGINS = frozenset({BOOTSTRAP, CACHE})

FLAGS_PATH = "/v1/flags"
STREAM_PATH = "/v1/stream"


def count_rejection(origin: str) -> None:
    """Add one to the ``vibesdk.flags.rejected`` counter; never raises.

    Goes through the same lazy :class:`~vibesdk._telemetry.instruments.Metrics`
    as every other vibesdk metric, so nothing is recorded unless the host
    installed a MeterProvider, and SpanCapture sees it.
    """
    metrics().record_flag_rejected(origin=origin)


def load_bootstrap(path: Path) -> FlagDocument:
    """Read and validate a bootstrap document; bad local files raise :class:`ConfigError`."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read bootstrap file {str(path)!r}: {exc}") from exc
    try:
        return parse_document(raw)
    except FlagDocumentError as exc:
        raise ConfigError(f"bootstrap file {str(path)!r}: {exc}") from exc


def make_cache(settings: Settings) -> DiskCache | None:
    """The disk cache for ``settings``, or ``None`` when there is no server or no cache_dir."""
    if settings.server_url is None or settings.cache_dir is None or settings.sdk_key is None:
        return None
    return DiskCache(
        settings.cache_dir,
        server_url=settings.server_url,
        sdk_key=settings.sdk_key.get_secret_value(),
    )


def _user_agent() -> str:
    from vibesdk import __version__

    return f"vibesdk-python/{__version__}"


def _version_etag(version: int) -> str:
    return f'"{version}"'


class DeliveryCore:
    """The delivery state of one flag source, fed by its driver.

    ``on_*`` methods return a document to write to the disk cache (the driver
    writes it, in a thread where that matters), or ``None``.
    """

    def __init__(
        self,
        settings: Settings,
        store: FlagStore,
        *,
        cache: DiskCache | None,
        clock: Callable[[], float],
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.cache = cache
        self._clock = clock
        self._on_change = on_change
        self.bootstrap = None if settings.bootstrap is None else load_bootstrap(settings.bootstrap)
        base = settings.server_url
        self.flags_url = None if base is None else base + FLAGS_PATH
        self.stream_url = None if base is None else base + STREAM_PATH
        key = settings.sdk_key.get_secret_value() if settings.sdk_key is not None else ""
        self._auth = {"Authorization": f"Bearer {key}"} if key else {}
        # The ETag of the served document, when the server sent (or confirmed) it.
        self.etag: str | None = None
        # The served version if it came from this server (poll, stream or cache).
        self.server_version: int | None = None
        self.failures = 0
        self.stream_up = False
        self.last_success_at: float | None = None
        self._rejected: set[str] = set()
        self._older_logged: int | None = None
        self._failure_logged = False
        self._auth_logged = False
        self.retry_ms: int | None = None
        # The poll thread and the stream thread both report here.
        self._lock = threading.Lock()

    def http_options(self) -> dict[str, Any]:
        """Keyword arguments for the driver's ``httpx.Client`` / ``httpx.AsyncClient``."""
        return {
            "timeout": self.settings.fetch_timeout_s,
            "headers": {"User-Agent": _user_agent()},
        }

    # -- start -------------------------------------------------------------

    def start_local(self) -> None:
        """Serve the bootstrap document, then the disk cache if it is newer."""
        if self.bootstrap is not None:
            self.store.apply(self.bootstrap, origin=BOOTSTRAP)
        if self.cache is not None:
            cached = self.cache.load()
            if cached is not None:
                boot = self.bootstrap
                if boot is not None and boot.environment != cached.document.environment:
                    logger.warning(
                        "vibesdk flags: ignoring cache file %s: environment %r, "
                        "but the bootstrap document is for %r",
                        self.cache.path,
                        cached.document.environment,
                        boot.environment,
                    )
                elif self.store.apply(cached.document, origin=CACHE):
                    self.etag = cached.etag
                    self.server_version = cached.document.version
        if self.settings.server_url is None:
            self._set_state(FlagState.OFFLINE)
        elif self.store.document is not None:
            self._set_state(FlagState.STALE)
        else:
            self._changed()

    # -- polling -----------------------------------------------------------

    def poll_headers(self) -> dict[str, str]:
        """Headers of the next ``GET /v1/flags``."""
        headers = {"Accept": "application/json", **self._auth}
        if self.etag is not None and self.server_version == self.store.version:
            headers["If-None-Match"] = self.etag
        return headers

    def on_poll_response(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> FlagDocument | None:
        """Handle one poll answer (any status)."""
        if status == 304:
            if self.store.document is None:
                self.on_failure(POLL, "304 Not Modified, but nothing is loaded")
                return None
            self._success()
            return None
        if status == 200:
            document = self._parse(body, POLL)
            if document is None:
                self.on_failure(POLL, "the document was rejected")
                return None
            return self._accept(document, POLL, headers.get("etag"))
        self._log_refusal(status)
        self.on_failure(POLL, f"HTTP {status}")
        return None

    def _log_refusal(self, status: int) -> None:
        if status in (401, 403) and not self._auth_logged:
            logger.error(
                "vibesdk flags: the flag server refused the SDK key (HTTP %d); "
                "check sdk_key / VIBESDK_SDK_KEY",
                status,
            )
            self._auth_logged = True

    def on_poll_failure(self, exc: BaseException) -> None:
        """The poll request itself failed (refused, timed out, cut)."""
        self.on_failure(POLL, f"{type(exc).__name__}: {exc}")

    # -- streaming ---------------------------------------------------------

    def stream_headers(self) -> dict[str, str]:
        """Headers of the next ``GET /v1/stream``, with ``Last-Event-ID`` to resume."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache", **self._auth}
        if self.server_version is not None and self.server_version == self.store.version:
            headers["Last-Event-ID"] = str(self.server_version)
        return headers

    def on_stream_open(self, status: int, content_type: str | None) -> bool:
        """The stream answered; ``True`` when it is an event stream to read."""
        if status == 200 and (content_type or "").startswith("text/event-stream"):
            self.stream_up = True
            if self.server_version is not None and self.server_version == self.store.version:
                # We resumed from a version the server sent us: nothing newer is owed.
                self._success()
            else:
                self.failures = 0
            return True
        self._log_refusal(status)
        self.on_failure(STREAM, f"HTTP {status} ({content_type or 'no content type'})")
        return False

    def on_stream_event(self, event: SSEEvent) -> FlagDocument | None:
        """Handle one dispatched SSE event; only ``flags`` events carry documents."""
        if event.event != "flags":
            logger.debug("vibesdk flags: ignoring SSE event %r", event.event)
            return None
        document = self._parse(event.data.encode(), STREAM)
        if document is None:
            return None
        return self._accept(document, STREAM, None)

    def on_stream_silent(self, silence_s: float) -> str:
        """The stream said nothing (not even a heartbeat) for ``silence_s``; the reason to log."""
        if not self.stream_up:
            self.on_failure(STREAM, f"no answer in {silence_s:g} s")
        return f"silent for {silence_s:g} s"

    def on_stream_error(self, exc: BaseException, *, closing: bool) -> str:
        """The stream failed with ``exc``; the reason to log.

        It counts as a failed request only while the stream was not up yet and
        the source is not ``closing`` (a close cuts it on purpose).
        """
        reason = f"{type(exc).__name__}: {exc}"
        if not self.stream_up and not closing:
            self.on_failure(STREAM, reason)
        return reason

    def on_stream_end(self, retry_ms: int | None, reason: str, *, closed: bool) -> None:
        """The stream is over, whatever ended it: keep its ``retry:`` and report it lost."""
        self.note_retry(retry_ms)
        self.on_stream_lost("the source was closed" if closed else reason)

    def on_stream_lost(self, reason: str) -> None:
        """The stream ended or broke; polling carries on alone until it is back."""
        if self.stream_up:
            logger.info("vibesdk flags: stream lost (%s); reconnecting", reason)
        self.stream_up = False

    def note_retry(self, retry_ms: int | None) -> None:
        """Remember the reconnection delay a stream asked for with ``retry:``."""
        if retry_ms is not None:
            self.retry_ms = retry_ms

    def reconnect_delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds before the next stream connect; ``attempt`` counts failures in a row."""
        base = RECONNECT_BASE_S if self.retry_ms is None else self.retry_ms / 1000.0
        return reconnect_delay(attempt, rng, base_s=base)

    # -- shared ------------------------------------------------------------

    def on_failure(self, origin: str, reason: str) -> None:
        """A request failed (refused, timed out, bad status, rejected document)."""
        self.failures += 1
        if not self._failure_logged:
            logger.warning("vibesdk flags: %s failed: %s", origin, reason)
            self._failure_logged = True
        else:
            logger.debug("vibesdk flags: %s failed again: %s", origin, reason)
        if (
            self.failures >= STALE_AFTER_FAILURES
            and not self.stream_up
            and self.store.state is FlagState.READY
        ):
            logger.warning(
                "vibesdk flags: the flag server has not answered %d times; serving version %s "
                "as STALE",
                self.failures,
                self.store.version,
            )
            self._set_state(FlagState.STALE)

    def _success(self) -> None:
        if self._failure_logged:
            logger.info("vibesdk flags: the flag server answers again")
        self.failures = 0
        self._failure_logged = False
        self.last_success_at = self._clock()
        if self.store.document is not None:
            self._set_state(FlagState.READY)

    def _parse(self, body: bytes, origin: str) -> FlagDocument | None:
        try:
            return parse_document(body)
        except FlagDocumentError as exc:
            digest = hashlib.sha256(body).hexdigest()
            if digest in self._rejected:
                logger.debug("vibesdk flags: the same invalid document again (from %s)", origin)
                return None
            if len(self._rejected) > 64:
                self._rejected.clear()
            self._rejected.add(digest)
            logger.error(
                "vibesdk flags: rejected a document from %s; still serving version %s: %s",
                origin,
                self.store.version,
                exc,
            )
            count_rejection(origin)
            return None

    def _accept(self, document: FlagDocument, origin: str, etag: str | None) -> FlagDocument | None:
        with self._lock:
            applied = self._apply_from_server(document, origin)
            served = self.store.version
            if applied or served == document.version:
                self.server_version = document.version
                self.etag = etag or _version_etag(document.version)
            elif served is not None and document.version < served and self._older_logged != served:
                logger.warning(
                    "vibesdk flags: the server sent version %d, older than the served %d; "
                    "kept %d (versions never go back)",
                    document.version,
                    served,
                    served,
                )
                self._older_logged = served
        self._success()
        return document if applied else None

    def _apply_from_server(self, document: FlagDocument, origin: str) -> bool:
        current = self.store.document
        local = self.store.origin in LOCAL_ORIGINS
        if current is None or not local:
            return self.store.apply(document, origin=origin)
        if current.environment != document.environment:
            # The SDK key is the authority on the environment: a local document
            # for another one must not shadow the server's, whatever its version.
            logger.warning(
                "vibesdk flags: the server serves environment %r; replacing the %s document "
                "of environment %r",
                document.environment,
                self.store.origin,
                current.environment,
            )
            return self.store.apply(document, origin=origin, replace=True)
        if current.version == document.version and current != document:
            # A bootstrap file edited by hand without a new version: the server's
            # content is the real version N.
            logger.warning(
                "vibesdk flags: the %s document differs from the server's version %d; "
                "serving the server's",
                self.store.origin,
                document.version,
            )
            return self.store.apply(document, origin=origin, replace=True)
        return self.store.apply(document, origin=origin)

    def after_fork_in_child(self) -> None:
        """Forget the parent's stream and any lock a parent thread held."""
        self._lock = threading.Lock()
        self.stream_up = False

    def _set_state(self, state: FlagState) -> None:
        self.store.set_state(state)
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()
