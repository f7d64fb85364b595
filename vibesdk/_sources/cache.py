"""The disk cache of the last good flag document, so a restart can serve before the server answers.

One file per (server URL, SDK key) pair — the key alone selects the
environment — named by a hash of both, so the file name reveals neither. It is
written atomically (temporary file in the same directory, ``fsync``,
``os.replace``), so a reader sees the old file or the new one, never half of
one. A file that is corrupt, for another server or key, or not a valid
document is ignored with a warning: the cache can only ever help.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from vibesdk._errors import FlagDocumentError
from vibesdk._flags.document import FlagDocument, parse_document

__all__ = ["CACHE_FORMAT", "CachedDocument", "DiskCache", "cache_file_name"]

logger = logging.getLogger("vibesdk.flags")

CACHE_FORMAT = "vibesdk-flag-cache/1"


class CachedDocument(NamedTuple):
    """A document read back from the cache, with the ETag the server sent for it."""

    document: FlagDocument
    etag: str | None


def _fingerprint(server_url: str, sdk_key: str) -> str:
    return hashlib.sha256(f"{server_url}\n{sdk_key}".encode()).hexdigest()


def cache_file_name(server_url: str, sdk_key: str) -> str:
    """``<sha256(server_url + newline + sdk_key), 32 hex digits>.json``."""
    return _fingerprint(server_url, sdk_key)[:32] + ".json"


class DiskCache:
    """Reads and writes the cached document of one server and SDK key in ``directory``."""

    def __init__(self, directory: Path, *, server_url: str, sdk_key: str) -> None:
        self.server_url = server_url
        self._fingerprint = _fingerprint(server_url, sdk_key)
        self.path = Path(directory) / cache_file_name(server_url, sdk_key)
        self._save_failed = False

    def load(self) -> CachedDocument | None:
        """The cached document, or ``None`` (no file, or one that is ignored with a warning)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            logger.warning("vibesdk flags: cannot read cache %s (%s); ignored", self.path, exc)
            return None
        try:
            return self._decode(raw)
        except (ValueError, FlagDocumentError) as exc:
            logger.warning("vibesdk flags: ignoring cache file %s: %s", self.path, exc)
            return None

    def _decode(self, raw: bytes) -> CachedDocument:
        try:
            envelope: Any = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
            raise ValueError(f"not JSON ({exc})") from exc
        if not isinstance(envelope, dict) or envelope.get("format") != CACHE_FORMAT:
            raise ValueError(f"not a {CACHE_FORMAT} file")
        if envelope.get("fingerprint") != self._fingerprint:
            raise ValueError("written for another server or SDK key (wrong environment)")
        document = envelope.get("document")
        if not isinstance(document, dict):
            raise ValueError("has no document")
        parsed = parse_document(document)
        environment = envelope.get("environment")
        if environment is not None and environment != parsed.environment:
            raise ValueError(f"names environment {environment!r} but holds {parsed.environment!r}")
        etag = envelope.get("etag")
        return CachedDocument(parsed, etag if isinstance(etag, str) else None)

    def save(self, document: FlagDocument, etag: str | None) -> bool:
        """Replace the cached document atomically; log (once) and return ``False`` on failure."""
        envelope = {
            "format": CACHE_FORMAT,
            "fingerprint": self._fingerprint,
            "server_url": self.server_url,
            "environment": document.environment,
            "etag": etag,
            "document": document.model_dump(mode="json"),
        }
        payload = json.dumps(envelope, separators=(",", ":")).encode()
        tmp_name: str | None = None
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=self.path.parent)
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(payload)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp_name, self.path)
            tmp_name = None
            _fsync_directory(self.path.parent)
        except OSError as exc:
            if not self._save_failed:
                logger.warning("vibesdk flags: cannot write cache %s (%s)", self.path, exc)
            self._save_failed = True
            return False
        finally:
            if tmp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)
        self._save_failed = False
        return True


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
